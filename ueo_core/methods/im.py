"""Information maximisation: mean entropy minus marginal entropy. UEO's ``--noweight`` ablation."""
from . import register
from .base import TRADE, Context, Method, Step, entropy


@register
class InfoMax(Method):
    name = "im"
    label = "Information max. (IM)"
    plain = "IM"
    lesson = "core"
    description = "Confident yet diverse predictions: mean entropy - lambda * entropy of the mean prediction."
    options = (TRADE,)

    def loss(self, step: Step, ctx: Context):
        cond = entropy(step.probs).mean()
        marg = entropy(step.probs.mean(dim=0))
        return cond - ctx.options.trade * marg, {"loss_cond": cond.detach(), "loss_marginal": marg.detach()}
