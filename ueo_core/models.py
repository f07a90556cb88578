"""Loading OpenCLIP models: by name + pretrained tag, from a local checkpoint, or randomly initialised.

Everything goes through open_clip's own factory (``create_model_and_transforms`` / ``get_tokenizer``); this module
only adds the project's model configs, device choice, and one clear error when weights cannot be had.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import open_clip
import torch
from torchvision import transforms as T

CONFIG_DIR = Path(__file__).parent / "model_configs"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
# The built-in small CLIP, trained by scripts/train_builtin_clip.py on Shapes and shipped in assets/:
# the default model when nothing else is chosen or downloadable.
BUILTIN_MODEL = "ueo-shapes"
BUILTIN_TAG = "builtin"
BUILTIN_CHECKPOINT = ASSETS / "ueo-shapes-clip.safetensors"
# Tiny, randomly initialised CLIPs for tests: whole training runs take seconds on a CPU.
TINY_MODEL = "ueo-tiny"  # ViT image tower (LayerNorm); ueo-tiny-rn has a ResNet one (BatchNorm)

_registered = False


def register_configs() -> None:
    """Make the project's JSON model configs known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


class ModelLoadError(RuntimeError):
    """Weights or architecture could not be obtained. The message says what to do instead, in words that fit any
    interface; ``hints`` may add how to do it in one ("cli": flags, "app": where to click)."""

    def __init__(self, message: str, hints: Optional[dict] = None):
        super().__init__(message)
        self.hints = hints or {}

    def for_audience(self, audience: str) -> str:
        return " ".join(filter(None, [str(self), self.hints.get(audience)]))


HUB_HOST = "huggingface.co"


def weights_source(name: str, tag: str) -> dict:
    """Where open_clip gets the weights of ``name`` / ``tag``: the Hugging Face repo and file, the page to download
    it from, the original URL, and the architecture to load the file into as a local checkpoint (the QuickGELU
    variant when the weights were trained with it)."""
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    hub = cfg.get("hf_hub", "")
    repo, filename = os.path.split(hub) if hub else ("", "")
    filename = filename or ("open_clip_pytorch_model.bin" if repo else "")
    arch = name
    if cfg.get("quick_gelu") and not name.endswith("-quickgelu") and f"{name}-quickgelu" in open_clip.list_models():
        arch = f"{name}-quickgelu"
    return {"repo": repo, "file": filename, "url": cfg.get("url", ""),
            "page": f"https://{HUB_HOST}/{repo}/blob/main/{filename}" if repo else cfg.get("url", ""),
            "arch": arch}


def hub_reachable(timeout: float = 3.0) -> Optional[str]:
    """None when the model hub answers a TCP connection within ``timeout`` s, else why not (one short line).
    ``HF_HUB_OFFLINE=1`` (huggingface_hub's own switch) counts as unreachable."""
    import socket
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return None
    except OSError as err:
        return f"{err.__class__.__name__}: {err}"


