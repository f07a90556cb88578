"""Image features (cached on disk) and their 2-D UMAP, for the embeddings before and after adaptation.

The cache key covers everything the features depend on: the model (architecture, weights source, and a hash of
any adapted parameters), the image size, the inference precision (fp32 / bf16), and each file's path, size and
modification time. A second call with the same inputs reads a ``.npy`` file instead of running the image tower.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .paths import cache_root
from .data import ImageDataset
from .models import LoadedModel


def _hash_update_files(h, files: Sequence[str]) -> None:
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())


def params_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A short hash of a set of tensors (e.g. the adapted parameters of a checkpoint)."""
    h = hashlib.sha1()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


DECODE = "draft1"  # how files are decoded (``data.load_rgb``'s JPEG draft to the model's input): part of the key


def feature_key(loaded: LoadedModel, files: Sequence[str], variant: str = "") -> str:
    h = hashlib.sha1(f"{loaded.name}|{loaded.pretrained}|{loaded.image_size}|{variant}|{DECODE}"
                     f"|{loaded.precision}\n".encode())
    _hash_update_files(h, files)
    return h.hexdigest()[:24]


def _cached(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at ``path``, or ``compute()`` saved there (atomically) first."""
    if path.exists():
        return np.load(path)
    arr = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    return arr


def image_features(loaded: LoadedModel, files: Sequence[str], variant: str = "", batch_size: int = 128,
                   cache_dir: Optional[str | Path] = None,
                   progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """(N, D) L2-normalised float32 image features, from the cache (``cache_dir``, default ``cache_root()``) when
    the same inputs were seen before.

    ``variant`` names the state of the image tower (e.g. a digest of adapted norm parameters); the model's current
    weights are what is encoded, so pass a different variant whenever they differ.
    """
    from .train.features import encode_images  # the same encoder the trainer evaluates with

    path = Path(cache_dir or cache_root()) / "features" / f"{feature_key(loaded, files, variant)}.npy"
    images = ImageDataset(files, loaded.preprocess, min_side=loaded.image_size)  # a big JPEG decoded small
    return _cached(path, lambda: encode_images(loaded, images, batch_size,
                                               progress=progress).cpu().numpy().astype(np.float32))


def umap_2d(features: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
            cache_dir: Optional[str | Path] = None) -> np.ndarray:
    """2-D UMAP (cosine metric) of the features; cached by a hash of the features and the settings."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    n = len(features)
    if n < 4:
        raise ValueError(f"UMAP needs at least 4 images (got {n}).")
    h = hashlib.sha1(features.tobytes())
    h.update(f"{seed}|{n_neighbors}|{min_dist}".encode())

    def compute() -> np.ndarray:
        import umap  # imported lazily: numba compilation takes seconds
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist,
                            metric="cosine", random_state=seed)
        return reducer.fit_transform(features).astype(np.float32)

    return _cached(Path(cache_dir or cache_root()) / "umap" / f"{h.hexdigest()[:24]}.npy", compute)


def pca_2d(features: np.ndarray) -> np.ndarray:
    """2-D PCA of the features (scikit-learn): instant, shown while UMAP computes. Signs are fixed (largest
    coordinate of each component positive) so that the before and after maps do not flip at random."""
    from sklearn.decomposition import PCA
    features = np.asarray(features, dtype=np.float32)
    if len(features) < 2:
        raise ValueError(f"PCA needs at least 2 images (got {len(features)}).")
    pca = PCA(n_components=2, random_state=0).fit(features)
    comps = pca.components_ * np.sign(pca.components_[np.arange(2), np.abs(pca.components_).argmax(axis=1)])[:, None]
    return ((features - pca.mean_) @ comps.T).astype(np.float32)
