"""What adaptation changed: each image's zero-shot decision beside its adapted one (predictions_zero_shot.csv beside
predictions.csv), the decisions that flipped, and with ground truth which flips fixed a mistake and which made one.

A decision is a known class k (the image scores at or above the threshold and k is its nearest class) or unknown
(below). A flip is one of three kinds (``KINDS``): "unknown → known", "known → unknown", or "class changed" (known
both times, another class). With ground truth a decision is right under the open-set rule of ``metrics.h_score``: a
known-class image accepted with its own class, or an unknown image rejected. A flipped decision can never be right
both times (only one decision is right for an image), so each flip is exactly one of fixed (wrong, then right),
broken (right, then wrong) or still wrong.

Each side is judged at its own threshold: the zero-shot predictions at the label-free threshold the run found for
them (``zero_shot_threshold``), the adapted ones at the threshold the user chose: each side is what that model
would decide by itself (adaptation moves the scores, and with them the label-free threshold: on the Shapes · photo
UEO run, MSP's from 0.748 to 0.777).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..data import UNKNOWN
from ..metrics import SPLITS, open_set_predictions
from ..scores import DEFAULT, LABELS
from .predictions import Predictions

UP, DOWN, CLASS = "unknown → known", "known → unknown", "class changed"
KINDS = (UP, DOWN, CLASS)
UNCHANGED = "unchanged"
OUTCOMES = ("fixed", "broken", "still wrong")
NO_ZERO_SHOT = ("This run was made before the zero-shot predictions were saved beside its own, so there is nothing "
                "to compare its decisions with. A new run of the same data and method shows what adaptation changed.")


@dataclass
class Changes:
    """Per image (in the adapted predictions' order): the zero-shot and adapted decisions (class index, or
    ``UNKNOWN``), their score values, the kind of change, and with truth whether each decision is right."""
    paths: list[str]
    true_class: list[str]
    classes: list[str]
    score: str
    t_before: float
    t_after: float
    before: np.ndarray              # decision: class index or UNKNOWN
    after: np.ndarray
    value_before: np.ndarray        # the score's value on each side
    value_after: np.ndarray
    kind: np.ndarray                # one of KINDS or UNCHANGED
    right_before: Optional[np.ndarray]  # None without ground truth
    right_after: Optional[np.ndarray]
    identical: bool = False         # the two files hold the same predictions (a zero-shot or training-free run)
    rule: str = ""                  # how t_before was found, in words ("label-free, 2-means")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def has_truth(self) -> bool:
        return self.right_before is not None

    def outcome(self) -> Optional[np.ndarray]:
        """Per image "fixed", "broken", "still wrong" (flipped) or "" (unchanged); None without truth."""
        if not self.has_truth:
            return None
        out = np.full(len(self), "", dtype=object)
        flipped = self.kind != UNCHANGED
        rb, ra = self.right_before, self.right_after
        out[flipped & ~rb & ra] = "fixed"
        out[flipped & rb & ~ra] = "broken"
        out[flipped & ~rb & ~ra] = "still wrong"
        return out

    def of(self, kind: str) -> np.ndarray:
        """Indices of the images of one kind, surest adapted decision first."""
        idx = np.where(self.kind == kind)[0]
        return idx[np.argsort(-self.value_after[idx], kind="stable")]

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {"images": n, and with truth "fixed", "broken", "still wrong"}} for each of ``KINDS``."""
        out = {}
        outcome = self.outcome()
        for kind in KINDS:
            mask = self.kind == kind
            row = {"images": int(mask.sum())}
            if outcome is not None:
                row.update({o: int((mask & (outcome == o)).sum()) for o in OUTCOMES})
            out[kind] = row
        return out

    def rows(self) -> list[dict]:
        """The counts as table rows, one per kind, and a total row."""
        counts = self.counts()
        rows = [{"change": kind, **c} for kind, c in counts.items()]
        rows.append({"change": "all changes", **{k: sum(c[k] for c in counts.values()) for k in rows[0]
                                                 if k != "change"}})
        return rows

    def name(self, decision: int) -> str:
        if decision == UNKNOWN:
            return "unknown"
        return self.classes[decision] if 0 <= decision < len(self.classes) else "?"

    def caption(self, i: int) -> str:
        """"unknown → star 0.91": the zero-shot decision, the adapted one and the adapted score value; with truth,
        ✓ or ✗ (the adapted decision is right or wrong) and the image's true folder first."""
        text = f"{self.name(self.before[i])} → {self.name(self.after[i])} {self.value_after[i]:.3g}"
        if not self.has_truth:
            return text
        return f"{'✓' if self.right_after[i] else '✗'} {self.true_class[i]} · {text}"

    def thresholds_note(self, chosen: str = "the threshold chosen above") -> str:
        """Which threshold each side is judged at, from the numbers used (``chosen``: the adapted side's, in
        words)."""
        label = LABELS.get(self.score, self.score)
        if self.identical:
            return (f"Both sides are judged at {chosen}, {label} ≥ {self.t_after:.3f}: this run's predictions are "
                    "its zero-shot ones.")
        return (f"Zero-shot decisions are judged at their own threshold, {label} ≥ {self.t_before:.3f}"
                + (f" ({self.rule})" if self.rule else "") + f"; adapted ones at {chosen}, {label} ≥ "
                f"{self.t_after:.3f}.")

    def summary(self) -> str:
        """One sentence computed from ``counts``: how many decisions flipped, of which kind, and with truth how
        many were fixed and broken and the net gain in right decisions."""
        n = len(self)
        if self.identical:
            return (f"Nothing changed: this run's predictions are its zero-shot ones (the same class and score for "
                    f"each of its {n} image{'' if n == 1 else 's'}), so no decision flipped.")
        counts = self.counts()
        total = sum(c["images"] for c in counts.values())
        if not total:
            return f"Adaptation changed none of the {n} decision{'' if n == 1 else 's'} at these thresholds."
        parts = []
        for kind, c in counts.items():
            if not c["images"]:
                continue
            detail = (f" ({c['fixed']} fixed, {c['broken']} broken, {c['still wrong']} still wrong)"
                      if self.has_truth else "")
            parts.append(f"{c['images']} {kind}{detail}")
        text = f"Adaptation changed {total} of {n} decisions: " + ", ".join(parts)
        if not self.has_truth:
            return text + ". Without ground truth nobody can say which changes were right."
        net = sum(c["fixed"] for c in counts.values()) - sum(c["broken"] for c in counts.values())
        return text + f"; net {net:+d} right decision{'' if abs(net) == 1 else 's'}."


