"""Image folders, class-name priors, safe reading of user files.

An ``ImageSet`` is what every method trains and evaluates on: the readable image files, the prior (known class
names), and — when the folder has one sub-folder per class — the ground truth: which known class each image is, or
that it is *unknown* (its folder is not in the prior). Unreadable files are skipped with a reason, never fatal.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features
from torchvision.datasets.folder import IMG_EXTENSIONS as TORCHVISION_EXTENSIONS

# Photo formats people have. torchvision's list (jpg, png, ppm, bmp, pgm, tif, webp) plus GIF (first frame),
# HEIC/HEIF (iPhones save these by default; read by the maintained pillow-heif plugin, registered here) and AVIF
# (cameras, browsers; read by Pillow's own AVIF plugin, in Pillow >= 11.3). pillow-heif dropped its AVIF reader in
# 1.0, so the two readers do not overlap. Every format is turned upright by its EXIF orientation in ``load_rgb``.
pillow_heif.register_heif_opener()
HEIF_EXTENSIONS = (".heic", ".heif", ".hif")
AVIF_EXTENSIONS = (".avif",) if features.check("avif") else ()
IMG_EXTENSIONS = tuple(TORCHVISION_EXTENSIONS) + (".gif",) + HEIF_EXTENSIONS + AVIF_EXTENSIONS

UNKNOWN = -1   # label of an image whose class folder is not in the prior
NO_TRUTH = -2  # label of an image from a flat folder, or from folders that are not classes (no ground truth)

# what operating systems leave in folders and zips, never a user's image or class: macOS' resource forks
# (``__MACOSX/``, ``._x.jpg``), Finder's ``.DS_Store`` and ``Icon\r``, Windows' thumbnail caches and folder settings
OS_JUNK = {"__macosx", "thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r"}

MAX_PIXELS = 8000 * 8000            # larger images are refused (decompression-bomb guard)
MAX_ASPECT = 20                      # long side / short side: a 1 x 1,000,000 strip is refused (it passes the
#   pixel count, but resizing its short side to the model's input would ask for gigabytes)
ImageFile.LOAD_TRUNCATED_IMAGES = False


class DataError(ValueError):
    """Bad data or prior given by the user; the message says what to fix."""


# --------------------------------------------------------------------------------------------------- the prior
def normalize_name(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name).strip().lower()


def parse_prior(prior: str | Iterable[str]) -> list[str]:
    """Class names from a list or from text separated by commas / new lines. Refuses empty names and duplicates."""
    if isinstance(prior, str):
        names = [n.strip() for n in re.split(r"[,\n]", prior)]
        names = [n for n in names if n]  # blank lines / trailing commas in free text are harmless
    else:
        names = [str(n).strip() for n in prior]
        if any(not n for n in names):
            raise DataError("The class-name prior contains an empty name.")
    seen = {}
    for n in names:
        key = normalize_name(n)
        if key in seen:
            raise DataError(f"The class-name prior names '{n}' twice (as '{seen[key]}' and '{n}'). "
                            f"Each known class must appear once.")
        seen[key] = n
    if len(names) < 2:
        raise DataError(f"The class-name prior needs at least 2 known classes (got {len(names)}): with one class the "
                        f"softmax is always 1, so there is nothing to adapt and no way to tell known from unknown.")
    return names


# ---------------------------------------------------------------------------------------------- image checking
def check_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Optional[str]:
    """None when the file is a readable image, else the reason it is not."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    return f"image too large ({w}x{h} pixels; limit {max_pixels:,})"
                if min(w, h) < 1 or max(w, h) > MAX_ASPECT * min(w, h):
                    return f"image too elongated ({w}x{h} pixels; at most {MAX_ASPECT}:1)"
                img.load()  # a full decode: catches truncated and corrupt data, not just a bad header
    except UnidentifiedImageError:
        return "not an image (unrecognised format)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "image too large (decompression bomb guard)"
    except (OSError, SyntaxError, ValueError) as err:
        return f"corrupt or truncated image ({str(err)[:80]})"
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode. Pillow's own ``convert("RGB")`` clips 16-bit and 32-bit integer images at
    255 (all white) and float images to 0/1 (all black), so those are scaled first: 16-bit by its full range
    (/257), float from [0, 1] when it lies there, anything else by its own min-max range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if img.mode.startswith("I;16") or (img.mode == "I" and 255 < hi <= 65535 and lo >= 0):
            arr = arr / 257.0                       # 16-bit: its full range
        elif img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            arr = arr * 255.0                       # float in [0, 1]
        elif img.mode == "F" or hi > 255 or lo < 0:
            arr = (arr - lo) / ((hi - lo) or 1.0) * 255.0   # anything else: its own range
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


