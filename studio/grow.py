"""Grow a run's prior from the app (``ueo_core.grow``): the new run is queued like any other, in this workspace, with
its link to the first written in its folder before it starts."""
from __future__ import annotations

from typing import Sequence

from ueo_core import grow

from .jobs import start_run
from .workspace import run_path


def start(run_id: str, name: str, group_paths: Sequence[str] = ()) -> str:
    """Queue ``run_id``'s settings with ``name`` added to its prior; returns the new run's id. Raises ValueError
    (DataError) in words: an unknown run, an empty name, a name already in the prior, a name too long."""
    parent = run_path(run_id)
    if parent is None:
        raise ValueError("That run is not in this workspace.")
    cfg = grow.grown_config(parent, name)
    return start_run(cfg, link=grow.link(parent, name, group_paths))
