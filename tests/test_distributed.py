"""N processes with batch B == one process with batch N*B: same UEO loss, same gradients (gloo, CPU)."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import ROOT
from helpers import make_folder

CLASSES = ["red", "green", "blue"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_step(world: int):
    """One UEO step through exactly the pieces the trainer uses under torchrun."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    from ueo_core.distributed import Encoders, gather, shard
    from ueo_core.methods.ueo import ueo_loss
    from ueo_core.models import load_model
    from ueo_core.prompts import PromptLearner
    from ueo_core.train import norm_affine_params

    loaded = load_model("ueo-tiny", seed=0)
    prompt = PromptLearner(loaded, CLASSES)
    params = {"prompt.ctx": prompt.ctx, **{f"visual.{n}": p for n, p in norm_affine_params(loaded.model.visual)}}
    for p in params.values():
        p.requires_grad_(True)
    enc = Encoders(loaded.model.visual, prompt)
    if world > 1:
        enc = DDP(enc)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 32, 32, generator=g)
    weights = torch.rand(8, generator=g) * 0.6 + 0.3
    idx = shard(torch.arange(8))
    feats, text = enc(images[idx])
    probs = torch.softmax(loaded.logit_scale * feats @ text.T, dim=1)
    loss, _ = ueo_loss(gather(probs), gather(weights[idx], differentiable=False), 1.0)
    loss.backward()
    return float(loss.detach()), {k: p.grad.detach().clone() for k, p in params.items()}


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    loss, grads = one_step(world)
    torch.save({"loss": loss, "grads": grads}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path, monkeypatch):
    single_loss, single_grads = one_step(1)
    # spawned workers re-run the parent's __main__ file; after an AppTest that is the last page it ran, which must
    # not execute in a worker: hide it (pytest's own entry point needs no re-running)
    monkeypatch.delattr(sys.modules["__main__"], "__file__", raising=False)
    mp.spawn(_worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    for r in range(2):
        res = torch.load(tmp_path / f"rank{r}.pt")
        assert res["loss"] == pytest.approx(single_loss, abs=1e-6)
        for k, g in single_grads.items():
            assert torch.allclose(res["grads"][k], g, atol=1e-6, rtol=1e-4), k
    assert single_grads["prompt.ctx"].abs().sum() > 0


def symmetric_folder(root):
    """Images that are their own mirror image: with crop scale (1, 1) the training augmentation (a resized crop of
    the whole image, then a random flip) gives the same tensor whichever random numbers a process draws, so one
    process and two can be compared on the same pixels."""
    from PIL import Image
    for c in CLASSES + ["yellow"]:
        for k, path in enumerate(sorted((make_folder(root, classes=(c,), seed=len(c)) / c).glob("*.png"))):
            a = np.asarray(Image.open(path)).copy()
            a[:, a.shape[1] // 2:] = a[:, : a.shape[1] // 2][:, ::-1]
            Image.fromarray(a).save(path)
    return root


def trainer_config(folder, batch_size):
    from ueo_core.config import RunConfig
    return RunConfig(data=str(folder), prior=CLASSES, model="ueo-tiny", pretrained=None, epochs=2,
                     batch_size=batch_size, lr_prompt=0.5, lr_visual=0.5, seed=3, crop_scale=(1.0, 1.0))


def run_trainer(folder, batch_size):
    """The real Trainer: its per-step losses (rank 0 reports them) and its trained parameters."""
    from ueo_core.train import Trainer
    losses, start = [], {}

    def on(e):
        if e.kind == "start":
            start.update({k: p.detach().clone() for k, p in tr.method.params(tr.view).items()})
        elif e.kind == "step":
            losses.append(e.data["loss"])
    tr = Trainer(trainer_config(folder, batch_size), listeners=[on])
    tr.run()
    return losses, {k: p.detach().clone() for k, p in tr.method.params(tr.view).items()}, start


def _trainer_worker(rank, world, port, folder, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    losses, params, _ = run_trainer(folder, 4)
    torch.save({"losses": losses, "params": params}, out / f"trainer{rank}.pt")
    dist.destroy_process_group()


def test_the_trainer_under_two_gloo_processes_equals_one_process_with_the_global_batch(tmp_path, monkeypatch):
    """Not the step rebuilt by hand: Trainer.run() itself, under 2 processes at batch 4 vs 1 process at batch 8,
    two epochs. Same global batches, same loss at every step, same trained prompt context and norm params."""
    folder = symmetric_folder(tmp_path / "data")
    single_losses, single_params, initial = run_trainer(folder, 8)
    monkeypatch.delattr(sys.modules["__main__"], "__file__", raising=False)  # (see the test above)
    mp.spawn(_trainer_worker, args=(2, free_port(), folder, tmp_path), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"trainer{r}.pt") for r in range(2))
    assert len(single_losses) == 2 * 3 and r0["losses"] == pytest.approx(single_losses, abs=1e-5)
    assert r1["losses"] == []  # only rank 0 talks to listeners
    for k, p in single_params.items():
        assert torch.allclose(r0["params"][k], p, atol=1e-5, rtol=1e-4), k
        assert torch.equal(r0["params"][k], r1["params"][k]), k  # DDP keeps the processes in step
    assert not torch.allclose(single_params["prompt.ctx"], initial["prompt.ctx"])  # they trained: compared after
    assert sum(not torch.allclose(single_params[k], initial[k]) for k in initial) > len(initial) / 2  # moving


@pytest.mark.slow
def test_cli_under_torchrun_with_two_processes(tmp_path):
    folder = make_folder(tmp_path / "data", classes=("red", "green", "blue", "yellow"))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), "-m", "ueo_core", "train", str(folder),
                          "--prior", "red,green,blue", "--model", "ueo-tiny", "--pretrained", "none",
                          "--epochs", "2", "--batch-size", "4", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    from ueo_core.runs import RunFolder
    steps = RunFolder(out).read_jsonl("steps.jsonl")
    assert len(steps) == 2 * 3 and all(s["batch"] == 8 for s in steps)  # 24 images / global batch 8
    assert (out / "metrics.json").exists()
