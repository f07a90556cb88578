import hashlib
import json

import numpy as np
import pytest
import torch

from ueo_core.data import load_data
from ueo_core.models import BUILTIN_CHECKPOINT, BUILTIN_MODEL, load_model
from ueo_core.shapes import DEFAULT_PRIOR, DOMAINS, SHAPES, render, shapes_folder


def test_shapes_are_deterministic_and_domains_differ():
    a, _ = render("star", "photo", np.random.default_rng(3))
    b, _ = render("star", "photo", np.random.default_rng(3))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    imgs = {d: np.asarray(render("star", d, np.random.default_rng(3))[0], dtype=float) for d in DOMAINS}
    assert imgs["flat"].shape == (64, 64, 3)
    for d in ("sketch", "photo"):  # a real shift: pixel statistics differ from the source domain
        assert np.abs(imgs[d] - imgs["flat"]).mean() > 20


def test_shapes_folder_is_an_ordinary_image_folder(tmp_path):
    root = shapes_folder("sketch", n_per_class=3, root=tmp_path)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SHAPES)
    assert len(SHAPES) >= 8 and len(DOMAINS) >= 3
    again = shapes_folder("sketch", n_per_class=3, root=tmp_path)  # cached: not regenerated
    assert again == root
    ims = load_data(str(root), preset="shapes")
    assert ims.classes == list(DEFAULT_PRIOR) and len(ims) == 24 and (ims.labels == -1).sum() == 6
    with pytest.raises(ValueError, match="Unknown Shapes domain"):
        shapes_folder("nope", root=tmp_path)


def test_shapes_spec_defaults_to_open_set_split(tmp_path, monkeypatch):
    monkeypatch.setenv("UEO_CACHE", str(tmp_path))
    ims = load_data("shapes:flat")
    assert ims.classes == list(DEFAULT_PRIOR) and ims.has_unknown and str(tmp_path) in str(ims.root)


def test_builtin_checkpoint_matches_its_card():
    card = json.loads(BUILTIN_CHECKPOINT.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(BUILTIN_CHECKPOINT.read_bytes()).hexdigest()
    assert BUILTIN_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    assert card["model"] == BUILTIN_MODEL and "command" in card and "seed" in card


def test_builtin_model_loads_like_any_local_checkpoint():
    a = load_model(BUILTIN_MODEL, pretrained="builtin")
    b = load_model(BUILTIN_MODEL, checkpoint=BUILTIN_CHECKPOINT)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.image_size == 64


def test_short_ueo_run_on_builtin_model_improves_a_shifted_domain(tmp_path, monkeypatch):
    """The shipped model on the unlabeled sketch domain (6 shapes known, 2 unknown): UEO raises AUROC and known
    accuracy over zero-shot, and keeps plain entropy minimisation's collapse away (fixed seeds; not timed)."""
    from ueo_core.config import RunConfig
    from ueo_core.trainer import Trainer
    monkeypatch.setenv("UEO_CACHE", str(tmp_path))
    ims = load_data("shapes:sketch")
    results = {}
    for method in ("ueo", "entropy"):
        cfg = RunConfig(data="shapes:sketch", method=method, epochs=5, batch_size=64, lr_prompt=1e-2,
                        lr_visual=1e-2, seed=2023)
        results[method] = Trainer(cfg, image_set=ims).run()
    ueo = results["ueo"]
    assert ueo.metrics["auroc"] > ueo.metrics_before["auroc"] + 0.05
    assert ueo.metrics["gacc"] > ueo.metrics_before["gacc"] + 0.05
    assert results["entropy"].metrics["auroc"] < ueo.metrics["auroc"]
