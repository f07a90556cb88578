"""ROSITA and UniEnt against direct re-implementations of their official code (manogna-s/ROSITA
``methods/rosita.py`` and ``methods/unient_lda.py``, ``utils/clip_tta_utils.py``), written out here as that code
does it, compared at every step of a short stream; and as runs: the CLI, a recorded order, the tower put back."""
import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from helpers import Tower, stream_folder, tower_state
from ueo_core.cli import main
from ueo_core.config import RunConfig
from ueo_core.methods import METHODS
from ueo_core.methods.rosita import Stream, rosita_step, stream_threshold
from ueo_core.methods.unient import unient_step
from ueo_core.models import load_model
from ueo_core.train import Trainer


# ------------------------------------------------------------------------------ the official code, transcribed
def official_compute_os_variance(os, th):
    """utils/clip_tta_utils.py compute_os_variance (commit 24c4ec7, lines 29-60)."""
    thresholded_os = np.zeros(os.shape)
    thresholded_os[os >= th] = 1
    nb_pixels = os.size
    nb_pixels1 = np.count_nonzero(thresholded_os)
    weight1 = nb_pixels1 / nb_pixels
    weight0 = 1 - weight1
    if weight1 == 0 or weight0 == 0:
        return np.inf
    val_pixels1 = os[thresholded_os == 1]
    val_pixels0 = os[thresholded_os == 0]
    var0 = np.var(val_pixels0) if len(val_pixels0) > 0 else 0
    var1 = np.var(val_pixels1) if len(val_pixels1) > 0 else 0
    return weight0 * var0 + weight1 * var1


def official_compute_os_variance_stats(os, th):
    """methods/rosita.py compute_os_variance_stats (lines 19-54): the same split, with the groups' means."""
    thresholded_os = np.zeros(os.shape)
    thresholded_os[os >= th] = 1
    nb_pixels = os.size
    nb_pixels1 = np.count_nonzero(thresholded_os)
    weight1 = nb_pixels1 / nb_pixels
    weight0 = 1 - weight1
    if weight1 == 0 or weight0 == 0:
        return np.inf, {'mu0': 0, 'mu1': 1, 'var0': 0, 'var1': 0}
    val_pixels1 = os[thresholded_os == 1]
    val_pixels0 = os[thresholded_os == 0]
    mu0 = np.mean(val_pixels0) if len(val_pixels0) > 0 else 0
    mu1 = np.mean(val_pixels1) if len(val_pixels1) > 0 else 0
    var0 = np.var(val_pixels0) if len(val_pixels0) > 0 else 0
    var1 = np.var(val_pixels1) if len(val_pixels1) > 0 else 0
    return weight0 * var0 + weight1 * var1, {'mu0': mu0, 'mu1': mu1, 'var0': var0, 'var1': var1}


def official_threshold(st, maxlogit_tta, args):
    threshold_range = np.arange(0, 1, 0.01)
    st["scores_q"].extend(maxlogit_tta.tolist())
    st["scores_q"] = st["scores_q"][-args.N_scores:]
    criterias = [official_compute_os_variance(np.array(st["scores_q"]), th) for th in threshold_range]
    best_thresh = threshold_range[np.argmin(criterias)]
    _, stats = official_compute_os_variance_stats(np.array(st["scores_q"]), best_thresh)
    return best_thresh, stats


