"""Small synthetic image folders for tests (made on the fly; no data committed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}


def make_folder(root: Path, classes=("red", "green", "blue"), per_class: int = 6, size: int = 40, seed: int = 0) -> Path:
    """root/<class>/img_k.png: noisy images whose mean colour depends on the class."""
    rng = np.random.default_rng(seed)
    for c in classes:
        d = Path(root) / c
        d.mkdir(parents=True, exist_ok=True)
        base = np.array(COLORS.get(c, (128, 128, 128)), dtype=np.float64)
        for k in range(per_class):
            arr = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"img_{k}.png")
    return Path(root)


def assert_close_tree(actual, expected, path: str = "", **approx_kw) -> None:
    """Asserts that two JSON-like values (dicts, lists, numbers, strings, None) are equal, numbers within
    ``pytest.approx(**approx_kw)``, at every depth. pytest.approx itself refuses nested dicts (pytest >= 9);
    this walks the tree and names the first differing key path, e.g. ``class_shares[2]``."""
    import math
    import numbers

    import pytest

    where = path or "<root>"
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a dict"
        assert set(actual) == set(expected), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            assert_close_tree(actual[k], expected[k], f"{path}.{k}" if path else str(k), **approx_kw)
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close_tree(a, e, f"{path}[{i}]", **approx_kw)
    elif isinstance(expected, numbers.Number) and not isinstance(expected, bool):
        assert isinstance(actual, numbers.Number) and not isinstance(actual, bool), f"{where}: {actual!r} is not a number"
        if approx_kw.get("nan_ok") and math.isnan(expected):
            assert math.isnan(actual), f"{where}: {actual!r} != nan"
        else:
            assert actual == pytest.approx(expected, **approx_kw), f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


# ------------------------------------------------------------------------------------------- a local Ray for tests
def start_ray_cluster(slots: int = 1):
    """A Ray head on 127.0.0.1 (a free port, a temp dir of its own); returns (address, temp dir)."""
    import tempfile

    from ueo_core import cluster
    temp_dir = tempfile.mkdtemp(prefix="ueo-ray-", dir="/tmp")
    return cluster.start_local_head(state_dir=Path(temp_dir) / "state", slots=slots, temp_dir=temp_dir), temp_dir


def kill_ray_cluster(temp_dir: str) -> None:
    from ueo_core import cluster
    cluster.stop_local_head(temp_dir)


def rendered(at) -> str:
    """Everything an AppTest page sent to the browser, main area and sidebar: each element's message as text
    (tables' Arrow bytes, charts' JSON and widget ids included), to search for what must not be there."""
    out = []

    def walk(node):
        if getattr(node, "proto", None) is not None:
            out.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)
    walk(at._tree)
    return "\n".join(out)


def loss_of(name, probs, weights=None, known=None, features=None, text=None, labels=None, scale=10.0, **options):
    """A registered method's (loss, statistics) on one batch that is the whole image set (``per_image`` is the
    identity), with its context built here: UEO's weights, the truth, CLIPood's seen classes (all), and its
    ``options`` (the rest at their declared defaults; a name the method does not declare is dropped)."""
    from types import SimpleNamespace
    import torch
    from ueo_core.methods import Step, get_method
    from ueo_core.methods.options import namespace
    m = get_method(name)
    ctx = SimpleNamespace(weights=weights, known=known, options=namespace(m.options, options),
                          label_index=torch.arange(probs.shape[1]))
    return m.loss(Step(probs=probs, features=features, text=text, scale=scale, labels=labels,
                       per_image=lambda t: t), ctx)


class Tower(torch.nn.Module):
    """A stand-in image tower for the stream methods' step-by-step checks (tests/test_open_set_tta.py,
    tests/test_stamp.py): a linear map and a LayerNorm whose affine parameters adapt, in float64."""

    def __init__(self, d: int, g):
        super().__init__()
        self.proj = torch.nn.Linear(d, d).double()
        self.ln = torch.nn.LayerNorm(d).double()
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(d) + 0.1 * torch.randn(d, d, generator=g))
            self.proj.bias.zero_()

    def encode_image(self, x):
        return self.ln(self.proj(x))


def stream_folder(tmp_path: Path) -> Path:
    """12 images, red/green/blue known and yellow unknown: a short stream for the stream methods' runs (each image
    costs a step)."""
    return make_folder(tmp_path / "small", classes=("red", "green", "blue", "yellow"), per_class=3)


def tower_state(tr) -> dict:
    """A run's norm-layer affine parameters now (copies)."""
    return {n: p.detach().clone() for n, p in tr.method.visual_params(tr.loaded.model.visual)}
