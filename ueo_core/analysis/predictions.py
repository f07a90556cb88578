"""A run's predictions (predictions.csv) at any threshold: acceptance, galleries of rejections, per-class
accuracy, the CSV a user downloads."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data import DataError, normalize_name
from ..metrics import SPLITS, default_threshold, open_confusion
from ..privacy import public_path
from ..runs import ZERO_SHOT_PREDICTIONS, RunFolder
from ..scores import DEFAULT, LABELS


@dataclass
class Predictions:
    paths: list[str]
    true_class: list[str]          # folder name ('' when none)
    pred: np.ndarray               # predicted known-class index
    confidence: np.ndarray
    entropy: np.ndarray
    classes: list[str]             # the prior
    truth: Optional[np.ndarray]    # index into classes, -1 unknown; None without ground truth
    scores: dict = field(default_factory=dict)  # {score name: (N,) values} (ueo_core.scores; msp = confidence)
    score: str = DEFAULT           # which score ``confidence`` holds: the galleries and threshold follow it

    def __len__(self) -> int:
        return len(self.paths)

    def by(self, score: str) -> "Predictions":
        """The same predictions judged known/unknown by ``score``: ``confidence`` holds its values (a run written
        before the scores were has only MSP)."""
        if score not in self.scores:
            raise ValueError(f"This run's predictions have no '{score}' score (it has: {', '.join(self.scores)}).")
        return replace(self, confidence=self.scores[score], score=score)

    def default_threshold(self, split: str = "2means") -> float:
        """The label-free known/unknown split of this score's values (``metrics.SPLITS``: 2-means or Otsu)."""
        return default_threshold(self.confidence, split=split)

    def at_threshold(self, threshold: float) -> dict:
        """Index lists for the galleries, most confident first; truth-based lists only when truth exists."""
        rejected = np.where(self.confidence < threshold)[0]
        order = lambda idx: idx[np.argsort(-self.confidence[idx], kind="stable")]  # noqa: E731
        out = {"rejected": order(rejected), "accepted": order(np.where(self.confidence >= threshold)[0])}
        if self.truth is not None:
            known = self.truth >= 0
            out["false_rejections"] = order(np.where(known & (self.confidence < threshold))[0])
            out["false_acceptances"] = order(np.where(~known & (self.confidence >= threshold))[0])
            out["wrong_class"] = order(np.where(known & (self.confidence >= threshold) &
                                                (self.pred != np.maximum(self.truth, 0)))[0])
        return out

    def confusion(self, threshold: float) -> np.ndarray:
        return open_confusion(self.pred, self.confidence, self.truth, len(self.classes), threshold)

    def per_class_accuracy(self, threshold: Optional[float] = None) -> dict[str, float]:
        """Accuracy of each known class. With a threshold (open set, as on Inspect): an image counts as right only
        when it is accepted *and* given its class; without, the closed-set argmax over the prior."""
        out = {}
        for k, name in enumerate(self.classes):
            mask = self.truth == k
            if mask.any():
                right = self.pred[mask] == k
                if threshold is not None:
                    right &= self.confidence[mask] >= threshold
                out[name] = float(right.mean())
        return out

    def rejection_marks(self, idx: Sequence[int]) -> list[Optional[bool]]:
        """For rejected images: True when truly unknown (a right rejection), False when of a known class (a wrong
        one), None without ground truth."""
        if self.truth is None:
            return [None] * len(idx)
        return [bool(self.truth[i] < 0) for i in idx]

    def csv_at_threshold(self, threshold: float, root: Optional[Path] = None) -> str:
        """predictions.csv as it would be at ``threshold`` on this score (the Inspect slider): the score's name and
        value, a 'threshold' column and 'predicted_known' recomputed ('confidence' stays the max softmax). Images
        are named by their path inside the data folder ``root`` (``privacy.public_path``): a download carries no
        server path."""
        buf = io.StringIO()
        w = csv.writer(buf)
        msp = self.scores.get(DEFAULT, self.confidence)
        w.writerow(["path", "true_class", "predicted_class", "confidence", "entropy", "score", "score_value",
                    "threshold", "predicted_known"])
        for i in range(len(self)):
            w.writerow([public_path(self.paths[i], root), self.true_class[i],
                        self.classes[self.pred[i]] if 0 <= self.pred[i] < len(self.classes) else "",
                        f"{msp[i]:.6f}", f"{self.entropy[i]:.6f}", self.score, f"{self.confidence[i]:.6f}",
                        f"{threshold:.6f}", bool(self.confidence[i] >= threshold)])
        return buf.getvalue()


