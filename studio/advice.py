"""What the app proposes for a run (engine-free advice: the engine's own defaults are each method's ``defaults``)."""
from __future__ import annotations

from typing import Optional

from ueo_core.config import RunConfig
from ueo_core.models import BUILTIN_MODEL


def suggested_settings(model: str, pretrained: Optional[str] = None, method: str = "ueo") -> dict:
    """Defaults the app proposes. The official ones (SGD lr 1e-4, 50 epochs) are tuned for ViT-B/RN50 CLIP on a
    GPU; the built-in small CLIP on a CPU needs a larger step and fewer epochs to move in a minute."""
    if method == "clipood":
        d = RunConfig(method="clipood")
        return {"epochs": d.epochs, "batch_size": d.batch_size, "lr_prompt": d.lr_prompt, "lr_visual": d.lr_visual,
                "iters_per_epoch": d.iters_per_epoch,
                "note": f"CLIPood's official settings for PACS-like shifts (thuml/CLIPood): AdamW lr {d.lr_visual:g}, "
                        f"weight decay {d.weight_decay:g}, batch {d.batch_size} per source domain, {d.epochs} epochs "
                        f"of {d.iters_per_epoch} steps, lambda {d.margin:g}, Beta({d.bma_beta:g}, {d.bma_beta:g}) "
                        f"moving average. {d.epochs * d.iters_per_epoch:,} steps of the whole image tower take a "
                        "while on a CPU: fewer steps per epoch make a quick (non-official) run."}
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


def is_resnet_tower(loaded) -> bool:
    """Whether the last_blocks fast mode applies (open_clip's ModifiedResNet image towers)."""
    from open_clip.modified_resnet import ModifiedResNet
    return isinstance(loaded.model.visual, ModifiedResNet)
