"""Errors to plain sentences, in one place: the CLI, the trainer, the Ray workers and the app's pages all say
what went wrong through ``explain``. A traceback goes to logs only.

A run explains its failure once: the sentence is kept on the exception (``remember``), so whoever catches it later
(the Ray worker, the lesson) repeats the same words instead of working them out again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .models import ModelLoadError

_KEPT = "ueo_message"


def remember(err: BaseException, message: str) -> str:
    setattr(err, _KEPT, message)
    return message


def _out_of_memory(err: BaseException) -> Optional[str]:
    """'gpu' / 'cpu' when ``err`` is running out of memory (None otherwise)."""
    import torch
    text = str(err).lower()
    if isinstance(err, torch.cuda.OutOfMemoryError) or "cuda out of memory" in text:
        return "gpu"
    if isinstance(err, MemoryError) or "can't allocate memory" in text or "defaultcpuallocator" in text:
        return "cpu"
    return "gpu" if "out of memory" in text else None


def explain(err: BaseException, audience: Optional[str] = None, batch_size: Optional[int] = None,
            checkpoint: Optional[Path] = None, unknown: str = "") -> str:
    """One plain-language sentence for the user.

    ``audience`` ("cli" / "app") adds how to act on a model error there; ``batch_size`` (a run's) makes an
    out-of-memory message suggest a smaller one, and mentions ``checkpoint`` when it exists; ``unknown`` prefixes
    an error of no known kind (e.g. "The run failed: ")."""
    kept = getattr(err, _KEPT, None)
    if kept:
        return kept
    oom = _out_of_memory(err) if batch_size is not None else None
    if oom:
        where = "The GPU" if oom == "gpu" else "The computer"
        saved = f" The last checkpoint is kept in {checkpoint.parent}." if checkpoint and checkpoint.exists() else ""
        return (f"{where} ran out of memory at batch size {batch_size}. Try a smaller batch size "
                f"(e.g. {max(1, batch_size // 2)}) or a smaller model.{saved}")
    if isinstance(err, ModelLoadError):
        return err.for_audience(audience) if audience else str(err)
    if isinstance(err, (ValueError, OSError)):  # DataError is a ValueError: its words are written for the user
        return str(err)
    return f"{unknown}{err.__class__.__name__}: {err}"
