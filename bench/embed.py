"""Embeddings at scale: image-feature throughput (first and cached) and UMAP time for up to 10,000 images.

    python bench/embed.py                       # 10,000 Shapes images, built-in model

The first call runs the image tower; the second reads the on-disk cache; UMAP is timed first and cached.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ueo_core.embed import image_features, umap_2d  # noqa: E402
from ueo_core.models import load_model  # noqa: E402
from ueo_core.shapes import DOMAINS, shapes_folder  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args(argv)
    per = -(-args.n // (len(DOMAINS) * 8))
    t = time.time()
    files = sorted(str(p) for d in DOMAINS for p in shapes_folder(d, n_per_class=per).rglob("*.png"))[: args.n]
    print(f"{len(files)} images ready in {time.time() - t:.1f} s")
    loaded = load_model("ueo-shapes", pretrained="builtin")
    with tempfile.TemporaryDirectory() as cache:
        for label in ("first", "cached"):
            t = time.time()
            feats = image_features(loaded, files, cache_dir=cache)
            dt = time.time() - t
            print(f"features ({label}): {dt:7.2f} s  = {len(files) / dt:9.1f} img/s")
        for label in ("first", "cached"):
            t = time.time()
            xy = umap_2d(feats, cache_dir=cache)
            print(f"UMAP of {len(xy)} points ({label}): {time.time() - t:7.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
