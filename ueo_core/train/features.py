"""Feature sources: how a training step turns a batch into image features, and how an evaluation pass does.

Three small classes, one per way the image tower runs:

- ``FullTower``: every step runs the whole image tower on the batch's pixels (exact UEO).
- ``DDPTower``: the same under several processes (torchrun), through DistributedDataParallel, which averages the
  gradients; the loss's gather of the global batch is in ``distributed.gather``.
- ``CachedPrefix``: the fast modes. A frozen prefix of the tower runs once on a few augmented views of every image
  (and once on the evaluation images); each step runs only the trained head on cached outputs. ``prompt_only``
  caches the whole tower's features (the head is nothing), ``last_blocks`` caches a ResNet's output before its last
  ``fast_blocks`` stages (the head is those stages and the attention pool): two splits of one tower.

A new fast mode is a new split here (``CachedPrefix.prefix`` / ``head``), a name in ``config.FAST_MODES`` and its
refusals in ``check.py``; the loop does not change.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..distributed import Encoders, is_distributed
from ..methods.base import TrainBatch, norm_affine_params
from ..models import LoadedModel, inference_autocast
from .batches import CachedBatches, TargetBatches

def encode_images(loaded: LoadedModel, dataset, batch_size: int, num_workers: int = 0,
                  progress: Optional[Callable[[int, int], None]] = None,
                  fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """L2-normalised image features of a dataset, in order, as float32 on the model's device (or, with ``fn``,
    whatever ``fn`` makes of each input batch: the fast modes cache a frozen part of the tower this way)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    feats, done = [], 0
    with torch.no_grad(), inference_autocast(loaded):  # bf16 on CUDA / a CPU with native bf16 (loaded.precision)
        for images, _ in loader:
            x = loaded.to_input(images)
            f = fn(x) if fn is not None else loaded.model.encode_image(x, normalize=True)
            feats.append(f.float())
            done += len(images)
            if progress:
                progress(done, len(dataset))
    return torch.cat(feats)


def stored_features(loaded: LoadedModel, dataset, variant: str, cfg, progress) -> torch.Tensor:
    """An evaluation dataset's features through the feature store (``embed.image_features``), on the device."""
    from ..embed import image_features
    feats = image_features(loaded, dataset.files, variant, cfg.batch_size * 3, progress=progress, dataset=dataset,
                           num_workers=cfg.num_workers)
    return torch.from_numpy(feats).to(loaded.device)


