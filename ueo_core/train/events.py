"""What a run tells the world: events to listeners and the run folder, stopping between steps, the step log.

Events: ``start``, ``step``, ``epoch``, ``bma``, ``checkpoint``, ``progress``, ``done``, ``error``, ``cancelled``.
The CLI's progress bar and the app's live charts are both listeners, so they can never disagree; with a run folder
the same events are written there (see ``runs.py``), which is what the app reads after a Ray job.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..runs import RunFolder


@dataclass
class Event:
    kind: str
    data: dict = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class Cancelled(Exception):
    pass


class Stop:
    """A stop request, honoured between steps (and between batches of a long pass)."""

    def __init__(self):
        self._set = threading.Event()

    def request(self) -> None:
        self._set.set()

    def check(self) -> None:
        if self._set.is_set():
            raise Cancelled()


class Emitter:
    """Sends each event to every listener and writes what the run folder keeps of it (rank 0 only, under
    torchrun)."""

    def __init__(self, folder: Optional[RunFolder], rank: int, listeners=()):
        self.folder, self.rank = folder, rank
        self.listeners: list[Callable[[Event], None]] = list(listeners)

    def __call__(self, kind: str, **data) -> None:
        if self.rank != 0:
            return
        if self.folder is not None:
            if kind == "step":
                self.folder.append("steps.jsonl", data)
            elif kind == "epoch":
                self.folder.append("epochs.jsonl", {k: v for k, v in data.items() if k != "probs"})
            elif kind == "progress":  # what a long non-step pass is doing, for the app's progress bar
                self.folder.write_json("status.json", data)
            elif kind == "error":  # the plain sentence, for whoever reads the folder (the app, after a Ray job)
                self.folder.write_json("error.json", {"message": data.get("message")})
        ev = Event(kind, data)
        for fn in self.listeners:
            fn(ev)


class StepLog:
    """Step records, emitted in bulk: their statistics stay on the device until ``flush`` reads them back (one
    synchronisation every ``every`` steps). A context: a stopped run still tells the steps it took."""

    def __init__(self, emit: Emitter, first_step: int, total_steps: int, every: int):
        self.emit, self.step, self.first, self.total, self.every = emit, first_step, first_step, total_steps, every
        self.pending: list[dict] = []
        self.t0 = time.time()

    def record(self, epoch: int, seconds: float, **values) -> None:
        self.step += 1
        eta = (time.time() - self.t0) / (self.step - self.first) * (self.total - self.step)
        self.pending.append(dict(step=self.step, epoch=epoch, total_steps=self.total, seconds=seconds, eta=eta,
                                 **values))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        for rec in self.pending:
            self.emit("step", **{k: float(v) if isinstance(v, torch.Tensor) else v for k, v in rec.items()})
        self.pending.clear()

    def __enter__(self) -> "StepLog":
        return self

    def __exit__(self, kind, err, tb) -> None:
        if kind is Cancelled:
            self.flush()
