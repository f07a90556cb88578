"""Explore: image features before vs after adaptation in 2-D (PCA at once, UMAP when computed); select points to
see the images; find images by a text or like an image (ueo_core.search, answered by the run's warm search worker on
Ray, never a model here). The embeddings are a job on Ray (ueo_core.explore, queued like a run); this page reads its
files."""
import os
from pathlib import Path

import numpy as np
import streamlit as st

from studio import charts, pick, sort_panel, state, ui
from ueo_core import thumbs
from ueo_core.analysis import changes, read_predictions
from ueo_core.data import DataError
from ueo_core.export import export_downloads
from ueo_core.explore import folder, score_colours, selections, too_few
from ueo_core.methods import METHODS
from ueo_core.privacy import data_root, public_path
from ueo_core.runs import ZERO_SHOT_PREDICTIONS, RunFolder
from ueo_core.scores import DEFAULT, LABELS, SCORES

ui.page("Explore", "🔭")


@st.cache_resource(max_entries=16, ttl=900, show_spinner=False)
def _read(run_dir: str, name: str, signature: tuple):
    return read_predictions(run_dir, name)


def predictions(run_dir: str, name: str = "predictions.csv"):
    """A run's predictions (``name``: its zero-shot ones), read once per content of the file and shared (never
    changed: ``.by`` makes new ones); None where the file is absent. Reading 10,000 rows took ~0.2 s, and a lasso
    redraws the page twice."""
    try:
        s = os.stat(Path(run_dir) / name)
    except OSError:
        return None
    return _read(run_dir, name, (s.st_size, s.st_mtime_ns))


rid = pick.finished_run()
if not rid:
    st.stop()
run_dir = str(state.runs_dir() / rid)
preds_all = predictions(run_dir)
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
    """(colours, continuous?, hover table, counts line) of one map from its own predictions and threshold. The
    hover is ``charts.hover_table``'s columns (file name, predicted class, known/unknown, score, true class), not
    100,000 texts: the point map writes a hovered point's text in the browser. (A file's name by
    ``os.path.basename``: pathlib's took 0.4 s for 10,000 points.)"""
    known = np.full(len(p), "unknown", dtype=object)
    known[p.at_threshold(thr)["accepted"]] = "known"  # the engine's decision (Predictions), not the page's
    names = np.array([p.classes[k] for k in p.pred], dtype=object)
    hover = charts.hover_table(["{file}", "predicted: {pred} ({kind})", f"{LABELS[p.score]}: {{score}}",
                                "true: {true}"], file=[os.path.basename(f) for f in p.paths], pred=names,
                               kind=known, score=np.asarray(p.confidence, dtype=float), true=list(p.true_class))
    n_known = int((known == "known").sum())
    counts = f"{n_known} known · {len(known) - n_known} unknown ({LABELS[p.score]} threshold {thr:.3g})"
    if colour_by == "predicted known/unknown":
        return known, False, hover, counts
    if colour_by == "predicted class":
        return names, False, hover, counts
    if colour_by == "true class":
        return np.array([t or "(none)" for t in p.true_class], dtype=object), False, hover, counts
    return p.confidence, True, hover, counts


