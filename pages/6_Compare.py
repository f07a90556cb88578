"""Compare: runs side by side (metrics table, curves); one colour per method, captions from the numbers."""
import streamlit as st

from studio import charts, state, ui
from ueo_core import grow
from ueo_core.analysis import compare_summary, compare_table, list_runs, run_curves
from ueo_core.analysis.comparison import calibration_note, reliability_note, run_reliability

RATES = ("gacc", "pacc", "auroc", "h_score", "fpr95", "ece", "auroc (best score)", "gacc (zero-shot)",
         "auroc (zero-shot)", "ece (zero-shot)", "mean_confidence", "largest class")
ui.page("Compare", "⚖️")
runs = list_runs(state.runs_dir())
if not runs:
    st.info("No finished runs yet: start some on the Adapt page (e.g. zero-shot, IM and UEO on one folder).")
    st.stop()
names = [p.name for p in runs]
chosen = st.multiselect("Runs", names, default=names[: min(4, len(names))])
if not chosen:
    st.stop()
paths = [state.runs_dir() / n for n in chosen]
rows = compare_table(paths)
truth = any(r.get("gacc") is not None or r.get("auroc") is not None for r in rows)
scored = ["gacc", "pacc", "auroc", "h_score", "fpr95", "ece", "best score", "auroc (best score)"] if truth else []
ui.table(rows, columns=["run", "method", "status", "mode", "data", "prior", "images", "epochs"] + scored
         + ["mean_confidence", "largest class", "collapsed"]
         + (["gacc (zero-shot)", "auroc (zero-shot)", "ece (zero-shot)"] if truth else []) + ["seconds"], percent=RATES)
ui.explain("Rates in % (points). " + ("AUROC, FPR95 and H-score use MSP (max softmax), the papers' score; 'best "
           "score' is the known/unknown score (MSP, MaxLogit, energy, MCM, GEN) that separates this run's images "
           "best, with its AUROC. " if truth else "") + "'mean_confidence': the mean max-softmax; 'largest class': "
           "the share of images predicted as the most common class (an even spread is 1/K).")
ui.explain(compare_summary(rows))
for parent, child in grow.grown_pairs(paths, among=runs):  # a grown prior: what the added class took
    try:
        got = grow.outcome(parent, child)
    except ValueError as err:
        st.warning(state.friendly(err))
        continue
    st.subheader(f"'{got['added']}' added to the prior: {child.name} grew {parent.name}")
    if got["rows"]:
        ui.table([{"figure": r["figure"], "images": r["images"], parent.name: r["first"], child.name: r["grown"]}
                  for r in got["rows"]], percent=(parent.name, child.name))
    own = sum(r["images"] for r in got["rows"] if r["figure"] == f"'{got['added']}' images accepted as "
                                                                  f"'{got['added']}'")
    ui.explain(got["sentence"] + " Each run at its own threshold on MSP; rates in %. GACC, AUROC and H-score are "
               f"not compared: with '{got['added']}' in the prior the two runs answer different questions"
               + (f" (the {own} images of the folder '{got['added']}' are unknown to the first, known to the second)."
                  if own else "."))
loss, auroc, gacc, methods = {}, {}, {}, {}
for row, p in zip(rows, paths):
    steps, epochs = run_curves(p)
    label = f"{row['method']} {p.name[-6:]}"
    methods[label] = row["method"] or ""
    if steps:
        loss[label] = ([s["step"] for s in steps], [s["loss"] for s in steps])
    if epochs and epochs[0]["metrics"].get("auroc") is not None:
        auroc[label] = ([e["epoch"] for e in epochs], [e["metrics"]["auroc"] for e in epochs])
        gacc[label] = ([e["epoch"] for e in epochs], [e["metrics"]["gacc"] for e in epochs])
if loss:
    st.plotly_chart(charts.loss_panels(loss, methods), width="stretch")
c2, c3 = st.columns(2)
if auroc:
    c2.plotly_chart(charts.overlay_curves(auroc, "AUROC per epoch", "epoch", methods), width="stretch")
    c3.plotly_chart(charts.overlay_curves(gacc, "GACC per epoch", "epoch", methods), width="stretch")

st.subheader("Calibration: does confidence match accuracy?")
ui.explain(calibration_note(rows))
diagrams = [(f"{row['method']} {p.name[-6:]}", row["method"] or "", rel) for row, p in zip(rows, paths)
            if (rel := run_reliability(p)) is not None]
for start in range(0, len(diagrams), 2):
    for col, (k, (label, method, rel)) in zip(st.columns(2), enumerate(diagrams[start:start + 2], start)):
        col.plotly_chart(charts.reliability_diagram(rel, f"{label}: reliability (final evaluation)",
                                                    charts.method_color(method, k)), width="stretch")
        with col:
            ui.explain(reliability_note(rel))