def _order(before: Predictions, after: Predictions) -> np.ndarray:
    """Indices into ``before`` of ``after``'s images, matched by path; refused, in words, unless the two files list
    the same images once each."""
    for what, p in (("zero-shot", before), ("adapted", after)):
        if len(set(p.paths)) != len(p.paths):
            raise ValueError(f"The {what} predictions list {len(p.paths) - len(set(p.paths))} image(s) twice, so "
                             "their decisions cannot be matched image by image.")
    where = {path: i for i, path in enumerate(before.paths)}
    only = len(set(before.paths) ^ set(after.paths))
    if only:
        raise ValueError(f"The zero-shot predictions ({len(before)} images) and the adapted ones ({len(after)} "
                         f"images) do not list the same images ({only} are in only one of them), so their decisions "
                         "cannot be compared.")
    if list(before.classes) != list(after.classes):
        raise ValueError("The zero-shot and adapted predictions are over different known classes "
                         f"({', '.join(before.classes)} vs {', '.join(after.classes)}), so their decisions cannot be "
                         "compared.")
    return np.array([where[p] for p in after.paths], dtype=int)


def _identical(before: Predictions, after: Predictions, order: np.ndarray) -> bool:
    """The same class and the same value of every score for every image (matched by ``order``), as the files write
    them (6 decimals)."""
    if not np.array_equal(before.pred[order], after.pred):
        return False
    names = set(before.scores) | set(after.scores)
    return all(name in before.scores and name in after.scores and
               np.allclose(before.scores[name][order], after.scores[name], rtol=0, atol=1e-6) for name in names)


