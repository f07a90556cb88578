"""Small shared pieces of page layout: the header/sidebar every page has, galleries, error boxes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import streamlit as st
from PIL import Image

from ueo_core.data import load_rgb

from . import state

GALLERY_COLUMNS = 8


def page(title: str, icon: str = "🧭") -> None:
    """Page config, workspace and the sidebar summary shared by every page."""
    st.set_page_config(page_title=f"UEO Studio · {title}", page_icon=icon, layout="wide")
    state.workspace()
    with st.sidebar:
        d, m = state.data_choice(), state.model_choice()
        st.caption("**Data**: " + d["label"])
        st.caption("**Model**: " + m["label"])
        rid = state.active_run_id()
        if rid:
            st.caption(f"**Run**: `{rid}` · {'training…' if state.is_running(rid) else 'finished'}")
    st.title(title)


@st.cache_data(show_spinner=False, max_entries=5000)
def thumbnail(path: str, size: int = 112) -> Image.Image:
    img = load_rgb(path)  # upright (EXIF) and 16-bit/float images scaled, as the model sees them
    img.thumbnail((size, size))
    return img


def gallery(paths: Sequence[str], captions: Sequence[str] | None = None, limit: int = 48,
            columns: int = GALLERY_COLUMNS, empty: str = "No images.", key: Optional[str] = None) -> None:
    """A thumbnail grid of ``limit`` images; with a ``key``, paged, so that every image can be reached."""
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
                st.image(thumbnail(str(p)), caption=c, width="stretch")
            except Exception:  # a file that vanished or broke since it was read: say so, keep going
                st.caption(f"⚠️ {Path(p).name}: cannot be shown")
    if len(paths) > limit and not (key and pages > 1):
        st.caption(f"… and {len(paths) - limit} more")


def explain(text: str) -> None:
    """A short plain-language note beside a chart."""
    st.caption("ℹ️ " + text)
