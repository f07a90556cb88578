"""The method interface: an objective plus hooks, each with a default, through which a method owns how it differs.

A method is a small objective: given one training step (``Step``: the batch's softmax outputs, features and text)
and its own context (``Context``, from its ``prepare``: UEO's zero-shot weights, CLIPood's seen classes and moving
average, and its option values) it returns a loss to minimise plus numbers worth plotting. The loop
(``ueo_core/train/loop.py``) does everything else, and asks the method, through the hooks below, for what is its
own: its default settings (``defaults``, as a timm registry entry carries its own), its options (``options``: each
declared once, ``methods/options.py``), which parameters learn (``params``), its optimizer, its context, its data
(``batches``) and what happens after each step, epoch and run. The defaults below are UEO's and its baselines'.
The hooks receive ``run``, a ``Run``: what a method may use of its run (the config, the model and prompt, the
images, the batches, and what it may do: evaluate, save a checkpoint, report progress), never the trainer itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
import torch.nn as nn

from .options import Option

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
class Step:
    """One training step as every objective sees it; what is a method's own comes from its ``Context``."""
    probs: torch.Tensor                      # (B, K) softmax(scale * features @ text.T)
    features: torch.Tensor                   # (B, D) normalised image features
    text: torch.Tensor                       # (K, D) the class text features the step used
    scale: float                             # logit scale (temperature)
    labels: Optional[torch.Tensor] = None    # (B,) labelled sources: each image's prior class
    per_image: Callable[[Optional[torch.Tensor]], Optional[torch.Tensor]] = lambda t: None  # a per-target-image
    #   tensor of the run (N, ...) -> this batch's rows (B, ...), gathered over processes under torchrun


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
    """What a method's ``prepare`` hands the loop for one run. A method with more of its own subclasses it in its
    own file (UEO's weights, CLIPood's moving average)."""
    text: Callable[[], torch.Tensor]          # the class text features a training step uses (default: the prompt)
    options: Any = None                       # the method's option values as attributes (ctx.options.trade)
    known: Optional[torch.Tensor] = None      # (N,) per target image: true known/unknown (with ground truth)

    def saved(self) -> dict[str, torch.Tensor]:
        """Tensors the run's checkpoints keep beside the learnt parameters, for ``prepare`` to find on resume."""
        return {}

    def resumable(self) -> Any:
        """Something with ``state_dict``/``load_state_dict``/``plan`` kept beside the optimizer's state between
        epochs (CLIPood's moving average), or None."""
        return None


class Run:
    """What a method's hooks may use of the run they are called for, and nothing else: the trainer
    (``ueo_core/train/trainer.py``) hands its hooks this view, never itself, so that a hook cannot reach into the
    trainer's feature source, folder or state, nor call back into the loop.

    Fixed for the run: ``config``; the model (``loaded``, ``prompt``, ``visual_params``: the image-tower parameters
    the method adapts; ``tower_learns``: whether they can, false in the prompt-only fast mode; ``scale(where)``: the
    protocol's logit scale); the images (``image_set``; ``eval_set`` and ``train_set``: the same files as datasets,
    evaluation and training views; ``known``: the truth per image, or None). As the run goes: ``batches`` and
    ``total_steps`` (from the method's ``batches`` hook), ``last_features`` and ``latest`` (the latest evaluation's
    features and result), ``outcome`` (extra entries of metrics.json). What a hook may do: ``evaluate``,
    ``save_checkpoint``, ``emit`` (events, e.g. progress), ``stop.check()`` (raise when the user stopped the run),
    ``target_batches()`` (the target folder's training batches, as the loop would take them).
    """
    __slots__ = ("_tr",)
    NAMES = ("config", "loaded", "prompt", "visual_params", "tower_learns", "scale", "image_set", "eval_set",
             "train_set", "known", "batches", "total_steps", "last_features", "latest", "outcome", "evaluate",
             "save_checkpoint", "emit", "stop", "target_batches")

    def __init__(self, trainer):
        object.__setattr__(self, "_tr", trainer)

    def __getattr__(self, name: str):
        if name not in Run.NAMES:
            raise AttributeError(f"A method's hooks see only {', '.join(Run.NAMES)}; not '{name}'.")
        tr = object.__getattribute__(self, "_tr")
        if name == "tower_learns":
            return tr.features.trains_tower
        if name == "target_batches":
            return lambda: tr.features.batches(tr)
        return getattr(tr, name)

    def __setattr__(self, name, value):
        raise AttributeError("A method's hooks read the run; they keep their own state in their context.")


