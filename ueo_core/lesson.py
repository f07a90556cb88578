"""The lesson: zero-shot, entropy minimisation (TENT), IM, UEO and (with ground truth) the oracle, one after another
on the same images, seed and settings, then a summary in plain words computed from their numbers.

Each method is an ordinary run (its own run folder, so Explore, Inspect and Compare open it); the lesson itself is
a small manifest, ``<runs root>/lessons/<lesson id>.json``, naming those runs. The app and the CLI both drive it.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from .analysis import chance_note, shown_gain, shown_rate
from .config import RunConfig
from .data import ImageSet
from .methods import get_method
from .runs import RunFolder, new_run_id, write_json_atomic
from . import errors
from .train import Event, Trainer

LESSON_METHODS = ("zero_shot", "entropy", "im", "ueo", "oracle")
EXTENDED = ("zero", "tda")  # the extended lesson adds the field's training-free methods
LABEL_FREE = ("entropy", "im", "ueo")  # the methods that adapt without any label
PLAIN_NAMES = {"zero_shot": "zero-shot", "entropy": "entropy minimisation (TENT)", "im": "IM", "ueo": "UEO",
               "oracle": "the oracle", "zero": "ZERO", "tda": "TDA"}


def lesson_methods(has_truth: bool, extended: bool = False) -> list[str]:
    """The lesson's methods for this data (the oracle needs the true known/unknown split); ``extended`` adds
    ZERO and TDA."""
    return [m for m in LESSON_METHODS + (EXTENDED if extended else ()) if has_truth or not get_method(m).needs_truth]


def lesson_configs(base: RunConfig, has_truth: bool, methods: Optional[Sequence[str]] = None) -> list[RunConfig]:
    """One config per method (those of ``methods`` that fit the data; default all): every setting (data, prior,
    model, seed, epochs, batch, learning rates, λ, template, fast mode) is the base's, only the method differs."""
    out = []
    for m in [m for m in lesson_methods(has_truth, extended=methods is not None) if methods is None or m in methods]:
        trains = get_method(m).trains
        out.append(base.replace(method=m, run_dir=None, resume=None, fast_mode=base.fast_mode if trains else None))
    return out


