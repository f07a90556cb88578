"""What the app shows, computed here (pages only lay it out): a run's predictions at a threshold, galleries of
rejections, per-class accuracy, run comparison tables, and the teaching numbers (a run's embeddings: ``ueo_core.explore``).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .metrics import open_confusion
from .runs import RunFolder

EPS = 1e-5  # as in the objectives (official code)


# ------------------------------------------------------------------------------------------ a run's predictions
@dataclass
class Predictions:
    paths: list[str]
    true_class: list[str]          # folder name ('' when none)
    pred: np.ndarray               # predicted known-class index
    confidence: np.ndarray
    entropy: np.ndarray
    classes: list[str]             # the prior
    truth: Optional[np.ndarray]    # index into classes, -1 unknown; None without ground truth

    def __len__(self) -> int:
        return len(self.paths)

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

    def csv_at_threshold(self, threshold: float) -> str:
        """predictions.csv as it would be at ``threshold`` (the Inspect slider): a 'threshold' column and
        'predicted_known' recomputed."""
        import io
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "true_class", "predicted_class", "confidence", "entropy", "threshold", "predicted_known"])
        for i in range(len(self)):
            w.writerow([self.paths[i], self.true_class[i],
                        self.classes[self.pred[i]] if 0 <= self.pred[i] < len(self.classes) else "",
                        f"{self.confidence[i]:.6f}", f"{self.entropy[i]:.6f}", f"{threshold:.6f}",
                        bool(self.confidence[i] >= threshold)])
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
    from .data import normalize_name
    norm_index = {normalize_name(c): i for c, i in index.items()}
    has_truth = bool(rows) and all(r["true_class"] for r in rows)
    truth = np.array([norm_index.get(normalize_name(r["true_class"]), -1) for r in rows]) if has_truth else None
    return Predictions(paths=[r["path"] for r in rows], true_class=[r["true_class"] for r in rows],
                       pred=np.array([index.get(r["predicted_class"], -1) for r in rows], dtype=int),
                       confidence=np.array([float(r["confidence"]) for r in rows]),
                       entropy=np.array([float(r["entropy"]) for r in rows]), classes=classes, truth=truth)


# ------------------------------------------------------------------------------------------------ runs
def list_runs(root: str | Path) -> list[Path]:
    """Run folders under ``root`` (newest first) that finished (they have metrics.json)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "metrics.json").exists()]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


COMPARE_KEYS = ("gacc", "pacc", "auroc", "fpr95", "h_score", "mean_confidence")


def compare_table(run_dirs: Sequence[str | Path]) -> list[dict]:
    """One row per run: method, data, model, epochs and the before/after metrics."""
    rows = []
    for d in run_dirs:
        f = RunFolder(d)
        cfg, m = f.config or {}, f.read_json("metrics.json") or {}
        row = {"run": Path(d).name, "method": cfg.get("method"), "mode": cfg.get("fast_mode") or "full",
               "data": cfg.get("data"),
               "model": cfg.get("model"), "epochs": cfg.get("epochs"), "seconds": round(m.get("seconds") or 0, 1)}
        for k in COMPARE_KEYS:
            row[f"{k} (zero-shot)"] = (m.get("before") or {}).get(k)
            row[k] = (m.get("after") or {}).get(k)
        row["collapsed"] = (m.get("after") or {}).get("collapsed")
        row["status"] = (f"stopped at epoch {m['stopped_at_epoch']}" if m.get("stopped_at_epoch") is not None
                         else "finished")
        rows.append(row)
    return rows


