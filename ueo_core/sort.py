"""Sorting photos into one folder per class by a finished run: ``python -m ueo_core sort FOLDER --run R --out OUT``,
and the app's Sort page and Inspect (a job on Ray: ``jobs.submit_sort``, ``workers.SortWorker``, ``run_job``).

Where each image's class comes from:
- FOLDER is the run's own data (the same folder, resolved): the run's own predictions.csv, so the sorted folders
  count what Inspect shows at the same score and threshold.
- Any other folder (new photos: a flat folder, class sub-folders, any depth): the run applied to it as
  ``eval --run`` applies it (``cli.applied_config``): its adapted parameters (prompt and norms; CLIPood's
  moving-average tower), or its test-time method (ZERO, TDA) run on these photos.
- The threshold belongs to the run: its own (metrics.json) for MSP; for another score, the run's label-free split
  of that score's values on the run's own images. It is never re-fitted on the photos being sorted.

What it never does: change, move or rename a source file. OUT gets hard links (copies where the file system
refuses them), symbolic links or copies under ``OUT/<class>/`` and ``OUT/unknown/``, with ``manifest.csv`` (one row
per image), ``skipped.txt`` and a marker (``.ueo-sort.json``) naming every file it wrote, so that a later sort
replaces exactly those. OUT is built beside itself and renamed into place at the end: a crash never leaves a folder
that looks complete.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import re
import secrets
import shutil
import time
import zipfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .data import (IMG_EXTENSIONS, NO_TRUTH, SHAPES_PREFIX, UNKNOWN, DataError, ImageSet, check_image,
                   is_os_junk, normalize_name, resolve_data)
from .analysis.predictions import run_threshold  # (the run's own threshold, as Inspect opens at)
from .metrics import SPLITS
from .privacy import data_name, data_root, public_path, scrub
from .runs import ANY_NAME, RunFolder, write_json_atomic
from .scores import DEFAULT, LABELS, SCORES

Progress = Callable[[str, int, int], None]

MARKER = ".ueo-sort.json"           # in OUT: what this sort wrote (a later sort replaces exactly that)
WORK = ".ueo-sort"                  # in OUT: the evaluation of new photos, kept with the result
MANIFEST, SKIPPED = "manifest.csv", "skipped.txt"
UNKNOWN_FOLDER = "unknown"
WRITTEN_BY = "python -m ueo_core sort"
LINKS = {"hard": "hard link", "symlink": "symbolic link", "copy": "copy"}
FIELDS = ["source", "destination", "predicted_class", "score", "score_value", "threshold", "known", "file"]
# a job's files (the app's sorts: <workspace>/sorts/<id>/)
STATUS, DECISIONS, RESULT, ZIP = "status.json", "decisions.json", "result.json", "sorted.zip"
ZIP_MAX_BYTES = 2 * 1024 ** 3       # larger: no zip (the page offers the folders instead)
CHOSEN = "set by you, not the run's own"  # a threshold given to a sort: the slider, Youden's J, --threshold


# ------------------------------------------------------------------------------------------------- the run
def read_run(run: str | Path) -> dict:
    """A finished run's config.json, or a DataError in words (not a run, an evaluation, not finished)."""
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run} is not a run folder ({'a file' if run.exists() else 'it does not exist'}): give a "
                        "finished run's folder (made by `python -m ueo_core train` or the app).")
    try:
        cfg = RunFolder(run).config
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{run / 'config.json'} is damaged (not JSON): this run cannot sort photos.") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{run} holds no config.json: it is not a run folder.")
    ev = (cfg.get("summary") or {}).get("evaluates")
    if ev:
        raise DataError(f"{run} is an evaluation of the run {ev.get('run')}, not a run: sort with that run.")
    if not (run / "predictions.csv").exists() or not (run / "metrics.json").exists():
        raise DataError(f"{run} has not finished (it has no predictions.csv and metrics.json yet): sort with a "
                        "finished run.")
    return cfg


def run_data_root(cfg: dict) -> Optional[Path]:
    """The resolved folder a run adapted on (Shapes: its cache folder), or None when it is gone."""
    p = data_root(cfg.get("data"))  # (privacy's: the same resolution of a data spec)
    return Path(os.path.realpath(p)) if p is not None and p.is_dir() else None


def resolve_folder(folder: str | Path) -> Path:
    """FOLDER as a resolved directory (``shapes:<domain>`` for the built-in world), or a DataError."""
    try:
        p = resolve_data(folder)
    except Exception as err:
        raise DataError(f"{folder}: {err}") from None
    if not p.is_dir():
        raise DataError(f"Folder not found: {folder}")
    return Path(os.path.realpath(p))