class Lesson:
    """The lesson's runs, one after another, under one progress fraction.

    ``extended`` adds ZERO and TDA after the five. ``run()`` writes the manifest before each run and after the last,
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
        where = f"run {self.index + 1}/{n}: {PLAIN_NAMES[self.methods[self.index]]}"
        return min(frac, 1.0), where + (f" · step {step}/{total}" if total else "")

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
                self.state, self.error = "error", f"{PLAIN_NAMES[cfg.method]}: {why}"
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


def lesson_state(manifest: dict, run_states: dict[str, tuple[str, str]]) -> dict:
    """A queued lesson's state from its runs' job states ({method: (kind, words)}, ``ueo_core.jobs.job_state``):
    ``live`` while any run is queued or training; ``state`` done / running / cancelled / error; ``finished`` the
    number of runs done; ``where`` a line for the progress bar."""
    methods = manifest.get("methods", [])
    kinds = [run_states.get(m, ("none", ""))[0] for m in methods]
    words = [run_states.get(m, ("none", ""))[1] for m in methods]
    finished = sum(1 for k, w in zip(kinds, words) if k == "ended" and w == "done")
    live = any(k in ("queued", "running") for k in kinds)
    failed = [m for m, k, w in zip(methods, kinds, words) if (k == "ended" and w == "error") or k == "lost"]
    training = [m for m, k in zip(methods, kinds) if k == "running"]
    state = ("done" if finished == len(methods) else "running" if live else "error" if failed else "cancelled")
    where = (f"{finished} of {len(methods)} runs done" + (" · training: " + ", ".join(PLAIN_NAMES[m] for m in training)
                                                           if training else "") if live else state)
    return {"live": live, "state": state, "finished": finished, "failed": failed, "where": where,
            "fraction": finished / max(len(methods), 1)}


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


def _first_upper(s: str) -> str:
    return s[:1].upper() + s[1:]


def training_free_line(method: str, after: dict, zero_shot: dict) -> str:
    """"TDA, which trains nothing, raised GACC by 3.9 points but lowered AUROC by 2.1 (…)": each direction read
    from the numbers; "and" when both moved the same way, "but" when they did not."""
    moves = []
    for key, name in (("gacc", "GACC"), ("auroc", "AUROC")):
        if after.get(key) is None or zero_shot.get(key) is None:
            continue
        d = shown_gain(after[key], zero_shot[key])
        word = "raised" if d > 0 else "lowered" if d < 0 else "kept"
        moves.append((d, f"{word} {name}" + (f" by {abs(d):.1f} points" if d else "")
                      + f" ({shown_rate(zero_shot[key])} → {shown_rate(after[key])})"))
    if not moves:
        return f"{PLAIN_NAMES[method]} trains nothing; this data has no truth to score it against."
    joint = " and " if len(moves) < 2 or (moves[0][0] > 0) == (moves[1][0] > 0) else " but "
    return f"{PLAIN_NAMES[method]}, which trains nothing, " + joint.join(w for _, w in moves) + " against zero-shot."


def oracle_lines(by: dict) -> list[str]:
    """What the oracle's figures mean, and what they do not: it is UEO with the true known/unknown split as its
    weights, so it bounds what better *weights* give UEO's objective at these settings (on AUROC, mostly); the
    weights say nothing about which known class an image is, so a label-free method may beat it on GACC, and with
    few epochs or a noisy run even on AUROC. Each comparison is read from the figures shown."""
    o = by["oracle"]["after"]
    out = [f"The oracle is UEO given the true known/unknown split as its weights: AUROC {shown_rate(o['auroc'])}, "
           f"GACC {shown_rate(o.get('gacc'))}. It shows what perfect weights give UEO's objective with these "
           "settings; it is no bound on everything."]
    others = [m for m in LABEL_FREE + EXTENDED if m in by]
    for key, name, why in (
            ("gacc", "GACC", "the weights only decide which images are pushed towards a confident answer and which "
             "towards spread predictions; they do not say which known class an image is, so they do not bound "
             "known-class accuracy"),
            ("auroc", "AUROC", "at these settings (epochs, learning rate, seed) perfect weights were not what limited "
             "the separation; one run of each is also noisy")):
        if o.get(key) is None:
            continue
        ahead = [m for m in others
                 if by[m]["after"].get(key) is not None and shown_gain(by[m]["after"][key], o[key]) > 0]
        if ahead:
            figures = " and ".join(shown_rate(by[m]["after"][key]) for m in ahead)
            out.append(f"{' and '.join(PLAIN_NAMES[m] for m in ahead)} {'is' if len(ahead) == 1 else 'are'} ahead of "
                       f"the oracle on {name} ({figures} vs {shown_rate(o[key])}): {why}.")
    return out


def lesson_summary(rows: Sequence[dict]) -> list[str]:
    """What the lesson showed, sentence by sentence, computed from its runs' numbers (``lesson_rows``)."""
    if not rows:
        return ["No run of this lesson has finished yet."]
    by = {r["method"]: r for r in rows}
    has_truth = any(r["after"].get("gacc") is not None for r in rows)
    out = []

    def top(r):
        sh = r["after"].get("class_shares") or []
        if not sh:
            return None, 0.0
        k = max(range(len(sh)), key=sh.__getitem__)
        return (r["classes"][k] if k < len(r["classes"]) else f"class {k}"), sh[k]

    zs = by.get("zero_shot")
    if zs and has_truth:
        out.append(f"Zero-shot, before any adaptation: known-class accuracy (GACC) "
                   f"{shown_rate(zs['after'].get('gacc'))}, known/unknown separation (AUROC) "
                   f"{shown_rate(zs['after'].get('auroc'))}.")
        chance = chance_note(zs["after"], len(zs["classes"]))
        if chance:
            out.append(chance)
    collapsed = [m for m in LABEL_FREE if m in by and by[m]["after"].get("collapsed")]
    for m in collapsed:
        name, share = top(by[m])
        line = f"{_first_upper(PLAIN_NAMES[m])} collapsed: {share:.0%} of all images are now predicted as '{name}'"
        if has_truth and zs:
            line += (f"; GACC went from {shown_rate(zs['after'].get('gacc'))} to "
                     f"{shown_rate(by[m]['after'].get('gacc'))} and AUROC from {shown_rate(zs['after'].get('auroc'))} "
                     f"to {shown_rate(by[m]['after'].get('auroc'))}")
        out.append(line + ". Rewarding confident answers alone piles the predictions onto one class.")
    spread = [m for m in ("im", "ueo") if m in by and not by[m]["after"].get("collapsed")]
    if spread:
        out.append(" and ".join(PLAIN_NAMES[m] for m in spread) + " kept the predictions spread (largest class "
                   + ", ".join(f"{top(by[m])[1]:.0%}" for m in spread) + "): their marginal-entropy term "
                   "rewards using every class.")
    if not has_truth:
        out.append("These images have no class folders, so nobody can say which method is right: compare the class "
                   "shares and the confidences, and look at the rejections on Inspect.")
        return out
    out += [training_free_line(m, by[m]["after"], zs["after"]) for m in EXTENDED if m in by and zs]
    free = [m for m in LABEL_FREE + EXTENDED if m in by and by[m]["after"].get("auroc") is not None]
    if free:
        best = max(free, key=lambda m: by[m]["after"]["auroc"])
        others = ", ".join(f"{PLAIN_NAMES[m]} {shown_rate(by[m]['after']['auroc'])}" for m in free if m != best)
        gain = shown_gain(by[best]["after"]["auroc"], zs["after"]["auroc"]) if zs and zs["after"].get("auroc") \
            is not None else None
        out.append(f"Of the methods that use no labels, {PLAIN_NAMES[best]} separated known from unknown best: AUROC "
                   f"{shown_rate(by[best]['after']['auroc'])} ({others}"
                   + (f"; zero-shot {shown_rate(zs['after']['auroc'])}, so {gain:+.1f} points" if gain is not None
                      else "") + ").")
    if "ueo" in by and "im" in by:
        u, i = by["ueo"]["after"], by["im"]["after"]
        diffs = {k: shown_gain(u[k], i[k]) for k in ("auroc", "h_score", "gacc")
                 if u.get(k) is not None and i.get(k) is not None}
        if diffs:
            name = lambda k: k.upper().replace("_SCORE", "-score")  # noqa: E731
            ahead = [name(k) for k, d in diffs.items() if d > 0]
            behind = [name(k) for k, d in diffs.items() if d < 0]
            words = ", ".join(f"{name(k)} {d:+.1f}" for k, d in diffs.items())
            if not behind:
                verdict = "UEO is ahead of IM on every score" if ahead else "UEO and IM score the same"
            elif not ahead:
                verdict = "On this data IM is ahead of UEO on every score"
            else:
                verdict = f"UEO is ahead of IM on {' and '.join(ahead)}, behind on {' and '.join(behind)}"
            out.append(f"{verdict} (UEO minus IM: {words} points). The only difference between the two is UEO's "
                       "confidence weights.")
    if "oracle" in by and by["oracle"]["after"].get("auroc") is not None:
        out += oracle_lines(by)
    return out
