"""Runs side by side: the run list, the comparison table and its sentence, a run's curves."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..metrics import CALIBRATION_BINS, calibration_error, reliability_bins
from ..privacy import data_name
from ..runs import RunFolder
from .predictions import read_predictions
from .verdicts import CHANCE_AUROC, CHANCE_FACTOR, shown_gain, shown_rate
from ..scores import DEFAULT, LABELS


def list_runs(root: str | Path) -> list[Path]:
    """Run folders under ``root`` (newest first) that finished (they have metrics.json)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "metrics.json").exists()]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


COMPARE_KEYS = ("gacc", "pacc", "auroc", "fpr95", "h_score", "ece", "mean_confidence")


def compare_table(run_dirs: Sequence[str | Path]) -> list[dict]:
    """One row per run: method, data (by name, never the server's path: it holds the workspace token), prior,
    model, epochs and the before/after metrics, with the label-free ones (mean confidence, largest class)."""
    rows = []
    for d in run_dirs:
        f = RunFolder(d)
        cfg, m = f.config or {}, f.read_json("metrics.json") or {}
        classes = (cfg.get("summary") or {}).get("classes") or cfg.get("prior") or []
        row = {"run": Path(d).name, "method": cfg.get("method"), "mode": cfg.get("fast_mode") or "full",
               "data": data_name(cfg.get("data")), "prior": ", ".join(classes), "classes": len(classes),
               "images": (m.get("after") or {}).get("n"),
               "model": cfg.get("model"), "epochs": cfg.get("epochs"), "seconds": round(m.get("seconds") or 0, 1)}
        for k in COMPARE_KEYS:
            row[f"{k} (zero-shot)"] = (m.get("before") or {}).get(k)
            row[k] = (m.get("after") or {}).get(k)
        row["collapsed"] = (m.get("after") or {}).get("collapsed")
        row["largest class"] = (m.get("after") or {}).get("top_share")
        row["best score"], row["auroc (best score)"] = best_score((m.get("after") or {}).get("scores") or {})
        row["status"] = (f"stopped at epoch {m['stopped_at_epoch']}" if m.get("stopped_at_epoch") is not None
                         else "finished")
        rows.append(row)
    return rows


def best_score(scores: dict) -> tuple:
    """(name, AUROC) of the known/unknown score that separates best in ``scores`` (metrics' ``scores``); (None,
    None) when there is none to compare."""
    have = {k: v["auroc"] for k, v in scores.items() if v.get("auroc") is not None and not np.isnan(v["auroc"])}
    if not have:
        return None, None
    k = max(have, key=lambda n: (have[n], n == DEFAULT))  # a tie goes to the default
    return k, have[k]


