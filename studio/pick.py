"""Choosing a finished run of this workspace (Explore, Inspect)."""
from typing import Optional

import streamlit as st

from ueo_core.analysis import list_runs

from . import state


def finished_run() -> Optional[str]:
    runs = [p.name for p in list_runs(state.runs_dir())]
    if not runs:
        st.info("No finished run yet: start one on the Adapt page.")
        return None
    active = state.active_run_id()
    idx = runs.index(active) if active in runs else 0
    from ueo_core.runs import run_status
    labels = {r: f"{r} · {state.run_label(r)} · {run_status(state.runs_dir() / r)[1]}" for r in runs}
    return st.selectbox("Run", runs, index=idx, format_func=lambda r: labels.get(r, r))
