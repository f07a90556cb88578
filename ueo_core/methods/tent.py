"""Entropy minimisation (TENT-style): make every prediction confident. Known to collapse onto few classes."""
from . import register
from .base import Batch, Method, entropy


@register
class EntropyMin(Method):
    name = "entropy"
    label = "Entropy min. (TENT)"
    plain = "entropy minimisation (TENT)"
    description = "Minimise the mean entropy of all predictions (no diversity term: may collapse)."

    def loss(self, batch: Batch):
        cond = entropy(batch.probs).mean()
        return cond, {"loss_cond": cond.detach()}
