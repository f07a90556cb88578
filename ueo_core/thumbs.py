"""A run's thumbnails, made once on the worker (the exploration job), so that the web server never decodes an
original photo to show a map's hover or a lasso's gallery (a 12-megapixel JPEG takes ~90 ms even drafted: 48 of
them would be 4 s, the gallery's whole budget twice over).

Into ``<run>/explore/thumbs/``, in the order of the run's predictions.csv (image ``i`` of the maps is tile ``i``):

    meta.json        {"n": N, "tile": 64, "per_row": 32, "per_sheet": 1024, "sheets": k, "gallery": 128,
                      "broken": [indices that could not be read], "key": digest of the files (names, sizes, times)}
    sheet-0000.jpg   sprite sheets: ``per_row`` x ``per_row`` tiles of ``tile`` px (the map's hover reads one tile);
                     image ``i`` is on sheet ``i // per_sheet`` at row ``(i % per_sheet) // per_row``, column
                     ``i % per_row``, each image fitted into its square tile, centred on white
    g/000123.jpg     the gallery's thumbnail of image 123 (at most ``gallery`` px a side)

A sheet holds 1,024 tiles (2048 x 2048 px, ~150-300 kB): 10,000 images are 10 sheets, 100,000 are 98, and the
browser fetches only the sheets whose points are hovered. Nothing here names a server path: the page refers to
images by index. The meta file is written last, so a reader that finds it finds every sheet.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

from PIL import Image

from .data import load_rgb
from .runs import write_json_atomic

FOLDER = "thumbs"
META = "meta.json"
TILE, PER_ROW, GALLERY = 64, 32, 128
BACKGROUND = (255, 255, 255)
BROKEN_COLOUR = (206, 212, 218)  # a file that could not be read: a grey tile (and its index in meta's "broken")


def sheet_name(k: int) -> str:
    return f"sheet-{k:04d}.jpg"


def gallery_name(i: int) -> str:
    return f"g/{i:06d}.jpg"


def files_key(paths: Sequence[str]) -> str:
    """What the thumbnails were made from: each file's name, size and modification time (a file replaced since
    gets new thumbnails; reading every file's bytes to hash them would cost what the thumbnails cost)."""
    h = hashlib.sha256()
    for p in paths:
        try:
            s = os.stat(p)
            h.update(f"{p}\0{s.st_size}\0{s.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:24]


def _fit(img: Image.Image, side: int) -> Image.Image:
    """``img`` shrunk to fit ``side`` (aspect kept), centred on a ``side`` x ``side`` white square."""
    img = img.copy()
    img.thumbnail((side, side), Image.Resampling.BILINEAR)
    tile = Image.new("RGB", (side, side), BACKGROUND)
    tile.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return tile


def _one(path: str, gallery: int) -> Optional[Image.Image]:
    """The gallery-size thumbnail of one image (None where it cannot be read): decoded drafted at about the size
    needed (``load_rgb``), never in full."""
    try:
        img = load_rgb(path, min_side=gallery)
        img.thumbnail((gallery, gallery), Image.Resampling.BILINEAR)
        return img
    except Exception:  # noqa: BLE001 (a broken or vanished file: a grey tile, listed in meta's "broken")
        return None


def read_meta(run_explore: str | Path) -> Optional[dict]:
    """``meta.json`` of ``<run>/explore/thumbs`` (None until the thumbnails are complete)."""
    try:
        return json.loads((Path(run_explore) / FOLDER / META).read_text())
    except (OSError, ValueError):
        return None


def make(paths: Sequence[str], run_explore: str | Path, tile: int = TILE, per_row: int = PER_ROW,
         gallery: int = GALLERY, threads: int = 2,
         progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """The thumbnails of ``paths`` (in that order) into ``<run_explore>/thumbs/``; returns the meta. Made once:
    when the meta names the same files (``files_key``) and sizes, nothing is decoded again. ``progress(done,
    total)`` follows the images."""
    out = Path(run_explore) / FOLDER
    key = files_key(paths)
    old = read_meta(run_explore)
    if old and old.get("key") == key and (old.get("tile"), old.get("per_row"), old.get("gallery")) == (
            tile, per_row, gallery) and old.get("n") == len(paths):
        if progress:
            progress(len(paths), len(paths))
        return old
    (out / "g").mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)
    per_sheet = per_row * per_row
    n = len(paths)
    sheets = (n + per_sheet - 1) // per_sheet
    broken: list[int] = []
    with ThreadPoolExecutor(max(1, threads)) as pool:  # Pillow decodes without the GIL: both cores help
        for k in range(sheets):
            lo, hi = k * per_sheet, min(n, (k + 1) * per_sheet)
            rows = (hi - lo + per_row - 1) // per_row
            sheet = Image.new("RGB", (per_row * tile, rows * tile), BACKGROUND)
            for j, img in enumerate(pool.map(lambda p: _one(str(p), gallery), paths[lo:hi])):
                i = lo + j
                if img is None:
                    broken.append(i)
                    img = Image.new("RGB", (gallery, gallery), BROKEN_COLOUR)
                img.save(out / gallery_name(i), "JPEG", quality=85)
                sheet.paste(_fit(img, tile), ((j % per_row) * tile, (j // per_row) * tile))
                if progress:
                    progress(i + 1, n)
            tmp = out / f".{sheet_name(k)}.tmp"
            sheet.save(tmp, "JPEG", quality=80)
            tmp.replace(out / sheet_name(k))
    meta = {"n": n, "tile": tile, "per_row": per_row, "per_sheet": per_sheet, "sheets": sheets, "gallery": gallery,
            "broken": broken, "key": key}
    write_json_atomic(out / META, meta)
    return meta


def sheet_paths(run_explore: str | Path, meta: dict) -> list[Path]:
    """The sprite sheets' files, in order (sheet ``k`` holds images ``k * per_sheet`` …)."""
    return [Path(run_explore) / FOLDER / sheet_name(k) for k in range(int(meta["sheets"]))]


def gallery_bytes(run_explore: str | Path, index: int) -> bytes:
    """The gallery thumbnail of image ``index`` as made by the job (JPEG bytes; OSError when not made)."""
    return (Path(run_explore) / FOLDER / gallery_name(int(index))).read_bytes()


def tile_box(meta: dict, index: int) -> tuple[int, int, int, int]:
    """(sheet, x, y, side) of image ``index``'s tile: where the hover finds it."""
    i = int(index)
    k, j = divmod(i, int(meta["per_sheet"]))
    t, r = int(meta["tile"]), int(meta["per_row"])
    return k, (j % r) * t, (j // r) * t, t