def compare_summary(rows: list[dict]) -> str:
    """What the compared runs show, in words, from the table's own numbers."""
    done = [r for r in rows if r.get("gacc") is not None or r.get("auroc") is not None]
    if not done:
        return "These runs have no ground truth to score against, so only their confidences can be compared."
    parts = []
    collapsed = [r["method"] for r in done if r.get("collapsed")]
    if collapsed:
        parts.append(f"{', '.join(collapsed)} collapsed (most predictions on one class)")
    for key, what in (("auroc", "separated the unknowns best"), ("gacc", "was most accurate on known classes")):
        have = [r for r in done if r.get(key) is not None]
        if have:
            best = max(have, key=lambda r: r[key])
            zs = best.get(f"{key} (zero-shot)")
            parts.append(f"{best['method']} {what} ({key.upper()} {best[key] * 100:.1f}"
                         + (f", zero-shot {zs * 100:.1f})" if zs is not None else ")"))
    return "; ".join(parts) + "."


def shares_note(epochs: list[dict], classes: Sequence[str]) -> str:
    """A sentence on how predictions spread over classes, first vs last evaluation."""
    if not epochs or not epochs[-1].get("class_shares") or not classes:
        return "Share of images predicted as each class."
    def top(e):
        sh = e["class_shares"]
        k = int(np.argmax(sh))
        return classes[k] if k < len(classes) else str(k), sh[k]
    (c0, s0), (c1, s1) = top(epochs[0]), top(epochs[-1])
    even = 1 / len(classes)
    verdict = (" — collapsed onto one class." if epochs[-1].get("collapsed")
               else f"; an even spread would be {even:.0%} each.")
    return (f"Largest class at zero-shot: '{c0}' with {s0:.0%} of the images; at epoch {epochs[-1]['epoch']}: "
            f"'{c1}' with {s1:.0%}" + verdict)


