"""ROSITA (Sreenivas & Biswas, 2024, "Effectiveness of vision language models for open-world single image test
time adaptation"; manogna-s/ROSITA ``methods/rosita.py``): open-world test-time adaptation of CLIP's image tower,
one image at a time. Each image's score is its largest cosine to a class text. The last ``rosita_scores`` scores
are split in two by the threshold of least within-group variance (on the grid 0, 0.01, ..., 0.99): an image
scoring at least the threshold is called known ("weak OOD"), below it unknown ("strong OOD"). An image clearly
known (above the known group's mean) joins a bank of known features, learns its own zero-shot class (cross-entropy
on its view and on one augmented view) and, once both banks hold more than ``rosita_neighbours`` features, is
pulled towards its nearest known neighbours that share its class and pushed from its nearest unknown ones (a
contrastive term weighted by ``rosita_alpha``). An image clearly unknown (below the unknown group's mean) joins
the unknown bank and is pulled towards its unknown neighbours, away from the known ones. One SGD step on the
tower's norm-layer affine parameters per image; the image's prediction is then taken by the updated tower.

Settings: the official ones (``owtta.py``'s defaults, which its ``scripts/run.sh`` keeps): SGD at 0.001, alpha
0.5, 5 positive and 5 negative neighbours, the last 512 scores, an unknown bank of 64 and a known bank of 5 per
class. Knowingly different:
- the stream is online and order-dependent: here its order is a permutation fixed by the run's seed (the official
  loader shuffles with seed 0), recorded in metrics.json (``rosita_stream``: the image indices in the order seen);
- the augmented view is a random resized crop (scale 0.08-1, bicubic) with a random flip of the evaluation view's
  pixels, repeatable by the seed (the official code crops the decoded image before resizing it);
- the parameters that learn are the norm layers' affine ones, selected by type (``base.norm_affine_params``; the
  official ``get_ln_params`` selects by name, the same set for a ViT);
- the prediction pass runs in fp32 (the official one under fp16 autocast);
- what a run reports is the studio's: its scores (MSP, MaxLogit, ...) are taken from the cosines the updated tower
  gives each image. The official AUROC is of the score before the image's update (the largest cosine), and its
  known/unknown decision is the stream threshold's; both are kept in metrics.json (``rosita_score``,
  ``rosita_known``, in stream order) for a comparison.
- the run's model: the stream changes the tower while it runs; at the end the tower is put back as loaded, so the
  run's checkpoint is the model as loaded (as a TDA run's). Applied to other photos (``eval --run``, Sort), ROSITA
  runs again on those photos from the loaded tower, as ZERO and TDA do.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T

from . import register
from .base import Context, Method
from .options import Option

GRID = np.arange(0, 1, 0.01)  # the official thresholds tried (cosine scores)
SOURCE = "manogna-s/ROSITA owtta.py"


def split(scores: np.ndarray, th: float) -> tuple[float, float, float]:
    """(within-group variance, mean below, mean at or above) of ``scores`` split at ``th``: the official
    ``compute_os_variance_stats``; a split that leaves a group empty is no split (inf, and the means 0 and 1)."""
    high = scores >= th
    w1 = np.count_nonzero(high) / scores.size
    if w1 == 0 or w1 == 1:
        return np.inf, 0.0, 1.0
    low_part, high_part = scores[~high], scores[high]
    return (1 - w1) * np.var(low_part) + w1 * np.var(high_part), float(np.mean(low_part)), float(np.mean(high_part))


def stream_threshold(scores: np.ndarray) -> tuple[float, float, float]:
    """(threshold, mu0, mu1): the grid's first threshold of least within-group variance, and the means of the two
    groups it makes (0 and 1 when every threshold leaves a group empty: then the threshold is 0)."""
    variances = [split(scores, th)[0] for th in GRID]
    th = float(GRID[int(np.argmin(variances))])
    _, mu0, mu1 = split(scores, th)
    return th, mu0, mu1


@dataclass
class Stream:
    """What the stream remembers between images: its recent scores and its two banks of (raw) features."""
    n_scores: int
    known_size: int       # classes x neighbours (the official C * k_p)
    unknown_size: int
    scores: list = field(default_factory=list)
    known: list = field(default_factory=list)
    unknown: list = field(default_factory=list)

    def observe(self, score: float) -> tuple[float, float, float]:
        self.scores = (self.scores + [score])[-self.n_scores:]
        return stream_threshold(np.array(self.scores))


def contrastive(f: torch.Tensor, pos_bank: list, neg_bank: list, k_pos: int, k_neg: int,
                mask=None) -> torch.Tensor:
    """mean over the k_pos nearest positives of -sim(f, positive) + log sum exp of sims to the k_neg nearest
    negatives (the official loss, its own normalisation of the banks); ``mask`` (k_pos,) keeps some positives."""
    pos = F.normalize(torch.cat(pos_bank), dim=-1)
    neg = F.normalize(torch.cat(neg_bank), dim=-1)
    top_pos, idx = (f @ pos.T).topk(min(k_pos, len(pos)), dim=-1)
    top_neg = (f @ neg.T).topk(min(k_neg, len(neg)), dim=-1).values  # (the official code fails on fewer)
    loss = -top_pos[0] + torch.logsumexp(top_neg[0], dim=0)
    if mask is not None:
        loss = loss * mask(idx[0])
    return loss.mean()


def rosita_step(state: Stream, encode, views: torch.Tensor, text: torch.Tensor, optimizer, o) -> dict:
    """One image of the stream. ``views`` (2, ...): the image and its augmented view; ``encode`` gives their raw
    image features (with gradients to the parameters ``optimizer`` steps); ``text`` (K, D) normalised class
    features; ``o`` the options. Updates the state and the parameters; returns the image's record: its cosines
    after the update (``cos``), its score and zero-shot class before it, the threshold and the decision."""
    raw = encode(views)
    cos_views = F.normalize(raw, dim=-1) @ text.T  # the official logits: cosines (no scale)
    f = F.normalize(raw[:1], dim=-1)
    score, pl = cos_views[0].max(0)
    score, pl = float(score.detach()), int(pl)
    th, mu0, mu1 = state.observe(score)
    known, sure_known, sure_unknown = score >= th, score >= th and score > mu1, score < th and score < mu0
    if sure_known:
        state.known = (state.known + [raw[:1].detach()])[-state.known_size:]
    if sure_unknown:
        state.unknown = (state.unknown + [raw[:1].detach()])[-o.rosita_bank:]
    terms = []
    if sure_known:
        target = torch.tensor([pl, pl], device=cos_views.device)
        terms.append(F.cross_entropy(cos_views[:1], target[:1]) + F.cross_entropy(cos_views[1:], target[1:]))
    k = o.rosita_neighbours
    if (sure_known or sure_unknown) and len(state.known) > k and len(state.unknown) > k:
        if known:  # positives: known neighbours of the same zero-shot class
            same = lambda idx: (F.normalize(torch.cat(state.known), dim=-1)[idx] @ text.T).argmax(1) == pl
            terms.append(o.rosita_alpha * contrastive(f, state.known, state.unknown, k, o.rosita_negatives, same))
        else:
            terms.append(o.rosita_alpha * contrastive(f, state.unknown, state.known, k, o.rosita_negatives))
    if terms:
        optimizer.zero_grad()
        sum(terms).backward()
        optimizer.step()
    with torch.no_grad():
        cos = F.normalize(encode(views[:1]), dim=-1)[0] @ text.T
    return {"cos": cos, "score": score, "class": pl, "threshold": th, "known": known, "updated": bool(terms)}


def augment_view(size: int) -> T.Compose:
    """The augmented view, from the evaluation view's pixels: a random resized crop and a random flip."""
    return T.Compose([T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                      T.RandomHorizontalFlip()])


