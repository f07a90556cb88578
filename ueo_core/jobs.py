"""Runs as jobs on Ray: the web server submits, a Ray worker trains, the run folder is the contract between them.

Why Ray: it is the field's engine for scheduling (GPU) jobs. ``ray start --head`` runs it on one machine with no
setup, and the same code joins a cluster by an address (``UEO_RAY_ADDRESS`` or ``RAY_ADDRESS``).

How a run goes:
- ``submit(cfg)`` writes ``job.json`` (submitted at, slots) into the run folder and creates a **detached** Ray actor
  named after the run. The actor asks for one slot: a ``ueo_slot`` resource on CPU clusters (the head is started
  with ``UEO_SLOTS`` of them), one GPU where the cluster has GPUs. Ray keeps the actors that find no free slot
  pending and creates them in the order they were submitted: first come, first served, across workspaces.
- The actor starts the run in its own process (the same ``Trainer`` as the CLI) and writes ``worker.json`` (pid,
  node, start time). It writes ``steps.jsonl`` / ``epochs.jsonl`` / ``metrics.json`` / ``error.json`` as any run
  does, ``ended.json`` when the run ends, and then ends itself.
- Stop: ``stop(run_dir)`` writes ``stop.request``; a training run stops after its current step (the last epoch's
  checkpoint is kept), a queued one is removed from the queue.
- Detached actors belong to the Ray cluster, not to the process that made them: a restart of the web server loses
  nothing. A worker killed (out of memory, kill -9) leaves ``worker.json`` without ``ended.json`` and no actor:
  ``job_state`` says so in plain words, and ``resume(run_dir)`` continues it from its last checkpoint.

The web server holds no trainer, model or event queue for a run: it reads the run folder.
A cluster needs the project and the workspaces at the same path on every node (a shared file system), because the
workers write run folders that the web server reads. See the README, "A class on one server".
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .cluster import NAMESPACE, SLOT, cluster_slots, connect, head_started
from .cluster import worker_env as _worker_env
from .config import RunConfig
from .workers import ENDED, EXPLORE, JOB, RUN, STOP, WORKER, ExploreWorker, RunWorker
from .workers import SORTS, SortWorker
from .runs import write_json_atomic

# the server's workspaces (each with its runs/): where the app writes and the jobs' folders are
WORKSPACES = Path(os.environ.get("UEO_WORKSPACES", Path.home() / ".cache" / "ueo_studio" / "workspaces"))



# --------------------------------------------------------------------------------------------------- the worker
def job_kind(job_dir: str | Path, job: Optional[dict] = None) -> str:
    """What a job folder holds: RUN, EXPLORE or SORTS, as its ``job.json`` records it (``job``: that file, already
    read). A run queued before runs recorded their kind (no ``kind`` in its job.json) is told by where its folder
    lies, here and nowhere else: ``<workspace>/sorts/<id>`` a sort, ``<run>/explore`` an exploration, else a run."""
    p = Path(job_dir)
    kind = (job if job is not None else read(p, JOB) or {}).get("kind")
    if kind in (RUN, EXPLORE, SORTS):
        return kind
    return SORTS if p.parent.name == SORTS else EXPLORE if p.name == EXPLORE else RUN


def _actor_name(job_dir: str | Path, kind: Optional[str] = None) -> str:
    """A run's actor is ``run:<run id>``; its exploration's (``<run>/explore``) is ``explore:<run id>``; a sort's
    (``<workspace>/sorts/<id>``) is ``sort:<id>``. ``kind``: the job's (default: its job.json's)."""
    p = Path(job_dir)
    kind = kind or job_kind(p)
    if kind == SORTS:
        return f"sort:{p.name}"
    return f"{EXPLORE}:{p.parent.name}" if kind == EXPLORE else "run:" + p.name


def _remote(cls):
    """The Ray actor class of ``cls`` (built on first use, so that importing this module does not import Ray)."""
    if cls not in _REMOTE:
        import ray
        _REMOTE[cls] = ray.remote(max_restarts=0, max_concurrency=4, num_cpus=0)(cls)
    return _REMOTE[cls]


_REMOTE: dict = {}


def _threads(threads: Optional[int], gpus: float) -> int:
    """CPU: the cores left over by the web server, shared by the slots (or ``UEO_THREADS_PER_RUN``)."""
    if threads is not None:
        return threads
    return int(os.environ.get("UEO_THREADS_PER_RUN", "0") or 0) or (
        0 if gpus else max(1, ((os.cpu_count() or 2) - 1) // max(1, cluster_slots())))


def _drop_ended_actor(job_dir: Path) -> None:
    """An ended job's actor may linger a moment after ``ended.json`` (it is exiting); its name is needed again."""
    import ray
    old = _actor(job_dir)
    if old is None or not (job_dir / ENDED).exists():
        return
    ray.kill(old, no_restart=True)
    t0 = time.time()
    while _actor(job_dir) is not None and time.time() - t0 < 10:
        time.sleep(0.05)


