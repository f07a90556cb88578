"""The training loop, one straight path for every method (read it like nanoGPT's train.py).

Where a method differs, it says so through its hooks (``methods/base.py``): which parameters learn, its
optimizer, its context, its batches, and what follows each step, epoch and run. Where the image tower runs
differently (fast modes, several processes), the feature source says so (``features.py``).
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from ..distributed import gather
from ..methods.base import Step, TrainBatch
from ..models import autocast
from . import checkpoint
from .events import StepLog


def step_loss(tr, ctx, b: TrainBatch):
    """One training step's forward pass: (loss, the objective's statistics, the batch's softmax). Under torchrun
    the predictions (and whatever per-image context the method takes, ``Step.per_image``) are those of the global
    batch, gathered from every process."""
    with autocast(tr.loaded.device):
        feats, text = tr.features(b, ctx.text)
        logits = tr.scale("train") * feats @ text.float().T
    probs = gather(torch.softmax(logits, dim=1))
    idx = b.index.to(tr.loaded.device) if b.index is not None else None
    per_image = lambda t: gather(t[idx], False) if t is not None and idx is not None else None  # noqa: E731
    step = Step(probs=probs, features=feats, text=text.float(), scale=tr.scale("train"), labels=b.labels,
                per_image=per_image)
    loss, stats = tr.method.loss(step, ctx)
    return loss, stats, probs


@contextmanager
def learning(params: dict):
    """The parameters learn inside the block (everything is frozen outside it)."""
    for p in params.values():
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params.values():
            p.requires_grad_(False)


def train(tr) -> None:
    """Train ``tr``'s run from where it starts (zero-shot, or a resumed epoch) to its last epoch."""
    cfg, method = tr.config, tr.method
    # evaluating another run on these images: first the base model on them, the zero-shot it is compared with
    zero_shot = tr.evaluate(0) if tr.evaluates is not None else None
    resumed = checkpoint.resume(tr)
    first = tr.begin(resumed, zero_shot)  # evaluate where the run starts: zero-shot, or the resumed epoch
    tr.ctx = ctx = method.prepare(tr.view, first.cos, resumed)
    params = method.params(tr.view) if method.trains else {}
    if not params or resumed.epoch >= cfg.epochs:
        method.infer(tr.view, ctx)  # a training-free method's own predictions (zero-shot: none beyond the first)
        if resumed.epoch == 0 and tr.evaluates is None:  # (an evaluation keeps results, not a model)
            tr.save_checkpoint(ctx, 0)
        return
    groups = [{"params": [p for n, p in params.items() if n.startswith(part)], "lr": lr}
              for part, lr in (("prompt.", cfg.lr_prompt), ("visual.", cfg.lr_visual))]
    optimizer = method.optimizer([g for g in groups if g["params"]], ctx)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=tr.total_steps)
    training = checkpoint.Training(tr, optimizer, schedule, ctx.resumable())
    training.resume(resumed)  # the saved optimizer and schedule state (older runs: plain SGD's fast-forward)
    sync_every = cfg.sync_every or (10 if tr.loaded.device.type == "cuda" else 1)
    with learning(params), StepLog(tr.emit, resumed.epoch * len(tr.batches), tr.total_steps, sync_every) as log:
        tr.features.begin_training(params)
        for epoch in range(resumed.epoch + 1, cfg.epochs + 1):
            torch.manual_seed(cfg.seed * 1000 + epoch)  # a resumed run repeats an uninterrupted one exactly (CPU)
            for b in tr.batches.epoch(epoch):
                tr.stop.check()
                t_step = time.time()
                loss, stats, probs = step_loss(tr, ctx, b)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                schedule.step()
                method.after_step(ctx)
                log.record(epoch, time.time() - t_step, loss=loss.detach(), lr=lr, batch=len(probs),
                           **method.monitor(probs.detach()), **stats)
            log.flush()
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                tr.evaluate(epoch)
            method.end_epoch(tr.view, ctx, epoch)
            if tr.checkpoint_epoch == epoch < cfg.epochs:  # beside the epoch's checkpoint: resume goes on exactly
                training.save(tr, epoch)
    method.end_run(tr.view, ctx)
    training.drop(tr)
