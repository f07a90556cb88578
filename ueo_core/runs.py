"""The run folder: the unit the CLI writes and the app lists, compares and exports.

    config.json        RunConfig + model and data summary
    steps.jsonl        one line per optimisation step (loss, entropies, lr, time)
    epochs.jsonl       one line per evaluation (metrics, confidence histogram)
    metrics.json       final metrics (and the zero-shot ones before adaptation)
    predictions.csv    per-image predictions
    checkpoint.safetensors  trainable parameters only (prompt context + norm affine), run config in its metadata
    skipped.txt        files that could not be read, with the reason
    report.md          a short human-readable summary
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file, safe_open

from .metrics import write_predictions

CHECKPOINT = "checkpoint.safetensors"

# Text files that hold file names: a name that is not valid UTF-8 (Linux allows any bytes) round-trips exactly
# (Python's surrogateescape), so predictions.csv and skipped.txt are never cut off and still point at the file.
ANY_NAME = {"encoding": "utf-8", "errors": "surrogateescape"}


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


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def create(self) -> "RunFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # ---- writing
    def write_json(self, name: str, obj) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text(json.dumps(_clean(obj), indent=2))
        tmp.replace(self.path / name)

    def append(self, name: str, obj) -> None:
        with open(self.path / name, "a") as fh:
            fh.write(dumps(obj) + "\n")

    def reset_logs(self, epoch: int) -> None:
        """Before resuming after ``epoch`` completed epochs: keep the steps of those epochs (steps carry the
        1-based epoch they ran in) and the evaluations before it (the resumed run evaluates ``epoch`` again)."""
        for name, keep in (("steps.jsonl", lambda e: e <= epoch), ("epochs.jsonl", lambda e: e < epoch)):
            rows = [r for r in self.read_jsonl(name) if keep(r.get("epoch", 0))]
            (self.path / name).write_text("".join(dumps(r) + "\n" for r in rows))

    def save_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
        tmp = self.path / (CHECKPOINT + ".tmp")
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={k: json.dumps(_clean(v)) for k, v in meta.items()})
        tmp.replace(self.path / CHECKPOINT)
        return self.path / CHECKPOINT

    def write_predictions(self, rows: list[dict]) -> None:
        write_predictions(self.path / "predictions.csv", rows)

    def write_skipped(self, skipped) -> None:
        (self.path / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in skipped), **ANY_NAME)

    # ---- reading
    def read_json(self, name: str):
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else None

    def read_jsonl(self, name: str) -> list[dict]:
        p = self.path / name
        if not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]

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


def write_report(folder: RunFolder, config: dict, before: dict, after: dict, summary: dict) -> None:
    keys = ["gacc", "pacc", "auroc", "fpr95", "h_score", "mean_confidence", "mean_entropy"]
    lines = [f"# Run {folder.path.name}", "",
             f"- method: **{config['method']}**, model: {summary.get('model', {}).get('model')} "
             f"({summary.get('model', {}).get('pretrained') or 'random init'}) on {summary.get('model', {}).get('device')}",
             f"- data: {summary.get('data')}",
             f"- epochs: {config['epochs']}, batch size: {config['batch_size']}, lr (prompt/visual): "
             f"{config['lr_prompt']}/{config['lr_visual']}, seed {config['seed']}",
             f"- time: {summary.get('seconds', 0):.1f} s", "",
             "| metric | zero-shot | after |", "|---|---|---|"]
    for k in keys:
        if k in after or k in before:
            b, a = before.get(k), after.get(k)
            fmt = lambda v: "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"
            lines.append(f"| {k} | {fmt(b)} | {fmt(a)} |")
    (folder.path / "report.md").write_text("\n".join(lines) + "\n", **ANY_NAME)
