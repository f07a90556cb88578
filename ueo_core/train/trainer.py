"""The ``Trainer``: one run of any method, around the loop. Setup, evaluation, events and the end of a run live
here; the training loop itself is ``loop.py``.

With ``config.run_dir`` set the run writes its folder (see ``runs.py``): the contract between a run and the app.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import errors
from ..config import PROTOCOLS, RunConfig
from ..data import NO_TRUTH, DataError, DecodedCache, ImageDataset, ImageSet, load_data
from ..distributed import is_distributed
from ..embed import params_digest
from ..distributed import rank as dist_rank
from ..methods import get_method
from ..methods.base import Run
from ..metrics import compute_metrics, confidence_histogram, predictions_table
from ..models import LoadedModel, inference_autocast, load_model
from ..prompts import PromptLearner
from ..runs import ZERO_SHOT_PREDICTIONS, RunFolder, write_report
from ..scores import all_scores, score_table
from . import checkpoint
from .check import check
from .events import Cancelled, Emitter, Event, Stop
from .features import feature_source
from .loop import train


@dataclass
class Evaluation:
    epoch: int
    kind: str            # "epoch" (0: zero-shot) or "bma" (CLIPood's moving average)
    metrics: dict
    probs: np.ndarray    # (N, K) softmax under the protocol's evaluation scale
    cos: torch.Tensor    # (N, K) cosine logits
    scores: dict         # {score name: (N,) values} (ueo_core.scores)


@dataclass
class RunResult:
    status: str                       # done / cancelled / error
    metrics_before: dict
    metrics: dict
    probs: Optional[np.ndarray] = None
    run_dir: Optional[Path] = None
    error: Optional[str] = None
    seconds: float = 0.0


class Trainer:
    def __init__(self, config: RunConfig, listeners: tuple = (), loaded: Optional[LoadedModel] = None,
                 image_set: Optional[ImageSet] = None, audience: str = "cli", evaluates: Optional[dict] = None):
        self.config, self.loaded, self.image_set = config, loaded, image_set
        self.given = loaded  # a caller's model (``with_precision`` may copy it: both share the weights)
        self.audience = audience  # who reads the error messages: "cli" (flags) or "app" (where to click)
        self.rank = dist_rank()  # under torchrun only rank 0 writes the run folder and talks to listeners
        # an evaluation of another run's adapted model (``config.resume``) on these images (`eval --run`):
        # {"run": its folder, "method": its method}. Its zero-shot ("before") is of these images, and the run's
        # folder is only read: the evaluation writes a folder of its own.
        self.evaluates = dict(evaluates) if evaluates else None
        # the folder is locked for this run (released when run() ends); a folder holding another run is refused
        # (an evaluation never writes into the run it evaluates, nor into any other)
        self.folder: Optional[RunFolder] = (
            RunFolder(config.run_dir).create(resume=None if self.evaluates else config.resume)
            if config.run_dir and self.rank == 0 else None)
        self.emit = Emitter(self.folder, self.rank, listeners)
        self.stop = Stop()
        self.view = Run(self)  # what the method's hooks see of this run (never the trainer itself)
        # set by setup()
        self.method = self.prompt = self.features = self.batches = None
        self.visual_params: list = []        # the image-tower parameters the method adapts (checkpoint keys)
        self.train_set = self.eval_set = None
        self.truth: Optional[np.ndarray] = None   # ground-truth labels (-1: unknown), with class sub-folders
        self.known: Optional[torch.Tensor] = None  # (N,) truth known/unknown on the device
        self.seen: Optional[list[int]] = None     # labelled sources: the prior classes trained on
        self.total_steps = 0
        # set as the run goes
        self.ctx = None                           # the method's context (its prepare hook)
        self.latest: Optional[Evaluation] = None  # the latest evaluation
        self.last_features: Optional[torch.Tensor] = None  # (N, D) image features of the latest evaluation pass
        self.metrics_before: dict = {}            # zero-shot metrics
        self.outcome: dict = {}                   # extra entries of metrics.json (CLIPood: its last model's)
        self.checkpoint_epoch: Optional[int] = None

    # ---------------------------------------------------------------- plumbing
    @property
    def listeners(self) -> list[Callable[[Event], None]]:
        return self.emit.listeners

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        self.emit.listeners.append(fn)

    def cancel(self) -> None:
        """Stop after the current step (the last epoch's checkpoint is kept)."""
        self.stop.request()

    def scale(self, where: str) -> float:
        """The logit scale of a softmax taken in ``where`` ("train", "weights", "eval") under the run's protocol
        (config.PROTOCOLS): the model's own, or the official code's fixed one."""
        fixed = PROTOCOLS[self.config.protocol][where]
        return float(self.loaded.logit_scale if fixed is None else fixed)

    def progress_reporter(self, phase: str) -> Callable[[int, int], None]:
        """A callback for long passes that are not steps (evaluation, caching): 'progress' events."""
        return lambda done, total: self.emit("progress", phase=phase, done=done, total=total)

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        cfg = self.config.validate()  # every option checked before anything is loaded or written
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2 ** 32))
        if self.image_set is None:
            if not cfg.data:
                raise DataError("No data folder given.")
            self.image_set = load_data(cfg.data, prior=cfg.prior, preset=cfg.preset, setting=cfg.setting)
        self.method = get_method(cfg.method)
        if self.loaded is None:
            self.loaded = load_model(cfg.model, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint,
                                     device=cfg.device, seed=cfg.seed, precision=cfg.precision)
        self.loaded = self.loaded.with_precision(cfg.precision)  # a given model: this run's inference precision
        check(cfg, self.method, self.loaded, self.image_set, is_distributed())
        model, ims = self.loaded.model, self.image_set
        model.eval()  # always: BatchNorm statistics stay frozen, as in the official code
        if self.loaded.channels_last:
            model.visual.to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self.prompt = PromptLearner(self.loaded, ims.classes, cfg.template).to(self.loaded.device)
        cache = DecodedCache(max_side=4 * self.loaded.image_size) if cfg.cache_images else None
        # the evaluation decodes each file as the feature store's other passes do (for the model's input), so
        # that its features are theirs (embed.image_features)
        self.eval_set = ImageDataset(ims.files, self.loaded.preprocess, cache, min_side=self.loaded.image_size)
        self.train_set = ImageDataset(ims.files, self.loaded.train_transform(tuple(cfg.crop_scale)), cache)
        self.truth = ims.labels if ims.has_truth else None
        self.known = torch.as_tensor(ims.labels >= 0, device=self.loaded.device) if ims.has_truth else None
        self.features = feature_source(self)
        self.visual_params = self.features.select(self.method.visual_params(model.visual))
        self.tower_base = params_digest(dict(self.visual_params))  # the tower as loaded (feature_variant)
        self.batches = self.method.batches(self.view)
        self.seen = self.batches.seen
        self.total_steps = cfg.epochs * len(self.batches) if self.method.trains else 0

    def summary(self) -> dict:
        ims = self.image_set
        return {"model": self.loaded.describe(), "data": ims.summary(), "classes": ims.classes,
                "n_images": len(ims), "n_skipped": len(ims.skipped), "has_truth": ims.has_truth,
                "warnings": list(ims.warnings),
                "trainable_parameters": sum(p.numel() for p in self.method.params(self.view).values())
                if self.method.trains else 0,
                "steps_per_epoch": len(self.batches), "total_steps": self.total_steps,
                "prompts": self.prompt.prompts, "truncated_context": self.prompt.length,
                **({"evaluates": self.evaluates} if self.evaluates else {}), **self.method.describe(self.view)}

    # ---------------------------------------------------------------- evaluation
    def feature_variant(self, epoch: int, kind: str = "epoch") -> Optional[str]:
        """Under which variant an evaluation's features go to the feature store (``embed.image_features``): the
        model's own (``loaded.variant``, "" for its weights) while nothing in the tower has learned, so a run's
        zero-shot pass and its frozen-tower evaluations are every other pass's on these images; the tower's digest
        for the run's last evaluation (and an evaluation of a run on other photos), the adapted features Explore,
        sort and search ask for next (``apply_state`` keys them alike); None in between (features of a tower still
        learning are not kept)."""
        now = self._adapted_tower()
        if now is None:
            return self.loaded.variant
        last = epoch == self.config.epochs or self.evaluates is not None  # (an evaluation's tower never learns)
        return now if kind == "epoch" and last else None

    def _adapted_tower(self) -> Optional[str]:
        """The digest of the adapted image-tower parameters, or None while they are as loaded."""
        now = params_digest(dict(self.visual_params))
        return None if now == self.tower_base else now

    @torch.no_grad()
    def cosine_logits(self, phase: str = "evaluating", variant: Optional[str] = None) -> torch.Tensor:
        feats = self.last_features = self.features.evaluate(self.progress_reporter(phase), variant)
        with inference_autocast(self.loaded):
            text = self.prompt().float()
        return feats @ text.T

    def evaluate(self, epoch: int, kind: str = "epoch", outputs: Optional[tuple] = None) -> Evaluation:
        """Metrics, histogram and an event of the model as it is now, or of ``outputs`` = (cosine logits, softmax):
        a training-free method's own predictions (ZERO's votes, TDA's cache-adapted logits)."""
        what = "zero-shot" if epoch == 0 else ("moving average" if kind == "bma" else f"epoch {epoch}")
        if outputs is None:
            cos = self.cosine_logits(f"evaluating {what}", self.feature_variant(epoch, kind))
            probs = torch.softmax(self.scale("eval") * cos, dim=1).cpu().numpy()
        else:
            cos, probs = outputs
        metrics = compute_metrics(probs, self.truth, self.config.threshold, seen=self.seen, split=self.config.split)
        # every known/unknown score, once: for metrics.json (beside the default: MSP is metrics["auroc"]) and for
        # the predictions' score columns
        scores = all_scores(cos.cpu().numpy(), probs, self.scale("eval"), self.config.mcm_temperature)
        if self.truth is not None:
            labelled = self.truth != NO_TRUTH
            metrics["scores"] = score_table({k: v[labelled] for k, v in scores.items()}, self.truth[labelled])
        hist = confidence_histogram(probs.max(axis=1), self.truth)
        self.latest = Evaluation(epoch, kind, metrics, probs, cos, scores)
        self.emit(kind, epoch=epoch, metrics=metrics, histogram=hist, probs=probs,
                  class_shares=metrics["class_shares"], collapsed=metrics["collapsed"])
        return self.latest

    def begin(self, resumed: checkpoint.Resumed, zero_shot: Optional[Evaluation] = None) -> Evaluation:
        """Evaluate where the run starts; a new run keeps that as its zero-shot ("before") metrics and
        predictions, a resumed one the zero-shot metrics of the run it continues. An evaluation of another run
        keeps ``zero_shot``, the pass over its own images before that run's parameters were loaded: the run's
        zero-shot figures are of other images."""
        fresh = zero_shot is not None and resumed.epoch == 0  # nothing adapted was loaded: the same pass
        first = zero_shot if fresh else self.evaluate(resumed.epoch)
        before = zero_shot if zero_shot is not None else (first if resumed.epoch == 0 else None)
        self.metrics_before = before.metrics if before is not None else resumed.zero_shot
        if before is not None and self.folder is not None:  # the zero-shot predictions, for "before" views
            self.folder.write_predictions(self._predictions(before), ZERO_SHOT_PREDICTIONS)
        return first

    def save_checkpoint(self, ctx, epoch: int) -> None:
        path = checkpoint.save(self, ctx, epoch)
        if path is not None:
            self.checkpoint_epoch = epoch
            self.emit("checkpoint", epoch=epoch, path=str(path))

    # ---------------------------------------------------------------- the run
    def run(self) -> RunResult:
        t0 = time.time()
        try:
            self.setup()
            summary = self.summary()
            if self.folder is not None:
                self.folder.write_json("config.json", {**self.config.to_dict(), "summary": summary})
                self.folder.write_skipped(self.image_set.skipped)
            self.emit("start", config=self.config.to_dict(), **summary)
            train(self)
            return self._done(t0, summary)
        except Cancelled:
            self._finish_stopped(t0)
            self.emit("cancelled", seconds=time.time() - t0)
            return RunResult("cancelled", self.metrics_before, self.latest.metrics if self.latest else {},
                             run_dir=self.folder and self.folder.path, seconds=time.time() - t0)
        except Exception as err:
            message = errors.remember(err, errors.explain(
                err, self.audience, self.config.batch_size, self.folder and self.folder.checkpoint_path,
                unknown="The run failed: "))
            self.emit("error", message=message, traceback=traceback.format_exc())
            raise
        finally:
            self._settle_variant()
            if self.folder is not None:
                self.folder.close()

    def _settle_variant(self) -> None:
        """A model trained in place names its tower's new state (``loaded.variant``), so that whoever uses it
        next (another run given the same model) never reads the feature store's entries of its old weights."""
        if getattr(self, "visual_params", None) and self.loaded is not None:
            now = self._adapted_tower()
            if now is not None:
                for m in {id(x): x for x in (self.loaded, self.given) if x is not None}.values():
                    m.variant = now

    def _done(self, t0: float, summary: dict) -> RunResult:
        """The end: metrics.json, predictions.csv and the report, from the last evaluation."""
        seconds, final = time.time() - t0, self.latest
        if self.folder is not None:
            self._write_outcome(final, seconds, **self.outcome,
                                **({"evaluates": self.evaluates} if self.evaluates else {}))
            write_report(self.folder, self.config.to_dict(), self.metrics_before, final.metrics,
                         {**summary, "seconds": seconds})
        self.emit("done", metrics=final.metrics, metrics_before=self.metrics_before, seconds=seconds,
                  run_dir=str(self.folder.path) if self.folder else None)
        return RunResult("done", self.metrics_before, final.metrics, probs=final.probs,
                         run_dir=self.folder and self.folder.path, seconds=seconds)

    def _finish_stopped(self, t0: float) -> None:
        """A stopped run keeps what its last checkpoint holds: when the last evaluation is of the same epoch, its
        metrics (with ``stopped_at_epoch``) and predictions are written, so the run can be explored and inspected
        like a finished one. Stopped before its first epoch ended, there is nothing adapted to keep."""
        ck, last = self.checkpoint_epoch, self.latest
        if self.folder is None or not ck or last is None or last.epoch != ck or last.kind != "epoch":
            return
        self._write_outcome(last, time.time() - t0, stopped_at_epoch=ck, epochs_planned=self.config.epochs)

    def _predictions(self, ev: Evaluation) -> list[dict]:
        ims = self.image_set
        return predictions_table(ims.files, ev.probs, ims.classes, ims.folder_names, ev.metrics["threshold"],
                                 ev.scores)

    def _write_outcome(self, ev: Evaluation, seconds: float, **extra) -> None:
        """metrics.json (before, after, seconds, protocol and ``extra``) and predictions.csv at the threshold of
        ``ev``: what Explore, Inspect and Compare read, for a finished run and a stopped one alike."""
        self.folder.write_json("metrics.json", {"before": self.metrics_before, "after": ev.metrics,
                                                "seconds": seconds, "protocol": self.config.protocol, **extra})
        self.folder.write_predictions(self._predictions(ev))
