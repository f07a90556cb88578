"""The run folder: the unit the CLI writes and the app lists, compares and exports.

    config.json        RunConfig + model and data summary
    steps.jsonl        one line per optimisation step (loss, entropies, lr, time)
    epochs.jsonl       one line per evaluation (metrics, confidence histogram)
    metrics.json       final metrics (and the zero-shot ones before adaptation)
    predictions.csv    per-image predictions
    checkpoint.safetensors  trainable parameters only (prompt context + norm affine), run config in its metadata
    optimizer.pt       while a run trains: the optimizer's, the schedule's and CLIPood's moving-average state of
                       the checkpoint's epoch (resume continues exactly; tensors only, read with weights_only=True;
                       dropped when the run finishes: train/checkpoint.py)
    skipped.txt        files that could not be read, with the reason
    report.md          a short human-readable summary
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import threading
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file, safe_open

from .data import DataError
from .metrics import write_predictions

CHECKPOINT = "checkpoint.safetensors"


def new_run_id(method: str) -> str:
    """A run's folder name, the one format the app, the lessons and the CLI use: time, method, 6 random hex
    digits ("20261202-171500-ueo-3fa9c1"); sortable by time, unique across workspaces."""
    import secrets
    import time
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{method}-{secrets.token_hex(3)}"


RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z_]{1,20}-[0-9a-f]{6}$")  # what new_run_id makes (a lesson's too)
LESSON_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-lesson-[0-9a-f]{6}$")     # new_run_id("lesson")

# Text files that hold file names: a name that is not valid UTF-8 (Linux allows any bytes) round-trips exactly
# (Python's surrogateescape), so predictions.csv and skipped.txt are never cut off and still point at the file.
ANY_NAME = {"encoding": "utf-8", "errors": "surrogateescape"}


def tmp_beside(path: Path) -> Path:
    """A temporary name next to ``path``, unique per process and thread (two writers never share it)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_json_atomic(path: str | Path, obj) -> None:
    """``obj`` as JSON at ``path``: written beside it first, then renamed, so a reader never sees half a file."""
    path = Path(path)
    tmp = tmp_beside(path)
    tmp.write_text(json.dumps(_clean(obj), indent=2))
    tmp.replace(path)