# --------------------------------------------------------------------------------------------- decisions
@dataclass
class Decision:
    """One image: the file as read, its path inside FOLDER, its closest known class, its score, known or not."""
    source: str
    rel: str
    predicted: str
    value: float
    known: bool
    by: str = "model"            # who decided: "model", or "person" (a person's label, ``ueo_core.labels``)


@dataclass
class Decisions:
    """What a sort decided for every image of FOLDER, before anything is written."""
    run: str
    method: str
    folder: str                  # resolved FOLDER
    spec: str                    # FOLDER as given (``shapes:sketch``): named by ``privacy.data_name``
    classes: list[str]
    score: str
    threshold: float
    threshold_from: str          # where the threshold comes from, in words
    own_data: bool               # FOLDER is the run's own data: its predictions.csv was used as it is
    rows: list[Decision]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("run", "method", "folder", "spec", "classes", "score", "threshold",
                                           "threshold_from", "own_data")}
        d["rows"] = [[r.source, r.rel, r.predicted, r.value, r.known] + ([r.by] if r.by != "model" else [])
                     for r in self.rows]
        d["skipped"] = [list(s) for s in self.skipped]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Decisions":
        return cls(**{**d, "rows": [Decision(*r) for r in d["rows"]], "skipped": [tuple(s) for s in d["skipped"]]})

    @property
    def label(self) -> str:
        return LABELS.get(self.score, self.score)


def decide(run: str | Path, folder: Optional[str | Path] = None, score: Optional[str] = None,
           threshold: Optional[float] = None, work: Optional[str | Path] = None, device: Optional[str] = None,
           listeners: Sequence = (), progress: Optional[Progress] = None,
           only: Optional[Sequence[str]] = None, labels: Optional[dict] = None) -> Decisions:
    """Each image of FOLDER (None: the run's own data) as known class or unknown, by the run at ``score`` and
    ``threshold`` (default: the run's own, ``run_threshold``). New photos are evaluated into ``work/evaluation``.
    ``only``: these images of the run's own data (paths as its predictions name them: Explore's selection).
    ``labels``: a person's labels (``{server path: class or "unknown"}``, ``ueo_core.labels``): where there is one,
    the image goes to that class's folder (a class outside the prior: unknown), marked as a person's."""
    from .analysis import read_predictions
    run = Path(run)
    cfg = read_run(run)
    classes = list((cfg.get("summary") or {}).get("classes") or [])
    score = score or DEFAULT
    if score not in SCORES:
        raise DataError(f"Unknown score '{score}'. Choose one of: {', '.join(SCORES)}.")
    thr, words = run_threshold(run, score)
    if threshold is not None and float(threshold) != thr:
        thr, words = float(threshold), CHOSEN
        if not math.isfinite(thr):
            raise DataError(f"The threshold must be a number, not {threshold}.")
    run_root = run_data_root(cfg)
    if folder is None:
        if run_root is None:
            raise DataError("The folder this run adapted on is no longer there: nothing to sort.")
        src, spec = run_root, str(cfg.get("data"))
    else:
        src, spec = resolve_folder(folder), str(folder)
    own = run_root is not None and src == run_root
    if own:
        spec = str(cfg.get("data"))  # named as the run names it ("Shapes · sketch")
    spec = _shapes_spec(src) or spec
    if own:
        preds = read_predictions(run)
        skipped = _own_skipped(run, src, preds.paths)
    else:
        msp_thr = run_threshold(run, DEFAULT)[0]
        preds, skipped = _evaluate(run, src, classes, msp_thr, work, device, listeners, progress)
        if score not in preds.scores:
            raise DataError(f"The evaluation has no {LABELS[score]} values.")
    judged = preds.by(score)
    accepted = set(judged.at_threshold(thr)["accepted"].tolist())  # Inspect's own rule: known when >= threshold
    gone = {p for p, _ in skipped}
    if only is not None:
        if not own:
            raise DataError("A selection of images can only be sorted from the run's own data.")
        wanted = set(only)
        gone |= {p for p in judged.paths if p not in wanted}
        skipped = [s for s in skipped if s[0] in wanted]
    from .labels import person_labels
    given = person_labels(judged.paths, labels)
    rows = []
    for i, path in enumerate(judged.paths):
        if path in gone:
            continue
        k = judged.pred[i]
        rows.append(Decision(path, _rel(path, src), classes[k] if 0 <= k < len(classes) else "",
                             float(judged.confidence[i]), i in accepted))
        if i in given:  # a person's label decides: its class's folder, or unknown
            known = given[i] in classes
            rows[-1] = Decision(path, rows[-1].rel, given[i] if known else rows[-1].predicted, rows[-1].value,
                                known, "person")
    rows.sort(key=lambda r: r.rel)
    return Decisions(str(run), str(cfg.get("method")), str(src), spec, classes, score, thr, words, own, rows,
                     skipped)


