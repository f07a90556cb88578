"""Batch sources: what one epoch of training steps reads, as one typed batch whose fields never change meaning.

- ``TargetBatches``: the unlabeled target folder, shuffled (under torchrun: sharded, see below).
- ``CachedBatches``: the fast modes: a random cached view of each target image (``features.CachedPrefix``).
- (a method's own: CLIPood's labelled source folders, ``methods/clipood.py``'s ``SourceBatches``.)

Every source is seeded by (seed, epoch), so a resumed run repeats an uninterrupted one exactly; ``len()`` is the
number of steps an epoch takes.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

from ..data import ImageDataset
from ..distributed import is_distributed, shard, world_size
from ..methods.base import TrainBatch, epoch_generator


class TargetBatches:
    seen = None  # (evaluation reports seen/unseen classes only for labelled sources)

    def __init__(self, dataset: ImageDataset, cfg, device: torch.device):
        self.dataset, self.cfg, self.device = dataset, cfg, device

    def __len__(self) -> int:  # under torchrun each step is one global batch of batch_size per process
        return math.ceil(len(self.dataset) / (self.cfg.batch_size * world_size()))

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        cfg, gen = self.cfg, epoch_generator(self.cfg, epoch)
        if is_distributed():  # every process draws the same global batches: the very ones one process draws at
            # batch_size x world (a shuffled loader over the indices consumes the generator as the single-process
            # loader does), each process keeping its shard. (The random augmentation of an image still differs:
            # each process draws its own.)
            order = torch.utils.data.DataLoader(range(len(self.dataset)), batch_size=cfg.batch_size * world_size(),
                                                shuffle=True, generator=gen)
            loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=[shard(c).tolist() for c in order],
                                                 num_workers=cfg.num_workers)
        else:
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch_size, shuffle=True,
                                                 generator=gen, num_workers=cfg.num_workers,
                                                 pin_memory=self.device.type == "cuda")
        for images, idx in loader:
            yield TrainBatch(images=images, index=idx)


class CachedBatches:
    seen = None

    def __init__(self, n: int, cfg):
        self.n, self.cfg = n, cfg

    def __len__(self) -> int:
        return math.ceil(self.n / self.cfg.batch_size)

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        gen = epoch_generator(self.cfg, epoch)
        perm = torch.randperm(self.n, generator=gen)
        for chunk in perm.split(self.cfg.batch_size):
            yield TrainBatch(index=chunk, view=torch.randint(self.cfg.fast_views, (len(chunk),), generator=gen))
