"""Information maximisation: mean entropy minus marginal entropy. UEO's ``--noweight`` ablation."""
from . import register
from .base import Batch, Method, entropy


@register
class InfoMax(Method):
    name = "im"
    label = "Information max. (IM)"
    plain = "IM"
    description = "Confident yet diverse predictions: mean entropy - lambda * entropy of the mean prediction."
    uses = ("trade",)

    def loss(self, batch: Batch):
        cond = entropy(batch.probs).mean()
        marg = entropy(batch.probs.mean(dim=0))
        return cond - batch.trade * marg, {"loss_cond": cond.detach(), "loss_marginal": marg.detach()}
