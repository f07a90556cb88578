"""Decoding phone-size JPEGs only as large as the model needs (``data.load_rgb(min_side=…)``: Pillow's ``draft``,
the JPEG's DCT scaling), against a full decode, side by side in one run:

- speed: ms per 4032×3024 JPEG (q90), full decode vs draft, to the sizes the project asks for (the model's input;
  the trainer's cache, 4× it; a 448-px view);
- what it changes: the image features (cosine between the two decodes' features) and the predictions (share equal)
  of the built-in model on Shapes · photo images blown up to phone size (with sensor-like noise, so that the JPEG
  holds fine detail), and of a random-init ViT-B-32 at 224 px (numbers only: its predictions mean nothing).

    python bench/decode.py            # 40 photos
    python bench/decode.py --quick    # 6 photos (the test suite runs this)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from ueo_core.data import ImageDataset, load_rgb  # noqa: E402

PHONE = (4032, 3024)


def phone_photos(src: list[str], out: Path, seed: int = 0) -> list[str]:
    """Each source image blown up to 4032×3024 with a little noise, saved as a q90 JPEG (as a phone does)."""
    rng = np.random.default_rng(seed)
    files = []
    for i, p in enumerate(src):
        img = Image.open(p).convert("RGB").resize(PHONE, Image.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, size=(PHONE[1], PHONE[0], 3), dtype=np.int16)
        f = out / f"IMG_{i:04d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(f, "JPEG", quality=90)
        files.append(str(f))
    return files


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t0)


def paired_ms(files: list[str], slow, fast) -> tuple[float, float]:
    """Median ms of ``slow(f)`` and ``fast(f)`` over the files, the two timed one after the other on each file (a
    shared machine's load then weighs on both alike)."""
    pairs = [(_ms(lambda: slow(f)), _ms(lambda: fast(f))) for f in files]
    return float(np.median([p[0] for p in pairs])), float(np.median([p[1] for p in pairs]))


def pipeline_ms(loaded, files: list[str]) -> tuple[float, float]:
    """Median ms per photo of the dataset item a feature pass reads (decode + the model's transform), full decode
    and draft to the model's input, paired per photo."""
    full = ImageDataset(files, loaded.preprocess)
    draft = ImageDataset(files, loaded.preprocess, min_side=loaded.image_size)
    at = {f: i for i, f in enumerate(files)}
    return paired_ms(files, lambda f: full[at[f]], lambda f: draft[at[f]])


def features(loaded, files: list[str], min_side) -> torch.Tensor:
    from ueo_core.train.features import encode_images
    return encode_images(loaded, ImageDataset(files, loaded.preprocess, min_side=min_side), 16).float()


def agreement(loaded, files: list[str], classes: list[str]) -> dict:
    """Features and zero-shot predictions of the same photos, full decode vs draft to the model's input."""
    from ueo_core.prompts import PromptLearner
    full, draft = features(loaded, files, None), features(loaded, files, loaded.image_size)
    cos = torch.nn.functional.cosine_similarity(full, draft, dim=1)
    with torch.no_grad():
        text = PromptLearner(loaded, classes).to(loaded.device)(normalize=True).float()
    same = ((full @ text.T).argmax(1) == (draft @ text.T).argmax(1)).float().mean().item()
    return {"min cosine": cos.min().item(), "mean cosine": cos.mean().item(), "same prediction": same}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 photos (a check that it runs)")
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args(argv)
    n = 6 if args.quick else args.n
    torch.manual_seed(0)
    from ueo_core.models import load_model
    from ueo_core.shapes import DEFAULT_PRIOR, SHAPES, shapes_folder
    root = shapes_folder("photo")
    src = sorted(str(p) for p in root.rglob("*.png"))[:: max(1, len(list(root.rglob("*.png"))) // n)][:n]
    with tempfile.TemporaryDirectory() as tmp:
        files = phone_photos(src, Path(tmp))
        if args.quick:
            from quick import QUICK_NOTE
            print(QUICK_NOTE)
        print(f"{len(files)} JPEGs of {PHONE[0]}×{PHONE[1]} (q90), {torch.get_num_threads()} threads\n")
        print("| decode to (median per photo) | full ms | draft ms | ratio | decoded shorter side |\n"
              "|---|---|---|---|---|")
        for what, side in (("the built-in model (64 px)", 64), ("ViT-B-32's input (224 px)", 224),
                           ("a 448-px view", 448), ("the trainer's cache (896)", 896)):
            full, d = paired_ms(files, lambda f: load_rgb(f), lambda f, s=side: load_rgb(f, s))
            got = min(load_rgb(files[0], side).size)
            print(f"| {what} | {full:.0f} | {d:.0f} | {full / d:.1f}× | {got} |")
        builtin = load_model("ueo-shapes", pretrained="builtin", device="cpu")
        vit = load_model("ViT-B-32", pretrained=None, device="cpu", seed=0)
        print("\n| a pass: decode + the model's transform (median per photo) | full ms | draft ms | ratio |\n"
              "|---|---|---|---|")
        for name, loaded in (("built-in model (64 px)", builtin), ("ViT-B-32 (224 px)", vit)):
            ms = pipeline_ms(loaded, files)
            print(f"| {name} | {ms[0]:.0f} | {ms[1]:.0f} | {ms[0] / ms[1]:.1f}× |")
        print("\n| draft vs full decode, same photos | min cosine | mean cosine | same prediction |\n"
              "|---|---|---|---|")
        for name, loaded, classes in (("built-in model, Shapes prior", builtin, list(DEFAULT_PRIOR)),
                                      ("ViT-B-32 random init", vit, list(SHAPES))):
            a = agreement(loaded, files, classes)
            print(f"| {name} | {a['min cosine']:.5f} | {a['mean cosine']:.5f} | {100 * a['same prediction']:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
