"""Checkpoints and resume, in one place.

A checkpoint (``checkpoint.safetensors`` in the run folder, see ``runs.RunFolder``) holds what learns, under the
names ``Method.params`` gives them (``prompt.ctx``, ``visual.<name>``), and what the method's context keeps
(``Context.saved``: UEO's zero-shot weights, ``ueo_weights``), so a resumed UEO run keeps the weights it started
with. ``resume`` restores the parameters and returns where to start: the epoch, the method's saved tensors (for its
``prepare``), and the zero-shot metrics of the run it continues.

Beside it, ``optimizer.pt`` holds what training carries from step to step and the model does not: the optimizer's
state (AdamW's moments), the learning-rate schedule's, and a method's running state (CLIPood's moving average).
``Training`` writes it right after each epoch's checkpoint (not the last: a finished run drops it) and, on resume,
loads it into the new optimizer, so every method resumes exactly. It is used only when it is of the checkpoint's epoch
and of the same plan (method, optimizer, steps, rates); else (older runs, a run resumed with other settings) plain
SGD, which has no state, steps its schedule forward as before (``fast_forward``), and any other optimizer or a
running average is refused in words (nothing could continue it exactly).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..data import DataError
from ..models import LoadedModel
from ..runs import CHECKPOINT, RunFolder, load_checkpoint, tmp_beside

OPTIMIZER = "optimizer.pt"  # the training state beside the checkpoint (runs.py's layout)

@dataclass
class Resumed:
    epoch: int = 0                           # the last finished epoch (0: a new run)
    saved: dict = field(default_factory=dict)  # what the method's context kept (Context.saved), as saved
    zero_shot: dict = field(default_factory=dict)  # the continued run's zero-shot metrics (its "before")
    folder: Optional[Path] = None            # the run folder resumed from (its optimizer.pt: ``Training.resume``)


def state_tensors(tr, ctx) -> dict[str, torch.Tensor]:
    tensors = {"prompt.ctx": tr.prompt.ctx}
    tensors.update({f"visual.{n}": p for n, p in tr.visual_params})
    if ctx is not None:
        tensors.update({k: v for k, v in ctx.saved().items() if v is not None})
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
    saved = {k: v for k, v in tensors.items() if not k.startswith(("prompt.", "visual."))}
    src = Path(tr.config.resume) if Path(tr.config.resume).is_dir() else Path(tr.config.resume).parent
    zero = [r for r in RunFolder(src).read_jsonl("epochs.jsonl") if r.get("epoch") == 0]
    if tr.folder is not None and tr.evaluates is None:  # (an evaluation's folder is new: nothing to cut back)
        tr.folder.reset_logs(epoch)
    if tr.evaluates is not None:
        tr.evaluates["epoch"] = epoch  # which of the run's epochs was evaluated (metrics.json, report.md)
    return Resumed(epoch, saved, zero[0]["metrics"] if zero else {}, src)


def fast_forward(optimizer: torch.optim.Optimizer, schedule, steps: int) -> None:
    """A resumed run's learning-rate schedule picks up where it was: step both without gradients (a parameter
    without a gradient is not updated)."""
    for _ in range(steps):
        optimizer.step()
        schedule.step()


PLAN_WORDS = {"method": "method", "optimizer": "optimizer", "total_steps": "steps in all",
              "steps_per_epoch": "steps per epoch", "groups": "learning rates or optimizer options",
              "averager": "moving average"}
SHOWN = ("method", "optimizer", "total_steps", "steps_per_epoch")  # short enough to print both values


def stateless(optimizer: torch.optim.Optimizer) -> bool:
    """Plain SGD (no momentum) keeps nothing between steps: stepping its schedule forward resumes it exactly."""
    return type(optimizer) is torch.optim.SGD and not any(g.get("momentum") for g in optimizer.param_groups)


class Training:
    """The state one training step hands the next (optimizer, schedule, a method's running average), saved with
    each checkpoint as ``optimizer.pt`` and loaded on resume. ``plan`` is what that state is only valid for: a
    saved state is used only when its plan is this run's."""

    def __init__(self, tr, optimizer: torch.optim.Optimizer, schedule, averager=None):
        self.optimizer, self.schedule, self.averager = optimizer, schedule, averager
        self.plan = {"method": tr.config.method, "optimizer": type(optimizer).__name__,
                     "total_steps": tr.total_steps, "steps_per_epoch": len(tr.batches),
                     "groups": [{**{k: v for k, v in g.items() if k not in ("params", "lr")},
                                 "shapes": [list(p.shape) for p in g["params"]]} for g in optimizer.param_groups],
                     "averager": averager.plan() if averager is not None else None}

    def state(self, epoch: int) -> dict:
        return {"epoch": epoch, "plan": self.plan, "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "averager": self.averager.state_dict() if self.averager is not None else None}

    def save(self, tr, epoch: int) -> Optional[Path]:
        """Write ``optimizer.pt`` beside the checkpoint of ``epoch`` (written just before), atomically as the
        checkpoint is; on a write error the previous one is kept (resume then sees it is of another epoch)."""
        if tr.folder is None:
            return None
        path = tr.folder.path / OPTIMIZER
        tmp = tmp_beside(path)
        try:
            torch.save(self.state(epoch), tmp)
            tmp.replace(path)
        except Exception as err:  # OSError (disk full)
            tmp.unlink(missing_ok=True)
            raise DataError(f"Could not write the optimizer's state in {tr.folder.path} (is the disk full?): "
                            f"{str(err)[:120]}. The checkpoint of epoch {epoch} is written.") from None
        return path

    def resume(self, resumed: Resumed) -> str:
        """Continue from ``resumed``'s epoch: its saved state ("loaded"), else plain SGD's schedule stepped forward
        ("fast-forwarded"); a state that cannot be continued exactly is refused in words."""
        if resumed.epoch == 0:
            return "new"
        saved, why = self._saved(resumed)
        if saved is not None:
            self.optimizer.load_state_dict(saved["optimizer"])
            self.schedule.load_state_dict(saved["schedule"])
            if self.averager is not None:
                self.averager.load_state_dict(saved["averager"])
            return "loaded"
        if stateless(self.optimizer) and self.averager is None:
            fast_forward(self.optimizer, self.schedule, resumed.epoch * self.plan["steps_per_epoch"])
            return "fast-forwarded"
        kept = (f"its optimizer's state ({self.plan['optimizer']})"
                + (" and its moving average are" if self.averager is not None else " is"))
        raise DataError(f"This run cannot continue exactly from epoch {resumed.epoch}: {why}, and {kept} "
                        f"needed to go on. Resume with the run's own settings, or start a new run.")

    def _saved(self, resumed: Resumed) -> tuple[Optional[dict], str]:
        """(the saved state, "") when it fits this run; else (None, why not)."""
        path = resumed.folder / OPTIMIZER if resumed.folder is not None else None
        if path is None or not path.is_file():
            return None, f"its folder holds no {OPTIMIZER} (a run saved before optimizer states were kept)"
        try:  # tensors and plain containers only: nothing in the file executes
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # (torch's own message advises loading it with full pickle: not repeated here)
            return None, f"its {OPTIMIZER} could not be read (it is not the file a run writes)"
        if saved.get("epoch") != resumed.epoch:
            return None, (f"its {OPTIMIZER} is of epoch {saved.get('epoch')}, its {CHECKPOINT} of epoch "
                          f"{resumed.epoch} (the run was cut off between the two)")
        theirs = saved.get("plan") or {}
        differ = [k for k in self.plan if theirs.get(k) != self.plan[k]]
        if differ:
            return None, "it was trained with other settings (" + "; ".join(
                f"{PLAN_WORDS[k]}: {theirs.get(k)}, now {self.plan[k]}" if k in SHOWN else PLAN_WORDS[k]
                for k in differ) + ")"
        return saved, ""

    def drop(self, tr) -> None:
        """A finished run is not continued: its training state goes (for CLIPood, three image towers' worth)."""
        if tr.folder is not None:
            (tr.folder.path / OPTIMIZER).unlink(missing_ok=True)