def _shapes_spec(folder: Path) -> Optional[str]:
    """``shapes:<domain>`` when ``folder`` is a domain of the built-in world (so it is named "Shapes · photo")."""
    from .shapes import DOMAINS, VERSION, default_root
    world = Path(os.path.realpath(default_root())) / f"{VERSION}-s0-n60"
    return f"{SHAPES_PREFIX}{folder.name}" if folder.parent == world and folder.name in DOMAINS else None


def _rel(path: str, root: Path) -> str:
    """``path`` inside FOLDER (``root``, resolved), as the user knows it: ``dogs/IMG_0001.jpg``."""
    for p in (Path(path), Path(os.path.realpath(path))):
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    return public_path(path, root)


def _own_skipped(run: Path, root: Path, paths: Sequence[str]) -> list[tuple[str, str]]:
    """The run's own skipped.txt, its images no longer there, and images in its folder it never read."""
    out = []
    try:
        for line in (run / "skipped.txt").read_text(**ANY_NAME).splitlines():
            if "\t" in line:
                p, why = line.split("\t", 1)
                out.append((p, why))
    except OSError:
        pass
    seen = {os.path.realpath(p) for p in paths} | {os.path.realpath(p) for p, _ in out}
    for p in paths:
        if not os.path.isfile(p):
            out.append((p, "no longer in the folder (moved or deleted after the run)"))
    for p in _walk(root):
        if os.path.realpath(p) not in seen and p.lower().endswith(IMG_EXTENSIONS):
            out.append((p, "not among the run's images (added after the run, or in a class folder its preset "
                           "leaves out): sort it as new photos"))
    return out


def _walk(root: Path):
    """Every file under ``root`` at any depth, sorted, leaving out what operating systems add."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_os_junk(d))
        for fn in sorted(filenames):
            if not is_os_junk(fn):
                yield os.path.join(dirpath, fn)


def list_images(root: str | Path, classes: Sequence[str], progress: Optional[Progress] = None) -> ImageSet:
    """Every readable image under ``root``, at any depth (a flat folder, class sub-folders, deeper), with the run's
    prior. A top-level folder named like a prior class is that image's truth, as ``data.load_folder`` reads it;
    unreadable files are skipped with the reason, as a run lists them."""
    root = Path(root)
    found = list(_walk(root))
    files, tops, skipped = [], [], []
    for i, p in enumerate(found):
        reason = check_image(p) if p.lower().endswith(IMG_EXTENSIONS) else "not an image file type"
        if reason:
            skipped.append((p, reason))
        else:
            rel = Path(p).relative_to(root)
            files.append(p)
            tops.append(rel.parts[0] if len(rel.parts) > 1 else None)
        if progress is not None:
            progress("reading the photos", i + 1, len(found))
    if not files:
        raise DataError(f"{root} has no readable images" + (f" ({len(skipped)} files skipped)." if skipped else "."))
    index = {normalize_name(c): k for k, c in enumerate(classes)}
    if any(t is not None and normalize_name(t) in index for t in tops):
        labels = [NO_TRUTH if t is None else index.get(normalize_name(t), UNKNOWN) for t in tops]
        names = tops
    else:  # no folder names a class: the folders are the user's own grouping, not truth
        labels, names = [NO_TRUTH] * len(files), [None] * len(files)
    return ImageSet(root=root, files=files, classes=list(classes), labels=np.array(labels, dtype=np.int64),
                    folder_names=names, folders=sorted({t for t in tops if t}), skipped=skipped)


def _evaluate(run: Path, src: Path, classes: list[str], msp_threshold: float, work, device, listeners, progress):
    """The run applied to new photos as ``eval --run`` applies it, at the run's own MSP threshold."""
    import tempfile

    from .analysis import read_predictions
    from .cli import applied_config
    from .train import Trainer
    ims = list_images(src, classes, progress)
    if len(ims) < 2:
        raise DataError(f"{src} has 1 readable image: the run's model is applied to new photos as its evaluation "
                        "is, which needs at least 2. Add a photo.")
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="ueo-sort-"))
    out = work / "evaluation"
    cfg, evaluates = applied_config(run, str(src), out, device=device)
    cfg = cfg.replace(prior=list(classes), preset=None, threshold=msp_threshold)
    follow = list(listeners)
    if progress is not None:
        follow.append(lambda ev: progress(ev.data["phase"], ev.data["done"], ev.data["total"])
                      if ev.kind == "progress" else None)
    Trainer(cfg, listeners=tuple(follow), image_set=ims, evaluates=evaluates).run()
    return read_predictions(out), list(ims.skipped)


