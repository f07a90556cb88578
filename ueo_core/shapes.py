"""Shapes: a procedural image world for offline use, teaching, and measuring adaptation (v2).

The demo folder has nine shape classes (``SHAPES``) in three visual domains with a real shift between them:

- ``flat``   solid colour on white: the *source* domain, closest to what the built-in CLIP was trained on.
- ``sketch`` graphite on paper: light jittery strokes where the pencil sometimes lifts, hatching, stray marks.
- ``photo``  textured, tinted shapes on cluttered gradient backgrounds, with sensor noise and blur.

The default prior names six shapes; cross, arrow and rectangle are the unknowns. The built-in CLIP is pretrained on
``CONCEPTS`` (22 shapes, the nine demo shapes among them) in the styles of ``render_pretrain`` (flat, tinted
ground, outline, grey on grey by default; three more exist for probes); the sketch and photo renderers are
never part of its training data: they are the shifts UEO adapts to.

Everything is deterministic from a seed. ``shapes_folder()`` writes an ordinary class-per-folder image folder (so
every code path is the same as for a user's folder) into a cache directory on first use.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

# The demo folder's shapes. The default prior names the first six; the unknowns are shapes the built-in model knows
# by name (as CLIP knows almost everything) that the prior leaves out: the three concepts whose names lie furthest
# from every prior name in the built-in model's text space (star variants excluded: their names contain "star").
SHAPES = ("circle", "square", "triangle", "star", "heart", "hexagon", "cross", "arrow", "rectangle")
# Every concept the built-in CLIP is pretrained on (by name, in several styles): the demo shapes and 13 more, so
# that, like real CLIP, it knows the unknowns of an open-set split by name. Look-alikes of the circle (ring,
# heptagon, octagon, decagon) are left out: they took the circles of the shifted domains (shared/notes). The order
# is part of the training recipe (scripts/train_builtin_clip.py): changing it changes the shipped weights.
CONCEPTS = ("circle", "square", "triangle", "star", "heart", "hexagon", "cross", "arrow", "pentagon", "diamond",
            "rectangle", "oval", "trapezoid", "parallelogram", "semicircle", "crescent", "four-pointed star",
            "six-pointed star", "eight-pointed star", "lightning bolt", "chevron", "kite")
assert set(SHAPES) <= set(CONCEPTS)
DOMAINS = ("flat", "sketch", "photo")
SOURCE_DOMAIN = "flat"   # the domain closest to the built-in model's pretraining
COLORS = {"red": (215, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 210), "yellow": (235, 200, 30),
          "orange": (240, 130, 30), "purple": (140, 60, 180)}
DEFAULT_PRIOR = ("circle", "square", "triangle", "star", "heart", "hexagon")
SIZE = 64          # stored image size (the built-in model's input size)
_R = 2             # render at 2x, then downsample (anti-aliasing)
VERSION = "v2"     # bump when the drawing changes: the cache folder is keyed by it


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
    if shape == "pentagon":
        return ring(5, [r * 1.1], -math.pi / 2)
    if shape == "diamond":
        return ring(4, [r * 1.25, r * 0.75], -math.pi / 2)
    if shape == "rectangle":
        return _rotate([(-1.3 * r, -0.65 * r), (1.3 * r, -0.65 * r), (1.3 * r, 0.65 * r), (-1.3 * r, 0.65 * r)],
                       cx, cy, rot)
    if shape == "oval":
        return _rotate([(1.3 * r * math.cos(2 * math.pi * i / 48), 0.72 * r * math.sin(2 * math.pi * i / 48))
                        for i in range(48)], cx, cy, rot)
    if shape == "trapezoid":
        return _rotate([(-0.55 * r, -0.7 * r), (0.55 * r, -0.7 * r), (1.25 * r, 0.7 * r), (-1.25 * r, 0.7 * r)],
                       cx, cy, rot)
    if shape == "parallelogram":
        return _rotate([(-0.7 * r, -0.65 * r), (1.3 * r, -0.65 * r), (0.7 * r, 0.65 * r), (-1.3 * r, 0.65 * r)],
                       cx, cy, rot)
    if shape == "semicircle":
        return _rotate([(1.2 * r * math.cos(math.pi * i / 32), -1.2 * r * math.sin(math.pi * i / 32) + 0.45 * r)
                        for i in range(33)], cx, cy, rot)
    if shape == "crescent":
        # outer circle (centre 0, radius r) minus a circle of radius r centred at (0.5 r, 0); they cross at x=r/4
        a0 = math.atan2(math.sqrt(1 - 1 / 16), 0.25)
        a1 = math.atan2(math.sqrt(1 - 1 / 16), -0.25)
        outer = [(r * 1.1 * math.cos(t), r * 1.1 * math.sin(t))
                 for t in np.linspace(a0, 2 * math.pi - a0, 40)]
        inner = [(0.55 * r + r * 1.1 * math.cos(t), r * 1.1 * math.sin(t))
                 for t in np.linspace(2 * math.pi - a1, a1, 40)]
        return _rotate(outer + inner, cx, cy, rot)
    if shape == "four-pointed star":
        return ring(8, [r * 1.25, r * 0.4], -math.pi / 2)
    if shape == "six-pointed star":
        return ring(12, [r * 1.2, r * 0.62], -math.pi / 2)
    if shape == "eight-pointed star":
        return ring(16, [r * 1.2, r * 0.68], -math.pi / 2)
    if shape == "lightning bolt":
        base = [(0.25, -1.15), (-0.6, 0.15), (-0.05, 0.15), (-0.3, 1.15), (0.6, -0.2), (0.05, -0.2)]
        return _rotate([(x * r, y * r) for x, y in base], cx, cy, rot)
    if shape == "chevron":
        base = [(-0.7, -1.0), (-0.1, -1.0), (0.8, 0.0), (-0.1, 1.0), (-0.7, 1.0), (0.2, 0.0)]
        return _rotate([(x * r, y * r) for x, y in base], cx, cy, rot)
    if shape == "kite":
        return _rotate([(0, -1.25 * r), (0.75 * r, -0.35 * r), (0, 1.25 * r), (-0.75 * r, -0.35 * r)], cx, cy, rot)
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
        return _sketch(pts, size, rng), color
    if domain == "photo":
        return _photo(pts, rgb, size, rng), color
    raise ValueError(f"Unknown Shapes domain '{domain}'. Choose one of: {', '.join(DOMAINS)}")


def _sketch(pts: list, size: int, rng: np.random.Generator) -> Image.Image:
    # v2: lighter, jittery strokes where the pencil sometimes lifts, stray marks on the page, hatching inside
    paper = np.array([245, 240, 228], dtype=np.float64) + rng.normal(0, 3, 3)
    arr = np.tile(paper, (size, size, 1)) + rng.normal(0, 6, (size, size, 1))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    hatch = Image.new("L", (size, size), 0)
    hd = ImageDraw.Draw(hatch)
    step = int(rng.integers(6, 11))
    ang = rng.uniform(0.5, 1.1)
    for k in range(-size, 2 * size, step):
        hd.line([(k, 0), (k + size * math.tan(ang), size)], fill=int(rng.integers(90, 150)), width=2)
    hatch = ImageChops.multiply(hatch, _mask(pts, size))
    img = Image.composite(Image.new("RGB", (size, size), (70, 70, 75)), img, hatch)
    draw = ImageDraw.Draw(img)
    for _ in range(3):  # stray pencil marks
        x0, y0 = rng.uniform(0, size, 2)
        g = int(rng.integers(80, 170))
        draw.line([(x0, y0), (x0 + rng.normal(0, 18), y0 + rng.normal(0, 18))], fill=(g, g, g), width=2)
    for _ in range(2):  # two jittered outline strokes
        jit = [(x + rng.normal(0, 2.0), y + rng.normal(0, 2.0)) for x, y in pts]
        seg = jit + [jit[0]]
        g = int(rng.integers(50, 120))
        for a, b in zip(seg[:-1], seg[1:]):
            if rng.random() > 0.15:  # the pencil lifts now and then
                draw.line([a, b], fill=(g, g, g + 5), width=int(rng.integers(2, 5)))
    return _finish(img)


def _photo(pts: list, rgb: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    # v2: a sensor-like shift: textured tinted shape on a gradient with a little clutter, blur and strong noise
    c1, c2 = rng.uniform(60, 220, 3), rng.uniform(60, 220, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    if rng.random() < 0.5:
        t = t.transpose(1, 0, 2)
    bg = np.broadcast_to(c1 * (1 - t) + c2 * t, (size, size, 3)).copy()
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(0, size, 2)
        col = tuple(int(v) for v in rng.uniform(40, 230, 3))
        if rng.random() < 0.5:
            draw.line([(x0, y0), tuple(rng.uniform(0, size, 2))], fill=col, width=int(rng.integers(2, 6)))
        else:
            rr = rng.uniform(3, 12)
            draw.ellipse([x0 - rr, y0 - rr, x0 + rr, y0 + rr], fill=col)
    tint = np.clip(rgb * rng.uniform(0.6, 1.0) + rng.uniform(-40, 40, 3), 0, 255)
    tex = rng.normal(0, 1, (size // 8, size // 8))
    tex = np.asarray(Image.fromarray(((tex - tex.min()) / (np.ptp(tex) + 1e-9) * 255).astype(np.uint8))
                     .resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
    shape_img = Image.fromarray(np.clip(tint[None, None, :] * (0.65 + 0.5 * tex[..., None]), 0, 255)
                                .astype(np.uint8))
    img = Image.composite(shape_img, img, _mask(pts, size))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.8)))
    arr = np.asarray(img, dtype=np.float64)
    arr = arr + rng.normal(0, rng.uniform(15, 25), (size, size, 3)) + rng.normal(0, 12, 3)
    return _finish(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))


# ---------------------------------------------------------------------------------------------------------------
# Pretraining world of the built-in CLIP: many more concepts than the demo folder, in styles that are *not* the
# sketch and photo renderers above (those stay held out as the target shifts).
# ---------------------------------------------------------------------------------------------------------------
STYLES = ("flat", "tinted", "outline", "pattern", "clutter", "chalk", "grey")
PATTERNS = ("striped", "checkered", "dotted", "mottled")


def _pattern_fill(kind: str, rgb: np.ndarray, rng: np.random.Generator, size: int) -> Image.Image:
    base = np.tile(np.clip(rgb + rng.normal(0, 10, 3), 0, 255), (size, size, 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period = rng.uniform(8, 16)
    if kind == "striped":
        a = rng.uniform(0, math.pi)
        on = (np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period) > 0)
    elif kind == "checkered":
        on = ((xx // (period / 2) + yy // (period / 2)) % 2) == 0
    elif kind == "dotted":
        on = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 4) ** 2
    else:  # mottled
        tex = rng.normal(0, 1, (size // 8, size // 8))
        tex = np.asarray(Image.fromarray(((tex - tex.min()) / (np.ptp(tex) + 1e-9) * 255).astype(np.uint8))
                         .resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
        on = tex > 0.5
    other = np.clip(rgb * rng.uniform(0.3, 0.6) + rng.uniform(120, 200) * (1 - rng.uniform(0.3, 0.6)), 0, 255)
    arr = np.where(on[..., None], base, np.tile(other, (size, size, 1)))
    return Image.fromarray(arr.astype(np.uint8))


def render_pretrain(concept: str, style: str, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """One pretraining image of ``concept`` in one of ``STYLES``; returns (image, words for the caption)."""
    size = SIZE * _R
    color = list(COLORS)[rng.integers(len(COLORS))]
    rgb = np.array(COLORS[color], dtype=np.float64)
    cx, cy, r, rot = _geometry(rng, size)
    pts = _polygon(concept, cx, cy, r, rot)
    words = {"c": color, "s": concept, "style": style}
    if style in ("flat", "tinted"):
        img, _ = render(concept, "flat", rng, color=color, mild_noise=style == "tinted")
        return img, words
    if style == "outline":
        img = Image.new("RGB", (size, size), tuple(int(v) for v in 255 - rng.uniform(0, 25, 3)))
        ImageDraw.Draw(img).line(pts + [pts[0]], fill=tuple(int(v) for v in rgb), width=int(rng.integers(3, 8)),
                                 joint="curve")
    elif style == "pattern":
        kind = PATTERNS[rng.integers(len(PATTERNS))]
        words["pattern"] = kind
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.uniform(200, 255, 3)))
        img = Image.composite(_pattern_fill(kind, rgb, rng, size), img, _mask(pts, size))
    elif style == "clutter":
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.uniform(150, 255, 3)))
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(4, 9))):  # small faint shapes of other concepts behind
            other = CONCEPTS[rng.integers(len(CONCEPTS))]
            ox, oy = rng.uniform(0, size, 2)
            d.polygon(_polygon(other, ox, oy, rng.uniform(0.06, 0.12) * size, rng.uniform(-3, 3)),
                      fill=tuple(int(v) for v in rng.uniform(100, 240, 3)))
        d.polygon(pts, fill=tuple(int(v) for v in np.clip(rgb + rng.normal(0, 12, 3), 0, 255)))
    elif style == "chalk":
        board = np.array([40, 55, 45], dtype=np.float64) + rng.normal(0, 8, 3)
        arr = np.tile(board, (size, size, 1)) + rng.normal(0, 5, (size, size, 1))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        chalk = np.clip(200 + rng.normal(0, 15, 3) + (rgb - 128) * 0.3, 0, 255)
        strokes = Image.new("L", (size, size), 0)
        ImageDraw.Draw(strokes).line(pts + [pts[0]], fill=255, width=int(rng.integers(4, 8)), joint="curve")
        grain = (rng.random((size, size)) < rng.uniform(0.55, 0.85)).astype(np.uint8) * 255
        strokes = ImageChops.multiply(strokes, Image.fromarray(grain))
        img = Image.composite(Image.new("RGB", (size, size), tuple(int(v) for v in chalk)), img, strokes)
    elif style == "grey":
        g0 = rng.uniform(70, 190)
        g1 = np.clip(g0 + rng.choice([-1, 1]) * rng.uniform(35, 70), 0, 255)
        img = Image.new("RGB", (size, size), (int(g0),) * 3)
        ImageDraw.Draw(img).polygon(pts, fill=(int(g1),) * 3)
    else:
        raise ValueError(f"unknown pretraining style {style}")
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.3:
        arr = np.asarray(img, dtype=np.float64) + rng.normal(0, rng.uniform(3, 12), (size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return _finish(img), words


def default_root() -> Path:
    from .paths import cache_root
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
