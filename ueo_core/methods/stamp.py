"""STAMP (Yu et al., ECCV 2024, "STAMP: Outlier-Aware Test-Time Adaptation with Stable Memory Replay";
yuyongcan/STAMP ``src/methods/stamp.py``, commit 55b116c), in the CLIP form of the CLIPTTA benchmark
(MarcLafon/cliptta, the ``ttavlm`` package: ``methods/abstract_model.py`` at commit f4221f4 for the features,
logits and optimizer; its ``STAMP`` class for the step, read from a copy of the ``ttavlm`` package whose
repository and commit the source index did not name: its ``methods/stamp.py`` is not in the tree of f4221f4, and
the benchmark settings below come from a CLIPTTA benchmark script of the same kind). A batch of the stream at a
time: each image's class
probabilities (softmax of ``scale`` x its cosines to the class texts) are kept only if their entropy is below
``stamp_alpha`` x log(classes) and, with consistency filtering, the image's zero-shot class is the same under the
adapted tower as under the tower as loaded. Kept images join a class-balanced memory of ``stamp_memory`` images
(when full, the oldest image of the class with the most images on average leaves, chosen at random among ties).
Then one step on the whole memory: the mean of each memory image's softmax entropy (of its cosines) weighted by
exp(-entropy), normalised to sum to the memory's size (gradients flow through the weights too, as in both codes).
The batch's prediction is then taken by the updated tower.

The same in the authors' code and the CLIP form: the class-balanced memory (``RBM``, its removal rule and its
moving count updated each time the memory is read), the entropy margin alpha x log(K), the consistency filter
against the tower as loaded, the exp(-entropy) weighting of the replayed memory, one step per batch.

Settings: the CLIP form's as its benchmark runs it (``baseline_stamp``: SGD at 1e-4, a memory of 128, alpha 0.45,
consistency filtering on; the abstract model's momentum 0.9 and logit scale 100 for the filter's probabilities).
Knowingly different:
- the authors' code steps with SAM and a cosine learning-rate schedule; the CLIP form runs plain SGD (its
  ``use_sam`` is off by default and the benchmark does not set it) and never steps its schedule (the call is
  commented out): this follows the CLIP form;
- the authors' code (and the CLIP form) average the filter's probabilities over several augmented views of each
  image; here the loader's one evaluation view is used (a list of one view in the CLIP form's terms);
- the authors' code picks an image's memory class from the original view's prediction, the CLIP form from the
  averaged probabilities: with one view these are the same;
- the CLIP form's ``lib.entropy`` was not read; the filter's entropy is the authors' ``entropy`` (-sum p log(p +
  1e-5)), and the replay loss the usual softmax entropy of the cosines (unscaled, as ``get_logits`` returns them);
- the logit scale of the filter is the run's (the protocol's, ``run.scale("eval")``; 100 for CLIP as in the CLIP
  form);
- the memory's random choice among tied classes uses its own generator seeded by the run's seed;
- as ROSITA here (``rosita.py``): the stream's order is fixed by the seed and recorded in metrics.json
  (``stamp_stream``, with ``stamp_kept``: whether each image joined the memory, in that order); the norm layers are
  selected by type; the tower stays in its loaded mode (the CLIP form sets train mode, which for a ViT's LayerNorms
  changes nothing; a BatchNorm tower here keeps its running statistics); the run reports the studio's scores of the
  updated cosines; the tower is put back as loaded after the stream (the run's checkpoint is the model as loaded).
"""
from __future__ import annotations

import math
import random
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from . import register
from .base import Context, Method
from .options import Option
from .rosita import STREAM_DEFAULTS, stream_setup

SOURCE = "MarcLafon/cliptta baseline_stamp"


def entropy(p: torch.Tensor) -> torch.Tensor:
    """The authors' ``entropy`` of probabilities (its 1e-5 inside the log)."""
    return -torch.sum(p * torch.log(p + 1e-5), dim=1)


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


class Memory:
    """The class-balanced memory (the official ``RBM``): up to ``size`` images kept per predicted class; when
    full, the oldest image of a class with the largest moving count leaves (ties broken by ``rng``)."""

    def __init__(self, size: int, n_classes: int, rng: random.Random):
        self.size, self.n_classes, self.rng = size, n_classes, rng
        self.count = [0.0] * n_classes
        self.data = [[] for _ in range(n_classes)]
        self.total = 0

    def _remove(self) -> None:
        most = max([self.count[c] for c in range(self.n_classes) if self.data[c]] + [0])
        tied = [c for c in range(self.n_classes) if self.count[c] == most and self.data[c]]
        self.data[self.rng.choice(tied)].pop(0)

    def append(self, items: torch.Tensor, classes: torch.Tensor) -> None:
        for item, c in zip(items, classes.tolist()):
            if self.total < self.size:
                self.total += 1
            else:
                self._remove()
            self.data[c].append(item)

    def read(self) -> torch.Tensor:
        """Every image kept, class by class; updates the moving counts (0.9 old, 0.1 now) as the official
        ``get_data`` does."""
        out = []
        for c in range(self.n_classes):
            out.extend(self.data[c])
            self.count[c] = 0.9 * self.count[c] + 0.1 * len(self.data[c])
        return torch.stack(out)

    def __len__(self) -> int:
        return self.total


