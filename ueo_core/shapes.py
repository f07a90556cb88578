"""Shapes: a procedural image world for offline use, teaching, and measuring adaptation.

Eight shape classes in three visual domains with a real shift between them:

- ``flat``   solid colour on white: the *source* domain the built-in CLIP was trained on.
- ``sketch`` graphite outlines drawn in jittery double strokes with hatching, on paper.
- ``photo``  textured, tinted shapes on cluttered gradient backgrounds, with sensor noise and blur.

Everything is deterministic from a seed. ``shapes_folder()`` writes an ordinary class-per-folder image folder (so
every code path is the same as for a user's folder) into a cache directory on first use.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "heart", "hexagon", "cross", "arrow")
DOMAINS = ("flat", "sketch", "photo")
COLORS = {"red": (215, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 210), "yellow": (235, 200, 30),
          "orange": (240, 130, 30), "purple": (140, 60, 180)}
# The default open-set split: the prior names 6 shapes; crosses and arrows are the unknowns.
DEFAULT_PRIOR = ("circle", "square", "triangle", "star", "heart", "hexagon")
SIZE = 64          # stored image size (the built-in model's input size)
_R = 2             # render at 2x, then downsample (anti-aliasing)
VERSION = "v1"     # bump when the drawing changes: the cache folder is keyed by it


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def ring(n, radii, offset=0.0):
        pts = []
        for i in range(n):
            a = rot + offset + 2 * math.pi * i / n
            rr = radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "circle":
        return ring(48, [r])
    if shape == "square":
        return ring(4, [r * 1.15], math.pi / 4)
    if shape == "triangle":
        return ring(3, [r * 1.2], -math.pi / 2)
    if shape == "hexagon":
        return ring(6, [r * 1.05])
    if shape == "star":
        return ring(10, [r * 1.2, r * 0.5], -math.pi / 2)
    if shape == "heart":
        pts = []
        for i in range(60):
            t = 2 * math.pi * i / 60
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x / 16 * r, y / 16 * r))
        return _rotate(pts, cx, cy, rot * 0.3)
    if shape == "cross":
        w = 0.36 * r
        base = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w),
                (-w, -w)]
        return _rotate(base, cx, cy, rot)
    if shape == "arrow":
        base = [(-r, -0.3 * r), (0.15 * r, -0.3 * r), (0.15 * r, -0.75 * r), (r, 0), (0.15 * r, 0.75 * r),
                (0.15 * r, 0.3 * r), (-r, 0.3 * r)]
        return _rotate(base, cx, cy, rot)
    raise ValueError(f"unknown shape {shape}")


def _rotate(pts, cx, cy, rot):
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _geometry(rng: np.random.Generator, size: int):
    r = rng.uniform(0.26, 0.38) * size
    cx = size / 2 + rng.uniform(-0.1, 0.1) * size
    cy = size / 2 + rng.uniform(-0.1, 0.1) * size
    return cx, cy, r, rng.uniform(-0.35, 0.35)


def _mask(pts, size) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    ImageDraw.Draw(m).polygon(pts, fill=255)
    return m


def _finish(img: Image.Image) -> Image.Image:
    return img.resize((SIZE, SIZE), Image.LANCZOS)


def render(shape: str, domain: str, rng: np.random.Generator, color: Optional[str] = None,
           mild_noise: bool = False) -> tuple[Image.Image, str]:
    """One image of ``shape`` in ``domain``; returns (image, colour name)."""
    size = SIZE * _R
    color = color or list(COLORS)[rng.integers(len(COLORS))]
    rgb = np.array(COLORS[color], dtype=np.float64)
    cx, cy, r, rot = _geometry(rng, size)
    pts = _polygon(shape, cx, cy, r, rot)

    if domain == "flat":
        # mild_noise (training variety for the built-in model): a random plain tinted background and light noise
        bg = rng.uniform(110, 255, 3) if mild_noise else 255 - rng.uniform(0, 8, 3)
        img = Image.new("RGB", (size, size), tuple(int(v) for v in bg))
        shade = np.clip(rgb + rng.normal(0, 12, 3), 0, 255)
        ImageDraw.Draw(img).polygon(pts, fill=tuple(int(v) for v in shade))
        if mild_noise:
            arr = np.asarray(img, dtype=np.float64) + rng.normal(0, rng.uniform(3, 12), (size, size, 3))
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        return _finish(img), color

    if domain == "outline":  # clean line art (a little of it is in the built-in model's training data)
        img = Image.new("RGB", (size, size), (255, 255, 255))
        ImageDraw.Draw(img).line(pts + [pts[0]], fill=tuple(int(v) for v in rgb), width=5, joint="curve")
        return _finish(img), color

    if domain == "sketch":
        paper = np.array([245, 240, 228], dtype=np.float64) + rng.normal(0, 3, 3)
        arr = np.tile(paper, (size, size, 1)) + rng.normal(0, 6, (size, size, 1))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        # hatching inside the shape, light graphite
        hatch = Image.new("L", (size, size), 0)
        hd = ImageDraw.Draw(hatch)
        step = int(rng.integers(7, 11))
        ang = rng.uniform(0.5, 1.1)
        for k in range(-size, 2 * size, step):
            hd.line([(k, 0), (k + size * math.tan(ang), size)], fill=int(rng.integers(90, 150)), width=2)
        hatch = ImageChops.multiply(hatch, _mask(pts, size))
        graphite = Image.new("RGB", (size, size), (70, 70, 75))
        img = Image.composite(graphite, img, hatch)
        draw = ImageDraw.Draw(img)
        # two jittered outline strokes
        for _ in range(2):
            jit = [(x + rng.normal(0, 1.6), y + rng.normal(0, 1.6)) for x, y in pts]
            g = int(rng.integers(30, 80))
            draw.line(jit + [jit[0]], fill=(g, g, g + 5), width=int(rng.integers(3, 5)), joint="curve")
        return _finish(img), color

    if domain == "photo":
        # cluttered gradient background
        c1, c2 = rng.uniform(60, 220, 3), rng.uniform(60, 220, 3)
        t = np.linspace(0, 1, size)[:, None, None]
        if rng.random() < 0.5:
            t = t.transpose(1, 0, 2)
        bg = c1 * (1 - t) + c2 * t
        bg = np.broadcast_to(bg, (size, size, 3)).copy()
        img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = rng.uniform(0, size, 2)
            col = tuple(int(v) for v in rng.uniform(40, 230, 3))
            if rng.random() < 0.5:
                draw.line([(x0, y0), tuple(rng.uniform(0, size, 2))], fill=col, width=int(rng.integers(2, 6)))
            else:
                rr = rng.uniform(3, 10)
                draw.ellipse([x0 - rr, y0 - rr, x0 + rr, y0 + rr], fill=col)
        # tinted, textured shape
        tint = np.clip(rgb * rng.uniform(0.6, 1.0) + rng.uniform(-40, 40, 3), 0, 255)
        tex = rng.normal(0, 1, (size // 8, size // 8))
        tex = np.asarray(Image.fromarray(((tex - tex.min()) / (np.ptp(tex) + 1e-9) * 255).astype(np.uint8))
                         .resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
        shape_rgb = tint[None, None, :] * (0.65 + 0.5 * tex[..., None])
        shape_img = Image.fromarray(np.clip(shape_rgb, 0, 255).astype(np.uint8))
        img = Image.composite(shape_img, img, _mask(pts, size))
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.4)))
        arr = np.asarray(img, dtype=np.float64)
        arr = arr + rng.normal(0, rng.uniform(10, 20), (size, size, 3)) + rng.normal(0, 12, 3)
        return _finish(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))), color

    raise ValueError(f"Unknown Shapes domain '{domain}'. Choose one of: {', '.join(DOMAINS)}")


def default_root() -> Path:
    from .config import cache_root
    return cache_root() / "shapes"


def shapes_folder(domain: str = "photo", n_per_class: int = 60, seed: int = 0, root: Optional[Path] = None,
                  shapes: tuple = SHAPES) -> Path:
    """The folder ``<root>/<version>-s<seed>-n<n>/<domain>/<shape>/<k>.png``, generated on first use."""
    if domain not in DOMAINS:
        raise ValueError(f"Unknown Shapes domain '{domain}'. Choose one of: {', '.join(DOMAINS)}")
    out = Path(root or default_root()) / f"{VERSION}-s{seed}-n{n_per_class}" / domain
    done = out / ".complete"
    if done.exists():
        return out
    for ci, shape in enumerate(shapes):
        d = out / shape
        d.mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            rng = np.random.default_rng([seed, DOMAINS.index(domain), ci, k])
            img, _ = render(shape, domain, rng)
            tmp = d / f".{k:04d}.png.tmp"
            img.save(tmp, format="PNG")
            tmp.replace(d / f"{k:04d}.png")
    done.write_text("ok\n")
    return out
