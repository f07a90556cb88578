import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ueo_core.config import RunConfig
from ueo_core.data import DataError, load_folder
from ueo_core.models import load_model
from ueo_core.runs import RunFolder, load_checkpoint
from ueo_core.train import Trainer, norm_affine_params

from conftest import ROOT
from helpers import assert_close_tree


def cfg_for(folder, tmp_path, **kw):
    base = dict(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None, epochs=2, batch_size=8, lr_prompt=0.05,
                lr_visual=0.05, seed=7, run_dir=str(tmp_path / "run"))
    base.update(kw)
    return RunConfig(**base)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["ueo-tiny", "ueo-tiny-rn"])
def test_one_step_changes_exactly_prompt_context_and_norm_affine(folder, tmp_path, name):
    loaded = load_model(name, seed=0)
    before = snapshot(loaded.model)
    tr = Trainer(cfg_for(folder, tmp_path, epochs=1, batch_size=24, run_dir=None), loaded=loaded)
    seen = {}

    def on(e):
        if e.kind == "start":
            seen["ctx0"] = tr.prompt.ctx.detach().clone()
        if e.kind == "step":  # right after optimizer.step(): .grad holds this step's gradients
            steps.append(e)
            named = [("prompt.ctx", tr.prompt.ctx)] + list(loaded.model.named_parameters())
            grads.update({n: p.grad.clone() for n, p in named if p.grad is not None})
    grads, steps = {}, []
    tr.add_listener(on)
    tr.run()
    ctx0 = seen["ctx0"]
    assert len(steps) == 1
    norm_names = {f"visual.{n}" for n, _ in norm_affine_params(loaded.model.visual)}
    assert set(grads) == {"prompt.ctx"} | norm_names
    # (open_clip zero-initialises each ResNet block's last BatchNorm weight, so the earlier norms in that branch
    # get exactly zero gradient at the first step; every parameter with a non-zero gradient must move)
    moving = {n for n, g in grads.items() if g.abs().sum() > 0}
    assert "prompt.ctx" in moving and len(moving) > len(grads) / 2
    assert not torch.equal(tr.prompt.ctx.detach(), ctx0)
    after = snapshot(loaded.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == moving - {"prompt.ctx"}  # nothing else moved (BatchNorm running stats included)
    assert not any("running_" in k or "num_batches" in k for k in changed)  # BatchNorm statistics stay frozen
    assert all(not p.requires_grad for p in loaded.model.parameters())  # frozen again after the run


def test_two_epoch_ueo_run_writes_every_file_and_resumes(folder, tmp_path):
    events = []
    cfg = cfg_for(folder, tmp_path)
    result = Trainer(cfg, listeners=[events.append]).run()
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("step") == 2 * 3 and kinds.count("epoch") == 3 and kinds.count("checkpoint") == 2
    step = next(e for e in events if e.kind == "step").data
    for key in ("loss", "cond_entropy", "marginal_entropy", "lr", "eta", "loss_cond", "loss_marginal"):
        assert key in step
    ep = [e for e in events if e.kind == "epoch"][-1].data
    assert sum(ep["histogram"]["all"]) == 24 and sum(ep["histogram"]["unknown"]) == 6
    run = RunFolder(cfg.run_dir)
    for name in ("config.json", "steps.jsonl", "epochs.jsonl", "metrics.json", "predictions.csv",
                 "checkpoint.safetensors", "report.md", "skipped.txt"):
        assert (run.path / name).exists(), name
    assert len(run.read_jsonl("steps.jsonl")) == 6 and len(run.read_jsonl("epochs.jsonl")) == 3
    phases = [e.data["phase"] for e in events if e.kind == "progress"]
    assert "evaluating zero-shot" in phases and "evaluating epoch 2" in phases
    assert run.read_json("status.json") == {"phase": "evaluating epoch 2", "done": 24, "total": 24}
    with open(run.path / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and set(rows[0]) >= {"path", "predicted_class", "confidence", "entropy"}
    tensors, meta = load_checkpoint(run.path)
    assert meta["epoch"] == 2 and meta["classes"] == ["red", "green", "blue"]
    assert set(tensors) >= {"prompt.ctx", "ueo_weights"} and any(k.startswith("visual.") for k in tensors)
    assert (run.path / "checkpoint.safetensors").stat().st_size < 200_000  # trainable params only: small
    init = load_model("ueo-tiny", seed=cfg.seed)
    from ueo_core.prompts import PromptLearner
    assert not torch.allclose(tensors["prompt.ctx"], PromptLearner(init, cfg.prior).ctx.detach())

    # resume: 1 epoch, then continue to 2 == the uninterrupted run above
    cfg1 = cfg_for(folder, tmp_path, epochs=2, run_dir=str(tmp_path / "r1"))
    tr1 = Trainer(cfg1)
    tr1.add_listener(lambda e: tr1.cancel() if e.kind == "checkpoint" and e.data["epoch"] == 1 else None)
    assert tr1.run().status == "cancelled"
    assert load_checkpoint(tmp_path / "r1")[1]["epoch"] == 1
    resumed = Trainer(cfg1.replace(resume=str(tmp_path / "r1"))).run()
    t2, _ = load_checkpoint(tmp_path / "r1")
    for k in tensors:
        assert torch.allclose(tensors[k], t2[k], atol=1e-6), k
    assert resumed.metrics["gacc"] == pytest.approx(result.metrics["gacc"])
    assert_close_tree(resumed.metrics_before, result.metrics_before, nan_ok=True)  # nested: class_shares, …
    r1 = RunFolder(tmp_path / "r1")
    assert [r["epoch"] for r in r1.read_jsonl("epochs.jsonl")] == [0, 1, 2]
    assert len(r1.read_jsonl("steps.jsonl")) == 6


def test_fixed_seed_repeats_exactly(folder, tmp_path):
    a = Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=1)).run()
    b = Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=1)).run()
    assert np.array_equal(a.probs, b.probs)


