"""Zero-shot CLIP: no training, the prompts as given."""
from . import register
from .base import Method


@register
class ZeroShot(Method):
    name = "zero_shot"
    label = "Zero-shot"
    plain = "zero-shot"
    lesson = "core"
    description = "No adaptation: the model and prompt template as they are."
    trains = False
