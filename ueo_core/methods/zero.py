"""ZERO (Farina et al., NeurIPS 2024; FarinaMatteo/zero ``ttas/zero.py``): test-time augmentation without
backpropagation. Each image is seen as N views (the image itself and N-1 random resized crops with flips); the
gamma = 0.3 share of views with the lowest softmax entropy is kept, and the prediction is their majority vote —
a softmax at temperature zero, summed over the kept views. Ties are broken as the official code does: by the first
later view (in view order, from index N*gamma on) whose argmax is one of the tied classes.

Defaults as the official code: N = 64 views (``--zero-views``), gamma = 0.3. Where this differs, knowingly:
- the crops are this project's RandomResizedCrop at the model's input size with its bicubic interpolation, scale
  0.08-1 (the official code: torchvision's defaults, bilinear), and the first view is the evaluation preprocessing;
- what a run reports as its softmax is the vote share of each class (the official code returns the counts), and
  as its cosine logits the mean over the kept views (for the logit scores: MaxLogit, energy, MCM);
- the official fallback tie-break (``break_sample_tie``) indexes with ``~ties`` on an integer tensor, which marks
  the wrong classes; here the fallback is what it means: the tied class the first view scores highest.
"""
from __future__ import annotations

import torch

from ..data import load_rgb
from ..models import inference_autocast
from . import register
from .base import Context, Method
from .options import Option

KEEP = 0.3  # the official gamma (updated from 0.1 in the official code)


def keep_confident(logits: torch.Tensor, keep: float = KEEP) -> torch.Tensor:
    """Indices of the int(V * keep) views with the lowest softmax entropy (official ``confidence_filter``; its
    ``p * p.log()`` is NaN where a probability underflows to 0, which sorts the most confident views last: the
    log-softmax here gives the same entropy without that)."""
    h = -(logits.softmax(1) * logits.log_softmax(1)).sum(1)
    return torch.argsort(h, descending=False)[:int(logits.size(0) * keep)]


def zero_vote(logits: torch.Tensor, keep: float = KEEP) -> torch.Tensor:
    """(K,) vote counts of one image from its (V, K) view logits (scaled as the model's softmax takes them), the
    tie-break's extra vote included."""
    kept = keep_confident(logits, keep)
    votes = torch.bincount(logits[kept].argmax(1), minlength=logits.size(1)).float()
    ties = torch.nonzero(votes == votes.max()).flatten().tolist()
    if len(ties) > 1:
        later = [int(c) for c in logits[int(logits.size(0) * keep):].argmax(1) if int(c) in ties]
        pick = later[0] if later else max(ties, key=lambda c: float(logits[0, c]))
        votes[pick] += 1
    return votes


class ViewSet(torch.utils.data.Dataset):
    """Each item: (V, C, H, W) views of one image (the evaluation view first, then V-1 random crops), its index."""

    def __init__(self, files, preprocess, augment, views: int, cache=None):
        self.files, self.preprocess, self.augment = list(files), preprocess, augment
        self.views, self.cache = views, cache

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        img = self.cache.get(self.files[i]) if self.cache is not None else load_rgb(self.files[i])
        return torch.stack([self.preprocess(img)] + [self.augment(img) for _ in range(self.views - 1)]), i


@register
class Zero(Method):
    name = "zero"
    label = "ZERO (training-free: vote of confident views)"
    plain = "ZERO"
    lesson = "extended"
    description = ("No training, no backpropagation: each image is seen as N augmented views; the most confident "
                   "30 % vote, and the majority wins. Costs N forward passes per image.")
    trains = False
    options = (Option("zero_views", 64, "views per image: the image and N-1 random crops (each view is one pass of "
                      "the image tower; at least 4, so that its 30 % of confident views is one or more)", kind=int,
                      lo=4, hi=512, label="Views per image (ZERO: the image and N-1 random crops)", official=64,
                      source="FarinaMatteo/zero ttas/zero.py"),)
    defaults = {"epochs": 1, "batch_size": 64, "lr_prompt": 0.0, "lr_visual": 0.0}

    def passes(self, cfg) -> int:
        return cfg.options["zero_views"]  # every view of every image goes through the image tower

    def infer(self, run, ctx: Context) -> None:
        cfg, loaded, n_views = run.config, run.loaded, ctx.options.zero_views
        torch.manual_seed(cfg.seed * 1000 + 700)  # the crops: repeatable by the seed
        views = ViewSet(run.image_set.files, loaded.preprocess, loaded.train_transform((0.08, 1.0)), n_views,
                        run.eval_set.cache)
        per_batch = max(1, cfg.batch_size * 3 // n_views)  # images per forward pass (their views together)
        loader = torch.utils.data.DataLoader(views, batch_size=per_batch, shuffle=False, num_workers=cfg.num_workers)
        with torch.no_grad(), inference_autocast(loaded):
            text = run.prompt().float()
        scale, votes, cos, done = run.scale("train"), [], [], 0
        for x, _ in loader:
            run.stop.check()
            with torch.no_grad(), inference_autocast(loaded):
                f = loaded.model.encode_image(loaded.to_input(x.flatten(0, 1)), normalize=True).float()
            for c in (f @ text.T).view(len(x), n_views, -1):
                votes.append(zero_vote(scale * c))
                cos.append(c[keep_confident(scale * c)].mean(0))
            done += len(x)
            run.emit("progress", phase=f"ZERO: {n_views} views an image", done=done, total=len(views))
        votes = torch.stack(votes)
        run.evaluate(1, outputs=(torch.stack(cos).cpu(), (votes / votes.sum(1, keepdim=True)).cpu().numpy()))