def _clean(obj):
    """JSON-safe: NaN -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj) -> str:
    return json.dumps(_clean(obj))


ZERO_SHOT_PREDICTIONS = "predictions_zero_shot.csv"  # the zero-shot pass, beside the final predictions.csv
RUN_FILES = ("config.json", "steps.jsonl", "epochs.jsonl", "metrics.json", CHECKPOINT)


class RunFolder:
    """A run's folder. Every whole-file write goes to a temporary file of this process and thread, then is renamed
    over the old one (a reader never sees half a file, two writers never share a temporary). ``create`` takes a
    lock for the run's lifetime, so two runs cannot write into one folder, and refuses a folder that already holds
    a run unless this run resumes it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = None

    def create(self, resume: Optional[str | Path] = None) -> "RunFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DataError(f"Another run is writing into {self.path} right now: choose another output folder, "
                            f"or wait for it to finish.") from None
        self._lock = fd
        used = [n for n in RUN_FILES if (self.path / n).exists()]
        if used and not self._resumes_here(resume):
            self.close()
            raise DataError(f"{self.path} already holds a run ({', '.join(used)}): choose a new output folder, or "
                            f"resume that run (--resume {self.path}). Nothing was changed.")
        return self

    def _resumes_here(self, resume) -> bool:
        if not resume:
            return False
        r = Path(resume).resolve()
        return (r if r.is_dir() else r.parent) == self.path.resolve()

    def close(self) -> None:
        """Release the folder's lock (the run ended)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _tmp(self, name: str) -> Path:
        return tmp_beside(self.path / name)

    # ---- writing
    def write_json(self, name: str, obj) -> None:
        write_json_atomic(self.path / name, obj)

    def append(self, name: str, obj) -> None:
        with open(self.path / name, "a") as fh:
            fh.write(dumps(obj) + "\n")

    def reset_logs(self, epoch: int) -> None:
        """Before resuming after ``epoch`` completed epochs: keep the steps of those epochs (steps carry the
        1-based epoch they ran in) and the evaluations before it (the resumed run evaluates ``epoch`` again)."""
        for name, keep in (("steps.jsonl", lambda e: e <= epoch), ("epochs.jsonl", lambda e: e < epoch)):
            rows = [r for r in self.read_jsonl(name) if keep(r.get("epoch", 0))]
            tmp = self._tmp(name)
            tmp.write_text("".join(dumps(r) + "\n" for r in rows))
            tmp.replace(self.path / name)

    def save_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
        """Write the checkpoint; on a write error (a full disk) the previous checkpoint is kept and the error says
        so."""
        tmp = self._tmp(CHECKPOINT)
        try:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={k: json.dumps(_clean(v)) for k, v in meta.items()})
            tmp.replace(self.path / CHECKPOINT)
        except Exception as err:  # OSError (disk full), safetensors errors
            tmp.unlink(missing_ok=True)
            kept = " The previous checkpoint is kept." if (self.path / CHECKPOINT).exists() else ""
            raise DataError(f"Could not write the checkpoint in {self.path} (is the disk full?): "
                            f"{str(err)[:120]}.{kept}") from None
        return self.path / CHECKPOINT

    def write_predictions(self, rows: list[dict], name: str = "predictions.csv") -> None:
        tmp = self._tmp(name)
        write_predictions(tmp, rows)
        tmp.replace(self.path / name)

    def write_text(self, name: str, text: str) -> None:
        tmp = self._tmp(name)
        tmp.write_text(text, **ANY_NAME)
        tmp.replace(self.path / name)

    def write_skipped(self, skipped) -> None:
        self.write_text("skipped.txt", "".join(f"{p}\t{r}\n" for p, r in skipped))

    # ---- reading
    def read_json(self, name: str):
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else None

    def read_jsonl(self, name: str) -> list[dict]:
        p = self.path / name
        if not p.exists():
            return []
        rows, lines = [], [ln for ln in p.read_text().splitlines() if ln.strip()]
        for k, ln in enumerate(lines):
            try:
                rows.append(json.loads(ln))
            except json.JSONDecodeError:
                if k == len(lines) - 1:  # a last line cut off by a crash or a full disk: ignored
                    break
                raise DataError(f"{p.name} is damaged at line {k + 1} (not JSON).") from None
        return rows

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def config(self) -> Optional[dict]:
        return self.read_json("config.json")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) from a run folder or a checkpoint file. safetensors: no pickle, nothing executes."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise FileNotFoundError(f"No checkpoint at {p}")
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = {k: json.loads(v) for k, v in (fh.metadata() or {}).items()}
        return load_file(str(p)), meta
    except Exception as err:  # garbage, a pickle, a truncated file, metadata that is not JSON
        from .data import DataError
        raise DataError(f"'{p.name}' is not a checkpoint of a UEO Studio run (a .safetensors file that a run "
                        f"writes): it could not be read ({str(err)[:120]}).") from None


def images(metrics: dict) -> str:
    """How many images a row of figures covers ("160 images"), so two rows over different folders never read as
    one comparison; empty for metrics saved without their count."""
    n = metrics.get("n") if metrics else None
    return f"{n} image{'s' if n != 1 else ''}" if isinstance(n, int) else ""


def _counted(label: str, metrics: dict) -> str:
    return f"{label} ({images(metrics)})" if images(metrics) else label


def write_report(folder: RunFolder, config: dict, before: dict, after: dict, summary: dict) -> None:
    """report.md. An evaluation of another run (``summary["evaluates"]``, `eval --run`) names that run and its
    method, not the evaluation's own mechanics; every column says how many images it covers."""
    keys = ["gacc", "pacc", "auroc", "fpr95", "h_score", "mean_confidence", "mean_entropy"]
    model = summary.get("model", {})
    on = f"model: {model.get('model')} ({model.get('pretrained') or 'random init'}) on {model.get('device')}"
    ev = summary.get("evaluates")
    if ev:
        epoch = f", epoch {ev['epoch']}" if ev.get("epoch") else ""  # (0: a test-time method, nothing trained)
        how = ("its method applied at test time to these images" if ev.get("test_time")
               else "its adapted parameters applied to these images")
        head = [f"# Evaluation {folder.path.name}", "",
                f"- method: **{ev['method']}**, of run `{ev['run']}`{epoch}: {how}; nothing was trained here",
                f"- {on}", f"- data: {summary.get('data')}"]
        after_label = ev["method"]
    else:
        head = [f"# Run {folder.path.name}", "", f"- method: **{config['method']}**, {on}",
                f"- data: {summary.get('data')}",
                f"- epochs: {config['epochs']}, batch size: {config['batch_size']}, lr (prompt/visual): "
                f"{config['lr_prompt']}/{config['lr_visual']}, seed {config['seed']}"]
        after_label = "after"
    lines = head + [f"- time: {summary.get('seconds', 0):.1f} s", "",
                    f"| metric | {_counted('zero-shot', before)} | {_counted(after_label, after)} |", "|---|---|---|"]
    for k in keys:
        if k in after or k in before:
            b, a = before.get(k), after.get(k)
            fmt = lambda v: "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"
            lines.append(f"| {k} | {fmt(b)} | {fmt(a)} |")
    folder.write_text("report.md", "\n".join(lines) + "\n")


def run_status(run_dir: str | Path, alive: bool = False) -> tuple[str, str]:
    """(kind, words) of a run for the sidebar and the pages: "training" (epoch k of n), "finished", "stopped"
    (at epoch k: explorable from its last checkpoint), "stopped-empty" (before its first epoch ended) or
    "failed"."""
    f = RunFolder(run_dir)
    cfg = f.config or {}
    planned = cfg.get("epochs")
    if alive:
        epochs = f.read_jsonl("epochs.jsonl")
        done = max([e.get("epoch", 0) for e in epochs], default=0)
        return "training", (f"training… epoch {done + 1} of {planned}" if planned and epochs else "starting…")
    m = f.read_json("metrics.json")
    if m and m.get("stopped_at_epoch") is not None:
        return "stopped", f"stopped at epoch {m['stopped_at_epoch']} of {m.get('epochs_planned', planned)}"
    if m:
        return "finished", "finished"
    if (f.path / "steps.jsonl").exists() or (f.path / "epochs.jsonl").exists():
        return "stopped-empty", "stopped before its first epoch ended (nothing adapted to keep)"
    return "failed", "did not start (see the Adapt page)"