def test_cancel_stops_between_steps(folder, tmp_path):
    tr = Trainer(cfg_for(folder, tmp_path, epochs=50, batch_size=4))
    steps = []

    def on(e):
        if e.kind == "step":
            steps.append(e)
            if len(steps) == 3:
                tr.cancel()
    tr.add_listener(on)
    result = tr.run()
    assert result.status == "cancelled" and len(steps) == 3
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_stopped_run_keeps_its_last_checkpoint_explorable(folder, tmp_path):
    """Stopped after epoch 1 of 3: metrics.json holds epoch 1's evaluation (marked stopped_at_epoch), the
    predictions are that evaluation's, and the run is listed (Explore, Inspect) but not as a lesson result.
    Stopped inside epoch 1: nothing is kept as a result."""
    from ueo_core.analysis import list_runs, read_predictions
    from ueo_core.runs import run_status
    tr = Trainer(cfg_for(folder, tmp_path, epochs=3, run_dir=str(tmp_path / "runs" / "a")))
    evals = {}
    tr.add_listener(lambda e: evals.__setitem__(e.data["epoch"], e.data["probs"]) if e.kind == "epoch" else None)
    tr.add_listener(lambda e: tr.cancel() if e.kind == "checkpoint" and e.data["epoch"] == 1 else None)
    assert tr.run().status == "cancelled"
    run = RunFolder(tmp_path / "runs" / "a")
    m = run.read_json("metrics.json")
    assert m["stopped_at_epoch"] == 1 and m["epochs_planned"] == 3
    assert m["after"] == [e for e in run.read_jsonl("epochs.jsonl") if e["epoch"] == 1][0]["metrics"]
    preds = read_predictions(run.path)
    assert np.allclose(preds.confidence, evals[1].max(axis=1), atol=1e-6)
    assert load_checkpoint(run.path)[1]["epoch"] == 1
    assert run_status(run.path) == ("stopped", "stopped at epoch 1 of 3")
    assert [p.name for p in list_runs(tmp_path / "runs")] == ["a"]

    tr = Trainer(cfg_for(folder, tmp_path, epochs=3, batch_size=4, run_dir=str(tmp_path / "runs" / "b")))
    tr.add_listener(lambda e: tr.cancel() if e.kind == "step" else None)
    assert tr.run().status == "cancelled"
    assert not (tmp_path / "runs" / "b" / "metrics.json").exists()
    assert run_status(tmp_path / "runs" / "b")[0] == "stopped-empty"
    assert run_status(tmp_path / "runs" / "a", alive=True)[1] == "training… epoch 2 of 3"


