"""The method interface: an objective plus hooks, each with a default, through which a method owns how it differs.

A method is a small objective: given the softmax outputs of a batch (and per-image context such as the UEO
confidence weights) it returns a loss to minimise plus numbers worth plotting. The loop (``ueo_core/train/loop.py``)
does everything else, and asks the method, through the hooks below, for what is its own: its default settings
(``defaults``, as a timm registry entry carries its own), which parameters learn (``params``), its optimizer, its
context (``prepare``: UEO's zero-shot weights; CLIPood's seen classes, frozen text and moving average), its data
(``batches``) and what happens after each step, epoch and run. The defaults below are UEO's and its baselines'.
The hooks receive ``tr``, the run's ``Trainer`` (``ueo_core/train/trainer.py``): its config, model, prompt,
feature source and image set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
import torch.nn as nn

# The official UEO code adds 1e-5 inside the log (loss_entropy / loss_entropy_wei); we keep it so losses match.
EPS = 1e-5
# What the reports (metrics.json, predictions.csv) use instead: only a guard against log(0), so the numbers they
# show are Shannon's entropy itself (to 1e-9), not the objective's slightly smaller one.
REPORT_EPS = 1e-12


def entropy(p, eps: float = EPS):
    """Entropy along the last dim, -sum p log(p + eps): (N,K) -> (N,), (K,) -> (). The project's one entropy:
    the objectives, the metrics (``eps=REPORT_EPS``) and the Learn page all call it. A torch tensor gives a tensor
    (differentiable); anything else is read as a float64 numpy array and gives one."""
    if isinstance(p, torch.Tensor):
        return -(p * torch.log(p + eps)).sum(dim=-1)
    p = np.asarray(p, dtype=np.float64)
    return -(p * np.log(p + eps)).sum(axis=-1)


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum()


def weighted_marginal(p: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_i weight_i p_i / sum_i weight_i: the (weighted) mean prediction over the batch."""
    return (weight.unsqueeze(1) * p).sum(dim=0) / weight.sum()