def run_curves(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(steps, epochs) logs of a run."""
    f = RunFolder(run_dir)
    return f.read_jsonl("steps.jsonl"), f.read_jsonl("epochs.jsonl")


# ------------------------------------------------------------------------------------------- verdicts
def builtin_model_warning(model: str, pretrained: Optional[str], data_spec: str, classes: Sequence[str]) \
        -> Optional[str]:
    """A warning when the built-in small CLIP (trained only on drawn shapes) is pointed at other images: it has
    never seen them, so near-chance results are to be expected. None when the pair fits."""
    from .models import BUILTIN_MODEL, BUILTIN_TAG
    from .shapes import CONCEPTS
    if model != BUILTIN_MODEL or pretrained != BUILTIN_TAG or str(data_spec).startswith("shapes:"):
        return None
    unseen = [c for c in classes if c not in CONCEPTS]
    names = (f" It has never seen the words {', '.join(repr(c) for c in unseen[:5])}"
             + (f" (and {len(unseen) - 5} more)" if len(unseen) > 5 else "") + "." if unseen else "")
    return ("The built-in small CLIP was trained only on drawn shapes (circles, stars, arrows…), not on photos of "
            f"the world.{names} On these images expect results near chance, whatever the method. For real photos "
            "choose an OpenCLIP model on the Model page (it needs its weights: downloaded, or a local file).")


CHANCE_AUROC = 0.60  # below this, known/unknown separation is called near chance (0.5 = guessing)
CHANCE_FACTOR = 1.5  # known-class accuracy below 1.5 x the guessing rate (1/K) is called near chance


def chance_note(after: dict, n_classes: int) -> Optional[str]:
    """A plain statement when a run's scores are near chance, else None. Guessing gives AUROC 0.5 and known-class
    accuracy 1/K; the thresholds (AUROC < 0.60, GACC < 1.5/K) are documented above."""
    parts = []
    auroc, gacc = after.get("auroc"), after.get("gacc")
    if auroc is not None and auroc < CHANCE_AUROC:
        parts.append(f"AUROC {auroc * 100:.1f} where guessing gives 50")
    if gacc is not None and n_classes and gacc < CHANCE_FACTOR / n_classes:
        parts.append(f"known-class accuracy {gacc * 100:.1f}% where guessing among {n_classes} classes gives "
                     f"{100 / n_classes:.0f}%")
    if not parts:
        return None
    return ("These results are near chance: " + "; ".join(parts) + ". The model does not tell these images "
            "apart, so nothing on the other pages should be read as a finding.")


def run_verdict(before: dict, after: dict, classes: Sequence[str], seconds: float,
                method: Optional[str] = None) -> tuple[str, str]:
    """("success" | "warning", sentence) for a finished run, computed from its numbers: a collapse, a result
    worse than zero-shot, or one near chance is a warning, never a plain "done". The explanation of a collapse
    depends on the ``method`` (entropy minimisation has no term against it; IM and UEO have one that lost)."""
    pts = lambda k: (after.get(k) - before.get(k)) * 100 if after.get(k) is not None and before.get(k) is not None \
        else None  # noqa: E731
    chance = chance_note(after, len(classes))
    if after.get("collapsed"):
        shares = after.get("class_shares") or []
        top = int(np.argmax(shares)) if shares else 0
        name = classes[top] if top < len(classes) else f"class {top}"
        if method == "entropy":
            why = ("Minimising entropy alone rewards any confident answer, so the predictions pile onto one class; "
                   "the marginal-entropy term of IM and UEO prevents it.")
        elif method in ("im", "ueo", "oracle"):
            why = ("The marginal-entropy term pushes towards spread predictions, but here it did not hold them: try "
                   "a smaller learning rate, fewer epochs or a larger λ.")
        else:
            why = "The predictions piled onto one class."
        return "warning", (f"Collapsed after {seconds:.0f} s: {after.get('top_share', 0):.0%} of all images are now "
                           f"predicted as '{name}'. {why}" + (f" {chance}" if chance else ""))
    worse = [f"{k.upper()} {pts(k):+.1f}" for k in ("gacc", "auroc") if pts(k) is not None and pts(k) < -1.0]
    if worse:
        return "warning", (f"Done in {seconds:.0f} s, but worse than zero-shot: {', '.join(worse)} points. Try a "
                           "smaller learning rate or fewer epochs." + (f" {chance}" if chance else ""))
    if chance:
        return "warning", f"Done in {seconds:.0f} s. " + chance
    gains = [f"{k.upper()} {pts(k):+.1f}" for k in ("gacc", "auroc") if pts(k) is not None]
    return "success", (f"Done in {seconds:.0f} s" + (f": {', '.join(gains)} points over zero-shot" if gains else "")
                       + ". Explore and Inspect show the result.")


def entropy_note(steps: list[dict]) -> str:
    """A sentence about this run's entropy curves (first vs last logged step)."""
    if len(steps) < 2 or "marginal_entropy" not in steps[0]:
        return "Mean entropy: how unsure each prediction is. Marginal entropy: how spread the predictions are."
    m0, m1 = steps[0]["marginal_entropy"], steps[-1]["marginal_entropy"]
    c0, c1 = steps[0].get("cond_entropy"), steps[-1].get("cond_entropy")
    conf = (f"The mean entropy went from {c0:.2f} to {c1:.2f} (each image {'more' if c1 < c0 else 'less'} sure); "
            if c0 is not None and c1 is not None else "")
    if m1 < 0.7 * m0:
        return conf + (f"the marginal entropy fell from {m0:.2f} to {m1:.2f}: the predictions are piling onto fewer "
                       "classes — the start of a collapse.")
    return conf + f"the marginal entropy stayed at {m1:.2f} (from {m0:.2f}): the predictions stay spread over classes."


# ------------------------------------------------------------------------------------------- teaching
def softmax(logits: Sequence[float], scale: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) * scale
    z = np.exp(z - z.max())
    return z / z.sum()


def entropy_of(p: Sequence[float]) -> float:
    p = np.asarray(p, dtype=np.float64)
    return float(-(p * np.log(p + EPS)).sum())


def ueo_batch_terms(probs: np.ndarray, weights: Optional[np.ndarray] = None, trade: float = 1.0) -> dict:
    """The pieces of the UEO objective for a small batch (rows = images), for the Learn page. Every loss is the
    engine's own: the registered ``entropy``, ``im`` and ``ueo`` methods evaluated on this batch.

    weights default to each row's max probability (its confidence, as UEO's zero-shot weight).
    """
    import torch
    from .methods import get_method
    from .methods.base import Batch, entropy, weighted_marginal
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64))
    w = p.max(dim=1).values if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
    batch = Batch(probs=p, weights=w, trade=float(trade))
    losses = {m: float(get_method(m).loss(batch)[0]) for m in ("entropy", "im", "ueo")}
    _, ueo_parts = get_method("ueo").loss(batch)
    marginal = weighted_marginal(p, 1.0 / w)
    return {"weights": w.numpy(), "entropy": entropy(p).numpy(), "share_cond": (w / w.sum()).numpy(),
            "share_marginal": ((1 / w) / (1 / w).sum()).numpy(), "marginal": marginal.numpy(),
            "plain_marginal": p.mean(dim=0).numpy(), "cond": float(ueo_parts["loss_cond"]),
            "marginal_entropy": float(ueo_parts["loss_marginal"]), "loss": losses["ueo"], "losses": losses,
            "trade": float(trade), "max_entropy": math.log(p.shape[1])}