def test_a_failed_run_writes_its_plain_error_for_the_app(folder, tmp_path):
    """The app reads a run's failure from its folder (the run is a Ray job elsewhere): error.json holds the same
    plain sentence as the 'error' event, never a traceback."""
    events = []
    cfg = cfg_for(folder, tmp_path, checkpoint=str(tmp_path / "missing.safetensors"))
    with pytest.raises(Exception):
        Trainer(cfg, listeners=[events.append]).run()
    assert events[-1].kind == "error"
    err = RunFolder(cfg.run_dir).read_json("error.json")
    assert err == {"message": events[-1].data["message"]} and "not found" in err["message"].lower()
    assert "Traceback" not in err["message"]


def test_zero_shot_does_not_train_and_oracle_needs_truth(folder, tmp_path):
    events = []
    r = Trainer(cfg_for(folder, tmp_path, method="zero_shot"), listeners=[events.append]).run()
    assert r.status == "done" and not any(e.kind == "step" for e in events)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in list((folder / "red").iterdir())[:3]:
        (flat / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DataError, match="ground truth"):
        Trainer(cfg_for(flat, tmp_path, method="oracle", run_dir=None)).run()


@pytest.mark.parametrize("method", ["entropy", "im", "oracle", "zero_shot"])
def test_baselines_train(folder, tmp_path, method):
    """Each baseline optimises its own objective: every logged step's loss is that objective of the step's batch
    (entropy: the mean entropy; IM: mean entropy minus the entropy of the mean; oracle: UEO with weights 1 for
    known and 1e-3 for unknown images, so not IM), the parameters move, and zero-shot changes nothing."""
    tr = Trainer(cfg_for(folder, tmp_path, method=method, epochs=1, run_dir=None))
    steps = []
    tr.add_listener(lambda e: steps.append(e.data) if e.kind == "step" else None)
    r = tr.run()
    assert r.status == "done" and 0.0 <= r.metrics["auroc"] <= 1.0
    if method == "zero_shot":
        assert not steps and r.metrics["auroc"] == pytest.approx(r.metrics_before["auroc"])
        return
    assert len(steps) == 3  # 24 images, batch 8
    for s in steps:
        im = s["cond_entropy"] - s["marginal_entropy"]
        if method == "entropy":
            assert s["loss"] == pytest.approx(s["cond_entropy"], abs=1e-5)
        elif method == "im":
            assert s["loss"] == pytest.approx(im, abs=1e-5)
        else:
            assert abs(s["loss"] - im) > 1e-4  # the truth-weighted objective is not IM


def test_weight_temperature_option(folder, tmp_path):
    tr = Trainer(cfg_for(folder, tmp_path, epochs=1, run_dir=None, options={"weight_temperature": 1.0}))
    tr.run()
    assert (tr.ctx.weights - 1 / 3).abs().max() < 0.01  # unscaled cosines: near-uniform weights (official code)
    tr2 = Trainer(cfg_for(folder, tmp_path, epochs=1, run_dir=None))
    tr2.run()
    assert tr2.ctx.weights.std() > tr.ctx.weights.std()


