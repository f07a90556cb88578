import numpy as np
import pytest

import ueo_core.train.features as trainer_mod
from ueo_core.data import load_folder, load_preset
from ueo_core.embed import image_features, params_digest, umap_2d
from ueo_core.runs import load_checkpoint
from ueo_core.train import apply_state

from conftest import SHARED_DATA


def test_features_are_cached_on_disk(tiny, folder, tmp_path, monkeypatch):
    files = load_folder(folder).files
    a = image_features(tiny, files, cache_dir=tmp_path)
    assert a.shape == (24, 32) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 1

    def boom(*a, **k):
        raise AssertionError("the image tower ran again")
    monkeypatch.setattr(trainer_mod, "encode_images", boom)
    b = image_features(tiny, files, cache_dir=tmp_path)  # second call: from the cache
    assert np.array_equal(a, b)
    with pytest.raises(AssertionError, match="ran again"):  # another variant (adapted weights): not cached
        image_features(tiny, files, variant="adapted", cache_dir=tmp_path)
    (folder / "red" / "img_0.png").touch()  # a changed file invalidates the key
    import os
    os.utime(folder / "red" / "img_0.png", ns=(1, 1))
    with pytest.raises(AssertionError, match="ran again"):
        image_features(tiny, files, cache_dir=tmp_path)


def test_umap_2d_and_cache(tmp_path):
    rng = np.random.default_rng(0)
    feats = np.r_[rng.normal(0, 1, (30, 8)) + 5, rng.normal(0, 1, (30, 8)) - 5].astype(np.float32)
    xy = umap_2d(feats, cache_dir=tmp_path)
    assert xy.shape == (60, 2)
    # two well separated groups stay separated
    d_within = np.linalg.norm(xy[:30].mean(0) - xy[:30], axis=1).mean()
    d_between = np.linalg.norm(xy[:30].mean(0) - xy[30:].mean(0))
    assert d_between > 2 * d_within
    assert np.array_equal(umap_2d(feats, cache_dir=tmp_path), xy)
    with pytest.raises(ValueError, match="at least 4"):
        umap_2d(feats[:3])


def test_after_adaptation_features_differ(tiny, folder, tmp_path):
    from ueo_core.config import RunConfig
    from ueo_core.models import load_model
    from ueo_core.train import Trainer
    cfg = RunConfig(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None, epochs=1,
                    batch_size=8, lr_visual=0.5,
                    run_dir=str(tmp_path / "run"))
    Trainer(cfg).run()
    tensors, _ = load_checkpoint(tmp_path / "run")
    lm = load_model("ueo-tiny", seed=cfg.seed)
    files = load_folder(folder).files
    before = image_features(lm, files, cache_dir=tmp_path)
    assert apply_state(lm, tensors) > 0
    after = image_features(lm, files, variant=params_digest(tensors), cache_dir=tmp_path)
    assert not np.allclose(before, after)


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "PACS").is_dir(), reason="../shared/data/PACS not present")
def test_pacs_open_set_split_and_a_short_run(tmp_path):
    from ueo_core.config import RunConfig
    from ueo_core.train import Trainer
    ims = load_preset(SHARED_DATA / "PACS" / "sketch", "pacs", "ODA")
    assert len(ims) == 860 and ims.classes == ["dog", "elephant", "giraffe", "guitar", "horse"]
    assert (ims.labels == -1).sum() == 130 + 80  # house (80 sketches) and person are unknown
    cfg = RunConfig(data=str(SHARED_DATA / "PACS" / "sketch"), preset="pacs", setting="ODA", epochs=1,
                    model="ueo-tiny", pretrained=None,
                    batch_size=64, run_dir=str(tmp_path / "run"))
    r = Trainer(cfg, image_set=ims).run()
    assert r.status == "done" and 0 <= r.metrics["auroc"] <= 1