# ------------------------------------------------------------------------------------------------- layout
@dataclass
class Placed:
    decision: Decision
    destination: str             # inside OUT: "<class folder>/<file name>"


RESERVED = {MANIFEST, SKIPPED, MARKER, WORK}


def _safe(name: str) -> str:
    """A class name as a folder name any file system takes: no separators or control characters, no leading dot."""
    s = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]', "_", str(name)).strip().lstrip(".").strip()
    return s[:100].rstrip(" .") or "class"


def class_folders(classes: Sequence[str]) -> dict:
    """{class: folder name} for the prior, and {None: the unknown folder}. Rejected images always go to
    ``unknown``; a class named ``unknown`` (or like a file OUT holds) becomes ``unknown (class)``, and one whose
    folder name another class took gets a number (``a_b (2)``)."""
    reserved = {n.casefold() for n in RESERVED} | {UNKNOWN_FOLDER}
    taken = set(reserved)
    out: dict = {None: UNKNOWN_FOLDER}
    for c in classes:
        base = _safe(c)
        name = base if base.casefold() not in reserved else f"{base} (class)"
        k = 2
        while name.casefold() in taken:
            name, k = f"{base} ({k})", k + 1
        taken.add(name.casefold())
        out[c] = name
    return out


def plan(dec: Decisions) -> list[Placed]:
    """Where each image goes: ``<class>/<its file name>``; when photos named alike (in different sub-folders) come
    into one folder, each of them is named by its path inside FOLDER joined with '__' (``2023__IMG_0001.jpg``), and
    a number where even that is taken (``IMG_0001 (2).jpg``). Names are compared without case (macOS and Windows
    disks ignore it). Never two files on one name: nothing is overwritten."""
    folders = class_folders(dec.classes)
    where = [folders.get(r.predicted, UNKNOWN_FOLDER) if r.known else folders[None] for r in dec.rows]
    alike = Counter((f, Path(r.rel).name.casefold()) for f, r in zip(where, dec.rows))
    taken: dict[str, set] = {f: set() for f in folders.values()}
    out = []
    for folder, r in zip(where, dec.rows):
        used = taken.setdefault(folder, set())
        rel = Path(r.rel)
        base = rel.name
        joined = "__".join(rel.parent.parts + (base,))
        # every photo of a name that comes more than once into this folder says where it came from
        tries = [joined, base] if alike[(folder, base.casefold())] > 1 else [base, joined]
        name = next((t for t in tries
                     if t.casefold() not in used and len(t.encode("utf-8", "surrogateescape")) <= 240), None)
        stem, suffix = os.path.splitext(base)
        k = 2
        while name is None or name.casefold() in used:
            name, k = f"{stem} ({k}){suffix}", k + 1
        used.add(name.casefold())
        out.append(Placed(r, f"{folder}/{name}"))
    return out


def counts(dec: Decisions, placed: Sequence[Placed]) -> list[dict]:
    """Images per folder: each class of the prior, then unknown."""
    folders = class_folders(dec.classes)
    n = Counter(p.destination.split("/", 1)[0] for p in placed)
    return ([{"class": c, "folder": folders[c], "images": n[folders[c]]} for c in dec.classes]
            + [{"class": None, "folder": folders[None], "images": n[folders[None]]}])


# ------------------------------------------------------------------------------------------- the output folder
def written_by_sort(out: Path) -> Optional[dict]:
    """The marker of a folder a sort wrote, else None."""
    try:
        mark = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and mark.get("written_by") == WRITTEN_BY else None


def _not_ours(out: Path, mark: dict) -> list[str]:
    """Whatever is in a sorted folder that its sort did not write (a file added by hand), by relative path."""
    files = set(mark.get("files") or []) | {MANIFEST, SKIPPED, MARKER}
    folders = set(mark.get("folders") or [])
    extra = []
    for dirpath, dirnames, filenames in os.walk(out, followlinks=False):
        rel_dir = Path(dirpath).relative_to(out)
        if rel_dir.parts[:1] == (WORK,):
            dirnames[:] = []
            continue
        for d in list(dirnames):
            rel = (rel_dir / d).as_posix()
            if os.path.islink(os.path.join(dirpath, d)) or (rel not in folders and rel != WORK):
                extra.append(rel + "/")
                dirnames.remove(d)
        extra += [(rel_dir / f).as_posix() for f in filenames if (rel_dir / f).as_posix() not in files]
    return sorted(extra)


