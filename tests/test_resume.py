"""Checkpoints carry the optimizer's state (``optimizer.pt``, ``train/checkpoint.py``): a run stopped after an epoch
and resumed ends exactly where the uninterrupted run ends, for every method: CLIPood (AdamW and a moving average),
UEO (plain SGD), and a UEO with momentum (an optimizer with state). Older checkpoints, without the file, still
resume where that is exact (plain SGD), and are refused in words where it is not."""
import pickle

import pytest
import torch

from ueo_core.config import RunConfig
from ueo_core.data import DataError
from ueo_core.runs import RunFolder, load_checkpoint
from ueo_core.train import Trainer
from ueo_core.train import checkpoint as ck

from helpers import make_folder

PRIOR = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-data")
    src = make_folder(root / "src", classes=("red", "green", "blue", "yellow"), per_class=4, seed=1)
    tgt = make_folder(root / "tgt", classes=("red", "green", "blue", "yellow"), per_class=4, seed=2)
    return src, tgt


def clipood_cfg(domains, run_dir, **kw):
    src, tgt = domains
    base = dict(method="clipood", data=str(tgt), source=[str(src)], prior=PRIOR, model="ueo-tiny", pretrained=None,
                epochs=2, batch_size=4, lr_visual=1e-3, seed=3, run_dir=str(run_dir), options={"iters_per_epoch": 3})
    return RunConfig(**{**base, **kw})


def ueo_cfg(domains, run_dir, **kw):
    base = dict(method="ueo", data=str(domains[1]), prior=PRIOR, model="ueo-tiny", pretrained=None, epochs=2,
                batch_size=8, lr_prompt=0.05, lr_visual=0.05, seed=7, run_dir=str(run_dir))
    return RunConfig(**{**base, **kw})


def stopped_after_epoch_1(cfg) -> RunFolder:
    """The run, stopped right after its epoch-1 checkpoint (as Stop, or a killed worker between epochs, leaves it)."""
    tr = Trainer(cfg)
    tr.add_listener(lambda e: tr.cancel() if e.kind == "checkpoint" and e.data["epoch"] == 1 else None)
    assert tr.run().status == "cancelled"
    return RunFolder(cfg.run_dir)


def assert_same_run(a: RunFolder, b: RunFolder) -> None:
    """The same parameters (bit for bit), the same steps (losses, rates) and the same metrics."""
    ta, ma = load_checkpoint(a.path)
    tb, mb = load_checkpoint(b.path)
    assert set(ta) == set(tb) and ma["epoch"] == mb["epoch"]
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    keys = ("epoch", "loss", "lr")
    assert [[s[k] for k in keys] for s in a.read_jsonl("steps.jsonl")] == \
        [[s[k] for k in keys] for s in b.read_jsonl("steps.jsonl")]
    metrics = lambda f: {k: v for k, v in f.read_json("metrics.json").items() if k != "seconds"}  # noqa: E731
    assert metrics(a) == metrics(b)


@pytest.fixture(scope="module")
def clipood_runs(domains, tmp_path_factory):
    """An uninterrupted 2-epoch CLIPood run, and the same run stopped after epoch 1 (a copy of its folder kept)."""
    import shutil
    root = tmp_path_factory.mktemp("clipood-runs")
    whole = Trainer(clipood_cfg(domains, root / "whole")).run()
    assert whole.status == "done"
    stopped = stopped_after_epoch_1(clipood_cfg(domains, root / "stopped"))
    shutil.copytree(stopped.path, root / "stopped-copy")
    return RunFolder(root / "whole"), root / "stopped-copy"


def fresh_copy(src, dest):
    import shutil
    shutil.copytree(src, dest)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


def test_clipood_stopped_after_epoch_1_and_resumed_equals_the_uninterrupted_run(domains, clipood_runs, tmp_path):
    whole, stopped = clipood_runs
    run = fresh_copy(stopped, tmp_path / "run")
    saved = torch.load(run / ck.OPTIMIZER, weights_only=True)  # tensors and plain containers only
    assert saved["epoch"] == load_checkpoint(run)[1]["epoch"] == 1
    assert saved["optimizer"]["state"] and saved["averager"]["t"] == 3  # AdamW's moments; the average of 3 steps
    resumed = Trainer(clipood_cfg(domains, run, resume=str(run))).run()
    assert resumed.status == "done"
    assert_same_run(RunFolder(run), whole)
    assert [e["epoch"] for e in RunFolder(run).read_jsonl("epochs.jsonl")] == \
        [e["epoch"] for e in whole.read_jsonl("epochs.jsonl")]  # the logs read as one run: 0, 1, 2 and the average
    assert not (run / ck.OPTIMIZER).exists() and not (whole.path / ck.OPTIMIZER).exists()  # a finished run drops it


