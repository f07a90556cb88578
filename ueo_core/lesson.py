"""The lesson: zero-shot, entropy minimisation (TENT), IM, UEO and (with ground truth) the oracle, one after another
on the same images, seed and settings, then a summary in plain words computed from their numbers.

Each method is an ordinary run (its own run folder, so Explore, Inspect and Compare open it); the lesson itself is
a small manifest, ``<runs root>/lessons/<lesson id>.json``, naming those runs. The app and the CLI both drive it.

One place a job:
- the plan: which methods, with which settings (``lesson_methods``, ``lesson_configs``);
- ``Lesson``: the in-process runner (the CLI), one run after another;
- ``submit_lesson``: the submitter (the app), every run queued at once as a job;
- ``lesson_state``: the state reducer, a queued lesson's state from its runs' job states;
- the manifest and its finished runs read back (``read_lesson``, ``list_lessons``, ``lesson_rows``).
Its sentences are ``ueo_core.analysis.lesson_words`` (methods named by the registry, ``Method.plain``).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from .analysis.lesson_words import lesson_summary, plain_name, progress_line, queue_line
from .config import RunConfig
from .data import ImageSet
from .methods import METHODS, get_method
from .runs import RunFolder, new_run_id, write_json_atomic
from . import errors
from .train import Event, Trainer

# each method says on its registry entry whether it is one of the lesson's (Method.lesson), in the registry's order
LESSON_METHODS = tuple(m for m, entry in METHODS.items() if entry.lesson == "core")
EXTENDED = tuple(m for m, entry in METHODS.items() if entry.lesson == "extended")  # the field's methods

__all__ = ["LESSON_METHODS", "EXTENDED", "lesson_methods", "lesson_configs", "Lesson", "submit_lesson",
           "lesson_state", "read_lesson", "list_lessons", "lesson_rows", "lesson_summary", "plain_name"]


# ------------------------------------------------------------------------------------------------------ the plan
def lesson_methods(has_truth: bool, extended: bool = False) -> list[str]:
    """The lesson's methods for this data (the oracle needs the true known/unknown split); ``extended`` adds
    the field's methods (``EXTENDED``)."""
    return [m for m in LESSON_METHODS + (EXTENDED if extended else ()) if has_truth or not get_method(m).needs_truth]


def lesson_configs(base: RunConfig, has_truth: bool, methods: Optional[Sequence[str]] = None) -> list[RunConfig]:
    """One config per method (those of ``methods`` that fit the data; default all): every setting (data, prior,
    model, seed, epochs, batch, learning rates, λ, template, fast mode) is the base's, only the method differs."""
    out = []
    for m in [m for m in lesson_methods(has_truth, extended=methods is not None) if methods is None or m in methods]:
        trains = get_method(m).trains
        out.append(base.replace(method=m, run_dir=None, resume=None, fast_mode=base.fast_mode if trains else None))
    return out


# ------------------------------------------------------------------------------- the runner (in process, the CLI)
class Lesson:
    """The lesson's runs, one after another, under one progress fraction.

    ``extended`` adds the field's methods after the five. ``run()`` writes the manifest before each run and after the last,
    emits every trainer event to the listeners (with ``lesson_index`` and ``lesson_method`` added) plus ``lesson``
    events, and stops at the first error or at ``cancel()``. ``progress()`` is the whole lesson's fraction done and
    a line saying where it is.
    """

    def __init__(self, base: RunConfig, image_set: ImageSet, runs_root: str | Path, lesson_id: Optional[str] = None,
                 listeners: Sequence[Callable[[Event], None]] = (), extended: bool = False):
        self.configs = lesson_configs(base, image_set.has_truth,
                                      lesson_methods(image_set.has_truth, True) if extended else None)
        for c in self.configs:
            c.validate()  # every setting checked before the first run starts
        self.image_set = image_set
        self.root = Path(runs_root)
        self.id = lesson_id or new_run_id("lesson")
        self.listeners = list(listeners)
        self.run_ids: dict[str, str] = {}
        self.state = "waiting"
        self.error: Optional[str] = None
        self.index = 0                  # the run in progress (or next)
        self._step = (0, 0)             # (step, total_steps) of the run in progress
        self._trainer: Optional[Trainer] = None
        self._cancel = threading.Event()
        self.audience = "cli"  # "app" when the app runs it: error messages say where to click

    @property
    def methods(self) -> list[str]:
        return [c.method for c in self.configs]

    @property
    def manifest_path(self) -> Path:
        return self.root / "lessons" / f"{self.id}.json"

    def _write(self) -> None:
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.manifest_path, {"id": self.id, "methods": self.methods, "runs": self.run_ids,
                                               "state": self.state, "error": self.error,
                                               "settings": self.configs[0].to_dict()})

    def _emit(self, ev: Event) -> None:
        if ev.kind == "step":
            self._step = (ev.data.get("step", 0), ev.data.get("total_steps", 0))
        for fn in self.listeners:
            fn(ev)

    def cancel(self) -> None:
        self._cancel.set()
        if self._trainer is not None:
            self._trainer.cancel()

    def progress(self) -> tuple[float, str]:
        n = len(self.configs)
        if self.state == "done":
            return 1.0, f"all {n} runs done"
        if self.index >= n:
            return 1.0, self.state
        step, total = self._step
        frac = (self.index + (step / total if total else 0.0)) / n
        return min(frac, 1.0), progress_line(self.index, n, self.methods[self.index], step, total)

    def run(self) -> dict:
        """Run every method in turn; returns {method: run folder} of the runs that finished."""
        self.state = "running"
        self._write()
        out = {}
        for i, cfg in enumerate(self.configs):
            self.index, self._step = i, (0, 0)
            if self._cancel.is_set():
                break
            rid = new_run_id(cfg.method)
            self.run_ids[cfg.method] = rid
            self._write()
            cfg = cfg.replace(run_dir=str(self.root / rid))
            self._emit(Event("lesson", {"index": i, "method": cfg.method, "run_id": rid}))
            try:
                self._trainer = Trainer(cfg, listeners=(self._emit,), image_set=self.image_set,
                                        audience=self.audience)
                result = self._trainer.run()
            except Exception as err:  # the trainer has emitted its 'error' event; the lesson stops here
                why = errors.explain(err, self.audience)  # (the trainer's own words)
                self.state, self.error = "error", f"{plain_name(cfg.method)}: {why}"
                self._write()
                raise
            if result.status != "done":
                break
            out[cfg.method] = Path(cfg.run_dir)
        self.index = len(out)
        self.state = "done" if len(out) == len(self.configs) else "cancelled"
        self._write()
        self._emit(Event("lesson", {"state": self.state}))
        return out


