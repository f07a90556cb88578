"""Session glue for the Streamlit pages: the per-browser workspace, the chosen data and model, its runs (jobs on
Ray: ``ueo_core.jobs``; this process holds no trainer, model copy or event queue for them).

No maths here: the engine (``ueo_core``) does the work; this module remembers what the user chose.

Workspace: each browser session gets an unguessable token, kept in ``st.session_state`` and in the URL (``?ws=``),
so a refresh finds the same folder (uploads, runs) while other sessions cannot list or guess it.
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import streamlit as st

from ueo_core.config import RunConfig
from ueo_core.data import DataError, ImageSet, load_data
from ueo_core.models import BUILTIN_MODEL, BUILTIN_TAG, LoadedModel, load_model
from ueo_core.roots import Root, check_path as _check_path, extra_roots
from ueo_core.runs import new_run_id
from ueo_core import jobs

ROOT = Path(__file__).resolve().parents[1]
WORKSPACES = jobs.WORKSPACES
SHARED_DATA = Path(os.environ.get("UEO_SHARED_DATA", ROOT.parent / "shared" / "data"))
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z_]{1,20}-[0-9a-f]{6}$")  # as start_run makes them

DEFAULT_DATA = {"source": "shapes", "spec": "shapes:sketch", "label": "Shapes · sketch", "prior": None,
                "preset": None, "setting": "ODA"}
DEFAULT_MODEL = {"name": BUILTIN_MODEL, "pretrained": BUILTIN_TAG, "checkpoint": None,
                 "label": "Built-in small CLIP (trained on Shapes, offline)"}


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
    import json
    try:
        d = json.loads((ws / "session.json").read_text())
        return {k: v for k, v in d.items() if k in REMEMBERED} if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def remember() -> None:
    """Save this session's choices in its workspace (written, then renamed), so that a refresh — a new browser
    session with the same ``?ws=`` — restores them. Every path in them is checked again when used."""
    from ueo_core.runs import write_json_atomic
    write_json_atomic(workspace() / "session.json",
                      {k: st.session_state[k] for k in REMEMBERED if st.session_state.get(k) is not None})


def runs_dir() -> Path:
    return workspace() / "runs"


# ------------------------------------------------------------------------------------- what may be read
def allowed_roots() -> list[Root]:
    """The folders this session may read (``ueo_core.roots``): its workspace, the Shapes world, the shared data,
    and the operator's ``UEO_DATA_ROOTS``."""
    return ([Root("your uploads", workspace(), show_path=False), Root("the built-in Shapes world", shapes_root()),
             Root("the shared data", SHARED_DATA)] + extra_roots())


def shapes_root() -> Path:
    from ueo_core.shapes import default_root
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


# ------------------------------------------------------------------------------------------------ choices
def data_choice() -> dict:
    return st.session_state.setdefault("data", dict(DEFAULT_DATA))


def set_data_choice(**kw) -> None:
    st.session_state["data"] = {**DEFAULT_DATA, **kw}
    remember()


def model_choice() -> dict:
    return st.session_state.setdefault("model", dict(DEFAULT_MODEL))


def set_model_choice(**kw) -> None:
    st.session_state["model"] = {**DEFAULT_MODEL, **kw}
    remember()


@st.cache_resource(show_spinner=False, max_entries=16)
def _image_set(spec: str, prior: Optional[tuple], preset: Optional[str], setting: str, mtime: float) -> ImageSet:
    return load_data(spec, prior=list(prior) if prior else None, preset=preset, setting=setting)


def image_set(choice: Optional[dict] = None) -> ImageSet:
    """The chosen data as an ImageSet (cached; a changed folder is read again). Raises DataError."""
    c = choice or data_choice()
    spec = c["spec"]
    mtime = 0.0
    if not spec.startswith("shapes:"):
        spec = str(check_path(spec))  # every folder is checked against the roots, whatever set it
        if os.path.isdir(spec):
            mtime = os.stat(spec).st_mtime
    return _image_set(spec, tuple(c["prior"]) if c.get("prior") else None, c.get("preset"),
                      c.get("setting", "ODA"), mtime)


@st.cache_resource(show_spinner=False, max_entries=4)
def _model(name: str, pretrained: Optional[str], checkpoint: Optional[str], device: Optional[str],
           _progress=None) -> LoadedModel:
    return load_model(name, pretrained=pretrained, checkpoint=checkpoint, device=device, progress=_progress)


def loaded_model(choice: Optional[dict] = None, progress=None) -> LoadedModel:
    """The chosen model, loaded once per server (read-only: runs load their own copy). Raises ModelLoadError.
    ``progress(bytes_done, bytes_total)`` follows a first download of zoo weights."""
    c = choice or model_choice()
    ckpt = str(check_path(c["checkpoint"], what="checkpoint file")) if c.get("checkpoint") else None
    return _model(c["name"], c.get("pretrained"), ckpt, c.get("device"), _progress=progress)