def _submit(worker, job_dir: Path, payload: dict, job: dict, threads: Optional[int]) -> Path:
    import ray
    connect()
    job_dir.mkdir(parents=True, exist_ok=True)
    _drop_ended_actor(job_dir)
    for name in (STOP, ENDED, WORKER):
        (job_dir / name).unlink(missing_ok=True)
    gpus = ray.cluster_resources().get("GPU", 0)
    threads = _threads(threads, gpus)
    write_json_atomic(job_dir / JOB, {**job, "submitted": time.time(), "threads": threads})
    opts = dict(name=_actor_name(job_dir, job["kind"]), namespace=NAMESPACE, lifetime="detached",
                runtime_env={"env_vars": _worker_env()})
    opts.update(num_gpus=1) if gpus else opts.update(resources={SLOT: 1})
    handle = _remote(worker).options(**opts).remote(str(job_dir), payload, threads)
    _wait_handed_over(handle)
    return job_dir


def _wait_handed_over(handle, timeout: float = 10.0) -> None:
    """Return once Ray's control store holds the actor's creation, not only its name: ``.remote()`` registers a
    named actor at once but sends its creation a moment later, and a submitter killed in between (a kill -9 of the
    web server right after Start) left a run that never started (seen in CI under load). The state read is Ray's
    own debugging table (``ray._private.state``); if it cannot be read, a short pause stands in for it."""
    try:
        from ray._private import state
        t0 = time.time()
        while time.time() - t0 < timeout:
            info = state.actors(actor_id=handle._actor_id.hex()) or {}
            if info.get("State", "DEPENDENCIES_UNREADY") != "DEPENDENCIES_UNREADY":
                return
            time.sleep(0.02)
    except Exception:  # a Ray without that table: give the creation time to leave this process
        time.sleep(0.5)


def submit(cfg: RunConfig, threads: Optional[int] = None) -> Path:
    """Queue ``cfg`` (its ``run_dir`` set) as a job on Ray; returns the run folder. On a GPU cluster the run asks
    for one GPU, else for one CPU slot."""
    run_dir = Path(cfg.run_dir)
    return _submit(RunWorker, run_dir, cfg.to_dict(), {"run_id": run_dir.name, "kind": RUN, "config": cfg.to_dict()},
                   threads)


def submit_exploration(run_dir: str | Path, seed: int = 0, threads: Optional[int] = None) -> Path:
    """Queue the exploration of a finished run (its features, PCA and UMAP) as a job in the same queue as the
    runs; returns its folder, ``<run>/explore``. Submitting while one is queued or computing does nothing."""
    from . import explore
    run_dir = Path(run_dir)
    out = explore.folder(run_dir)
    if job_state(out).kind in ("queued", "running"):
        return out
    explore.clear_outputs(run_dir)
    return _submit(ExploreWorker, out, {"seed": seed}, {"run_id": run_dir.name, "kind": EXPLORE, "seed": seed},
                   threads)


def submit_sort(job_dir: str | Path, payload: dict, threads: Optional[int] = None) -> Path:
    """Queue a sort (``ueo_core.sort.run_job``: a run's decisions on a folder and their zip; or, ``mode`` place,
    a finished sort's folders written to a path) as a job in the same queue as the runs, in
    ``<workspace>/sorts/<id>``; returns that folder."""
    job_dir = Path(job_dir)
    return _submit(SortWorker, job_dir, payload, {"kind": SORTS, **payload}, threads)


