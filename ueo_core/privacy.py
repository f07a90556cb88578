"""What may leave the server: names of data and files without the server's paths or a workspace's token.

A run folder holds absolute paths (its worker needs them to read the images; the app's galleries too). Whatever a
page shows or a download carries goes through here instead:

- ``data_name(spec)``: a run's data in words ("Shapes · sketch", "upload 20261206-035612", "PACS/sketch");
- ``public_path(path, root)``: an image named by its path inside the data folder (``dogs/IMG_0001.jpg``);
- ``scrub(text, run_dir)``: any text (a report, JSON) with the data folder and the workspace replaced by words;
- ``Download``: one download as a page offers it (``ueo_core.downloads`` lists a run's).

The workspace token is the only key to a workspace (``?ws=`` in the address): a CSV a student shares, or a table a
teacher projects, must not carry it.
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .data import SHAPES_PREFIX, resolve_data
from .runs import CHECKPOINT, RunFolder

HIDDEN_WORKSPACE = "[your workspace]"
TOKEN = re.compile(r"^[0-9a-f]{32}$")   # a workspace's folder name (studio.workspace makes them)


def _split_workspace(path: Path) -> Optional[tuple[Path, tuple]]:
    """(workspace folder ``<workspaces>/<token>``, the parts below it) for a path inside a workspace, else None:
    the deepest folder named like a token with one of the workspace's own sub-folders below it."""
    for p in (Path(path), Path(os.path.realpath(path))):
        parts = p.parts
        for i in range(len(parts) - 2, -1, -1):
            if TOKEN.match(parts[i]) and parts[i + 1] in ("runs", "uploads", "mixes", "checkpoints"):
                return Path(*parts[: i + 1]), parts[i + 1:]
    return None


def _workspace_of(path: Path) -> Optional[Path]:
    found = _split_workspace(path)
    return found[0] if found else None


def data_name(spec: Optional[str]) -> str:
    """A run's data in words, never a server path: the Shapes domain, an upload by its time (and the folder inside
    it), or a folder by its last two names."""
    s = str(spec or "")
    if not s:
        return "?"
    if s.startswith(SHAPES_PREFIX):
        return f"Shapes · {s[len(SHAPES_PREFIX):] or 'photo'}"
    p = Path(s)
    found = _split_workspace(p)
    if found is not None:
        parts = found[1]
        if parts[:1] == ("uploads",) and len(parts) > 1:
            return "upload " + "/".join(parts[1:])
        if parts[:1] == ("mixes",) and len(parts) > 1:
            return "/".join(parts[1:])
        return "/".join(parts[-2:]) or "your workspace"
    return "/".join(p.parts[-2:]) if len(p.parts) > 1 else p.name


def data_root(spec: Optional[str]) -> Optional[Path]:
    """The folder a run's data spec names (Shapes resolved to its cache folder), or None."""
    if not spec:
        return None
    try:
        p = resolve_data(spec)  # (a folder as given, ~ expanded; Shapes: its cache folder, resolved)
        return Path(os.path.realpath(p)) if str(spec).startswith(SHAPES_PREFIX) else p
    except Exception:  # a Shapes domain that no longer exists
        return None


def public_path(path: str, root: Optional[Path]) -> str:
    """``path`` as the user knows it: relative to the data folder it came from; else its file name only."""
    p = Path(path)
    if root is not None:
        for r in {Path(root), Path(os.path.realpath(root))}:
            try:
                return p.relative_to(r).as_posix()
            except ValueError:
                pass
    return p.name


def scrub(text: str, run_dir: str | Path, spec: Optional[str] = None) -> str:
    """``text`` with the run's data folder replaced by its ``data_name`` and the workspace (whatever of it is
    left) by "[your workspace]": what a download may carry."""
    cfg = RunFolder(run_dir).config or {}
    spec = spec if spec is not None else cfg.get("data")
    root = data_root(spec)
    pairs = []
    if root is not None:
        for r in {str(root), os.path.realpath(root)}:
            pairs += [(r + "/", ""), (r, data_name(spec))]
    # what else a report may name on the server: the project (the built-in model's file), the cache, the home
    from .paths import cache_root
    for private, public in ((Path(__file__).resolve().parents[1], "[UEO Studio]"), (cache_root(), "[cache]"),
                            (Path.home(), "~")):
        for r in {str(private), os.path.realpath(private)}:
            if len(r) > 1:
                pairs.append((r, public))
    ws = _workspace_of(Path(run_dir))
    if ws is not None:
        for w in {str(ws), os.path.realpath(ws)}:
            pairs.append((w, HIDDEN_WORKSPACE))
        pairs.append((ws.name, "[token]"))  # the token on its own, wherever else it may hide
    for old, new in sorted(pairs, key=lambda kv: -len(kv[0])):  # longest first: a folder before its parent
        text = text.replace(old, new)
    return text


def scrub_checkpoint(data: bytes, run_dir: str | Path) -> bytes:
    """A safetensors file with its metadata scrubbed. The header (8-byte length + JSON) is rewritten; the tensor
    bytes are kept as they are (their offsets count from the end of the header, so they stay valid)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.get("__metadata__") or {}
    header["__metadata__"] = {k: scrub(v, run_dir) for k, v in meta.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # safetensors pads its header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


@dataclass(frozen=True)
class Download:
    label: str
    file_name: str
    mime: str
    make: Callable[[], bytes]   # called only when the user asks for the file
    help: str = ""


__all__ = ["CHECKPOINT", "Download", "HIDDEN_WORKSPACE", "data_name", "data_root", "public_path",
           "scrub", "scrub_checkpoint"]