def confidence_weights(cos_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """UEO's per-image weight: max softmax of the zero-shot logits, temperature * cosine similarity.

    The paper uses the model's logit scale (100 for OpenAI CLIP); the official code passes the raw cosines
    (temperature 1), which makes the weights almost uniform (about 1/K). Both are available: see RunConfig.
    """
    return torch.softmax(temperature * cos_logits.float(), dim=1).max(dim=1).values


@dataclass
class Batch:
    """What an objective may use besides the predictions."""
    probs: torch.Tensor                     # (B, K) softmax(logit_scale * cos)
    weights: Optional[torch.Tensor] = None  # (B,) zero-shot max-softmax confidence (UEO)
    known: Optional[torch.Tensor] = None    # (B,) ground truth known (1) / unknown (0), oracle only
    trade: float = 1.0                      # lambda, weight of the marginal-entropy term
    # supervised methods (CLIPood)
    features: Optional[torch.Tensor] = None  # (B, D) normalised image features
    text: Optional[torch.Tensor] = None      # (K, D) normalised text features of the trained classes
    labels: Optional[torch.Tensor] = None    # (B,) class index into ``text``
    scale: float = 100.0                     # logit scale (temperature)
    margin: float = 0.3                      # CLIPood's lambda


@dataclass
class TrainBatch:
    """One training step's batch, from a batch source; each field means one thing only."""
    images: Optional[torch.Tensor] = None  # (B, C, H, W) augmented pixels (None: cached features instead)
    index: Optional[torch.Tensor] = None   # (B,) target image indices (None: labelled source images)
    view: Optional[torch.Tensor] = None    # (B,) fast modes: which cached augmented view of each image
    labels: Optional[torch.Tensor] = None  # (B,) labelled sources: prior class of each image


def epoch_generator(cfg, epoch: int) -> torch.Generator:
    """A batch source's random numbers for one epoch, seeded by (seed, epoch): a resumed run repeats an
    uninterrupted one exactly."""
    return torch.Generator().manual_seed(cfg.seed * 1000 + epoch)


NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def norm_affine_params(visual: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The affine weight and bias of every normalisation layer of the image tower, selected by module type.

    The official code selects parameters whose *name* contains 'bn' or 'ln'. For OpenAI's ViTs that is the same set;
    for ResNets it misses the BatchNorm inside each ``downsample`` branch (named ``downsample.1``) and would pick any
    unrelated parameter whose name merely contains those letters. Selecting by type is what the paper describes.
    """
    out = []
    for mname, module in visual.named_modules():
        if isinstance(module, NORM_TYPES):
            for pname, p in module.named_parameters(recurse=False):
                out.append((f"{mname}.{pname}" if mname else pname, p))
    return out


@dataclass
class Context:
    """What a method's ``prepare`` hands the loop for one run: fixed per-image and per-class context."""
    text: Callable[[], torch.Tensor]          # the class text features a training step uses (default: the prompt)
    weights: Optional[torch.Tensor] = None    # (N,) per target image: UEO's zero-shot confidences
    known: Optional[torch.Tensor] = None      # (N,) per target image: true known/unknown (with ground truth)
    label_index: Optional[torch.Tensor] = None  # prior class -> row of ``text`` (CLIPood: the seen classes)
    averager: Any = None                      # CLIPood: the Beta moving average of the image tower
    extra: dict = field(default_factory=dict)


# UEO and its baselines: tim-learn/UEO demo.py --epochs 50 --bs 64 --plr/--vlr 1e-4, one pass over the target per
# epoch (iters_per_epoch unused)
UEO_DEFAULTS = {"epochs": 50, "batch_size": 64, "lr_prompt": 1e-4, "lr_visual": 1e-4, "iters_per_epoch": None}


class Method:
    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    plain: ClassVar[str]                     # its name inside a sentence ("entropy minimisation (TENT)", "the
    #   oracle"): the lesson's and the verdicts' one table of method names
    trains: ClassVar[bool] = True
    needs_weights: ClassVar[bool] = False
    needs_truth: ClassVar[bool] = False
    supervised: ClassVar[bool] = False       # trains on labelled source folders (config.source)
    trains_prompt: ClassVar[bool] = True     # the CoOp context vectors learn
    trains_visual: ClassVar[str] = "norm"    # "norm": norm-layer affine params; "all": the whole image tower
    uses: ClassVar[tuple] = ()               # the RunConfig options the objective reads (trade, weight_temperature,
    #   margin); the app offers only these for the method
    defaults: ClassVar[dict] = UEO_DEFAULTS  # the method's official settings: RunConfig fills unset fields from them

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        """(loss to minimise, numbers worth plotting as detached 0-d tensors: the trainer reads them in bulk, so a
        GPU step needs no host-device synchronisation)."""
        raise NotImplementedError

    @staticmethod
    def monitor(probs: torch.Tensor) -> dict:
        """Unweighted numbers every method logs, comparable across methods (detached 0-d tensors)."""
        with torch.no_grad():
            return {"cond_entropy": entropy(probs).mean(), "marginal_entropy": entropy(probs.mean(dim=0))}

    # ---------------------------------------------------------------- hooks (defaults: UEO and its baselines)
    def visual_params(self, visual: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        """The image-tower parameters the method adapts (and its checkpoint keeps): ``trains_visual``."""
        return list(visual.named_parameters()) if self.trains_visual == "all" else norm_affine_params(visual)

    def params(self, tr) -> dict[str, torch.nn.Parameter]:
        """Name -> parameter of everything that learns (names as saved in the checkpoint); a rate of 0 freezes."""
        out = {}
        if self.trains_prompt and tr.config.lr_prompt > 0:
            out["prompt.ctx"] = tr.prompt.ctx
        if tr.config.lr_visual > 0 and tr.features.trains_tower:
            out.update({f"visual.{n}": p for n, p in tr.visual_params})
        return out

    def optimizer(self, groups: list[dict], tr) -> torch.optim.Optimizer:
        return torch.optim.SGD(groups)  # no momentum, no weight decay (official UEO)

    def prepare(self, tr, zero_shot_cos: torch.Tensor, resumed) -> Context:
        """The run's context from the zero-shot cosine logits (and, on resume, what the checkpoint restored)."""
        return Context(text=tr.prompt, known=tr.known)

    def batches(self, tr):
        """The run's training data: the target folder (or its cached views in a fast mode)."""
        return tr.features.batches(tr)

    def describe(self, tr) -> dict:
        """What the run summary (config.json, the start event) says besides the common fields."""
        return {}

    def passes(self, cfg) -> int:
        """Image-tower passes over the target images after the zero-shot one (the cost estimate's): one
        evaluation per epoch for a training method, none for zero-shot."""
        return cfg.epochs if self.trains else 0

    def min_images(self, n_classes: int) -> int:
        """The fewest target images this method can say anything about. Every run needs 2: the label-free
        known/unknown threshold splits the images into two groups, and a map needs two points. A method that
        trains on the target (TENT, IM, UEO, the oracle) needs at least one image per known class as well: with
        fewer, its predictions cannot spread over the classes, so the marginal-entropy term has nothing to
        balance and a collapse cannot be told from too few images."""
        return max(2, n_classes) if self.trains and not self.supervised else 2

    def too_few_images(self, n_images: int, n_classes: int) -> Optional[str]:
        """A sentence when ``n_images`` are too few for this method (``min_images``), else None."""
        need = self.min_images(n_classes)
        if n_images >= need:
            return None
        why = (f"one per known class ({n_classes}), so that its predictions can spread over the classes"
               if need > 2 else "two, so that a threshold can split known from unknown")
        return (f"{n_images} image{'s' if n_images != 1 else ''}: too few for {self.label}, which needs at least "
                f"{need} ({why}). Add images before a run.")

    def infer(self, tr, ctx: Context) -> None:
        """A training-free method's predictions (``tr.evaluate(1, outputs=...)``); the default has none."""

    def after_step(self, ctx: Context) -> None:
        pass

    def end_epoch(self, tr, ctx: Context, epoch: int) -> None:
        tr.save_checkpoint(ctx, epoch)  # every epoch: a stopped run keeps its last one, and resumes from it

    def end_run(self, tr, ctx: Context) -> None:
        pass
