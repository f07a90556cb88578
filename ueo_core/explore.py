"""A run's exploration: its images' features before and after adaptation, mapped to 2-D, written into the run folder.

It runs as a job on Ray like a run does (``jobs.submit_exploration``), never in the web server; the Explore page
reads what has landed in ``<run>/explore/``:

    status.json   {"stage": "features before" | "features after" | "PCA" | "UMAP" | "done", "done": i, "total": n}
    pca.npz       "before", "after": (N, 2) PCA coordinates; written first (instant), shown while UMAP computes
    umap.npz      "before", "after": (N, 2) UMAP coordinates

plus the job files of ``ueo_core.jobs`` (job.json, worker.json, ended.json). The features themselves stay in the
feature cache (``ueo_core.embed``), so a second exploration of the same run is quick.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

import numpy as np

from .analysis.predictions import predictions_before  # noqa: F401 (the pages read it from here too)
from .runs import RunFolder, load_checkpoint, write_json_atomic
from .scores import LABELS

FOLDER = "explore"
STATUS, PCA, UMAP = "status.json", "pca.npz", "umap.npz"
MAPS = ("before", "after")
MAP_NAMES = {"before": "zero-shot", "after": "adapted"}
# the fewest images the maps can be drawn from: UMAP needs 4 (``embed.umap_2d``), PCA 2. The page checks it before
# queuing the job and the job checks it first, so a run on fewer images is told so, never queued to fail.
MIN_IMAGES = 4


def folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / FOLDER


def run_features(run_dir: str | Path, cache_dir=None,
                 progress: Optional[Callable[[str, int, int], None]] = None) -> dict[str, np.ndarray]:
    """Image features of a run's images before and after adaptation (cached on disk), in the order of its
    predictions.csv. ``progress(stage, done, total)`` follows the two passes of the image tower."""
    return run_model(run_dir, cache_dir=cache_dir, progress=progress)[2]


def run_model(run_dir: str | Path, cache_dir=None, progress: Optional[Callable[[str, int, int], None]] = None,
              maps: Iterable[str] = MAPS, device: Optional[str] = None) -> tuple:
    """(the run's model with its adapted parameters applied, its checkpoint tensors, {map: features} for ``maps``):
    the exploration needs the features only; a search (``ueo_core.search``) also keeps the model for its text
    tower. "before" is encoded first, while the image tower is still the base model's. ``device`` overrides the
    run's own (the search worker holds no GPU)."""
    from .analysis import read_predictions
    from .embed import image_features
    from .models import load_model
    from .train import apply_state

    run = RunFolder(run_dir)
    cfg = run.config
    paths = read_predictions(run_dir).paths
    loaded = load_model(cfg["model"], pretrained=cfg.get("pretrained"), checkpoint=cfg.get("checkpoint"),
                        device=device or cfg.get("device"), seed=cfg.get("seed", 0),
                        precision=cfg.get("precision") or "auto")  # (the run's inference precision)
    report = (lambda stage: (lambda d, n: progress(stage, d, n))) if progress else (lambda stage: None)
    feats = {}
    if "before" in maps:
        feats["before"] = image_features(loaded, paths, cache_dir=cache_dir, progress=report("features before"))
    tensors, _ = load_checkpoint(run.path)
    apply_state(loaded, tensors)  # loaded.variant: "" when the tower did not learn ("after" is "before", stored)
    if "after" in maps:
        feats["after"] = image_features(loaded, paths, variant=loaded.variant, cache_dir=cache_dir,
                                        progress=report("features after"))
    return loaded, tensors, feats


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")  # written beside, then renamed: a reader never sees half
    np.savez(tmp, **arrays)
    tmp.replace(path)


def compute(run_dir: str | Path, seed: int = 0, cache_dir=None, min_interval: float = 0.3) -> None:
    """The exploration of a run, stage by stage into ``<run>/explore/``: features (with image progress), PCA at
    once, then the two UMAPs. Errors propagate (the job writes them, in words, to ended.json)."""
    from .analysis import read_predictions
    from .embed import pca_2d, umap_2d
    few = too_few(len(read_predictions(run_dir)))
    if few:
        raise ValueError(few)
    out = folder(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = [0.0]

    def status(stage: str, done: int, total: int, force: bool = False) -> None:
        if force or done == total or time.time() - last[0] >= min_interval:  # a few writes a second at most
            write_json_atomic(out / STATUS, {"stage": stage, "done": done, "total": total, "at": time.time()})
            last[0] = time.time()

    status("loading the model", 0, 0, force=True)
    feats = run_features(run_dir, cache_dir=cache_dir, progress=status)
    _save(out / PCA, {k: pca_2d(feats[k]) for k in MAPS})
    from . import thumbs  # made once here, on the worker: the page's hover and galleries read them
    thumbs.make(read_predictions(run_dir).paths, out, progress=lambda d, n: status("thumbnails", d, n))
    umaps = {}
    for k in MAPS:
        status("UMAP", len(umaps), len(MAPS), force=True)
        umaps[k] = umap_2d(feats[k], seed=seed, cache_dir=cache_dir)
    _save(out / UMAP, umaps)
    status("done", len(MAPS), len(MAPS), force=True)


def read(run_dir: str | Path) -> dict:
    """What has landed: ``status`` (dict or None), and ``pca`` / ``umap`` ({"before", "after"} arrays) when
    written. Small arrays (N x 2): the page reads them on every redraw."""
    out = folder(run_dir)
    got: dict = {}
    try:
        got["status"] = json.loads((out / STATUS).read_text())
    except (OSError, ValueError):
        got["status"] = None
    for key, name in (("pca", PCA), ("umap", UMAP)):
        try:
            with np.load(out / name) as z:
                got[key] = {k: z[k] for k in MAPS}
        except (OSError, ValueError, KeyError):
            pass
    from .thumbs import read_meta
    got["thumbs"] = read_meta(out)  # the thumbnails' meta once they are complete (None before)
    return got


def clear_outputs(run_dir: str | Path) -> None:
    """Forget what a failed or lost exploration wrote, so that it can be submitted again (its job files are
    ``ueo_core.jobs``'s to replace)."""
    for name in (STATUS, PCA, UMAP):
        (folder(run_dir) / name).unlink(missing_ok=True)


def too_few(n_images: int) -> Optional[str]:
    """The plain sentence for a run with fewer images than the maps need (no retry can help it), else None."""
    if n_images >= MIN_IMAGES:
        return None
    return (f"This run has {n_images} image{'' if n_images == 1 else 's'}; the maps need at least {MIN_IMAGES} "
            f"(UMAP places each image among its nearest neighbours), so there is nothing to map. Explore a run on "
            f"{MIN_IMAGES} images or more.")


# ------------------------------------------------------------------------------------------- colouring by a score
@dataclass(frozen=True)
class ScoreColours:
    """How "colour by score" maps a score onto colours: one range for both maps, so that their bars read alike (a
    fixed 0-1 saturated every Energy point), and each map's own known/unknown threshold at the neutral middle of a
    diverging scale, so that a point's colour says which side of its map's threshold it lies."""
    score: str
    lo: float
    hi: float
    thresholds: dict  # {"before": threshold, "after": threshold}

    @property
    def title(self) -> str:
        return LABELS.get(self.score, self.score)

    def note(self) -> str:
        """What the colours mean, from the numbers they are drawn with."""
        t = self.thresholds
        at = (f"{t['before']:.3g} on both maps" if f"{t['before']:.3g}" == f"{t['after']:.3g}"
              else f"{t['before']:.3g} on the zero-shot map, {t['after']:.3g} on the adapted one")
        return (f"Colour: {self.title} from {self.lo:.3g} to {self.hi:.3g}, the same scale on both maps. Green: at or "
                f"above the map's threshold (known), orange: below it (unknown), grey: near it; threshold {at}.")


def score_colours(values: Mapping[str, np.ndarray], thresholds: Mapping[str, float], score: str) -> ScoreColours:
    """The shared colour range of both maps' ``values`` of ``score`` (their thresholds inside it, so that each
    map's neutral middle is on the bar), and the thresholds it is centred on."""
    every = np.concatenate([np.ravel(np.asarray(values[k], dtype=float)) for k in MAPS]
                           + [np.array([float(thresholds[k]) for k in MAPS])])
    every = every[np.isfinite(every)]
    lo, hi = (float(every.min()), float(every.max())) if every.size else (0.0, 1.0)
    if hi - lo < 1e-12:  # one value everywhere: a bar of some width, centred on it
        pad = max(abs(lo) * 1e-3, 1e-6)
        lo, hi = lo - pad, hi + pad
    return ScoreColours(score, lo, hi, {k: float(thresholds[k]) for k in MAPS})


# ------------------------------------------------------------------------------------------------- selections
@dataclass
class Selection:
    """The images picked on one map, captioned with that map's own predictions (never the other map's)."""
    key: str              # "before" or "after"
    heading: str          # "Selected on the zero-shot map (3)"
    indices: list[int]    # into the run's predictions, that map's most sure first
    paths: list[str]
    captions: list[str]   # that map's predicted class and score value


def selections(picked: Mapping[str, Iterable[int]], predictions: Mapping[str, object],
               thresholds: Optional[Mapping[str, float]] = None) -> list[Selection]:
    """One selection per map (zero-shot, then adapted), kept apart: the points picked on a map get that map's
    predictions (``predictions[key]``, judged by the chosen score), so a zero-shot pick is never captioned with the
    adapted class. With ``thresholds`` (each map's), a caption also says known or unknown: the nearest class of an
    image below the threshold is not where it goes."""
    out = []
    for key in MAPS:
        p = predictions[key]
        idx = sorted({int(i) for i in picked.get(key, ()) if 0 <= int(i) < len(p)},
                     key=lambda i: (-float(p.confidence[i]), i))
        names = [p.classes[p.pred[i]] if 0 <= p.pred[i] < len(p.classes) else "?" for i in idx]
        out.append(Selection(key, f"Selected on the {MAP_NAMES[key]} map ({len(idx)})", idx,
                             [p.paths[i] for i in idx],
                             [f"{n} {float(p.confidence[i]):.3g}"
                              + ("" if thresholds is None else
                                 " · known" if p.confidence[i] >= thresholds[key] else " · unknown")
                              for n, i in zip(names, idx)]))
    return out
