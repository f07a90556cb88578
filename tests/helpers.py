"""Small synthetic image folders for tests (made on the fly; no data committed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}


def make_folder(root: Path, classes=("red", "green", "blue"), per_class: int = 6, size: int = 40, seed: int = 0) -> Path:
    """root/<class>/img_k.png: noisy images whose mean colour depends on the class."""
    rng = np.random.default_rng(seed)
    for c in classes:
        d = Path(root) / c
        d.mkdir(parents=True, exist_ok=True)
        base = np.array(COLORS.get(c, (128, 128, 128)), dtype=np.float64)
        for k in range(per_class):
            arr = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"img_{k}.png")
    return Path(root)
