"""Explore: UMAP of image features before vs after adaptation; select points to see the images."""
from pathlib import Path

import numpy as np
import streamlit as st

from studio import charts, pick, state, ui
from ueo_core.analysis import run_embeddings
from ueo_core.runs import RunFolder

ui.page("Explore", "🔭")
rid = pick.finished_run()
if not rid:
    st.stop()


@st.cache_resource(show_spinner=False, max_entries=8)
def embeddings(run_dir: str):
    return run_embeddings(run_dir)


with st.spinner("Image features (cached after the first time) and UMAP…"):
    try:
        emb = embeddings(str(state.runs_dir() / rid))
    except Exception as err:
        st.error(state.friendly(err))
        st.stop()
preds = emb["predictions"]
run = RunFolder(state.runs_dir() / rid)
m = run.read_json("metrics.json") or {}
thr_after = m.get("after", {}).get("threshold", 0.5)
before = emb.get("predictions_before")
thr_before = m.get("before", {}).get("threshold", thr_after)
colour_by = st.radio("Colour by", ["predicted known/unknown", "predicted class", "true class", "confidence"],
                     horizontal=True)


def colouring(p, thr):
    """(colours, continuous?, hover texts, counts line) of one map from its own predictions and threshold."""
    known = np.where(p.confidence >= thr, "known", "unknown")
    names = np.array([p.classes[k] for k in p.pred], dtype=object)
    hover = [f"{Path(f).name}<br>predicted: {c} ({k})<br>confidence: {conf:.3f}" + (f"<br>true: {t}" if t else "")
             for f, c, k, conf, t in zip(p.paths, names, known, p.confidence, p.true_class)]
    n_known = int((known == "known").sum())
    counts = f"{n_known} known · {len(known) - n_known} unknown (threshold {thr:.2f})"
    if colour_by == "predicted known/unknown":
        return known, False, hover, counts, names
    if colour_by == "predicted class":
        return names, False, hover, counts, names
    if colour_by == "true class":
        return np.array([t or "(none)" for t in p.true_class], dtype=object), False, hover, counts, names
    return p.confidence, True, hover, counts, names


ui.explain("Each point is an image; nearby points have similar CLIP image features. The left map is coloured by the "
           "zero-shot predictions and threshold, the right one by the adapted ones. Box- or lasso-select points to "
           "see their images.")
if before is None:
    st.warning("This run was made before zero-shot predictions were saved: both maps use the adapted predictions.")
    before, thr_before = preds, thr_after
run_cfg = run.config or {}
if run_cfg.get("fast_mode") == "prompt_only" or run_cfg.get("method") == "zero_shot":
    ui.explain("This run did not change the image tower (prompt-only or zero-shot), so both maps are the same; "
               "the colours — the predictions — are what changed.")
c1, c2 = st.columns(2)
selected = set()
for col, key, title, p, thr in ((c1, "before", "before adaptation (zero-shot)", before, thr_before),
                                (c2, "after", "after adaptation", preds, thr_after)):
    colour, cont, hover, counts, _ = colouring(p, thr)
    with col:
        ev = st.plotly_chart(charts.embedding_scatter(emb[key], colour, hover, title, continuous=cont),
                             width="stretch", on_select="rerun", selection_mode=("box", "lasso"), key=f"umap_{key}")
        st.caption(counts)
        pts = ev["selection"]["points"] if ev and "selection" in ev else []
        selected |= {int(p["customdata"]) for p in pts if p.get("customdata") is not None}
pred_names = np.array([preds.classes[k] for k in preds.pred], dtype=object)
st.subheader(f"Selected images ({len(selected)})")
idx = sorted(selected, key=lambda i: -preds.confidence[i])
ui.gallery([preds.paths[i] for i in idx], [f"{pred_names[i]} {preds.confidence[i]:.2f}" for i in idx],
           empty="Select points with the box or lasso tool.")
