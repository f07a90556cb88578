"""CLIPood (Shu et al., ICML 2023): supervised fine-tuning of the image tower on labelled source domains.

Margin metric softmax (MMS), as the official code (thuml/CLIPood engine.py) computes it: with the normalised image
feature f, the fixed class text features t and the label y,

    logits = s * (f - lambda * t_y) @ t.T        ->  cross-entropy

so class j's logit is s*(cos(f, t_j) - lambda*cos(t_y, t_j)): relative to the true class it gets a margin
lambda*(1 - cos(t_y, t_j)) — small for classes whose names are similar to the true one, large for dissimilar ones.

Beta moving average (BMA): the running average of the image tower's weights over all steps t = 0..T (0 = before
training), snapshot t weighted by Beta(beta, beta).pdf((t + 0.5) / (T + 1)); the averaged model is the result.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.stats import beta as beta_dist

from . import register
from .base import Batch, Method


def mms_logits(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, scale: float,
               margin: float) -> torch.Tensor:
    """Margin metric softmax logits. features (B, D) and text (K, D) L2-normalised; labels (B,) in 0..K-1."""
    return scale * (features - margin * text[labels]) @ text.T


@register
class CLIPood(Method):
    name = "clipood"
    label = "CLIPood (supervised, labelled source)"
    description = ("Fine-tune the whole image tower on labelled source folders with margin metric softmax, "
                   "and keep a Beta moving average of its weights (needs labelled source folders).")
    supervised = True          # trains on labelled source images, evaluates on the target folder
    trains_prompt = False      # text features stay fixed (the class prompts)
    trains_visual = "all"      # every image-tower parameter (the model stays in eval mode: norm statistics frozen)
    optimizer = "adamw"
    uses = ("margin",)         # (and the moving average's beta, the weight decay, steps per epoch: CLI options)

    def loss(self, batch: Batch):
        logits = mms_logits(batch.features, batch.text, batch.labels, batch.scale, batch.margin)
        loss = F.cross_entropy(logits, batch.labels)
        with torch.no_grad():
            acc = (batch.probs.argmax(1) == batch.labels).float().mean()
        return loss, {"train_acc": acc}


class BetaMovingAverage:
    """Weighted running average of parameters; snapshot t has weight Beta(b, b).pdf((t + 0.5) / (T + 1)).

    ``update()`` after each optimisation step folds in the current values; the initial values (t = 0) are folded
    in at construction, as in the official code.
    """

    def __init__(self, params: dict[str, torch.Tensor], total_steps: int, beta: float = 0.5):
        self.params = params
        self.total = total_steps
        self.dist = beta_dist(beta, beta)
        self.t = 0
        self.weight_sum = self.weight(0)
        self.avg = {k: p.detach().clone() for k, p in params.items()}

    def weight(self, t: int) -> float:
        return float(self.dist.pdf((t + 0.5) / (self.total + 1)))

    @torch.no_grad()
    def update(self) -> None:
        self.t += 1
        w = self.weight(self.t)
        rel = w / self.weight_sum
        for k, p in self.params.items():
            self.avg[k].mul_(1 / (1 + rel)).add_(p.detach(), alpha=rel / (1 + rel))
        self.weight_sum += w

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the live parameters with the averaged ones (call again to swap back)."""
        for k, p in self.params.items():
            tmp = p.detach().clone()
            p.copy_(self.avg[k])
            self.avg[k].copy_(tmp)