def test_cli_train_eval_embed(folder, tmp_path):
    run = tmp_path / "cli-run"
    env_cmd = [sys.executable, "-m", "ueo_core"]
    out = subprocess.run(env_cmd + ["train", str(folder), "--prior", "red,green,blue", "--epochs", "1",
                                    "--batch-size", "8", "--out", str(run), "--model", "ueo-tiny", "--pretrained", "none"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "run folder" in out.stdout and (run / "metrics.json").exists()
    m = json.loads((run / "metrics.json").read_text())
    assert set(m) == {"before", "after", "seconds", "protocol"} and m["protocol"] == "studio"
    ev = subprocess.run(env_cmd + ["eval", str(folder), "--run", str(run), "--out", str(tmp_path / "ev")],
                        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ev.returncode == 0, ev.stderr
    m2 = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m2["after"]["gacc"] == pytest.approx(m["after"]["gacc"])  # the adapted parameters were loaded
    em = subprocess.run(env_cmd + ["embed", str(folder), "--run", str(run), "--output", str(tmp_path / "e.csv"),
                                   "--model", "ueo-tiny", "--pretrained", "none"],
                        capture_output=True, text=True, cwd=ROOT, timeout=300,
                        env={**__import__("os").environ, "UEO_CACHE": str(tmp_path / "cache")})
    assert em.returncode == 0, em.stderr
    with open(tmp_path / "e.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and {"before_x", "after_y"} <= set(rows[0])
    bad = subprocess.run(env_cmd + ["train", str(tmp_path / "nowhere")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "Folder not found" in bad.stderr and "Traceback" not in bad.stderr
    helptext = subprocess.run(env_cmd + ["train", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert "--weight-temperature" in helptext.stdout and "--lr-visual" in helptext.stdout


def test_decoded_cache_decodes_each_file_once_per_run(folder, tmp_path, monkeypatch):
    import ueo_core.data as data_mod
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))  # an empty feature store
    calls = []
    real = data_mod.load_rgb
    monkeypatch.setattr(data_mod, "load_rgb", lambda p, min_side=None: calls.append(p) or real(p, min_side))
    a = Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=2)).run()
    # each file decoded once for the evaluations (at the model's input, as the feature store's passes decode) and
    # once for training (larger, for the crops); two epochs and two more evaluations reuse them
    assert len(calls) == 24 * 2
    calls.clear()
    b = Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=2, cache_images=False)).run()
    # no decoded cache: 2 training epochs + the epoch-1 evaluation decode; the zero-shot pass and the last
    # evaluation (the same tower as the first run's, exactly) come from the feature store
    assert len(calls) == 24 * 3
    assert np.array_equal(a.probs, b.probs)  # exact: same results with and without the caches


def test_prompt_only_fast_mode_trains_only_the_context(folder, tmp_path, monkeypatch):
    import ueo_core.train.features as trainer_mod
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))  # an empty feature store
    loaded = load_model("ueo-tiny", seed=0)
    before = snapshot(loaded.model)
    passes = []
    real = trainer_mod.encode_images
    monkeypatch.setattr(trainer_mod, "encode_images", lambda *a, **k: passes.append(1) or real(*a, **k))
    events = []
    tr = Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=3, fast_mode="prompt_only", fast_views=2),
                 loaded=loaded, listeners=[events.append])
    r = tr.run()
    after = snapshot(loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the image tower is untouched
    assert len(passes) == 1 + 2  # one evaluation pass (features reused every epoch) + one per cached view
    assert tr.features.view_feats.shape[:2] == (2, 24)
    assert sum(e.kind == "step" for e in events) == 9 and any(e.kind == "progress" and e.data["phase"].startswith("caching view") for e in events)
    assert r.metrics["mean_entropy"] != r.metrics_before["mean_entropy"]  # the prompt context did learn
    # each step reads a random one of the cached views of each image (seeded by the epoch), not always the first
    views = [torch.cat([b.view for b in tr.batches.epoch(e)]) for e in (1, 2)]
    assert all(set(v.tolist()) == {0, 1} for v in views) and not torch.equal(views[0], views[1])
    # the next run with the same settings (a lesson's next method, a rerun) runs the image tower not once: its
    # views are read from disk and its evaluation features from the feature store
    passes.clear()
    tr2 = Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=3, fast_mode="prompt_only", fast_views=2,
                          method="entropy"), loaded=loaded)
    tr2.run()
    assert passes == [] and torch.equal(tr2.features.view_feats, tr.features.view_feats)
    with pytest.raises(ValueError, match="fast_mode.*prompt_only or last_blocks"):
        Trainer(cfg_for(folder, tmp_path, run_dir=None, fast_mode="turbo")).run()


def test_fast_mode_is_proposed_only_for_large_image_towers_on_cpu():
    from studio.advice import prefers_fast_mode
    assert not prefers_fast_mode(load_model("ueo-tiny"))
    big = load_model("ViT-B-32", device="cpu")  # random init: 88 M image-tower parameters
    assert prefers_fast_mode(big)


def test_estimate_run_times_a_real_step_and_leaves_the_model_untouched(folder):
    from ueo_core.train import estimate_run
    loaded = load_model("ueo-tiny", seed=0)
    before = snapshot(loaded.model)
    cfg = RunConfig(data=str(folder), prior=["red", "green"], model="ueo-tiny", epochs=3, batch_size=8)
    est = estimate_run(cfg, loaded, load_folder(folder, prior=["red", "green"]))
    assert est["steps"] == 3 * 3 and est["seconds_per_step"] > 0 and est["minutes"] > 0
    after = snapshot(loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for p in loaded.model.parameters())


