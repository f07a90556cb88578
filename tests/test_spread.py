"""A folder's feature pass split over the Ray cluster (ueo_core.spread): the same numbers as the local pass, in the
files' order, computed on both nodes of a two-node cluster on one machine; the local pass when Ray is not there or
the split does not pay."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from ueo_core import spread

from conftest import ROOT
from helpers import make_folder


def _files(root: Path, per_class: int = 6) -> list[str]:
    make_folder(root, classes=("red", "green", "blue", "yellow"), per_class=per_class)
    # not sorted by class: a split that put chunks back in the wrong order would shuffle the classes
    return sorted(str(p) for p in root.rglob("*.png"))[::-1]


def test_plan_and_chunks():
    assert spread.plan(1000, 32, cpus=1) == (0, 0)             # one free slot: a remote pass gains nothing
    assert spread.plan(100, 32, cpus=4) == (0, 0)              # 100 files: not one actor's worth (128 each)
    assert spread.plan(1000, 32, cpus=4) == (4, 1)
    assert spread.plan(200, 32, cpus=8, min_per_task=50) == (4, 2)  # 4 actors, the 8 slots shared: 2 threads each
    for n, b, a in ((1000, 32, 4), (37, 8, 2), (5, 8, 3)):
        r = spread.chunks(n, b, a)
        assert r[0][0] == 0 and r[-1][1] == n and all(r[k][1] == r[k + 1][0] for k in range(len(r) - 1))
        assert all(s % b == 0 for s, _ in r)  # every chunk starts on a batch boundary: the local pass's batches


def test_without_ray_the_pass_is_local(tmp_path, tiny, monkeypatch):
    """Not connected to Ray (or too few files, or a GPU model): the local pass, with its progress; nothing is
    sent to Ray."""
    import ray
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as without Ray (the session's may be connected)
    files = _files(tmp_path / "data")
    monkeypatch.setattr(spread, "_on_ray", lambda *a, **k: pytest.fail("Ray used without a cluster"))
    seen = []
    got = spread.encode_files(tiny, files, 8, progress=lambda d, t: seen.append((d, t)), min_per_task=1)
    want = spread.local_pass(tiny, files, 8)
    assert got.dtype == np.float32 and got.shape == want.shape == (24, tiny.model.visual.output_dim)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert seen[-1] == (24, 24)


DRIVER = """
import json, sys, time
import numpy as np, ray
from ueo_core import spread
from ueo_core.models import load_model
files = json.loads(sys.argv[1])
ray.init(address=sys.argv[2], _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="ERROR")
loaded = load_model("ueo-tiny", seed=0).with_precision("bf16")
with __import__("torch").no_grad():  # an 'adapted' tower: its norm weights changed after load (they must travel)
    for m in loaded.model.visual.modules():
        if isinstance(m, __import__("torch").nn.LayerNorm):
            m.weight.mul_(1.5)
where, seen = [], []
split = spread.encode_files(loaded, files, 4, progress=lambda d, t: seen.append(d), min_per_task=4, where=where,
                           here=1)  # (the two nodes share this machine: count it as one core)
local = spread.local_pass(loaded, files, 4)
fp32 = spread.local_pass(loaded.with_precision("fp32"), files, 4)
np.savez(sys.argv[3], split=split, local=local, fp32=fp32)
t0 = time.time()
while spread.free_cpus() < 3 and time.time() - t0 < 20:  # ray.kill hands the actors' slots back asynchronously
    time.sleep(0.1)
print(json.dumps({"where": where, "progress": seen, "free": spread.free_cpus()}))
"""


@pytest.mark.slow
def test_split_pass_equals_the_local_pass_on_both_nodes(tmp_path):
    """A head (2 CPUs) and a second node (1 CPU) on this machine: the split pass of 48 files runs on 3 actors over
    both nodes and gives the local pass's features (an adapted tower, under bf16 autocast), in the files' order. The
    driver is a process of its own (this one may be connected to the session's Ray), as in test_jobs."""
    from helpers import kill_ray_cluster
    from ueo_core import cluster
    files = _files(tmp_path / "data", per_class=12)
    temp_dir = tempfile.mkdtemp(prefix="ueo-ray-spread-", dir="/tmp")
    try:
        head = cluster.start_local_head(state_dir=Path(temp_dir) / "state", slots=1, temp_dir=temp_dir)
        joined = subprocess.run([str(Path(sys.executable).with_name("ray")), "start", f"--address={head}",
                                 "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--temp-dir={temp_dir}",
                                 "--disable-usage-stats"], capture_output=True, text=True, timeout=180)
        assert joined.returncode == 0, joined.stderr[-1500:]
        npz = tmp_path / "features.npz"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "UEO_RAY_ADDRESS": head}
        run = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(files), head, str(npz)], env=env,
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert run.returncode == 0, run.stderr[-3000:]
        report = json.loads(run.stdout.strip().splitlines()[-1])
        with np.load(npz) as z:
            split, local, fp32 = z["split"], z["local"], z["fp32"]
    finally:
        kill_ray_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert split.shape == local.shape == (48, 32)
    assert np.abs(split - local).max() < 1e-5, np.abs(split - local).max()
    where = report["where"]
    assert len(where) == 3 and sum(w["files"] for w in where) == 48, where   # 3 CPU slots: 3 actors
    assert len({w["node_id"] for w in where}) == 2, where                     # on both nodes
    assert len({w["pid"] for w in where}) == 3, where
    assert report["progress"][-1] == 48 and report["progress"] == sorted(report["progress"])
    assert report["free"] == 3  # the actors gave their CPU slots back
    # bf16 really ran as bf16 there: the split differs from the fp32 pass as the local bf16 pass does
    assert np.abs(split - fp32).max() > 1e-4