# UEO and its baselines: tim-learn/UEO demo.py --epochs 50 --bs 64 --plr/--vlr 1e-4, one pass over the target per
# epoch (iters_per_epoch unused)
UEO_DEFAULTS = {"epochs": 50, "batch_size": 64, "lr_prompt": 1e-4, "lr_visual": 1e-4}
# lambda of the marginal-entropy term: UEO's, the oracle's and IM's own option
TRADE = Option("trade", 1.0, "lambda, the weight of the marginal-entropy term", lo=0.0, hi=1000.0,
               label="λ (marginal entropy weight)", official=1.0, source="tim-learn/UEO demo.py --trade")


class Method:
    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    plain: ClassVar[str]                     # its name inside a sentence ("entropy minimisation (TENT)", "the
    #   oracle"): the lesson's and the verdicts' one table of method names
    trains: ClassVar[bool] = True
    adapts_in_stream: ClassVar[bool] = False  # a test-time method (trains False) that updates the model image by
    #   image as the images stream by (ROSITA, UniEnt); ZERO and TDA change no parameter
    needs_weights: ClassVar[bool] = False
    needs_truth: ClassVar[bool] = False
    supervised: ClassVar[bool] = False       # trains on labelled source folders (config.source)
    trains_prompt: ClassVar[bool] = True     # the CoOp context vectors learn
    trains_visual: ClassVar[str] = "norm"    # "norm": norm-layer affine params; "all": the whole image tower
    lesson: ClassVar[str] = ""               # "core": one of the lesson's runs; "extended": added by the extended
    #   lesson (the field's methods); "": not in the lesson (CLIPood needs labelled sources)
    options: ClassVar[tuple] = ()            # its own settings (methods/options.Option): RunConfig.options holds
    #   their values; the CLI's flags, the Adapt page's widgets, the validation and the docs are made from these
    defaults: ClassVar[dict] = UEO_DEFAULTS  # the method's official settings: RunConfig fills unset fields from them

    def loss(self, step: Step, ctx: Context) -> tuple[torch.Tensor, dict]:
        """(loss to minimise, numbers worth plotting as detached 0-d tensors: the trainer reads them in bulk, so a
        GPU step needs no host-device synchronisation)."""
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(o.name for o in cls.options)

    def upgrade(self, former: dict) -> dict:
        """An older run's options, from what were RunConfig fields then (config.FORMER_FIELDS): those it declares."""
        return {k: v for k, v in former.items() if k in self.option_names()}

    def note(self, cfg) -> str:
        """What the Adapt page says under the settings of a run of this method ("": the app's own advice)."""
        return ""

    @staticmethod
    def monitor(probs: torch.Tensor) -> dict:
        """Unweighted numbers every method logs, comparable across methods (detached 0-d tensors)."""
        with torch.no_grad():
            return {"cond_entropy": entropy(probs).mean(), "marginal_entropy": entropy(probs.mean(dim=0))}

    # ---------------------------------------------------------------- hooks (defaults: UEO and its baselines)
    def visual_params(self, visual: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        """The image-tower parameters the method adapts (and its checkpoint keeps): ``trains_visual``."""
        return list(visual.named_parameters()) if self.trains_visual == "all" else norm_affine_params(visual)

    def params(self, run: Run) -> dict[str, torch.nn.Parameter]:
        """Name -> parameter of everything that learns (names as saved in the checkpoint); a rate of 0 freezes."""
        out = {}
        if self.trains_prompt and run.config.lr_prompt > 0:
            out["prompt.ctx"] = run.prompt.ctx
        if run.config.lr_visual > 0 and run.tower_learns:
            out.update({f"visual.{n}": p for n, p in run.visual_params})
        return out

    def optimizer(self, groups: list[dict], ctx: Context) -> torch.optim.Optimizer:
        return torch.optim.SGD(groups)  # no momentum, no weight decay (official UEO)

    def prepare(self, run: Run, zero_shot_cos: torch.Tensor, resumed) -> Context:
        """The run's context from the zero-shot cosine logits (and, on resume, what the checkpoint restored:
        ``resumed.saved`` holds what the context's ``saved()`` gave)."""
        return Context(text=run.prompt, known=run.known, options=self.option_values(run.config))

    def option_values(self, cfg):
        """This run's option values as attributes (``ctx.options.<name>``)."""
        from .options import namespace
        return namespace(self.options, cfg.options)

    def batches(self, run: Run):
        """The run's training data: the target folder (or its cached views in a fast mode)."""
        return run.target_batches()

    def describe(self, run: Run) -> dict:
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

    def infer(self, run: Run, ctx: Context) -> None:
        """A training-free method's predictions (``run.evaluate(1, outputs=...)``); the default has none."""

    def after_step(self, ctx: Context) -> None:
        pass

    def end_epoch(self, run: Run, ctx: Context, epoch: int) -> None:
        run.save_checkpoint(ctx, epoch)  # every epoch: a stopped run keeps its last one, and resumes from it

    def end_run(self, run: Run, ctx: Context) -> None:
        pass