def _actor(run_dir: str | Path, kind: Optional[str] = None):
    import ray
    connect(start_local=False)  # reading a run's state never starts a Ray of its own
    try:
        return ray.get_actor(_actor_name(run_dir, kind), namespace=NAMESPACE)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ job state
@dataclass
class JobState:
    """Where a job stands, as codes for the code and a sentence for a person (never compared against: rewording
    it changes no logic). ``kind`` is queued, running, ended (see ``ended.json``), lost (its worker process
    stopped without ending the job) or none (a run folder made before runs were jobs, or by the CLI); ``outcome``,
    once ended, is done, error or cancelled (stopped, in training or in the queue)."""
    kind: str
    words: str                      # for a person: "queued: 2nd in line, about 3 min", "finished", "failed"…
    outcome: Optional[str] = None   # ended: done / error / cancelled; else None
    position: int = 0               # queued: 1 = next to start
    wait_s: Optional[float] = None  # queued: estimated seconds until it starts


# ended.json's status -> the outcome code: a queued job taken out of the queue was cancelled too
OUTCOMES = {"done": "done", "error": "error", "cancelled": "cancelled", "stopped-queued": "cancelled"}


def ended_words(status: str) -> str:
    """An ended job in words, from its ended.json status."""
    return {"done": "finished", "error": "failed", "cancelled": "stopped",
            "stopped-queued": "stopped before it started"}.get(status, "ended")


def ended_state(status: str) -> JobState:
    """The state of a job that ended with ``status`` (ended.json's, or a run's metrics): its outcome code (an
    unknown status counts as an error) and its words."""
    return JobState("ended", ended_words(status), outcome=OUTCOMES.get(status, "error"))


def no_job() -> JobState:
    return JobState("none", "not a queued job (made by the CLI, or before runs were jobs)")


def read(run_dir: str | Path, name: str) -> Optional[dict]:
    try:
        return json.loads((Path(run_dir) / name).read_text())
    except (OSError, ValueError):
        return None


def job_state(run_dir: str | Path, workspaces: Optional[Path] = None) -> JobState:
    """The run's state from its folder, and from Ray for whether its worker is still there. ``workspaces``: the
    root whose queued runs count for the place in line (every workspace of the server)."""
    run_dir = Path(run_dir)
    job = read(run_dir, JOB)
    if job is None:
        return no_job()
    ended = read(run_dir, ENDED)
    if ended is not None:
        return ended_state(ended.get("status", "ended"))
    worker = read(run_dir, WORKER)
    alive = _actor(run_dir, job_kind(run_dir, job)) is not None
    if worker is not None:
        if alive:
            return JobState("running", "training")
        return JobState("lost", "The process running it stopped (for example, out of memory, or it was killed). "
                                "Resume continues from its last checkpoint.")
    if not alive:
        if (run_dir / STOP).exists():
            return ended_state("stopped-queued")
        return JobState("lost", "It was queued, but the queue lost it (Ray was restarted). Start it again.")
    root = workspaces or _workspaces_of(run_dir)
    ahead = queued_runs(root)
    pos = next((i + 1 for i, (p, _) in enumerate(ahead) if p == run_dir), len(ahead) + 1)
    # the first runs without worker.json may already hold a free slot: their worker is starting (imports, model)
    free = max(0, _slots_or_one() - len(active_runs(root)))
    if pos <= free:
        return JobState("running", "starting")
    pos -= free
    wait = estimate_wait(pos, root)
    return JobState("queued", queue_words(pos, wait), position=pos, wait_s=wait)


def _slots_or_one() -> int:
    try:
        return cluster_slots()
    except Exception:  # Ray unreachable: count one slot
        return 1


def _workspaces_of(job_dir: Path) -> Path:
    """<workspaces>/<ws>/runs/<run> (or its <run>/explore; or <workspaces>/<ws>/sorts/<id>) -> <workspaces>."""
    return job_dir.parents[3] if job_kind(job_dir) == EXPLORE else job_dir.parents[2]


def _run_dirs(workspaces: Path):
    """Every job folder of the server: its runs and their explorations."""
    if not workspaces.is_dir():
        return []
    return list(workspaces.glob("*/runs/*")) + list(workspaces.glob(f"*/runs/*/{EXPLORE}"))