def stamps() -> tuple:
    """What a map's colours and hover texts are computed from: both prediction files, as they are now."""
    out = []
    for name in ("predictions.csv", ZERO_SHOT_PREDICTIONS):
        try:
            s = os.stat(Path(run_dir) / name)
            out.append((s.st_size, s.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_resource(max_entries=8, ttl=900, show_spinner=False)
def coloured(stamp: tuple, _p, thr, colour_by, _flips):
    """``colouring`` of one map (with what adaptation changed, when coloured by it), made once per ``stamp`` (the
    run, the map, its files, score, thresholds and colouring): a lasso redraws the maps, and 100,000 hover rows
    took ~0.6 s a map."""
    colour, cont, hover, counts = colouring(_p, thr, colour_by)
    if _flips is not None:  # the same kind on both maps: a flip is between them (its caption's words and value)
        colour, cont = _flips.kind, False
        v = np.asarray(_flips.value_after, dtype=float)
        words = [c[:len(c) - len(f"{x:.3g}") - 1] for c, x in zip(map(_flips.caption, range(len(v))), v)]
        more = charts.hover_table(["change: {change} {change_value}"], change=words, change_value=v)
        hover = {"lines": hover["lines"] + more["lines"], "cats": {**hover["cats"], **more["cats"]},
                 "nums": {**hover["nums"], **more["nums"]}}
    return colour, cont, hover, counts


CHANGED = "what adaptation changed"  # colours by ueo_core.analysis.changes's kinds, the same on both maps
SEARCH_TOP = 24  # three rows of the gallery
AMONG = {"all images": None, "known": "known", "unknown": "unknown"}
_kind, _like_key = f"search_kind|{rid}", f"search_like|{rid}"


def like(index: int) -> None:
    """A gallery's "More like this": the next search ranks by this image."""
    st.session_state[_kind], st.session_state[_like_key] = "like", int(index)


def searched(score: str, thr: float):
    """The search box and filter; returns (hits, heading, note) of the latest search (text or "more like this"), or
    (None, "", None). Results are kept per query, so that redraws (a lasso, the colour mode) ask nothing again."""
    c_q, c_f = st.columns([3, 2])
    query = c_q.text_input("Find images of …", key=f"search_q|{rid}", placeholder="e.g. a star",
                           on_change=lambda: st.session_state.update({_kind: "text"}),
                           help="Ranked by how similar each image's adapted features are to the words' (the run's "
                                "prompt, e.g. 'a photo of a star.'), most similar first.")
    among = c_f.radio("Among", list(AMONG), horizontal=True, key="search_among",
                      help="Known / unknown as the adapted map colours them: the run's predictions at its threshold on "
                           "the chosen score.")
    kind = st.session_state.get(_kind) or ("text" if query.strip() else None)
    what = st.session_state.get(_like_key) if kind == "like" else query.strip()
    if not kind or what in (None, ""):
        return None, "", None
    if kind == "like" and query.strip():
        st.button(f"← back to the images of “{query.strip()}”", key="search_back", type="tertiary",
                  on_click=lambda: st.session_state.update({_kind: "text"}))
    key = (kind, what, among, score, round(float(thr), 9))
    done = st.session_state.get(f"search_done|{rid}")
    if not done or done[0] != key:
        try:
            with st.spinner("Searching… (a run's first search starts its search worker: a few seconds)"):
                done = (key, state.search(rid, kind, what, top=SEARCH_TOP, filter=AMONG[among], score=score,
                                          threshold=thr), None)
        except ValueError as err:
            done = (key, None, str(err))
        st.session_state[f"search_done|{rid}"] = done
    if done[2]:
        st.warning(done[2])
        return None, "", None
    heading = (f"More like {public_path(preds_all.paths[what], data_root(run_cfg.get('data')))}" if kind == "like"
               else f"Images of “{what}”")
    note = (f"{len(done[1])} most similar{'' if among == 'all images' else ' ' + among} images, most similar "
            f"first; caption: cosine similarity of the adapted image features, the predicted class, known or "
            f"unknown ({LABELS[score]} threshold {thr:.3g}). They are ringed on the maps.")
    return done[1], heading, note


def big_map(xy, colour, cont, hover, title, scale, thr, flips, only_flipped, hits, key, shots) -> list[int]:
    """A map of more than ``charts.PLOTLY_MAX`` points (``charts.point_map``: a canvas that stays smooth at
    100,000; hovering a point shows its thumbnail, made by the job); returns the indices selected on it."""
    from ueo_core.analysis.changes import CLASS, DOWN, UNCHANGED, UP
    colors = ({UP: charts.KNOWN_COLOR, DOWN: charts.UNKNOWN_COLOR, CLASS: charts.CLASS_CHANGE_COLOR,
               UNCHANGED: charts.NEUTRAL_COLOR} if flips is not None else None)
    codes, style = charts.map_colours(colour, continuous=cont, colour_range=(scale.lo, scale.hi), threshold=thr,
                                      colour_title=scale.title, colors=colors,
                                      hidden=[UNCHANGED] if only_flipped else ())
    return charts.point_map(xy, codes, style, hover, title, key=key, thumbs=shots,
                            sheets=thumbs.sheet_paths(folder(run_dir), shots) if shots else (),
                            ring=[h.index for h in hits or ()])


def ring(fig, xy, hits) -> None:
    """The search results ringed on a map (selectable like the points under them)."""
    idx = [h.index for h in hits]
    fig.add_scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name="search results", customdata=idx,
                    hoverinfo="skip", marker=dict(size=10, symbol="circle-open", color="#212529",
                                                  line=dict(width=1.5)))


def made(shots, indices):
    """A gallery's thumbnails as the job made them (``ueo_core.thumbs``: no photo decoded by the web server), or
    None before they are made (the gallery then makes its own)."""
    if not shots or shots.get("n") != len(preds_all):
        return None
    return lambda pos: thumbs.gallery_bytes(folder(run_dir), indices[pos])


def maps(polling: bool) -> None:
    """The maps, their selections' galleries and the search. While the job works it is a fragment that redraws
    alone every second (``polling``); once the job is done it is drawn in the page's own run, so that a lasso
    redraws the page once (a fragment's redraw and then a full one for the selection's downloads below took two
    at 100,000 points)."""
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
        st.caption("Search (find images of …, more like this) opens here once the image features are computed.")
        return
    have_umap = "umap" in res
    projections = ["UMAP", "PCA"] if have_umap else ["PCA"]
    c_proj, c_col = st.columns([1, 3])
    proj = c_proj.radio("Projection", projections, horizontal=True, key=f"proj|{have_umap}")
    truth = any(preds_all.true_class)  # "true class" only where there is one (else every point is "(none)")
    flipped = [CHANGED] if (Path(run_dir) / ZERO_SHOT_PREDICTIONS).exists() else []  # only with zero-shot saved
    colour_by = c_col.radio("Colour by", ["predicted known/unknown", "predicted class"] + (["true class"] if truth
                                                                                          else []) + ["score"]
                            + flipped,
                            horizontal=True, key="colour_by")
    shots = res.get("thumbs")  # the job's thumbnails (hover, galleries), once complete
    if status.get("stage") == "thumbnails":
        st.progress(min(1.0, status.get("done", 0) / max(1, status.get("total", 0))),
                    text=f"Thumbnails: {status.get('done', 0)}/{status.get('total', 0)} images (made once), then "
                         f"UMAP computing (0/2 maps); the PCA maps are shown meanwhile…")
    elif not have_umap:  # (until the job says "UMAP", its status is still the last stage's: no map done yet)
        maps_done = min(2, status.get("done", 0)) if status.get("stage") == "UMAP" else 0
        st.progress(maps_done / 2, text=f"UMAP computing ({maps_done}/2 maps; the PCA maps are shown meanwhile)…")
    coords = res["umap" if proj == "UMAP" else "pca"]
    preds = preds_all
    thr_after = m.get("after", {}).get("threshold", 0.5)
    before, thr_before = predictions(run_dir, ZERO_SHOT_PREDICTIONS), m.get("before", {}).get("threshold", thr_after)
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
    flips = None
    if colour_by == CHANGED:  # each image's zero-shot decision beside its adapted one, at each map's threshold
        try:
            flips = changes(before, preds, thr_before, thr_after)
        except ValueError as err:
            st.warning(str(err))
            colour_by = "predicted known/unknown"
    only_flipped = flips is not None and st.checkbox(
        "Only the points whose decision flipped", key="explore_only_flipped",
        help="Hides the unchanged points (click 'unchanged' in a map's legend to show them again).")
    shown = {"before": before, "after": preds}
    hits, heading, note = searched(score, thr_after)
    scale = score_colours({k: p.confidence for k, p in shown.items()}, {"before": thr_before, "after": thr_after},
                          score)
    c1, c2 = st.columns(2)
    picked = {}
    for col, key, title, thr in ((c1, "before", "before adaptation (zero-shot)", thr_before),
                                 (c2, "after", "after adaptation", thr_after)):
        stamp = (run_dir, key, stamps(), score, round(float(thr_before), 9), round(float(thr_after), 9), colour_by)
        colour, cont, hover, counts = coloured(stamp, shown[key], thr, colour_by, flips)
        with col:
            if len(coords[key]) > charts.PLOTLY_MAX:  # Plotly's WebGL in software is too slow there
                picked[key] = big_map(coords[key], colour, cont, hover, f"{proj} · {title}", scale, thr, flips,
                                      only_flipped, hits, f"map_{key}_{proj}", shots)
                st.caption(counts)
                continue
            fig = charts.embedding_scatter(coords[key], colour, charts.hover_texts(hover), f"{proj} · {title}",
                                           continuous=cont,
                                           colour_range=(scale.lo, scale.hi), threshold=thr, colour_title=scale.title)
            if flips is not None:
                charts.colour_changes(fig, only_flipped)
            if hits:
                ring(fig, coords[key], hits)
            ev = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("box", "lasso"),
                                 key=f"map_{key}_{proj}")
            st.caption(counts)
            pts = ev["selection"]["points"] if ev and "selection" in ev else []
            picked[key] = [int(q["customdata"]) for q in pts if q.get("customdata") is not None]
    if colour_by == "score":
        st.caption(scale.note())
    if flips is not None:
        st.caption(f"{flips.summary()} {flips.thresholds_note('the adapted map’s threshold')}")
    more = "More like this"
    if hits is not None:
        st.subheader(heading)
        ui.explain(note)
        ui.gallery([h.path for h in hits],
                   [f"{h.similarity:.3f} · {h.predicted} · {'known' if h.known else 'unknown'}" for h in hits],
                   limit=SEARCH_TOP, empty="No image matches this filter.", key="explore_search", own_fragment=False,
                   action=(more, lambda pos: like(hits[pos].index)), image=made(shots, [h.index for h in hits]))
    chosen = {}
    for sel in selections(picked, shown, {"before": thr_before, "after": thr_after}):  # each map's picks with its own predictions, never merged
        st.subheader(sel.heading)
        ui.gallery(sel.paths, sel.captions, empty="Select points on this map with the box or lasso tool.",
                   key=f"explore_sel_{sel.key}", own_fragment=False,
                   action=(more, lambda pos, sel=sel: like(sel.indices[pos])), image=made(shots, sel.indices))
        if sel.paths:
            chosen[sel.key] = list(sel.paths)
    # the selection's way home (sort, labels, zip) is drawn outside this fragment, which polls: a new selection
    # redraws the whole page once, so that part follows it
    take = {"chosen": chosen, "score": score, "threshold": float(thr_after)}
    if take != st.session_state.get("explore_take"):
        st.session_state["explore_take"] = take
        if polling:  # drawn below this fragment: the page follows the new selection
            st.rerun()
    if st.session_state.get("explore_polling") and job.kind not in ("working", "queued"):
        st.session_state["explore_polling"] = False
        st.rerun()  # the job ended: one full rerun stops the polling


