"""What the benches' ``--quick`` modes share. A quick mode runs the bench's own code at tiny sizes, so that a test
(tests/test_benches.py) finds a bench broken the day it breaks, not weeks later; its numbers are not a measurement."""
from __future__ import annotations

QUICK_NOTE = "QUICK MODE (smoke run at tiny sizes: its numbers are not a measurement to report)"
PER_CLASS = 4  # Shapes images per shape in quick mode (36 per domain instead of 540)


def shapes_spec(domain: str, quick: bool = False) -> str:
    """The data spec of a Shapes domain: ``shapes:<domain>``, or in quick mode a folder of the same world with
    ``PER_CLASS`` images per shape (load it with ``preset="shapes"`` for the same known/unknown split)."""
    if not quick:
        return f"shapes:{domain}"
    from ueo_core.shapes import shapes_folder
    return str(shapes_folder(domain, n_per_class=PER_CLASS))


def load_shapes(domain: str, quick: bool = False):
    """The ImageSet of a Shapes domain as the app loads it (6 known shapes, the others unknown), small in quick
    mode."""
    from ueo_core.data import load_data
    return load_data(shapes_spec(domain, quick), preset="shapes")
