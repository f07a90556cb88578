"""CoOp-style prompt learner over open_clip's own text tower.

Prompts are ``template.format(class)``; the words before ``{}`` in the template ("a photo of a") initialise the
learnable context vectors (one per token, shared by all classes, as in CoOp and the official UEO code). The text
tower's weights stay frozen; only the context vectors learn.

Truncation: the text transformer is causal and pools at the end-of-text token, so the feature at that token depends
only on earlier positions. Encoding only the first ``L`` positions (``L`` = longest prompt incl. end token) is
therefore exact and much faster than the full 77-token context. ``truncate=False`` keeps the full context (used by
the reference loop in ``bench/`` and by the test that proves both agree).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import LoadedModel, ModelLoadError, text_tower

DEFAULT_TEMPLATE = "a photo of a {}."


def class_prompt_name(name: str) -> str:
    """Folder names use underscores; prompts use spaces (as the official code does)."""
    return name.replace("_", " ").strip()


def split_template(template: str) -> tuple[str, str]:
    """``"a photo of a {}."`` -> (``"a photo of a"``, ``"."``). The prefix is the context init text."""
    if template.count("{}") != 1:
        raise ValueError(f"The prompt template must contain '{{}}' exactly once, where the class name goes: "
                         f"got {template!r}")
    prefix, suffix = template.split("{}")
    if "{" in prefix + suffix or "}" in prefix + suffix:
        raise ValueError(f"The prompt template may contain no braces other than the one '{{}}' for the class name: "
                         f"got {template!r}")
    if not prefix.strip():
        raise ValueError("The prompt template needs at least one word before '{}' to initialise the learnable "
                         "context (e.g. 'a photo of a {}.')")
    return prefix.strip(), suffix.strip()


def prompt_length_problem(classnames: Sequence[str], template: str, tokenizer) -> Optional[str]:
    """A sentence when a prompt ``template.format(name)`` would be cut off by the text tower's context (77 tokens
    for CLIP), naming the cause: the class name when the template leaves room for an ordinary name, else the
    template. None when every prompt fits, or when the tokenizer cannot count (not open_clip's own)."""
    limit = getattr(tokenizer, "context_length", None)
    if not classnames or not hasattr(tokenizer, "encode") or not limit:
        return None
    count = lambda text: len(tokenizer.encode(text))  # noqa: E731  (without start and end of text)
    lengths = {c: count(template.format(class_prompt_name(c))) + 2 for c in classnames}
    worst = max(lengths, key=lengths.get)
    if lengths[worst] <= limit:
        return None
    name_tokens = count(class_prompt_name(worst))
    rest = lengths[worst] - name_tokens  # the template, start and end of text
    shown = worst if len(worst) <= 40 else worst[:37] + "…"
    if rest + 8 <= limit:  # the template leaves room for a name of several words: the name is the cause
        return (f"The class name '{shown}' is {name_tokens} tokens long ({len(worst)} characters): in the prompt "
                f"'{template}' it makes {lengths[worst]} tokens, and this model reads at most {limit}, so the name "
                f"would be cut off. Shorten it to at most {limit - rest} tokens (a few words).")
    return (f"The prompt template '{template}' leaves too little room for the class names: with '{shown}' the "
            f"prompt is {lengths[worst]} tokens long, and this model reads at most {limit}: the class names would be "
            "cut off. Use a shorter template.")


def check_prior_names(classnames: Sequence[str], model_name: str, template: str = DEFAULT_TEMPLATE) -> None:
    """The Data page's check, before any run: every class name fits the chosen model's text context in the default
    prompt (``prompt_length_problem``; only the tokenizer is read, no weights). Raises DataError naming the class."""
    import open_clip
    from .data import DataError
    from .models import register_configs
    register_configs()  # the built-in model's config (its tokenizer: without it open_clip guesses, with a warning)
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception:  # an architecture open_clip does not know here: the run itself checks with its own tokenizer
        return
    problem = prompt_length_problem(classnames, template, tokenizer)
    if problem:
        raise DataError(problem)


class PromptLearner(nn.Module):
    """Learnable context vectors + the frozen open_clip text tower → one text feature per class."""

    def __init__(self, loaded: LoadedModel, classnames: Sequence[str], template: str = DEFAULT_TEMPLATE,
                 truncate: bool = True):
        super().__init__()
        if len(classnames) == 0:
            raise ValueError("No class names given.")
        tower = text_tower(loaded.model)
        if getattr(tower, "cls_emb", None) is not None:
            raise ModelLoadError("Text towers with a CLS embedding are not supported by the prompt learner.")
        self._tower = [tower]  # a list so the frozen tower is not registered (and not saved) as a sub-module
        self.template = template
        self.classnames = list(classnames)
        ctx_text, _ = split_template(template)
        self.ctx_init = ctx_text
        tokenizer = loaded.tokenizer
        device = loaded.device

        ctx_tokens = tokenizer([ctx_text]).to(device)
        n_ctx = int(_end_index(ctx_tokens, tower)[0].item()) - 1  # tokens between start and end of text
        self.n_ctx = n_ctx
        prompts = [template.format(class_prompt_name(c)) for c in self.classnames]
        self.prompts = prompts
        tokens = tokenizer(prompts).to(device)
        problem = prompt_length_problem(self.classnames, template, tokenizer)  # would a prompt be cut off?
        if problem:
            raise ValueError(problem)
        pool_index = _pool_index(tokens, tower)
        causal = getattr(tower, "attn_mask", None) is not None
        pool_type = _pool_type(tower)
        if truncate and causal and pool_type in ("argmax", "eos"):
            length = int(pool_index.max().item()) + 1
        else:
            length = tokens.shape[1]
        self.truncated = length < tokens.shape[1]
        self.length = length
        tokens = tokens[:, :length]
        with torch.no_grad():
            emb = tower.token_embedding(tokens)
            ctx_emb = tower.token_embedding(ctx_tokens)[0, 1:1 + n_ctx]
        # the prompt "a photo of a cat." tokenises with the context words first, so the suffix starts after them
        self.ctx = nn.Parameter(ctx_emb.clone().float())
        self.register_buffer("token_prefix", emb[:, :1].clone(), persistent=False)          # start of text
        self.register_buffer("token_suffix", emb[:, 1 + n_ctx:].clone(), persistent=False)  # class, '.', end, pad
        self.register_buffer("pool_index", pool_index, persistent=False)
        self.register_buffer("tokens", tokens, persistent=False)

    @property
    def tower(self):
        return self._tower[0]

    def forward(self, normalize: bool = True) -> torch.Tensor:
        tower = self.tower
        cast = tower.transformer.get_cast_dtype() if hasattr(tower.transformer, "get_cast_dtype") else torch.float32
        n = len(self.classnames)
        ctx = self.ctx.to(cast).unsqueeze(0).expand(n, -1, -1)
        x = torch.cat([self.token_prefix.to(cast), ctx, self.token_suffix.to(cast)], dim=1)
        x = x + tower.positional_embedding[: self.length].to(cast)
        mask = tower.attn_mask
        if mask is not None:
            mask = mask[: self.length, : self.length]
        x = tower.transformer(x, attn_mask=mask)
        x = tower.ln_final(x)
        x = x[torch.arange(n, device=x.device), self.pool_index]
        proj = tower.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1) if normalize else x


def _pool_type(tower) -> str:
    return getattr(tower, "text_pool_type", None) or getattr(tower, "pool_type", "argmax")


def _eos_id(tower):
    return getattr(tower, "text_eos_id", None) or getattr(tower, "eos_id", None)


def _end_index(tokens: torch.Tensor, tower) -> torch.Tensor:
    """Position of the end-of-text token in each row."""
    eos = _eos_id(tower)
    if _pool_type(tower) == "eos" and eos is not None:
        return (tokens == eos).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)  # open_clip/OpenAI tokenizer: end-of-text has the largest id


def _pool_index(tokens: torch.Tensor, tower) -> torch.Tensor:
    pool = _pool_type(tower)
    if pool in ("argmax", "eos"):
        return _end_index(tokens, tower)
    if pool == "last":
        return torch.full((tokens.shape[0],), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)
    raise ModelLoadError(f"Unsupported text pooling '{pool}' for prompt learning.")
