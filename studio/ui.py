"""Small shared pieces of page layout: the header/sidebar every page has, galleries, error boxes."""
from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import streamlit as st
from PIL import Image

from ueo_core.analysis import shown_rate
from ueo_core.data import DataError, load_rgb
from ueo_core.privacy import data_name

from . import share, state

GALLERY_COLUMNS = 8
# how the app names the scoring protocols (ueo_core.config.PROTOCOLS), on every page that offers them
PROTOCOL_LABELS = {"studio": "Studio: the model's logit scale everywhere",
                   "official": "Official code (paper's tables): train ×100, score raw cosines"}

# Everything imported so far (torch, scikit-learn, Plotly, open_clip…) lives as long as the server: move it out of
# the collector's generations, so that a full collection (Python's own, now and then) does not walk 600k objects.
gc.freeze()


def page(title: str, icon: str = "🧭") -> None:
    """Page config, workspace and the sidebar shared by every page: the chosen data and model, this session's run
    (its own data, its true status) and a Stop button while anything trains. The address keeps ``ws`` and
    ``run``."""
    st.set_page_config(page_title=f"UEO Studio · {title}", page_icon=icon, layout="wide")
    st.session_state["_arrived"] = st.session_state.get("_page") != title  # a page switch, not a rerun of it
    st.session_state["_page"] = title
    state.workspace()
    link_error = None
    if st.query_params.get(share.PARAM):  # a teacher's link: its choices, in this student's own workspace
        try:
            state.open_lesson_link(st.query_params[share.PARAM])
        except (share.ShareError, DataError) as err:
            del st.query_params[share.PARAM]
            link_error = str(err)
    rid = state.active_run_id()
    if rid and st.query_params.get("run") != rid:
        st.query_params["run"] = rid
    with st.sidebar:
        d, m = state.data_choice(), state.model_choice()
        st.caption("**Data** (chosen): " + d["label"])
        st.caption("**Model**: " + m["label"])
        live = bool(state.live_in_workspace())
        st.session_state["_sidebar_live"] = live
        # follows a live run every 2 s without rerunning the page; idle otherwise
        st.fragment(run_every=2.0 if live else None)(sidebar_status)()
    st.title(title)
    if link_error:
        st.error(link_error)


def sidebar_status() -> None:
    """The session's run and lesson, as they are now (a fragment: it follows a run live without rerunning the
    page), with Stop while one trains."""
    from ueo_core.runs import run_status
    rid = state.active_run_id()
    live = state.live_in_workspace()
    if rid:
        job = state.job(rid)
        if job.kind == "queued":
            words = job.words
        elif job.kind == "lost":
            words = "its process stopped: Resume on Adapt"
        elif job.kind == "unreachable":
            words = "Ray cannot be reached, so its state is unknown"
        else:
            words = run_status(state.runs_dir() / rid, alive=rid in live)[1]
        st.caption(f"**Run** `{rid[-6:]}` · {state.run_label(rid)} · {words}")
    lesson = state.active_lesson()
    if lesson:
        ls = state.lesson_status(lesson)
        st.caption(f"**Lesson** `{lesson['id'][-6:]}` · " + (ls["queue"] or f"running ({ls['where']})" if ls["live"]
                                                                else ls["state"]))
    if live and st.button("■ Stop", key="sidebar_stop", help="stops the run (or lesson) after its current step; "
                          "what its last checkpoint holds is kept"):
        state.stop_everything()
        st.rerun()
    if st.session_state.get("_sidebar_live") and not live:
        st.session_state["_sidebar_live"] = False
        st.rerun()  # it just ended: redraw the page once (and stop polling)


