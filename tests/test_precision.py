"""Inference precision (``--precision auto|fp32|bf16``): bf16 autocast for the no-grad feature passes where the
device has native bf16, fp32 training steps on the CPU, and agreement of bf16 with fp32."""
import numpy as np
import pytest
import torch

from ueo_core import models
from ueo_core.config import RunConfig
from ueo_core.models import TINY_MODEL, autocast, inference_autocast, load_model
from ueo_core.train import Trainer

NATIVE = "this CPU has AVX-512 BF16"


def test_auto_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch):
    monkeypatch.setattr(models, "native_bf16", lambda device: None)
    plain = load_model(TINY_MODEL, device="cpu")
    assert (plain.precision, plain.precision_why) == ("fp32", "this CPU has no native bf16")
    monkeypatch.setattr(models, "native_bf16", lambda device: NATIVE)
    native = load_model(TINY_MODEL, device="cpu")
    assert (native.precision, native.precision_why) == ("bf16", NATIVE)
    assert native.describe()["precision"] == "bf16"
    forced = load_model(TINY_MODEL, device="cpu", precision="fp32")
    assert forced.precision == "fp32"                                # --precision fp32 wins over native bf16
    assert native.with_precision("fp32").precision == "fp32" and native.precision == "bf16"  # a copy, not changed
    assert native.with_precision("auto") is native


def test_an_invalid_precision_is_refused_in_words():
    with pytest.raises(ValueError, match=r"Option 'precision' \(--precision\) must be one of auto, fp32, bf16 "
                                         r"\(got 'fp16'\)"):
        RunConfig(data="x", precision="fp16").validate()
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        load_model(TINY_MODEL, device="cpu", precision="half")
    from ueo_core.cli_parser import build_parser
    assert build_parser().parse_args(["train", "d"]).precision == "auto"
    assert build_parser().parse_args(["eval", "d", "--precision", "fp32"]).precision == "fp32"


def test_feature_cache_key_includes_the_precision(tiny, tmp_path):
    from ueo_core.embed import feature_key
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    assert feature_key(tiny.with_precision("fp32"), [str(f)]) != feature_key(tiny.with_precision("bf16"), [str(f)])


def test_inference_passes_run_in_bf16_and_training_steps_in_fp32(folder, monkeypatch):
    """Under bf16 on the CPU, every no-grad image pass is autocast to bf16 and every training step is not."""
    monkeypatch.setattr(models, "native_bf16", lambda device: NATIVE)
    cfg = RunConfig(data=str(folder), prior=["red", "green", "blue"], model=TINY_MODEL, pretrained=None, device="cpu",
                    epochs=1, batch_size=8, fast_mode=None)
    tr = Trainer(cfg)
    tr.setup()
    assert tr.loaded.precision == "bf16" and tr.summary()["model"]["precision"] == "bf16"
    seen, encode = [], tr.loaded.model.encode_image

    def recording(*a, **kw):
        seen.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu")))
        return encode(*a, **kw)
    monkeypatch.setattr(tr.loaded.model, "encode_image", recording)
    assert tr.run().status == "done"
    assert {s for s in seen if not s[0]} == {(False, True)}     # evaluations (zero-shot, epoch): bf16
    assert {s for s in seen if s[0]} == {(True, False)}         # training steps: fp32
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    with inference_autocast(tr.loaded.with_precision("fp32")):
        assert not torch.is_autocast_enabled("cpu")


def test_a_given_model_takes_the_runs_precision_and_is_left_unchanged(tiny, folder):
    cfg = RunConfig(data=str(folder), prior=["red", "green", "blue"], device="cpu", precision="bf16")
    tr = Trainer(cfg, loaded=tiny)
    tr.setup()
    assert tr.loaded.precision == "bf16" and tr.loaded.model is tiny.model and tiny.precision == "fp32"
    assert tr.config.to_dict()["precision"] == "bf16"


def _auroc_and_predictions(precision: str):
    from ueo_core.shapes import SHAPES, shapes_folder
    cfg = RunConfig(data=str(shapes_folder("sketch")), prior=list(SHAPES[:6]), method="zero_shot", device="cpu",
                    precision=precision)
    r = Trainer(cfg).run()
    return r.metrics["auroc"], r.probs.argmax(1)


def test_bf16_agrees_with_fp32_on_the_builtin_model():
    """Built-in model, Shapes sketch (540 images, 3 of 9 shapes unknown): >= 99.5 % of the predictions the same and
    the MSP known-vs-unknown AUROC within 0.002."""
    auroc32, pred32 = _auroc_and_predictions("fp32")
    auroc16, pred16 = _auroc_and_predictions("bf16")
    assert (pred32 == pred16).mean() >= 0.995
    assert abs(auroc32 - auroc16) <= 0.002


@pytest.mark.slow
def test_bf16_agrees_with_fp32_on_a_random_vit_b32():
    """Random-init ViT-B-32 on 36 Shapes sketches: the same predictions against the 9 shape names and features with
    cosine >= 0.99 (bf16 is emulated on a CPU without native bf16: slow)."""
    from ueo_core.data import ImageDataset
    from ueo_core.shapes import SHAPES, shapes_folder
    from ueo_core.train.features import encode_images
    loaded = load_model("ViT-B-32", pretrained=None, device="cpu", precision="fp32")
    folder = shapes_folder("sketch")
    files = [str(p) for s in SHAPES for p in sorted((folder / s).glob("*.png"))[:4]]
    images = ImageDataset(files, loaded.preprocess)
    tokens = loaded.tokenizer([f"a sketch of a {s}" for s in SHAPES])
    out = {}
    for precision in ("fp32", "bf16"):
        m = loaded.with_precision(precision)
        with torch.no_grad(), inference_autocast(m):
            text = m.model.encode_text(tokens, normalize=True).float()
        feats = encode_images(m, images, 32)
        out[precision] = feats, (feats @ text.T).argmax(1)
    cos = (out["fp32"][0] * out["bf16"][0]).sum(1)
    assert not torch.equal(out["fp32"][0], out["bf16"][0])  # bf16 really ran
    assert (out["fp32"][1] == out["bf16"][1]).float().mean() >= 0.995
    assert float(cos.min()) >= 0.99 and float(cos.mean()) >= 0.999
    # normalised in bf16 (8-bit mantissa): unit length to within 2**-8, not to fp32's precision
    np.testing.assert_allclose(torch.linalg.norm(out["bf16"][0], dim=1).numpy(), 1.0, atol=2 ** -8)
