"""Every compatibility refusal of a run, in one place: method vs data, fast mode vs method, vs architecture, vs
several processes. Called once the model is loaded, before anything is computed or written (the options' own
ranges are ``RunConfig.validate``'s)."""
from __future__ import annotations

from ..config import RunConfig
from ..data import DataError, ImageSet
from ..methods import Method
from ..models import LoadedModel


def check(cfg: RunConfig, method: Method, loaded: LoadedModel, image_set: ImageSet, distributed: bool) -> None:
    from open_clip.modified_resnet import ModifiedResNet
    few = method.too_few_images(len(image_set), len(image_set.classes))
    if few:
        raise DataError(few)
    if method.needs_truth and not image_set.has_truth:
        raise DataError(f"Method '{cfg.method}' needs ground truth (class sub-folders), and this folder has none.")
    if cfg.fast_mode == "last_blocks" and not isinstance(loaded.model.visual, ModifiedResNet):
        raise ValueError("The last_blocks fast mode is implemented for ResNet image towers (RN50, the built-in "
                         "model); use prompt_only for this model.")
    if cfg.fast_mode and not (method.trains_prompt and method.trains and not method.supervised):
        raise ValueError(f"The fast modes ({cfg.fast_mode}) apply to the unsupervised methods, not {cfg.method}.")
    if distributed and method.trains and (method.supervised or cfg.fast_mode):
        raise ValueError("Several processes are supported for the unsupervised methods in full mode.")