def load_rgb(path: str | Path, min_side: Optional[int] = None) -> Image.Image:
    """An image file as 8-bit RGB, turned upright by its EXIF orientation (as a photo viewer shows it).

    ``min_side``: the shorter side the caller needs at least (the model's input, or what its augmentations crop
    from). A JPEG is then decoded by Pillow's ``draft`` at the smallest of its DCT scales (1/2, 1/4, 1/8) that keeps
    the shorter side at or above it: a 12-megapixel photo needed at 448 px decodes ~4.5x faster (bench/decode.py,
    which also measures what it changes in features and predictions). Other formats decode in full."""
    with Image.open(path) as img:
        if min_side and img.format == "JPEG":
            w, h = img.size
            short = min(w, h)
            if short > 2 * min_side:  # a DCT scale of 1/2 or less keeps enough pixels
                img.draft(None, (-(-w * min_side // short), -(-h * min_side // short)))  # ceil: never below
        return to_rgb(ImageOps.exif_transpose(img))


def _has_image_ext(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def is_os_junk(name: str) -> bool:
    """A hidden name or one of ``OS_JUNK``: left out silently (nobody put it there on purpose)."""
    return name.startswith(".") or name.lower() in OS_JUNK


# ------------------------------------------------------------------------------------------------- image sets
@dataclass
class ImageSet:
    root: Path
    files: list[str]                 # readable images, sorted
    classes: list[str]               # the prior: known class names, in label order
    labels: np.ndarray               # index into classes, UNKNOWN, or NO_TRUTH
    folder_names: list[Optional[str]]  # the class folder of each file (None: flat, or folders that are no classes)
    folders: list[str] = field(default_factory=list)    # all sub-folders found
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[str] = field(default_factory=list)              # things the user should know before a run

    def __len__(self) -> int:
        return len(self.files)

    @property
    def has_truth(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels != NO_TRUTH).all())

    @property
    def known_mask(self) -> np.ndarray:
        return self.labels >= 0

    @property
    def has_unknown(self) -> bool:
        return self.has_truth and bool((self.labels == UNKNOWN).any())

    def counts(self) -> dict[str, int]:
        """Images per class folder (or 'unlabeled' for a flat folder)."""
        out: dict[str, int] = {}
        for f in self.folder_names:
            key = f if f is not None else "unlabeled"
            out[key] = out.get(key, 0) + 1
        return out

    def summary(self, name: Optional[str] = None) -> str:
        """In words; ``name`` stands for the folder where a page shows it (``privacy.data_name``: no server path)."""
        known = int(self.known_mask.sum())
        s = f"{len(self)} image{'s' if len(self) != 1 else ''} in {name or self.root}"
        if self.has_truth:
            s += f" ({known} of {len(self.classes)} known classes, {len(self) - known} unknown)"
        elif self.folders:
            s += " (its sub-folders are not classes of the prior: no ground truth)"
        else:
            s += " (no class folders: no ground truth)"
        if self.skipped:
            s += f"; {len(self.skipped)} files skipped"
        return s


def load_folder(root: str | Path, prior: Optional[str | Sequence[str]] = None,
                include: Optional[Sequence[str]] = None, max_pixels: int = MAX_PIXELS, need_prior: bool = True,
                progress: Optional[Callable[[int, int], None]] = None) -> ImageSet:
    """Read an image folder.

    - class-per-folder (``root/<class>/**/<image>``): the folder names are the truth; folders not in the prior are
      *unknown*. With no prior, every folder is a known class (closed set). When no folder is named in the prior,
      the folders are not classes but the user's own grouping (``2023/``, ``my_photos/``): no truth, and a warning
      (calling every image a right rejection would be false).
    - flat (images directly in ``root``): no truth; a prior is required.
    ``include`` keeps only these class folders (used by presets: the target classes of a split).
    ``need_prior=False`` allows a flat folder without a prior (``classes`` is then empty: for embeddings only).
    Files that are not readable images are skipped and listed with the reason.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"Folder not found: {root}")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as err:
        raise DataError(f"Cannot read the folder {root}: {err.strerror or err}.") from None
    subdirs = [e.name for e in entries if e.is_dir() and not is_os_junk(e.name)]
    candidates: list[tuple[str, Optional[str]]] = []  # (path, class folder)
    skipped: list[tuple[str, str]] = []
    if subdirs:
        if include is not None:
            wanted = {normalize_name(n) for n in include}
            subdirs = [d for d in subdirs if normalize_name(d) in wanted]
        for d in subdirs:
            for dirpath, dirnames, filenames in os.walk(root / d, followlinks=False):
                dirnames[:] = sorted(x for x in dirnames if not is_os_junk(x))
                for fn in sorted(filenames):
                    if not is_os_junk(fn):
                        candidates.append((os.path.join(dirpath, fn), d))
        for e in entries:
            if e.is_file() and not is_os_junk(e.name):
                skipped.append((e.path, "not inside a class folder (the folder has class sub-folders)"))
    else:
        candidates = [(e.path, None) for e in entries if e.is_file() and not is_os_junk(e.name)]

    files, folder_names = [], []
    for i, (path, cls) in enumerate(candidates):
        if progress is not None:
            progress(i, len(candidates))
        if not _has_image_ext(path):
            skipped.append((path, "not an image file type"))
            continue
        reason = check_image(path, max_pixels)
        if reason:
            skipped.append((path, reason))
        else:
            files.append(path)
            folder_names.append(cls)
    if not files:
        what = "no readable images" if candidates else "no files"
        raise DataError(f"{root} has {what}" + (f" ({len(skipped)} files skipped)." if skipped else ".") +
                        " Put images in it, one sub-folder per class (or all in the folder itself).")

    if prior is None and not subdirs and not need_prior:
        classes = []
    elif prior is None:
        if not subdirs:
            raise DataError("This folder has no class sub-folders, so give the class names you expect (the prior).")
        classes = parse_prior(sorted({f for f in folder_names if f is not None}))
    else:
        classes = parse_prior(prior)
    index = {normalize_name(c): i for i, c in enumerate(classes)}
    labels = np.array([NO_TRUTH if f is None else index.get(normalize_name(f), UNKNOWN) for f in folder_names],
                      dtype=np.int64)
    warnings = []
    if subdirs and classes and include is None and not any(normalize_name(d) in index for d in subdirs):
        # a preset (``include``) vouches that its folders are classes; a user's folders that match no name are not
        folder_names = [None] * len(files)
        labels = np.full(len(files), NO_TRUTH, dtype=np.int64)
        warnings.append(f"None of the prior's names ({_listed(classes)}) is a sub-folder here ({_listed(subdirs)}), "
                        "so the sub-folders are not used as ground truth: the images are read as unlabeled, and no "
                        "accuracy or ✓/✗ can be computed. If the folders are your classes, name them in the prior.")
    return ImageSet(root=root, files=files, classes=classes, labels=labels, folder_names=folder_names,
                    folders=subdirs, skipped=skipped, warnings=warnings)


def _listed(names: Sequence[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + ("…" if len(names) > n else "")


SHAPES_PREFIX = "shapes:"


def resolve_data(spec: str | Path) -> Path:
    """A folder path, or ``shapes:<domain>`` for the built-in Shapes world (generated on first use)."""
    s = str(spec)
    if s.startswith(SHAPES_PREFIX):
        from .shapes import shapes_folder
        return shapes_folder(s[len(SHAPES_PREFIX):] or "photo")
    return Path(s).expanduser()


def load_data(spec: str | Path, prior=None, preset: Optional[str] = None, setting: str = "ODA", **kw) -> ImageSet:
    """``load_folder``/``load_preset`` for a data spec; Shapes defaults to its own preset (6 known, 2 unknown). A
    prior given with a preset replaces the preset's prior; the preset still says which class folders are read (a
    grown prior, ``ueo_core.grow``, keeps the run's images)."""
    root = resolve_data(spec)
    if preset is None and prior is None and str(spec).startswith(SHAPES_PREFIX):
        preset = "shapes"
    if preset:
        return load_preset(root, preset, setting, prior=prior, **kw)
    return load_folder(root, prior=prior, **kw)


def load_preset(root: str | Path, preset: str, setting: str = "ODA", prior=None, **kw) -> ImageSet:
    """A domain folder of a benchmark (e.g. ``PACS/sketch``) with the prior and target classes of a split (the
    prior replaced by ``prior`` when one is given)."""
    from .presets import get_preset
    preset_prior, target = get_preset(preset).split(setting)
    prior = prior or preset_prior
    root = Path(root).expanduser()
    try:
        here = {normalize_name(e.name) for e in os.scandir(root) if e.is_dir()} if root.is_dir() else None
    except OSError:
        here = None  # load_folder says why it cannot be read
    if here is not None:
        if not here & {normalize_name(c) for c in target}:
            raise DataError(f"This folder does not fit the preset '{preset}': none of its class folders "
                            f"({', '.join(target[:6])}{'…' if len(target) > 6 else ''}) is in {root.name} "
                            f"(it has: {', '.join(sorted(here)[:6]) or 'no sub-folders'}). Pick another preset, "
                            "or give the prior yourself.")
    return load_folder(root, prior=prior, include=target, **kw)


# ------------------------------------------------------------------------------------------- torch datasets
class DecodedCache:
    """Decoded RGB images kept in memory (uint8), so each file is decoded once per run instead of once per pass.

    Exact: the cached image is the decoded file itself, unless its shorter side exceeds ``max_side``; then it is
    first downscaled (bicubic) to that, a small approximation for very large photos (default 4x the model input,
    far above what RandomResizedCrop(scale >= 0.5) and the eval resize need). Images are cached only while the
    total stays under ``budget_bytes``; the rest are decoded each time.
    """

    def __init__(self, max_side: Optional[int] = None, budget_bytes: int = 2 * 1024 ** 3):
        self.max_side = max_side
        self.budget = budget_bytes
        self.used = 0
        self.images: dict = {}  # path (or (path, min_side)) -> image

    def get(self, path: str, min_side: Optional[int] = None) -> Image.Image:
        """The decoded image; with ``min_side``, decoded exactly as ``load_rgb(path, min_side)`` does (the
        evaluation's images, which must equal the feature store's other passes), kept apart from the full one."""
        key = path if min_side is None else (path, min_side)
        img = self.images.get(key)
        if img is not None:
            return img
        img = load_rgb(path, min_side=min_side or self.max_side)  # a large JPEG decodes at a reduced scale already
        if min_side is None and self.max_side and min(img.size) > self.max_side:
            scale = self.max_side / min(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
        size = img.width * img.height * 3
        if self.used + size <= self.budget:
            self.images[key] = img
            self.used += size
        return img


class ImageDataset(torch.utils.data.Dataset):
    """(transformed image, index) for each file; the index lets the trainer look up per-image weights.
    With a shared ``DecodedCache`` the evaluation pass and every training epoch decode each file only once."""

    def __init__(self, files: Sequence[str], transform: Callable, cache: Optional[DecodedCache] = None,
                 min_side: Optional[int] = None):
        self.files = list(files)
        self.transform = transform
        self.cache = cache
        self.min_side = min_side  # without a cache: what ``load_rgb`` may decode a JPEG down to

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        img = (self.cache.get(self.files[i], self.min_side) if self.cache is not None
               else load_rgb(self.files[i], self.min_side))
        return self.transform(img), i
