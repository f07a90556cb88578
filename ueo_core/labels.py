"""A person's labels of a run's images: kept in SQLite, proposed for labelling, read from and written to CSV.

Where labels live: one SQLite file per workspace (``studio.workspace.labels_db()``), in WAL mode with a busy
timeout, so two browser tabs (two Streamlit sessions, two threads or processes) labelling at once both land; a
server restart or a refresh finds them. The table is append-only, one row per labelling action, with its time:
changing a label appends a row, removing or undoing one appends a NULL row. An image's label is its latest row.

Which images to label (``proposals``), in two parts: a uniformly random sample, which gives honest estimates
(``ueo_core.estimate``), and the images where a label teaches the most: those nearest the threshold, spread over
the predicted classes and the rejected.

"skip" is not a label: it is never stored (a page moves on and remembers the skip in its own session).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

UNKNOWN_LABEL = "unknown"      # a person's word for "of no prior class"
SKIP = "skip"                  # never stored
SOURCES = ("random", "informative", "other")  # how the image came to be labelled (``estimate`` needs to know)
BUSY_TIMEOUT_MS = 10_000       # a writer waits this long for another one before giving up

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    image TEXT NOT NULL,     -- the image's server path (realpath)
    label TEXT NULL,         -- a class name, "unknown", or NULL for an undo/removal
    run TEXT NOT NULL,       -- the run it was given on
    source TEXT NOT NULL,    -- "random" | "informative" | "other"
    at REAL NOT NULL         -- unix time
);
CREATE INDEX IF NOT EXISTS labels_image ON labels (image, id);
CREATE INDEX IF NOT EXISTS labels_run ON labels (run, id);
"""


@dataclass(frozen=True)
class Label:
    """One labelling action: ``label`` None is a removal (the image counts as unlabelled again)."""
    image: str
    label: Optional[str]
    run: str
    source: str
    at: float


def server_path(path: str | os.PathLike) -> str:
    """The one name an image is stored under: its resolved path (a link and its target are one image)."""
    return os.path.realpath(os.fspath(path))


class LabelStore:
    """The labels of one workspace, in the SQLite file ``db_path`` (created on first use).

    Each call opens its own connection (Streamlit runs a session's script in whichever thread it likes; a
    connection is not shared between threads) and closes it: a label is on disk when ``add`` returns.
    """

    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; ``write``: inside ``BEGIN IMMEDIATE`` (the write lock taken at once, so
        a read-then-write such as ``undo_last`` sees no other writer between its read and its write)."""
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode = WAL")  # (persistent: set once per file)
            if write:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            else:
                yield con
        finally:
            con.close()

    def journal_mode(self) -> str:
        with self._connect() as con:
            return con.execute("PRAGMA journal_mode").fetchone()[0]

    # -------------------------------------------------------------------------------------------- writing
    def add(self, image: str, label: str, run: str, source: str = "other") -> int:
        """Store ``label`` for ``image`` (a change of an earlier label is one more row); returns the row's id."""
        label = str(label).strip() if label is not None else ""
        if not label:
            raise ValueError("A label must be a class name or 'unknown' (to remove one, use remove).")
        if label.lower() == SKIP:
            raise ValueError("'skip' is not a label: a skipped image is not stored.")
        if label.lower() == UNKNOWN_LABEL:
            label = UNKNOWN_LABEL
        return self._append(image, label, run, source)

    def remove(self, image: str, run: str) -> int:
        """The image counts as unlabelled again (a NULL row); returns the row's id."""
        return self._append(image, None, run, "other")

    def _append(self, image: str, label: Optional[str], run: str, source: str) -> int:
        if source not in SOURCES:
            raise ValueError(f"Unknown label source '{source}'. Choose one of: {', '.join(SOURCES)}.")
        with self._connect(write=True) as con:
            cur = con.execute("INSERT INTO labels (image, label, run, source, at) VALUES (?, ?, ?, ?, ?)",
                              (server_path(image), label, str(run), source, time.time()))
            return int(cur.lastrowid)

    def undo_last(self, run: str) -> Optional[str]:
        """Remove the latest label given on ``run`` that is still in force (its image's latest row); returns that
        image, or None when there is nothing to undo. Undoing again walks further back."""
        with self._connect(write=True) as con:
            row = con.execute(
                "SELECT l.image FROM labels l WHERE l.run = ? AND l.label IS NOT NULL AND l.id = "
                "(SELECT MAX(id) FROM labels m WHERE m.image = l.image) ORDER BY l.id DESC LIMIT 1",
                (str(run),)).fetchone()
            if row is None:
                return None
            con.execute("INSERT INTO labels (image, label, run, source, at) VALUES (?, NULL, ?, 'other', ?)",
                        (row[0], str(run), time.time()))
            return row[0]

    # -------------------------------------------------------------------------------------------- reading
    def current(self, images: Optional[Iterable[str]] = None) -> dict[str, Label]:
        """Each labelled image's label in force (its latest row; a NULL latest row: not labelled). With
        ``images``, only those, keyed by the names given (a run's paths as its predictions name them); without,
        every labelled image, keyed by its server path."""
        with self._connect() as con:
            rows = con.execute("SELECT image, label, run, source, at FROM labels WHERE id IN "
                               "(SELECT MAX(id) FROM labels GROUP BY image)").fetchall()
        found = {r[0]: Label(*r) for r in rows if r[1] is not None}
        if images is None:
            return found
        out = {}
        for name in images:
            lab = found.get(server_path(name))
            if lab is not None:
                out[name] = lab
        return out

    def history(self, run: Optional[str] = None, limit: int = 50) -> list[Label]:
        """The latest labelling actions (removals too: ``label`` None), newest first."""
        sql, args = "SELECT image, label, run, source, at FROM labels", []
        if run is not None:
            sql, args = sql + " WHERE run = ?", [str(run)]
        with self._connect() as con:
            rows = con.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [Label(*r) for r in rows]

    def count(self, run: Optional[str] = None) -> int:
        """How many images are labelled now (by a label given on ``run``, when given)."""
        labels = self.current().values()
        return sum(1 for lab in labels if run is None or lab.run == str(run))


