"""Compare: runs side by side (metrics table, curves overlaid)."""
import streamlit as st

from studio import charts, state, ui
from ueo_core.analysis import compare_table, list_runs, run_curves

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
st.dataframe(rows, hide_index=True, width="stretch",
             column_order=["run", "method", "mode", "data", "epochs", "gacc", "pacc", "auroc", "h_score", "fpr95",
                           "gacc (zero-shot)", "auroc (zero-shot)", "seconds"])
ui.explain("Same folder, different methods: entropy minimisation alone tends to collapse (accuracy falls); IM and "
           "UEO keep predictions diverse; UEO also weights by zero-shot confidence to separate unknowns.")
loss, auroc, gacc = {}, {}, {}
for n, p in zip(chosen, paths):
    steps, epochs = run_curves(p)
    label = f"{n.split('-')[2] if n.count('-') >= 3 else ''} {n[-6:]}".strip()
    if steps:
        loss[label] = ([s["step"] for s in steps], [s["loss"] for s in steps])
    if epochs and epochs[0]["metrics"].get("auroc") is not None:
        auroc[label] = ([e["epoch"] for e in epochs], [e["metrics"]["auroc"] for e in epochs])
        gacc[label] = ([e["epoch"] for e in epochs], [e["metrics"]["gacc"] for e in epochs])
c1, c2, c3 = st.columns(3)
if loss:
    c1.plotly_chart(charts.overlay_curves(loss, "loss per step", "step"), width="stretch")
if auroc:
    c2.plotly_chart(charts.overlay_curves(auroc, "AUROC per epoch", "epoch"), width="stretch")
    c3.plotly_chart(charts.overlay_curves(gacc, "GACC per epoch", "epoch"), width="stretch")
