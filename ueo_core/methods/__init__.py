"""One registry for every adaptation method (timm-style: each module registers its objective on import)."""
from __future__ import annotations

from .base import Batch, Method, confidence_weights, entropy

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


from . import zero_shot, tent, im, ueo, clipood, zero, tda  # noqa: E402,F401  (each registers itself)

__all__ = ["Batch", "Method", "METHODS", "register", "get_method", "list_methods", "confidence_weights", "entropy"]
