"""What runs inside a Ray worker process: one job holding one slot (``ueo_core.jobs`` submits them).

A ``RunWorker`` trains one run with the same ``Trainer`` as the CLI; an ``ExploreWorker`` computes a run's
exploration (``ueo_core.explore``). Each writes ``worker.json`` when it starts and ``ended.json`` when it ends.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from .config import RunConfig
from .errors import explain
from .runs import write_json_atomic

# a job's files in its folder (a run's, or ``<run>/explore`` for its exploration)
JOB, WORKER, ENDED, STOP = "job.json", "worker.json", "ended.json", "stop.request"
EXPLORE = "explore"                 # a run's exploration is a job too, in <run>/explore (ueo_core.explore)
SORTS = "sorts"                     # a workspace's sorts are jobs too, in <workspace>/sorts/<id> (ueo_core.sort)
RUN = "run"                         # a run's own job; job.json's "kind" is one of RUN, EXPLORE, SORTS


class SlotWorker:
    """One job in a Ray worker process holding one slot: writes ``worker.json``, does ``work()``, writes
    ``ended.json``, then ends itself. The work starts in ``__init__`` on a thread, because the actor's creation
    (unlike a method call) belongs to the cluster: it happens even when the process that submitted it has gone."""

    def __init__(self, job_dir: str, payload: dict, threads: int = 0):
        self.job_dir, self.payload, self.threads = Path(job_dir), payload, threads
        threading.Thread(target=self._go, daemon=True, name="ueo-job").start()

    def work(self) -> str:  # returns the status written to ended.json
        raise NotImplementedError

    def _go(self) -> None:
        import ray
        status, message = "error", None
        try:
            write_json_atomic(self.job_dir / WORKER, {"pid": os.getpid(), "node": socket.gethostname(),
                                                      "node_id": ray.get_runtime_context().get_node_id(),
                                                      "started": time.time()})
            if (self.job_dir / STOP).exists():
                status = "stopped-queued"
                return
            import torch
            if self.threads:
                torch.set_num_threads(self.threads)
            status = self.work()
        except Exception as err:  # in words, for the page
            status, message = "error", explain(err, "app")  # a failed run's words are kept on its error
        finally:
            write_json_atomic(self.job_dir / ENDED, {"status": status, "message": message, "at": time.time()})
            ray.get_runtime_context().current_actor.exit.remote()  # the actor ends itself (a method may)

    def pid(self) -> int:
        return os.getpid()

    def exit(self) -> None:
        import ray
        ray.actor.exit_actor()


class RunWorker(SlotWorker):
    """Trains one run (the same ``Trainer`` as the CLI); ``stop.request`` cancels it after the current step."""

    def work(self) -> str:
        from .train import Trainer
        self.config = RunConfig.from_dict(self.payload)
        self.trainer = Trainer(self.config, listeners=[self._watch_stop], audience="app")
        return self.trainer.run().status

    def _watch_stop(self, ev) -> None:
        if ev.kind in ("step", "progress", "epoch") and (self.job_dir / STOP).exists():
            self.trainer.cancel()


class ExploreWorker(SlotWorker):
    """Computes a run's exploration (``ueo_core.explore``) into ``<run>/explore``."""

    def work(self) -> str:
        from . import explore
        explore.compute(self.job_dir.parent, seed=int(self.payload.get("seed", 0)))
        return "done"


class SortWorker(SlotWorker):
    """Sorts a folder by a finished run, or writes a finished sort's folders to a path (``ueo_core.sort.run_job``)."""

    def work(self) -> str:
        from . import sort
        sort.run_job(self.job_dir, self.payload)
        return "done"


def answer(searcher, kind: str, what, **options):
    """What a search worker answers: a search (``Searcher.query``: "text", "like"), or "unknowns", the groups among
    the run's rejected images with suggested names (``ueo_core.unknowns``, on the same loaded run; ``what``
    unused)."""
    if kind == "unknowns":
        from .unknowns import group_unknowns
        return group_unknowns(searcher, **options)
    return searcher.query(kind, what, **options)


class SearchWorker:
    """A run's search (``ueo_core.search``), kept warm: the run's model and its images' features stay loaded
    between queries, and the worker ends itself after ``idle_s`` without one (``ueo_core.jobs.search``). It holds
    no slot and no GPU: a query is one text-tower pass and a product with the feature matrix (milliseconds on a
    CPU), and must not wait behind training runs; the image features are Explore's, already computed in a slot."""

    def __init__(self, run_dir: str, idle_s: float, threads: int = 1):
        import torch
        self.run_dir, self.idle_s, self.last = run_dir, float(idle_s), time.time()
        self.searcher, self.lock = None, threading.Lock()
        torch.set_num_threads(max(1, threads))
        threading.Thread(target=self._watch, daemon=True, name="ueo-search-idle").start()

    def query(self, run_dir: str, kind: str, what, options: dict) -> tuple[str, object]:
        """("ok", hits) or ("error", the reason in words: a query too long, an image not found…)."""
        from . import search
        from .models import ModelLoadError
        self.last = time.time()
        try:
            if str(run_dir) != self.run_dir:  # (actors are named by run id: never answer for another folder)
                raise ValueError("This search worker belongs to another run.")
            with self.lock:  # loaded once; again if the run changed since (a resumed run's new checkpoint)
                if self.searcher is None or self.searcher.stale():
                    self.searcher = search.Searcher(self.run_dir, device="cpu")
            return "ok", answer(self.searcher, kind, what, **options)
        except (ValueError, OSError, ModelLoadError) as err:  # (DataError is a ValueError)
            return "error", explain(err, "app")
        finally:
            self.last = time.time()

    def pid(self) -> int:
        return os.getpid()

    def _watch(self) -> None:
        import ray
        while True:
            time.sleep(min(10.0, max(0.05, self.idle_s / 4)))
            gone = not Path(self.run_dir).is_dir()  # its run (or workspace) was deleted
            if gone or (time.time() - self.last > self.idle_s and not self.lock.locked()):
                ray.get_runtime_context().current_actor.exit.remote()
                return

    def exit(self) -> None:
        import ray
        ray.actor.exit_actor()
