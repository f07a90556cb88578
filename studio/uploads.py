"""Saving a browser upload into the session's folder, safely (the checks themselves live in ueo_core.data)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from ueo_core.archive import data_root, safe_extract_zip
from ueo_core.data import DataError

MAX_UPLOAD_FILES = 2000
MAX_FILE_BYTES = 200 * 1024 ** 2


def save_upload(files: Sequence, dest: Path) -> tuple[Path, list[tuple[str, str]]]:
    """Write uploaded files (objects with ``.name`` and ``.getbuffer()``) under ``dest``.

    One zip: extracted with the zip-slip / symlink / bomb guards; the folder a 'Compress folder' wraps around the
    data is stepped into (``ueo_core.archive.data_root``), whether class folders or the images themselves are inside.
    Images: written flat (names stripped of any directory part). Returns (data root, refused entries).
    Raises DataError for an upload refused as a whole.
    """
    if not files:
        raise DataError("Nothing was uploaded.")
    if len(files) > MAX_UPLOAD_FILES:
        raise DataError(f"{len(files)} files: the limit is {MAX_UPLOAD_FILES} per upload (put them in a zip).")
    zips = [f for f in files if f.name.lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise DataError("Upload either one zip file or image files, not both.")
    for f in files:
        if len(f.getbuffer()) > MAX_FILE_BYTES:
            raise DataError(f"{f.name} is larger than {MAX_FILE_BYTES // 1024 ** 2} MB.")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zips:
        tmp = dest.parent / (dest.name + ".zip")
        tmp.write_bytes(zips[0].getbuffer())
        try:
            _, refused = safe_extract_zip(tmp, dest)
        except DataError:
            shutil.rmtree(dest, ignore_errors=True)  # nothing half-made stays behind
            raise
        finally:
            tmp.unlink(missing_ok=True)
        root, left_out = data_root(dest)
        refused += [(p.relative_to(dest).as_posix(), f"beside the folder {root.relative_to(dest).as_posix()}, which "
                     "holds the images: not used") for p in left_out]
        return root, refused
    refused = []
    for f in files:
        name = _safe_name(Path(f.name.replace("\\", "/")).name)
        if not name:
            refused.append((f.name[:80], "no usable file name"))
            continue
        tmp = dest / f".{name}.part"
        tmp.write_bytes(f.getbuffer())
        tmp.replace(dest / name)
    return dest, refused


def _safe_name(name: str, max_bytes: int = 200) -> str:
    """A file name that any disk accepts: hidden names dropped, over-long names shortened (the extension kept)."""
    name = name.strip()
    if not name or name.startswith(".") or name in (".", ".."):
        return ""
    stem, suffix = os.path.splitext(name)
    while len((stem + suffix).encode("utf-8", "surrogateescape")) > max_bytes and stem:
        stem = stem[:-1]
    return (stem + suffix) if stem else ""
