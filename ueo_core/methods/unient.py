"""UniEnt (Gao et al., CVPR 2024, "Unified Entropy Optimization for Open-Set Test-Time Adaptation"), in the form
its CLIP comparison takes in ROSITA's code (manogna-s/ROSITA ``methods/unient_lda.py``): one image at a time, the
image's score (its largest cosine to a class text) joins the last ``unient_scores`` scores, which ROSITA's
least-within-group-variance split divides into known and unknown. A known image's softmax entropy is minimised,
an unknown one's maximised: one SGD step on the image tower's norm-layer affine parameters per image, after which
the updated tower gives the image's prediction.

Settings: the official ones (ROSITA's ``owtta.py`` defaults): SGD at 0.001, the last 512 scores. Knowingly
different:
- the paper's UniEnt separates known from unknown with a Gaussian mixture over a source-trained network's scores
  and weights each image by it; this is the CLIP form ROSITA's authors ran, with their threshold (no source
  model exists for CLIP). UniEnt+ (the paper's marginal-entropy terms) is not part of that form;
- the official code keeps two feature banks it never reads, and encodes an augmented view whose logits no loss
  uses: both are left out (the result is the same);
- as ROSITA here (``rosita.py``): the stream's order is fixed by the seed and recorded in metrics.json
  (``unient_stream``, with ``unient_score`` and ``unient_known``, the stream's own score and decision in that
  order); the norm layers are selected by type; the prediction pass runs in fp32; the run reports the studio's
  scores of the updated cosines; the tower is put back as loaded after the stream (the run's checkpoint is the
  model as loaded).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import register
from .base import Context, Method
from .rosita import STREAM_DEFAULTS, Stream, open_stream, stream_options


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)


def unient_step(state: Stream, encode, views: torch.Tensor, text: torch.Tensor, optimizer, o) -> dict:
    """One image of the stream (``views``: (1, ...), the image): entropy down if its score says known, up if
    unknown, one step; returns its record as ``rosita_step`` does."""
    raw = encode(views)
    cos_before = F.normalize(raw, dim=-1)[0] @ text.T  # the official logits: cosines (no scale)
    score, pl = cos_before.max(0)
    score, pl = float(score.detach()), int(pl)
    th, _, _ = state.observe(score)
    known = score >= th
    loss = softmax_entropy(cos_before) * (1 if known else -1)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        cos = F.normalize(encode(views), dim=-1)[0] @ text.T
    return {"cos": cos, "score": score, "class": pl, "threshold": th, "known": known, "updated": True}


@register
class UniEnt(Method):
    name = "unient"
    label = "UniEnt (test-time: entropy down for known, up for unknown)"
    plain = "UniEnt"
    lesson = "extended"
    description = ("Adapts the image tower's norm layers one image at a time: an image its recent scores call "
                   "known becomes more certain, one they call unknown less certain (the order of the stream is "
                   "fixed by the seed).")
    trains = False
    adapts_in_stream = True
    defaults = STREAM_DEFAULTS
    options = stream_options("unient")

    def passes(self, cfg) -> int:
        return 3  # per image: forward and backward (about two passes), then its prediction

    def infer(self, run, ctx: Context) -> None:
        o = ctx.options
        make = lambda k: Stream(o.unient_scores, 0, 0)
        open_stream(self, run, ctx, unient_step, "unient", "UniEnt", make, o.unient_lr, views=1)
