"""Several processes (``torchrun --nproc_per_node N python -m ueo_core train ...``) with DistributedDataParallel.

UEO's objective is not a mean of per-image terms: the weighted conditional entropy normalises by the *batch's*
total weight, and the marginal is a weighted mean over the batch. So each process gathers the predictions and
weights of the global batch (differentiably: ``torch.distributed.nn.all_gather`` sends each gradient back to the
process that owns the image) and computes the loss of the global batch. Every process then holds the same loss;
the all_gather backward sums the N identical contributions for its own images, and DDP's gradient *averaging*
divides by N again, so N processes with batch B each get exactly the loss and gradients of one process with
batch N*B (tested with the gloo backend on the CPU).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env() -> Optional[torch.device]:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns this process's device, or None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return None
    cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def gather(t: Optional[torch.Tensor], differentiable: bool = True) -> Optional[torch.Tensor]:
    """Concatenate a per-process tensor over all processes (rank order). Identity when not distributed."""
    if t is None or not is_distributed():
        return t
    if differentiable and t.requires_grad:
        import torch.distributed.nn.functional as dist_fn
        return torch.cat(dist_fn.all_gather(t))
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


class Encoders(nn.Module):
    """The trainable path in one module, so DistributedDataParallel can average its gradients:
    image tower (norm params train) and prompt learner (context trains)."""

    def __init__(self, visual: nn.Module, prompt: nn.Module):
        super().__init__()
        self.visual = visual
        self.prompt = prompt

    def forward(self, images: torch.Tensor):
        return F.normalize(self.visual(images), dim=-1), self.prompt()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This process's contiguous slice of a global batch of indices."""
    n, r = world_size(), rank()
    per = -(-len(indices) // n)
    return indices[r * per:(r + 1) * per]