def check_out(out: str | Path, folder: str | Path) -> Path:
    """OUT, resolved, when a sort may write it: not inside FOLDER (a second sort would read the sorted files as
    photos), not around it, and new, empty, or written by an earlier sort with nothing added since. Else a
    DataError; nothing is changed either way."""
    given = str(out)
    out = Path(os.path.realpath(os.path.expanduser(given)))
    src = Path(os.path.realpath(folder))
    if out == src or src in out.parents:
        raise DataError(f"The output folder {given} lies inside the folder being sorted ({folder}): a second sort "
                        "would read the sorted files as photos of their own. Choose a folder outside it. Nothing "
                        "was written.")
    if out in src.parents:
        raise DataError(f"The folder being sorted ({folder}) lies inside the output folder {given}, which a sort "
                        "replaces whole. Choose another output folder. Nothing was written.")
    if out.exists() and not out.is_dir():
        raise DataError(f"The output folder {given} is a file: give a folder. Nothing was changed.")
    if out.is_dir() and any(out.iterdir()):
        mark = written_by_sort(out)
        if mark is None:
            raise DataError(f"The output folder {given} is not empty and was not written by a sort (it has no "
                            f"{MARKER}): choose a new or empty folder. Nothing was changed.")
        extra = _not_ours(out, mark)
        if extra:
            raise DataError(f"The output folder {given} was written by an earlier sort, which a new sort replaces "
                            f"whole, but it now also holds {len(extra)} thing{'s' if len(extra) != 1 else ''} that "
                            f"sort did not write ({', '.join(extra[:3])}{'…' if len(extra) > 3 else ''}): move "
                            "them out first, or choose another folder. Nothing was changed.")
    return out


@contextmanager
def _building(out: Path, folder: str | Path):
    """A hidden folder beside OUT to build the result in; renamed into place at the end (an earlier sort's OUT is
    swapped out and removed), removed if anything fails. Leftovers of a crashed sort are removed first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in glob.glob(os.path.join(glob.escape(str(out.parent)), f".{glob.escape(out.name)}.sort-*")):
        if written_by_sort(Path(p)) is not None:
            shutil.rmtree(p, ignore_errors=True)
    part = out.parent / f".{out.name}.sort-{os.getpid()}-{secrets.token_hex(3)}"
    part.mkdir()
    try:
        write_json_atomic(part / MARKER, {"written_by": WRITTEN_BY, "complete": False})
        yield part
        check_out(out, folder)  # again: nothing was put into OUT meanwhile
        if out.is_dir() and any(out.iterdir()):
            old = out.parent / f".{out.name}.sort-old-{os.getpid()}-{secrets.token_hex(3)}"
            out.rename(old)
            part.rename(out)
            shutil.rmtree(old, ignore_errors=True)  # its links and copies only: the sources are elsewhere
        else:
            if out.is_dir():
                out.rmdir()
            part.rename(out)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise


def _put(src: str, dst: Path, link: str) -> str:
    """``src`` under the name ``dst`` (never over an existing file); returns how: hard link, symbolic link, copy.
    A hard link the file system refuses (another disk, no links there) becomes a copy."""
    if os.path.lexists(dst):
        raise FileExistsError(f"{dst} exists")
    if link == "symlink":
        os.symlink(os.path.abspath(src), dst)
        return LINKS["symlink"]
    if link == "hard":
        try:
            os.link(src, dst)
            return LINKS["hard"]
        except FileExistsError:
            raise
        except OSError:  # EXDEV (another file system), EPERM / ENOTSUP (no hard links there), EMLINK
            pass
    shutil.copy2(src, dst)
    return LINKS["copy"]


@dataclass
class SortResult:
    out: Path
    decisions: Decisions
    placed: list[Placed]          # what arrived
    how: Counter                  # {"hard link": n, "copy": n, ...}
    skipped: list[tuple[str, str]]


def _fill(part: Path, dec: Decisions, link: str, progress: Optional[Progress], public: bool) -> SortResult:
    """Write the class folders, the files, manifest.csv, skipped.txt and the marker into ``part``."""
    if link not in LINKS:
        raise DataError(f"--link must be one of {', '.join(LINKS)}, not {link!r}.")
    folders = class_folders(dec.classes)
    for f in folders.values():
        (part / f).mkdir(exist_ok=True)
    placed = plan(dec)
    how, arrived, failed = Counter(), [], []
    for i, p in enumerate(placed):
        try:
            h = _put(p.decision.source, part / p.destination, link)
        except OSError as err:
            failed.append((p.decision.source, f"could not be {'linked' if link != 'copy' else 'copied'} "
                                              f"({err.strerror or err})"))
            continue
        how[h] += 1
        arrived.append((p, h))
        if progress is not None:
            progress("sorting", i + 1, len(placed))
    skipped = list(dec.skipped) + failed
    with open(part / MANIFEST, "w", newline="", **ANY_NAME) as fh:
        fh.write(manifest_csv(dec, arrived, public))
    (part / SKIPPED).write_text(skipped_text(dec, skipped, public), **ANY_NAME)
    write_json_atomic(part / MARKER, {
        "written_by": WRITTEN_BY, "complete": True, "at": time.time(),
        "run": Path(dec.run).name if public else dec.run, "method": dec.method,
        "data": data_name(dec.spec) if public else dec.folder, "score": dec.score, "threshold": dec.threshold,
        "threshold_from": dec.threshold_from, "own_data": dec.own_data, "link": link, "how": dict(how),
        "folders": sorted(folders.values()), "files": [p.destination for p, _ in arrived]})
    return SortResult(part, dec, [p for p, _ in arrived], how, skipped)


def manifest_csv(dec: Decisions, arrived: Sequence[tuple[Placed, str]], public: bool = False) -> str:
    """manifest.csv: one row per image. ``public``: sources named by their path inside FOLDER (a download, or a
    folder written by the app, carries no server path)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    people = any(r.by != "model" for r in dec.rows)  # a person's labels: one more column says who decided
    w.writerow(FIELDS + (["labelled_by"] if people else []))
    for p, how in arrived:
        d = p.decision
        w.writerow([d.rel if public else d.source, p.destination, d.predicted, dec.score, f"{d.value:.6f}",
                    f"{dec.threshold:.6f}", "known" if d.known else "unknown", how] + ([d.by] if people else []))
    return buf.getvalue()