def official_rosita(model, classifier, images, st, args, optimizer):
    """One iteration of methods/rosita.py ROSITA()'s loop (lines 95-215; the metrics bookkeeping, logging and
    knn_acc left out): TTA on both views, then the prediction pass (its fp16 autocast left out)."""
    proto_bank, C = st["proto_bank"], classifier.shape[0]
    image = images[:1]
    image_features_raw_all = model.encode_image(images)
    image_features_all = image_features_raw_all / image_features_raw_all.norm(dim=-1, keepdim=True)
    image_features_raw = image_features_raw_all[0].unsqueeze(0)
    image_features = image_features_all[0].unsqueeze(0)
    logits_all = image_features_all @ classifier.T
    logits, logits_aug = logits_all[0].unsqueeze(0), logits_all[1].unsqueeze(0)
    maxlogit_tta, pred_tta = logits.max(1)
    best_thresh, stats = official_threshold(st, maxlogit_tta, args)
    W_pred, S_pred = maxlogit_tta >= best_thresh, maxlogit_tta < best_thresh
    pl = pred_tta[0].item()
    W_sel = W_pred * (maxlogit_tta > stats['mu1'])
    loss = 0
    if W_pred[0].item() and maxlogit_tta.item() > stats['mu1']:
        proto_bank['W'].append(image_features_raw.detach())
        proto_bank['W'] = proto_bank['W'][-C * args.k_p:]
    if S_pred[0].item() and maxlogit_tta.item() < stats['mu0']:
        proto_bank['S'].append(image_features_raw.detach())
        proto_bank['S'] = proto_bank['S'][-args.N_s:]
    if args.loss_pl and W_sel:
        loss += nn.CrossEntropyLoss()(logits[W_sel], pred_tta[W_sel])
        loss += nn.CrossEntropyLoss()(logits_aug[W_sel], pred_tta[W_sel])
    if args.loss_simclr and len(proto_bank['W']) > args.k_p and len(proto_bank['S']) > args.k_p:
        if maxlogit_tta.item() > stats['mu1'] or maxlogit_tta.item() < stats['mu0']:
            if W_pred[0].item():
                n_p = args.k_p
                pos_features = torch.vstack(proto_bank['W'])
                neg_features = torch.vstack(proto_bank['S'])
                pos_features = pos_features / pos_features.norm(dim=-1, keepdim=True)
                neg_features = neg_features / neg_features.norm(dim=-1, keepdim=True)
                pos_sim = image_features @ pos_features.T
                topk_pos_sim, topk_pos_idx = torch.topk(pos_sim, k=n_p, dim=-1, largest=True)
                topk_pos_idx = topk_pos_idx.squeeze()
                positive_features = pos_features[topk_pos_idx]
                if n_p == 1:
                    positive_features = positive_features.unsqueeze(0)
                pos_logits = positive_features @ classifier.T
                pos_preds = pos_logits.argmax(1)
                mask = pl == pos_preds
                st["masked"] += int((~mask).sum())
                neg_sim = image_features @ neg_features.T
                topk_neg_sim, _ = torch.topk(neg_sim, k=args.k_n, dim=-1, largest=True)
                pos_sim_k = topk_pos_sim.T
                neg_sim_k = topk_neg_sim.expand(n_p, -1)
                l_simclr = -pos_sim_k.squeeze() + torch.log(torch.exp(neg_sim_k).sum(1))
                l_simclr = l_simclr * mask
                l_simclr = torch.mean(l_simclr)
                loss += l_simclr * args.alpha
                st["contrast_known"] += 1
            elif S_pred[0].item():
                pos_features = torch.vstack(proto_bank['S'])
                neg_features = torch.vstack(proto_bank['W'])
                pos_features = pos_features / pos_features.norm(dim=-1, keepdim=True)
                neg_features = neg_features / neg_features.norm(dim=-1, keepdim=True)
                pos_sim = image_features @ pos_features.T
                topk_pos_sim, topk_pos_idx = torch.topk(pos_sim, k=args.k_p, dim=-1, largest=True)
                neg_sim = image_features @ neg_features.T
                topk_neg_sim, _ = torch.topk(neg_sim, k=args.k_n, dim=-1, largest=True)
                pos_sim_k = topk_pos_sim.T
                neg_sim_k = topk_neg_sim.expand(args.k_p, -1)
                l_simclr = -pos_sim_k.squeeze() + torch.log(torch.exp(neg_sim_k).sum(1))
                l_simclr = torch.mean(l_simclr)
                loss += l_simclr * args.alpha
                st["contrast_unknown"] += 1
    if loss:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        imf_norm = model.encode_image(image)
        imf_norm = imf_norm / imf_norm.norm(dim=-1, keepdim=True)
        logits_txt = (imf_norm @ classifier.T)
    return logits_txt[0], maxlogit_tta.item(), float(best_thresh), bool(W_pred[0].item())


def official_softmax_entropy(x):
    """methods/unient_lda.py softmax_entropy (lines 13-14)."""
    return -(x.softmax(1) * x.log_softmax(1)).sum(1)


def official_unient(model, classifier, images, st, args, optimizer):
    """One iteration of methods/unient_lda.py Unient()'s loop (commit b924407, lines 95-150; the banks it
    fills and never reads, the bookkeeping and the autocast left out)."""
    image = images[:1]
    image_features_raw_all = model.encode_image(images)
    image_features_all = image_features_raw_all / image_features_raw_all.norm(dim=-1, keepdim=True)
    logits_all = image_features_all @ classifier.T
    logits = logits_all[0].unsqueeze(0)
    maxlogit_tta, pred_tta = logits.max(1)
    best_thresh, _ = official_threshold(st, maxlogit_tta, args)
    W_pred, S_pred = maxlogit_tta >= best_thresh, maxlogit_tta < best_thresh
    loss = 0
    if W_pred[0].item():
        loss += official_softmax_entropy(logits)
    if S_pred[0].item():
        loss -= official_softmax_entropy(logits)
    if loss:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        imf_norm = model.encode_image(image)
        imf_norm = imf_norm / imf_norm.norm(dim=-1, keepdim=True)
        logits_txt = (imf_norm @ classifier.T)
    return logits_txt[0], maxlogit_tta.item(), float(best_thresh), bool(W_pred[0].item())


