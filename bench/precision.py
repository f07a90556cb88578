"""Inference precision (issue 32): image features fp32 vs bf16 autocast, side by side in one run.

    python bench/precision.py            # ViT-B-32 (random init), batch 32, on the CPU; then the agreement figures
    python bench/precision.py --quick    # smoke run: the tiny model, 8 images, no built-in Shapes run

Speed: img/s of ``encode_images`` (the pass every evaluation, zero-shot and Explore use) under each precision, after
one warm-up batch, best of ``--repeats``. Agreement: the same images' features under both (cosine; predictions
against the 9 shape names), and the built-in model's zero-shot run on Shapes sketch (540 images, 3 shapes unknown):
share of the same predictions and the MSP known-vs-unknown AUROC. Without native bf16 (AVX-512 BF16 / AMX) the CPU
emulates it, and bf16 is slower: ``--precision auto`` then keeps fp32.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

from quick import QUICK_NOTE  # noqa: E402
from ueo_core.config import RunConfig  # noqa: E402
from ueo_core.data import ImageDataset  # noqa: E402
from ueo_core.models import TINY_MODEL, inference_autocast, load_model, native_bf16  # noqa: E402
from ueo_core.shapes import SHAPES, shapes_folder  # noqa: E402
from ueo_core.train import Trainer  # noqa: E402
from ueo_core.train.features import encode_images  # noqa: E402


def features(loaded, images, batch: int, repeats: int):
    """(features, img/s): one warm-up batch, then the best of ``repeats`` timed passes."""
    encode_images(loaded, torch.utils.data.Subset(images, range(min(batch, len(images)))), batch)
    best, feats = 0.0, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        feats = encode_images(loaded, images, batch)
        best = max(best, len(images) / (time.perf_counter() - t0))
    return feats, best


def shapes_run(precision: str):
    cfg = RunConfig(data=str(shapes_folder("sketch")), prior=list(SHAPES[:6]), method="zero_shot", device="cpu",
                    precision=precision)
    r = Trainer(cfg).run()
    return r.metrics["auroc"], r.probs.argmax(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--images", type=int, default=64, help="Shapes sketches encoded per precision")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke run: the tiny model, 8 images, no Shapes run")
    a = ap.parse_args(argv)
    if a.quick:
        print(QUICK_NOTE, flush=True)
        a.model, a.images, a.batch, a.repeats = TINY_MODEL, 8, 8, 1
    cpu = torch.device("cpu")
    print(f"{a.model} random init, CPU ({torch.get_num_threads()} threads), batch {a.batch}, {a.images} images; "
          f"native bf16: {native_bf16(cpu) or 'no (emulated)'}\n")
    loaded = load_model(a.model, pretrained=None, device="cpu", precision="fp32")
    folder = shapes_folder("sketch")
    files = [str(p) for k in range(a.images) for p in [sorted((folder / SHAPES[k % 9]).glob("*.png"))[k // 9]]]
    images = ImageDataset(files, loaded.preprocess)
    tokens = loaded.tokenizer([f"a sketch of a {s}" for s in SHAPES])
    out = {}
    for precision in ("fp32", "bf16"):
        m = loaded.with_precision(precision)
        feats, speed = features(m, images, a.batch, a.repeats)
        with torch.no_grad(), inference_autocast(m):
            text = m.model.encode_text(tokens, normalize=True).float()
        out[precision] = feats, (feats @ text.T).argmax(1), speed
    print("| precision | img/s | ratio |\n|---|---|---|")
    for precision in ("fp32", "bf16"):
        print(f"| {precision} | {out[precision][2]:.1f} | {out[precision][2] / out['fp32'][2]:.2f} |")
    cos = (out["fp32"][0] * out["bf16"][0]).sum(1)
    same = (out["fp32"][1] == out["bf16"][1]).float().mean()
    print("\n| agreement fp32 vs bf16 | value |\n|---|---|")
    print(f"| {a.model}: same predictions (9 shape names) | {same:.2%} "
          f"({len(set(out['fp32'][1].tolist()))} distinct classes predicted) |")
    print(f"| {a.model}: feature cosine min / mean | {cos.min():.4f} / {cos.mean():.5f} |")
    if not a.quick:
        (auc32, p32), (auc16, p16) = shapes_run("fp32"), shapes_run("bf16")
        print(f"| built-in, Shapes sketch ({len(p32)} images): same predictions | {(p32 == p16).mean():.2%} |")
        print(f"| built-in, Shapes sketch: AUROC (MSP) fp32 / bf16 | {auc32:.4f} / {auc16:.4f} "
              f"(diff {abs(auc32 - auc16):.4f}) |")
    if a.quick:
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
