"""Known/unknown scores: how sure a run is that an image belongs to a known class (higher: more likely known).

With s_k the cosine similarity of an image to class k, ``scale`` the protocol's evaluation scale (the logits a run
reports are ``scale * s``) and p the run's softmax (softmax(scale * s) for every method that keeps CLIP's head;
ZERO's vote shares, TDA's cache-adapted softmax for those two):

- ``msp``: max_k p_k (Hendrycks & Gimpel 2017; the papers' and this project's default);
- ``maxlogit``: max_k of the logits (Hendrycks et al. 2022), i.e. the highest cosine, scaled;
- ``energy``: T * logsumexp(logits / T), T = 1 (Liu et al. 2020: the negative free energy);
- ``mcm``: max softmax of s / tau on the *cosines*, tau = 1 by default (Ming et al. 2022, deeplearning-wisc/MCM);
- ``gen``: minus the generalised entropy of p, sum over the M largest p of p^g (1 - p)^g, with g = 0.1 and
  M = 100 (at most K) as in Liu et al. 2023 (XixiLiu95/GEN; OpenOOD's GEN postprocessor).

For each, ``detection`` reports what OpenOOD reports: AUROC, FPR at 95 % TPR, AUPR-In (known images positive,
ranked by the score) and AUPR-Out (unknown images positive, ranked by minus the score), all from scikit-learn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.metrics import average_precision_score

from .metrics import auroc, fpr_at_tpr

DEFAULT = "msp"
ENERGY_T = 1.0
MCM_TAU = 1.0
GEN_GAMMA, GEN_M = 0.1, 100


@dataclass(frozen=True)
class Score:
    """One known/unknown score: its name on a page, how it is computed from an image's cosines ``cos`` (N, K),
    softmax ``probs``, ``logits`` (scale * cos) and MCM's tau, and the range its values lie in whatever the images
    (None: it follows the run's logit scale or its number of classes)."""
    label: str
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]
    bounds: Optional[tuple[float, float]] = None


def _gen(cos, probs, logits, tau):
    p = np.sort(probs, axis=1)[:, -min(GEN_M, cos.shape[1]):]
    return -(p ** GEN_GAMMA * (1 - p) ** GEN_GAMMA).sum(axis=1)


# a score is one entry here (a softmax's largest share lies in [0, 1]; MaxLogit and Energy follow the logit scale)
REGISTRY: dict[str, Score] = {
    "msp": Score("MSP (max softmax)", lambda cos, probs, logits, tau: probs.max(axis=1), (0.0, 1.0)),
    "maxlogit": Score("MaxLogit", lambda cos, probs, logits, tau: logits.max(axis=1)),
    "energy": Score("Energy", lambda cos, probs, logits, tau: ENERGY_T * logsumexp(logits / ENERGY_T, axis=1)),
    "mcm": Score("MCM", lambda cos, probs, logits, tau: softmax(cos / tau, axis=1).max(axis=1), (0.0, 1.0)),
    "gen": Score("GEN (generalised entropy)", _gen),
}
SCORES = tuple(REGISTRY)
LABELS = {name: s.label for name, s in REGISTRY.items()}
BOUNDS: dict[str, Optional[tuple[float, float]]] = {name: s.bounds for name, s in REGISTRY.items()}


def softmax_of(cos: np.ndarray, scale: float) -> np.ndarray:
    return softmax(scale * np.asarray(cos, dtype=np.float64), axis=1)


def score(name: str, cos: np.ndarray, probs: np.ndarray, scale: float, mcm_tau: float = MCM_TAU) -> np.ndarray:
    """(N,) score ``name`` of each image from its (N, K) cosine logits and softmax."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown score '{name}'. Choose one of: {', '.join(SCORES)}")
    cos, probs = np.asarray(cos, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    return REGISTRY[name].compute(cos, probs, scale * cos, mcm_tau)


def span(name: str, values: np.ndarray) -> tuple[float, float]:
    """Where a threshold on ``name`` can go: its ``BOUNDS``, or else the span of these values (a hair wider at the
    top, so that a threshold can reject none of them)."""
    bounds = BOUNDS.get(name)
    if bounds is not None:
        return float(bounds[0]), float(bounds[1])
    values = np.asarray(values, dtype=float)
    return float(values.min()), float(values.max()) + 1e-9


def all_scores(cos: np.ndarray, probs: np.ndarray, scale: float, mcm_tau: float = MCM_TAU) -> dict[str, np.ndarray]:
    return {name: score(name, cos, probs, scale, mcm_tau) for name in SCORES}


def detection(values: np.ndarray, truth: np.ndarray) -> dict:
    """AUROC, FPR95, AUPR-In, AUPR-Out of ``values`` separating known images (``truth`` >= 0) from unknown ones
    (-1); NaN each when only one of the two is present."""
    known = np.asarray(truth) >= 0
    if known.all() or not known.any():
        return {"auroc": float("nan"), "fpr95": float("nan"), "aupr_in": float("nan"), "aupr_out": float("nan")}
    return {"auroc": auroc(values, truth), "fpr95": fpr_at_tpr(values, truth),
            "aupr_in": float(average_precision_score(known, values)),
            "aupr_out": float(average_precision_score(~known, -values))}


def score_table(values: dict[str, np.ndarray], truth: Optional[np.ndarray]) -> dict:
    """{score: detection} of every score's values (``all_scores``): what metrics.json keeps under ``scores``
    (empty without ground truth)."""
    if truth is None:
        return {}
    return {name: detection(v, truth) for name, v in values.items()}
