"""CLIPood (Shu et al., ICML 2023): supervised fine-tuning of the image tower on labelled source domains.

Margin metric softmax (MMS), as the official code (thuml/CLIPood engine.py) computes it: with the normalised image
feature f, the fixed class text features t and the label y,

    logits = s * (f - lambda * t_y) @ t.T        ->  cross-entropy

so class j's logit is s*(cos(f, t_j) - lambda*cos(t_y, t_j)): relative to the true class it gets a margin
lambda*(1 - cos(t_y, t_j)) — small for classes whose names are similar to the true one, large for dissimilar ones.

Beta moving average (BMA): the running average of the image tower's weights over all steps t = 0..T (0 = before
training), snapshot t weighted by Beta(beta, beta).pdf((t + 0.5) / (T + 1)); the averaged model is the result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta as beta_dist

from ..data import DataError, ImageDataset, load_data
from ..models import check_training_memory, inference_autocast
from . import register
from .base import Context, Method, Step, TrainBatch, epoch_generator
from .options import Option


def mms_logits(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, scale: float,
               margin: float) -> torch.Tensor:
    """Margin metric softmax logits. features (B, D) and text (K, D) L2-normalised; labels (B,) in 0..K-1."""
    return scale * (features - margin * text[labels]) @ text.T


@register
class CLIPood(Method):
    """Differs from UEO in every hook: labelled source batches, the whole tower, AdamW, fixed text over the seen
    classes, a moving average after each step, and checkpoints of the live tower after each epoch (to resume from;
    optimizer.pt holds the optimizer's state and the average so far) and of the average at the end."""
    name = "clipood"
    label = "CLIPood (supervised, labelled source)"
    plain = "CLIPood"
    description = ("Fine-tune the whole image tower on labelled source folders with margin metric softmax, "
                   "and keep a Beta moving average of its weights (needs labelled source folders).")
    supervised = True          # trains on labelled source images, evaluates on the target folder
    trains_prompt = False      # text features stay fixed (the class prompts)
    trains_visual = "all"      # every image-tower parameter (the model stays in eval mode: norm statistics frozen)
    # thuml/CLIPood: scripts.sh's PACS line "-b 12 --lr 5e-6 --epochs 10" (batch_size is per source domain; the
    # prompt is not trained)
    defaults = {"epochs": 10, "batch_size": 12, "lr_prompt": 0.0, "lr_visual": 5e-6}
    options = (
        Option("margin", 0.3, "lambda of the margin metric softmax (class-adaptive margin)", lo=0.0, hi=100.0,
               label="Margin λ (CLIPood)", official=0.3, source="thuml/CLIPood main.py --lam"),
        Option("bma_beta", 0.5, "Beta(beta, beta) weights of the moving average", lo=0.0, hi=1000.0, lo_open=True,
               label="Moving average β", official=0.5, source="thuml/CLIPood main.py --beta"),
        Option("weight_decay", 0.1, "AdamW weight decay", lo=0.0, hi=100.0, label="Weight decay", official=0.1,
               source="thuml/CLIPood main.py --wd"),
        Option("iters_per_epoch", 500, "steps per epoch, one batch from each source folder a step; 0: one pass over "
               "the largest source folder", kind=int, lo=0, hi=10_000_000, label="Steps per epoch", official=500,
               source="thuml/CLIPood main.py --iters-per-epoch"))

    def loss(self, step: Step, ctx: "ClipoodContext"):
        labels = ctx.label_index[step.labels].to(step.features.device)  # prior class -> row of the seen classes
        logits = mms_logits(step.features, step.text, labels, step.scale, ctx.options.margin)
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            acc = (step.probs.argmax(1) == labels).float().mean()
        return loss, {"train_acc": acc}

    def upgrade(self, former: dict) -> dict:
        out = super().upgrade(former)
        if "iters_per_epoch" in out and out["iters_per_epoch"] is None:
            out["iters_per_epoch"] = 0  # saved before the default became the official 500: None meant one pass
        return out

    def note(self, cfg) -> str:
        o = cfg.options
        return (f"CLIPood's official settings for PACS-like shifts (thuml/CLIPood): AdamW lr {cfg.lr_visual:g}, "
                f"weight decay {o['weight_decay']:g}, batch {cfg.batch_size} per source domain, {cfg.epochs} epochs "
                f"of {o['iters_per_epoch']} steps, lambda {o['margin']:g}, Beta({o['bma_beta']:g}, "
                f"{o['bma_beta']:g}) moving average. {cfg.epochs * o['iters_per_epoch']:,} steps of the whole image "
                "tower take a while on a CPU: fewer steps per epoch make a quick (non-official) run.")

    def optimizer(self, groups, ctx):
        return torch.optim.AdamW(groups, weight_decay=ctx.options.weight_decay)  # official CLIPood

    def batches(self, run):
        if not run.config.source:
            raise DataError(f"{self.label} trains on labelled source folders: give at least one "
                            f"(class-per-folder, e.g. --source shapes:flat).")
        return SourceBatches.load(run)

    def describe(self, run):
        return {"source_images": run.batches.sizes, "seen_classes": [run.image_set.classes[k] for k in run.batches.seen]}

    def prepare(self, run, zero_shot_cos, resumed) -> Context:
        """Training logits range over the seen classes (prior classes with source images), on fixed text."""
        dev, seen = run.loaded.device, torch.as_tensor(run.batches.seen)
        with torch.no_grad(), inference_autocast(run.loaded):
            text = run.prompt().float()[seen.to(dev)]
        index = torch.full((len(run.image_set.classes),), -1, dtype=torch.long)
        index[seen] = torch.arange(len(seen))
        options = self.option_values(run.config)
        average = BetaMovingAverage(dict(run.visual_params), run.total_steps, options.bma_beta)
        return ClipoodContext(text=lambda: text, options=options, label_index=index, averager=average)

    def after_step(self, ctx):
        ctx.averager.update()

    def end_epoch(self, run, ctx, epoch):
        if epoch < run.config.epochs:  # the live tower, to resume from (optimizer.pt holds the average so far);
            run.save_checkpoint(ctx, epoch)  # the last checkpoint is the moving average (end_run)

    def end_run(self, run, ctx):
        """The result is the Beta moving average; the last model is reported beside it."""
        run.outcome["last"] = run.latest.metrics
        ctx.averager.swap()
        run.evaluate(run.config.epochs, kind="bma")
        run.save_checkpoint(ctx, run.config.epochs)


@dataclass
class ClipoodContext(Context):
    label_index: Optional[torch.Tensor] = None  # prior class -> row of ``text`` (the seen classes)
    averager: Any = None                        # the Beta moving average of the image tower

    def resumable(self):
        return self.averager


class BetaMovingAverage:
    """Weighted running average of parameters; snapshot t has weight Beta(b, b).pdf((t + 0.5) / (T + 1)).

    ``update()`` after each optimisation step folds in the current values; the initial values (t = 0) are folded
    in at construction, as in the official code.
    """

    def __init__(self, params: dict[str, torch.Tensor], total_steps: int, beta: float = 0.5):
        self.params = params
        self.total = total_steps
        self.dist, self.beta = beta_dist(beta, beta), beta
        self.t = 0
        self.weight_sum = self.weight(0)
        self.avg = {k: p.detach().clone() for k, p in params.items()}

    def weight(self, t: int) -> float:
        return float(self.dist.pdf((t + 0.5) / (self.total + 1)))

    @torch.no_grad()
    def update(self) -> None:
        self.t += 1
        w = self.weight(self.t)
        rel = w / self.weight_sum
        for k, p in self.params.items():
            self.avg[k].mul_(1 / (1 + rel)).add_(p.detach(), alpha=rel / (1 + rel))
        self.weight_sum += w

    def plan(self) -> dict:
        """What a saved average is only valid for (a resumed run's must match)."""
        return {"total": self.total, "beta": self.beta}

    def state_dict(self) -> dict:
        return {"t": self.t, "weight_sum": self.weight_sum, "avg": self.avg}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Continue a resumed run's average where it was (its steps so far and their weights)."""
        self.t, self.weight_sum = int(state["t"]), float(state["weight_sum"])
        for k, v in state["avg"].items():
            self.avg[k].copy_(v)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the live parameters with the averaged ones (call again to swap back)."""
        for k, p in self.params.items():
            tmp = p.detach().clone()
            p.copy_(self.avg[k])
            self.avg[k].copy_(tmp)


class SourceBatches:
    """One batch from each labelled source domain per step (official CLIPood), cycling each as needed; ``seen``
    lists the prior classes with training images (training logits range over these only)."""

    def __init__(self, sets: list[ImageDataset], labels: list[torch.Tensor], cfg, device: torch.device):
        self.sets, self.labels, self.cfg, self.device = sets, labels, cfg, device
        self.sizes = [len(d) for d in sets]
        self.seen = sorted(set(torch.cat(labels).tolist()))

    @classmethod
    def load(cls, run) -> "SourceBatches":
        """Images of prior classes from each ``config.source`` folder, labels from the folder names."""
        cfg, transform, sets, labels = run.config, run.train_set.transform, [], []
        for spec in cfg.source:
            src = load_data(spec, prior=run.image_set.classes)
            if not src.has_truth:
                raise DataError(f"Source folder {spec} has no class sub-folders, so it has no labels to train on.")
            keep = np.where(src.labels >= 0)[0]
            if not len(keep):
                raise DataError(f"Source folder {spec} holds none of the known classes {run.image_set.classes}.")
            sets.append(ImageDataset([src.files[i] for i in keep], transform, run.train_set.cache))
            labels.append(torch.as_tensor(src.labels[keep]))
        check_training_memory(run.loaded, cfg.batch_size * len(sets))
        return cls(sets, labels, cfg, run.loaded.device)

    def __len__(self) -> int:
        return self.cfg.options["iters_per_epoch"] or math.ceil(max(self.sizes) / self.cfg.batch_size)

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        cfg, gen = self.cfg, epoch_generator(self.cfg, epoch)
        loader = lambda ds: torch.utils.data.DataLoader(  # noqa: E731
            ds, batch_size=cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda")
        iters = [iter(loader(ds)) for ds in self.sets]
        for _ in range(len(self)):
            images, labels = [], []
            for d, ds in enumerate(self.sets):
                try:
                    x, idx = next(iters[d])
                except StopIteration:
                    iters[d] = iter(loader(ds))
                    x, idx = next(iters[d])
                images.append(x)
                labels.append(self.labels[d][idx])
            yield TrainBatch(images=torch.cat(images), labels=torch.cat(labels))
