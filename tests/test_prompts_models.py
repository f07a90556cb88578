import pytest
import torch

from ueo_core.models import ModelLoadError, load_model
from ueo_core.prompts import PromptLearner, split_template
from ueo_core.train import norm_affine_params

CLASSES = ["dog", "tennis_racket", "giraffe", "alarm_clock"]


@pytest.mark.parametrize("name", ["ueo-tiny", "ueo-tiny-rn"])
def test_prompt_learner_equals_encode_text_before_training(name):
    lm = load_model(name, seed=1)
    pl = PromptLearner(lm, CLASSES)
    assert pl.prompts[1] == "a photo of a tennis racket."  # underscores -> spaces
    assert pl.n_ctx == 4  # "a photo of a"
    ref = lm.model.encode_text(lm.tokenizer(pl.prompts), normalize=True)
    assert torch.allclose(pl(), ref, atol=1e-5)


def test_truncated_context_equals_full_context(tiny):
    trunc = PromptLearner(tiny, CLASSES)
    full = PromptLearner(tiny, CLASSES, truncate=False)
    assert trunc.truncated and trunc.length < full.length == 77
    assert trunc.length == int(trunc.tokens.argmax(-1).max()) + 1
    # also with a changed (trained) context: the end-token feature never sees later positions
    with torch.no_grad():
        trunc.ctx.add_(torch.randn_like(trunc.ctx))
        full.ctx.copy_(trunc.ctx)
    assert torch.allclose(trunc(), full(), atol=1e-5)


def test_context_is_initialised_from_template_words(tiny):
    pl = PromptLearner(tiny, CLASSES, template="a sketch of a {} shape.")
    assert pl.ctx_init == "a sketch of a" and pl.prompts[0] == "a sketch of a dog shape."
    tok = tiny.tokenizer(["a sketch of a"])
    emb = tiny.model.token_embedding(tok)[0, 1:5]
    assert torch.equal(pl.ctx.data, emb)
    ref = tiny.model.encode_text(tiny.tokenizer(pl.prompts), normalize=True)
    assert torch.allclose(pl(), ref, atol=1e-5)


def test_bad_templates_are_refused():
    with pytest.raises(ValueError, match="exactly once"):
        split_template("a photo")
    with pytest.raises(ValueError, match="at least one word"):
        split_template("{} photo")


def test_norm_params_selected_by_type():
    vit = load_model("ueo-tiny").model.visual
    rn = load_model("ueo-tiny-rn").model.visual
    vit_names = [n for n, _ in norm_affine_params(vit)]
    rn_names = [n for n, _ in norm_affine_params(rn)]
    assert "ln_pre.weight" in vit_names and "transformer.resblocks.0.ln_1.bias" in vit_names
    assert all(".ln" in "." + n or n.startswith("ln") for n in vit_names)
    # the BatchNorm inside ResNet downsample branches is a norm layer too (the official name filter misses it)
    assert any("downsample" in n for n in rn_names) and "bn1.weight" in rn_names
    for _, p in norm_affine_params(rn):
        assert p.dim() == 1


def test_unknown_model_and_missing_checkpoint_give_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="Unknown model architecture"):
        load_model("no-such-model")
    with pytest.raises(ModelLoadError, match="Checkpoint file not found"):
        load_model("ueo-tiny", checkpoint=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="Could not load checkpoint"):
        load_model("ueo-tiny", checkpoint=bad)


def test_unavailable_weights_say_what_to_do():
    # HF_HUB_OFFLINE=1 (conftest): the download fails at once, as it does on an offline machine
    with pytest.raises(ModelLoadError, match="local checkpoint"):
        load_model("RN50", pretrained="openai")


def test_offline_zoo_error_is_immediate_complete_and_says_what_to_do(monkeypatch):
    """Hub unreachable and the weights not cached: a ModelLoadError before open_clip is asked (no minute of
    retries) that names the file, where to get it, and the architecture to load it into; the interface hints
    differ (flags for the CLI, clicks for the app) and the neutral message has no flag."""
    import ueo_core.models as models
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: "gaierror: [Errno -2] Name or service not known")
    monkeypatch.setattr(models, "_cached_hub_file", lambda *a: None)

    def never(*a, **kw):
        raise AssertionError("open_clip must not be asked for unreachable weights")
    monkeypatch.setattr(models.open_clip, "create_model_and_transforms", never)
    with pytest.raises(ModelLoadError) as info:
        load_model("ViT-B-32", pretrained="openai")
    err = info.value
    msg = str(err)
    assert "open_clip_pytorch_model.bin" in msg and "https://huggingface.co/timm/vit_base_patch32_clip_224.openai" in msg
    assert "architecture ViT-B-32-quickgelu" in msg and "Name or service not known" in msg
    assert "--" not in msg and msg.endswith("The built-in small CLIP works offline.")
    assert "--checkpoint" in err.for_audience("cli") and "--model ViT-B-32-quickgelu" in err.for_audience("cli")
    assert "'Local checkpoint file'" in err.for_audience("app") and "--" not in err.for_audience("app")
    # a tag trained without QuickGELU keeps its architecture
    src = models.weights_source("ViT-B-32", "laion2b_s34b_b79k")
    assert src["arch"] == "ViT-B-32" and src["repo"] and src["file"]


def test_zoo_download_reports_progress(monkeypatch, tmp_path):
    """When the hub answers, the weights are fetched with a progress callback (bytes done, bytes total)."""
    import huggingface_hub
    import ueo_core.models as models
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: None)
    monkeypatch.setattr(models, "_cached_hub_file", lambda *a: None)
    calls = []

    def fake_download(repo, filename, cache_dir=None, tqdm_class=None):
        bar = tqdm_class(total=300)
        for _ in range(3):
            bar.update(100)
        bar.close()
        calls.append((repo, filename))
        return str(tmp_path / filename)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    seen = []
    models.fetch_weights("RN50", "openai", progress=lambda d, t: seen.append((d, t)))
    assert calls == [("timm/resnet50_clip.openai", "open_clip_pytorch_model.bin")]
    assert seen == [(100, 300), (200, 300), (300, 300)]


def test_local_checkpoint_round_trip(tmp_path):
    a = load_model("ueo-tiny", seed=3)
    path = tmp_path / "tiny.pt"
    torch.save(a.model.state_dict(), path)
    b = load_model("ueo-tiny", checkpoint=path, seed=99)
    for (k, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), k
