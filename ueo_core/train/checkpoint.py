"""Checkpoints and resume, in one place.

A checkpoint (``checkpoint.safetensors`` in the run folder, see ``runs.RunFolder``) holds what learns, under the
names ``Method.params`` gives them (``prompt.ctx``, ``visual.<name>``), and UEO's zero-shot weights
(``ueo_weights``), so a resumed UEO run keeps the weights it started with. ``resume`` restores them and returns
where to start: the epoch, the weights, and the zero-shot metrics of the run it continues.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..data import DataError
from ..models import LoadedModel
from ..runs import RunFolder, load_checkpoint

@dataclass
class Resumed:
    epoch: int = 0                           # the last finished epoch (0: a new run)
    weights: Optional[torch.Tensor] = None   # UEO's zero-shot weights, as saved
    zero_shot: dict = field(default_factory=dict)  # the continued run's zero-shot metrics (its "before")


def state_tensors(tr, ctx) -> dict[str, torch.Tensor]:
    tensors = {"prompt.ctx": tr.prompt.ctx}
    tensors.update({f"visual.{n}": p for n, p in tr.visual_params})
    if ctx is not None and ctx.weights is not None:
        tensors["ueo_weights"] = ctx.weights
    return tensors


def save(tr, ctx, epoch: int) -> Optional[Path]:
    """Write the checkpoint of ``epoch`` into the run folder (none without one); returns its path."""
    if tr.folder is None:
        return None
    return tr.folder.save_checkpoint(state_tensors(tr, ctx), {
        "epoch": epoch, "config": tr.config.to_dict(), "classes": tr.image_set.classes, "files": len(tr.image_set)})


def apply_state(loaded: LoadedModel, tensors: dict[str, torch.Tensor]) -> int:
    """Copy saved ``visual.*`` parameters (norm affine, or the whole tower for CLIPood) into the model's image
    tower; returns how many were set. ``loaded.variant`` then names the tower's new state for the feature store
    (unchanged when the tensors are the tower's own: nothing in it learned)."""
    from ..embed import tower_variant
    params = dict(loaded.model.visual.named_parameters())
    variant, n = tower_variant(loaded, tensors), 0
    with torch.no_grad():
        for name, value in tensors.items():
            if name.startswith("visual.") and name[7:] in params:
                if tuple(value.shape) != tuple(params[name[7:]].shape):
                    raise DataError(f"The checkpoint was made with another model: '{name}' has shape "
                                    f"{tuple(value.shape)}, this model's {tuple(params[name[7:]].shape)}.")
                params[name[7:]].copy_(value.to(params[name[7:]].device, params[name[7:]].dtype))
                n += 1
    loaded.variant = variant
    return n


def _check_fits(tr, tensors: dict, meta: dict) -> None:
    """Refuse a checkpoint of other classes, another model or another prompt, each in words."""
    if meta.get("classes") and list(meta["classes"]) != list(tr.image_set.classes):
        raise DataError("The checkpoint was trained for other classes: "
                        f"{meta['classes']} vs {tr.image_set.classes}.")
    saved_model = (meta.get("config") or {}).get("model")
    if saved_model and saved_model != tr.config.model:
        raise DataError(f"The checkpoint was made with another model ('{saved_model}'; this run uses "
                        f"'{tr.config.model}'). Resume with the same model, or start a new run.")
    visual = dict(tr.loaded.model.visual.named_parameters())
    foreign = [k for k in tensors if k.startswith("visual.") and k[7:] not in visual]
    if foreign:
        raise DataError(f"The checkpoint was made with another model: its '{foreign[0]}' is not in this model's "
                        "image tower.")
    ctx = tensors.get("prompt.ctx")
    if ctx is None:
        raise DataError("This file holds no prompt context: it is not a checkpoint of a UEO Studio run "
                        "(resume needs the run folder or its checkpoint.safetensors).")
    if tuple(ctx.shape) != tuple(tr.prompt.ctx.shape):
        raise DataError(f"The checkpoint was made with another model or prompt template (prompt context "
                        f"{tuple(ctx.shape)}, this run has {tuple(tr.prompt.ctx.shape)}).")


def resume(tr) -> Resumed:
    """Load ``config.resume`` (a run folder or its checkpoint) into the model and prompt, and say where to go on.
    The run folder's logs are cut back to that epoch, so they read as one uninterrupted run."""
    if not tr.config.resume:
        return Resumed()
    tensors, meta = load_checkpoint(tr.config.resume)
    _check_fits(tr, tensors, meta)
    with torch.no_grad():
        tr.prompt.ctx.copy_(tensors["prompt.ctx"].to(tr.prompt.ctx.device, tr.prompt.ctx.dtype))
    apply_state(tr.loaded, tensors)
    epoch = int(meta.get("epoch", 0))
    weights = tensors["ueo_weights"].to(tr.loaded.device) if "ueo_weights" in tensors else None
    src = Path(tr.config.resume) if Path(tr.config.resume).is_dir() else Path(tr.config.resume).parent
    zero = [r for r in RunFolder(src).read_jsonl("epochs.jsonl") if r.get("epoch") == 0]
    if tr.folder is not None and tr.evaluates is None:  # (an evaluation's folder is new: nothing to cut back)
        tr.folder.reset_logs(epoch)
    if tr.evaluates is not None:
        tr.evaluates["epoch"] = epoch  # which of the run's epochs was evaluated (metrics.json, report.md)
    return Resumed(epoch, weights, zero[0]["metrics"] if zero else {})


def fast_forward(optimizer: torch.optim.Optimizer, schedule, steps: int) -> None:
    """A resumed run's learning-rate schedule picks up where it was: step both without gradients (a parameter
    without a gradient is not updated)."""
    for _ in range(steps):
        optimizer.step()
        schedule.step()
