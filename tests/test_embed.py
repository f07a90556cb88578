import numpy as np
import pytest

import ueo_core.train.features as trainer_mod
from ueo_core.data import load_folder, load_preset
from ueo_core.embed import image_features, params_digest, umap_2d
from ueo_core.runs import load_checkpoint
from ueo_core.train import apply_state

from conftest import SHARED_DATA


def count_encoded(monkeypatch) -> list[int]:
    """Patches the image tower's encoder to record how many images each call encodes."""
    calls, real = [], trainer_mod.encode_images

    def counted(loaded, dataset, *a, **k):
        calls.append(len(dataset))
        return real(loaded, dataset, *a, **k)
    monkeypatch.setattr(trainer_mod, "encode_images", counted)
    return calls


def test_features_are_stored_by_content(tiny, folder, tmp_path, monkeypatch):
    import os
    import shutil
    files = load_folder(folder).files
    calls = count_encoded(monkeypatch)
    a = image_features(tiny, files, cache_dir=tmp_path)
    assert a.shape == (24, 32) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert calls == [24] and (tmp_path / "features.sqlite").is_file()
    b = image_features(tiny, files, cache_dir=tmp_path)  # second call: from the store, the tower does not run
    assert np.array_equal(a, b) and calls == [24]
    image_features(tiny, files, variant="adapted", cache_dir=tmp_path)  # another tower state: encoded
    assert calls == [24, 24]
    # the same photo under another path (a copy, another upload) is the same content: not encoded again
    copy = tmp_path / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(files[3], copy)
    c = image_features(tiny, [str(copy), *files[:2]], cache_dir=tmp_path)
    assert calls == [24, 24] and np.array_equal(c[0], a[3])
    # touched (new time, same bytes): hashed again, still the same content
    os.utime(files[0], ns=(1, 1))
    assert np.array_equal(image_features(tiny, files, cache_dir=tmp_path), a) and calls == [24, 24]
    # changed in place: only that image is encoded again, and its feature is the new content's
    from PIL import Image
    Image.new("RGB", (40, 40), (0, 0, 0)).save(files[5])
    d = image_features(tiny, files, cache_dir=tmp_path)
    assert calls == [24, 24, 1] and not np.allclose(d[5], a[5]) and np.array_equal(np.delete(d, 5, 0),
                                                                                   np.delete(a, 5, 0))
    # one content twice in one call: encoded once
    dup = tmp_path / "dup.png"
    Image.new("RGB", (40, 40), (9, 9, 9)).save(dup)
    e = image_features(tiny, [str(dup), str(dup)], cache_dir=tmp_path)
    assert calls[-1] == 1 and np.array_equal(e[0], e[1])


def test_a_stored_feature_is_what_the_tower_gives(tiny, folder, tmp_path):
    """The store hands back exactly what a direct pass computes (order kept), at either precision."""
    from ueo_core.data import ImageDataset
    files = load_folder(folder).files
    for p in ("fp32", "bf16"):
        lm = tiny.with_precision(p)
        direct = trainer_mod.encode_images(lm, ImageDataset(files, lm.preprocess, min_side=lm.image_size), 7)
        image_features(lm, files[::2], cache_dir=tmp_path)  # half of them stored first
        both = image_features(lm, files[::-1], cache_dir=tmp_path)  # then all, in another order
        assert np.array_equal(both[::-1], direct.numpy())


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
    after = image_features(lm, files, variant=lm.variant, cache_dir=tmp_path)
    assert lm.variant == params_digest({k[7:]: v for k, v in tensors.items() if k.startswith("visual.")})
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


def test_models_of_other_weights_never_share_features(folder, tmp_path):
    """The same architecture and tag with other weights (a random init of another seed, another local checkpoint)
    is another feature space: the store never hands one model's features to the other."""
    from ueo_core.models import load_model
    files = load_folder(folder).files[:4]
    a = image_features(load_model("ueo-tiny", seed=0), files, cache_dir=tmp_path)
    b = image_features(load_model("ueo-tiny", seed=1), files, cache_dir=tmp_path)
    assert not np.allclose(a, b)
