"""Verdicts in words, each computed from the numbers it speaks of: a run's, near-chance notes, the built-in
model's warning, the entropy curves'."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..models import BUILTIN_MODEL, BUILTIN_TAG
from ..shapes import CONCEPTS


def builtin_model_warning(model: str, pretrained: Optional[str], data_spec: str, classes: Sequence[str]) \
        -> Optional[str]:
    """A warning when the built-in small CLIP (trained only on drawn shapes) is pointed at other images: it has
    never seen them, so near-chance results are to be expected. None when the pair fits."""
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
        parts.append(f"AUROC {shown_rate(auroc)} where guessing gives 50")
    if gacc is not None and n_classes and gacc < CHANCE_FACTOR / n_classes:
        parts.append(f"known-class accuracy {shown_rate(gacc)}% where guessing among {n_classes} classes gives "
                     f"{100 / n_classes:.0f}%")
    if not parts:
        return None
    return ("These results are near chance: " + "; ".join(parts) + ". The model does not tell these images "
            "apart, so nothing on the other pages should be read as a finding.")


def shown_rate(v: Optional[float]) -> str:
    """A rate as every page and sentence prints it: points with one decimal (0.8667 → "86.7"), "–" where absent."""
    return "–" if v is None else f"{v * 100:.1f}"


def shown_gain(a: float, b: float) -> float:
    """a − b in points between two rates, taken between the figures as shown (``shown_rate``): a sentence's
    difference is then the one a reader computes from the numbers beside it (84.5 − 83.7 = +0.8, where the
    unrounded 0.8454 − 0.8366 gives +0.9)."""
    return round(round(a * 100, 1) - round(b * 100, 1), 1)


def run_verdict(before: dict, after: dict, classes: Sequence[str], seconds: float,
                method: Optional[str] = None) -> tuple[str, str]:
    """("success" | "warning", sentence) for a finished run, computed from its numbers: a collapse, a result
    worse than zero-shot, or one near chance is a warning, never a plain "done". The explanation of a collapse
    depends on the ``method`` (entropy minimisation has no term against it; IM and UEO have one that lost)."""
    pts = lambda k: shown_gain(after[k], before[k]) if after.get(k) is not None and before.get(k) is not None \
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


def entropy_note(steps: list[dict], collapsed: Optional[bool] = None) -> str:
    """A sentence about this run's entropy curves (first vs last logged step). ``collapsed`` is the run's own
    verdict on its final predictions: the marginal entropy of a batch's *average* probabilities can stay high while
    every image's top class is the same, so "spread" is said only of a run that did not collapse."""
    if len(steps) < 2 or "marginal_entropy" not in steps[0]:
        return "Mean entropy: how unsure each prediction is. Marginal entropy: how spread the predictions are."
    m0, m1 = steps[0]["marginal_entropy"], steps[-1]["marginal_entropy"]
    c0, c1 = steps[0].get("cond_entropy"), steps[-1].get("cond_entropy")
    conf = (f"The mean entropy went from {c0:.2f} to {c1:.2f} (each image {'more' if c1 < c0 else 'less'} sure); "
            if c0 is not None and c1 is not None else "")
    if m1 < 0.7 * m0:
        return conf + (f"the marginal entropy fell from {m0:.2f} to {m1:.2f}: the predictions are piling onto fewer "
                       "classes — the start of a collapse.")
    moved = (f"stayed at {m1:.2f}" if f"{m1:.2f}" == f"{m0:.2f}" else
             f"{'fell' if m1 < m0 else 'rose'} from {m0:.2f} to {m1:.2f}")  # the words follow the figures shown
    if collapsed:
        return conf + (f"the marginal entropy {moved}, yet the run collapsed: the batches' average probabilities "
                       "stayed spread while most images' top class became the same.")
    return conf + (f"the marginal entropy {moved}" + (" (less than 30 % down)" if m1 < m0 else "")
                   + ": the predictions stay spread over classes.")
