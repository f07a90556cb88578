"""UEO (Liang et al., ICML 2024): entropy optimisation weighted by zero-shot confidence.

    loss = sum_i w_i H(p_i) / sum_i w_i  -  lambda * H(p_bar),   p_bar = sum_i (1/w_i) p_i / sum_i (1/w_i)

w_i is the max softmax of image i's *initial* zero-shot prediction (computed once, before training). Confident
(likely known) images have their entropy minimised; unconfident (likely unknown) images dominate the marginal,
whose entropy is maximised, which keeps them spread out (low confidence) instead of collapsing onto a known class.
"""
import torch

from . import register
from .base import Batch, Method, entropy, weighted_marginal, weighted_mean

ORACLE_EPS = 1e-3  # the official code's oracle weight: 1 for known, 0 for unknown, plus 1e-3


def ueo_loss(probs: torch.Tensor, weight: torch.Tensor, trade: float):
    cond = weighted_mean(entropy(probs), weight)
    marg = entropy(weighted_marginal(probs, 1.0 / weight))
    return cond - trade * marg, {"loss_cond": cond.detach(), "loss_marginal": marg.detach()}


@register
class UEO(Method):
    name = "ueo"
    label = "UEO"
    description = ("Universal Entropy Optimization: confidence-weighted entropy minimisation plus "
                   "inverse-confidence-weighted marginal entropy maximisation.")
    needs_weights = True
    uses = ("trade", "weight_temperature")

    def loss(self, batch: Batch):
        return ueo_loss(batch.probs, batch.weights, batch.trade)


@register
class Oracle(Method):
    name = "oracle"
    label = "Oracle (true known/unknown)"
    description = "UEO with the true known/unknown mask as weights (needs ground truth): an upper bound."
    needs_truth = True
    uses = ("trade",)

    def loss(self, batch: Batch):
        return ueo_loss(batch.probs, batch.known.to(batch.probs.dtype) + ORACLE_EPS, batch.trade)