def person_labels(paths: Sequence[str], labels: Optional[dict]) -> dict[int, str]:
    """``{index into paths: label text}`` of the images a person labelled (``labels``: ``{image: Label or text}``,
    an image named by its server path or as ``paths`` name it); removals and other images left out."""
    if not labels:
        return {}
    by_server = {server_path(k): (v.label if isinstance(v, Label) else v) for k, v in labels.items()}
    out = {}
    for i, p in enumerate(paths):
        text = by_server.get(server_path(p))
        if text:
            out[i] = str(text)
    return out


# ------------------------------------------------------------------------------------------------ proposals
def _run_seed(paths: Sequence[str], seed: int) -> int:
    """A seed fixed by the run's images (their names, in order) and ``seed``: the same run proposes the same
    order after a refresh or a restart."""
    h = hashlib.sha256(str(seed).encode())
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return int.from_bytes(h.digest()[:8], "little")


def random_order(preds, seed: int = 0) -> np.ndarray:
    """Every image of the run in a uniformly random order, stable for the run: its first n are a simple random
    sample of n without replacement, for any n."""
    return np.random.default_rng(_run_seed(preds.paths, seed)).permutation(len(preds.paths))


def proposals(preds, threshold: float, n_random: int = 40, n_informative: int = 20, seed: int = 0) -> dict:
    """Images to label, as indices into ``preds`` (a run's predictions at the score in use).

    ``random``: the first ``n_random`` of ``random_order`` (a simple random sample: the estimates use these).
    ``informative``: up to ``n_informative`` others, those nearest the threshold (by |score - threshold|), taken
    in turn from each predicted class among the accepted and from the rejected (round-robin, in the classes' order,
    the rejected last), so that one crowded class does not take them all.
    """
    order = random_order(preds, seed)
    chosen = [int(i) for i in order[: max(0, int(n_random))]]
    taken = set(chosen)
    values = np.asarray(preds.confidence, dtype=np.float64)
    accepted = values >= threshold
    groups = [np.where(accepted & (np.asarray(preds.pred) == k))[0] for k in range(len(preds.classes))]
    groups.append(np.where(~accepted)[0])
    queues = [[int(i) for i in g[np.argsort(np.abs(values[g] - threshold), kind="stable")] if int(i) not in taken]
              for g in groups]
    informative: list[int] = []
    while len(informative) < n_informative and any(queues):
        for q in queues:
            if q and len(informative) < n_informative:
                informative.append(q.pop(0))
    return {"random": chosen, "informative": informative}