def queued_runs(workspaces: Path) -> list[tuple[Path, float]]:
    """Every job of the server (runs and explorations) waiting for a slot, first submitted first."""
    out = []
    for d in _run_dirs(Path(workspaces)):
        if (d / JOB).exists() and not (d / WORKER).exists() and not (d / ENDED).exists() \
                and not (d / STOP).exists():
            job = read(d, JOB) or {}
            out.append((d, float(job.get("submitted", 0))))
    return sorted(out, key=lambda t: t[1])


def active_runs(workspaces: Path) -> list[Path]:
    """Every job of the server whose worker has started and not ended (working, or lost without knowing it)."""
    return [d for d in _run_dirs(Path(workspaces))
            if (d / JOB).exists() and (d / WORKER).exists() and not (d / ENDED).exists()]


def estimate_wait(position: int, workspaces: Path) -> Optional[float]:
    """Seconds until the ``position``-th queued run starts: the runs ahead of it, plus those training now, shared
    by the slots, at the median length of the server's recent runs. None before any run has finished."""
    lengths, running = [], 0
    for d in _run_dirs(Path(workspaces)):
        if not (d / JOB).exists():
            continue
        ended, worker = read(d, ENDED), read(d, WORKER)
        if ended and worker and ended.get("status") == "done" and job_kind(d) == RUN:  # runs' lengths only
            lengths.append((ended["at"] - worker["started"], ended["at"]))
        elif worker and not ended:
            running += 1
    if not lengths:
        return None
    recent = sorted(t for t, _ in sorted(lengths, key=lambda x: x[1])[-20:])
    typical = recent[len(recent) // 2]
    slots = _slots_or_one()
    # the runs in front of this one, and those now training, start and end in waves of `slots`
    waves = (position - 1 + running) // slots
    return waves * typical + (typical / 2 if running >= slots else 0.0)


def estimate_runs(configs: list[dict], workspaces: Path) -> Optional[float]:
    """Seconds that these runs (RunConfig dicts, e.g. a lesson's) would take, from the server's own finished runs
    of the same method, data, model and epochs (the median of each), shared by the slots. None when any of them
    has no such finished run yet: then nothing is promised."""
    keys = ("method", "data", "model", "pretrained", "epochs", "batch_size", "fast_mode")
    lengths: dict[tuple, list[float]] = {}
    for d in _run_dirs(Path(workspaces)):
        ended, worker, job = read(d, ENDED), read(d, WORKER), read(d, JOB) or {}
        if job_kind(d, job) != RUN or not (ended and worker and ended.get("status") == "done"):
            continue
        cfg = job.get("config") or {}
        lengths.setdefault(tuple(cfg.get(k) for k in keys), []).append(ended["at"] - worker["started"])
    each = []
    for c in configs:
        seen = sorted(lengths.get(tuple(c.get(k) for k in keys), []))
        if not seen:
            return None
        each.append(seen[len(seen) // 2])
    return sum(each) / max(1, min(_slots_or_one(), len(each)))


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def duration_words(seconds: float) -> str:
    """An estimate in words: to 5 s under a minute, else to the minute ("35 s", "3 min")."""
    return f"{max(5, round(seconds / 5) * 5):.0f} s" if seconds < 60 else f"{round(seconds / 60):.0f} min"


def queue_words(position: int, wait_s: Optional[float]) -> str:
    where = "next in line" if position == 1 else f"{ordinal(position)} in line"
    if wait_s is None:
        return f"queued: {where} (no run has finished yet to estimate the wait)"
    return f"queued: {where}, about {duration_words(wait_s)}"


# ----------------------------------------------------------------------------------------------- acting on jobs
def stop(run_dir: str | Path) -> None:
    """Ask the run to stop: a training run ends after its current step (its last checkpoint kept); a queued run
    leaves the queue at once."""
    import ray
    run_dir = Path(run_dir)
    (run_dir / STOP).write_text(str(time.time()))
    if read(run_dir, WORKER) is None:
        actor = _actor(run_dir)
        if actor is not None:
            ray.kill(actor, no_restart=True)
        if read(run_dir, WORKER) is None:
            write_json_atomic(run_dir / ENDED, {"status": "stopped-queued", "message": None, "at": time.time()})


def resume(run_dir: str | Path) -> Path:
    """Submit a lost run again, continuing from its last checkpoint (or from the start when it had none)."""
    from .runs import CHECKPOINT, RUN_FILES
    run_dir = Path(run_dir)
    cfg = RunConfig.from_dict((read(run_dir, JOB) or {})["config"])
    if (run_dir / CHECKPOINT).exists():
        return submit(cfg.replace(run_dir=str(run_dir), resume=str(run_dir)))
    for name in RUN_FILES + ("status.json", "error.json"):  # killed inside its first epoch: nothing to keep
        (run_dir / name).unlink(missing_ok=True)
    return submit(cfg.replace(run_dir=str(run_dir), resume=None))


def recover(workspaces: Path) -> list[Path]:
    """After the local Ray itself restarted (a reboot, ``ray stop``, its head killed): every job of the server
    that was queued or working on the old head, and neither ended nor has an actor now, is submitted again, in the
    order they were first submitted. A run that trained resumes from its last checkpoint (at most the epoch in
    progress is lost); one that was queued takes its place in line again; an exploration starts over. A worker
    that died while this head kept running (out of memory, kill -9) is not resubmitted: its page offers Resume.
    Called by ``python -m ueo_core cluster up`` (so by ``scripts/app.sh``); returns the folders submitted."""
    started = head_started()
    if started is None:
        return []
    lost = []
    for d in _run_dirs(Path(workspaces)):
        job = read(d, JOB)
        if job is None or (d / ENDED).exists() or (d / STOP).exists():
            continue
        worker = read(d, WORKER)
        since = float((worker or {}).get("started", job.get("submitted", 0)))
        if since < started and _actor(d) is None:
            lost.append((float(job.get("submitted", 0)), d))
    out = []
    for _, d in sorted(lost, key=lambda t: t[0]):
        out.append(submit_exploration(d.parent) if job_kind(d) == EXPLORE else resume(d))
    return out


def wait(run_dir: str | Path, timeout: float = 600, poll: float = 0.5) -> JobState:
    """Block until the run has ended or is lost (the app's Stop, tests); returns its last state."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        s = job_state(run_dir)
        if s.kind in ("ended", "lost", "none"):
            return s
        time.sleep(poll)
    return job_state(run_dir)


# ------------------------------------------------------------------------------------------------------ search
# A run's warm search worker (``workers.SearchWorker``, actor ``search:<run id>``) ends itself after this long without
# a query. bench/search.py measured (2 CPU cores): a cold start of 6 s (14 s with other work on the machine), a warm
# query of 4-7 ms, and ~600 MB of memory of its own per worker (torch, open_clip and the engine's imports in one more
# process). 5 minutes: a user going back and forth between queries and the maps finds it warm; a class's idle
# searches give their memory back soon after.
SEARCH_IDLE_S = float(os.environ.get("UEO_SEARCH_IDLE_S", "300") or 300)


def search(run_dir: str | Path, kind: str, what, timeout: float = 120.0, **options) -> list:
    """A search of a finished run (``ueo_core.search``: ``kind`` "text" with a query, or "like" with an image
    index), answered by the run's warm search worker on Ray, which is started first if there is none. ``options``:
    top, filter, score, threshold (as ``search.Searcher.text``). Returns the hits; a refused query (too long, an
    image not found) raises ValueError in words. ``timeout`` covers a cold start (the model loads once)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError
    from .cluster import ClusterError
    from .workers import SearchWorker
    connect()
    run_dir = Path(run_dir)
    opts = dict(name=f"search:{run_dir.name}", namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                num_cpus=0, runtime_env={"env_vars": _worker_env()})
    for attempt in (1, 2):  # a worker that ended itself (idle) just as it was found: start a new one
        actor = _remote(SearchWorker).options(**opts).remote(str(run_dir), SEARCH_IDLE_S)
        try:
            status, out = ray.get(actor.query.remote(str(run_dir), kind, what, dict(options)), timeout=timeout)
        except RayActorError:
            if attempt == 2:
                raise ClusterError("The search worker stopped (for example, out of memory). Try again.") from None
            time.sleep(0.2)
            continue
        except GetTimeoutError:
            raise ClusterError(f"The search did not answer within {timeout:.0f} s (the server is busy). Try "
                               "again.") from None
        if status == "error":
            raise ValueError(out)
        return out