def test_estimate_run_times_the_chosen_methods_own_step(folder, tmp_path, monkeypatch):
    """The estimate takes the step the loop takes: CLIPood's loss on one batch from each labelled source (not a
    UEO step on the target), and CLIPood's steps (epochs x iters_per_epoch, not passes over the target)."""
    from ueo_core.methods import METHODS
    from ueo_core.train import estimate_run
    from helpers import make_folder
    src = make_folder(tmp_path / "src", classes=("red", "green"), per_class=5, seed=1)
    seen = []
    for name in ("clipood", "ueo"):
        real = type(METHODS[name]).loss
        monkeypatch.setattr(type(METHODS[name]), "loss",
                            lambda self, step, ctx, real=real, name=name: seen.append((name, len(step.probs)))
                            or real(self, step, ctx))
    loaded = load_model("ueo-tiny", seed=0)
    before = snapshot(loaded.model)
    ims = load_folder(folder, prior=["red", "green"])
    cfg = RunConfig(method="clipood", data=str(folder), prior=ims.classes, source=[str(src), str(src)],
                    model="ueo-tiny", epochs=2, batch_size=3, options={"iters_per_epoch": 7})
    est = estimate_run(cfg, loaded, ims)
    assert seen == [("clipood", 2 * 3)]  # one step, one batch of 3 from each of the two sources
    assert est["method"] == "clipood" and est["steps"] == 2 * 7 and est["seconds_per_step"] > 0
    assert all(torch.equal(before[k], after) for k, after in snapshot(loaded.model).items())
    assert all(not p.requires_grad and p.grad is None for p in loaded.model.parameters())
    seen.clear()
    est = estimate_run(cfg.replace(method="ueo", batch_size=5), loaded, ims)
    assert seen == [("ueo", 5)] and est["steps"] == 2 * 5  # UEO: one pass over the 24 target images an epoch


def test_out_of_memory_message_suggests_a_smaller_batch(folder, tmp_path):
    from ueo_core.errors import explain
    cfg = cfg_for(folder, tmp_path, batch_size=64)
    Trainer(cfg.replace(epochs=1)).run()  # leaves a checkpoint in the run folder
    msg = explain(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), batch_size=64,
                  checkpoint=RunFolder(cfg.run_dir).checkpoint_path)
    assert "batch size 64" in msg and "32" in msg and "checkpoint is kept" in msg
    assert msg.startswith("The GPU ran out of memory")
    for err in (MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                                            "not enough memory: you tried to allocate 8589934592 bytes.")):
        msg = explain(err, batch_size=64)  # the CPU's out-of-memory (MemoryError says nothing by itself)
        assert msg.startswith("The computer ran out of memory at batch size 64") and "32" in msg, msg


def test_step_statistics_read_back_in_bulk_are_each_steps_own(folder, tmp_path):
    """sync_every=4 reads the statistics of four steps back at once. What is logged for each step must still be that
    step's: equal to an independent implementation (bench/reference_ueo.py) step by step, not only to the same
    code at another setting. And the read-back really is in bulk: steps 1-4 are announced together, after step 4."""
    sys.path.insert(0, str(ROOT / "bench"))
    from reference_ueo import run_reference
    ims = load_folder(folder, prior=["red", "green", "blue"])
    ref = run_reference(load_model("ueo-tiny", seed=0), ims.files, ims.classes, epochs=2, batch_size=4, lr=0.05,
                        seed=7, weight_temperature=1.0)
    logged, ctx_when_told = [], []

    def on(e):
        if e.kind == "step":
            logged.append(e.data)
            ctx_when_told.append(tr.prompt.ctx.detach().clone())
    tr = Trainer(cfg_for(folder, tmp_path, run_dir=None, sync_every=4, batch_size=4, options={"weight_temperature": 1.0}),
                 loaded=load_model("ueo-tiny", seed=0), image_set=ims, listeners=[on])
    tr.run()
    assert [s["step"] for s in logged] == list(range(1, 13)) and len(ref["losses"]) == 12
    assert all(isinstance(s["loss"], float) and isinstance(s["cond_entropy"], float) for s in logged)
    # (two float32 implementations drift apart by ~2e-4 over 12 steps at batch 4; a step's loss logged as another
    # step's is off by 1e-2 or more)
    np.testing.assert_allclose([s["loss"] for s in logged], ref["losses"], rtol=1e-3, atol=5e-4)
    assert min(abs(a - b) for a, b in zip(ref["losses"], ref["losses"][1:])) > 5e-3
    # told together, after the group's last step (and at each epoch's end: 6 steps an epoch)
    groups = [range(0, 4), range(4, 6), range(6, 10), range(10, 12)]
    for group in groups:
        assert all(torch.equal(ctx_when_told[k], ctx_when_told[group[-1]]) for k in group)
    assert all(not torch.equal(ctx_when_told[a[-1]], ctx_when_told[b[0]]) for a, b in zip(groups, groups[1:]))