# ------------------------------------------------------------------------------------------------------ CSV
def _server_path_of(name: str, root: Optional[Path]) -> str:
    """A CSV's image name (inside the data folder, or absolute) as a server path."""
    p = Path(name)
    if not p.is_absolute() and root is not None:
        p = Path(root) / p
    return server_path(p)


def read_labels_text(text: str, root: Optional[Path], images: Optional[Sequence[str]] = None,
                     classes: Optional[Sequence[str]] = None, name: str = "the labels CSV") -> dict[str, str]:
    """``path,label`` rows to ``{image: label}``; see ``read_labels_csv``."""
    from .data import normalize_name  # (imported here: the store itself needs neither torch nor the data code)
    reader = csv.DictReader(io.StringIO(text))
    cols = [c.strip().lower() for c in (reader.fieldnames or [])]
    missing = [c for c in ("path", "label") if c not in cols]
    if missing:
        raise ValueError(f"{name} has no {' and no '.join(repr(c) for c in missing)} column: its first line must "
                         f"be 'path,label' (found: {','.join(reader.fieldnames or []) or 'nothing'}).")
    col = {c.strip().lower(): c for c in reader.fieldnames or []}
    by_server = {server_path(p): p for p in images} if images is not None else None
    known = {normalize_name(c): c for c in classes} if classes is not None else None
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    for row_no, row in enumerate(reader, start=2):  # (line 1 is the header)
        path, label = (row.get(col["path"]) or "").strip(), (row.get(col["label"]) or "").strip()
        if not path and not label:
            continue
        if not path:
            raise ValueError(f"{name}, row {row_no}: no path.")
        image = _server_path_of(path, root)
        if by_server is not None:
            if image not in by_server:
                raise ValueError(f"{name}, row {row_no}: '{path}' is not one of this run's images (give its path "
                                 "inside the run's data folder, as the app's labels CSV names it).")
            image = by_server[image]
        elif not os.path.isfile(image):
            raise ValueError(f"{name}, row {row_no}: '{path}' is not an image in the data folder.")
        if label.lower() == UNKNOWN_LABEL:
            label = UNKNOWN_LABEL
        elif known is not None:
            if normalize_name(label) not in known:
                raise ValueError(f"{name}, row {row_no}: the label '{label}' is neither a prior class "
                                 f"({', '.join(classes)}) nor 'unknown'.")
            label = known[normalize_name(label)]
        elif not label:
            raise ValueError(f"{name}, row {row_no}: no label for '{path}'.")
        if image in out and out[image] != label:
            raise ValueError(f"{name}, rows {where[image]} and {row_no}: '{path}' is labelled twice, "
                             f"'{out[image]}' and '{label}'. Keep one.")
        out[image], where[image] = label, row_no
    return out


def read_labels_csv(path: str | os.PathLike, root: Optional[Path], images: Optional[Sequence[str]] = None,
                    classes: Optional[Sequence[str]] = None) -> dict[str, str]:
    """A labels CSV (``path,label``) as ``{server path: label}``.

    A path is inside the data folder ``root`` (as ``labels_csv`` writes it) or absolute. A label is a prior class
    (``classes``, matched as folder names are) or "unknown". With ``images`` (the run's paths), each row must name
    one of them and the keys are those names. A bad CSV is a ValueError that names the row."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError as err:
        raise ValueError(f"The labels CSV {path} cannot be read ({err.strerror or err}).") from None
    return read_labels_text(text, root, images, classes, name=f"The labels CSV {Path(path).name}")


def labels_csv(labels: dict, root: Optional[Path]) -> str:
    """``path,label`` with each image named by its path inside the data folder (no server path), sorted; a
    ``Label`` or a plain string as the value. ``read_labels_csv`` reads it back."""
    from .privacy import public_path
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label"])
    rows = []
    for image, lab in labels.items():
        text = lab.label if isinstance(lab, Label) else lab
        if text is not None:
            rows.append((public_path(image, root), text))
    w.writerows(sorted(rows))
    return buf.getvalue()