# ---------------------------------------------------------------------------------------------- runs
def start_run(cfg: RunConfig, ims: Optional[ImageSet] = None) -> str:
    """Queue ``cfg`` as a job on Ray (``ueo_core.jobs``) in this workspace. Every path in it is checked against the
    roots first (``PathRefused``), whichever page set it. ``ims`` (the page's image set) is not sent: the worker
    reads the same data from the config."""
    if cfg.checkpoint:
        cfg = cfg.replace(checkpoint=str(check_path(cfg.checkpoint, what="checkpoint file")))
    if cfg.source:
        cfg = cfg.replace(source=[s if s.startswith("shapes:") else str(check_path(s, what="source folder"))
                                  for s in cfg.source])
    if not cfg.data.startswith("shapes:"):
        cfg = cfg.replace(data=str(check_path(cfg.data)))
    run_id = new_run_id(cfg.method)
    jobs.submit(cfg.replace(run_dir=str(runs_dir() / run_id)))
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


def job(run_id: Optional[str]) -> jobs.JobState:
    """Where a run of this workspace stands (queued with its place, training, ended, lost)."""
    p = run_path(run_id)
    if p is None:
        return jobs.JobState("none", "")
    try:
        s = jobs.job_state(p, WORKSPACES)
    except jobs.ClusterError as err:  # Ray is down or unreachable: say so where the run's state would be
        return jobs.JobState("unreachable", str(err))
    if s.kind == "running":  # its metrics are written: the result is final, the worker is only closing the run
        m = jobs.read(p, "metrics.json")
        if m:
            return jobs.JobState("ended", "cancelled" if m.get("stopped_at_epoch") is not None else "done")
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
    if s.kind == "ended" and s.words == "error":
        err = jobs.read(p, "error.json") or jobs.read(p, jobs.ENDED) or {}
        return redact(err.get("message") or "The run failed.")
    return None


def stop_run(run_id: Optional[str], wait_s: float = 30.0) -> None:
    """Stop a run of this workspace (queued: leaves the queue; training: after its current step) and wait up to
    ``wait_s`` for it to end, so that the page redrawn next shows it stopped."""
    p = run_path(run_id)
    if p is None:
        return
    jobs.stop(p)
    jobs.wait(p, timeout=wait_s, poll=0.2)


def resume_run(run_id: Optional[str]) -> None:
    """Queue a lost run again from its last checkpoint."""
    p = run_path(run_id)
    if p is not None and jobs.job_state(p, WORKSPACES).kind == "lost":
        jobs.resume(p)


def source_options(choice: dict) -> dict[str, str]:
    """Labelled source folders that fit the chosen target (label -> data spec): the other Shapes or PACS domains."""
    spec = choice["spec"]
    if spec.startswith("shapes:"):
        from ueo_core.shapes import DOMAINS
        target = spec.split(":", 1)[1]
        order = ["flat"] + [d for d in DOMAINS if d != "flat"]
        return {f"Shapes · {d}": f"shapes:{d}" for d in order if d != target}
    pacs = shared_pacs()
    if pacs and Path(spec).resolve().parent == pacs.resolve():
        return {f"PACS · {d.name}": str(d) for d in sorted(pacs.iterdir())
                if d.is_dir() and d.name != Path(spec).name}
    return {}


def shared_pacs() -> Optional[Path]:
    p = SHARED_DATA / "PACS"
    return p if p.is_dir() else None


def shared_imagenette() -> Optional[Path]:
    p = SHARED_DATA / "imagenette-ood"
    return p if p.is_dir() else None


def friendly(err: Exception) -> str:
    """A plain message for any error (tracebacks never reach the page), without the workspace token."""
    from ueo_core.models import ModelLoadError
    if isinstance(err, ModelLoadError):
        return redact(err.for_audience("app"))
    if isinstance(err, (DataError, ValueError, FileNotFoundError)):
        return redact(str(err))
    return redact(f"{err.__class__.__name__}: {err}")


# -------------------------------------------------------------------------------------------- lessons
LESSON_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-lesson-[0-9a-f]{6}$")


def start_lesson(base: RunConfig, ims: ImageSet, methods: Optional[list[str]] = None) -> str:
    """Queue the lesson's runs (each method on ``ims``' data; default every one) as jobs in this workspace."""
    from ueo_core.lesson import submit_lesson
    if base.checkpoint:
        base = base.replace(checkpoint=str(check_path(base.checkpoint, what="checkpoint file")))
    if not base.data.startswith("shapes:"):
        base = base.replace(data=str(check_path(base.data)))
    manifest = submit_lesson(base, ims.has_truth, runs_dir(), jobs.submit, methods=methods)
    st.session_state["lesson"] = manifest["id"]
    st.query_params["lesson"] = manifest["id"]
    remember()
    return manifest["id"]