def acceptance_summary(preds: "Predictions", threshold: float) -> str:
    """How many images a run accepts as each known class and how many it rejects as unknown, at ``threshold``
    (for a folder without class folders this is all there is to report)."""
    accepted = preds.confidence >= threshold
    counts = {c: int(((preds.pred == k) & accepted).sum()) for k, c in enumerate(preds.classes)}
    listed = ", ".join(f"{c} {n}" for c, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n)
    n_acc = int(accepted.sum())
    return (f"Of {len(preds)} images, {n_acc} are accepted as known" + (f" ({listed})" if listed else "")
            + f" and {len(preds) - n_acc} rejected as unknown, at confidence threshold {threshold:.3f}.")


def rejection_summary(marks: Sequence[Optional[bool]]) -> str:
    """A sentence on how many rejections were right, from the marks."""
    known = [m for m in marks if m is not None]
    if not marks:
        return "Nothing is rejected at this threshold."
    if not known:
        return f"{len(marks)} images rejected; without ground truth nobody can say which rejections are right."
    right = sum(known)
    return (f"{right} of {len(known)} rejections are right (truly unknown, ✓) and {len(known) - right} are wrong "
            f"(known-class images, ✗).")


def read_predictions(run_dir: str | Path, name: str = "predictions.csv") -> Predictions:
    """A run's final predictions, or with ``name=ZERO_SHOT_PREDICTIONS`` its zero-shot ones."""
    folder = RunFolder(run_dir)
    cfg = folder.config or {}
    classes = cfg.get("summary", {}).get("classes") or []
    with open(folder.path / name, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.DictReader(fh))
    index = {c: i for i, c in enumerate(classes)}
    norm_index = {normalize_name(c): i for c, i in index.items()}
    has_truth = bool(rows) and all(r["true_class"] for r in rows)
    truth = np.array([norm_index.get(normalize_name(r["true_class"]), -1) for r in rows]) if has_truth else None
    confidence = np.array([float(r["confidence"]) for r in rows])
    scores = {DEFAULT: confidence}
    scores.update({k[len("score_"):]: np.array([float(r[k]) for r in rows]) for k in (rows[0] if rows else {})
                   if k.startswith("score_")})
    return Predictions(paths=[r["path"] for r in rows], true_class=[r["true_class"] for r in rows],
                       pred=np.array([index.get(r["predicted_class"], -1) for r in rows], dtype=int),
                       confidence=confidence, entropy=np.array([float(r["entropy"]) for r in rows]),
                       classes=classes, truth=truth, scores=scores)


def run_threshold(run: str | Path, score: str = DEFAULT) -> tuple[float, str]:
    """The run's own threshold on ``score`` and where it comes from, in words: for MSP its metrics.json (what
    Inspect opens at), else the run's label-free split of that score's values on its own images."""
    folder = RunFolder(run)
    split = (folder.config or {}).get("split") or "2means"
    if score == DEFAULT:
        after = (folder.read_json("metrics.json") or {}).get("after") or {}
        if after.get("threshold") is not None:
            return float(after["threshold"]), "the run's own threshold, from its metrics.json"
    preds = read_predictions(run)
    if score not in preds.scores:
        raise DataError(f"This run's predictions have no {LABELS.get(score, score)} values (it was made before "
                        f"they were saved): sort it by {LABELS[DEFAULT]}.")
    judged = preds.by(score)
    return judged.default_threshold(split), (f"the run's own {SPLITS.get(split, split)} split of its "
                                             f"{LABELS.get(score, score)} values on the {len(judged)} images it "
                                             "adapted on")


def predictions_before(run_dir: str | Path) -> Optional[Predictions]:
    """The zero-shot predictions saved beside the run's own, or None for runs made before they were saved."""
    return read_predictions(run_dir, ZERO_SHOT_PREDICTIONS) if (Path(run_dir) / ZERO_SHOT_PREDICTIONS).exists() \
        else None