# ------------------------------------------------------------------------------ a short stream, step by step
def stream(seed: int, n: int = 40, k: int = 3, d: int = 16):
    """Images near one class text (knowns, high cosines) and random ones (unknowns), mixed; each with a view."""
    g = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    known = torch.rand(n, generator=g) < 0.5
    base = torch.where(known[:, None], 3 * text[torch.randint(k, (n,), generator=g)], torch.zeros(n, d).double())
    x = base + torch.randn(n, d, generator=g, dtype=torch.float64)
    views = torch.stack([x, x + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)], dim=1)
    return Tower(d, g), text, views


ARGS = SimpleNamespace(N_scores=16, N_s=6, k_p=2, k_n=3, alpha=0.5, tta_lr=0.5, loss_pl=1, loss_simclr=1)
OPTIONS = SimpleNamespace(rosita_scores=16, rosita_bank=6, rosita_neighbours=2, rosita_negatives=3,
                          rosita_alpha=0.5, rosita_lr=0.5, unient_scores=16, unient_lr=0.5)


def pair(tower, lr):
    """Our tower and the official code's, equal at the start, each with its SGD over the LayerNorm params."""
    theirs = copy.deepcopy(tower)
    return [(t, torch.optim.SGD(t.ln.parameters(), lr=lr)) for t in (tower, theirs)]


def rosita_stream(seed: int, counts: dict) -> None:
    """One stream of ROSITA, ours beside the official code's, compared after every image."""
    tower, text, views = stream(seed)
    (ours, opt), (theirs, ref_opt) = pair(tower, OPTIONS.rosita_lr)
    state = Stream(OPTIONS.rosita_scores, len(text) * OPTIONS.rosita_neighbours, OPTIONS.rosita_bank)
    st = {"scores_q": [], "proto_bank": {"W": [], "S": []}, "masked": 0, "contrast_known": 0, "contrast_unknown": 0}
    for i in range(len(views)):
        before = ours.ln.weight.detach().clone()
        rec = rosita_step(state, ours.encode_image, views[i], text, opt, OPTIONS)
        cos, score, th, known = official_rosita(theirs, text, views[i], st, ARGS, ref_opt)
        assert (rec["threshold"], rec["known"]) == (th, known) and rec["score"] == pytest.approx(score, abs=1e-12), i
        assert torch.allclose(rec["cos"], cos, atol=1e-12), i
        assert state.scores == pytest.approx(st["scores_q"], abs=1e-12)
        for mine, ref in ((state.known, st["proto_bank"]["W"]), (state.unknown, st["proto_bank"]["S"])):
            assert len(mine) == len(ref) and all(torch.allclose(a, b, atol=1e-12) for a, b in zip(mine, ref)), i
        for a, b in zip(ours.ln.parameters(), theirs.ln.parameters()):
            assert torch.allclose(a, b, atol=1e-12), i
        counts["moved"] += rec["updated"] and not torch.equal(before, ours.ln.weight)
        counts["full"] += len(state.unknown) == OPTIONS.rosita_bank
    counts["slid"] += len(state.scores) == OPTIONS.rosita_scores
    for key in ("masked", "contrast_known", "contrast_unknown"):
        counts[key] += st[key]


def test_rosita_steps_equal_the_official_code_over_a_stream():
    counts = dict.fromkeys(("moved", "full", "slid", "masked", "contrast_known", "contrast_unknown"), 0)
    for seed in range(4):
        rosita_stream(seed, counts)
    # the streams went through every branch: steps, both contrastive terms, a masked positive, a full bank, a
    # sliding score window
    assert all(counts.values()), counts


@pytest.mark.parametrize("seed", range(3))
def test_unient_steps_equal_the_official_code_over_a_stream(seed):
    tower, text, views = stream(seed)
    (ours, opt), (theirs, ref_opt) = pair(tower, OPTIONS.unient_lr)
    state = Stream(OPTIONS.unient_scores, 0, 0)
    st = {"scores_q": [], "proto_bank": {"W": [], "S": []}}
    decisions = set()
    for i in range(len(views)):
        rec = unient_step(state, ours.encode_image, views[i][:1], text, opt, OPTIONS)
        cos, score, th, known = official_unient(theirs, text, views[i], st, ARGS, ref_opt)
        assert (rec["threshold"], rec["known"]) == (th, known) and rec["score"] == pytest.approx(score, abs=1e-12), i
        assert torch.allclose(rec["cos"], cos, atol=1e-12), i
        for a, b in zip(ours.ln.parameters(), theirs.ln.parameters()):
            assert torch.allclose(a, b, atol=1e-12), i
        decisions.add(known)
    assert decisions == {True, False}  # entropy went down for some images, up for others
    assert not torch.equal(ours.ln.weight, tower.ln.weight.new_ones(tower.ln.weight.shape))