def active_lesson() -> Optional[dict]:
    """This session's latest lesson manifest (from the session or ``?lesson=``, in its own workspace only)."""
    from ueo_core.lesson import read_lesson
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
    from ueo_core.lesson import PLAIN_NAMES, lesson_state
    states = {m: job(rid) for m, rid in manifest.get("runs", {}).items()}
    out = lesson_state(manifest, {m: (s.kind, s.words) for m, s in states.items()})
    out["error"] = next((f"{PLAIN_NAMES[m]}: {run_error(manifest['runs'][m])}" for m in out["failed"]), None)
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
        if (d / jobs.JOB).exists() and not (d / jobs.ENDED).exists() and RUN_ID.match(d.name) \
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
        jobs.stop(p)
    t0 = time.time()
    for p in runs:  # one 30 s budget for them all
        jobs.wait(p, timeout=max(0.0, 30 - (time.time() - t0)), poll=0.2)


def model_fit_warning(ims: ImageSet) -> Optional[str]:
    """The built-in model pointed at images that are not Shapes: a warning to show before any run."""
    from ueo_core.analysis import builtin_model_warning
    m = model_choice()
    return builtin_model_warning(m["name"], m.get("pretrained"), data_choice()["spec"], ims.classes)


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
    from ueo_core import explore
    landed = explore.read(run_dir)
    if "umap" in landed:
        return Exploration("done", "", landed)
    out = explore.folder(run_dir)
    try:
        s = jobs.job_state(out, WORKSPACES)
        if s.kind == "none" or retry and s.kind in ("ended", "lost"):
            jobs.submit_exploration(run_dir)
            s = jobs.job_state(out, WORKSPACES)
    except jobs.ClusterError as err:
        return Exploration("failed", redact(str(err)), landed)
    if s.kind == "queued":
        return Exploration("queued", s.words, landed)
    if s.kind == "running":
        return Exploration("working", s.words, landed)
    if s.kind == "lost":
        return Exploration("failed", "The process computing them stopped (for example, out of memory, or it was "
                                     "killed).", landed)
    ended = jobs.read(out, jobs.ENDED) or {}
    landed = explore.read(run_dir)  # it may have ended between the two reads
    if "umap" in landed:
        return Exploration("done", "", landed)
    return Exploration("failed", redact(ended.get("message") or "It ended without its maps."), landed)


def run_label(rid: str) -> str:
    """A run's method and its own data in words (not the current data choice): "ueo on Shapes · sketch"."""
    cfg = run_config(rid)
    data = str(cfg.get("data", ""))
    where = (f"Shapes · {data.split(':', 1)[1]}" if data.startswith("shapes:")
             else redact(Path(data).name if data else "?"))
    return f"{cfg.get('method', '?')} on {where}"


def run_config(rid: str) -> dict:
    """A run's settings: its config.json once its worker has started, else those it was queued with."""
    from ueo_core.runs import RunFolder
    d = runs_dir() / rid
    return RunFolder(d).config or (jobs.read(d, jobs.JOB) or {}).get("config") or {}


# ------------------------------------------------------------------------------------------- a teacher's link
LESSON_SETTING_KEYS = {"epochs": "lesson_epochs", "batch": "lesson_batch", "lr": "lesson_lr", "seed": "lesson_seed",
                       "protocol": "lesson_protocol"}


def lesson_link(base_url: str, methods: list[str]) -> str:
    """The address of the Lesson page with this session's lesson choices (``studio.share``): no workspace token.
    Raises ShareError when the data or model lie in this workspace."""
    from studio import share
    settings = {k: st.session_state[w] for k, w in LESSON_SETTING_KEYS.items() if w in st.session_state}
    value = share.encode(data_choice(), model_choice(), methods, settings, secret=st.session_state["ws"])
    return f"{base_url.split('?')[0]}?{share.PARAM}={value}"


def open_lesson_link(value: str) -> dict:
    """A student opened a teacher's link: its choices become this session's (in this session's own workspace),
    the parameter leaves the address. Paths are checked against this session's roots. Raises ShareError or
    DataError with a message."""
    from studio import share
    choice = share.decode(value)
    d = choice["data"]
    if not str(d["spec"]).startswith("shapes:"):
        check_path(d["spec"])
    if choice["model"].get("checkpoint"):
        check_path(choice["model"]["checkpoint"], what="checkpoint file")
    set_data_choice(**{k: v for k, v in d.items() if v is not None})
    set_model_choice(**{k: v for k, v in choice["model"].items() if v is not None})
    for k, v in choice["settings"].items():
        st.session_state[LESSON_SETTING_KEYS[k]] = v
    if choice["methods"]:
        st.session_state["lesson_methods"] = choice["methods"]
    st.session_state["lesson_from_link"] = True
    del st.query_params[share.PARAM]
    return choice
