"""UEO (Liang et al., ICML 2024): entropy optimisation weighted by zero-shot confidence.

    loss = sum_i w_i H(p_i) / sum_i w_i  -  lambda * H(p_bar),   p_bar = sum_i (1/w_i) p_i / sum_i (1/w_i)

w_i is the max softmax of image i's *initial* zero-shot prediction (computed once, before training). Confident
(likely known) images have their entropy minimised; unconfident (likely unknown) images dominate the marginal,
whose entropy is maximised, which keeps them spread out (low confidence) instead of collapsing onto a known class.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from . import register
from ..data import DataError
from .base import TRADE, Context, Method, Step, confidence_weights, entropy, weighted_marginal, weighted_mean
from .options import Option

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
    lesson = "core"
    description = ("Universal Entropy Optimization: confidence-weighted entropy minimisation plus "
                   "inverse-confidence-weighted marginal entropy maximisation.")
    needs_weights = True
    options = (TRADE, Option("weight_temperature", None, "the zero-shot weights are max softmax(T x cosine); empty: "
                             "the protocol's scale, the model's logit scale under studio (as the paper), 1 under "
                             "official (as the official code)", lo=0.0, hi=1e4, lo_open=True,
                             label="UEO weight temperature", unset="by the protocol",
                             official=1.0, source="tim-learn/UEO demo.py (weights from unscaled cosines)"))

    def loss(self, step: Step, ctx: "WeightedContext"):
        return ueo_loss(step.probs, step.per_image(ctx.weights), ctx.options.trade)

    def prepare(self, run, zero_shot_cos: torch.Tensor, resumed) -> Context:
        """The weights: each image's zero-shot confidence, fixed for the whole run (a resumed run keeps its own)."""
        weights = resumed.saved.get(WeightedContext.KEY)
        if weights is None and resumed.epoch > 0:
            raise DataError("This checkpoint holds no UEO weights (the zero-shot confidences), so UEO cannot "
                            "resume from it. Start a new run instead.")
        options = self.option_values(run.config)
        if weights is None:
            t = options.weight_temperature
            weights = confidence_weights(zero_shot_cos, run.scale("weights") if t is None else t)
        return WeightedContext(text=run.prompt, known=run.known, options=options, weights=weights.to(run.loaded.device))


@dataclass
class WeightedContext(Context):
    weights: Optional[torch.Tensor] = None  # (N,) per target image: its zero-shot confidence, fixed for the run
    KEY = "ueo_weights"                     # (their name in the checkpoint)

    def saved(self):
        return {self.KEY: self.weights}


@register
class Oracle(Method):
    name = "oracle"
    label = "Oracle (true known/unknown)"
    plain = "the oracle"
    lesson = "core"
    description = "UEO with the true known/unknown mask as weights (needs ground truth): an upper bound."
    needs_truth = True
    options = (TRADE,)

    def loss(self, step: Step, ctx: Context):
        known = step.per_image(ctx.known)
        return ueo_loss(step.probs, known.to(step.probs.dtype) + ORACLE_EPS, ctx.options.trade)