def compare_summary(rows: list[dict]) -> str:
    """What the compared runs show, in words, from the table's own numbers. A "best" that is near chance (AUROC
    under 60, GACC under 1.5/K: ``verdicts.chance_note``'s rule) is said to be near chance, not best; runs on other
    data or another prior are said not to be comparable, and are not ranked."""
    if not rows:
        return "No run chosen."
    methods = [r.get("method") for r in rows]
    name = {id(r): (str(r.get("method")) if methods.count(r.get("method")) == 1 or not r.get("run")
                    else f"{r.get('method')} {str(r['run'])[-6:]}") for r in rows}  # as the charts' legends
    parts = []
    collapsed = [name[id(r)] for r in rows if r.get("collapsed")]
    if collapsed:
        parts.append(f"{', '.join(collapsed)} collapsed (most predictions on one class)")
    differ = []
    for key, what in (("data", "data"), ("prior", "priors")):
        seen = list(dict.fromkeys(str(r.get(key)) for r in rows))
        if len(seen) > 1:
            differ.append(f"different {what} ({'; '.join(seen[:4])}{'…' if len(seen) > 4 else ''})")
    if differ:
        parts.append(f"these runs use {' and '.join(differ)}, so their numbers are not comparable: none is ranked")
        return _sentence(parts)
    done = [r for r in rows if r.get("gacc") is not None or r.get("auroc") is not None]
    if not done:
        conf = [r for r in rows if r.get("mean_confidence") is not None]
        if len(conf) == 1:
            r = conf[0]
            parts.append(f"no ground truth (class folders named in the prior), so no accuracy: {name[id(r)]}'s mean "
                         f"confidence is {shown_rate(r['mean_confidence'])}"
                         + (f" and its largest class holds {shown_rate(r['largest class'])} %"
                            if r.get("largest class") is not None else ""))
        elif conf:
            hi = max(conf, key=lambda r: r["mean_confidence"])
            lo = min(conf, key=lambda r: r["mean_confidence"])
            parts.append(f"no run has ground truth (class folders named in the prior), so no accuracy: compare the "
                         f"'mean_confidence' and 'largest class' columns. {name[id(hi)]} is the most confident "
                         f"(mean {shown_rate(hi['mean_confidence'])}), {name[id(lo)]} the least "
                         f"({shown_rate(lo['mean_confidence'])}); higher confidence is not higher accuracy")
        else:
            parts.append("no run has ground truth or confidences to compare")
        return _sentence(parts)
    if len(done) < len(rows):
        parts.append(f"{len(rows) - len(done)} of these runs have no ground truth and are not ranked")
    for key, what, nobody, chance in (
            ("auroc", "separated the unknowns best", "no run separates known from unknown clearly better than chance",
             lambda r: CHANCE_AUROC),
            ("gacc", "was most accurate on known classes", "no run is clearly more accurate than chance on the known "
             "classes", lambda r: CHANCE_FACTOR / r["classes"] if r.get("classes") else 0.0)):
        have = [r for r in done if r.get(key) is not None]
        if not have:
            continue
        best = max(have, key=lambda r: r[key])
        zs = best.get(f"{key} (zero-shot)")
        figure = f"{key.upper()} {shown_rate(best[key])}" + (f", zero-shot {shown_rate(zs)}" if zs is not None else "")
        if best[key] < chance(best):
            guess = "50" if key == "auroc" else f"{100 / best['classes']:.0f}"
            parts.append(f"{nobody}: the highest {key.upper()} is {name[id(best)]}'s {shown_rate(best[key])}, "
                         f"where guessing gives {guess}")
        elif len(have) == 1:
            parts.append(f"{name[id(best)]} reaches {figure}")
        else:
            parts.append(f"{name[id(best)]} {what} ({figure})")
    gains = [r for r in done if r.get("best score") not in (None, DEFAULT) and r.get("auroc") is not None
             and r["auroc (best score)"] - r["auroc"] > 0.01]
    if gains:
        r = max(gains, key=lambda r: r["auroc (best score)"] - r["auroc"])
        parts.append(f"scored by {LABELS[r['best score']]} instead of MSP, {name[id(r)]} would separate them at "
                     f"AUROC {shown_rate(r['auroc (best score)'])} (MSP {shown_rate(r['auroc'])})")
    return _sentence(parts)


_OWN_WORDS = ("these", "no ", "scored")  # parts that start in the summary's own words; a method's name keeps its case


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts) + "."
    return text[:1].upper() + text[1:] if parts and parts[0].startswith(_OWN_WORDS) else text


def _run_names(rows: list[dict]) -> dict:
    """Each row's name in a sentence: its method, with the run's last characters where two share one."""
    methods = [r.get("method") for r in rows]
    return {id(r): (str(r.get("method")) if methods.count(r.get("method")) == 1 or not r.get("run")
                    else f"{r.get('method')} {str(r['run'])[-6:]}") for r in rows}