def test_last_blocks_fast_mode_trains_only_the_last_stage_norms(folder, tmp_path):
    loaded = load_model("ueo-tiny-rn", seed=0)
    with torch.no_grad():  # open_clip zero-initialises each block's last BN weight; give the path a gradient
        for m in loaded.model.visual.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
    before = snapshot(loaded.model)
    tr = Trainer(cfg_for(folder, tmp_path, epochs=2, fast_mode="last_blocks", fast_views=2), loaded=loaded)
    r = tr.run()
    after = snapshot(loaded.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.layer4.") and ("bn" in k or "downsample.1" in k) for k in changed)
    assert not any("running_" in k for k in changed)
    assert tr.features.view_feats.shape[:2] == (2, 24) and tr.features.view_feats.dim() == 5  # (views, N, C, H, W) of layer3
    tensors, _ = load_checkpoint(tmp_path / "run")
    assert all(k == "prompt.ctx" or k == "ueo_weights" or k.startswith("visual.layer4.") for k in tensors)
    assert r.status == "done"
    with pytest.raises(ValueError, match="ResNet image towers"):
        Trainer(cfg_for(folder, tmp_path, run_dir=None, fast_mode="last_blocks")).run()  # ViT tiny model


def test_fast_blocks_limit_is_one_number_for_validate_and_the_trainer(folder, tmp_path):
    """validate() once let fast_blocks=4 through and the trainer then refused it: both now take the same limit,
    and the largest value validate() accepts trains."""
    from ueo_core.config import FAST_BLOCKS_MAX
    assert FAST_BLOCKS_MAX == 3  # 4 would leave no frozen stage to cache
    with pytest.raises(ValueError, match="fast_blocks"):
        cfg_for(folder, tmp_path, fast_mode="last_blocks", fast_blocks=FAST_BLOCKS_MAX + 1).validate()
    cfg = cfg_for(folder, tmp_path, epochs=1, fast_mode="last_blocks", fast_views=1,
                  fast_blocks=FAST_BLOCKS_MAX).validate()
    loaded = load_model("ueo-tiny-rn", seed=0)
    tr = Trainer(cfg, loaded=loaded)
    assert tr.run().status == "done"
    trained = {k.split(".")[0] for k, _ in tr.visual_params}
    assert trained == {f"layer{i}" for i in range(5 - FAST_BLOCKS_MAX, 5)}


def test_epoch_records_carry_class_shares_and_collapse(tmp_path, monkeypatch):
    """Every epoch record (and metrics.json's after) says how predictions spread over classes and whether they
    collapsed: entropy minimisation on the default Shapes domain with the quick settings does, UEO does not."""
    import json
    from studio.advice import suggested_settings
    from ueo_core.models import BUILTIN_MODEL
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    q = suggested_settings(BUILTIN_MODEL)
    out = {}
    for method in ("entropy", "ueo"):
        cfg = RunConfig(data="shapes:sketch", method=method, epochs=q["epochs"], batch_size=q["batch_size"],
                        lr_prompt=q["lr_prompt"], lr_visual=q["lr_visual"], run_dir=str(tmp_path / method))
        Trainer(cfg).run()
        epochs = [json.loads(ln) for ln in (tmp_path / method / "epochs.jsonl").read_text().splitlines()]
        assert all(abs(sum(e["class_shares"]) - 1) < 1e-9 and isinstance(e["collapsed"], bool) for e in epochs)
        out[method] = (epochs, json.loads((tmp_path / method / "metrics.json").read_text())["after"])
    assert not out["entropy"][0][0]["collapsed"] and out["entropy"][1]["collapsed"]  # zero-shot fine, end collapsed
    assert not out["ueo"][1]["collapsed"]


def test_zero_shot_predictions_are_kept_for_the_before_views(tmp_path, folder):
    """predictions_zero_shot.csv holds the zero-shot pass: its confidences give the zero-shot AUROC of metrics.json,
    and they differ from the adapted predictions.csv."""
    from sklearn.metrics import roc_auc_score
    from ueo_core.analysis import read_predictions
    from ueo_core.runs import ZERO_SHOT_PREDICTIONS
    cfg = RunConfig(data=str(folder), prior=["red", "green"], model="ueo-tiny", pretrained=None, epochs=2,
                    batch_size=8, lr_prompt=0.5, lr_visual=0.5, run_dir=str(tmp_path / "run"))
    Trainer(cfg).run()
    zs, after = read_predictions(tmp_path / "run", ZERO_SHOT_PREDICTIONS), read_predictions(tmp_path / "run")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert roc_auc_score(zs.truth >= 0, zs.confidence) == pytest.approx(m["before"]["auroc"], abs=1e-5)
    assert roc_auc_score(after.truth >= 0, after.confidence) == pytest.approx(m["after"]["auroc"], abs=1e-5)
    assert not np.allclose(zs.confidence, after.confidence)


def test_learning_rate_schedule_and_plain_sgd_update(folder, tmp_path):
    """The official optimiser: SGD without momentum or weight decay, cosine decay per step. Inside a real run,
    every step's learning rate is base * (1 + cos(pi k / T)) / 2, and every parameter moves by exactly -lr * grad
    (momentum or weight decay would add to it)."""
    import math
    tr = Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=2, batch_size=8, lr_prompt=0.05, lr_visual=0.02))
    seen = {"prev": None}
    lrs, checked = [], []

    def on(ev):
        params = {"prompt": tr.prompt.ctx, **{n: p for n, p in tr.visual_params}}
        if ev.kind == "start":
            seen["prev"] = {n: p.detach().clone() for n, p in params.items()}
        elif ev.kind == "step":
            lrs.append(ev.data["lr"])
            k = ev.data["step"] - 1
            for n, p in params.items():
                base = 0.05 if n == "prompt" else 0.02
                lr = base * (1 + math.cos(math.pi * k / ev.data["total_steps"])) / 2
                if p.grad is not None:
                    assert torch.allclose(p.detach(), seen["prev"][n] - lr * p.grad, atol=1e-7), (n, k)
                    checked.append(n)
            seen["prev"] = {n: p.detach().clone() for n, p in params.items()}
    tr.add_listener(on)
    assert tr.run().status == "done"
    total = len(lrs)
    assert total == 6 and lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * k / total)) / 2 for k in range(total)])
    assert "prompt" in checked and len(set(checked)) > 2