class FullTower:
    """The whole image tower on every batch's pixels."""
    trains_tower = True   # whether the tower's parameters can learn (a learning rate above 0 trains them)

    def __init__(self, tr):
        self.tr, self.loaded = tr, tr.loaded

    def select(self, params: list[tuple[str, nn.Parameter]]) -> list[tuple[str, nn.Parameter]]:
        """The method's image-tower parameters that this source runs (and the checkpoint keeps)."""
        return params

    def batches(self, tr):
        return TargetBatches(tr.train_set, tr.config, tr.loaded.device)

    def begin_training(self, params: dict) -> None:
        """Called once before the first step, with the parameters already set to learn."""

    def __call__(self, b: TrainBatch, text: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised float image features, class text features) of a training batch."""
        feats = self.loaded.model.encode_image(self.loaded.to_input(b.images), normalize=True).float()
        return feats, text()

    def evaluate(self, progress, variant: Optional[str] = None) -> torch.Tensor:
        """Normalised image features of every evaluation image, in order: through the feature store under
        ``variant`` (``Trainer.feature_variant``: the images it holds are not encoded again), or all encoded
        (None: a tower still learning)."""
        cfg = self.tr.config
        if variant is None:
            return encode_images(self.loaded, self.tr.eval_set, cfg.batch_size * 3, cfg.num_workers,
                                 progress=progress)
        return stored_features(self.loaded, self.tr.eval_set, variant, cfg, progress)


class DDPTower(FullTower):
    """The whole tower under several processes: image tower and prompt in one DistributedDataParallel module
    (which averages their gradients), created once the parameters learn (DDP syncs only those)."""

    def begin_training(self, params: dict) -> None:
        dev = self.loaded.device
        self.ddp = torch.nn.parallel.DistributedDataParallel(
            Encoders(self.loaded.model.visual, self.tr.prompt), device_ids=[dev.index] if dev.type == "cuda" else None)

    def __call__(self, b, text):  # (the text is the prompt's, inside the DDP module: check() refuses frozen text)
        feats, prompt_text = self.ddp(self.loaded.to_input(b.images))
        return feats.float(), prompt_text


class CachedPrefix(FullTower):
    """Fast modes: a frozen prefix of the tower cached once, a trained head run on every step."""

    def __init__(self, tr):
        super().__init__(tr)
        self.blocks = tr.config.fast_blocks if tr.config.fast_mode == "last_blocks" else 0  # ResNet stages trained
        self.trains_tower = self.blocks > 0
        self.view_feats: Optional[torch.Tensor] = None  # (views, N, ...) prefix outputs of augmented views
        self.eval_feats: Optional[torch.Tensor] = None  # (N, ...) prefix outputs of the evaluation images

    def select(self, params):
        if not self.blocks:  # prompt_only: the tower's norm params are kept in the checkpoint, unchanged
            return params
        visual = self.loaded.model.visual
        return [(f"layer{i}.{n}", p) for i in range(5 - self.blocks, 5)
                for n, p in norm_affine_params(getattr(visual, f"layer{i}"))]

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part of the image tower (its outputs are cached)."""
        if not self.blocks:
            return self.loaded.model.encode_image(x, normalize=True)
        visual = self.loaded.model.visual
        x = visual.stem(x)
        for i in range(1, 5 - self.blocks):
            x = getattr(visual, f"layer{i}")(x)
        return x

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """The trained part, from cached prefix outputs to normalised features."""
        if not self.blocks:
            return z.float()
        visual = self.loaded.model.visual
        for i in range(5 - self.blocks, 5):
            z = getattr(visual, f"layer{i}")(z)
        return F.normalize(visual.attnpool(z).float(), dim=-1)

    def batches(self, tr):
        return CachedBatches(len(tr.train_set), tr.config)

    @torch.no_grad()
    def begin_training(self, params) -> None:
        """Run the prefix once on ``fast_views`` augmented views of every image. prompt_only's views are whole
        features of the tower as loaded: kept on disk (``embed.cached_array``) under everything their random crops
        depend on (the files in order, the seed, the crop scale, the decoding), so the next run with the same
        settings (a lesson's methods, a rerun) reads them."""
        cfg = self.tr.config

        def encode(v: int) -> torch.Tensor:
            torch.manual_seed(cfg.seed * 1000 + 500 + v)
            return encode_images(self.loaded, self.tr.train_set, cfg.batch_size * 3, cfg.num_workers,
                                 progress=self.tr.progress_reporter(f"caching view {v + 1}/{cfg.fast_views}"),
                                 fn=self.prefix)

        def all_views() -> torch.Tensor:
            return torch.stack([encode(v) for v in range(cfg.fast_views)])
        if self.blocks:
            self.view_feats = all_views()
            return
        from ..embed import cached_array, feature_key
        key = feature_key(self.loaded, self.tr.train_set.files,
                          f"{self.loaded.variant}|views|{cfg.seed}|{cfg.fast_views}|{tuple(cfg.crop_scale)}"
                          f"|{cfg.cache_images}|{cfg.num_workers}", transform="train")
        self.view_feats = torch.from_numpy(cached_array(key, lambda: all_views().cpu().numpy())).to(self.loaded.device)

    def __call__(self, b, text):
        return self.head(self.view_feats[b.view, b.index].to(self.loaded.device)), text()

    def evaluate(self, progress, variant: Optional[str] = None):
        cfg = self.tr.config
        if self.eval_feats is None:  # the prefix's output is computed once; only the trained head runs again
            if not self.blocks:  # prompt_only: the frozen tower's features, from the feature store
                self.eval_feats = stored_features(self.loaded, self.tr.eval_set, self.loaded.variant, cfg, progress)
            else:
                self.eval_feats = encode_images(self.loaded, self.tr.eval_set, cfg.batch_size * 3, cfg.num_workers,
                                                fn=self.prefix, progress=progress)
        with inference_autocast(self.loaded):
            return torch.cat([self.head(z) for z in self.eval_feats.split(cfg.batch_size * 3)])


def feature_source(tr) -> FullTower:
    """The run's feature source: a fast mode's cache, several processes' DDP tower, or the whole tower."""
    if tr.config.fast_mode:
        return CachedPrefix(tr)
    return DDPTower(tr) if is_distributed() else FullTower(tr)
