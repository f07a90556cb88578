"""ZERO and TDA against direct re-implementations of their official code (FarinaMatteo/zero ttas/zero.py,
kdiAAA/TDA tda_runner.py), written out here as that code does it; and as runs: progress, stop, a recorded order."""
import json
import math
import operator

import pytest
import torch
import torch.nn.functional as F

from ueo_core.config import RunConfig
from ueo_core.methods import tda as tda_mod
from ueo_core.methods.zero import keep_confident, zero_vote
from ueo_core.train import Trainer


# ------------------------------------------------------------------------------------------------ ZERO
def official_zero(l_unscaled, temp, gamma=0.3):
    """ttas/zero.py's Zero.zero() on one image's view logits, tie-break (utils/tools.py greedy_break) included."""
    p = (l_unscaled / temp).softmax(1)
    batch_entropy = -(p * p.log()).sum(1)
    idx = torch.argsort(batch_entropy, descending=False)[:int(batch_entropy.size()[0] * gamma)]
    l_filt = l_unscaled[idx]
    zero_temp = torch.finfo(l_filt.dtype).eps
    p_bar = (l_filt / zero_temp).softmax(1).sum(0)
    max_counts, scalar_pred = torch.max(p_bar, dim=-1)
    ties = [scalar_pred]
    for i in range(len(p_bar)):
        if i == scalar_pred:
            continue
        if p_bar[i] == max_counts:
            ties.append(i)
    if len(ties) > 1:
        k = int(l_unscaled.size(0) * gamma)
        ties_tensor = torch.tensor([int(t) for t in ties])
        for pred in torch.argmax(l_unscaled[k:], dim=1):
            if pred in ties_tensor:
                scalar_pred = pred
                break
        p_bar[scalar_pred] += 1
    return p_bar


@pytest.mark.parametrize("seed", range(12))
def test_zero_vote_equals_the_official_code(seed):
    g = torch.Generator().manual_seed(seed)
    views, k = 64, 3 + seed % 4
    cos = 0.2 + 0.05 * torch.randn(views, k, generator=g, dtype=torch.float64)
    ours = zero_vote(100.0 * cos)
    ref = official_zero(cos, temp=0.01)
    assert torch.equal(ours, ref.round()), (ours, ref)
    assert ours.sum() in (int(views * 0.3), int(views * 0.3) + 1)  # 19 kept views (+1 when a tie was broken)


@pytest.mark.parametrize("decider,expected", [(1, [3, 4, 0]), (0, [4, 3, 0])])
def test_a_tie_is_broken_by_the_first_later_view_in_the_ties(decider, expected):
    """20 views keep 6: three sure of class 0, three sure of class 1, a tie. From view 6 on (unfiltered order),
    the first whose argmax is a tied class decides: view 6 says class 2 (not tied), view 7 says ``decider``."""
    logits = torch.full((20, 3), 0.0)
    logits[0:3, 0] = logits[3:6, 1] = 9.0
    logits[6, 2], logits[7, decider], logits[8:, 2 - decider] = 0.5, 0.4, 0.3
    assert set(keep_confident(logits).tolist()) == set(range(6))
    assert zero_vote(logits).tolist() == expected
    assert official_zero(logits, temp=1.0).round().tolist() == expected


def test_zero_keeps_the_most_confident_share_of_views():
    logits = torch.tensor([[5., 0.], [0.1, 0.], [0., 3.], [0.2, 0.1], [0., 0.05], [4., 0.], [0., 1.], [0., 0.],
                           [2., 0.], [0., 6.]])
    kept = keep_confident(logits)
    assert len(kept) == 3 and set(kept.tolist()) == {0, 5, 9}  # the three largest margins


def test_zero_with_identical_views_is_the_zero_shot_prediction(folder, tmp_path, monkeypatch):
    from ueo_core.models import LoadedModel
    monkeypatch.setattr(LoadedModel, "train_transform", lambda self, scale=None: self.preprocess)
    cfg = RunConfig(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None,
                    method="zero", run_dir=str(tmp_path / "z"), options={"zero_views": 8})
    events = []
    r = Trainer(cfg, listeners=[events.append]).run()
    zs = Trainer(cfg.replace(method="zero_shot", run_dir=None)).run()
    assert r.status == "done" and (r.probs.max(axis=1) == 1.0).all()  # unanimous: every view is the same image
    assert (r.probs.argmax(axis=1) == zs.probs.argmax(axis=1)).all()
    assert [e.data["done"] for e in events if e.kind == "progress" and e.data["phase"].startswith("ZERO")][-1] == 24