st.session_state["explore_polling"] = ex.kind in ("working", "queued")
if st.session_state["explore_polling"]:
    st.fragment(run_every=1.0)(maps)(True)
else:
    maps(False)
take = st.session_state.get("explore_take") or {}
if take.get("chosen"):
    st.subheader("Take the selection home")
    options = {k: f"{'zero-shot' if k == 'before' else 'adapted'} map · {len(v)} images"
               for k, v in take["chosen"].items()}
    which = st.radio("Selection", list(options), format_func=options.get, horizontal=True, key="explore_take_which")
    paths = take["chosen"][which]
    label = LABELS[take["score"]]
    ui.explain(f"These {len(paths)} images, as the adapted run decides them at {label} ≥ {take['threshold']:.3g} "
               "(the adapted map's threshold): sorted into one folder per class and 'unknown' (a zip, or folders "
               "written where you say), or as labels for Label Studio, FiftyOne or a CSV. Your images are only read.")
    try:
        downloads = export_downloads(run_dir, take["score"], take["threshold"], only=paths)
    except DataError as err:
        st.error(state.friendly(err))
        downloads = []
    cols = st.columns(len(downloads) + 1)
    for col, d in zip(cols[1:], downloads):
        col.download_button(d.label, d.make, d.file_name, d.mime, on_click="ignore", help=d.help or None,
                            key=f"take|{which}|{d.file_name}")
    key = f"explore_sort|{rid}|{which}"
    if cols[0].button(f"Sort these {len(paths)} images", key=f"take_sort|{which}"):
        try:
            st.session_state[key] = state.start_sort(rid, None, take["score"], take["threshold"], only=paths)
        except DataError as err:
            st.error(state.friendly(err))
    sort_panel.sort_of_these(st.session_state.get(key), "the selection", f"{rid}-selection-sorted.zip",
                             take["score"], take["threshold"])
