"""This session's runs, lessons, explorations and sorts: jobs on Ray (``ueo_core.jobs``), looked up in its own workspace
only. This process holds no trainer, model copy or event queue for them: it submits, and reads their folders."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import streamlit as st

from ueo_core import explore, sort
from ueo_core import jobs as engine
from ueo_core.cluster import ClusterError
from ueo_core.config import RunConfig
from ueo_core.data import DataError, ImageSet
from ueo_core.lesson import lesson_configs, lesson_state, plain_name, read_lesson, submit_lesson
from ueo_core.privacy import data_name
from ueo_core.runs import LESSON_ID, RUN_ID, RunFolder, new_run_id

from . import workspace
from .workspace import check_path, redact, remember, run_path, runs_dir


def start_run(cfg: RunConfig, ims: Optional[ImageSet] = None, link: Optional[dict] = None) -> str:
    """Queue ``cfg`` as a job on Ray (``ueo_core.jobs``) in this workspace. Every path in it is checked against the
    roots first (``PathRefused``), whichever page set it. ``ims`` (the page's image set) is not sent: the worker
    reads the same data from the config. ``link``: a grown prior's record (``ueo_core.grow``), written into the
    run's folder before it is queued."""
    if cfg.checkpoint:
        cfg = cfg.replace(checkpoint=str(check_path(cfg.checkpoint, what="checkpoint file")))
    if cfg.source:
        cfg = cfg.replace(source=[s if s.startswith("shapes:") else str(check_path(s, what="source folder"))
                                  for s in cfg.source])
    if not cfg.data.startswith("shapes:"):
        cfg = cfg.replace(data=str(check_path(cfg.data)))
    run_id = new_run_id(cfg.method)
    if link is not None:
        from ueo_core.grow import write_link
        write_link(runs_dir() / run_id, link)
    engine.submit(cfg.replace(run_dir=str(runs_dir() / run_id)))
    st.session_state["active_run"] = run_id
    st.query_params["run"] = run_id
    remember()
    return run_id


def active_run_id() -> Optional[str]:
    """This session's current run: validated as a run id and looked up in its own workspace only (a ``?run=``
    with a path, ``..`` or another workspace's id is ignored)."""
    rid = st.session_state.get("active_run") or st.query_params.get("run")
    if run_path(rid) is not None:
        st.session_state["active_run"] = rid
        return rid
    return None


def job(run_id: Optional[str]) -> engine.JobState:
    """Where a run of this workspace stands (queued with its place, training, ended, lost)."""
    p = run_path(run_id)
    if p is None:
        return engine.no_job()
    try:
        s = engine.job_state(p, workspace.WORKSPACES)
    except ClusterError as err:  # Ray is down or unreachable: say so where the run's state would be
        return engine.JobState("unreachable", str(err))
    if s.kind == "running":  # its metrics are written: the result is final, the worker is only closing the run
        m = engine.read(p, "metrics.json")
        if m:
            return engine.ended_state("cancelled" if m.get("stopped_at_epoch") is not None else "done")
    return s


def is_running(run_id: Optional[str]) -> bool:
    """Queued or training (a lesson id: any of its runs)."""
    if run_id and LESSON_ID.match(str(run_id)):
        m = active_lesson()
        return bool(m and m["id"] == run_id and lesson_status(m)["live"])
    return job(run_id).kind in ("queued", "running")


def run_error(run_id: Optional[str]) -> Optional[str]:
    """The run's failure in plain words (its error.json, or why its worker is gone), else None."""
    p = run_path(run_id)
    if p is None:
        return None
    s = job(run_id)
    if s.kind in ("lost", "unreachable"):
        return s.words
    if s.kind == "ended" and s.outcome == "error":
        err = engine.read(p, "error.json") or engine.read(p, engine.ENDED) or {}
        return redact(err.get("message") or "The run failed.")
    return None


def stop_run(run_id: Optional[str], wait_s: float = 30.0) -> None:
    """Stop a run of this workspace (queued: leaves the queue; training: after its current step) and wait up to
    ``wait_s`` for it to end, so that the page redrawn next shows it stopped."""
    p = run_path(run_id)
    if p is None:
        return
    engine.stop(p)
    engine.wait(p, timeout=wait_s, poll=0.2)


def resume_run(run_id: Optional[str]) -> None:
    """Queue a lost run again from its last checkpoint."""
    p = run_path(run_id)
    if p is not None and engine.job_state(p, workspace.WORKSPACES).kind == "lost":
        engine.resume(p)


def start_lesson(base: RunConfig, ims: ImageSet, methods: Optional[list[str]] = None) -> str:
    """Queue the lesson's runs (each method on ``ims``' data; default every one) as jobs in this workspace."""
    if base.checkpoint:
        base = base.replace(checkpoint=str(check_path(base.checkpoint, what="checkpoint file")))
    if not base.data.startswith("shapes:"):
        base = base.replace(data=str(check_path(base.data)))
    manifest = submit_lesson(base, ims.has_truth, runs_dir(), engine.submit, methods=methods)
    st.session_state["lesson"] = manifest["id"]
    st.query_params["lesson"] = manifest["id"]
    remember()
    return manifest["id"]


def lesson_estimate(base: RunConfig, ims: ImageSet, methods: list[str]) -> Optional[float]:
    """Seconds the lesson would take here, from this server's finished runs of the same methods, data, model and
    settings (``ueo_core.jobs.estimate_runs``); None when some method has none yet."""
    if not base.data.startswith("shapes:"):
        base = base.replace(data=str(check_path(base.data)))
    configs = lesson_configs(base, ims.has_truth, methods)
    return engine.estimate_runs([c.to_dict() for c in configs], workspace.WORKSPACES) if configs else None


def active_lesson() -> Optional[dict]:
    """This session's latest lesson manifest (from the session or ``?lesson=``, in its own workspace only)."""
    lid = st.session_state.get("lesson") or st.query_params.get("lesson")
    if not lid or not LESSON_ID.match(str(lid)):
        return None
    manifest = read_lesson(runs_dir() / "lessons" / f"{lid}.json")
    if manifest:
        st.session_state["lesson"] = lid
    return manifest


def lesson_status(manifest: dict) -> dict:
    """The lesson's state from its runs' jobs (``ueo_core.lesson.lesson_state``), with the first error in words
    and the place in line of its first queued run."""
    states = {m: job(rid) for m, rid in manifest.get("runs", {}).items()}
    out = lesson_state(manifest, states)
    out["error"] = next((f"{plain_name(m)}: {run_error(manifest['runs'][m])}" for m in out["failed"]), None)
    queued = [s for s in states.values() if s.kind == "queued"]
    out["queue"] = min(queued, key=lambda s: s.position).words if queued and not any(
        s.kind == "running" for s in states.values()) else None
    return out


def live_in_workspace() -> list[str]:
    """Ids of the runs and lessons of this workspace that are queued or training (whatever the session
    remembers): read from the run folders, asking Ray only about runs that have not ended."""
    out = []
    root = runs_dir()
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        if (d / engine.JOB).exists() and not (d / engine.ENDED).exists() and RUN_ID.match(d.name) \
                and not LESSON_ID.match(d.name) and job(d.name).kind in ("queued", "running"):
            out.append(d.name)
    m = active_lesson()
    if m and any(r in out for r in m.get("runs", {}).values()):
        out.append(m["id"])
    return out


def anything_running() -> bool:
    """A run or a lesson of this workspace is queued or training: one at a time per browser session."""
    return bool(live_in_workspace())


def stop_everything() -> None:
    """Stop every queued or training run (and so lesson) of this workspace."""
    runs = [runs_dir() / r for r in live_in_workspace() if not LESSON_ID.match(r)]
    for p in runs:
        engine.stop(p)
    t0 = time.time()
    for p in runs:  # one 30 s budget for them all
        engine.wait(p, timeout=max(0.0, 30 - (time.time() - t0)), poll=0.2)


@dataclass
class Exploration:
    """What the Explore page shows of a run's exploration job (ueo_core.explore): ``kind`` is done, working,
    queued or failed; ``words`` the queue place or the failure in words; ``landed`` what the job has written."""
    kind: str
    words: str
    landed: dict


def exploration(run_dir: str, retry: bool = False) -> Exploration:
    """A run's exploration, submitted to Ray on the first visit (and again on ``retry`` after a failure); the
    features and maps are cached on disk, so a second one is quick. The web server only reads its files."""
    landed = explore.read(run_dir)
    if "umap" in landed:
        return Exploration("done", "", landed)
    out = explore.folder(run_dir)
    try:
        s = engine.job_state(out, workspace.WORKSPACES)
        if s.kind == "none" or retry and s.kind in ("ended", "lost"):
            engine.submit_exploration(run_dir)
            s = engine.job_state(out, workspace.WORKSPACES)
    except ClusterError as err:
        return Exploration("failed", redact(str(err)), landed)
    if s.kind == "queued":
        return Exploration("queued", s.words, landed)
    if s.kind == "running":
        return Exploration("working", s.words, landed)
    if s.kind == "lost":
        return Exploration("failed", "The process computing them stopped (for example, out of memory, or it was "
                                     "killed).", landed)
    ended = engine.read(out, engine.ENDED) or {}
    landed = explore.read(run_dir)  # it may have ended between the two reads
    if "umap" in landed:
        return Exploration("done", "", landed)
    return Exploration("failed", redact(ended.get("message") or "It ended without its maps."), landed)


def run_label(rid: str) -> str:
    """A run's method and its own data in words (not the current data choice): "ueo on Shapes · sketch"."""
    cfg = run_config(rid)
    return f"{cfg.get('method', '?')} on {redact(data_name(cfg.get('data')))}"


def run_config(rid: str) -> dict:
    """A run's settings: its config.json once its worker has started, else those it was queued with."""
    d = runs_dir() / rid
    return RunFolder(d).config or (engine.read(d, engine.JOB) or {}).get("config") or {}


def search(run_id: str, kind: str, what, **options) -> list:
    """Search a finished run of this workspace (``ueo_core.jobs.search``: its warm worker on Ray, never a model in
    this process): ``kind`` "text" with a query, or "like" with an image's index. A refusal or an unreachable Ray
    raises ValueError in words, with no server path in them."""
    p = run_path(run_id)
    if p is None:
        raise ValueError("No such run in this workspace.")
    try:
        return engine.search(p, kind, what, **options)
    except (ValueError, ClusterError) as err:  # (ClusterError is a ValueError too)
        raise ValueError(redact(str(err))) from None


# ------------------------------------------------------------------------------------ sorts (ueo_core.sort)
@dataclass
class Sorting:
    """What a page shows of a sort job: ``kind`` is done, working, queued, failed or none; ``words`` the queue
    place or the failure; ``status`` its progress ({stage, done, total}); ``result`` its result.json once done."""
    kind: str
    words: str
    status: dict
    result: dict


def sorts_dir() -> Path:
    return workspace.workspace() / engine.SORTS


def sort_path(sort_id: Optional[str]) -> Optional[Path]:
    """The folder of a sort job of *this* workspace, or None for anything that is not a job id made here."""
    if not sort_id or not RUN_ID.match(str(sort_id)):
        return None
    p = sorts_dir() / sort_id
    return p if p.is_dir() else None


def sort_threshold(run_id: str, score: str) -> tuple[float, str]:
    """The run's own threshold on ``score`` and where it comes from (``analysis.predictions.run_threshold``)."""
    return sort.run_threshold(run_path(run_id), score)


def start_sort(run_id: str, folder: Optional[str] = None, score: str = "msp",
               threshold: Optional[float] = None, only: Optional[list[str]] = None,
               labels: Optional[dict] = None) -> str:
    """Queue the sort of ``folder`` (None: the run's own images; a path is checked against the roots first) by a
    finished run of this workspace, at ``score`` and ``threshold`` (None: the run's own) as a job on Ray; ``only``
    keeps these of the run's own images (Explore's selection); ``labels`` (``{image: label}``, a person's) decide
    their images' folders."""
    run = run_path(run_id)
    if run is None or not (run / "metrics.json").exists():
        raise DataError("Choose a finished run first.")
    if folder is not None and not str(folder).startswith("shapes:"):
        folder = str(check_path(folder))
        if not Path(folder).is_dir():
            raise DataError(f"Folder not found: {redact(folder)}")
    sid = new_run_id("sort")
    engine.submit_sort(sorts_dir() / sid, {"mode": "sort", "run": str(run), "folder": folder, "score": score,
                                           "threshold": threshold, "only": list(only) if only is not None else None,
                                           "labels": dict(labels) if labels else None})
    return sid


def latest_sort() -> Optional[str]:
    """This workspace's newest sort of photos (not a writing of folders), e.g. after a refresh."""
    root = sorts_dir()
    ids = sorted((p.name for p in root.iterdir() if RUN_ID.match(p.name) and "-sort-" in p.name),
                 reverse=True) if root.is_dir() else []
    return ids[0] if ids else None


def sorting(sort_id: Optional[str]) -> Sorting:
    """Where a sort job stands, from its folder (and Ray, for whether its worker is there)."""
    p = sort_path(sort_id)
    if p is None:
        return Sorting("none", "", {}, {})
    status = engine.read(p, sort.STATUS) or {}
    try:
        s = engine.job_state(p, workspace.WORKSPACES)
    except ClusterError as err:
        return Sorting("failed", redact(str(err)), status, {})
    result = engine.read(p, sort.RESULT) or {}
    if s.kind == "ended" and s.outcome == "done" and result:
        return Sorting("done", "", status, result)
    if s.kind == "queued":
        return Sorting("queued", s.words, status, {})
    if s.kind == "running":
        return Sorting("working", s.words, status, {})
    if s.kind == "lost":
        return Sorting("failed", "The process sorting them stopped (for example, out of memory, or it was killed).",
                       status, {})
    ended = engine.read(p, engine.ENDED) or {}
    return Sorting("failed", redact(ended.get("message") or "It ended without a result."), status, result)


def sort_groups(sort_id: Optional[str]) -> list[dict]:
    """A finished sort's images, folder by folder, for the galleries (``ueo_core.sort.groups``)."""
    p = sort_path(sort_id)
    return sort.groups(p) if p is not None else []


def sort_zip(sort_id: Optional[str]):
    """The sorted folders' zip (made by the job: no server path, no token inside), as a callable for a download
    button. The folder is looked up now, in the page's run: the button calls it later, outside the page's session
    (no workspace there), so it must not look anything up itself."""
    p = sort_path(sort_id)
    zipped = p / sort.ZIP if p is not None else None
    return lambda: zipped.read_bytes() if zipped is not None and zipped.is_file() else b""


def writable_path(typed: str) -> Path:
    """A folder this session may write sorted folders into: inside a folder the operator opened with
    ``UEO_DATA_ROOTS`` (for one person on their own machine, e.g. their home), never inside the server's
    workspaces, the Shapes world or the shared data (a class's common data)."""
    from ueo_core.roots import ENV, PathRefused, describe, extra_roots
    from ueo_core.roots import check_path as check

    from .catalogue import SHARED_DATA
    roots = extra_roots()
    if not roots:
        raise PathRefused(f"Writing sorted folders needs a folder the server's operator opened with {ENV} (on your "
                          f"own machine: {ENV}=$HOME bash scripts/app.sh). The zip download works everywhere.")
    try:
        return check(typed, roots, denied=[workspace.WORKSPACES, workspace.shapes_root(), SHARED_DATA],
                     what="folder to write into")
    except PathRefused as err:
        if "Not allowed" not in str(err):
            raise
        raise PathRefused(f"Not allowed: sorted folders are written only inside {describe(roots)}, never inside "
                          "the server's workspaces, the Shapes world or the shared data.") from None


def place_sorted(sort_id: Optional[str], typed: str) -> str:
    """Queue the writing of a finished sort's folders into the typed folder (checked here first: a refusal is said
    at once) as a job on Ray; returns its job id."""
    src = sort_path(sort_id)
    dec = sort.read_decisions(src) if src is not None else None
    if dec is None:
        raise DataError("This sort has no result to write yet.")
    dest = writable_path(typed)
    sort.check_out(dest, dec.folder)
    pid = new_run_id("place")
    engine.submit_sort(sorts_dir() / pid, {"mode": "place", "from": str(src), "out": str(dest), "link": "hard"})
    return pid
