"""Embeddings at scale: image-feature throughput (first and cached) and UMAP time for up to 10,000 images.

    python bench/embed.py                       # 10,000 Shapes images, built-in model
    python bench/embed.py --quick               # smoke run: 64 images

The first call runs the image tower; the second reads the on-disk cache; UMAP is timed first and cached.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quick import QUICK_NOTE  # noqa: E402
from ueo_core.embed import image_features, umap_2d  # noqa: E402
from ueo_core.models import load_model  # noqa: E402
from ueo_core.shapes import DOMAINS, shapes_folder  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 images")
    args = ap.parse_args(argv)
    if args.quick:
        print(QUICK_NOTE, flush=True)
        args.n = 64
    per = -(-args.n // (len(DOMAINS) * 8))
    t = time.time()
    files = sorted(str(p) for d in DOMAINS for p in shapes_folder(d, n_per_class=per).rglob("*.png"))[: args.n]
    print(f"{len(files)} images ready in {time.time() - t:.1f} s")
    loaded = load_model("ueo-shapes", pretrained="builtin")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for label in ("first", "cached"):
            t = time.time()
            feats = image_features(loaded, files, cache_dir=cache)
            dt = time.time() - t
            rows.append((f"features ({label})", dt, f"{len(files) / dt:.1f} img/s"))
            print(f"features ({label}): {dt:7.2f} s  = {len(files) / dt:9.1f} img/s", flush=True)
        for label in ("first", "cached"):
            t = time.time()
            xy = umap_2d(feats, cache_dir=cache)
            rows.append((f"UMAP of {len(xy)} points ({label})", time.time() - t, ""))
            print(f"UMAP of {len(xy)} points ({label}): {rows[-1][1]:7.2f} s", flush=True)
    print(f"\n{len(files)} images, ueo-shapes (built-in)\n\n| step | seconds | rate |\n|---|---|---|")
    for name, sec, rate in rows:
        print(f"| {name} | {sec:.2f} | {rate} |")
    if args.quick:
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
