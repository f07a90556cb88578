"""What a run will cost on this device: the chosen method's real training step, timed once, extrapolated."""
from __future__ import annotations

import time

import torch

from ..config import RunConfig
from ..data import ImageSet
from ..models import LoadedModel, autocast
from .checkpoint import Resumed
from .features import encode_images
from .loop import learning, step_loss
from .trainer import Trainer


def estimate_run(config: RunConfig, loaded: LoadedModel, image_set: ImageSet) -> dict:
    """Time one training step of ``config``'s method as the loop takes it (its batches: decode + augment; its
    forward, loss and backward; no update) and one evaluation batch, and extrapolate to the whole run (the
    method's own steps per epoch: one pass over the target, or CLIPood's iters_per_epoch) and its passes over the
    images (an evaluation per epoch; ZERO: one per view). The model's weights are left untouched. A fast mode is
    timed as the full step it approximates: an upper bound."""
    cfg = config.replace(run_dir=None, resume=None, fast_mode=None)
    tr = Trainer(cfg, loaded=loaded, image_set=image_set)
    tr.setup()
    dev, n = loaded.device, min(cfg.batch_size, len(image_set))
    # the context without a zero-shot pass: UEO's weights from uniform logits (their values do not change the cost)
    ctx = tr.method.prepare(tr.view, torch.zeros(len(image_set), len(image_set.classes), device=dev), Resumed())
    params = tr.method.params(tr.view) if tr.method.trains else {}
    step = 0.0
    try:
        with learning(params):
            with torch.no_grad(), autocast(dev):  # warm-up: first calls pay one-off kernel/setup costs
                encode_images(loaded, torch.utils.data.Subset(tr.eval_set, range(min(n, 2))), 2)
                tr.prompt()
            if params:
                t0 = time.time()
                loss, _, _ = step_loss(tr, ctx, next(iter(tr.batches.epoch(1))))
                loss.backward()
                step = time.time() - t0
    finally:
        for p in params.values():
            p.grad = None
    t1 = time.time()
    encode_images(loaded, torch.utils.data.Subset(tr.eval_set, range(n)), n)
    eval_seconds = (time.time() - t1) / n * len(image_set)
    steps = tr.total_steps
    return {"method": cfg.method, "images": len(image_set), "epochs": cfg.epochs, "batch": cfg.batch_size,
            "steps": steps, "seconds_per_step": step, "eval_seconds": eval_seconds,
            "passes": tr.method.passes(cfg), "minutes": (steps * step + tr.method.passes(cfg) * eval_seconds) / 60}
