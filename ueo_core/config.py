"""RunConfig: every knob of a run, with the official UEO code's defaults (tim-learn/UEO demo.py) unless noted."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional

from .models import BUILTIN_MODEL, BUILTIN_TAG, PRECISIONS
from .prompts import DEFAULT_TEMPLATE


# The scales of the three places a softmax is taken (None: the model's own logit scale). "official" is what the
# official UEO code does (demo.py: `100. * image_features @ text_features.T` in training, `get_score` and the
# initial weights on the raw cosine logits); it is what the paper's tables report.
# last_blocks trains the norm params of the last k of a ResNet tower's 4 stages; at least the first stage stays frozen
# (its outputs are what the fast mode caches), so k is at most 3. The trainer's refusal and validate() read this.
FAST_BLOCKS_MAX = 3

PROTOCOLS = {"studio": {"train": None, "weights": None, "eval": None},
             "official": {"train": 100.0, "weights": 1.0, "eval": 1.0}}

# The settings a preset can split its classes by (presets.py), and the fast modes (trainer: train/features.py)
SETTINGS = ("CDA", "PDA", "ODA", "OPDA", "CSDA")
FAST_MODES = ("prompt_only", "last_blocks")


def method_defaults(method: str) -> dict:
    """The method-dependent defaults of ``method``: its registry entry's ``defaults`` (each method's official ones;
    an unknown name gets UEO's, and validate() then refuses the name). Every field here that is left unset (None)
    is filled from them in __post_init__, so that RunConfig(method="clipood"), from_dict, replace(method=...), the
    CLI and the app all get the same values."""
    from .methods import METHODS
    from .methods.base import UEO_DEFAULTS
    return dict(METHODS[method].defaults if method in METHODS else UEO_DEFAULTS)


def method_options(method: str) -> tuple:
    """The options ``method`` declares on its registry entry (``Method.options``); none for an unknown name."""
    from .methods import METHODS
    return METHODS[method].options if method in METHODS else ()


# Method options that were RunConfig fields before each method declared its own: an older run's config.json
# has them at the top level; from_dict moves those its method declares into ``options`` and drops the rest.
FORMER_FIELDS = ("trade", "weight_temperature", "margin", "bma_beta", "weight_decay", "iters_per_epoch",
                 "zero_views")


@dataclass
class RunConfig:
    # --- data
    data: str = ""                          # image folder (class-per-folder or flat)
    prior: Optional[list[str]] = None       # known class names; None = every class folder (closed set)
    preset: Optional[str] = None            # office31 / officehome / visda / domainnet / pacs: prior + target classes
    setting: str = "ODA"                    # with a preset: CDA / PDA / ODA / OPDA / CSDA
    source: Optional[list[str]] = None      # labelled source folders (supervised methods: CLIPood); each
    #   class-per-folder, named by the prior; ``data`` is then the target folder the result is evaluated on
    # --- model
    model: str = BUILTIN_MODEL              # open_clip architecture name
    pretrained: Optional[str] = BUILTIN_TAG  # open_clip pretrained tag (e.g. 'openai'); 'builtin': the shipped
    #   small CLIP (assets/); None = random init
    checkpoint: Optional[str] = None        # local open_clip checkpoint file (instead of a tag)
    device: Optional[str] = None            # None: CUDA when present, else CPU
    precision: str = "auto"                 # of inference passes (models.resolve_precision): auto = bf16 on CUDA
    #   and on a CPU with native bf16 (AVX-512 BF16 / AMX), else fp32; training steps on a CPU stay fp32
    # --- method and objective
    method: str = "ueo"                     # a registry name (ueo_core/methods): zero_shot, entropy, im, ueo, ...
    options: dict = field(default_factory=dict)  # the method's own options (its registry entry's ``options``:
    #   name -> value, e.g. UEO's trade); each one left out gets its declared default
    template: str = DEFAULT_TEMPLATE        # prompt; the words before {} initialise the learnable context
    # --- optimisation (official: SGD, no momentum, cosine decay per step). None: the method's default
    #   (each method's ``defaults``: UEO 50 / 64 / 1e-4 / 1e-4 as demo.py; CLIPood 10 / 12 / 0 / 5e-6)
    epochs: Optional[int] = None            # official --epochs
    batch_size: Optional[int] = None        # official --bs
    lr_prompt: Optional[float] = None       # official --plr; 0 freezes the prompt context
    lr_visual: Optional[float] = None       # official --vlr; 0 freezes the image-tower norm params
    crop_scale: tuple = (0.5, 1.0)          # RandomResizedCrop scale of the training augmentation
    seed: int = 2023                        # official --seed
    num_workers: int = 0                    # DataLoader workers (0: in-process, fully repeatable)
    cache_images: bool = True              # keep decoded images in memory: each file decoded once per run (exact)
    fast_mode: Optional[str] = None         # None: full UEO. "prompt_only": an approximation for CPUs — the image
    #   tower is frozen, features of ``fast_views`` augmented views per image are computed once, only the prompt
    #   context trains (lr_visual is ignored)
    #   "last_blocks" (ResNet towers): only the norm params of the last ``fast_blocks`` stages (and the prompt)
    #   train; the outputs of the frozen earlier stages for ``fast_views`` augmented views are cached once
    fast_views: int = 4                     # augmented views per image cached by the fast modes
    fast_blocks: int = 1                    # last_blocks: how many of the 4 ResNet stages train (1..FAST_BLOCKS_MAX)
    sync_every: Optional[int] = None       # read step statistics back from the device every N steps (one sync);
    #   None: every step on CPU (free there), every 10 steps on CUDA. Every step is still logged.
    eval_every: int = 1                     # evaluate (metrics + confidence histogram) every N epochs; last always
    threshold: Optional[float] = None       # known/unknown confidence threshold; None: unsupervised 2-means split
    split: str = "2means"                   # how the unset threshold is found without labels: 2means or otsu
    mcm_temperature: float = 1.0            # tau of the MCM known/unknown score (ueo_core/scores.py): max softmax of
    #   cosine / tau; 1, as Ming et al. 2022 (metrics.json reports every score beside the default MSP)
    protocol: str = "studio"                # how logits are scaled (PROTOCOLS below): "studio" uses the model's
    #   logit scale everywhere; "official" reproduces tim-learn/UEO demo.py: training logits x100, zero-shot weights
    #   and every metric / histogram / confidence from the softmax of *unscaled* cosines
    # --- bookkeeping
    run_dir: Optional[str] = None           # where the run folder is written; None: nothing written
    resume: Optional[str] = None            # a run folder or checkpoint to continue from

    def __post_init__(self):
        # fields left unset get the method's default; remembered, so that replace(method=...) can re-default them
        self._method_defaulted = set()
        for k, v in method_defaults(self.method).items():
            if getattr(self, k) is None and v is not None:
                setattr(self, k, v)
                self._method_defaulted.add(k)
        self.options = dict(self.options or {})
        for o in method_options(self.method):
            self.options.setdefault(o.name, o.default)

    def validate(self) -> "RunConfig":
        """Check every option up front; a ``ValueError`` names the option and its allowed range. Returns self."""
        import math
        from .methods import METHODS
        from .prompts import split_template

        def bad(name: str, rule: str, value) -> None:
            flag = {"num_workers": "--workers"}.get(name, "--" + name.replace("_", "-"))
            raise ValueError(f"Option '{name}' ({flag}) must be {rule} (got {value!r}).")

        def integer(name: str, lo: int, hi: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                bad(name, f"a whole number from {lo} to {hi:,}" + (" (or unset)" if optional else ""), v)

        def number(name: str, lo: float, hi: float = math.inf, lo_open: bool = False, optional: bool = False):
            v = getattr(self, name)
            if optional and v is None:
                return
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and v <= hi
            if not ok:
                rng = f"{'above' if lo_open else 'at least'} {lo:g}" + (f" and at most {hi:g}" if hi < math.inf else "")
                bad(name, f"a finite number {rng}" + (" (or unset)" if optional else ""), v)

        if self.method not in METHODS:
            bad("method", "one of " + ", ".join(METHODS), self.method)
        if self.setting not in SETTINGS:
            bad("setting", "one of " + ", ".join(SETTINGS), self.setting)
        split_template(self.template)
        for name in method_defaults(self.method):
            if getattr(self, name) is None:
                bad(name, "set", None)
        declared = {o.name: o for o in method_options(self.method)}
        for name, value in self.options.items():  # each checked against its method's declaration
            if name not in declared:
                raise ValueError(f"Option '{name}' is not one of {self.method}'s options ("
                                 + (", ".join(declared) or "it has none") + ").")
            self.options[name] = declared[name].check(value, METHODS[self.method].plain)
        integer("epochs", 0, 100_000)  # 0: evaluate only
        integer("batch_size", 1, 65_536)
        integer("seed", 0, 2 ** 63 - 1)
        integer("num_workers", 0, 256)
        integer("fast_views", 1, 64)
        integer("fast_blocks", 1, FAST_BLOCKS_MAX)
        integer("eval_every", 1, 100_000)
        integer("sync_every", 1, 100_000, optional=True)
        number("lr_prompt", 0.0, 100.0)
        number("lr_visual", 0.0, 100.0)
        number("threshold", 0.0, 1.0, optional=True)
        number("mcm_temperature", 0.0, 1e4, lo_open=True)
        cs = tuple(self.crop_scale) if self.crop_scale is not None else None
        if not (cs and len(cs) == 2 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in cs)
                and 0 < cs[0] <= cs[1] <= 1):
            bad("crop_scale", "two numbers 0 < low <= high <= 1", self.crop_scale)
        if self.split not in ("2means", "otsu"):
            bad("split", "2means or otsu", self.split)
        if self.protocol not in PROTOCOLS:
            bad("protocol", " or ".join(PROTOCOLS), self.protocol)
        if self.fast_mode is not None and self.fast_mode not in FAST_MODES:
            bad("fast_mode", "unset, " + " or ".join(FAST_MODES), self.fast_mode)
        if self.device is not None and not re.fullmatch(r"cpu|mps|cuda(:[0-9]{1,2})?", str(self.device)):
            bad("device", "cpu, cuda, cuda:N or mps (or unset: CUDA when present)", self.device)
        if self.precision not in PRECISIONS:
            bad("precision", "one of " + ", ".join(PRECISIONS), self.precision)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        former = {k: d.pop(k) for k in FORMER_FIELDS if k in d}
        if former:  # an older run's config: its method's options were fields
            from .methods import METHODS
            method = METHODS.get(d.get("method", cls.method))
            d["options"] = {**(method.upgrade(former) if method else {}), **(d.get("options") or {})}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown config keys: {', '.join(sorted(unknown))}")
        if "crop_scale" in d and d["crop_scale"] is not None:
            d["crop_scale"] = tuple(d["crop_scale"])
        return cls(**d)

    def replace(self, **kw) -> "RunConfig":
        """A copy with ``kw`` changed; a method option may be given by its name (``replace(trade=0.5)``). Changing
        the method re-defaults what the old method had defaulted (``RunConfig(data=d).replace(method="clipood")``
        gets CLIPood's lr, not UEO's); values set explicitly stay, and so do the options both methods declare."""
        kept = getattr(self, "_method_defaulted", set()) - set(kw)
        method = kw.get("method", self.method)
        names = {f.name for f in dataclasses.fields(self)}
        given = {k: kw.pop(k) for k in list(kw) if k not in names}
        options = dict(kw.pop("options", self.options))
        if method != self.method:
            kw.update({k: None for k in kept})
            options = {k: v for k, v in options.items() if k in {o.name for o in method_options(method)}}
        kw["options"] = {**options, **given}
        new = dataclasses.replace(self, **kw)
        new._method_defaulted |= kept
        return new
