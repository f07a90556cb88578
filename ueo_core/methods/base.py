"""The method interface and the entropy helpers every objective shares.

A method is a small objective: given the softmax outputs of a batch (and per-image context such as the UEO
confidence weights) it returns a loss to minimise plus numbers worth plotting. The trainer does everything else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

# The official UEO code adds 1e-5 inside the log (loss_entropy / loss_entropy_wei); we keep it so losses match.
EPS = 1e-5


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy along the last dim, -sum p log(p + EPS). (N,K) -> (N,), (K,) -> ()."""
    return -(p * torch.log(p + EPS)).sum(dim=-1)


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum()


def weighted_marginal(p: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_i weight_i p_i / sum_i weight_i: the (weighted) mean prediction over the batch."""
    return (weight.unsqueeze(1) * p).sum(dim=0) / weight.sum()


def confidence_weights(cos_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """UEO's per-image weight: max softmax of the zero-shot logits, temperature * cosine similarity.

    The paper uses the model's logit scale (100 for OpenAI CLIP); the official code passes the raw cosines
    (temperature 1), which makes the weights almost uniform (about 1/K). Both are available: see RunConfig.
    """
    return torch.softmax(temperature * cos_logits.float(), dim=1).max(dim=1).values


@dataclass
class Batch:
    """What an objective may use besides the predictions."""
    probs: torch.Tensor                     # (B, K) softmax(logit_scale * cos)
    weights: Optional[torch.Tensor] = None  # (B,) zero-shot max-softmax confidence (UEO)
    known: Optional[torch.Tensor] = None    # (B,) ground truth known (1) / unknown (0), oracle only
    trade: float = 1.0                      # lambda, weight of the marginal-entropy term
    # supervised methods (CLIPood)
    features: Optional[torch.Tensor] = None  # (B, D) normalised image features
    text: Optional[torch.Tensor] = None      # (K, D) normalised text features of the trained classes
    labels: Optional[torch.Tensor] = None    # (B,) class index into ``text``
    scale: float = 100.0                     # logit scale (temperature)
    margin: float = 0.3                      # CLIPood's lambda


class Method:
    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    trains: ClassVar[bool] = True
    needs_weights: ClassVar[bool] = False
    needs_truth: ClassVar[bool] = False
    supervised: ClassVar[bool] = False       # trains on labelled source folders (config.source)
    trains_prompt: ClassVar[bool] = True     # the CoOp context vectors learn
    trains_visual: ClassVar[str] = "norm"    # "norm": norm-layer affine params; "all": the whole image tower
    optimizer: ClassVar[str] = "sgd"         # "sgd" (official UEO: no momentum) or "adamw" (official CLIPood)
    uses: ClassVar[tuple] = ()               # the RunConfig options the objective reads (trade, weight_temperature,
    #   margin); the app offers only these for the method

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        """(loss to minimise, numbers worth plotting as detached 0-d tensors: the trainer reads them in bulk, so a
        GPU step needs no host-device synchronisation)."""
        raise NotImplementedError

    @staticmethod
    def monitor(probs: torch.Tensor) -> dict:
        """Unweighted numbers every method logs, comparable across methods (detached 0-d tensors)."""
        with torch.no_grad():
            return {"cond_entropy": entropy(probs).mean(), "marginal_entropy": entropy(probs.mean(dim=0))}
