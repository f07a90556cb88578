"""The data the server offers besides uploads: the shared PACS and Imagenette folders, and which labelled source
folders fit a chosen target."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ueo_core.shapes import DOMAINS

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("UEO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def source_options(choice: dict) -> dict[str, str]:
    """Labelled source folders that fit the chosen target (label -> data spec): the other Shapes or PACS domains."""
    spec = choice["spec"]
    if spec.startswith("shapes:"):
        target = spec.split(":", 1)[1]
        order = ["flat"] + [d for d in DOMAINS if d != "flat"]
        return {f"Shapes · {d}": f"shapes:{d}" for d in order if d != target}
    pacs = shared_pacs()
    if pacs and Path(spec).resolve().parent == pacs.resolve():
        return {f"PACS · {d.name}": str(d) for d in sorted(pacs.iterdir())
                if d.is_dir() and d.name != Path(spec).name}
    return {}


def shared_pacs() -> Optional[Path]:
    p = SHARED_DATA / "PACS"
    return p if p.is_dir() else None


def shared_imagenette() -> Optional[Path]:
    p = SHARED_DATA / "imagenette-ood"
    return p if p.is_dir() else None
