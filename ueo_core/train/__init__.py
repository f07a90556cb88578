"""Training: one loop for every method. Which file to open for which change:

- ``loop.py``: the loop itself (about 60 lines): one straight path, read it first.
- a new method: one file in ``ueo_core/methods/`` (its objective, and the hooks of ``methods/base.py`` it needs
  to differ by); nothing here changes.
- ``features.py``: how a step gets image features: the whole tower, a cached prefix (the fast modes), DDP.
  A new fast mode is a new split of ``CachedPrefix`` (its refusals in ``check.py``).
- ``batches.py``: what a step reads: the target folder, or its cached views (a method may bring its own:
  CLIPood's labelled sources are in ``methods/clipood.py``).
- ``checkpoint.py``: checkpoints and resume.
- ``check.py``: every refusal of an option combination (mode vs method vs processes vs architecture).
- ``trainer.py``: one run around the loop: setup, evaluation, events, the run folder's files at the end.
- ``events.py``: events to listeners and the run folder, stop requests, the step log.
- ``estimate.py``: what a run will cost, timed on the method's real step.
"""
from .checkpoint import apply_state
from .estimate import estimate_run
from .events import Cancelled, Event
from ..methods.base import norm_affine_params
from .features import encode_images
from .trainer import RunResult, Trainer

__all__ = ["Trainer", "RunResult", "Event", "Cancelled", "apply_state", "estimate_run", "encode_images",
           "norm_affine_params"]