def calibration_note(rows: list[dict]) -> str:
    """The table's ECE column in words: which run is best calibrated (lower is better), or why there is no ECE.
    Runs on other data or another prior are listed, not ranked, as in ``compare_summary``."""
    if not rows:
        return "No run chosen."
    name = _run_names(rows)
    what = "ECE (expected calibration error of the known-class images: the gap between confidence and accuracy, " \
           "0 when they match; lower is better)"
    have = [r for r in rows if r.get("ece") is not None]
    older = [r for r in rows if r.get("ece") is None and r.get("gacc") is not None]
    missing = ([f"{len(older)} of these runs {'was' if len(older) == 1 else 'were'} made before ECE was recorded"]
               if older else [])
    if len(rows) - len(have) - len(older):
        n = len(rows) - len(have) - len(older)
        missing.append(f"{n} {'has' if n == 1 else 'have'} no known-class image with ground truth, so no ECE")
    if not have:
        return (f"No ECE: {'; '.join(missing)}." if missing else "No ECE.") + f" {what[0].upper() + what[1:]}."
    def figure(r):
        zs = r.get("ece (zero-shot)")
        return f"ECE {shown_rate(r['ece'])}" + (f", zero-shot {shown_rate(zs)}" if zs is not None else "")
    comparable = all(len({str(r.get(k)) for r in rows}) == 1 for k in ("data", "prior"))
    if len(have) == 1:
        text = f"{name[id(have[0])]}: {figure(have[0])}"
    elif not comparable:
        text = ("; ".join(f"{name[id(r)]} {figure(r)}" for r in have)
                + " (other data or priors: not ranked)")
    else:
        best = min(have, key=lambda r: r["ece"])
        worst = max(have, key=lambda r: r["ece"])
        if shown_rate(best["ece"]) == shown_rate(worst["ece"]):
            text = f"every run has {figure(best).split(',')[0]}: equally calibrated"
        else:
            text = (f"{name[id(best)]} is the best calibrated ({figure(best)}), {name[id(worst)]} the least "
                    f"({figure(worst)})")
    return f"{what}: {text}" + (f". {'; '.join(missing)}" if missing else "") + "."


def run_reliability(run_dir: str | Path, bins: int = CALIBRATION_BINS) -> Optional[dict]:
    """Reliability bins (``metrics.reliability_bins``) of a run's final evaluation, from its predictions.csv
    (MSP confidence, predicted class, true class) over the known-class images; None without ground truth, known
    images or predictions."""
    try:
        preds = read_predictions(run_dir)
    except FileNotFoundError:
        return None
    if preds.truth is None or not (preds.truth >= 0).any():
        return None
    known = preds.truth >= 0
    return reliability_bins(preds.scores[DEFAULT][known], preds.pred[known] == preds.truth[known], bins)


def reliability_note(rel: dict) -> str:
    """A reliability diagram's caption, from its own bins: the ECE, how many images and bins, and whether the run
    is over- or underconfident overall."""
    count = np.asarray(rel["count"])
    n, full = int(count.sum()), count > 0
    conf = float((count[full] * np.asarray(rel["confidence"])[full]).sum() / n)
    acc = float((count[full] * np.asarray(rel["accuracy"])[full]).sum() / n)
    gap = shown_gain(conf, acc)
    lean = ("overconfident" if gap > 0 else "underconfident") if gap else "neither over- nor underconfident"
    text = (f"ECE {shown_rate(calibration_error(rel))} over {n} known-class image{'s' if n != 1 else ''} in "
            f"{int(full.sum())} of {len(count)} confidence bins (bar: accuracy of the images in the bin; dot: their "
            f"mean confidence; on the diagonal they match). Overall {lean}: mean confidence {shown_rate(conf)}, "
            f"accuracy {shown_rate(acc)}")
    top = int(np.argmax(count))  # the fullest bin: where most of the ECE's weight is
    edges = np.asarray(rel["edges"])
    text += (f". The fullest bin, confidence {shown_rate(edges[top])}–{shown_rate(edges[top + 1])}, holds "
             f"{int(count[top])} of the {n} at accuracy {shown_rate(float(rel['accuracy'][top]))}")
    if count.max() < 10:
        text += "; no bin holds 10 images, so each bar's accuracy is rough"
    return text + "."


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