def toy_descent(logits: Sequence[Sequence[float]], method: str, scale: float, trade: float = 1.0,
                steps: int = 40, lr: float = 0.2) -> list[dict]:
    """Gradient steps on the Learn page's toy batch, with the engine's registered loss of ``method``.

    The images' similarities ``logits`` stay fixed; what is learned is one offset per class shared by every image
    (b, so p_i = softmax(scale * (z_i + b))): the toy counterpart of the prompt context, where one parameter moves
    every image's score for a class. UEO's weights are the zero-shot confidences, fixed, as in the trainer.
    Plain gradient descent (lr 0.2 keeps every loss curve monotone on the page's default batch). One record per
    step, step 0 included: loss, probabilities, predicted class, confidence, class shares.
    """
    import torch
    from .methods import get_method
    from .methods.base import Batch
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    b = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    w = torch.softmax(scale * z, dim=1).max(dim=1).values
    objective = get_method(method)
    out = []
    for s in range(steps + 1):
        p = torch.softmax(scale * (z + b), dim=1)
        loss, _ = objective.loss(Batch(probs=p, weights=w, trade=float(trade)))
        pn = p.detach().numpy()
        pred = pn.argmax(axis=1)
        out.append({"step": s, "loss": float(loss.detach()), "probs": pn, "pred": pred, "confidence": pn.max(axis=1),
                    "shares": np.bincount(pred, minlength=z.shape[1]) / len(pred), "offset": b.detach().numpy().copy()})
        if s == steps:
            break
        loss.backward()
        with torch.no_grad():
            b -= lr * b.grad
            b.grad.zero_()
    return out


def toy_descent_note(runs: dict[str, list[dict]], method_names: dict[str, str]) -> list[str]:
    """One sentence per method on what its gradient steps did to the toy batch (first vs last step)."""
    lines = []
    for m, frames in runs.items():
        first, last = frames[0], frames[-1]
        n, k = len(last["pred"]), len(last["shares"])
        top = int(np.argmax(last["shares"]))
        count = int(round(last["shares"][top] * n))
        empty = [c + 1 for c in range(k) if last["shares"][c] == 0]
        unsure = [i for i in range(n) if first["confidence"][i] < 0.5]
        parts = [f"{count} of {n} images predicted as class {top + 1}"
                 + (f", class {' and '.join(map(str, empty))} left with none" if empty else "")]
        if unsure:
            parts.append("the image" + ("s" if len(unsure) > 1 else "") + " that started unsure ("
                         + ", ".join(f"{i + 1}: {first['confidence'][i]:.0%}" for i in unsure) + ") now "
                         + ", ".join(f"{last['confidence'][i]:.0%}" for i in unsure))
        lines.append(f"**{method_names.get(m, m)}** after {last['step']} steps: " + "; ".join(parts)
                     + f" (loss {first['loss']:.3f} → {last['loss']:.3f}).")
    return lines