def _cached_hub_file(repo: str, filename: str, cache_dir: Optional[str]) -> Optional[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
        return found if isinstance(found, str) else None
    except Exception:
        return None


def progress_tqdm(callback: Callable[[int, int], None]):
    """A tqdm class that reports (bytes done, bytes total) to ``callback`` (for huggingface_hub's downloads)."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):
        def __init__(self, *a, **kw):
            kw["disable"] = True  # no terminal output; the callback shows progress
            super().__init__(*a, **kw)
            self._done = 0

        def update(self, n=1):
            self._done += n or 0
            callback(int(self._done), int(self.total or 0))
            return super().update(n)

    return Reporting


def _first_line(err: Exception) -> str:
    """The error's class and the first line of its message: why a download failed, in one line."""
    text = str(err)
    return f"{err.__class__.__name__}: {text.splitlines()[0] if text else ''}"


def fetch_weights(name: str, tag: str, cache_dir: Optional[str] = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> None:
    """Make sure the weights of a zoo tag are in the local cache before open_clip asks for them: already cached,
    nothing to do; hub unreachable, a ``ModelLoadError`` at once (not after a minute of retries) that names the
    file to get and how to use it; else download it, reporting bytes to ``progress``."""
    src = weights_source(name, tag)
    if not src["repo"] or _cached_hub_file(src["repo"], src["file"], cache_dir):
        return
    why = hub_reachable()
    if why is None:
        from huggingface_hub import hf_hub_download
        try:
            hf_hub_download(src["repo"], src["file"], cache_dir=cache_dir,
                            tqdm_class=progress_tqdm(progress) if progress else None)
            return
        except Exception as err:  # reachable but failing (gated, moved, disk full): say that
            why = _first_line(err)
    raise weights_unavailable(name, tag, src, why)


def weights_unavailable(name: str, tag: str, src: dict, why: str) -> ModelLoadError:
    arch = src["arch"]
    gelu = (f" These weights were trained with QuickGELU, so the architecture to choose is {arch}, not {name}."
            if arch != name else "")
    msg = (f"The weights '{tag}' for {name} cannot be downloaded here: {why}. This machine cannot reach the model "
           f"hub ({HUB_HOST}). On a computer with internet, download the file {src['file']} from {src['page']}, "
           f"bring it to this machine, and load it as a local checkpoint with architecture {arch}.{gelu} "
           f"The built-in small CLIP works offline.")
    return ModelLoadError(msg, hints={
        "cli": f"Then: --model {arch} --checkpoint PATH/{src['file']}",
        "app": f"In the app: Model page → 'Local checkpoint file' → architecture {arch} → upload the file or give "
               "its path on this server."})


def pick_device(device: Optional[str] = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


def autocast(device: torch.device, enabled: bool = True):
    """Autocast for TRAINING steps: bf16 on CUDA; a no-op context on CPU (fp32 there, for repeatable results).
    Inference passes use ``inference_autocast(loaded)``, which follows the model's ``precision``."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


PRECISIONS = ("auto", "fp32", "bf16")  # RunConfig.precision / --precision


def native_bf16(device: torch.device) -> Optional[str]:
    """Whether ``device`` computes bf16 natively: the reason in words (e.g. "this CPU has AVX-512 BF16"), or None.
    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: oneDNN must be available and report bf16 support
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) and /proc/cpuinfo must list the ``amx_bf16`` or
    ``avx512_bf16`` flag (without them oneDNN emulates bf16, which is slower than fp32). Other devices: None."""
    if device.type == "cuda":
        return "CUDA GPU" if torch.cuda.is_bf16_supported() else None
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return None
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except (OSError, RuntimeError, AttributeError):
        return None
    for flag, words in (("amx_bf16", "AMX BF16"), ("avx512_bf16", "AVX-512 BF16")):
        if flag in flags:
            return f"this CPU has {words}"
    return None


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """("fp32" or "bf16", why in words) for a ``precision`` setting (auto / fp32 / bf16) on ``device``. "auto":
    bf16 on CUDA and on a CPU with native bf16 (``native_bf16``), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"Option 'precision' (--precision) must be one of {', '.join(PRECISIONS)} "
                         f"(got {precision!r}).")
    if precision == "fp32":
        return "fp32", "fp32 chosen"
    if device.type not in ("cpu", "cuda"):
        return "fp32", f"bf16 autocast is not used on {device.type}"
    if precision == "bf16":
        return "bf16", "bf16 chosen"
    if device.type == "cuda":
        return "bf16", "CUDA GPU"
    why = native_bf16(device)
    return ("bf16", why) if why else ("fp32", "this CPU has no native bf16")


def inference_autocast(loaded: "LoadedModel"):
    """Autocast for INFERENCE passes (no-grad feature passes: zero-shot, evaluations, cached features, search):
    bf16 on the model's device when its ``precision`` is bf16 (CUDA, or a CPU with native bf16), else none."""
    if loaded.precision == "bf16" and loaded.device.type in ("cpu", "cuda"):
        return torch.autocast(loaded.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Callable
    preprocess: Callable          # the model's own evaluation transform
    name: str
    pretrained: Optional[str]     # tag, checkpoint path or None (random init)
    device: torch.device
    image_size: int
    mean: tuple = field(default=open_clip.OPENAI_DATASET_MEAN)
    std: tuple = field(default=open_clip.OPENAI_DATASET_STD)
    precision: str = "fp32"       # of inference passes (``inference_autocast``): "fp32" or "bf16", resolved at load
    precision_why: str = ""       # why that precision, in words ("this CPU has AVX-512 BF16")
    weights: str = ""             # a hash of the image tower's weights as loaded (``tower_digest``)
    variant: str = ""             # the image tower's state in the feature store: "" its own weights, else a digest
                                  # of the adapted ones (set by ``train.apply_state``)

    def with_precision(self, precision: str) -> "LoadedModel":
        """This model with inference ``precision`` (auto / fp32 / bf16) resolved for its device: itself when that
        changes nothing, else a shallow copy (the same weights), so a shared model is left as it was."""
        resolved, why = resolve_precision(precision, self.device)
        if (resolved, why) == (self.precision, self.precision_why):
            return self
        return dataclasses.replace(self, precision=resolved, precision_why=why)

    @property
    def channels_last(self) -> bool:
        """Convolutional image towers (ResNets) run faster with channels-last tensors (oneDNN on CPU, cuDNN on
        GPU); same maths, only the summation order differs. ViTs gain nothing."""
        return any(isinstance(m, torch.nn.Conv2d) and max(m.kernel_size) > 1 and m.in_channels > 3
                   for m in self.model.visual.modules())

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images to the model's device, channels-last for convolutional towers."""
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    def train_transform(self, scale=(0.5, 1.0)) -> Callable:
        """The official UEO training augmentation: RandomResizedCrop(scale 0.5-1, bicubic) + horizontal flip."""
        return T.Compose([
            T.RandomResizedCrop(self.image_size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
            T.Lambda(_to_rgb),
            T.ToTensor(),
            T.Normalize(self.mean, self.std),
        ])

    def describe(self) -> dict:
        n_params = sum(p.numel() for p in self.model.parameters())
        return {"model": self.name, "pretrained": self.pretrained, "device": device_label(self.device),
                "parameters": n_params, "image_size": self.image_size, "logit_scale": round(self.logit_scale, 4),
                "precision": self.precision, "precision_why": self.precision_why}


def _to_rgb(img):
    return img.convert("RGB")


def list_pretrained() -> list[tuple[str, str]]:
    """(architecture, tag) pairs: the built-in model, then open_clip's zoo."""
    return [(BUILTIN_MODEL, BUILTIN_TAG)] + open_clip.list_pretrained()


def load_model(name: str = TINY_MODEL, pretrained: Optional[str] = None, checkpoint: Optional[str | os.PathLike] = None,
               device: Optional[str] = None, seed: int = 0, cache_dir: Optional[str] = None,
               progress: Optional[Callable[[int, int], None]] = None, precision: str = "auto") -> LoadedModel:
    """Load an OpenCLIP model.

    - ``name`` + ``pretrained`` tag (e.g. ``ViT-B-32`` / ``openai``): open_clip downloads (or finds cached) weights.
    - ``checkpoint``: a local file with the model's state dict (open_clip's own loader reads it).
    - ``pretrained="builtin"`` with ``ueo-shapes``: the shipped checkpoint in ``assets/`` (same path as any local
      checkpoint).
    - neither: random initialisation, seeded (used by the tests with the tiny configs).

    ``progress(bytes_done, bytes_total)`` follows a weights download. ``precision`` (auto / fp32 / bf16) is that
    of inference passes (``resolve_precision``); training steps use ``autocast(device)``.
    """
    register_configs()
    dev = pick_device(device)
    resolved, why = resolve_precision(precision, dev)
    if name not in open_clip.list_models():
        raise ModelLoadError(
            f"Unknown model architecture '{name}'. Choose one of open_clip.list_models(), e.g. ViT-B-32, RN50, "
            f"or the built-in '{TINY_MODEL}'.")
    source = None
    if pretrained == BUILTIN_TAG and checkpoint is None:
        if name != BUILTIN_MODEL:
            raise ModelLoadError(f"The '{BUILTIN_TAG}' weights exist only for '{BUILTIN_MODEL}'.")
        checkpoint, pretrained = BUILTIN_CHECKPOINT, None
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"Checkpoint file not found: {path}. Give the path of a local open_clip "
                                 f"checkpoint for architecture '{name}'.")
        source = str(path)
    elif pretrained:
        source = pretrained
        if open_clip.get_pretrained_cfg(name, pretrained):
            fetch_weights(name, pretrained, cache_dir=cache_dir, progress=progress)
    torch.manual_seed(seed)
    try:
        with _quiet_open_clip():
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=source, device=dev, cache_dir=cache_dir)
    except ModelLoadError:
        raise
    except Exception as err:  # open_clip raises RuntimeError/OSError/HF errors for missing weights or bad tags
        if checkpoint is not None:
            raise ModelLoadError(
                f"Could not load checkpoint {source} into '{name}': {err}. Is it a state dict for this "
                f"architecture?") from err
        if not open_clip.get_pretrained_cfg(name, pretrained):
            tags = [t for a, t in open_clip.list_pretrained() if a == name]
            raise ModelLoadError(f"'{pretrained}' is not a pretrained tag of {name}. " +
                                 (f"Its tags: {', '.join(tags)}." if tags else f"{name} has no pretrained weights "
                                  "in open_clip.")) from err
        raise weights_unavailable(name, pretrained, weights_source(name, pretrained), _first_line(err)) from err
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return LoadedModel(model=model, tokenizer=open_clip.get_tokenizer(name), preprocess=preprocess, name=name,
                       pretrained=source, device=dev, image_size=int(size),
                       mean=tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                       std=tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)), precision=resolved, precision_why=why,
                       weights=tower_digest(model.visual))


