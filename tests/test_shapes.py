import hashlib
import json

import numpy as np
import pytest
import torch

from ueo_core.data import load_data
from ueo_core.models import BUILTIN_CHECKPOINT, BUILTIN_MODEL, load_model
from ueo_core.shapes import CONCEPTS, DEFAULT_PRIOR, DOMAINS, SOURCE_DOMAIN, SHAPES, STYLES, render, render_pretrain, shapes_folder


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
    n_unknown = len(SHAPES) - len(DEFAULT_PRIOR)
    assert ims.classes == list(DEFAULT_PRIOR) and len(ims) == 3 * len(SHAPES) and (ims.labels == -1).sum() == 3 * n_unknown
    assert n_unknown >= 2 and set(SHAPES) <= set(CONCEPTS)  # the unknowns are concepts the model knows by name
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


def test_pretraining_styles_and_concepts_render():
    for style in STYLES:
        img, words = render_pretrain("lightning bolt", style, np.random.default_rng(1))
        assert img.size == (64, 64) and words["s"] == "lightning bolt" and words["style"] == style
    for concept in CONCEPTS:  # every concept draws something in the middle of the image
        arr = np.asarray(render(concept, "flat", np.random.default_rng(2))[0], dtype=float)
        assert arr[16:48, 16:48].std() > 10, concept


def _zero_shot_and_runs(domain, root, methods=("ueo", "im")):
    """The shipped model on the demo folder (60 images per shape, seed 0, as the app's) with the app's quick
    settings, one seed."""
    from ueo_core.config import RunConfig
    from studio.advice import suggested_settings
    from ueo_core.train import Trainer
    ims = load_data(str(shapes_folder(domain, n_per_class=60, root=root)), preset="shapes")
    q = suggested_settings(BUILTIN_MODEL)
    out = {}
    for method in methods:
        cfg = RunConfig(data=str(ims.root), method=method, epochs=q["epochs"], batch_size=q["batch_size"],
                        lr_prompt=q["lr_prompt"], lr_visual=q["lr_visual"], seed=2023)
        out[method] = Trainer(cfg, loaded=load_model(BUILTIN_MODEL, pretrained="builtin", seed=2023),
                              image_set=ims).run()
    return out


@pytest.mark.parametrize("domain", [d for d in DOMAINS if d != SOURCE_DOMAIN])
def test_builtin_model_zero_shot_behaves_like_clip_on_shifted_domains(domain, tmp_path):
    """Property 2 of the world (issue 9), at small scale: shifted but not hopeless, and the zero-shot confidence
    already separates known from unknown shapes without being saturated."""
    r = _zero_shot_and_runs(domain, tmp_path, methods=("zero_shot",))["zero_shot"]
    m = r.metrics
    assert 0.45 <= m["gacc"] <= 0.85, m
    assert m["auroc"] >= 0.70, m
    assert (r.probs.max(1) > 0.99).mean() < 0.5


def test_ueo_teaches_the_lesson_on_the_default_domain(tmp_path):
    """Property 4 on the app's default domain, at small scale (one seed instead of the table's three; not timed):
    UEO beats zero-shot on known accuracy and AUROC, and beats IM (UEO without the weights) on AUROC and H-score.
    Strictly: with uniform weights UEO *is* IM, so a broken weighting cannot pass as a tie."""
    from studio.state import DEFAULT_DATA
    domain = DEFAULT_DATA["spec"].split(":")[1]
    runs = _zero_shot_and_runs(domain, tmp_path)
    ueo, im = runs["ueo"], runs["im"]
    assert ueo.metrics["gacc"] > ueo.metrics_before["gacc"] + 0.03
    assert ueo.metrics["auroc"] > ueo.metrics_before["auroc"] + 0.01
    assert ueo.metrics["auroc"] > im.metrics["auroc"] and ueo.metrics["h_score"] > im.metrics["h_score"]
