"""The Learn page's maths: softmax and entropy of a toy batch, UEO's terms, gradient descent on it, all with the
engine's own registered losses."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from ..methods import get_method
from ..methods.base import Step, entropy, weighted_marginal


def softmax(logits: Sequence[float], scale: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) * scale
    z = np.exp(z - z.max())
    return z / z.sum()


def entropy_of(p: Sequence[float]) -> float:
    return float(entropy(np.asarray(p, dtype=np.float64)))


def toy_loss(method: str, p: torch.Tensor, weights: torch.Tensor, trade: float):
    """The registered method's (loss, statistics) on a toy batch: the batch is the whole image set (each row its
    own image), the weights are UEO's, ``trade`` its lambda (a method without it ignores it)."""
    from ..methods.options import namespace
    from ..methods.ueo import WeightedContext
    m = get_method(method)
    ctx = WeightedContext(text=None, options=namespace(m.options, {"trade": float(trade)}), weights=weights)
    return m.loss(Step(probs=p, features=None, text=None, scale=1.0, per_image=lambda t: t), ctx)


def ueo_batch_terms(probs: np.ndarray, weights: Optional[np.ndarray] = None, trade: float = 1.0) -> dict:
    """The pieces of the UEO objective for a small batch (rows = images), for the Learn page. Every loss is the
    engine's own: the registered ``entropy``, ``im`` and ``ueo`` methods evaluated on this batch.

    weights default to each row's max probability (its confidence, as UEO's zero-shot weight).
    """
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64))
    w = p.max(dim=1).values if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
    losses = {m: float(toy_loss(m, p, w, trade)[0]) for m in ("entropy", "im", "ueo")}
    _, ueo_parts = toy_loss("ueo", p, w, trade)
    marginal = weighted_marginal(p, 1.0 / w)
    return {"weights": w.numpy(), "entropy": entropy(p).numpy(), "share_cond": (w / w.sum()).numpy(),
            "share_marginal": ((1 / w) / (1 / w).sum()).numpy(), "marginal": marginal.numpy(),
            "plain_marginal": p.mean(dim=0).numpy(), "cond": float(ueo_parts["loss_cond"]),
            "marginal_entropy": float(ueo_parts["loss_marginal"]), "loss": losses["ueo"], "losses": losses,
            "trade": float(trade), "max_entropy": math.log(p.shape[1])}


def toy_descent(logits: Sequence[Sequence[float]], method: str, scale: float, trade: float = 1.0,
                steps: int = 40, lr: float = 0.2) -> list[dict]:
    """Gradient steps on the Learn page's toy batch, with the engine's registered loss of ``method``.

    The images' similarities ``logits`` stay fixed; what is learned is one offset per class shared by every image
    (b, so p_i = softmax(scale * (z_i + b))): the toy counterpart of the prompt context, where one parameter moves
    every image's score for a class. UEO's weights are the zero-shot confidences, fixed, as in the trainer.
    Plain gradient descent (lr 0.2 keeps every loss curve monotone on the page's default batch). One record per
    step, step 0 included: loss, probabilities, predicted class, confidence, class shares.
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    b = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    w = torch.softmax(scale * z, dim=1).max(dim=1).values
    get_method(method)  # (an unknown name: ValueError before any step)
    out = []
    for s in range(steps + 1):
        p = torch.softmax(scale * (z + b), dim=1)
        loss, _ = toy_loss(method, p, w, trade)
        pn = p.detach().numpy()
        pred = pn.argmax(axis=1)
        out.append({"step": s, "loss": float(loss.detach()), "probs": pn, "pred": pred, "confidence": pn.max(axis=1),
                    "shares": np.bincount(pred, minlength=z.shape[1]) / len(pred), "offset": b.detach().numpy().copy()})
        if s == steps:
            break
        loss.backward()
        with torch.no_grad():
            b -= lr * b.grad
            b.grad.zero_()
    return out


def toy_descent_note(runs: dict[str, list[dict]], method_names: dict[str, str]) -> list[str]:
    """One sentence per method on what its gradient steps did to the toy batch (first vs last step)."""
    lines = []
    for m, frames in runs.items():
        first, last = frames[0], frames[-1]
        n, k = len(last["pred"]), len(last["shares"])
        top = int(np.argmax(last["shares"]))
        count = int(round(last["shares"][top] * n))
        empty = [c + 1 for c in range(k) if last["shares"][c] == 0]
        unsure = [i for i in range(n) if first["confidence"][i] < 0.5]
        parts = [f"{count} of {n} images predicted as class {top + 1}"
                 + (f", class {' and '.join(map(str, empty))} left with none" if empty else "")]
        if unsure:
            parts.append("the image" + ("s" if len(unsure) > 1 else "") + " that started unsure ("
                         + ", ".join(f"{i + 1}: {first['confidence'][i]:.0%}" for i in unsure) + ") now "
                         + ", ".join(f"{last['confidence'][i]:.0%}" for i in unsure))
        lines.append(f"**{method_names.get(m, m)}** after {last['step']} steps: " + "; ".join(parts)
                     + f" (loss {first['loss']:.3f} → {last['loss']:.3f}).")
    return lines
