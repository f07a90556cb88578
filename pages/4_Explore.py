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
thr_default = float(np.clip(np.median(preds.confidence), 0, 1))
run = RunFolder(state.runs_dir() / rid)
thr = (run.read_json("metrics.json") or {}).get("after", {}).get("threshold", thr_default)
colour_by = st.radio("Colour by", ["predicted known/unknown", "predicted class", "true class", "confidence"],
                     horizontal=True)
known = np.where(preds.confidence >= thr, "known", "unknown")
pred_names = np.array([preds.classes[k] for k in preds.pred], dtype=object)
hover = [f"{Path(p).name}<br>predicted: {c} ({'known' if k == 'known' else 'unknown'})<br>confidence: {conf:.3f}"
         + (f"<br>true: {t}" if t else "")
         for p, c, k, conf, t in zip(preds.paths, pred_names, known, preds.confidence, preds.true_class)]
if colour_by == "predicted known/unknown":
    colour, cont = known, False
elif colour_by == "predicted class":
    colour, cont = pred_names, False
elif colour_by == "true class":
    colour, cont = np.array([t or "(none)" for t in preds.true_class], dtype=object), False
else:
    colour, cont = preds.confidence, True
ui.explain(f"Each point is an image; nearby points have similar CLIP image features. 'Known' means confidence ≥ "
           f"{thr:.2f} (the run's unsupervised threshold). Box- or lasso-select points to see their images.")
run_cfg = run.config or {}
if run_cfg.get("fast_mode") == "prompt_only" or run_cfg.get("method") == "zero_shot":
    ui.explain("This run did not change the image tower (prompt-only or zero-shot), so both maps are the same; "
               "the colours — the predictions — are what changed.")
c1, c2 = st.columns(2)
selected = set()
for col, key, title in ((c1, "before", "before adaptation (zero-shot model)"), (c2, "after", "after adaptation")):
    with col:
        ev = st.plotly_chart(charts.embedding_scatter(emb[key], colour, hover, title, continuous=cont),
                             width="stretch", on_select="rerun", selection_mode=("box", "lasso"), key=f"umap_{key}")
        pts = ev["selection"]["points"] if ev and "selection" in ev else []
        selected |= {int(p["customdata"]) for p in pts if p.get("customdata") is not None}
st.subheader(f"Selected images ({len(selected)})")
idx = sorted(selected, key=lambda i: -preds.confidence[i])
ui.gallery([preds.paths[i] for i in idx], [f"{pred_names[i]} {preds.confidence[i]:.2f}" for i in idx],
           empty="Select points with the box or lasso tool.")
