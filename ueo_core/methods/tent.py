"""Entropy minimisation (TENT-style): make every prediction confident. Known to collapse onto few classes."""
from . import register
from .base import Context, Method, Step, entropy


@register
class EntropyMin(Method):
    name = "entropy"
    label = "Entropy min. (TENT)"
    plain = "entropy minimisation (TENT)"
    lesson = "core"
    description = "Minimise the mean entropy of all predictions (no diversity term: may collapse)."

    def loss(self, step: Step, ctx: Context):
        cond = entropy(step.probs).mean()
        return cond, {"loss_cond": cond.detach()}