def tower_digest(tower: torch.nn.Module) -> str:
    """A hash of an image tower's weights as loaded (the feature store's key: a random init's seed, a local
    checkpoint's content, a hub tag's weights all show in it; ~0.3 s for ViT-B-32's 88 M parameters)."""
    h = hashlib.sha1()
    for name, t in sorted(tower.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs a warning on every random init; we report the source ourselves."""
    logger = logging.getLogger()
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def text_tower(model: torch.nn.Module) -> Any:
    """The module holding token_embedding / transformer / ln_final / text_projection.

    ``CLIP`` keeps them on the model itself; ``CustomTextCLIP`` (e.g. MobileCLIP, SigLIP) on ``model.text`` when that
    is open_clip's ``TextTransformer``. Hugging Face text towers have no token embedding we can prompt-tune.
    """
    for cand in (model, getattr(model, "text", None)):
        if cand is not None and all(hasattr(cand, a) for a in ("token_embedding", "transformer", "ln_final")):
            return cand
    raise ModelLoadError("This model's text tower is not an open_clip TextTransformer, so its prompt context cannot "
                         "be learned. Choose a CLIP model with a standard text tower (ViT-B-32, RN50, ...).")


# ------------------------------------------------------------------------------------------ memory checks
def available_memory(device: torch.device) -> int:
    """Bytes free for a new allocation: GPU free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def training_memory_estimate(loaded: LoadedModel, batch_size: int) -> dict:
    """Bytes to fine-tune the whole image tower with AdamW and a moving average, estimated from the model itself:
    weights + gradients + two AdamW moments + the average (5 fp32 copies of the tower's parameters), plus the
    activations kept for backward, measured as the outputs of every module on one image, times the batch."""
    visual = loaded.model.visual
    n_params = sum(p.numel() for p in visual.parameters())
    per_image = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            per_image[0] += out.numel() * out.element_size()

    hooks = [m.register_forward_hook(hook) for m in visual.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            visual(torch.zeros(1, 3, loaded.image_size, loaded.image_size, device=loaded.device))
    finally:
        for h in hooks:
            h.remove()
    params = 5 * 4 * n_params
    activations = 2 * per_image[0] * batch_size  # outputs kept for backward, plus their gradients
    return {"parameters": n_params, "state_bytes": params, "activation_bytes": activations,
            "total_bytes": params + activations}


def check_training_memory(loaded: LoadedModel, batch_size: int, headroom: float = 0.9) -> dict:
    """Refuse (ModelLoadError with a suggestion) when whole-tower training would not fit in memory."""
    est = training_memory_estimate(loaded, batch_size)
    free = available_memory(loaded.device)
    if est["total_bytes"] > headroom * free:
        where = "GPU" if loaded.device.type == "cuda" else "memory"
        raise ModelLoadError(
            f"Fine-tuning the whole image tower of {loaded.name} needs about {est['total_bytes'] / 2**30:.1f} GiB "
            f"({est['parameters'] / 1e6:.0f} M parameters with AdamW and the moving average, plus activations for "
            f"batch {batch_size}), but only {free / 2**30:.1f} GiB of {where} is free. Use a smaller batch size or "
            f"a smaller model — or UEO, which trains only the prompt and the norm layers.")
    return {**est, "free_bytes": free}