def changes(before: Predictions, after: Predictions, t_before: float, t_after: float, rule: str = "") -> Changes:
    """Each image's zero-shot decision (``before`` at ``t_before``) beside its adapted one (``after`` at
    ``t_after``), both judged by the score ``after`` is judged by (``Predictions.by``). Images are matched by path;
    files that do not list the same images are refused with a ValueError in words. When the two files hold the same
    predictions (a zero-shot or training-free run), both sides are judged at ``t_after``: a threshold moved on a run
    that did not adapt is not a change adaptation made. ``rule`` says in words how ``t_before`` was found."""
    before = before.by(after.score) if before.score != after.score else before
    order = _order(before, after)
    b_pred, b_value = before.pred[order], before.confidence[order]
    identical = _identical(before, after, order)
    if identical:
        t_before = t_after
    d_before = open_set_predictions(b_pred, b_value, t_before)
    d_after = open_set_predictions(after.pred, after.confidence, t_after)
    kind = np.full(len(after), UNCHANGED, dtype=object)
    kind[(d_before == UNKNOWN) & (d_after != UNKNOWN)] = UP
    kind[(d_before != UNKNOWN) & (d_after == UNKNOWN)] = DOWN
    kind[(d_before != UNKNOWN) & (d_after != UNKNOWN) & (d_before != d_after)] = CLASS
    truth = after.truth
    right_before = right_after = None
    if truth is not None:  # the open-set rule of metrics.h_score: right when the decision is the truth
        right_before, right_after = d_before == truth, d_after == truth
    return Changes(paths=list(after.paths), true_class=list(after.true_class), classes=list(after.classes),
                   score=after.score, t_before=float(t_before), t_after=float(t_after), before=d_before,
                   after=d_after, value_before=b_value, value_after=np.asarray(after.confidence, dtype=float),
                   kind=kind, right_before=right_before, right_after=right_after, identical=identical, rule=rule)


def zero_shot_threshold(before: Predictions, metrics: Optional[dict], score: str = DEFAULT,
                        split: str = "2means", config: Optional[dict] = None) -> tuple[float, str]:
    """(threshold, how it was found in words) of the zero-shot side on ``score``: for MSP at the run's split, the
    one the run used (metrics.json "before": label-free, or the threshold the run was given), else the split of the
    zero-shot values of ``score`` (``Predictions.default_threshold``), as Inspect finds the adapted side's
    default."""
    config = config or {}
    saved = ((metrics or {}).get("before") or {}).get("threshold")
    if score == DEFAULT and split == config.get("split", "2means") and saved is not None:
        given = config.get("threshold") is not None
        return float(saved), ("the threshold the run was given" if given else f"label-free, {SPLITS.get(split, split)}")
    values = before.by(score) if before.score != score else before
    return values.default_threshold(split), f"label-free, {SPLITS.get(split, split)}"


def run_changes(run_dir: str | Path, after: Predictions, t_after: float, split: Optional[str] = None) -> Changes:
    """What adaptation changed in a run, its adapted side ``after`` (judged by its score) at ``t_after`` and its
    zero-shot side at ``zero_shot_threshold``. A run without saved zero-shot predictions raises ValueError
    (``NO_ZERO_SHOT``), as do files that do not list the same images."""
    from .predictions import predictions_before
    from ..runs import RunFolder
    before = predictions_before(run_dir)
    if before is None:
        raise ValueError(NO_ZERO_SHOT)
    folder = RunFolder(run_dir)
    config = folder.config or {}
    before = before.by(after.score)
    t_before, rule = zero_shot_threshold(before, folder.read_json("metrics.json"), after.score,
                                         split or config.get("split", "2means"), config)
    return changes(before, after, t_before, t_after, rule)