def skipped_text(dec: Decisions, skipped: Sequence[tuple[str, str]], public: bool = False) -> str:
    """skipped.txt as a run writes it (path, tab, reason); ``public``: no server path in either."""
    if not public:
        return "".join(f"{p}\t{r}\n" for p, r in skipped)
    return "".join(f"{public_path(p, Path(dec.folder))}\t{scrub(r, dec.run, spec=dec.folder)}\n" for p, r in skipped)


def sort_folder(folder: Optional[str | Path], run: str | Path, out: str | Path, score: Optional[str] = None,
                threshold: Optional[float] = None, link: str = "hard", device: Optional[str] = None,
                listeners: Sequence = (), progress: Optional[Progress] = None,
                labels: Optional[dict] = None) -> SortResult:
    """``python -m ueo_core sort``: OUT checked first (a refusal comes before minutes of evaluation), then the
    decisions (new photos evaluated into ``OUT/.ueo-sort/evaluation``), then the files; OUT appears whole at the
    end. ``labels``: a person's labels (``decide``), e.g. ``--labels labels.csv``."""
    if link not in LINKS:
        raise DataError(f"--link must be one of {', '.join(LINKS)}, not {link!r}.")
    read_run(run)  # a bad run, folder or OUT is said at once, before anything is written
    src = resolve_folder(folder) if folder is not None else decide_folder(run)
    target = check_out(out, src)
    with _building(target, src) as part:
        dec = decide(run, folder, score, threshold, work=part / WORK, device=device, listeners=listeners,
                     progress=progress, labels=labels)
        res = _fill(part, dec, link, progress, public=False)
    res.out = target
    return res


def decide_folder(run: str | Path) -> Path:
    """The folder a run adapted on (a sort of FOLDER None sorts it), or a DataError when it is gone."""
    root = run_data_root(read_run(run))
    if root is None:
        raise DataError("The folder this run adapted on is no longer there: nothing to sort.")
    return root


def place(dec: Decisions, out: str | Path, link: str = "hard", progress: Optional[Progress] = None,
          public: bool = True) -> SortResult:
    """A finished sort's decisions written as folders into OUT (the app's "write the sorted folders")."""
    target = check_out(out, dec.folder)
    with _building(target, dec.folder) as part:
        res = _fill(part, dec, link, progress, public)
    res.out = target
    return res


