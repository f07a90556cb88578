"""Train the built-in small CLIP (``ueo-shapes``) contrastively on Shapes image-caption pairs, on a CPU.

    python scripts/train_builtin_clip.py --out assets/ueo-shapes-clip.safetensors

Source domain only: flat colour fills (half of them with mildly noisy backgrounds) plus 15 % clean line drawings,
with varied captions ("a photo of a red star.", "a drawing of a star.", ...). The sketch and photo domains are
never seen: they are the shifts UEO adapts to. Uses open_clip's own model factory and ClipLoss. Deterministic for
a given seed on a CPU. Writes the fp16 weights (safetensors) and a JSON card beside them (config, command, seed,
sha256, zero-shot accuracy per domain).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ueo_core.models import load_model  # noqa: E402
from ueo_core.shapes import DOMAINS, SHAPES, render  # noqa: E402

MODEL = "ueo-shapes"
CAPTIONS = ["a photo of a {c} {s}.", "a photo of a {s}.", "a {c} {s}.", "a picture of a {s}.",
            "an image of a {c} {s}.", "a {s}.", "a photo of the {s}.", "a {c} {s} shape."]
DRAWING_CAPTIONS = ["a drawing of a {s}.", "a drawing of a {c} {s}.", "a line drawing of a {s}.",
                    "a photo of a {s}.", "an outline of a {s}."]


def make_pairs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        r = rng.random()
        if r < 0.15:
            img, color = render(shape, "outline", rng)
            tmpl = DRAWING_CAPTIONS[rng.integers(len(DRAWING_CAPTIONS))]
        else:
            img, color = render(shape, "flat", rng, mild_noise=r > 0.575)
            tmpl = CAPTIONS[rng.integers(len(CAPTIONS))]
        images.append(np.asarray(img))
        captions.append(tmpl.format(c=color, s=shape))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), captions


def augment(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """Per-image random resized crop (scale 0.6-1) and flip, on a uint8 batch -> float in [0, 1]."""
    n = x.shape[0]
    x = x.float() / 255.0
    scale = torch.empty(n).uniform_(0.6, 1.0, generator=gen).sqrt()
    tx = torch.empty(n).uniform_(-1, 1, generator=gen) * (1 - scale)
    ty = torch.empty(n).uniform_(-1, 1, generator=gen) * (1 - scale)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def zero_shot_accuracy(loaded, n_per_class: int = 40, seed: int = 12345) -> dict:
    """Accuracy of "a photo of a {shape}." on freshly rendered images of every domain."""
    model = loaded.model.eval()
    norm = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        text = model.encode_text(loaded.tokenizer([f"a photo of a {s}." for s in SHAPES]), normalize=True)
        out = {}
        for dom in DOMAINS:
            rng = np.random.default_rng([seed, DOMAINS.index(dom)])
            imgs, labels = [], []
            for ci, s in enumerate(SHAPES):
                for _ in range(n_per_class):
                    imgs.append(np.asarray(render(s, dom, rng)[0]))
                    labels.append(ci)
            x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
            f = model.encode_image((x - norm[0]) / norm[1], normalize=True)
            out[dom] = float(((f @ text.T).argmax(1) == torch.tensor(labels)).float().mean())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="assets/ueo-shapes-clip.safetensors")
    ap.add_argument("--n-images", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.manual_seed(args.seed)
    loaded = load_model(MODEL, seed=args.seed, device="cpu")
    model = loaded.model
    for p in model.parameters():
        p.requires_grad_(True)
    images, captions = make_pairs(args.n_images, args.seed)
    tokens = loaded.tokenizer(captions)
    print(f"{len(images)} pairs rendered in {time.time() - t0:.1f} s; e.g. {captions[:3]}", flush=True)
    mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    steps_per_epoch = len(images) // args.batch_size
    total, warmup = args.epochs * steps_per_epoch, max(1, steps_per_epoch // 2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) /
                                                                               max(1, total - warmup))))
    loss_fn = ClipLoss()
    gen = torch.Generator().manual_seed(args.seed)
    model.train()
    step = 0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(images), generator=gen)
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            x = (augment(images[idx], gen, loaded.image_size) - mean) / std
            img_f = model.encode_image(x, normalize=True)
            txt_f = model.encode_text(tokens[idx], normalize=True)
            loss = loss_fn(img_f, txt_f, model.logit_scale.exp())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
        print(f"epoch {epoch + 1}/{args.epochs} loss {loss.item():.4f} logit scale "
              f"{model.logit_scale.exp().item():.1f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    acc = zero_shot_accuracy(loaded)
    print("zero-shot accuracy (8 shapes, 'a photo of a {shape}.'):", acc, flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(out))
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    card = {"model": MODEL, "config": f"ueo_core/model_configs/{MODEL}.json", "weights": out.name, "dtype": "float16",
            "sha256": sha, "bytes": out.stat().st_size, "seed": args.seed,
            "command": "python scripts/train_builtin_clip.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "args": vars(args), "train_seconds": round(time.time() - t0, 1),
            "zero_shot_accuracy_8_shapes": acc, "torch": torch.__version__}
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
