"""A run's quality estimated from a person's labels, each with a 95 % interval, and a threshold chosen from them.

What is estimated (the same definitions as ``metrics.compute_metrics``, so an estimate and the real value, where a
folder has ground truth, mean the same thing):

- ``known_accuracy``: of the images labelled with a prior class, the share the run gives that class (its argmax
  over the prior, the threshold aside): GACC.
- ``unknown_rejected``: of the images labelled "unknown", the share the run rejects (score below the threshold):
  the H-score's unknown rejection rate.
- ``auroc``: how well the score ranks known (positive) above unknown images: AUROC, ties counting one half.

A label that names a class outside this run's prior counts as "unknown" here (the image is of no prior class).

Which labels: by default (``random_only``) only those of the uniformly random sample (``labels.proposals``); the
images chosen as informative sit near the threshold, so counting them as if random would make the run look worse
than it is. Or all labels, with inverse-probability weights: the images chosen by a person or as informative count
once each (they are themselves, not a sample), and each image of the random sample stands for the images nobody
chose: (N - chosen) / n_random of them.

Intervals (95 %): the two proportions, from the random sample, get the exact Clopper-Pearson interval
(``scipy.stats.binomtest``). AUROC gets a stratified bootstrap (the known and the unknown labels resampled
separately, ``AUROC_RESAMPLES`` resamples, seeded) with the ``AUROC_METHOD`` interval; bench/label_coverage.py
measured how often each covers the true value on a Shapes run. With inverse-probability weights, every interval
is a percentile bootstrap that resamples the random sample and keeps the chosen images.

Too few labels (said instead of a number): each proportion needs ``MIN_LABELS`` labels of its kind; AUROC and the
Youden threshold need ``MIN_LABELS`` known and ``MIN_LABELS`` unknown labels.

``python -m ueo_core estimate --run RUN --labels labels.csv [--json]`` reads a CSV of ``path,label``; its labels
count as a random sample (whoever made the CSV vouches for that).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import roc_curve

from .labels import Label, server_path

MIN_LABELS = 5                 # per kind: fewer, and an estimate says so instead of giving a number
CONFIDENCE = 0.95
AUROC_RESAMPLES = 2000
AUROC_METHOD = "percentile"    # scipy.stats.bootstrap's method for AUROC (bench/label_coverage.py chose it)
SEED = 0
ESTIMATES = {"known_accuracy": "known-class accuracy", "unknown_rejected": "unknowns rejected",
             "auroc": "AUROC"}
DEFINITIONS = {
    "known_accuracy": "of the images labelled with a prior class, the share the run gives that class (GACC)",
    "unknown_rejected": "of the images labelled unknown, the share the run rejects at the threshold",
    "auroc": "how well the score ranks images labelled known above those labelled unknown (AUROC)",
}


# ----------------------------------------------------------------------------------------------- the labels
def _label_text(lab) -> Optional[str]:
    return lab.label if isinstance(lab, Label) else lab


def _is_random(lab) -> bool:
    """A label from the random sample; a plain string (a CSV's label) counts as one."""
    return not isinstance(lab, Label) or lab.source == "random"


def labelled(preds, labels: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into ``preds``, truth as ``preds.truth`` codes: class index or -1 unknown, from the random sample)
    of the labelled images of the run; labels of other images are left out."""
    index = {}
    for i, p in enumerate(preds.paths):
        index.setdefault(p, i)
        index.setdefault(server_path(p), i)
    classes = {c: k for k, c in enumerate(preds.classes)}
    idx, truth, random = [], [], []
    seen = set()
    for image, lab in labels.items():
        text = _label_text(lab)
        i = index.get(image)
        if i is None:
            i = index.get(server_path(image))
        if text is None or i is None or i in seen:
            continue
        seen.add(i)
        idx.append(i)
        truth.append(classes.get(text, -1))  # "unknown", or a class outside this prior
        random.append(_is_random(lab))
    order = np.argsort(idx, kind="stable")
    return (np.asarray(idx, dtype=int)[order], np.asarray(truth, dtype=int)[order],
            np.asarray(random, dtype=bool)[order])


# ------------------------------------------------------------------------------------------------ intervals
def exact_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/n."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def _auc(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUROC of positives ``x`` against negatives ``y`` (the Mann-Whitney U over nx * ny), ties one half;
    vectorised over leading axes, as ``scipy.stats.bootstrap`` calls it."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    nx, ny = x.shape[-1], y.shape[-1]
    # by ranks (ties get their mean rank: one half each), not by the nx * ny differences: a bootstrap of 2,000
    # resamples of 300 labels then holds 2,000 x 300 values, not 2,000 x 200 x 100
    lead = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    both = np.concatenate([np.broadcast_to(x, lead + (nx,)), np.broadcast_to(y, lead + (ny,))], axis=-1)
    ranks = stats.rankdata(both, axis=-1)
    return (ranks[..., :nx].sum(axis=-1) - nx * (nx + 1) / 2) / (nx * ny)


def auroc_interval(known: np.ndarray, unknown: np.ndarray, method: str = AUROC_METHOD,
                   n_resamples: int = AUROC_RESAMPLES, seed: int = SEED,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A stratified bootstrap interval of AUROC: known and unknown values resampled separately (each keeps its
    count, as the labels do). A bootstrap whose resamples all agree (every known above every unknown) gives that
    one value as both ends."""
    res = stats.bootstrap((np.asarray(known, float), np.asarray(unknown, float)), _auc, n_resamples=n_resamples,
                          confidence_level=confidence, method=method, vectorized=True, paired=False,
                          rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # (BCa on a degenerate bootstrap distribution)
        value = float(_auc(known, unknown))
        dist = res.bootstrap_distribution
        low, high = (float(np.quantile(dist, (1 - confidence) / 2)), float(np.quantile(dist, (1 + confidence) / 2))) \
            if np.isfinite(dist).all() else (value, value)
    return low, high


def _weighted_bootstrap(stat, fixed: np.ndarray, sampled: np.ndarray, n_resamples: int = AUROC_RESAMPLES,
                        seed: int = SEED, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of ``stat(rows)`` where ``sampled`` (rows of the random sample) is resampled with
    replacement and ``fixed`` (the chosen images) stays."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_resamples):
        pick = sampled[rng.integers(0, len(sampled), len(sampled))] if len(sampled) else sampled
        v = stat(np.concatenate([fixed, pick]))
        if math.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    return float(np.quantile(vals, (1 - confidence) / 2)), float(np.quantile(vals, (1 + confidence) / 2))


# ------------------------------------------------------------------------------------------------- Youden
def youden_threshold(values: Sequence[float], known: Sequence[bool],
                     weights: Optional[Sequence[float]] = None) -> float:
    """The threshold that maximises Youden's J = TPR - FPR on labelled images (known positive, accepted when
    value >= threshold), from scikit-learn's ROC curve over every labelled value.

    The cut falls between two labelled values: halfway between the lowest value it accepts and the next lower
    labelled value (the lowest value itself when it accepts every image), so the labelled images are judged as
    the best cut judges them. Ties of J: the highest such threshold (the first of ``roc_curve``'s, which go from
    high to low), i.e. the one that accepts the fewest images."""
    values = np.asarray(values, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    if known.all() or not known.any():
        raise ValueError("Youden's J needs both known and unknown labels.")
    fpr, tpr, thr = roc_curve(known.astype(int), values, sample_weight=weights, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    if not np.isfinite(thr[best]):  # (roc_curve's first cut, +inf: accept nothing) just above every value
        return float(np.nextafter(values.max(), np.inf))
    cut = float(thr[best])
    below = values[values < cut]
    return (cut + float(below.max())) / 2 if len(below) else cut


def _youden(values: np.ndarray, known: np.ndarray, weights: Optional[np.ndarray] = None) -> dict:
    """``threshold_youden``, or None with the reason when no cut does better than chance (J <= 0)."""
    t = youden_threshold(values, known, weights)
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    acc = values >= t
    j = (w * (acc & known)).sum() / (w * known).sum() - (w * (acc & ~known)).sum() / (w * ~known).sum()
    if j <= 0:
        return {"threshold_youden": None, "threshold_youden_reason": "No threshold separates the images labelled "
                "known from those labelled unknown better than chance (Youden's J is 0 at best)."}
    return {"threshold_youden": t}


# ------------------------------------------------------------------------------------------------ estimates
def _too_few(what: str, need: str, have: str, n: int) -> dict:
    return {"value": None, "low": None, "high": None, "n": int(n),
            "reason": f"Too few labels for the {what}: it needs at least {need}; there {have}."}


def _count(n: int, what: str) -> str:
    return f"{'is' if n == 1 else 'are'} {n} {what}{'' if n == 1 else 's'}"


def true_values(preds, threshold: float) -> dict:
    """The real values (from the folder's ground truth, over every image), as ``metrics.compute_metrics`` reports
    them: what the estimates estimate. Empty without ground truth."""
    from .metrics import auroc, gacc
    if preds.truth is None:
        return {}
    truth, values = np.asarray(preds.truth), np.asarray(preds.confidence, dtype=np.float64)
    unknown = truth == -1
    out = {"known_accuracy": gacc(np.asarray(preds.pred), truth), "auroc": auroc(values, truth),
           "unknown_rejected": float((values[unknown] < threshold).mean()) if unknown.any() else float("nan")}
    return {k: (v if math.isfinite(v) else None) for k, v in out.items()}


def estimate(preds, threshold: float, labels: Mapping[str, object], random_only: bool = True,
             seed: int = SEED) -> dict:
    """Estimates from a person's labels (``{image: Label or label text}``), at ``preds``' score (``preds.by``)
    and ``threshold``: ``{"known_accuracy", "unknown_rejected", "auroc": {"value", "low", "high", "n"} or
    {"value": None, "reason", "n"}, "threshold_youden": float or None (then "threshold_youden_reason"),
    "basis": which labels, in words, "n_labels", "n_used", "random_only"}``."""
    idx, truth, random = labelled(preds, labels)
    n_all = len(idx)
    n_random = int(random.sum())
    values = np.asarray(preds.confidence, dtype=np.float64)
    if random_only:
        keep = random
        out = _from_sample(values[idx[keep]], np.asarray(preds.pred)[idx[keep]], truth[keep], threshold, seed)
        out["basis"] = _basis_random(n_random, n_all - n_random)
    else:
        out = _from_weighted(preds, values, idx, truth, random, threshold, seed)
    out.update({"n_labels": n_all, "n_used": n_random if random_only else n_all, "random_only": bool(random_only),
                "threshold": float(threshold), "score": getattr(preds, "score", None)})
    return out


def _basis_random(n_random: int, n_other: int) -> str:
    text = (f"the {n_random} label{'s' if n_random != 1 else ''} of the random sample" if n_random
            else "the random sample, which has no labels yet")
    if n_other:
        text += (f" ({n_other} label{'s' if n_other != 1 else ''} given to images chosen as informative or by hand "
                 f"{'are' if n_other != 1 else 'is'} left out: they are not a random sample)")
    return text[0].upper() + text[1:] + "."


def _from_sample(values: np.ndarray, pred: np.ndarray, truth: np.ndarray, threshold: float, seed: int) -> dict:
    """Estimates from a simple random sample of labels: exact intervals for the proportions, a stratified
    bootstrap for AUROC."""
    known, unknown = truth >= 0, truth < 0
    nk, nu = int(known.sum()), int(unknown.sum())
    out = {}
    if nk >= MIN_LABELS:
        k = int((pred[known] == truth[known]).sum())
        out["known_accuracy"] = _entry(k / nk, *exact_interval(k, nk), nk, "exact (Clopper-Pearson)")
    else:
        out["known_accuracy"] = _too_few(ESTIMATES["known_accuracy"], f"{MIN_LABELS} labels of a prior class",
                                         _count(nk, "such label"), nk)
    if nu >= MIN_LABELS:
        k = int((values[unknown] < threshold).sum())
        out["unknown_rejected"] = _entry(k / nu, *exact_interval(k, nu), nu, "exact (Clopper-Pearson)")
    else:
        out["unknown_rejected"] = _too_few(ESTIMATES["unknown_rejected"], f"{MIN_LABELS} labels 'unknown'",
                                           _count(nu, "such label"), nu)
    both = nk >= MIN_LABELS and nu >= MIN_LABELS
    if both:
        a = float(_auc(values[known], values[unknown]))
        out["auroc"] = _entry(a, *auroc_interval(values[known], values[unknown], seed=seed), nk + nu,
                              f"stratified bootstrap ({AUROC_METHOD}, {AUROC_RESAMPLES} resamples)")
        out.update(_youden(values[known | unknown], known[known | unknown]))
    else:
        need = f"{MIN_LABELS} labels of a prior class and {MIN_LABELS} labels 'unknown'"
        have = f"{_count(nk, 'label')} of a prior class and {nu} 'unknown'"
        out["auroc"] = _too_few(ESTIMATES["auroc"], need, have, nk + nu)
        out["threshold_youden"] = None
        out["threshold_youden_reason"] = f"Too few labels for a threshold from the labels: it needs at least {need}; " \
                                         f"there {have}."
    return out


def _entry(value: float, low: float, high: float, n: int, interval: str) -> dict:
    return {"value": float(value), "low": float(low), "high": float(high), "n": int(n), "interval": interval}


def _from_weighted(preds, values, idx, truth, random, threshold, seed) -> dict:
    """Estimates from every label with inverse-probability weights: an image chosen (as informative or by hand)
    weighs 1, an image of the random sample (N - chosen) / n_random; percentile bootstrap intervals that resample
    the random sample."""
    n_total, n_chosen, n_random = len(preds.paths), int((~random).sum()), int(random.sum())
    w_random = (n_total - n_chosen) / n_random if n_random else 0.0
    weight = np.where(random, w_random, 1.0)
    pred = np.asarray(preds.pred)[idx]
    v = values[idx]
    rows = np.arange(len(idx))
    fixed, sampled = rows[~random], rows[random]
    known, unknown = truth >= 0, truth < 0
    nk, nu = int(known.sum()), int(unknown.sum())
    out = {}

    def ratio(hit, among):
        def stat(r):
            w = weight[r] * among[r]
            return float((w * hit[r]).sum() / w.sum()) if w.sum() > 0 else float("nan")
        return stat

    def weighted_auc(r):
        k, u = r[known[r]], r[unknown[r]]
        if not len(k) or not len(u):
            return float("nan")
        d = v[k][:, None] - v[u][None, :]
        ww = weight[k][:, None] * weight[u][None, :]
        return float((ww * ((d > 0) + 0.5 * (d == 0))).sum() / ww.sum())

    no_sample = n_random < MIN_LABELS
    sample_reason = (f"{_count(n_random, 'label')} of the random sample, and with fewer than {MIN_LABELS} the "
                     "images nobody chose are not represented")
    how = f"percentile bootstrap of the random sample ({AUROC_RESAMPLES} resamples)"
    for key, ok, hit, among, need, have, n in (
            ("known_accuracy", nk >= MIN_LABELS, pred == truth, known, f"{MIN_LABELS} labels of a prior class",
             _count(nk, "such label"), nk),
            ("unknown_rejected", nu >= MIN_LABELS, v < threshold, unknown, f"{MIN_LABELS} labels 'unknown'",
             _count(nu, "such label"), nu)):
        if not ok:
            out[key] = _too_few(ESTIMATES[key], need, have, n)
        elif no_sample:
            out[key] = _too_few(ESTIMATES[key], f"{MIN_LABELS} labels of the random sample", sample_reason, n)
        else:
            stat = ratio(hit.astype(float), among.astype(float))
            out[key] = _entry(stat(rows), *_weighted_bootstrap(stat, fixed, sampled, seed=seed), n, how)
    need = f"{MIN_LABELS} labels of a prior class and {MIN_LABELS} labels 'unknown'"
    if nk >= MIN_LABELS and nu >= MIN_LABELS and not no_sample:
        out["auroc"] = _entry(weighted_auc(rows), *_weighted_bootstrap(weighted_auc, fixed, sampled, seed=seed),
                              nk + nu, how)
        out.update(_youden(v, known, weight))
    else:
        have = (f"{_count(nk, 'label')} of a prior class and {nu} 'unknown'" if nk < MIN_LABELS or nu < MIN_LABELS
                else sample_reason)
        need = need if nk < MIN_LABELS or nu < MIN_LABELS else f"{MIN_LABELS} labels of the random sample"
        out["auroc"] = _too_few(ESTIMATES["auroc"], need, have, nk + nu)
        out["threshold_youden"] = None
        out["threshold_youden_reason"] = f"Too few labels for a threshold from the labels: it needs at least {need}; " \
                                         f"there {have}."
    each = f"{w_random:.1f}" if n_random else "0"
    out["basis"] = (f"All {len(idx)} labels, weighted by inverse probability: the {n_chosen} given to images chosen as "
                    f"informative or by hand count once each; each of the {n_random} of the random sample stands for "
                    f"{each} of the {n_total - n_chosen} other images.")
    return out


# ---------------------------------------------------------------------------------------------------- CLI
def add_estimate_parser(sub) -> None:
    """``python -m ueo_core estimate --run RUN --labels labels.csv [--json]``."""
    from .scores import DEFAULT, SCORES
    e = sub.add_parser("estimate", help="estimate a run's known-class accuracy, unknown rejection and AUROC, each "
                                        "with a 95 %% interval, from a CSV of a person's labels (path,label), and "
                                        "a threshold from them (Youden's J)")
    e.add_argument("--run", required=True, help="a finished run folder")
    e.add_argument("--labels", required=True,
                   help="CSV with the columns path,label: path inside the run's data folder (or absolute), label a "
                        "prior class or 'unknown'. Its labels count as a uniformly random sample of the run's images")
    e.add_argument("--score", choices=list(SCORES), default=DEFAULT,
                   help="known/unknown score (default %(default)s, as Inspect opens)")
    e.add_argument("--threshold", type=float, help="threshold on the score (default: the run's own)")
    e.add_argument("--json", action="store_true", help="print the estimates as JSON, one entry per estimate")


def cmd_estimate(args) -> int:
    from .analysis import read_predictions
    from .data import DataError
    from .labels import read_labels_csv
    from .privacy import data_root
    from .runs import RunFolder
    from .analysis.predictions import run_threshold

    run = Path(args.run)
    if not (run / "predictions.csv").is_file():
        raise DataError(f"--run {run} is not a finished run folder (it holds no predictions.csv).")
    cfg = RunFolder(run).config or {}
    preds = read_predictions(run).by(args.score)
    thr = run_threshold(run, args.score)[0] if args.threshold is None else float(args.threshold)
    if not math.isfinite(thr):
        raise DataError(f"The threshold must be a number, not {args.threshold}.")
    labels = read_labels_csv(args.labels, data_root(cfg.get("data")), images=preds.paths, classes=preds.classes)
    est = estimate(preds, thr, labels, random_only=True)
    est["basis"] = (f"The {len(labels)} labels of {Path(args.labels).name}, counted as a uniformly random sample "
                    "of the run's images (the estimates are only as honest as that).")
    if args.json:
        print(json.dumps(est, indent=2))
        return 0
    print(f"run {run.name}: {len(preds)} images, {args.score} threshold {thr:.4g}")
    print(est["basis"])
    for key, name in ESTIMATES.items():
        e = est[key]
        if e["value"] is None:
            print(f"{name}: {e['reason']}")
        else:
            print(f"{name}: {e['value']:.3f} (95 % interval {e['low']:.3f}-{e['high']:.3f}, {e['n']} labels, "
                  f"{e['interval']})")
    t = est["threshold_youden"]
    print(f"threshold from the labels (Youden's J): {t:.4g}" if t is not None else est["threshold_youden_reason"])
    real = true_values(preds, thr)
    if real:  # the folder has class folders: what the labels estimate, on every image
        print("the folder's ground truth, on all its images: " + ", ".join(
            f"{name} {real[k]:.3f}" for k, name in ESTIMATES.items() if real.get(k) is not None))
    return 0
