import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ueo_core.config import RunConfig
from ueo_core.methods import Step, get_method
from ueo_core.methods.clipood import ClipoodContext
from ueo_core.methods.options import namespace
from ueo_core.methods.clipood import BetaMovingAverage, mms_logits
from ueo_core.models import ModelLoadError, load_model
from ueo_core.runs import load_checkpoint
from ueo_core.train import Trainer

from helpers import make_folder


def unit(v):
    v = torch.tensor(v, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


F_ = unit([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3]])
T_ = unit([[1.0, 0.0, 0.0], [0.9, 0.43, 0.0], [0.0, 0.0, 1.0]])  # class 1 is close to class 0; class 2 far


def test_mms_against_hand_computation():
    labels = torch.tensor([0, 2])
    s, lam = 10.0, 0.3
    out = mms_logits(F_, T_, labels, s, lam)
    for i, y in enumerate(labels.tolist()):
        for j in range(3):
            cos_fj = sum(F_[i, d].item() * T_[j, d].item() for d in range(3))
            cos_yj = sum(T_[y, d].item() * T_[j, d].item() for d in range(3))
            assert out[i, j].item() == pytest.approx(s * (cos_fj - lam * cos_yj), abs=1e-12)
    method = get_method("clipood")
    ctx = ClipoodContext(text=None, options=namespace(method.options, {"margin": lam}), label_index=torch.arange(3))
    loss, stats = method.loss(Step(probs=torch.softmax(s * F_ @ T_.T, 1), features=F_, text=T_, labels=labels,
                                   scale=s), ctx)
    assert loss.item() == pytest.approx(F.cross_entropy(out, labels).item(), abs=1e-12)
    assert float(stats["train_acc"]) == 0.5


def test_margins_are_class_adaptive():
    """Relative to the true class, class j's logit is lowered by s*lam*(1 - cos(t_y, t_j)):
    a class similar to the true one gets a small margin, a dissimilar one a large margin."""
    s, lam = 10.0, 0.3
    labels = torch.tensor([0, 0])
    plain = s * F_ @ T_.T
    mms = mms_logits(F_, T_, labels, s, lam)
    gap_plain = plain[:, :1] - plain[:, 1:]  # how far the true class leads class j
    gap_mms = mms[:, :1] - mms[:, 1:]
    margin = gap_plain - gap_mms             # the lead the true class must additionally win by
    expected = s * lam * (1 - (T_[0] @ T_[1:].T))
    assert torch.allclose(margin, expected.expand_as(margin), atol=1e-12)
    assert margin[0, 0] < margin[0, 1]  # close class 1: smaller margin than far class 2


