"""Where the project writes what it generates and caches (below every other module: it imports nothing of ours)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Where generated and cached files go (Shapes images, image features, UMAPs): $UEO_CACHE, read at call time,
    else ~/.cache/ueo_studio."""
    return Path(os.environ.get("UEO_CACHE", Path.home() / ".cache" / "ueo_studio"))
