"""TDA (Karmanov et al., CVPR 2024; kdiAAA/TDA ``tda_runner.py``): training-free dynamic adapters. The test images
arrive one by one; each goes, by its zero-shot prediction, into a positive cache (the ``shot_capacity`` lowest-
entropy images per class) and, when its normalised entropy is in a middle band, into a negative cache (with its
probability map). Its final logits are CLIP's plus the positive cache's affinity-weighted class votes minus the
negative cache's over its uncertain classes, each cache updated with the image before its logits are taken.

Settings: the official ImageNet configuration (``configs/imagenet.yaml``): positive cache 3 shots, alpha 2, beta 5;
negative cache 2 shots, alpha 0.117, beta 1, entropy band (0.2, 0.5), mask band (0.03, 1). Knowingly different:
- the stream is online and order-dependent: here its order is a permutation fixed by the run's seed (the official
  loader shuffles with seed 1), recorded in metrics.json (``tda_stream``: the image indices in the order seen);
- the features are the evaluation view's (as the official code's cross-domain runs; its ImageNet-A/V/R/S runs
  average 63 AugMix views), computed in batches before the stream (the cache does not change a feature);
- CLIP's logits are ``scale * cosine`` with the run's training scale (the official 100 = OpenAI CLIP's logit
  scale; the built-in model's own is 15 under the studio protocol).
"""
from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from . import register
from .base import Context, Method

POSITIVE = {"shot_capacity": 3, "alpha": 2.0, "beta": 5.0}
NEGATIVE = {"shot_capacity": 2, "alpha": 0.117, "beta": 1.0, "entropy": (0.2, 0.5), "mask": (0.03, 1.0)}


def update_cache(cache: dict, pred: int, item: list, capacity: int) -> None:
    """Add ``item`` = [feature, entropy, (probabilities)] under class ``pred``: while the class has room it joins;
    when full, it replaces the class's highest-entropy entry if lower; entries stay sorted by entropy."""
    if pred in cache:
        if len(cache[pred]) < capacity:
            cache[pred].append(item)
        elif item[1] < cache[pred][-1][1]:
            cache[pred][-1] = item
        cache[pred] = sorted(cache[pred], key=operator.itemgetter(1))
    else:
        cache[pred] = [item]


def cache_logits(feature: torch.Tensor, cache: dict, alpha: float, beta: float, n_classes: int,
                 mask: tuple = None) -> torch.Tensor:
    """alpha * exp(-beta (1 - f . keys)) @ values: the keys are the cached features; the values are one-hot
    classes (positive) or, with ``mask``, each cached image's classes whose probability lies inside the band."""
    entries = [(c, item) for c in sorted(cache) for item in cache[c]]
    keys = torch.cat([item[0] for _, item in entries]).T
    if mask is None:
        values = F.one_hot(torch.tensor([c for c, _ in entries]), n_classes).to(keys.dtype)
    else:
        probs = torch.cat([item[2] for _, item in entries])
        values = ((probs > mask[0]) & (probs < mask[1])).to(keys.dtype)
    affinity = feature @ keys
    return alpha * ((-1) * (beta - beta * affinity)).exp() @ values.to(feature.device)


def tda_step(pos: dict, neg: dict, feature: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """One image of the stream: update both caches with it, return its final (1, K) logits."""
    k = logits.size(1)
    loss = float(-(logits.softmax(1) * logits.log_softmax(1)).sum(1))
    pred = int(logits.argmax(1))
    update_cache(pos, pred, [feature, loss], POSITIVE["shot_capacity"])
    low, high = NEGATIVE["entropy"]
    if low < loss / math.log2(k) < high:  # (the official normalisation: nats over log2 K)
        update_cache(neg, pred, [feature, loss, logits.softmax(1)], NEGATIVE["shot_capacity"])
    final = logits.clone()
    if pos:
        final += cache_logits(feature, pos, POSITIVE["alpha"], POSITIVE["beta"], k)
    if neg:
        final -= cache_logits(feature, neg, NEGATIVE["alpha"], NEGATIVE["beta"], k, NEGATIVE["mask"])
    return final


@register
class TDA(Method):
    name = "tda"
    label = "TDA (training-free: dynamic cache adapters)"
    plain = "TDA"
    lesson = "extended"
    description = ("No training: the images stream through a positive cache of confident ones and a negative "
                   "cache of uncertain ones, which adjust CLIP's logits (the order of the stream is fixed by the "
                   "seed).")
    trains = False
    defaults = {"epochs": 1, "batch_size": 64, "lr_prompt": 0.0, "lr_visual": 0.0}

    def infer(self, run, ctx: Context) -> None:
        feats = run.last_features  # the zero-shot pass's (the model has not changed since)
        with torch.no_grad():
            text = run.prompt().float()
            logits = run.scale("train") * feats @ text.T
            order = torch.randperm(len(feats), generator=torch.Generator().manual_seed(run.config.seed))
            final, pos, neg = torch.empty_like(logits), {}, {}
            for start in range(0, len(order), run.config.batch_size):  # one batch of the stream at a time
                run.stop.check()
                for i in order[start:start + run.config.batch_size].tolist():
                    final[i] = tda_step(pos, neg, feats[i:i + 1], logits[i:i + 1])[0]
                run.emit("progress", phase="TDA: the image stream", done=min(start + run.config.batch_size,
                                                                             len(order)), total=len(order))
        cos = final / run.scale("train")
        probs = torch.softmax(run.scale("eval") * cos, dim=1)
        run.outcome["tda_stream"] = order.tolist()
        run.evaluate(1, outputs=(cos.cpu(), probs.cpu().numpy()))