def test_bma_equals_explicit_weighted_average_of_snapshots():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    total = 7
    bma = BetaMovingAverage({"p": p}, total_steps=total, beta=0.5)
    snaps = [p.detach().clone()]
    for _ in range(total):
        with torch.no_grad():
            p.add_(torch.randn(5))
        bma.update()
        snaps.append(p.detach().clone())
    from scipy.stats import beta
    w = np.array([beta(0.5, 0.5).pdf((t + 0.5) / (total + 1)) for t in range(total + 1)])
    expected = sum(wi * si.double() for wi, si in zip(w, snaps)) / w.sum()
    assert torch.allclose(bma.avg["p"].double(), expected, atol=1e-5)
    assert w[0] > w[total // 2] < w[-1]  # U-shaped: early and late snapshots weigh most
    live = p.detach().clone()
    bma.swap()
    assert torch.allclose(p.detach(), bma.avg["p"] * 0 + expected.float(), atol=1e-5)
    assert torch.equal(bma.avg["p"], live)


@pytest.fixture
def domains(tmp_path):
    src = make_folder(tmp_path / "src", classes=("red", "green", "blue", "yellow"), per_class=6, seed=1)
    tgt = make_folder(tmp_path / "tgt", classes=("red", "green", "blue", "yellow"), per_class=6, seed=2)
    return src, tgt


def test_clipood_run_changes_only_the_image_tower_and_keeps_bma(domains, tmp_path):
    src, tgt = domains
    loaded = load_model("ueo-tiny", seed=0)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    cfg = RunConfig(method="clipood", data=str(tgt), source=[str(src)], prior=["red", "green", "blue"],
                               model="ueo-tiny", pretrained=None, epochs=2, batch_size=4, lr_visual=1e-3,
                               run_dir=str(tmp_path / "run"), options={"iters_per_epoch": 0})
    o = cfg.options
    assert o["weight_decay"] == 0.1 and o["margin"] == 0.3 and o["bma_beta"] == 0.5
    events, snaps = [], []

    def snapshot(ev):  # the live image tower before training and after every step, inside the real run
        if ev.kind in ("start", "step"):
            snaps.append({n: p.detach().clone().double() for n, p in loaded.model.visual.named_parameters()})
    tr = Trainer(cfg, loaded=loaded, listeners=[events.append, snapshot])
    r = tr.run()
    after = loaded.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    visual = {k for k in before if k.startswith("visual.")}
    assert changed and changed <= visual and len(changed) > len(visual) / 2
    assert not any("running_" in k for k in changed)
    assert tr.prompt.ctx.grad is None
    kinds = [e.kind for e in events]
    assert kinds.count("bma") == 1 and kinds[-1] == "done"
    assert "last" in (tmp_path / "run" / "metrics.json").read_text()
    assert set(r.metrics) >= {"gacc", "auroc", "acc_seen", "acc_unseen"}
    assert math.isnan(r.metrics["acc_unseen"]) or r.metrics["acc_unseen"] is None  # every prior class was seen
    tensors, _ = load_checkpoint(tmp_path / "run")
    # the checkpoint holds the whole (moving-average) image tower
    assert {f"visual.{n}" for n, _ in loaded.model.visual.named_parameters()} <= set(tensors)
    # ... and it is the Beta(0.5, 0.5)-weighted average of the snapshots of this run (initial one included)
    total = len(snaps) - 1
    assert total == sum(1 for k in kinds if k == "step") and total > 2
    from scipy.stats import beta
    w = [beta(0.5, 0.5).pdf((t + 0.5) / (total + 1)) for t in range(total + 1)]
    differs_from_last = False
    for n, _ in loaded.model.visual.named_parameters():
        expected = sum(wi * s[n] for wi, s in zip(w, snaps)) / sum(w)
        assert torch.allclose(tensors[f"visual.{n}"].double(), expected, atol=1e-5), n
        differs_from_last |= not torch.allclose(expected, snaps[-1][n], atol=1e-6)
    assert differs_from_last  # the average, not the last model


def test_clipood_reports_seen_and_unseen_classes(domains, tmp_path):
    src, tgt = domains
    import shutil
    shutil.rmtree(src / "blue")  # blue is named in the prior but has no training images
    cfg = RunConfig(method="clipood", data=str(tgt), source=[str(src)], prior=["red", "green", "blue"],
                               model="ueo-tiny", pretrained=None, epochs=1, batch_size=4, options={"iters_per_epoch": 0})
    tr = Trainer(cfg)
    r = tr.run()
    assert tr.seen == [0, 1] and r.metrics["acc_unseen"] is not None and 0 <= r.metrics["acc_unseen"] <= 1


def test_clipood_needs_sources_and_refuses_when_memory_is_short(domains, monkeypatch):
    src, tgt = domains
    base = dict(data=str(tgt), prior=["red", "green"], model="ueo-tiny", pretrained=None, epochs=1)
    with pytest.raises(Exception, match="labelled source folders"):
        Trainer(RunConfig(method="clipood", **base)).run()
    monkeypatch.setattr("ueo_core.models.available_memory", lambda device: 1_000_000)  # 1 MB free
    with pytest.raises(ModelLoadError, match="smaller batch size"):
        Trainer(RunConfig(method="clipood", source=[str(src)], **base)).run()


def test_clipood_gets_its_official_defaults_on_every_path():
    """thuml/CLIPood: 10 epochs of 500 steps (main.py --iters-per-epoch), batch 12, AdamW lr 5e-6 (scripts.sh, PACS);
    a plain RunConfig, replace(method=...) and a saved config all agree."""
    official = {"epochs": 10, "batch_size": 12, "lr_visual": 5e-6, "lr_prompt": 0.0, "iters_per_epoch": 500}
    ueo = {"epochs": 50, "batch_size": 64, "lr_visual": 1e-4, "lr_prompt": 1e-4, "iters_per_epoch": None}
    got = lambda c: {k: getattr(c, k, None) if k != "iters_per_epoch" else c.options.get(k)  # noqa: E731
                     for k in official}
    assert got(RunConfig(method="clipood")) == official
    assert got(RunConfig(data="x").replace(method="clipood")) == official
    assert got(RunConfig(method="clipood").replace(method="ueo")) == ueo
    assert got(RunConfig(method="clipood").replace(seed=1).replace(method="im")) == ueo
    mine = RunConfig(method="clipood", lr_visual=1e-4, options={"iters_per_epoch": 7})  # what is set explicitly stays
    assert got(mine) == {**official, "lr_visual": 1e-4, "iters_per_epoch": 7}
    assert got(mine.replace(method="ueo")) == {**ueo, "lr_visual": 1e-4}  # (UEO has no steps per epoch)
    assert RunConfig.from_dict(mine.to_dict()) == mine
    old = {k: v for k, v in RunConfig(method="clipood").to_dict().items() if k != "options"}
    old.update(iters_per_epoch=None, margin=0.2, trade=1.0)  # saved when they were fields and None meant one pass
    assert RunConfig.from_dict(old).options == {"iters_per_epoch": 0, "margin": 0.2, "bma_beta": 0.5,
                                                "weight_decay": 0.1}


def test_clipood_steps_per_epoch_follow_the_config(domains):
    src, tgt = domains
    base = dict(data=str(tgt), source=[str(src)], prior=["red", "green", "blue"], model="ueo-tiny",
                pretrained=None, epochs=1, batch_size=4)
    for iters in (None, 0, 3):
        events = []
        cfg = RunConfig(method="clipood", **base, options={} if iters is None else {"iters_per_epoch": iters})
        tr = Trainer(cfg, listeners=[events.append])
        if iters is None:  # the official 500: one step is enough to see the plan
            tr.listeners.append(lambda ev: tr.cancel() if ev.kind == "step" else None)
        tr.run()
        start = next(e for e in events if e.kind == "start")
        one_pass = math.ceil(max(start.data["source_images"]) / 4)
        expected = {None: 500, 0: one_pass, 3: 3}[iters]
        assert one_pass not in (3, 500) and start.data["steps_per_epoch"] == expected
        assert start.data["total_steps"] == expected
        if iters is not None:  # run to the end: exactly that many optimiser steps
            assert sum(e.kind == "step" for e in events) == expected
