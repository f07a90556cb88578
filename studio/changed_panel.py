"""Inspect's two views of a run against its zero-shot self (layout only; the numbers are ``ueo_core``'s):

- ``detection_row``: the accepted/rejected counts at the threshold beside the chosen score's AUROC, FPR95 and
  AUPR (``scores.detection``, what metrics.json keeps for each score);
- ``render``: "What adaptation changed", the decisions that flipped between zero-shot and adapted
  (``analysis.changes``), counted by kind, and a gallery of each kind.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from ueo_core.analysis import run_changes, shown_rate
from ueo_core.analysis.changes import KINDS, OUTCOMES
from ueo_core.analysis.predictions import Predictions
from ueo_core.runs import RunFolder
from ueo_core.scores import LABELS, detection

from . import ui

DETECTION = (("auroc", "AUROC"), ("fpr95", "FPR95"), ("aupr_in", "AUPR"))


def detection_row(preds: Predictions, thr: float) -> None:
    """How many images the threshold accepts and rejects, and beside them how well the chosen score separates
    known from unknown images, whatever the threshold (AUROC, FPR95, AUPR-In with known images positive, as
    metrics.json reports them), with one sentence where those cannot be computed."""
    label = LABELS.get(preds.score, preds.score)
    n_acc = int((preds.confidence >= thr).sum())
    cols = st.columns(2 + len(DETECTION))
    cols[0].metric("Accepted as known", n_acc)
    cols[1].metric("Rejected as unknown", len(preds) - n_acc)
    if preds.truth is None:
        ui.explain(f"No ground truth (the folder has no class sub-folders), so no AUROC, FPR95 or AUPR of {label}: "
                   "they need to know which images are truly known.")
        return
    d = detection(preds.confidence, preds.truth)
    if any(np.isnan(v) for v in d.values()):
        which = "known classes" if (preds.truth >= 0).all() else "unknown classes"
        ui.explain(f"Every image here is of the {which}, so there is no AUROC, FPR95 or AUPR of {label}: they "
                   "measure how well the score ranks known images above unknown ones, and need both.")
        return
    for col, (key, name) in zip(cols[2:], DETECTION):
        col.metric(name, shown_rate(d[key]), help=_HELP[key])
    n_known = int((preds.truth >= 0).sum())
    ui.explain(f"{label} over these {len(preds)} images ({n_known} truly known, {len(preds) - n_known} truly "
               f"unknown), in points: AUROC {shown_rate(d['auroc'])}, FPR95 {shown_rate(d['fpr95'])}, AUPR "
               f"{shown_rate(d['aupr_in'])} (known images positive). They rank the images by the score and do not "
               "depend on the threshold; the counts do.")


_HELP = {"auroc": "How often a truly known image scores above a truly unknown one (50 = guessing, 100 = always).",
         "fpr95": "The share of unknown images accepted at the threshold that accepts 95 % of the known ones "
                  "(lower is better).",
         "aupr_in": "Average precision of finding the known images by the score, known images positive (AUPR-In, "
                    "as OpenOOD and metrics.json report it; the share of known images is what guessing gives)."}


def render(rid: str, folder: RunFolder, preds: Predictions, score: str, thr: float, split: str | None = None) -> None:
    """'What adaptation changed': the flips between the run's zero-shot decisions (at their own threshold) and its
    adapted ones (``preds``, judged by ``score``, at ``thr``), counted by kind (with truth: fixed, broken, still
    wrong), then a gallery of the kind picked. A run without zero-shot predictions gets one sentence saying why."""
    st.subheader("What adaptation changed")
    try:
        ch = run_changes(folder.path, preds if preds.score == score else preds.by(score), thr, split)
    except ValueError as err:
        st.info(str(err))
        return
    ui.explain(ch.thresholds_note())
    st.write(ch.summary())
    counts = ch.counts()
    if not any(c["images"] for c in counts.values()):  # (a run that did not adapt: nothing flipped)
        return
    ui.table(ch.rows(), ["change", "images"] + (list(OUTCOMES) if ch.has_truth else []))
    st.fragment(_kind_gallery)(rid, ch, counts)


def _kind_gallery(rid: str, ch, counts: dict) -> None:
    """The images of one kind of change (a fragment: picking a kind reruns this part only)."""
    kind = st.radio("Kind of change", list(KINDS), horizontal=True, key=f"changed|{rid}",
                    format_func=lambda k: f"{k} · {counts[k]['images']}")
    idx = ch.of(kind)
    ui.gallery([ch.paths[i] for i in idx], [ch.caption(i) for i in idx], limit=16, key=f"changed|{rid}|{kind}",
               empty=f"No decision is of the kind “{kind}” at these thresholds.", own_fragment=False)
    label = LABELS.get(ch.score, ch.score)
    ui.explain(f"Caption: ✓ when the adapted decision is right, ✗ when it is wrong, the image's true folder, then "
               f"the zero-shot decision → the adapted one and its {label}." if ch.has_truth else
               f"Caption: the zero-shot decision → the adapted one and its {label} (no ground truth: no ✓ or ✗).")
