"""Metrics over (probabilities, truth) arrays, and the per-image predictions table.

Truth labels: 0..K-1 a known class, UNKNOWN (-1) an image of a class outside the prior, NO_TRUTH (-2) no label.

- GACC  accuracy over known-class images (argmax over the K known classes), as the official code's "GACC".
- PACC  mean of per-class accuracies over the known classes present.
- AUROC known (positive) vs unknown by max-softmax confidence.
- FPR95 fraction of unknown images accepted at the threshold that accepts 95 % of known images.
- H-score harmonic mean of known accuracy (a rejected known image counts as wrong) and the unknown rejection rate,
  at a confidence threshold.
- ECE   expected calibration error over known-class images (``ece``, 15 equal-width bins, Guo et al. 2017).
- threshold default (unsupervised): the midpoint of the two cluster centres of 2-means on the confidences
  (sklearn KMeans, 1-D), i.e. the split between a confident and an unconfident group, which needs no labels.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from .data import NO_TRUTH, UNKNOWN
from .methods.base import REPORT_EPS, entropy


def confidence(probs: np.ndarray) -> np.ndarray:
    return probs.max(axis=1)


def entropy_np(probs: np.ndarray) -> np.ndarray:
    """Each row's Shannon entropy (the project's one ``entropy``, with only a guard against log 0)."""
    return entropy(probs, REPORT_EPS)


SPLITS = {"2means": "2-means", "otsu": "Otsu"}  # the label-free known/unknown splits, by name


def default_threshold(conf: np.ndarray, seed: int = 0, split: str = "2means") -> float:
    """Unsupervised known/unknown threshold of a score's values: ``2means`` the midpoint between the 2-means
    cluster centres (the default), ``otsu`` Otsu's threshold (the CLIPTTA suite's open-set choice)."""
    conf = np.asarray(conf, dtype=np.float64).reshape(-1, 1)
    if len(conf) < 2 or np.ptp(conf) < 1e-9:
        return float(conf.mean()) if len(conf) else 0.5
    if split == "otsu":
        return otsu_threshold(conf.ravel())
    if split != "2means":
        raise ValueError(f"Unknown split '{split}'. Choose one of: {', '.join(SPLITS)}")
    centres = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(conf).cluster_centers_.ravel()
    return float(centres.mean())


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu (1979): of the histogram's bin edges, the one that maximises the between-class variance
    w0 w1 (mu0 - mu1)^2 of the two sides. (Written here rather than taking scikit-image for one function; it is
    tested against a brute-force search over the edges.)"""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = counts.sum() - w0
    m0 = np.cumsum(counts * centres)[:-1]
    mu0, mu1 = m0 / np.maximum(w0, 1), ((counts * centres).sum() - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:-1][np.argmax(between)])


def gacc(pred: np.ndarray, truth: np.ndarray) -> float:
    known = truth >= 0
    return float((pred[known] == truth[known]).mean()) if known.any() else float("nan")


