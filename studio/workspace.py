"""The per-browser workspace, and what a session may read.

Each browser session gets an unguessable token, kept in ``st.session_state`` and in the URL (``?ws=``), so a
refresh finds the same folder (uploads, runs, its remembered choices) while other sessions cannot list or guess it.
A session reads only its workspace and the configured roots (``ueo_core.roots``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Optional

import streamlit as st

from ueo_core import jobs
from ueo_core.data import DataError
from ueo_core.errors import explain
from ueo_core.roots import Root, check_path as _check_path, extra_roots
from ueo_core.runs import RUN_ID, write_json_atomic
from ueo_core.shapes import default_root

from .catalogue import SHARED_DATA

WORKSPACES = jobs.WORKSPACES
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
WORKSPACE_MAX_AGE_DAYS = float(os.environ.get("UEO_WORKSPACE_DAYS", "14"))


def prune_workspaces(root: Path, max_age_days: float, now: Optional[float] = None) -> list[str]:
    """Delete workspaces (uploads, runs) not touched for ``max_age_days``; returns the removed tokens.
    A workspace counts as touched when any file in it changed."""
    now = time.time() if now is None else now
    removed = []
    if not root.is_dir():
        return removed
    for ws in root.iterdir():
        if not (ws.is_dir() and _TOKEN.match(ws.name)):
            continue
        newest = max([ws.stat().st_mtime] + [p.stat().st_mtime for p in ws.rglob("*") if not p.is_symlink()])
        if now - newest > max_age_days * 86400:
            shutil.rmtree(ws, ignore_errors=True)
            removed.append(ws.name)
    return removed


def retention_note(days: float = None) -> str:
    """What the server keeps and for how long (``prune_workspaces``'s rule), said where people upload and run."""
    days = WORKSPACE_MAX_AGE_DAYS if days is None else days
    return (f"Uploads and runs live in this browser session's private workspace on the server; a workspace "
            f"nobody has used for {days:g} day{'s' if days != 1 else ''} is deleted, with its uploads and runs. "
            "Download what you want to keep.")


@st.cache_resource(show_spinner=False)
def _pruned_once(root: str) -> list[str]:
    return prune_workspaces(Path(root), WORKSPACE_MAX_AGE_DAYS)


def workspace() -> Path:
    """This browser session's folder; the token travels in the URL so a refresh keeps it. Old workspaces of other
    sessions are removed once per server start (UEO_WORKSPACE_DAYS, default 14 days untouched)."""
    _pruned_once(str(WORKSPACES))
    token = st.session_state.get("ws")
    url_token = st.query_params.get("ws")
    if token is None and url_token and _TOKEN.match(url_token) and (WORKSPACES / url_token).is_dir():
        token = url_token
    if token is None:
        token = uuid.uuid4().hex
    st.session_state["ws"] = token
    if st.query_params.get("ws") != token:
        st.query_params["ws"] = token
    path = WORKSPACES / token
    (path / "runs").mkdir(parents=True, exist_ok=True)
    (path / "uploads").mkdir(parents=True, exist_ok=True)
    if not st.session_state.get("_restored"):  # a new browser session on this workspace (a refresh): pick up
        st.session_state["_restored"] = True  # the data choice, model and run it had
        for k, v in _read_session(path).items():
            st.session_state.setdefault(k, v)
    return path


REMEMBERED = ("data", "model", "active_run", "lesson")


def _read_session(ws: Path) -> dict:
    try:
        d = json.loads((ws / "session.json").read_text())
        return {k: v for k, v in d.items() if k in REMEMBERED} if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def remember() -> None:
    """Save this session's choices in its workspace (written, then renamed), so that a refresh — a new browser
    session with the same ``?ws=`` — restores them. Every path in them is checked again when used."""
    write_json_atomic(workspace() / "session.json",
                      {k: st.session_state[k] for k in REMEMBERED if st.session_state.get(k) is not None})


def runs_dir() -> Path:
    return workspace() / "runs"


def labels_db() -> Path:
    """This workspace's labels (``ueo_core.labels.LabelStore``: SQLite, one row per labelling action)."""
    return workspace() / "labels.sqlite"


def allowed_roots() -> list[Root]:
    """The folders this session may read (``ueo_core.roots``): its workspace, the Shapes world, the shared data,
    and the operator's ``UEO_DATA_ROOTS``."""
    return ([Root("your uploads", workspace(), show_path=False), Root("the built-in Shapes world", shapes_root()),
             Root("the shared data", SHARED_DATA)] + extra_roots())


def shapes_root() -> Path:
    return default_root()


def check_path(typed: str, what: str = "folder") -> Path:
    """A typed path, resolved, when it lies inside this session's roots (never in another workspace); else
    ``PathRefused`` with one message whether or not it exists."""
    return _check_path(typed, allowed_roots(), denied=[WORKSPACES], what=what)


def redact(text: str) -> str:
    """``text`` with this session's workspace path shortened to "your workspace": the token is a secret and
    must not show on a projected screen or in a copied message."""
    token = st.session_state.get("ws")
    if not token:
        return text
    return text.replace(str(WORKSPACES / token), "[your workspace]")


def run_path(run_id: Optional[str]) -> Optional[Path]:
    """The folder of ``run_id`` in *this* workspace, or None for anything that is not a run id made here."""
    if not run_id or not RUN_ID.match(str(run_id)):
        return None
    p = runs_dir() / run_id
    return p if p.is_dir() else None


def save_checkpoint_upload(name: str, data: bytes) -> Path:
    """An uploaded checkpoint, saved in this workspace under a safe name (written, then renamed)."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".safetensors", ".pt", ".bin"):
        raise DataError(f"A checkpoint must be a .safetensors, .pt or .bin file, not '{suffix or name}'.")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:80].strip("._") or "checkpoint"
    d = workspace() / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"{stem}{suffix}"
    tmp = d / f".{stem}{suffix}.part"
    tmp.write_bytes(data)
    tmp.replace(out)
    return out


def new_upload_dir() -> Path:
    d = workspace() / "uploads" / time.strftime("%Y%m%d-%H%M%S")
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def friendly(err: Exception) -> str:
    """A plain message for any error (tracebacks never reach the page), without the workspace token."""
    return redact(explain(err, "app"))