def stream_setup(method: Method, run) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    """What every stream here starts from: the norm-layer parameters that adapt and their values as loaded (put
    back at the end), the normalised class texts, and the images' order, a permutation fixed by the seed."""
    params = [p for _, p in method.visual_params(run.loaded.model.visual)]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        text = F.normalize(run.prompt().float(), dim=-1)
    order = torch.randperm(len(run.eval_set), generator=torch.Generator().manual_seed(run.config.seed))
    return params, saved, text, order


def open_stream(method: Method, run, ctx: Context, step, name: str, label: str, make_state, lr: float,
                views: int) -> None:
    """The stream every open-set test-time method here shares: a seeded order, ``step`` per image on the image
    tower's norm-layer affine parameters (SGD at ``lr``), the tower put back as loaded at the end."""
    loaded = run.loaded
    model = loaded.model
    params, saved, text, order = stream_setup(method, run)
    torch.manual_seed(run.config.seed * 1000 + 701)  # the augmented views: repeatable by the seed
    optimizer = torch.optim.SGD(params, lr=lr)
    encode = lambda x: model.encode_image(loaded.to_input(x), normalize=False).float()
    state, records = make_state(len(text)), {}
    cos = torch.empty(len(order), len(text))
    try:
        for p in params:
            p.requires_grad_(True)
        for n, i in enumerate(order.tolist()):
            if n % run.config.batch_size == 0:
                run.stop.check()
            image = run.eval_set[i][0]
            x = torch.stack([image, augment_view(image.shape[-1])(image)]) if views == 2 else image[None]
            rec = step(state, encode, x, text, optimizer, ctx.options)
            cos[i], records[i] = rec["cos"].cpu(), rec
            if (n + 1) % run.config.batch_size == 0 or n + 1 == len(order):
                run.emit("progress", phase=f"{label}: the image stream", done=n + 1, total=len(order))
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
                p.requires_grad_(False)
    seen = order.tolist()
    run.outcome.update({f"{name}_stream": seen, f"{name}_score": [round(records[i]["score"], 6) for i in seen],
                        f"{name}_known": [bool(records[i]["known"]) for i in seen],
                        f"{name}_updates": sum(records[i]["updated"] for i in seen)})
    probs = torch.softmax(run.scale("eval") * cos, dim=1)
    run.evaluate(1, outputs=(cos, probs.numpy()))


