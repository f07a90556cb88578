"""Choosing a finished run of this workspace (Explore, Inspect)."""
from typing import Optional

import streamlit as st

from ueo_core.analysis import list_runs

from . import state

KEY = "run_pick"  # the run chosen on Explore / Inspect: kept while other runs start or finish


def _follow(key: str = KEY) -> None:
    """The chosen run becomes the session's run: the sidebar, the address (a refresh opens it) and Adapt follow."""
    rid = st.session_state.get(key)
    if rid:
        st.session_state["active_run"] = rid
        st.query_params["run"] = rid
        state.remember()


def finished_run() -> Optional[str]:
    """The finished run the page shows. Arriving on the page, the session's run (else the newest); then what the
    user chose, while they stay: a run that finishes meanwhile (a grown prior's, a lesson's) changes the list,
    never the choice (``ui.page`` tells a page switch from a rerun)."""
    runs = [p.name for p in list_runs(state.runs_dir())]
    if not runs:
        st.info("No finished run yet: start one on the Adapt page.")
        return None
    active = state.active_run_id()
    if st.session_state.get(KEY) not in runs or (st.session_state.get("_arrived", True) and active in runs):
        st.session_state[KEY] = active if active in runs else runs[0]
    from ueo_core.runs import run_status
    labels = {r: f"{r} · {state.run_label(r)} · {run_status(state.runs_dir() / r)[1]}" for r in runs}
    return st.selectbox("Run", runs, key=KEY, format_func=lambda r: labels.get(r, r), on_change=_follow)
