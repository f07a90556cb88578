"""Runs side by side: the run list, the comparison table and its sentence, a run's curves."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..runs import RunFolder
from .verdicts import shown_rate
from ..scores import DEFAULT, LABELS


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
            parts.append(f"{best['method']} {what} ({key.upper()} {shown_rate(best[key])}"
                         + (f", zero-shot {shown_rate(zs)})" if zs is not None else ")"))
    gains = [r for r in done if r.get("best score") not in (None, DEFAULT) and r.get("auroc") is not None
             and r["auroc (best score)"] - r["auroc"] > 0.01]
    if gains:
        r = max(gains, key=lambda r: r["auroc (best score)"] - r["auroc"])
        parts.append(f"scored by {LABELS[r['best score']]} instead of MSP, {r['method']} would separate them at AUROC "
                     f"{shown_rate(r['auroc (best score)'])} (MSP {shown_rate(r['auroc'])})")
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