def test_the_trainer_puts_the_model_in_eval_mode(folder, tmp_path):
    """A model handed over in train mode is switched to eval: BatchNorm running statistics never change (the
    official code's model.eval())."""
    loaded = load_model("ueo-tiny-rn", seed=0)
    loaded.model.train()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items() if "running_" in k}
    Trainer(cfg_for(folder, tmp_path, run_dir=None, epochs=1), loaded=loaded).run()
    after = loaded.model.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not loaded.model.training


@pytest.mark.parametrize("protocol", ["studio", "official"])
def test_trainer_losses_equal_the_reference_loop_step_by_step(folder, protocol):
    """bench/reference_ueo.py is a straight re-implementation of demo.py's loop (full-context prompt, no caching,
    one SGD group per parameter, cosine per step). On the same batches the trainer's loss equals it at every step
    of two epochs: the objective, the weights, the training scale, the augmentation, the learning rate at step k."""
    sys.path.insert(0, str(ROOT / "bench"))
    from reference_ueo import run_reference
    ims = load_folder(folder, prior=["red", "green", "blue"])
    official = protocol == "official"
    ref = run_reference(load_model("ueo-tiny", seed=0), ims.files, ims.classes, epochs=2, batch_size=8, lr=0.5,
                        seed=7, weight_temperature=1.0, train_scale=100.0 if official else None)
    ours = []
    cfg = RunConfig(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None, epochs=2,
                    batch_size=8, lr_prompt=0.5, lr_visual=0.5, seed=7, protocol=protocol,
                    options={"weight_temperature": None if official else 1.0})  # demo.py's weights: unscaled cosines
    Trainer(cfg, loaded=load_model("ueo-tiny", seed=0), image_set=ims,
            listeners=[lambda e: ours.append(e.data["loss"]) if e.kind == "step" else None]).run()
    assert len(ours) == len(ref["losses"]) == 2 * 3  # 24 images / 8, two epochs
    assert len(set(np.round(ref["losses"], 4))) == len(ref["losses"])  # the loss moves: the steps are compared
    np.testing.assert_allclose(ours, ref["losses"], rtol=1e-4, atol=1e-5)