@contextmanager
def swapped(params: list, values: list):
    """The parameters set to ``values`` inside the block (the tower as loaded, for the consistency filter), put
    back after."""
    now = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, now):
                p.copy_(v)


def replay_loss(cos: torch.Tensor, size: int) -> torch.Tensor:
    """The memory's loss: entropies weighted by exp(-entropy), the weights summing to the memory's size."""
    ent = softmax_entropy(cos)
    inv = 1 / torch.exp(ent)
    return (ent * (inv / inv.sum() * size)).mean()


def stamp_step(memory: Memory, encode, source_encode, images: torch.Tensor, text: torch.Tensor, optimizer, o,
               scale: float) -> dict:
    """One batch of the stream. ``encode`` gives raw image features with gradients to the parameters ``optimizer``
    steps, ``source_encode`` those of the tower as loaded (None: no consistency filter); ``text`` (K, D)
    normalised class features. Updates the memory and the parameters; returns the batch's cosines after the
    update (``cos``), which images joined the memory (``kept``) and whether a step was taken."""
    with torch.no_grad():
        cos0 = F.normalize(encode(images), dim=-1) @ text.T
        same = torch.ones(len(images), dtype=torch.bool)
        if source_encode is not None:
            src = F.normalize(source_encode(images), dim=-1) @ text.T
            same = (cos0.argmax(1) == src.argmax(1)).cpu()
        probs = (scale * cos0).softmax(-1)
        kept = ((entropy(probs) < o.stamp_alpha * math.log(len(text))).cpu() & same)
        memory.append(images[kept], probs.argmax(1).cpu()[kept])
    updated = len(memory) > 0
    if updated:
        data = memory.read()
        optimizer.zero_grad()
        replay_loss(F.normalize(encode(data), dim=-1) @ text.T, memory.size).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        cos = F.normalize(encode(images), dim=-1) @ text.T
    return {"cos": cos, "kept": kept, "updated": updated}


@register
class STAMP(Method):
    name = "stamp"
    label = "STAMP (test-time: a memory of confident images, replayed each batch)"
    plain = "STAMP"
    lesson = "extended"
    description = ("Adapts the image tower's norm layers a batch at a time: images it is sure of (low entropy, "
                   "same class as before adapting) join a memory balanced over classes, and the whole memory is "
                   "made more certain at each batch, the surest images weighing most (the order of the stream is "
                   "fixed by the seed).")
    trains = False
    adapts_in_stream = True
    defaults = STREAM_DEFAULTS
    options = (
        Option("stamp_lr", 1e-4, "SGD learning rate of the norm layers, one step per batch", lo=0, lo_open=True,
               hi=100, label="Learning rate (norm layers)", official=1e-4, source=f"{SOURCE} --lr"),
        Option("stamp_momentum", 0.9, "SGD momentum", lo=0, hi=0.999, label="Momentum", official=0.9,
               source="MarcLafon/cliptta methods/abstract_model.py momentum"),
        Option("stamp_memory", 128, "images kept in the class-balanced memory", kind=int, lo=1, hi=100_000,
               label="Memory (images)", official=128, source=f"{SOURCE} --memory_length"),
        Option("stamp_alpha", 0.45, "an image joins the memory if its entropy is below this times log(classes)",
               lo=0, lo_open=True, hi=1, label="Entropy margin α", official=0.45, source=f"{SOURCE} --alpha_stamp"),
        Option("stamp_consistency", True, "keep only images whose class is the same as under the tower as loaded",
               kind=bool, label="Consistency filter", official=True,
               source=f"{SOURCE} --use_consistency_filtering"),
    )

    def passes(self, cfg) -> int:
        # per batch: the filter (two passes with consistency), the memory forward and backward (about two
        # passes of up to stamp_memory images), the prediction
        return 5

    def infer(self, run, ctx: Context) -> None:
        o = ctx.options
        loaded = run.loaded
        model = loaded.model
        params, saved, text, order = stream_setup(self, run)
        optimizer = torch.optim.SGD(params, lr=o.stamp_lr, momentum=o.stamp_momentum)
        encode = lambda x: model.encode_image(loaded.to_input(x), normalize=False).float()

        def source_encode(x):
            with swapped(params, saved):
                return encode(x)

        memory = Memory(o.stamp_memory, len(text), random.Random(run.config.seed))
        cos, kept, steps = torch.empty(len(order), len(text)), torch.zeros(len(order), dtype=torch.bool), 0
        bs = run.config.batch_size
        try:
            for p in params:
                p.requires_grad_(True)
            for start in range(0, len(order), bs):
                run.stop.check()
                idx = order[start:start + bs]
                images = torch.stack([run.eval_set[i][0] for i in idx.tolist()])
                rec = stamp_step(memory, encode, source_encode if o.stamp_consistency else None, images, text,
                                 optimizer, o, run.scale("eval"))
                cos[idx], kept[idx], steps = rec["cos"].cpu(), rec["kept"], steps + rec["updated"]
                run.emit("progress", phase="STAMP: the image stream", done=start + len(idx), total=len(order))
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
                    p.requires_grad_(False)
        run.outcome.update({"stamp_stream": order.tolist(), "stamp_kept": kept[order].tolist(),
                            "stamp_updates": steps})
        probs = torch.softmax(run.scale("eval") * cos, dim=1)
        run.evaluate(1, outputs=(cos, probs.numpy()))
