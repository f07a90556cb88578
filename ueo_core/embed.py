"""Image features (one store on disk for every pass) and their 2-D maps, for the embeddings before and after
adaptation.

An image's feature is kept under its feature space (the model's architecture, weights source, input size, a hash
of any adapted image-tower parameters, the decoding, the transform, the inference precision) and a hash of the
file's bytes (``FeatureStore``). Every pass that runs the image tower with the same weights on the same photos
asks the store first: a photo is encoded once for a run's zero-shot pass, its frozen-tower evaluations, Explore,
sort, search, the fast modes and every run of a lesson.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .paths import cache_root
from .models import LoadedModel


def params_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A short hash of a set of tensors (e.g. the adapted parameters of a checkpoint)."""
    h = hashlib.sha1()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def tower_variant(loaded: LoadedModel, tensors: dict[str, torch.Tensor]) -> str:
    """The feature variant of ``loaded``'s image tower once a checkpoint's ``visual.*`` tensors are applied (read
    before ``apply_state`` copies them): the model's own ``variant`` when they equal what the tower holds (nothing
    in it learned: zero-shot, prompt_only, a training-free method; the adapted features are then the zero-shot
    ones, already in the store), else the digest of those tensors, as the trainer keys its last evaluation
    (``Trainer.feature_variant``)."""
    own = dict(loaded.model.visual.named_parameters())
    tower = {k[len("visual."):]: v for k, v in tensors.items() if k.startswith("visual.")}
    if all(n in own and torch.equal(own[n].detach().cpu(), v.detach().cpu().to(own[n].dtype))
           for n, v in tower.items()):
        return loaded.variant
    return params_digest(tower)


DECODE = "draft1"  # how files are decoded (``data.load_rgb``'s JPEG draft to the model's input): part of the key
STORE = "features.sqlite"


def feature_space(loaded: LoadedModel, variant: str = "", transform: str = "eval") -> str:
    """What an image's feature depends on besides the file's content: the model (architecture, weights source, a
    hash of the tower's weights as loaded, input size, and ``variant``: what was adapted since), the decoding, the
    transform and the precision."""
    return hashlib.sha1(f"{loaded.name}|{loaded.pretrained}|{loaded.weights}|{loaded.image_size}|{variant}|{DECODE}"
                        f"|{transform}|{loaded.precision}".encode()).hexdigest()[:24]