def test_the_threshold_is_the_official_one_on_ties_and_empty_groups():
    args = SimpleNamespace(N_scores=100)
    for scores in ([0.3], [0.3, 0.3], [-0.2, -0.1], [0.1, 0.5], [0.1, 0.1, 0.5, 0.5, 0.9], [1.0, 0.995]):
        st = {"scores_q": []}
        ref_th, stats = official_threshold(st, torch.tensor(scores, dtype=torch.float64), args)
        th, mu0, mu1 = stream_threshold(np.array(scores))
        assert (th, mu0, mu1) == (float(ref_th), float(stats["mu0"]), float(stats["mu1"])), scores


# ------------------------------------------------------------------------------ runs
TINY = dict(model="ueo-tiny", pretrained=None)


@pytest.fixture
def small(tmp_path):
    return stream_folder(tmp_path)


@pytest.mark.parametrize("method", ["rosita", "unient"])
def test_a_cli_run_records_its_stream_and_its_checkpoint_is_the_tower_as_loaded(small, tmp_path, method, capsys):
    out = tmp_path / method
    rc = main(["train", str(small), "--prior", "red,green,blue", "--model", "ueo-tiny", "--pretrained", "none",
               "--method", method, "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    m = json.loads((out / "metrics.json").read_text())
    assert sorted(m[f"{method}_stream"]) == list(range(12))
    assert len(m[f"{method}_score"]) == len(m[f"{method}_known"]) == 12
    assert m[f"{method}_updates"] > 0  # the tower did learn during the stream
    saved = load_file(out / "checkpoint.safetensors")
    loaded = load_model("ueo-tiny", pretrained=None)  # (the CLI's seed 0: the same random initialisation)
    tower = METHODS[method].visual_params(loaded.model.visual)
    assert tower and all(torch.equal(saved[f"visual.{n}"], p.detach()) for n, p in tower)


@pytest.mark.parametrize("method", ["rosita"])  # (UniEnt's stream is the same code: rosita.open_stream)
def test_the_stream_order_is_fixed_by_the_seed_and_the_tower_is_put_back(small, tmp_path, method):
    loaded = load_model("ueo-tiny", pretrained=None)
    visual = METHODS[method].visual_params(loaded.model.visual)
    as_loaded = {n: p.detach().clone() for n, p in visual}
    base = RunConfig(data=str(small), prior=["red", "green", "blue"], method=method,
                     options={f"{method}_lr": 0.05}, **TINY)
    orders, preds = [], []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        r = Trainer(base.replace(seed=seed, run_dir=str(tmp_path / name)), loaded=loaded).run()
        assert r.status == "done"
        assert all(torch.equal(as_loaded[n], p) for n, p in visual)  # the run's model: as loaded again
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        assert m[f"{method}_updates"] > 0
        orders.append(m[f"{method}_stream"])
        preds.append((tmp_path / name / "predictions.csv").read_text())
    assert orders[0] == orders[1] != orders[2]
    assert preds[0] == preds[1]  # the augmented views too are repeatable by the seed


@pytest.mark.parametrize("method", ["rosita", "unient"])
def test_a_stopped_stream_puts_the_tower_back(small, tmp_path, method):
    cfg = RunConfig(data=str(small), prior=["red", "green", "blue"], method=method, batch_size=4,
                    options={f"{method}_lr": 0.05}, run_dir=str(tmp_path / method), **TINY)
    tr = Trainer(cfg)
    loaded, changed = {}, []

    def stop_once_changed(e):  # (a progress event comes after every 4 images)
        if e.kind == "progress" and e.data["phase"].startswith(("ROSITA", "UniEnt")):
            now = tower_state(tr)
            if any(not torch.equal(loaded[n], now[n]) for n in loaded):
                changed.append(e.data["done"])
                tr.cancel()

    tr.add_listener(lambda e: loaded.update(tower_state(tr)) if e.kind == "start" else None)
    tr.add_listener(stop_once_changed)
    assert tr.run().status == "cancelled"
    assert changed and changed[0] < 12  # it had changed the tower, and stopped in the stream ...
    assert all(torch.equal(loaded[n], v) for n, v in tower_state(tr).items())  # ... and put it back


def test_options_are_checked_in_words():
    with pytest.raises(ValueError, match="rosita_lr"):
        RunConfig(method="rosita", options={"rosita_lr": 0}).validate()
    with pytest.raises(ValueError, match="unient_scores"):
        RunConfig(method="unient", options={"unient_scores": 0.5}).validate()
    assert {"rosita", "unient"} <= set(METHODS)
