"""Which folders a shared server may read, and the one check every typed path goes through.

One server serves a whole class, so a path typed into the app (a data folder, a labelled source folder, a
checkpoint file) is only followed when it lies inside an allowed *root*:

- the session's own workspace (its uploads, its runs),
- the built-in Shapes world (``cache_root()/shapes``),
- the shared data folder (``../shared/data``, or ``UEO_SHARED_DATA``),
- and every folder listed in ``UEO_DATA_ROOTS`` (separated by ``os.pathsep``, i.e. ``:`` on Linux): the one
  setting an operator uses to open more, e.g. ``UEO_DATA_ROOTS=$HOME`` for a single person on their own machine.

The workspaces root (where every session's workspace lives) is *denied* even when an allowed root contains it;
only the caller's own workspace inside it is readable. Paths are resolved first, symlinks included, so a link
cannot lead out. The answer never says whether something exists outside the roots: every refusal has the same
wording, decided before the file system is asked about the path itself.

No Streamlit here: the app passes the roots of the session (``studio.state.allowed_roots``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .data import DataError

ENV = "UEO_DATA_ROOTS"


class PathRefused(DataError):
    """A typed path outside the allowed roots (or inside a denied one)."""


@dataclass(frozen=True)
class Root:
    label: str          # what the user sees ("your uploads", "shared data", ...)
    path: Path
    show_path: bool = True  # False for the workspace: its path holds the session's secret token


def extra_roots() -> list[Root]:
    """The operator's additional roots from ``UEO_DATA_ROOTS`` (empty entries ignored)."""
    raw = os.environ.get(ENV, "")
    return [Root(ENV, Path(os.path.expanduser(p))) for p in raw.split(os.pathsep) if p.strip()]


def _resolve(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def describe(roots: Sequence[Root]) -> str:
    return "; ".join(f"{r.label} ({r.path})" if r.show_path else r.label for r in roots)


def check_path(typed: str | os.PathLike, roots: Sequence[Root], denied: Sequence[Path] = (),
               what: str = "folder") -> Path:
    """The resolved path when ``typed`` lies inside one of ``roots`` and not inside a ``denied`` folder (unless
    the root itself is inside it: a session's own workspace under the workspaces root); else ``PathRefused``
    with the same message whether or not the path exists."""
    text = str(typed).strip()
    if not text:
        raise PathRefused(f"Type the full path of a {what}.")
    allowed = describe(roots)
    refusal = (f"Not allowed: this server only reads a {what} inside {allowed}. A server operator can allow more "
               f"folders with the {ENV} setting (see the README's Security section).")
    if "\x00" in text:
        raise PathRefused(refusal)
    p = Path(os.path.expanduser(text))
    if not p.is_absolute():
        raise PathRefused(f"Give a full path (starting with /): the {what} must lie inside {allowed}.")
    try:
        resolved = _resolve(p)
    except (OSError, RuntimeError, ValueError):
        raise PathRefused(refusal) from None
    denied_r = [_resolve(d) for d in denied]
    for root in roots:
        r = _resolve(root.path)
        if not _inside(resolved, r):
            continue
        if any(_inside(resolved, d) and not _inside(r, d) for d in denied_r):
            continue  # e.g. another session's workspace under an operator root that contains the workspaces
        return resolved
    raise PathRefused(refusal)