def pacc(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    known = truth >= 0
    if not known.any():
        return float("nan")
    cm = confusion_matrix(truth[known], pred[known], labels=list(range(n_classes)))
    support = cm.sum(axis=1)
    return float((cm.diagonal()[support > 0] / support[support > 0]).mean())


def auroc(conf: np.ndarray, truth: np.ndarray) -> float:
    is_known = (truth >= 0).astype(int)
    if is_known.min() == is_known.max():
        return float("nan")
    return float(roc_auc_score(is_known, conf))


def fpr_at_tpr(conf: np.ndarray, truth: np.ndarray, tpr_level: float = 0.95) -> float:
    is_known = (truth >= 0).astype(int)
    if is_known.min() == is_known.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(is_known, conf)
    return float(fpr[np.searchsorted(tpr, tpr_level, side="left")])


def open_set_predictions(pred: np.ndarray, conf: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted class, or UNKNOWN where confidence is below the threshold."""
    return np.where(conf >= threshold, pred, UNKNOWN)


def _harmonic(a: float, b: float) -> float:
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def h_score(pred: np.ndarray, conf: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    """Open-set H-score: the harmonic mean of known-class accuracy (an image counts when accepted *and* given its
    class) and the unknowns' rejection rate.

    ``h_score`` averages the known accuracy over classes, as the universal domain adaptation literature does (Fu
    et al., ECCV 2020; OVANet's evaluation, Saito & Saenko, ICCV 2021: the mean of the per-class accuracies of the
    known classes, then the harmonic mean with the unknown class's accuracy). ``h_score_image`` uses the accuracy
    over known *images* instead (what this project reported before); on balanced folders the two agree.
    """
    open_pred = open_set_predictions(pred, conf, threshold)
    known, unknown = truth >= 0, truth == UNKNOWN
    right = open_pred == truth
    acc_image = float(right[known].mean()) if known.any() else float("nan")
    per_class = [float(right[truth == k].mean()) for k in np.unique(truth[known])]
    acc_class = float(np.mean(per_class)) if per_class else float("nan")
    acc_unknown = float((open_pred[unknown] == UNKNOWN).mean()) if unknown.any() else float("nan")
    return {"known_acc_open": acc_class, "known_acc_open_image": acc_image, "unknown_rejection": acc_unknown,
            "h_score": _harmonic(acc_class, acc_unknown), "h_score_image": _harmonic(acc_image, acc_unknown)}


def open_confusion(pred: np.ndarray, conf: np.ndarray, truth: np.ndarray, n_classes: int,
                   threshold: float) -> np.ndarray:
    """(K+1)x(K+1) confusion matrix; the last row/column is 'unknown'. Rows: truth; columns: prediction."""
    labelled = truth != NO_TRUTH
    t = np.where(truth[labelled] == UNKNOWN, n_classes, truth[labelled])
    o = open_set_predictions(pred, conf, threshold)[labelled]
    o = np.where(o == UNKNOWN, n_classes, o)
    return confusion_matrix(t, o, labels=list(range(n_classes + 1)))


COLLAPSE_FRACTION = 0.5  # collapsed: the predicted-class distribution has under half of the entropy log K


def class_shares(probs: np.ndarray) -> np.ndarray:
    """Fraction of images whose argmax is each class (sums to 1)."""
    probs = np.asarray(probs)
    if not len(probs):
        return np.zeros(probs.shape[1] if probs.ndim == 2 else 0)
    return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / len(probs)


def collapse_stats(probs: np.ndarray) -> dict:
    """Whether predictions have collapsed onto few classes, from labels-free counts.

    Rule: the entropy of the predicted-class shares is below ``COLLAPSE_FRACTION`` x log K. With K = 6 the limit
    is 0.90 nats (log 6 = 1.79): all predictions on 2 classes (0.69) is a collapse; one class taking 70 % with the
    rest spread evenly (1.09) is not, since real folders can be that unbalanced. Measured on Shapes
    (bench/world_table.py, 3 seeds): entropy minimisation ended with one class at 92-95 % of the predictions
    (share entropy about 0.3); zero-shot and every other method had at most 51 % in one class (zero-shot on photo,
    share entropy 1.43). Fewer images than classes cannot spread over every class, so no collapse is called then:
    one image is "100 % one class" by necessity, not by collapse.
    """
    shares = class_shares(probs)
    k = len(shares)
    n = len(probs)
    nz = shares[shares > 0]
    h = float(-(nz * np.log(nz)).sum()) if len(nz) else 0.0
    limit = COLLAPSE_FRACTION * float(np.log(k)) if k > 1 else 0.0
    return {"class_shares": [float(x) for x in shares], "top_share": float(shares.max()) if k else 0.0,
            "share_entropy": h, "collapsed": bool(k > 1 and n >= k and h < limit)}


CALIBRATION_BINS = 15  # Guo et al. (2017)'s number of bins, the one calibration papers report ECE with


def reliability_bins(conf: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Optional[dict]:
    """Per equal-width confidence bin on [0, 1]: the number of images, their mean confidence and their accuracy
    (NaN where a bin is empty); None for no images. Bins are (lo, hi], as Guo et al.'s code (an image at exactly
    1/15 goes in the first bin; torchmetrics' bins are [lo, hi) instead, which differs only for values exactly on
    an edge); a confidence of 0 joins the first bin so that every image is counted."""
    conf = np.asarray(conf, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if not len(conf):
        return None
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / count
        accuracy = np.bincount(idx, weights=correct, minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def reliability(probs: np.ndarray, truth: Optional[np.ndarray], bins: int = CALIBRATION_BINS) -> Optional[dict]:
    """``reliability_bins`` of the known-class images (truth >= 0): confidence the max softmax over the K known
    classes, correct when the argmax is the true class. None without truth or without a known image: unknown
    images have no right class to be calibrated against."""
    if truth is None:
        return None
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth)
    known = truth >= 0
    if not known.any():
        return None
    return reliability_bins(probs[known].max(axis=1), probs[known].argmax(axis=1) == truth[known], bins)


def calibration_error(rel: Optional[dict]) -> Optional[float]:
    """ECE of reliability bins: the image-weighted mean gap |accuracy - mean confidence| over the bins, so that a
    reliability diagram and its ECE are one computation."""
    if rel is None:
        return None
    full = rel["count"] > 0
    gaps = np.abs(rel["accuracy"][full] - rel["confidence"][full])
    return float((rel["count"][full] * gaps).sum() / rel["count"].sum())


def ece(probs: np.ndarray, truth: Optional[np.ndarray], bins: int = CALIBRATION_BINS) -> Optional[float]:
    """Expected calibration error (Guo et al. 2017) of the known-class images, 0 (calibrated) to 1; None where
    there is no known image with its truth."""
    return calibration_error(reliability(probs, truth, bins))


def compute_metrics(probs: np.ndarray, truth: Optional[np.ndarray], threshold: Optional[float] = None,
                    seen: Optional[Sequence[int]] = None, split: str = "2means") -> dict:
    """Every metric that the truth allows. Without truth, only label-free statistics."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = confidence(probs)
    pred = probs.argmax(axis=1)
    thr = default_threshold(conf, split=split) if threshold is None else float(threshold)
    out = {"n": int(len(probs)), "threshold": thr, "mean_confidence": float(conf.mean()),
           "mean_entropy": float(entropy_np(probs).mean()),
           "predicted_unknown_rate": float((conf < thr).mean()), **collapse_stats(probs)}
    if truth is None:
        return out
    truth = np.asarray(truth)
    labelled = truth != NO_TRUTH
    if not labelled.any():
        return out
    p, c, t = pred[labelled], conf[labelled], truth[labelled]
    out.update({"gacc": gacc(p, t), "pacc": pacc(p, t, probs.shape[1]), "auroc": auroc(c, t),
                "fpr95": fpr_at_tpr(c, t)})
    out.update(h_score(p, c, t, thr))
    calibration = ece(probs[labelled], t)
    out["ece"] = float("nan") if calibration is None else calibration  # missing as the others: NaN, null in JSON
    if seen is not None:  # supervised methods: accuracy on classes trained on vs named-but-never-trained classes
        is_seen = np.isin(t, list(seen))
        out["acc_seen"] = gacc(p[is_seen], t[is_seen]) if is_seen.any() else float("nan")
        unseen = (t >= 0) & ~is_seen
        out["acc_unseen"] = gacc(p[unseen], t[unseen]) if unseen.any() else float("nan")
    return out


def confidence_histogram(conf: np.ndarray, truth: Optional[np.ndarray] = None, bins: int = 20,
                         span: Optional[tuple] = None) -> dict:
    """Counts of max-softmax confidence in equal bins on [0, 1] (or on ``span`` = (low, high): another score's
    range), split by true known/unknown when truth exists."""
    lo, hi = span if span is not None else (0.0, 1.0)
    edges = np.linspace(lo, hi, bins + 1)
    hist = {"edges": edges.tolist(), "all": np.histogram(conf, edges)[0].tolist()}
    if truth is not None and (truth != NO_TRUTH).any():
        hist["known"] = np.histogram(conf[truth >= 0], edges)[0].tolist()
        hist["unknown"] = np.histogram(conf[truth == UNKNOWN], edges)[0].tolist()
    return hist


PREDICTION_FIELDS = ["path", "true_class", "predicted_class", "confidence", "entropy", "predicted_known"]


def predictions_table(files: Sequence[str], probs: np.ndarray, classes: Sequence[str],
                      folder_names: Sequence[Optional[str]], threshold: float,
                      scores: Optional[dict] = None) -> list[dict]:
    """One row per image; with ``scores`` ({name: (N,) values}, ``ueo_core.scores``) a ``score_<name>`` column
    each, so that Inspect and Explore can threshold by any of them."""
    conf, ent, pred = confidence(probs), entropy_np(probs), probs.argmax(axis=1)
    rows = [{"path": f, "true_class": fo if fo is not None else "", "predicted_class": classes[k],
             "confidence": round(float(c), 6), "entropy": round(float(e), 6), "predicted_known": bool(c >= threshold)}
            for f, fo, k, c, e in zip(files, folder_names, pred, conf, ent)]
    for name, values in (scores or {}).items():
        for row, v in zip(rows, values):
            row[f"score_{name}"] = round(float(v), 6)
    return rows


def write_predictions(path: str | Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else PREDICTION_FIELDS)
        w.writeheader()
        w.writerows(rows)