STREAM_DEFAULTS = {"epochs": 1, "batch_size": 64, "lr_prompt": 0.0, "lr_visual": 0.0}


def stream_options(prefix: str) -> tuple:
    """The options every stream here has, named for its method: the SGD learning rate and the score window."""
    return (Option(f"{prefix}_lr", 0.001, "SGD learning rate of the norm layers, one step per image", lo=0,
                   lo_open=True, hi=100, label="Learning rate (norm layers)", official=0.001, source=f"{SOURCE} --tta_lr"),
            Option(f"{prefix}_scores", 512, "recent scores the known/unknown threshold is fitted on", kind=int, lo=1,
                   hi=1_000_000, label="Score window (images)", official=512, source=f"{SOURCE} --N_scores"))


@register
class ROSITA(Method):
    name = "rosita"
    label = "ROSITA (test-time: one step per image, known vs unknown contrast)"
    plain = "ROSITA"
    lesson = "extended"
    description = ("Adapts the image tower's norm layers one image at a time: images it calls clearly known learn "
                   "their zero-shot class and move towards similar known images, clearly unknown ones towards "
                   "other unknowns (the order of the stream is fixed by the seed).")
    trains = False
    adapts_in_stream = True
    defaults = STREAM_DEFAULTS
    options = (
        *stream_options("rosita"),
        Option("rosita_alpha", 0.5, "weight of the contrastive term beside the cross-entropy", lo=0, hi=1000,
               label="Contrastive weight α", official=0.5, source=f"{SOURCE} --alpha"),
        Option("rosita_neighbours", 5, "nearest same-group features an image is pulled towards (and known ones "
               "kept per class)", kind=int, lo=1, hi=1000, label="Neighbours k_p", official=5, source=f"{SOURCE} --k_p"),
        Option("rosita_negatives", 5, "nearest other-group features an image is pushed from", kind=int, lo=1,
               hi=1000, label="Negatives k_n", official=5, source=f"{SOURCE} --k_n"),
        Option("rosita_bank", 64, "unknown features kept", kind=int, lo=1, hi=1_000_000, label="Unknown bank N_s",
               official=64, source=f"{SOURCE} --N_s"),
    )

    def passes(self, cfg) -> int:
        return 4  # per image: its two views forward and backward (about three passes), then its prediction

    def infer(self, run, ctx: Context) -> None:
        o = ctx.options
        make = lambda k: Stream(o.rosita_scores, k * o.rosita_neighbours, o.rosita_bank)
        open_stream(self, run, ctx, rosita_step, "rosita", "ROSITA", make, o.rosita_lr, views=2)
