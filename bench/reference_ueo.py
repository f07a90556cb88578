"""A straight re-implementation of the official UEO training loop (tim-learn/UEO demo.py), for measuring against.

As the official code does it: the CoOp prompt is encoded over the full 77-token context every step, fp32 only,
every image is decoded and augmented afresh every epoch (no caching), one SGD parameter group per parameter,
cosine decay per step, the initial confidence weights from a zero-shot pass with the test transform.
Differences, all for a like-for-like comparison with ``ueo_core``: open_clip instead of OpenAI's ``clip`` package
(same architecture and weights), training logits scaled by the model's logit scale (100 for OpenAI CLIP, as the
official ``100.``), parameters chosen with ``ueo_core``'s selection (norm-layer affine), and the same seeding as
``ueo_core.train`` so both see the same first batch with the same augmentation.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ueo_core.data import ImageDataset
from ueo_core.prompts import class_prompt_name
from ueo_core.train import norm_affine_params


class FullContextPrompt(nn.Module):
    """CoOp prompt learner as in the official code: prefix / context / suffix over the full 77-token context."""

    def __init__(self, loaded, classnames, ctx_init="a photo of a"):
        super().__init__()
        m = loaded.model
        self.m = [m]
        n_ctx = len(ctx_init.split(" "))
        tok = loaded.tokenizer([f"{ctx_init} {class_prompt_name(c)}." for c in classnames]).to(loaded.device)
        with torch.no_grad():
            emb = m.token_embedding(tok)
            ctx = m.token_embedding(loaded.tokenizer([ctx_init]).to(loaded.device))[0, 1:1 + n_ctx]
        self.ctx = nn.Parameter(ctx.clone())
        self.register_buffer("prefix", emb[:, :1].clone())
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].clone())
        self.tokens = tok

    def forward(self):
        m = self.m[0]
        n = self.prefix.shape[0]
        x = torch.cat([self.prefix, self.ctx.unsqueeze(0).expand(n, -1, -1), self.suffix], dim=1)
        x = x + m.positional_embedding
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)
        x = x[torch.arange(n), self.tokens.argmax(dim=-1)] @ m.text_projection
        return F.normalize(x, dim=-1)


def entropy(p):
    return -(p * torch.log(p + 1e-5)).sum(dim=-1)


def run_reference(loaded, files, classnames, epochs, batch_size, lr=1e-4, seed=2023, weight_temperature=1.0,
                  crop_scale=(0.5, 1.0), on_step=None, train_scale=None) -> dict:
    """Returns {'first_loss', 'losses', 'train_images', 'train_seconds'}. ``train_scale``: the training logits'
    scale (None: the model's logit scale; 100 is demo.py's). On CUDA the forward passes run under bf16 autocast,
    as ueo_core's do (``models.autocast``), so that the two are compared at the same precision."""
    from ueo_core.models import autocast
    dev = loaded.device
    model = loaded.model.eval()
    prompt = FullContextPrompt(loaded, classnames).to(dev)
    # zero-shot weights with the test transform (decoded afresh)
    test = torch.utils.data.DataLoader(ImageDataset(files, loaded.preprocess), batch_size=batch_size * 3)
    with torch.no_grad():
        text = prompt()
        cos = torch.cat([F.normalize(model.encode_image(x.to(dev)), dim=-1) @ text.T for x, _ in test])
    weights = torch.softmax(weight_temperature * cos, dim=1).max(dim=1).values

    params = [prompt.ctx] + [p for _, p in norm_affine_params(model.visual)]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.SGD([{"params": p, "lr": lr} for p in params])
    train = ImageDataset(files, loaded.train_transform(crop_scale))
    steps_per_epoch = -(-len(files) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    scale = loaded.logit_scale if train_scale is None else train_scale
    first_loss, n_images, losses = None, 0, []
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        torch.manual_seed(seed * 1000 + epoch)
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        for images, idx in torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen):
            images = images.to(dev)
            with autocast(dev):
                feats = F.normalize(model.encode_image(images).float(), dim=-1)
                text = prompt().float()
            outputs = torch.softmax(scale * feats @ text.T, dim=1)
            w = weights[idx.to(dev)]
            mean_out = torch.mm(torch.diag(1 / w), outputs).sum(dim=0) / torch.sum(1 / w)
            loss = (entropy(outputs) * w).sum() / w.sum() - entropy(mean_out)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if first_loss is None:
                first_loss = losses[0]
            n_images += len(idx)
            if on_step:
                on_step()
    for p in params:
        p.requires_grad_(False)
    return {"first_loss": first_loss, "losses": losses, "train_images": n_images, "train_seconds": time.time() - t0}