# ------------------------------------------------------------------------------------------------ TDA
def official_update_cache(cache, pred, features_loss, shot_capacity, include_prob_map=False):
    item = features_loss if not include_prob_map else features_loss[:2] + [features_loss[2]]
    if pred in cache:
        if len(cache[pred]) < shot_capacity:
            cache[pred].append(item)
        elif features_loss[1] < cache[pred][-1][1]:
            cache[pred][-1] = item
        cache[pred] = sorted(cache[pred], key=operator.itemgetter(1))
    else:
        cache[pred] = [item]


def official_cache_logits(image_features, cache, alpha, beta, n_classes, neg_mask_thresholds=None):
    cache_keys, cache_values = [], []
    for class_index in sorted(cache.keys()):
        for item in cache[class_index]:
            cache_keys.append(item[0])
            cache_values.append(item[2] if neg_mask_thresholds else class_index)
    cache_keys = torch.cat(cache_keys, dim=0).permute(1, 0)
    if neg_mask_thresholds:
        cache_values = torch.cat(cache_values, dim=0)
        cache_values = ((cache_values > neg_mask_thresholds[0]) & (cache_values < neg_mask_thresholds[1])).double()
    else:
        cache_values = F.one_hot(torch.tensor(cache_values).to(torch.int64), num_classes=n_classes).double()
    affinity = image_features @ cache_keys
    return alpha * ((-1) * (beta - beta * affinity)).exp() @ cache_values


def official_step(pos, neg, f, clip_logits):
    """tda_runner.py's run_test_tda loop body for one image (imagenet.yaml's settings)."""
    k = clip_logits.size(1)
    loss = -(clip_logits.softmax(1) * clip_logits.log_softmax(1)).sum(1)
    prob_map, pred = clip_logits.softmax(1), int(clip_logits.topk(1, 1, True, True)[1].t()[0])
    prop_entropy = float(loss / math.log2(k))
    official_update_cache(pos, pred, [f, loss], 3)
    if 0.2 < prop_entropy < 0.5:
        official_update_cache(neg, pred, [f, loss, prob_map], 2, True)
    final = clip_logits.clone()
    if pos:
        final += official_cache_logits(f, pos, 2.0, 5.0, k)
    if neg:
        final -= official_cache_logits(f, neg, 0.117, 1.0, k, (0.03, 1.0))
    return final


def test_tda_steps_equal_the_official_code_over_a_stream():
    g = torch.Generator().manual_seed(3)
    k, n = 4, 40
    feats = F.normalize(torch.randn(n, 16, generator=g, dtype=torch.float64), dim=1)
    text = F.normalize(torch.randn(k, 16, generator=g, dtype=torch.float64), dim=1)
    logits = 8.0 * feats @ text.T  # a scale that puts some images in the negative cache's entropy band
    pos, neg, ref_pos, ref_neg = {}, {}, {}, {}
    evicted = False
    for i in range(n):
        before = {c: len(v) for c, v in pos.items()}
        ours = tda_mod.tda_step(pos, neg, feats[i:i + 1], logits[i:i + 1])
        ref = official_step(ref_pos, ref_neg, feats[i:i + 1], logits[i:i + 1])
        assert torch.allclose(ours, ref, atol=1e-12), i
        for mine, theirs in ((pos, ref_pos), (neg, ref_neg)):
            assert {c: [float(x[1]) for x in v] for c, v in mine.items()} == \
                   {c: [float(x[1]) for x in v] for c, v in theirs.items()}
        evicted |= any(before.get(c) == 3 == len(v) for c, v in pos.items())
    assert neg and evicted and all(len(v) <= 3 for v in pos.values())  # both caches used; full classes evict


def test_tda_run_records_its_stream_order_fixed_by_the_seed(folder, tmp_path):
    base = RunConfig(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None,
                     method="tda", seed=5)
    orders = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        r = Trainer(base.replace(seed=seed, run_dir=str(tmp_path / name))).run()
        assert r.status == "done"
        orders.append(json.loads((tmp_path / name / "metrics.json").read_text())["tda_stream"])
    assert sorted(orders[0]) == list(range(24)) and orders[0] == orders[1] != orders[2]


@pytest.mark.parametrize("method", ["zero", "tda"])
def test_a_training_free_run_stops_like_any_other(folder, tmp_path, method):
    cfg = RunConfig(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None,
                    method=method, batch_size=1, run_dir=str(tmp_path / method),
                    options={"zero_views": 4} if method == "zero" else {})
    tr = Trainer(cfg)
    tr.add_listener(lambda e: tr.cancel() if e.kind == "progress" and e.data["phase"].startswith(("ZERO", "TDA"))
                    else None)
    assert tr.run().status == "cancelled"


def test_zero_needs_views_enough_for_its_confident_share():
    with pytest.raises(ValueError, match="zero_views"):
        RunConfig(method="zero", options={"zero_views": 3}).validate()  # 30 % of 3 views is none
    assert len(keep_confident(torch.randn(4, 3))) == 1