def write_zip(dec: Decisions, path: Path, progress: Optional[Progress] = None) -> dict:
    """The sorted folders as a zip (``<class>/<file>``, manifest.csv and skipped.txt, no server path), written
    beside and renamed; ``{"bytes": n}``, or ``{"bytes": None, "why": ...}`` when the photos are too large."""
    placed = plan(dec)
    total = sum(os.path.getsize(p.decision.source) for p in placed if os.path.isfile(p.decision.source))
    if total > ZIP_MAX_BYTES:
        return {"bytes": None, "why": f"the photos take {total / 1024 ** 3:.1f} GB, more than a download may "
                                      f"({ZIP_MAX_BYTES / 1024 ** 3:.0f} GB)"}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    arrived, failed = [], []
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, strict_timestamps=False) as zf:  # (photos dated < 1980)
        for i, p in enumerate(placed):
            try:
                zf.write(p.decision.source, _zip_name(p.destination))
                arrived.append((p, "in the zip"))
            except OSError as err:
                failed.append((p.decision.source, f"could not be read ({err.strerror or err})"))
            if progress is not None:
                progress("zipping", i + 1, len(placed))
        zf.writestr(MANIFEST, manifest_csv(dec, arrived, public=True).encode("utf-8", "replace"),
                    zipfile.ZIP_DEFLATED)
        zf.writestr(SKIPPED, skipped_text(dec, list(dec.skipped) + failed, public=True)
                    .encode("utf-8", "replace"), zipfile.ZIP_DEFLATED)
    tmp.replace(path)
    return {"bytes": path.stat().st_size, "images": len(arrived), "failed": len(failed)}


