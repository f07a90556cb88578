"""The lesson in words: what its runs showed (``lesson_summary``) and where it stands (``progress_line``,
``queue_line``), each computed from the numbers it speaks of.

Methods are named by their registry entry (``get_method(m).plain``, the one table of method names), and sorted by
what the registry says they do (adapt without labels, train nothing), not by a list of names here: a method added
to the lesson is named and placed in these sentences without an edit to this module.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..methods import METHODS
from .verdicts import chance_note, shown_gain, shown_rate

ZERO_SHOT = "zero_shot"  # the lesson's reference: every other method is compared with it


def plain_name(method: str) -> str:
    """The method's name inside a sentence ("entropy minimisation (TENT)", "the oracle"), from its registry entry;
    a method without one says its label, and one no longer registered (an old lesson's manifest) its own name:
    a sentence never fails on a name."""
    m = METHODS.get(method)
    return getattr(m, "plain", None) or getattr(m, "label", None) or str(method)


def label_free(method: str) -> bool:
    """It adapts on the images without any label: it trains, needs no true split and no labelled source."""
    m = METHODS.get(method)
    return bool(m is not None and m.trains and not m.needs_truth and not m.supervised)


def training_free(method: str) -> bool:
    """It changes the predictions without training on the images beforehand (ZERO, TDA; ROSITA and UniEnt adapt
    as the images stream by), zero-shot itself aside."""
    m = METHODS.get(method)
    return bool(m is not None and not m.trains and method != ZERO_SHOT)


def _how(method: str) -> str:
    """What a method that does not train beforehand does instead, in words (from its registry entry)."""
    m = METHODS.get(method)
    return "adapts its image tower image by image as they stream by" if m is not None and m.adapts_in_stream \
        else "trains nothing"


def _first_upper(s: str) -> str:
    return s[:1].upper() + s[1:]


def progress_line(index: int, n: int, method: str, step: int = 0, total: int = 0) -> str:
    """Where an in-process lesson is: "run 2/5: entropy minimisation (TENT) · step 3/10"."""
    return f"run {index + 1}/{n}: {plain_name(method)}" + (f" · step {step}/{total}" if total else "")


def queue_line(finished: int, n: int, training: Sequence[str]) -> str:
    """Where a queued lesson is: "2 of 5 runs done · training: IM, UEO"."""
    return f"{finished} of {n} runs done" + (" · training: " + ", ".join(map(plain_name, training))
                                              if training else "")


def training_free_line(method: str, after: dict, zero_shot: dict) -> str:
    """"TDA, which trains nothing, raised GACC by 3.9 points but lowered AUROC by 2.1 (…)": each direction read
    from the numbers; "and" when both moved the same way, "but" when they did not."""
    moves = []
    for key, name in (("gacc", "GACC"), ("auroc", "AUROC")):
        if after.get(key) is None or zero_shot.get(key) is None:
            continue
        d = shown_gain(after[key], zero_shot[key])
        word = "raised" if d > 0 else "lowered" if d < 0 else "kept"
        moves.append((d, f"{word} {name}" + (f" by {abs(d):.1f} points" if d else "")
                      + f" ({shown_rate(zero_shot[key])} → {shown_rate(after[key])})"))
    if not moves:
        return f"{_first_upper(plain_name(method))} {_how(method)}; this data has no truth to score it against."
    joint = " and " if len(moves) < 2 or (moves[0][0] > 0) == (moves[1][0] > 0) else " but "
    return (f"{_first_upper(plain_name(method))}, which {_how(method)}, " + joint.join(w for _, w in moves)
            + " against zero-shot.")


def oracle_lines(by: dict) -> list[str]:
    """What the oracle's figures mean, and what they do not: it is UEO with the true known/unknown split as its
    weights, so it bounds what better *weights* give UEO's objective at these settings (on AUROC, mostly); the
    weights say nothing about which known class an image is, so a label-free method may beat it on GACC, and with
    few epochs or a noisy run even on AUROC. Each comparison is read from the figures shown."""
    o = by["oracle"]["after"]
    out = [f"The oracle is UEO given the true known/unknown split as its weights: AUROC {shown_rate(o['auroc'])}, "
           f"GACC {shown_rate(o.get('gacc'))}. It shows what perfect weights give UEO's objective with these "
           "settings; it is no bound on everything."]
    others = [m for m in by if label_free(m) or training_free(m)]
    for key, name, why in (
            ("gacc", "GACC", "the weights only decide which images are pushed towards a confident answer and which "
             "towards spread predictions; they do not say which known class an image is, so they do not bound "
             "known-class accuracy"),
            ("auroc", "AUROC", "at these settings (epochs, learning rate, seed) perfect weights were not what limited "
             "the separation; one run of each is also noisy")):
        if o.get(key) is None:
            continue
        ahead = [m for m in others
                 if by[m]["after"].get(key) is not None and shown_gain(by[m]["after"][key], o[key]) > 0]
        if ahead:
            figures = " and ".join(shown_rate(by[m]["after"][key]) for m in ahead)
            out.append(f"{_first_upper(' and '.join(map(plain_name, ahead)))} "
                       f"{'is' if len(ahead) == 1 else 'are'} ahead of the oracle on {name} ({figures} vs "
                       f"{shown_rate(o[key])}): {why}.")
    return out


def _top(r: dict) -> tuple[Optional[str], float]:
    """A run's largest predicted class and its share."""
    sh = r["after"].get("class_shares") or []
    if not sh:
        return None, 0.0
    k = max(range(len(sh)), key=sh.__getitem__)
    return (r["classes"][k] if k < len(r["classes"]) else f"class {k}"), sh[k]


def _ueo_against_im(u: dict, i: dict) -> Optional[str]:
    """UEO minus IM on each score both have, and which is ahead: the two differ only by UEO's weights."""
    diffs = {k: shown_gain(u[k], i[k]) for k in ("auroc", "h_score", "gacc")
             if u.get(k) is not None and i.get(k) is not None}
    if not diffs:
        return None
    name = lambda k: k.upper().replace("_SCORE", "-score")  # noqa: E731
    ahead = [name(k) for k, d in diffs.items() if d > 0]
    behind = [name(k) for k, d in diffs.items() if d < 0]
    words = ", ".join(f"{name(k)} {d:+.1f}" for k, d in diffs.items())
    if not behind:
        verdict = "UEO is ahead of IM on every score" if ahead else "UEO and IM score the same"
    elif not ahead:
        verdict = "On this data IM is ahead of UEO on every score"
    else:
        verdict = f"UEO is ahead of IM on {' and '.join(ahead)}, behind on {' and '.join(behind)}"
    return (f"{verdict} (UEO minus IM: {words} points). The only difference between the two is UEO's "
            "confidence weights.")


def lesson_summary(rows: Sequence[dict]) -> list[str]:
    """What the lesson showed, sentence by sentence, computed from its runs' numbers (``lesson.lesson_rows``)."""
    if not rows:
        return ["No run of this lesson has finished yet."]
    by = {r["method"]: r for r in rows}
    has_truth = any(r["after"].get("gacc") is not None for r in rows)
    out = []
    zs = by.get(ZERO_SHOT)
    if zs and has_truth:
        out.append(f"Zero-shot, before any adaptation: known-class accuracy (GACC) "
                   f"{shown_rate(zs['after'].get('gacc'))}, known/unknown separation (AUROC) "
                   f"{shown_rate(zs['after'].get('auroc'))}.")
        chance = chance_note(zs["after"], len(zs["classes"]))
        if chance:
            out.append(chance)
    for m in [m for m in by if label_free(m) and by[m]["after"].get("collapsed")]:
        name, share = _top(by[m])
        line = f"{_first_upper(plain_name(m))} collapsed: {share:.0%} of all images are now predicted as '{name}'"
        if has_truth and zs:
            line += (f"; GACC went from {shown_rate(zs['after'].get('gacc'))} to "
                     f"{shown_rate(by[m]['after'].get('gacc'))} and AUROC from {shown_rate(zs['after'].get('auroc'))} "
                     f"to {shown_rate(by[m]['after'].get('auroc'))}")
        out.append(line + ". Rewarding confident answers alone piles the predictions onto one class.")
    spread = [m for m in ("im", "ueo") if m in by and not by[m]["after"].get("collapsed")]  # the marginal term's
    if spread:
        out.append(" and ".join(map(plain_name, spread)) + " kept the predictions spread (largest class "
                   + ", ".join(f"{_top(by[m])[1]:.0%}" for m in spread) + "): their marginal-entropy term "
                   "rewards using every class.")
    if not has_truth:
        out.append("These images have no class folders, so nobody can say which method is right: compare the class "
                   "shares and the confidences, and look at the rejections on Inspect.")
        return out
    out += [training_free_line(m, by[m]["after"], zs["after"]) for m in by if training_free(m) and zs]
    free = [m for m in by if (label_free(m) or training_free(m)) and by[m]["after"].get("auroc") is not None]
    if free:
        best = max(free, key=lambda m: by[m]["after"]["auroc"])
        others = ", ".join(f"{plain_name(m)} {shown_rate(by[m]['after']['auroc'])}" for m in free if m != best)
        gain = shown_gain(by[best]["after"]["auroc"], zs["after"]["auroc"]) if zs and zs["after"].get("auroc") \
            is not None else None
        out.append(f"Of the methods that use no labels, {plain_name(best)} separated known from unknown best: AUROC "
                   f"{shown_rate(by[best]['after']['auroc'])} ({others}"
                   + (f"; zero-shot {shown_rate(zs['after']['auroc'])}, so {gain:+.1f} points" if gain is not None
                      else "") + ").")
    if "ueo" in by and "im" in by:
        line = _ueo_against_im(by["ueo"]["after"], by["im"]["after"])
        if line:
            out.append(line)
    if "oracle" in by and by["oracle"]["after"].get("auroc") is not None:
        out += oracle_lines(by)
    return out