class FeatureStore:
    """The one feature cache (SQLite, in the cache root): an image's feature is stored under (feature space, a
    hash of the file's bytes), so the same photo is encoded once for every pass that needs the same tower: a run's
    zero-shot pass and its frozen-tower evaluations, Explore's and sort's and search's features, the fast modes'
    evaluation cache, and every run of a lesson on the same images, under any path (a copy, another upload).

    A file's hash is read once and remembered by (path, size, modification time), as git's index does; a file
    changed in place gets a new size or time, so it is hashed (and encoded) again."""

    def __init__(self, cache_dir=None):
        import sqlite3
        path = Path(cache_dir or cache_root()) / STORE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60)  # Ray workers and the app may write at the same time
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                        "digest TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS features (space TEXT, digest TEXT, dim INTEGER, vec BLOB, "
                        "PRIMARY KEY (space, digest))")

    def close(self) -> None:
        self.db.close()

    def digests(self, files: Sequence[str]) -> list[str]:
        """The content hash of each file (blake2b, 128 bits), from the table where size and time still match."""
        paths = [os.fsencode(os.path.abspath(f)) for f in files]  # bytes: a name need not be UTF-8 (Linux)
        known = {}
        for chunk in _chunks(sorted(set(paths))):
            known.update({r[0]: r[1:] for r in self.db.execute(
                f"SELECT path, size, mtime_ns, digest FROM files WHERE path IN ({','.join('?' * len(chunk))})",
                chunk)})
        out, fresh = [], []
        for p in paths:
            st = os.stat(p)
            row = known.get(p)
            if row is None or row[0] != st.st_size or row[1] != st.st_mtime_ns:
                with open(p, "rb") as fh:
                    row = (st.st_size, st.st_mtime_ns, hashlib.file_digest(fh, lambda: hashlib.blake2b(
                        digest_size=16)).hexdigest())
                known[p] = row
                fresh.append((p, *row))
            out.append(row[2])
        if fresh:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fresh)
        return out

    def get(self, space: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        got = {}
        for chunk in _chunks(sorted(set(digests))):
            for d, dim, vec in self.db.execute(
                    f"SELECT digest, dim, vec FROM features WHERE space = ? AND digest IN "
                    f"({','.join('?' * len(chunk))})", [space, *chunk]):
                got[d] = np.frombuffer(vec, dtype=np.float32, count=dim)
        return got

    def put(self, space: str, rows: dict[str, np.ndarray]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)",
                                [(space, d, int(v.size), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                                 for d, v in rows.items()])


def _chunks(items: list, n: int = 500):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def image_features(loaded: LoadedModel, files: Sequence[str], variant: str = "", batch_size: int = 128,
                   cache_dir: Optional[str | Path] = None,
                   progress: Optional[Callable[[int, int], None]] = None, dataset=None,
                   num_workers: int = 0) -> np.ndarray:
    """(N, D) L2-normalised float32 image features of ``files``, the image tower running only on those the
    store (``FeatureStore`` in ``cache_dir``, default ``cache_root()``) does not hold yet (each distinct content
    once).

    ``variant`` names the state of the image tower: "" for the model's own weights, else a digest of the adapted
    parameters (``tower_variant``); the model's current weights are what is encoded, so pass a different variant
    whenever they differ. ``dataset``: the caller's dataset of the same files with the evaluation transform (the
    trainer's, which keeps decoded images in memory); by default each file is decoded for the model's input
    (``spread.encode_files``: a decoding worker beside the model, the Ray cluster's other machines).
    """
    from .train.features import encode_images  # the same encoder the trainer evaluates with

    store = FeatureStore(cache_dir)
    try:
        space = feature_space(loaded, variant)
        digests = store.digests(files)
        have = store.get(space, digests)
        first = {}  # each missing content once, at its first position
        for i, d in enumerate(digests):
            if d not in have and d not in first:
                first[d] = i
        todo = list(first.values())
        if todo:
            skip = len(files) - len(todo)
            tick = (lambda d, n: progress(skip + d, len(files))) if progress else None
            if dataset is None:  # decoded for the model's input; over the Ray cluster where it adds cores
                from .spread import encode_files
                feats = encode_files(loaded, [files[i] for i in todo], batch_size, progress=tick)
            else:
                feats = encode_images(loaded, torch.utils.data.Subset(dataset, todo), batch_size, num_workers,
                                      progress=tick).cpu().numpy().astype(np.float32)
            new = {digests[i]: f for i, f in zip(todo, feats)}
            store.put(space, new)
            have.update(new)
        elif progress:
            progress(len(files), len(files))
        dim = len(next(iter(have.values()))) if have else 0
        return np.stack([have[d] for d in digests]) if files else np.zeros((0, dim), np.float32)
    finally:
        store.close()


def cached_array(key: str, compute: Callable[[], np.ndarray], cache_dir=None, folder: str = "features") -> np.ndarray:
    """An array kept whole on disk under ``key`` (e.g. the fast modes' augmented views of a whole image list,
    whose random crops depend on the list and the seed, not on one file)."""
    return _cached(Path(cache_dir or cache_root()) / folder / f"{key}.npy", compute)


def feature_key(loaded: LoadedModel, files: Sequence[str], variant: str = "", cache_dir=None,
                transform: str = "eval") -> str:
    """A key for an array computed from a list of files in order (their contents, not their paths)."""
    store = FeatureStore(cache_dir)
    try:
        digests = store.digests(files)
    finally:
        store.close()
    h = hashlib.sha1(feature_space(loaded, variant, transform).encode())
    h.update("\n".join(digests).encode())
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
