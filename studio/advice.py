"""What the app proposes for a run (engine-free advice: the engine's own defaults are each method's ``defaults``)."""
from __future__ import annotations

from typing import Optional

from ueo_core.config import RunConfig
from ueo_core.methods import get_method
from ueo_core.models import BUILTIN_MODEL


def suggested_settings(model: str, pretrained: Optional[str] = None, method: str = "ueo") -> dict:
    """Defaults the app proposes. The official ones (SGD lr 1e-4, 50 epochs) are tuned for ViT-B/RN50 CLIP on a
    GPU; the built-in small CLIP on a CPU needs a larger step and fewer epochs to move in a minute."""
    d = RunConfig(method=method)
    m = get_method(method)
    note = m.note(d)  # a method with official settings of its own says them (CLIPood)
    if not m.trains:
        note = note or (f"{m.plain[:1].upper() + m.plain[1:]} does not train beforehand: no epochs or learning rates "
                        "(a run is one pass over the images" + (", adapting as they stream by" if m.adapts_in_stream
                                                                else "") + ")" + ("; its own options are above." if m.options else "."))
    if note:
        return {"epochs": d.epochs, "batch_size": d.batch_size, "lr_prompt": d.lr_prompt, "lr_visual": d.lr_visual,
                "note": note}
    if model == BUILTIN_MODEL:
        return {"epochs": 5, "batch_size": 64, "lr_prompt": 5e-2, "lr_visual": 5e-2,
                "note": "Quick settings for the built-in model (5 epochs, SGD lr 0.05): chosen on Shapes from "
                        "lr 0.05/0.1/0.2 x 5/10 epochs (bench/world_table.py has the measured table). The paper's "
                        "defaults are 50 epochs at lr 1e-4, tuned for ViT-B/16 on a GPU."}
    d = RunConfig()
    return {"epochs": d.epochs, "batch_size": d.batch_size, "lr_prompt": d.lr_prompt, "lr_visual": d.lr_visual,
            "note": "The paper's defaults (official code): SGD lr 1e-4 for prompt and norm params, 50 epochs, "
                    "batch 64. On a CPU, fewer epochs keep a run short: see the Model page for the cost."}


FAST_MODE_MIN_PARAMS = 20_000_000


def prefers_fast_mode(loaded) -> bool:
    """Whether the app should propose the prompt-only approximation: on a CPU with a large image tower (e.g.
    ViT-B-32, ~7 images/s per training step here). The built-in model trains a Shapes folder in well under a
    minute in full, where the fast mode costs accuracy on the photo domain (bench/fast_modes.py), so full it is."""
    n = sum(p.numel() for p in loaded.model.visual.parameters())
    return loaded.device.type == "cpu" and n >= FAST_MODE_MIN_PARAMS


def fast_mode_choice(loaded) -> tuple[dict, Optional[str], bool]:
    """The Adapt page's speed choice for ``loaded``: (label -> fast mode, the default, whether it is the slow
    case where a fast mode is proposed). The last ResNet stage is offered only for a ResNet tower."""
    slow, resnet = prefers_fast_mode(loaded), is_resnet_tower(loaded)
    modes = {"Full (exact)": None, "Fast: prompt only (approximation)": "prompt_only"}
    if resnet:
        modes["Fast: last ResNet stage + prompt (approximation)"] = "last_blocks"
    return modes, ("last_blocks" if resnet else "prompt_only") if slow else None, slow


def passes_note(cfg: RunConfig, n_images: int, cost: Optional[dict]) -> Optional[str]:
    """For a training-free method that passes each image through the image tower more than once (ZERO's views:
    ``Method.passes``), how many passes a run takes and, when the Model page measured one pass over these same
    images, about how long; None for every other method."""
    m = get_method(cfg.method)
    passes = m.passes(cfg)
    if m.trains or passes <= 1:
        return None
    measured = (f" The Model page measured one pass over these images at ~{cost['eval_seconds']:.0f} s here: "
                f"about **{passes * cost['eval_seconds'] / 60:.1f} minutes** for {m.plain}."
                if cost and cost.get("images") == n_images else " The Model page measures one pass on this device.")
    return (f"{n_images} images × {passes} passes of the image tower = {n_images * passes:,} image-tower passes (a "
            f"zero-shot run: {n_images}).") + measured


def is_resnet_tower(loaded) -> bool:
    """Whether the last_blocks fast mode applies (open_clip's ModifiedResNet image towers)."""
    from open_clip.modified_resnet import ModifiedResNet
    return isinstance(loaded.model.visual, ModifiedResNet)