# ---------------------------------------------------------------------------- the submitter (queued jobs, the app)
def submit_lesson(base: RunConfig, has_truth: bool, runs_root: str | Path, submit: Callable[[RunConfig], object],
                  lesson_id: Optional[str] = None, methods: Optional[Sequence[str]] = None) -> dict:
    """The lesson as queued jobs (the app): every method's run is submitted at once with ``submit`` (e.g.
    ``ueo_core.jobs.submit``), so that on two slots two of them train together. The manifest, written before the
    first submission, names every run; the lesson's state is read from those run folders (``lesson_state``)."""
    configs = lesson_configs(base, has_truth, methods)
    if not configs:
        raise ValueError("Choose at least one method for the lesson.")
    for c in configs:
        c.validate()  # every setting checked before the first run is queued
    root = Path(runs_root)
    lid = lesson_id or new_run_id("lesson")
    runs = {c.method: new_run_id(c.method) for c in configs}
    manifest = {"id": lid, "methods": [c.method for c in configs], "runs": runs, "state": "queued", "error": None,
                "settings": configs[0].to_dict()}
    (root / "lessons").mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / "lessons" / f"{lid}.json", manifest)
    for c in configs:
        submit(c.replace(run_dir=str(root / runs[c.method])))
    return manifest


# ------------------------------------------------------------------------------------------ the state reducer
def lesson_state(manifest: dict, run_states: dict) -> dict:
    """A queued lesson's state from its runs' job states ({method: ``ueo_core.jobs.JobState``}): ``live`` while any
    run is queued or training; ``state`` done / running / cancelled / error; ``finished`` the number of runs done;
    ``failed`` the methods whose run failed or was lost; ``where`` a line for the progress bar. Read from each
    job's codes (``kind``, ``outcome``), never from its sentence."""
    methods = manifest.get("methods", [])
    states = [run_states.get(m) for m in methods]
    kinds = [getattr(s, "kind", "none") for s in states]
    outcomes = [getattr(s, "outcome", None) for s in states]
    finished = sum(1 for k, o in zip(kinds, outcomes) if k == "ended" and o == "done")
    live = any(k in ("queued", "running") for k in kinds)
    failed = [m for m, k, o in zip(methods, kinds, outcomes) if (k == "ended" and o == "error") or k == "lost"]
    training = [m for m, k in zip(methods, kinds) if k == "running"]
    state = ("done" if finished == len(methods) else "running" if live else "error" if failed else "cancelled")
    return {"live": live, "state": state, "finished": finished, "failed": failed,
            "where": queue_line(finished, len(methods), training) if live else state,
            "fraction": finished / max(len(methods), 1)}


# --------------------------------------------------------------------------------------- the manifest, read back
def read_lesson(path: str | Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def list_lessons(runs_root: str | Path) -> list[dict]:
    """The lesson manifests under ``runs_root``, newest first."""
    d = Path(runs_root) / "lessons"
    if not d.is_dir():
        return []
    found = [read_lesson(p) for p in sorted(d.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)]
    return [m for m in found if m]


def lesson_rows(runs_root: str | Path, manifest: dict) -> list[dict]:
    """One row per finished run of the lesson, in the lesson's order: the method, its final metrics and zero-shot
    ones, class shares, collapse, seconds."""
    rows = []
    for method in manifest.get("methods", []):
        rid = manifest.get("runs", {}).get(method)
        if not rid:
            continue
        folder = RunFolder(Path(runs_root) / rid)
        m = folder.read_json("metrics.json")
        if not m or m.get("stopped_at_epoch") is not None:  # a stopped run is not one of the lesson's results
            continue
        cfg = folder.config or {}
        rows.append({"method": method, "run": rid, "after": m.get("after") or {}, "before": m.get("before") or {},
                     "classes": (cfg.get("summary") or {}).get("classes") or [], "seconds": m.get("seconds")})
    return rows