def test_clipood_is_refused_in_words_where_it_cannot_go_on_exactly(domains, clipood_runs, tmp_path):
    """An older run (no optimizer.pt), a file of another epoch, or other settings: no silent inexact resume."""
    _, stopped = clipood_runs
    old = fresh_copy(stopped, tmp_path / "old")
    (old / ck.OPTIMIZER).unlink()
    with pytest.raises(DataError, match=r"cannot continue exactly from epoch 1: its folder holds no optimizer\.pt"):
        Trainer(clipood_cfg(domains, old, resume=str(old))).run()
    longer = fresh_copy(stopped, tmp_path / "longer")
    with pytest.raises(DataError, match=r"other settings \(steps in all: 6, now 9; moving average\).*own settings"):
        Trainer(clipood_cfg(domains, longer, epochs=3, resume=str(longer))).run()
    torn = fresh_copy(stopped, tmp_path / "torn")  # cut off between the checkpoint and its optimizer.pt
    state = torch.load(torn / ck.OPTIMIZER, weights_only=True)
    torch.save({**state, "epoch": 0}, torn / ck.OPTIMIZER)
    with pytest.raises(DataError, match="is of epoch 0, its checkpoint.safetensors of epoch 1"):
        Trainer(clipood_cfg(domains, torn, resume=str(torn))).run()


def test_ueo_resumes_exactly_with_its_saved_state_and_from_an_older_checkpoint(domains, tmp_path, monkeypatch):
    whole = Trainer(ueo_cfg(domains, tmp_path / "whole")).run()
    stopped = stopped_after_epoch_1(ueo_cfg(domains, tmp_path / "stopped"))
    older = fresh_copy(stopped.path, tmp_path / "older")
    (older / ck.OPTIMIZER).unlink()  # a run saved before optimizer states were kept
    forwarded = []
    real = ck.fast_forward
    monkeypatch.setattr(ck, "fast_forward", lambda o, s, n: forwarded.append(n) or real(o, s, n))
    assert Trainer(ueo_cfg(domains, stopped.path, resume=str(stopped.path))).run().status == "done"
    assert forwarded == []  # the saved schedule was loaded, not stepped forward
    assert_same_run(stopped, RunFolder(whole.run_dir))
    assert Trainer(ueo_cfg(domains, older, resume=str(older))).run().status == "done"
    assert forwarded == [2]  # plain SGD keeps no state: its schedule stepped forward over epoch 1's 2 steps
    assert_same_run(RunFolder(older), RunFolder(whole.run_dir))


def test_an_optimizer_with_state_resumes_exactly_only_from_its_saved_state(domains, tmp_path, monkeypatch):
    """UEO with SGD momentum: the momentum buffers are state, so the saved file is what makes resume exact."""
    from ueo_core.methods.base import Method
    monkeypatch.setattr(Method, "optimizer", lambda self, groups, tr: torch.optim.SGD(groups, momentum=0.9))
    whole = Trainer(ueo_cfg(domains, tmp_path / "whole")).run()
    stopped = stopped_after_epoch_1(ueo_cfg(domains, tmp_path / "stopped"))
    older = fresh_copy(stopped.path, tmp_path / "older")
    (older / ck.OPTIMIZER).unlink()
    assert Trainer(ueo_cfg(domains, stopped.path, resume=str(stopped.path))).run().status == "done"
    assert_same_run(stopped, RunFolder(whole.run_dir))
    with pytest.raises(DataError, match=r"its optimizer's state \(SGD\) is needed"):
        Trainer(ueo_cfg(domains, older, resume=str(older))).run()


class Boom:
    """A pickle that runs code when loaded with full pickle (``weights_only=False``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_with_code_in_optimizer_pt_is_not_run(domains, clipood_runs, tmp_path):
    _, stopped = clipood_runs
    run = fresh_copy(stopped, tmp_path / "run")
    marker = tmp_path / "ran"
    with open(run / ck.OPTIMIZER, "wb") as fh:
        pickle.dump({"epoch": 1, "x": Boom(marker)}, fh, protocol=2)
    with pytest.raises(DataError, match="its optimizer.pt could not be read"):
        Trainer(clipood_cfg(domains, run, resume=str(run))).run()
    assert not marker.exists()