@st.cache_data(show_spinner=False, max_entries=20000)
def thumbnail(path: str, size: int = 112, mtime: float = 0.0) -> bytes:
    """A small JPEG of the image, made once per file (and size, and modification time) per server: pages send
    these bytes as they are, with no re-encoding on each rerun."""
    import io
    img = load_rgb(path, min_side=2 * size)  # upright (EXIF), 16-bit/float scaled; a big JPEG decoded small
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def gallery(paths: Sequence[str], captions: Sequence[str] | None = None, limit: int = 48,
            columns: int = GALLERY_COLUMNS, empty: str = "No images.", key: Optional[str] = None,
            own_fragment: bool = True, action: Optional[tuple[str, Callable[[int], None]]] = None,
            image: Optional[Callable[[int], bytes]] = None) -> None:
    """A thumbnail grid of ``limit`` images; with a ``key``, paged, so that every image can be reached. A paged
    gallery is its own fragment: turning its page reruns the gallery, not the page around it. Inside a fragment
    that reruns on a timer, pass ``own_fragment=False``: Streamlit 1.67's frontend can then receive the nested
    fragment's elements at a path that no longer exists ("Bad delta path index") and blank the page.
    ``action`` = (label, fn): a small button under each image (with a ``key``) that calls ``fn(position in
    paths)`` (Explore's "More like this"). ``image(position in paths)``: the thumbnail's bytes made elsewhere
    (Explore's, by the exploration job: ``ueo_core.thumbs``), instead of decoding the file here."""
    if key and own_fragment:
        st.fragment(_gallery)(list(paths), None if captions is None else list(captions), limit, columns, empty, key,
                              action, image)
    else:
        _gallery(paths, captions, limit, columns, empty, key, action, image)


def _gallery(paths, captions, limit, columns, empty, key, action=None, image=None) -> None:
    if not len(paths):
        st.caption(empty)
        return
    start = 0
    pages = (len(paths) + limit - 1) // limit
    if key and pages > 1:
        page = st.number_input(f"page (of {pages}, {limit} images each)", 1, pages, 1, key=f"page|{key}")
        start = (int(page) - 1) * limit
    shown = list(paths)[start:start + limit]
    caps = (list(captions)[start:start + limit] if captions is not None else [Path(p).name for p in shown])
    cols = st.columns(columns)
    for i, (p, c) in enumerate(zip(shown, caps)):
        with cols[i % columns]:
            try:
                st.image(image(start + i) if image else thumbnail(str(p), mtime=os.stat(p).st_mtime), caption=c,
                         width="stretch")
            except Exception:  # a file that vanished or broke since it was read: say so, keep going
                st.caption(f"⚠️ {Path(p).name}: cannot be shown")
            if action and key:
                st.button(action[0], key=f"{key}|act|{start + i}", on_click=action[1], args=(start + i,),
                          type="tertiary")
    if len(paths) > limit and not (key and pages > 1):
        st.caption(f"… and {len(paths) - limit} more")


def table(rows: Sequence[dict], columns: Optional[Sequence[str]] = None, digits: int = 4,
          percent: Sequence[str] = ()) -> None:
    """A small table as static HTML (``st.table``), floats to ``digits`` significant digits, "–" where empty; the
    rates named in ``percent`` as points with one decimal (0.8667 → 86.7), as the metric cards and every sentence
    print them, so that a figure in a caption can be found in the table as written.
    ``bench/ui_elements.py`` measured a 6-row ``st.dataframe`` (a canvas grid) at ~340 ms to mount on a page switch
    in Chromium on 2 cores, the same rows as ``st.table`` at ~13 ms: the grid is kept for long lists only."""
    import pandas as pd
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    frame = pd.DataFrame(list(rows), columns=cols)
    for c in (c for c in percent if c in cols):
        frame[c] = frame[c].map(lambda v: "–" if pd.isna(v) else shown_rate(v))
    floats = [c for c in cols if pd.api.types.is_float_dtype(frame[c])]
    shown = frame.style.format({c: f"{{:.{digits}g}}" for c in floats}, na_rep="–")
    st.table(shown, hide_index=True, height="content" if len(frame) <= 12 else 460)  # long ones scroll


def explain(text: str) -> None:
    """A short plain-language note beside a chart."""
    st.caption("ℹ️ " + text)


def data_header():
    """The chosen data as an ImageSet, with the line every run page shows above its settings (data, prior, model)
    and the warnings before a run: the data's own, and the built-in model pointed at other images. Stops the
    page with a message when the data cannot be read."""
    try:
        ims = state.image_set()
    except Exception as err:
        st.error(f"Choose data first (Data page): {state.friendly(err)}")
        st.stop()
    model = state.model_choice()
    name = data_name(state.data_choice()["spec"])  # the data in words: no server path
    st.caption(state.redact(f"{ims.summary(name)} · prior: {', '.join(ims.classes)} · model: {model['label']}"))
    for w in ims.warnings:
        st.warning(w)
    fit = state.model_fit_warning(ims)
    if fit:
        st.warning(fit, icon="⚠️")
    return ims
