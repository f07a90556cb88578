"""One trainer for every method. Read top to bottom: setup, zero-shot evaluation, the loop, the end.

It emits events to any listener (a callable taking an ``Event``): ``start``, ``step``, ``epoch``, ``checkpoint``,
``done``, ``error``, ``cancelled``. The CLI's progress bar and the app's live charts are both listeners, so they can
never disagree. With ``config.run_dir`` set it also writes the run folder (see ``runs.py``).
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from .config import FAST_BLOCKS_MAX, PROTOCOLS, RunConfig
from .data import DataError, DecodedCache, ImageDataset, ImageSet, load_data
from .methods import Batch, confidence_weights, get_method
from .distributed import Encoders, gather, is_distributed, shard, world_size
from .distributed import rank as dist_rank
from .methods.clipood import BetaMovingAverage
from .metrics import compute_metrics, confidence_histogram, predictions_table
from .models import LoadedModel, ModelLoadError, autocast, check_training_memory, load_model
from .prompts import PromptLearner
from .runs import ZERO_SHOT_PREDICTIONS, RunFolder, load_checkpoint, write_report

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


@dataclass
class Event:
    kind: str
    data: dict = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class Cancelled(Exception):
    pass


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


def apply_state(loaded: LoadedModel, tensors: dict[str, torch.Tensor]) -> int:
    """Copy saved ``visual.*`` parameters (norm affine, or the whole tower for CLIPood) into the model's image
    tower; returns how many were set."""
    params = dict(loaded.model.visual.named_parameters())
    n = 0
    with torch.no_grad():
        for name, value in tensors.items():
            if name.startswith("visual.") and name[7:] in params:
                if tuple(value.shape) != tuple(params[name[7:]].shape):
                    raise DataError(f"The checkpoint was made with another model: '{name}' has shape "
                                    f"{tuple(value.shape)}, this model's {tuple(params[name[7:]].shape)}.")
                params[name[7:]].copy_(value.to(params[name[7:]].device, params[name[7:]].dtype))
                n += 1
    return n


def encode_images(loaded: LoadedModel, dataset, batch_size: int, num_workers: int = 0,
                  progress: Optional[Callable[[int, int], None]] = None,
                  fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """L2-normalised image features of a dataset, in order, as float32 on the model's device (or, with ``fn``,
    whatever ``fn`` makes of each input batch: the fast modes cache a frozen part of the tower this way)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    feats, done = [], 0
    with torch.no_grad(), autocast(loaded.device):
        for images, _ in loader:
            x = loaded.to_input(images)
            f = fn(x) if fn is not None else loaded.model.encode_image(x, normalize=True)
            feats.append(f.float())
            done += len(images)
            if progress:
                progress(done, len(dataset))
    return torch.cat(feats)


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
                 image_set: Optional[ImageSet] = None):
        self.config = config
        self.listeners: list[Callable[[Event], None]] = list(listeners)
        self.loaded = loaded
        self.image_set = image_set
        self._cancel = threading.Event()
        self.audience = "cli"  # who reads the error messages: "cli" (flags) or "app" (where to click)
        self.rank = dist_rank()  # under torchrun only rank 0 writes the run folder and talks to listeners
        # the folder is locked for this run (released when run() ends); a folder holding another run is refused
        self.folder: Optional[RunFolder] = (RunFolder(config.run_dir).create(resume=config.resume)
                                            if config.run_dir and self.rank == 0 else None)
        self.prompt: Optional[PromptLearner] = None
        self.visual_params: list[tuple[str, nn.Parameter]] = []
        self.weights: Optional[torch.Tensor] = None
        self.metrics_last: Optional[dict] = None  # CLIPood: the last model, beside the moving average

    # ---------------------------------------------------------------- plumbing
    def add_listener(self, fn: Callable[[Event], None]) -> None:
        self.listeners.append(fn)

    def cancel(self) -> None:
        """Stop after the current step (the last epoch's checkpoint is kept)."""
        self._cancel.set()

    def scale(self, where: str) -> float:
        """The logit scale of a softmax taken in ``where`` ("train", "weights", "eval") under the run's protocol
        (config.PROTOCOLS): the model's own, or the official code's fixed one."""
        fixed = PROTOCOLS[self.config.protocol][where]
        return float(self.loaded.logit_scale if fixed is None else fixed)

    def emit(self, kind: str, **data) -> None:
        if self.rank != 0:
            return
        ev = Event(kind, data)
        if self.folder is not None:
            if kind == "step":
                self.folder.append("steps.jsonl", data)
            elif kind == "epoch":
                self.folder.append("epochs.jsonl", {k: v for k, v in data.items() if k != "probs"})
            elif kind == "progress":  # what a long non-step pass is doing, for the app's progress bar
                self.folder.write_json("status.json", data)
            elif kind == "error":  # the plain sentence, for whoever reads the folder (the app, after a Ray job)
                self.folder.write_json("error.json", {"message": data.get("message")})
        for fn in self.listeners:
            fn(ev)

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
        if self.method.needs_truth and not self.image_set.has_truth:
            raise DataError(f"Method '{cfg.method}' needs ground truth (class sub-folders), and this folder has none.")
        if self.loaded is None:
            self.loaded = load_model(cfg.model, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint,
                                     device=cfg.device, seed=cfg.seed)
        model = self.loaded.model
        model.eval()  # always: BatchNorm statistics stay frozen, as in the official code
        if self.loaded.channels_last:
            model.visual.to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self.prompt = PromptLearner(self.loaded, self.image_set.classes, cfg.template).to(self.loaded.device)
        if self.method.trains_visual == "all":
            self.visual_params = list(model.visual.named_parameters())
        else:
            self.visual_params = norm_affine_params(model.visual)
        if cfg.fast_mode == "last_blocks":
            self._setup_last_blocks()
        if cfg.fast_mode and not (self.method.trains_prompt and self.method.trains and not self.method.supervised):
            raise ValueError(f"The prompt-only fast mode applies to the unsupervised methods, not {cfg.method}.")
        self.cache = DecodedCache(max_side=4 * self.loaded.image_size) if cfg.cache_images else None
        self.eval_set = ImageDataset(self.image_set.files, self.loaded.preprocess, self.cache)
        self.train_set = ImageDataset(self.image_set.files, self.loaded.train_transform(tuple(cfg.crop_scale)),
                                      self.cache)
        self.view_feats: Optional[torch.Tensor] = None  # fast modes: (views, N, ...) outputs of the frozen part
        self.eval_feats: Optional[torch.Tensor] = None  # fast modes: the frozen part's output for evaluation
        self.truth = self.image_set.labels if self.image_set.has_truth else None
        self.seen = None
        if self.method.supervised:
            self._setup_sources()

    def _setup_last_blocks(self) -> None:
        """last_blocks fast mode: only the norm params of the last ``fast_blocks`` ResNet stages (and the prompt)
        train; the stem and earlier stages are frozen, so their outputs for a few augmented views are cached."""
        from open_clip.modified_resnet import ModifiedResNet
        visual = self.loaded.model.visual
        k = self.config.fast_blocks
        if not isinstance(visual, ModifiedResNet):
            raise ValueError("The last_blocks fast mode is implemented for ResNet image towers (RN50, the built-in "
                             "model); use prompt_only for this model.")
        if not 1 <= k <= FAST_BLOCKS_MAX:
            raise ValueError(f"fast_blocks must be 1 to {FAST_BLOCKS_MAX} (ResNet stages trained, counted from the "
                             "last).")
        self.visual_params = [(f"layer{i}.{n}", p) for i in range(5 - k, 5)
                              for n, p in norm_affine_params(getattr(visual, f"layer{i}"))]

    def fast_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part of the image tower in a fast mode (its outputs are cached)."""
        if self.config.fast_mode == "prompt_only":
            return self.loaded.model.encode_image(x, normalize=True)
        visual = self.loaded.model.visual
        x = visual.stem(x)
        for i in range(1, 5 - self.config.fast_blocks):
            x = getattr(visual, f"layer{i}")(x)
        return x

    def fast_head(self, z: torch.Tensor) -> torch.Tensor:
        """The trained part of the image tower in a fast mode, from cached prefix outputs to normalised features."""
        if self.config.fast_mode == "prompt_only":
            return z.float()
        visual = self.loaded.model.visual
        for i in range(5 - self.config.fast_blocks, 5):
            z = getattr(visual, f"layer{i}")(z)
        return torch.nn.functional.normalize(visual.attnpool(z).float(), dim=-1)

    def _setup_sources(self) -> None:
        """Labelled source folders for supervised methods: images of prior classes, labels from folder names."""
        cfg = self.config
        if not cfg.source:
            raise DataError(f"{self.method.label} trains on labelled source folders: give at least one "
                            f"(class-per-folder, e.g. --source shapes:flat).")
        if cfg.resume:
            raise DataError("CLIPood runs cannot be resumed (optimiser and moving-average state are not saved); "
                            "start a new run.")
        transform = self.loaded.train_transform(tuple(cfg.crop_scale))
        self.source_sets, self.source_labels, seen = [], [], set()
        for spec in cfg.source:
            src = load_data(spec, prior=self.image_set.classes)
            if not src.has_truth:
                raise DataError(f"Source folder {spec} has no class sub-folders, so it has no labels to train on.")
            keep = np.where(src.labels >= 0)[0]
            if not len(keep):
                raise DataError(f"Source folder {spec} holds none of the known classes {self.image_set.classes}.")
            self.source_sets.append(ImageDataset([src.files[i] for i in keep], transform, self.cache))
            self.source_labels.append(torch.as_tensor(src.labels[keep]))
            seen |= set(src.labels[keep].tolist())
        self.seen = sorted(seen)  # prior classes with training images; training logits range over these only
        check_training_memory(self.loaded, cfg.batch_size * len(self.source_sets))

    def trainable(self) -> dict[str, nn.Parameter]:
        """Name -> parameter of everything that learns (names as saved in the checkpoint)."""
        out = {}
        if self.method.trains_prompt and self.config.lr_prompt > 0:
            out["prompt.ctx"] = self.prompt.ctx
        if self.config.lr_visual > 0 and self.config.fast_mode != "prompt_only":
            out.update({f"visual.{n}": p for n, p in self.visual_params})
        return out

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def cosine_logits(self, phase: str = "evaluating") -> torch.Tensor:
        cfg = self.config
        report = self.progress_reporter(phase)
        if cfg.fast_mode:  # the frozen part's output is computed once; only the trained head runs again
            if self.eval_feats is None:
                self.eval_feats = encode_images(self.loaded, self.eval_set, cfg.batch_size * 3, cfg.num_workers,
                                                fn=self.fast_prefix, progress=report)
            with autocast(self.loaded.device):
                feats = torch.cat([self.fast_head(z) for z in self.eval_feats.split(cfg.batch_size * 3)])
        else:
            feats = encode_images(self.loaded, self.eval_set, cfg.batch_size * 3, cfg.num_workers, progress=report)
        with autocast(self.loaded.device):
            text = self.prompt().float()
        return feats @ text.T

    def progress_reporter(self, phase: str) -> Callable[[int, int], None]:
        """A callback for long passes that are not steps (evaluation, caching): 'progress' events."""
        return lambda done, total: self.emit("progress", phase=phase, done=done, total=total)

    def evaluate(self, epoch: int, kind: str = "epoch") -> tuple[dict, np.ndarray, torch.Tensor]:
        what = "zero-shot" if epoch == 0 else ("moving average" if kind == "bma" else f"epoch {epoch}")
        cos = self.cosine_logits(f"evaluating {what}")
        probs = torch.softmax(self.scale("eval") * cos, dim=1).cpu().numpy()
        metrics = compute_metrics(probs, self.truth, self.config.threshold, seen=self.seen)
        hist = confidence_histogram(probs.max(axis=1), self.truth)
        self._last_eval = (epoch, kind, metrics, probs)
        self.emit(kind, epoch=epoch, metrics=metrics, histogram=hist, probs=probs,
                  class_shares=metrics["class_shares"], collapsed=metrics["collapsed"])
        return metrics, probs, cos

    @torch.no_grad()
    def _cache_views(self) -> None:
        """Fast modes: run the frozen part of the tower once on ``fast_views`` augmented views of every image."""
        cfg = self.config
        views = []
        for v in range(cfg.fast_views):
            torch.manual_seed(cfg.seed * 1000 + 500 + v)
            views.append(encode_images(self.loaded, self.train_set, cfg.batch_size * 3, cfg.num_workers,
                                       progress=self.progress_reporter(f"caching view {v + 1}/{cfg.fast_views}"),
                                       fn=self.fast_prefix))
        self.view_feats = torch.stack(views)

    def _flush(self, pending: list[dict]) -> None:
        """Read the pending steps' statistics back to the host (one synchronisation) and emit them."""
        for rec in pending:
            self.emit("step", **{k: float(v) if isinstance(v, torch.Tensor) else v for k, v in rec.items()})
        pending.clear()

    def batches(self, epoch: int, steps: int):
        """(images, image indices or None, labels or None) for one epoch, seeded by (seed, epoch)."""
        cfg, dev = self.config, self.loaded.device
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loader = lambda ds: torch.utils.data.DataLoader(  # noqa: E731
            ds, batch_size=cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.num_workers,
            pin_memory=dev.type == "cuda")
        if self.view_feats is not None:  # fast modes: cached prefix outputs of a random view of each image
            perm = torch.randperm(len(self.train_set), generator=gen)
            for chunk in perm.split(cfg.batch_size):
                yield None, chunk, torch.randint(len(self.view_feats), (len(chunk),), generator=gen)
            return
        if not self.method.supervised and is_distributed():  # every process draws the same global batches:
            # the very ones one process draws at batch_size x world (a shuffled loader over the indices consumes
            # the generator as the single-process loader does), each process keeping its shard. (The random
            # augmentation of an image still differs: each process draws its own.)
            order = torch.utils.data.DataLoader(range(len(self.train_set)), batch_size=cfg.batch_size * world_size(),
                                                shuffle=True, generator=gen)
            global_batches = [shard(c).tolist() for c in order]
            for images, idx in torch.utils.data.DataLoader(self.train_set, batch_sampler=global_batches,
                                                           num_workers=cfg.num_workers):
                yield images, idx, None
            return
        if not self.method.supervised:
            for images, idx in loader(self.train_set):
                yield images, idx, None
            return
        # one batch from each labelled source domain per step (official CLIPood), cycling each as needed
        iters = [iter(loader(ds)) for ds in self.source_sets]
        for _ in range(steps):
            images, labels = [], []
            for d, ds in enumerate(self.source_sets):
                try:
                    x, idx = next(iters[d])
                except StopIteration:
                    iters[d] = iter(loader(ds))
                    x, idx = next(iters[d])
                images.append(x)
                labels.append(self.source_labels[d][idx])
            yield torch.cat(images), None, torch.cat(labels)

    # ---------------------------------------------------------------- checkpoint
    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"prompt.ctx": self.prompt.ctx}
        tensors.update({f"visual.{n}": p for n, p in self.visual_params})
        if self.weights is not None:
            tensors["ueo_weights"] = self.weights
        return tensors

    def _finish_stopped(self, t0: float) -> None:
        """A stopped run keeps what its last checkpoint holds: when the last evaluation is of the same epoch, its
        metrics (with ``stopped_at_epoch``) and predictions are written, so the run can be explored and inspected
        like a finished one. Stopped before its first epoch ended, there is nothing adapted to keep."""
        ck, last = getattr(self, "_checkpoint_epoch", None), getattr(self, "_last_eval", None)
        if self.folder is None or ck is None or ck == 0 or last is None or last[0] != ck or last[1] != "epoch":
            return
        _, _, metrics, probs = last
        self._write_outcome(metrics, probs, time.time() - t0, stopped_at_epoch=ck, epochs_planned=self.config.epochs)

    def _write_outcome(self, metrics: dict, probs: np.ndarray, seconds: float, **extra) -> None:
        """metrics.json (before, after, seconds, protocol and ``extra``) and predictions.csv at the threshold of
        ``metrics``: what Explore, Inspect and Compare read, for a finished run and a stopped one alike."""
        ims = self.image_set
        self.folder.write_json("metrics.json", {"before": self.metrics_before, "after": metrics, "seconds": seconds,
                                                "protocol": self.config.protocol, **extra})
        self.folder.write_predictions(predictions_table(ims.files, probs, ims.classes, ims.folder_names,
                                                        metrics["threshold"]))

    def save_checkpoint(self, epoch: int) -> None:
        if self.folder is None:
            return
        path = self.folder.save_checkpoint(self.state_tensors(), {
            "epoch": epoch, "config": self.config.to_dict(), "classes": self.image_set.classes,
            "files": len(self.image_set)})
        self._checkpoint_epoch = epoch
        self.emit("checkpoint", epoch=epoch, path=str(path))

    def load_state(self, source: str) -> int:
        """Load trainable parameters (and the UEO weights) saved by ``save_checkpoint``; returns the epoch."""
        tensors, meta = load_checkpoint(source)
        if meta.get("classes") and list(meta["classes"]) != list(self.image_set.classes):
            raise DataError("The checkpoint was trained for other classes: "
                            f"{meta['classes']} vs {self.image_set.classes}.")
        saved_model = (meta.get("config") or {}).get("model")
        if saved_model and saved_model != self.config.model:
            raise DataError(f"The checkpoint was made with another model ('{saved_model}'; this run uses "
                            f"'{self.config.model}'). Resume with the same model, or start a new run.")
        visual = dict(self.loaded.model.visual.named_parameters())
        foreign = [k for k in tensors if k.startswith("visual.") and k[7:] not in visual]
        if foreign:
            raise DataError(f"The checkpoint was made with another model: its '{foreign[0]}' is not in this model's "
                            "image tower.")
        ctx = tensors.get("prompt.ctx")
        if ctx is None:
            raise DataError("This file holds no prompt context: it is not a checkpoint of a UEO Studio run "
                            "(resume needs the run folder or its checkpoint.safetensors).")
        if tuple(ctx.shape) != tuple(self.prompt.ctx.shape):
            raise DataError(f"The checkpoint was made with another model or prompt template (prompt context "
                            f"{tuple(ctx.shape)}, this run has {tuple(self.prompt.ctx.shape)}).")
        with torch.no_grad():
            self.prompt.ctx.copy_(ctx.to(self.prompt.ctx.device, self.prompt.ctx.dtype))
        apply_state(self.loaded, tensors)
        if "ueo_weights" in tensors:
            self.weights = tensors["ueo_weights"].to(self.loaded.device)
        return int(meta.get("epoch", 0))

    # ---------------------------------------------------------------- the run
    def run(self) -> RunResult:
        t0 = time.time()
        cfg = self.config
        try:
            self.setup()
            return self._run(t0)
        except Cancelled:
            self._finish_stopped(t0)
            self.emit("cancelled", seconds=time.time() - t0)
            return RunResult("cancelled", getattr(self, "metrics_before", {}), getattr(self, "last_metrics", {}),
                             run_dir=self.folder and self.folder.path, seconds=time.time() - t0)
        except Exception as err:
            message = explain_error(err, cfg, self.folder, self.audience)
            self.emit("error", message=message, traceback=traceback.format_exc())
            raise
        finally:
            if self.folder is not None:
                self.folder.close()

    def _run(self, t0: float) -> RunResult:
        cfg, ims, dev = self.config, self.image_set, self.loaded.device
        trainable = self.trainable() if self.method.trains else {}
        if self.method.supervised:
            steps_per_epoch = cfg.iters_per_epoch or math.ceil(max(map(len, self.source_sets)) / cfg.batch_size)
        else:  # (under torchrun each step is one global batch of batch_size per process)
            steps_per_epoch = math.ceil(len(ims) / (cfg.batch_size * world_size()))
        total_steps = cfg.epochs * steps_per_epoch if self.method.trains else 0
        summary = {"model": self.loaded.describe(), "data": ims.summary(), "classes": ims.classes,
                   "n_images": len(ims), "n_skipped": len(ims.skipped), "has_truth": ims.has_truth,
                   "warnings": list(ims.warnings),
                   "trainable_parameters": sum(p.numel() for p in trainable.values()),
                   "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
                   "prompts": self.prompt.prompts, "truncated_context": self.prompt.length}
        if self.method.supervised:
            summary.update({"source_images": [len(d) for d in self.source_sets],
                            "seen_classes": [ims.classes[k] for k in self.seen]})
        if self.folder is not None:
            self.folder.write_json("config.json", {**cfg.to_dict(), "summary": summary})
            self.folder.write_skipped(ims.skipped)
        self.emit("start", config=cfg.to_dict(), **summary)

        start_epoch, self.metrics_before = 0, {}
        if cfg.resume:
            start_epoch = self.load_state(cfg.resume)
            src = Path(cfg.resume) if Path(cfg.resume).is_dir() else Path(cfg.resume).parent
            zero = [r for r in RunFolder(src).read_jsonl("epochs.jsonl") if r.get("epoch") == 0]
            self.metrics_before = zero[0]["metrics"] if zero else {}
            if self.folder is not None:
                self.folder.reset_logs(start_epoch)
        metrics, probs, cos = self.evaluate(start_epoch)
        if start_epoch == 0:
            self.metrics_before = metrics
            if self.folder is not None:  # the zero-shot predictions, for "before" views (Explore)
                self.folder.write_predictions(predictions_table(ims.files, probs, ims.classes, ims.folder_names,
                                                                metrics["threshold"]), ZERO_SHOT_PREDICTIONS)
        if self.method.needs_weights and self.weights is None:
            if start_epoch > 0:
                raise DataError("This checkpoint holds no UEO weights (the zero-shot confidences), so UEO cannot "
                                "resume from it. Start a new run instead.")
            temp = self.scale("weights") if cfg.weight_temperature is None else cfg.weight_temperature
            self.weights = confidence_weights(cos, temp)  # fixed for the whole run: zero-shot confidences
        self.last_metrics = metrics
        known = torch.as_tensor(ims.labels >= 0, device=dev) if ims.has_truth else None

        if self.method.trains and trainable and start_epoch < cfg.epochs:
            for p in trainable.values():
                p.requires_grad_(True)
            groups = []
            if "prompt.ctx" in trainable:
                groups.append({"params": [trainable["prompt.ctx"]], "lr": cfg.lr_prompt})
            vis = [p for n, p in trainable.items() if n.startswith("visual.")]
            if vis:
                groups.append({"params": vis, "lr": cfg.lr_visual})
            if self.method.optimizer == "adamw":  # official CLIPood
                optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
            else:
                optimizer = torch.optim.SGD(groups)  # no momentum, no weight decay (official UEO)
            bma = None
            if self.method.supervised:
                bma = BetaMovingAverage(dict(self.visual_params), total_steps, cfg.bma_beta)
                with torch.no_grad(), autocast(dev):
                    train_text = self.prompt().float()[torch.as_tensor(self.seen, device=dev)]
                seen_index = torch.full((len(ims.classes),), -1, dtype=torch.long)
                seen_index[torch.as_tensor(self.seen)] = torch.arange(len(self.seen))
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
            for _ in range(start_epoch * steps_per_epoch):  # resume: the schedule picks up where it was
                optimizer.step()
                scheduler.step()
            if cfg.fast_mode:
                self._cache_views()
            ddp = None
            if is_distributed():
                if self.method.supervised or cfg.fast_mode:
                    raise ValueError("Several processes are supported for the unsupervised methods in full mode.")
                ddp = torch.nn.parallel.DistributedDataParallel(
                    Encoders(self.loaded.model.visual, self.prompt),
                    device_ids=[dev.index] if dev.type == "cuda" else None)
            step, t_loop = start_epoch * steps_per_epoch, time.time()
            pending: list[dict] = []  # step records whose statistics are still on the device
            sync_every = cfg.sync_every or (10 if dev.type == "cuda" else 1)
            for epoch in range(start_epoch + 1, cfg.epochs + 1):
                # seeds per epoch: a resumed run repeats an uninterrupted one exactly (CPU)
                torch.manual_seed(cfg.seed * 1000 + epoch)
                for images, idx, labels in self.batches(epoch, steps_per_epoch):
                    if self._cancel.is_set():
                        self._flush(pending)
                        raise Cancelled()
                    t_step = time.time()
                    with autocast(dev):
                        text = train_text if bma is not None else self.prompt()
                        if images is None:  # fast modes: labels holds the view of each image
                            feats = self.fast_head(self.view_feats[labels, idx].to(dev))
                            labels = None
                        elif ddp is not None:
                            feats, text = ddp(self.loaded.to_input(images))
                            feats = feats.float()
                        else:
                            feats = self.loaded.model.encode_image(self.loaded.to_input(images), normalize=True).float()
                        logits = self.scale("train") * feats @ text.float().T
                    probs_b = torch.softmax(logits, dim=1)
                    if labels is not None:  # supervised: labels are prior indices; train over the seen classes
                        batch = Batch(probs=probs_b, features=feats, text=text.float(), scale=self.scale("train"),
                                      labels=seen_index[labels].to(dev), margin=cfg.margin)
                    else:  # (under torchrun: the global batch, gathered from every process)
                        idx = idx.to(dev)
                        probs_b = gather(probs_b)
                        batch = Batch(probs=probs_b, trade=cfg.trade,
                                      weights=gather(self.weights[idx], False) if self.weights is not None else None,
                                      known=gather(known[idx], False) if known is not None else None)
                    loss, stats = self.method.loss(batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    lr = optimizer.param_groups[0]["lr"]
                    optimizer.step()
                    scheduler.step()
                    if bma is not None:
                        bma.update()
                    step += 1
                    done_steps = step - start_epoch * steps_per_epoch
                    elapsed = time.time() - t_loop
                    eta = elapsed / done_steps * (total_steps - step)
                    pending.append(dict(step=step, epoch=epoch, total_steps=total_steps, loss=loss.detach(), lr=lr,
                                        seconds=time.time() - t_step, eta=eta, batch=len(probs_b),
                                        **self.method.monitor(probs_b.detach()), **stats))
                    if len(pending) >= sync_every:
                        self._flush(pending)
                self._flush(pending)
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    metrics, probs, cos = self.evaluate(epoch)
                    self.last_metrics = metrics
                if bma is None:  # (CLIPood saves only its final moving-average tower, below)
                    self.save_checkpoint(epoch)
            for p in trainable.values():
                p.requires_grad_(False)
            if bma is not None:  # the result is the Beta moving average; the last model is reported beside it
                self.metrics_last = metrics
                bma.swap()
                metrics, probs, cos = self.evaluate(cfg.epochs, kind="bma")
                self.last_metrics = metrics
                self.save_checkpoint(cfg.epochs)
        elif start_epoch == 0:
            self.save_checkpoint(0)

        # the end: final predictions from the last evaluation
        seconds = time.time() - t0
        if self.folder is not None:
            self._write_outcome(metrics, probs, seconds,
                                **({"last": self.metrics_last} if self.metrics_last else {}))
            write_report(self.folder, cfg.to_dict(), self.metrics_before, metrics, {**summary, "seconds": seconds})
        self.emit("done", metrics=metrics, metrics_before=self.metrics_before, seconds=seconds,
                  run_dir=str(self.folder.path) if self.folder else None)
        return RunResult("done", self.metrics_before, metrics, probs=probs,
                         run_dir=self.folder and self.folder.path, seconds=seconds)


def explain_error(err: Exception, cfg: RunConfig, folder: Optional[RunFolder], audience: Optional[str] = None) -> str:
    """One plain-language sentence for the user (the traceback goes to logs only); ``audience`` ("cli" / "app")
    adds how to act on a model error there."""
    text = str(err).lower()
    gpu = isinstance(err, torch.cuda.OutOfMemoryError) or "cuda out of memory" in text
    cpu = isinstance(err, MemoryError) or "can't allocate memory" in text or "defaultcpuallocator" in text
    if gpu or cpu or "out of memory" in text:
        kept = f" The last checkpoint is kept in {folder.path}." if folder and folder.checkpoint_path.exists() else ""
        where = "The GPU" if gpu or not cpu else "The computer"
        return (f"{where} ran out of memory at batch size {cfg.batch_size}. Try a smaller batch size "
                f"(e.g. {max(1, cfg.batch_size // 2)}) or a smaller model.{kept}")
    if isinstance(err, ModelLoadError):
        return err.for_audience(audience) if audience else str(err)
    if isinstance(err, (DataError, ValueError, FileNotFoundError)):
        return str(err)
    return f"The run failed: {err.__class__.__name__}: {err}"


def estimate_run(loaded: LoadedModel, ims: ImageSet, epochs: int, batch_size: int,
                 template: str = "a photo of a {}.") -> dict:
    """Time one real training step (decode + augment + forward + backward, no update) and one evaluation
    batch on this device, and extrapolate to a whole run. The model's weights are left untouched."""
    dev = loaded.device
    n = min(batch_size, len(ims))
    prompt = PromptLearner(loaded, ims.classes, template).to(dev)
    params = [prompt.ctx] + [p for _, p in norm_affine_params(loaded.model.visual)]
    train = ImageDataset(ims.files[:n], loaded.train_transform())
    evals = ImageDataset(ims.files[:n], loaded.preprocess)
    for p in params:
        p.requires_grad_(True)
    try:
        with torch.no_grad(), autocast(dev):  # warm-up: first calls pay one-off kernel/setup costs
            loaded.model.encode_image(torch.stack([evals[i][0] for i in range(min(n, 2))]).to(dev))
            prompt()
        t0 = time.time()
        images = torch.stack([train[i][0] for i in range(n)]).to(dev)
        with autocast(dev):
            logits = loaded.logit_scale * loaded.model.encode_image(images, normalize=True).float() @ prompt().float().T
        loss = -(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()
        loss.backward()
        step = time.time() - t0
        t1 = time.time()
        with torch.no_grad(), autocast(dev):
            loaded.model.encode_image(torch.stack([evals[i][0] for i in range(n)]).to(dev))
        eval_per_image = (time.time() - t1) / n
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
    steps = epochs * math.ceil(len(ims) / batch_size)
    eval_seconds = eval_per_image * len(ims)
    return {"images": len(ims), "epochs": epochs, "batch": batch_size, "steps": steps, "seconds_per_step": step,
            "eval_seconds": eval_seconds, "minutes": (steps * step + epochs * eval_seconds) / 60}