def _zip_name(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------------ in words
def summary_lines(res: SortResult) -> list[str]:
    """What the CLI prints after a sort: every count is a count of the files written."""
    dec = res.decisions
    rows = counts(dec, res.placed)
    n = len(res.placed)
    unknown = rows[-1]["images"]
    width = max([len(r["folder"]) for r in rows] + [6])
    out = [f"sorted {n} image{'s' if n != 1 else ''} of {data_name(dec.spec)} with the run {dec.run} "
           f"({dec.method}): {n - unknown} known, {unknown} unknown, at {dec.label} >= {dec.threshold:.4f} "
           f"({dec.threshold_from}"
           + ("" if dec.own_data or dec.threshold_from == CHOSEN else "; not re-fitted on these photos") + ")",
           "decided by: " + ("the run's own predictions.csv (this folder is the data it adapted on)"
                             if dec.own_data else f"the run applied to these photos (its evaluation is kept in "
                                                  f"{res.out / WORK / 'evaluation'})"),
           f"  {'folder':<{width}}  images"]
    out += [f"  {r['folder']:<{width}}  {r['images']:>6}" for r in rows]
    hard, copies = res.how.get(LINKS["hard"], 0), res.how.get(LINKS["copy"], 0)
    out.append("files: " + how_words(res.how))
    if hard:
        out.append("  a hard link is the original file under a second name: view the sorted photos freely, but edit "
                   "a copy, since editing one in place edits the original")
    if hard and copies:
        out.append("  (copies where the file system refused a hard link: another disk)")
    out.append(f"skipped: {len(res.skipped)} file{'s' if len(res.skipped) != 1 else ''} (listed in "
               f"{res.out / SKIPPED})")
    out.append(f"manifest: {res.out / MANIFEST}")
    return out


def how_words(how: dict) -> str:
    """{"hard link": 3, "copy": 1} -> "3 hard links, 1 copy" (or "none")."""
    plural = {LINKS["copy"]: "copies"}
    return ", ".join(f"{n} {k if n == 1 else plural.get(k, k + 's')}" for k, n in how.items() if n) or "none"


def cmd_sort(args) -> int:
    """``python -m ueo_core sort FOLDER --run R --out OUT``."""
    from tqdm import tqdm

    from .cli import ProgressBar, Reported
    bar = ProgressBar()
    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage in ("reading the photos", "sorting"):
            b = bars.get(stage)
            if b is None:
                b = bars[stage] = tqdm(total=total, desc=stage, unit="img", leave=False, file=bar.file,
                                       dynamic_ncols=True)
            b.update(done - b.n)
            if done >= total:
                b.close()

    def listener(ev) -> None:  # the evaluation's progress and errors; its metric lines are the evaluation's
        if ev.kind in ("progress", "start", "error"):
            bar(ev)

    labels = None
    if getattr(args, "labels", None):  # a person's labels (Inspect's labels.csv): they decide where they exist
        from .grow import prior_of
        from .labels import read_labels_csv
        root = resolve_folder(args.folder) if args.folder is not None else decide_folder(args.run)
        labels = read_labels_csv(args.labels, root, classes=prior_of(args.run))
    try:
        res = sort_folder(args.folder, args.run, args.out, score=args.score, threshold=args.threshold,
                          link=args.link, device=args.device, listeners=(listener,), progress=progress,
                          labels=labels)
    except Exception as err:
        if bar.reported:
            raise Reported() from err
        raise
    finally:
        for b in bars.values():
            b.close()
    print("\n".join(summary_lines(res)))
    return 0


# ---------------------------------------------------------------------------------------- the app's jobs
class JobStatus:
    """``status.json`` of a sort job ({stage, done, total}), a few writes a second at most."""

    def __init__(self, path: Path, min_interval: float = 0.3):
        self.path, self.min_interval, self.last = Path(path), min_interval, 0.0

    def __call__(self, stage: str, done: int, total: int, force: bool = False) -> None:
        if force or done == total or time.time() - self.last >= self.min_interval:
            write_json_atomic(self.path, {"stage": stage, "done": done, "total": total, "at": time.time()})
            self.last = time.time()

    def listener(self, ev) -> None:
        if ev.kind == "start":
            self("applying the run", 0, 0, force=True)


def run_job(job_dir: str | Path, payload: dict) -> None:
    """A sort job of the app (``workers.SortWorker``). ``mode`` sort: the decisions on a folder (None: the run's
    own data) into ``decisions.json``, the zip and ``result.json``; ``mode`` place: a finished sort's decisions
    written as folders into ``payload["out"]``."""
    job_dir = Path(job_dir)
    status = JobStatus(job_dir / STATUS)
    status("starting", 0, 0, force=True)
    if payload.get("mode") == "place":
        dec = Decisions.from_dict(json.loads((Path(payload["from"]) / DECISIONS).read_text(**ANY_NAME)))
        res = place(dec, payload["out"], link=payload.get("link", "hard"), progress=status, public=True)
        write_json_atomic(job_dir / RESULT, {"mode": "place", "out": str(res.out), "images": len(res.placed),
                                             "how": dict(res.how), "skipped": len(res.skipped)})
    else:
        dec = decide(payload["run"], payload.get("folder"), payload.get("score"), payload.get("threshold"),
                     work=job_dir, listeners=(status.listener,), progress=status, only=payload.get("only"),
                     labels=payload.get("labels"))
        tmp = job_dir / f".{DECISIONS}.tmp"
        tmp.write_text(json.dumps(dec.to_dict()), **ANY_NAME)
        tmp.replace(job_dir / DECISIONS)
        placed = plan(dec)
        zipped = write_zip(dec, job_dir / ZIP, progress=status)
        write_json_atomic(job_dir / RESULT, {**overview(dec, placed), "zip": zipped})
    status("done", 1, 1, force=True)


def overview(dec: Decisions, placed: Sequence[Placed]) -> dict:
    """What the page says of a finished sort: counts per folder, the score and threshold and where it comes
    from, the data by name (never a path)."""
    people = sum(p.decision.by == "person" for p in placed)
    return {"mode": "sort", "images": len(placed), "counts": counts(dec, placed), "skipped": len(dec.skipped),
            "score": dec.score, "label": dec.label, "threshold": dec.threshold,
            "threshold_from": dec.threshold_from, "own_data": dec.own_data, "data": data_name(dec.spec),
            "run": Path(dec.run).name, "method": dec.method, **({"by_person": people} if people else {})}


def read_decisions(job_dir: str | Path) -> Optional[Decisions]:
    try:
        return Decisions.from_dict(json.loads((Path(job_dir) / DECISIONS).read_text(**ANY_NAME)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def groups(job_dir: str | Path) -> list[dict]:
    """The sorted images of a finished sort job, folder by folder (each class, then unknown): for the page's
    galleries, ``paths`` (read on the server) and ``captions`` (the photo's path inside the folder sorted, as
    the user knows it, and its score)."""
    dec = read_decisions(job_dir)
    if dec is None:
        return []
    placed = plan(dec)
    out = [dict(r, paths=[], captions=[]) for r in counts(dec, placed)]
    by_folder = {g["folder"]: g for g in out}
    for p in sorted(placed, key=lambda q: -q.decision.value):  # most sure first, as Inspect's galleries
        g = by_folder[p.destination.split("/", 1)[0]]
        g["paths"].append(p.decision.source)
        g["captions"].append(f"{p.decision.rel} · {p.decision.value:.3g}")
    return out
