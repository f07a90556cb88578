"""One registry for every adaptation method (timm-style: each module registers its objective on import)."""
from __future__ import annotations

from .base import Context, Method, Step, confidence_weights, entropy
from .options import Option

METHODS: dict[str, Method] = {}


def register(cls):
    METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown method '{name}'. Choose one of: {', '.join(METHODS)}") from None


def list_methods() -> list[str]:
    return list(METHODS)


def _discover() -> None:
    """Import every method file of this package (each registers itself on import): a new method is one new file,
    listed nowhere else. The registry's order (the app's list, the CLI's choices) is the files' ``ORDER`` then
    their names."""
    import importlib
    import pkgutil
    skip = {"base", "options"}
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in skip and not m.name.startswith("_")]
    for name in sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        importlib.import_module(f"{__name__}.{name}")


ORDER = ("zero_shot", "tent", "im", "ueo", "clipood", "zero", "tda")  # the first methods, in their historical order
_discover()


def too_few_note(n_images: int, n_classes: int) -> str | None:
    """What the Data page says, before any run, when the images are too few for some methods (each method's own
    ``min_images``); None when every method can run."""
    short = [m for m in METHODS.values() if n_images < m.min_images(n_classes)]
    if not short:
        return None
    images = f"{n_images} image{'s' if n_images != 1 else ''}"
    if len(short) == len(METHODS):
        need = min(m.min_images(n_classes) for m in short)
        return (f"{images}: too few for any run. Every method needs at least {need} (a threshold splits known from "
                f"unknown, and a map needs two points); adapting needs one per known class ({n_classes}).")
    ok = [m.label for m in METHODS.values() if m not in short]
    need = max(m.min_images(n_classes) for m in short)
    return (f"{images}: enough for {', '.join(ok)}; too few for {', '.join(m.label for m in short)}, which adapt "
            f"on these images and need at least {need}, one per known class, so that their predictions can "
            "spread over the classes.")

__all__ = ["too_few_note", "Context", "Step", "Option", "Method", "METHODS", "register", "get_method", "list_methods", "confidence_weights",
           "entropy"]
