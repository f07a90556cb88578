"""UEO (Liang et al., ICML 2024): entropy optimisation weighted by zero-shot confidence.

    loss = sum_i w_i H(p_i) / sum_i w_i  -  lambda * H(p_bar),   p_bar = sum_i (1/w_i) p_i / sum_i (1/w_i)

w_i is the max softmax of image i's *initial* zero-shot prediction (computed once, before training). Confident
(likely known) images have their entropy minimised; unconfident (likely unknown) images dominate the marginal,
whose entropy is maximised, which keeps them spread out (low confidence) instead of collapsing onto a known class.
"""
import torch

from . import register
from ..data import DataError
from .base import Batch, Context, Method, confidence_weights, entropy, weighted_marginal, weighted_mean

ORACLE_EPS = 1e-3  # the official code's oracle weight: 1 for known, 0 for unknown, plus 1e-3


def ueo_loss(probs: torch.Tensor, weight: torch.Tensor, trade: float):
    cond = weighted_mean(entropy(probs), weight)
    marg = entropy(weighted_marginal(probs, 1.0 / weight))
    return cond - trade * marg, {"loss_cond": cond.detach(), "loss_marginal": marg.detach()}


@register
class UEO(Method):
    name = "ueo"
    label = "UEO"
    plain = "UEO"
    description = ("Universal Entropy Optimization: confidence-weighted entropy minimisation plus "
                   "inverse-confidence-weighted marginal entropy maximisation.")
    needs_weights = True
    uses = ("trade", "weight_temperature")

    def loss(self, batch: Batch):
        return ueo_loss(batch.probs, batch.weights, batch.trade)

    def prepare(self, tr, zero_shot_cos: torch.Tensor, resumed) -> Context:
        """The weights: each image's zero-shot confidence, fixed for the whole run (a resumed run keeps its own)."""
        weights = resumed.weights
        if weights is None and resumed.epoch > 0:
            raise DataError("This checkpoint holds no UEO weights (the zero-shot confidences), so UEO cannot "
                            "resume from it. Start a new run instead.")
        if weights is None:
            t = tr.config.weight_temperature
            weights = confidence_weights(zero_shot_cos, tr.scale("weights") if t is None else t)
        return Context(text=tr.prompt, known=tr.known, weights=weights)


@register
class Oracle(Method):
    name = "oracle"
    label = "Oracle (true known/unknown)"
    plain = "the oracle"
    description = "UEO with the true known/unknown mask as weights (needs ground truth): an upper bound."
    needs_truth = True
    uses = ("trade",)

    def loss(self, batch: Batch):
        return ueo_loss(batch.probs, batch.known.to(batch.probs.dtype) + ORACLE_EPS, batch.trade)
