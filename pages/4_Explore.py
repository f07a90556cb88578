"""Explore: image features before vs after adaptation in 2-D (PCA at once, UMAP when computed); select points to
see the images. The embeddings are a job on Ray (ueo_core.explore, queued like a run); this page reads its files."""
from pathlib import Path

import numpy as np
import streamlit as st

from studio import charts, pick, state, ui
from ueo_core.analysis import read_predictions
from ueo_core.explore import predictions_before, score_colours, selections, too_few
from ueo_core.methods import METHODS
from ueo_core.runs import RunFolder
from ueo_core.scores import DEFAULT, LABELS, SCORES

ui.page("Explore", "🔭")
rid = pick.finished_run()
if not rid:
    st.stop()
run_dir = str(state.runs_dir() / rid)
preds_all = read_predictions(run_dir)
few = too_few(len(preds_all))
if few:  # no retry can help, and no job is queued to fail
    st.info(few)
    st.stop()
retry = st.session_state.pop("retry_embed", None) == run_dir
ex = state.exploration(run_dir, retry=retry)
_this_run = [ex]  # the fragment's first call in this full run takes it; its own reruns read the job again
run = RunFolder(run_dir)
m = run.read_json("metrics.json") or {}
run_cfg = run.config or {}
ui.explain("Each point is an image; nearby points have similar CLIP image features. The left map is coloured by the "
           "zero-shot predictions and threshold, the right one by the adapted ones. Box- or lasso-select points to "
           "see their images: each map's picks are listed apart, captioned with that map's own predictions.")
if run_cfg.get("fast_mode") == "prompt_only" or not getattr(METHODS.get(run_cfg.get("method")), "trains", True):
    ui.explain("This run did not change the image tower (prompt-only, zero-shot or training-free), so both maps are "
               "the same; the colours — the predictions — are what changed.")


def colouring(p, thr, colour_by):
    """(colours, continuous?, hover texts, counts line) of one map from its own predictions and threshold."""
    known = np.where(p.confidence >= thr, "known", "unknown")
    names = np.array([p.classes[k] for k in p.pred], dtype=object)
    hover = [f"{Path(f).name}<br>predicted: {c} ({k})<br>{LABELS[p.score]}: {v:.3g}" + (f"<br>true: {t}" if t else "")
             for f, c, k, v, t in zip(p.paths, names, known, p.confidence, p.true_class)]
    n_known = int((known == "known").sum())
    counts = f"{n_known} known · {len(known) - n_known} unknown ({LABELS[p.score]} threshold {thr:.3g})"
    if colour_by == "predicted known/unknown":
        return known, False, hover, counts
    if colour_by == "predicted class":
        return names, False, hover, counts
    if colour_by == "true class":
        return np.array([t or "(none)" for t in p.true_class], dtype=object), False, hover, counts
    return p.confidence, True, hover, counts


@st.fragment(run_every=1.0 if ex.kind in ("working", "queued") else None)
def maps() -> None:
    job = _this_run.pop() if _this_run else state.exploration(run_dir)  # the fragment redraws alone meanwhile
    if job.kind == "failed":
        st.error(f"The embeddings could not be computed: {job.words}")
        if st.button("Try again"):
            st.session_state["retry_embed"] = run_dir
            st.rerun()
        return
    res, status = job.landed, job.landed.get("status") or {}
    if "pca" not in res:  # queued, or still encoding images
        done, total, stage = status.get("done", 0), status.get("total", 0), status.get("stage", "")
        if job.kind == "queued":
            st.progress(0.0, text=f"The embeddings are {job.words} (they wait for a free slot, as runs do).")
        elif stage.startswith("features"):
            st.progress(done / total if total else 0.0,
                        text=f"Image {stage}: {done}/{total or '…'} images (once per run; cached)")
        else:
            st.progress(0.0, text="Loading the model…")
        return
    have_umap = "umap" in res
    projections = ["UMAP", "PCA"] if have_umap else ["PCA"]
    c_proj, c_col = st.columns([1, 3])
    proj = c_proj.radio("Projection", projections, horizontal=True, key=f"proj|{have_umap}")
    colour_by = c_col.radio("Colour by", ["predicted known/unknown", "predicted class", "true class", "score"],
                            horizontal=True, key="colour_by")
    if not have_umap:
        st.progress(status.get("done", 0) / 2,
                    text=f"UMAP computing ({status.get('done', 0)}/2 maps; the PCA maps are shown meanwhile)…")
    coords = res["umap" if proj == "UMAP" else "pca"]
    preds = preds_all
    thr_after = m.get("after", {}).get("threshold", 0.5)
    before, thr_before = predictions_before(run_dir), m.get("before", {}).get("threshold", thr_after)
    if before is None:
        st.warning("This run was made before zero-shot predictions were saved: both maps use the adapted "
                   "predictions.")
        before, thr_before = preds, thr_after
    names = [n for n in SCORES if n in preds.scores and n in before.scores]
    score = st.selectbox("Known/unknown score", names, index=names.index(DEFAULT), format_func=LABELS.get,
                         key="explore_score", help="What colours a point known or unknown: MSP (max softmax) is the "
                                                   "papers' and the default; another score is split at its own "
                                                   "2-means threshold, before and after alike.")
    preds, before = preds.by(score), before.by(score)
    if score != DEFAULT:
        thr_before, thr_after = before.default_threshold(), preds.default_threshold()
    shown = {"before": before, "after": preds}
    scale = score_colours({k: p.confidence for k, p in shown.items()}, {"before": thr_before, "after": thr_after},
                          score)
    c1, c2 = st.columns(2)
    picked = {}
    for col, key, title, thr in ((c1, "before", "before adaptation (zero-shot)", thr_before),
                                 (c2, "after", "after adaptation", thr_after)):
        colour, cont, hover, counts = colouring(shown[key], thr, colour_by)
        with col:
            fig = charts.embedding_scatter(coords[key], colour, hover, f"{proj} · {title}", continuous=cont,
                                           colour_range=(scale.lo, scale.hi), threshold=thr, colour_title=scale.title)
            ev = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("box", "lasso"),
                                 key=f"map_{key}_{proj}")
            st.caption(counts)
            pts = ev["selection"]["points"] if ev and "selection" in ev else []
            picked[key] = [int(q["customdata"]) for q in pts if q.get("customdata") is not None]
    if colour_by == "score":
        st.caption(scale.note())
    for sel in selections(picked, shown):  # each map's picks with its own predictions, never merged
        st.subheader(sel.heading)
        ui.gallery(sel.paths, sel.captions, empty="Select points on this map with the box or lasso tool.",
                   key=f"explore_sel_{sel.key}", own_fragment=False)
    if st.session_state.get("explore_polling") and job.kind not in ("working", "queued"):
        st.session_state["explore_polling"] = False
        st.rerun()  # the job ended: one full rerun stops the polling


st.session_state["explore_polling"] = ex.kind in ("working", "queued")
maps()
