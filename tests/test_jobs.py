"""Runs as Ray jobs, on a real local Ray (no mock): started here on a free port, bound to 127.0.0.1, stopped at the
end whatever happens. Each test uses its own workspaces root."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from ueo_core import cluster as ueo_cluster  # (the fixture below is named cluster)
from ueo_core import jobs
from ueo_core.config import RunConfig
from ueo_core.runs import load_checkpoint

from conftest import ROOT
from helpers import make_folder

ray = pytest.importorskip("ray")


@pytest.fixture
def cluster(ray_cluster):
    """The session's local Ray, idle: no run of an earlier test still holds a slot."""
    wait_for(lambda: not [n for n in ray.util.list_named_actors() if n.startswith(("run:", "explore:"))],
             timeout=120,
             what="the runs of earlier tests to end")
    return ray_cluster


def cfg(data, run_dir, **kw):
    base = dict(data=str(data), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None, epochs=2,
                batch_size=8, lr_prompt=0.05, lr_visual=0.05, seed=7, run_dir=str(run_dir))
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture
def world(tmp_path):
    data = make_folder(tmp_path / "data", classes=("red", "green", "blue", "yellow"))
    ws = tmp_path / "workspaces"
    return data, ws


def wait_for(pred, timeout=120, what="condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_workspaces_start_runs_together_and_both_finish(cluster, world):
    data, ws = world
    epochs = 30 if ueo_cluster.cluster_slots() >= 2 else 2  # long enough to overlap when they can (a worker starts in s)
    a = jobs.submit(cfg(data, ws / ("a" * 32) / "runs" / "20260101-000000-ueo-aaaaaa", epochs=epochs))
    b = jobs.submit(cfg(data, ws / ("b" * 32) / "runs" / "20260101-000000-ueo-bbbbbb", epochs=epochs))
    for run in (a, b):
        s = jobs.wait(run, timeout=300)
        assert (s.kind, s.outcome) == ("ended", "done"), (run, s)
        m = json.loads((run / "metrics.json").read_text())
        assert m["after"]["gacc"] is not None
    wa, wb = json.loads((a / "worker.json").read_text()), json.loads((b / "worker.json").read_text())
    assert wa["pid"] != wb["pid"] and wa["pid"] != os.getpid()  # each in a worker process of its own
    ended_a = json.loads((a / "ended.json").read_text())["at"]
    if ueo_cluster.cluster_slots() >= 2:
        assert wb["started"] < ended_a  # two slots: they trained at the same time
    else:
        assert wb["started"] >= ended_a - 0.5  # one slot: b after a


def test_a_queued_run_is_shown_as_queued_and_can_be_stopped(cluster, world):
    """Every slot busy with a long run, then two more runs: both queued, in order, with their places; stopping the
    first queued one moves the other up and it never trains; stopping a training run hands its slot on."""
    data, ws = world
    busy = [jobs.submit(cfg(data, ws / ("a" * 32) / "runs" / f"20260101-00000{i}-ueo-aaaaaa", epochs=200))
            for i in range(ueo_cluster.cluster_slots())]
    for run in busy:
        wait_for(lambda: (run / "worker.json").exists(), what="every slot's run to start")
    second = jobs.submit(cfg(data, ws / ("b" * 32) / "runs" / "20260101-000010-ueo-bbbbbb"))
    third = jobs.submit(cfg(data, ws / ("c" * 32) / "runs" / "20260101-000011-ueo-cccccc"))
    s2, s3 = jobs.job_state(second, ws), jobs.job_state(third, ws)
    assert (s2.kind, s2.position) == ("queued", 1) and (s3.kind, s3.position) == ("queued", 2)
    assert s2.words.startswith("queued: next in line") and s3.words.startswith("queued: 2nd in line")
    jobs.stop(second)
    s = jobs.job_state(second, ws)
    assert (s.kind, s.outcome, s.words) == ("ended", "cancelled", "stopped before it started")
    assert jobs.job_state(third, ws).position == 1  # moved up
    assert not (second / "worker.json").exists()  # it never trained
    first = busy[0]
    wait_for(lambda: (first / "checkpoint.safetensors").exists(), what="the first run's first epoch")
    for run in busy:
        jobs.stop(run)
    s = jobs.wait(first, timeout=120)
    assert (s.kind, s.outcome) == ("ended", "cancelled")
    m = json.loads((first / "metrics.json").read_text())
    assert m["stopped_at_epoch"] is not None and m["stopped_at_epoch"] < 200
    s = jobs.wait(third, timeout=300)  # a slot passed on to the third
    assert (s.kind, s.outcome) == ("ended", "done")
    assert not (second / "worker.json").exists()  # stopped while queued: still never trained


def test_an_exploration_is_a_job_in_the_same_queue_and_writes_pca_before_umap(cluster, world):
    """A finished run's exploration waits behind the runs that hold every slot (its place shown like a run's),
    then computes in a worker process of its own: PCA lands before UMAP, both maps for the run's images."""
    from ueo_core import explore
    from ueo_core.analysis import read_predictions
    data, ws = world
    done = jobs.submit(cfg(data, ws / ("a" * 32) / "runs" / "20260101-000020-ueo-aaaaaa", epochs=1))
    assert jobs.wait(done, timeout=300).outcome == "done"
    busy = [jobs.submit(cfg(data, ws / ("b" * 32) / "runs" / f"20260101-00003{i}-ueo-bbbbbb", epochs=200))
            for i in range(ueo_cluster.cluster_slots())]
    for run in busy:
        wait_for(lambda: (run / "worker.json").exists(), what="every slot's run to start")
    for run in busy:  # the head of ours starts workers at nice 0, not Ray's 15 (they yield to page redraws)
        assert os.getpriority(os.PRIO_PROCESS, jobs.read(run, jobs.WORKER)["pid"]) == ueo_cluster.WORKER_NICENESS
    out = jobs.submit_exploration(done)
    assert out == explore.folder(done)
    s = jobs.job_state(out, ws)
    assert (s.kind, s.position) == ("queued", 1) and s.words.startswith("queued: next in line"), s
    first = jobs.read(out, jobs.JOB)["submitted"]
    assert jobs.submit_exploration(done) == out
    assert jobs.read(out, jobs.JOB)["submitted"] == first  # a second submit while queued changes nothing
    for run in busy:
        jobs.stop(run)
    s = jobs.wait(out, timeout=300)
    assert (s.kind, s.outcome) == ("ended", "done"), s
    worker = jobs.read(out, jobs.WORKER)
    assert worker["pid"] != os.getpid()
    assert worker["started"] > max(jobs.read(r, jobs.ENDED)["at"] for r in busy) - 0.5  # it waited its turn
    assert (out / explore.PCA).stat().st_mtime_ns <= (out / explore.UMAP).stat().st_mtime_ns
    landed = explore.read(done)
    n = len(read_predictions(done))
    for key in ("pca", "umap"):
        assert {k: v.shape for k, v in landed[key].items()} == {"before": (n, 2), "after": (n, 2)}
    assert landed["status"]["stage"] == "done"


def test_kill_9_of_a_worker_then_resume_equals_an_uninterrupted_run(cluster, world):
    data, ws = world
    whole = jobs.submit(cfg(data, ws / ("a" * 32) / "runs" / "20260101-000004-ueo-aaaaaa", epochs=8))
    assert jobs.wait(whole, timeout=300).outcome == "done"
    run = jobs.submit(cfg(data, ws / ("a" * 32) / "runs" / "20260101-000005-ueo-aaaaaa", epochs=8))
    wait_for(lambda: (run / "checkpoint.safetensors").exists(), what="the first checkpoint")
    pid = json.loads((run / "worker.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: jobs.job_state(run, ws).kind == "lost", timeout=60, what="the run to be seen lost")
    s = jobs.job_state(run, ws)
    assert "process running it stopped" in s.words and "Resume" in s.words
    killed_at = load_checkpoint(run)[1]["epoch"]
    assert 1 <= killed_at < 8, killed_at
    jobs.resume(run)
    assert jobs.wait(run, timeout=300).outcome == "done"
    t_whole, _ = load_checkpoint(whole)
    t_run, meta = load_checkpoint(run)
    assert meta["epoch"] == 8
    for k in t_whole:
        assert torch.allclose(t_whole[k], t_run[k], atol=1e-5), k
    epochs = [json.loads(line)["epoch"] for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert epochs == list(range(9))  # each epoch's evaluation once, none lost or doubled


def test_a_run_outlives_the_process_that_submitted_it(cluster, world):
    """The web server's part, in a process of its own: it submits and is killed at once (kill -9). The run keeps
    going on Ray; a new process (here: this one) finds it by its folder and sees it finish."""
    data, ws = world
    run = ws / ("a" * 32) / "runs" / "20260101-000006-ueo-aaaaaa"
    code = ("import sys, time; from ueo_core import jobs; from ueo_core.config import RunConfig; "
            f"jobs.submit(RunConfig.from_dict({cfg(data, run, epochs=3).to_dict()!r})); print('submitted', flush=True); "
            "time.sleep(600)")
    env = {**os.environ, "UEO_RAY_ADDRESS": cluster, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "submitted"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    s = jobs.wait(run, timeout=300)
    assert (s.kind, s.outcome) == ("ended", "done")
    assert (run / "metrics.json").exists()


def test_queue_words():
    assert jobs.queue_words(1, None).startswith("queued: next in line (no run has finished")
    assert jobs.queue_words(3, 130) == "queued: 3rd in line, about 2 min"
    assert jobs.queue_words(2, 12) == "queued: 2nd in line, about 10 s"
    assert [jobs.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


@pytest.mark.slow
def test_two_node_cluster_on_one_machine_runs_land_on_both_nodes(tmp_path):
    """A head and a second node (ray start --address …), each with one run slot: two runs submitted together
    are placed one on each node, and both finish. The driver is a process of its own (this one is connected
    to the session's Ray)."""
    from helpers import kill_ray_cluster
    temp_dir = tempfile.mkdtemp(prefix="ueo-ray2-", dir="/tmp")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    try:
        head = ueo_cluster.start_local_head(state_dir=Path(temp_dir) / "state", slots=1, temp_dir=temp_dir)
        joined = subprocess.run([ray_bin, "start", f"--address={head}", "--node-ip-address=127.0.0.1",
                                 "--num-cpus=1", f"--resources={json.dumps({ueo_cluster.SLOT: 1})}",
                                 f"--temp-dir={temp_dir}", "--disable-usage-stats"], capture_output=True, text=True,
                                timeout=180)
        assert joined.returncode == 0, joined.stderr[-1500:]
        data = make_folder(tmp_path / "data", classes=("red", "green", "blue", "yellow"))
        runs = [tmp_path / "ws" / ("a" * 32) / "runs" / f"20260101-00000{i}-ueo-abcdef" for i in (7, 8)]
        code = ("import json, sys; from ueo_core import jobs; from ueo_core.config import RunConfig; "
                f"runs = {[str(r) for r in runs]!r}; "
                f"[jobs.submit(RunConfig.from_dict({{**{cfg(data, runs[0], epochs=30).to_dict()!r}, 'run_dir': r}})) "
                "for r in runs]; "
                "print(json.dumps([jobs.wait(r, timeout=400).outcome for r in runs]))")
        env = {**os.environ, "UEO_RAY_ADDRESS": head, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.strip().splitlines()[-1]) == ["done", "done"]
        nodes = [json.loads((r / "worker.json").read_text())["node_id"] for r in runs]
        # one run on each node: submitted together, each took one node's only slot. (Not asserted: that their
        # training overlapped in time. On a loaded machine one worker can start after the other has finished,
        # and a test must not hang on wall-clock times.)
        assert nodes[0] != nodes[1], nodes
    finally:
        kill_ray_cluster(temp_dir)


@pytest.mark.slow
def test_a_restarted_local_ray_gets_back_the_runs_it_lost(tmp_path):
    """The whole local Ray killed (its head too: a reboot) with one run training and one queued; `cluster up`
    (what scripts/app.sh runs) starts a new head and submits both again, in their order: the training one resumes
    from its last checkpoint, the queued one trains after it, and both finish. Driven by CLI processes of their
    own (this process is connected to the session's Ray)."""
    from helpers import kill_ray_cluster
    temp_dir = tempfile.mkdtemp(prefix="ueo-ray3-", dir="/tmp")
    ws = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if k not in ("UEO_RAY_ADDRESS", "RAY_ADDRESS")}
    env.update(UEO_RAY_DIR=str(Path(temp_dir) / "state"), UEO_RAY_TEMP_DIR=temp_dir, UEO_SLOTS="1",
               UEO_WORKSPACES=str(ws), PYTHONPATH=str(ROOT))

    def cluster_up() -> str:
        out = subprocess.run([sys.executable, "-m", "ueo_core", "cluster", "up"], env=env, capture_output=True,
                             text=True, timeout=300, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout
    try:
        cluster_up()
        data = make_folder(tmp_path / "data", classes=("red", "green", "blue", "yellow"))
        runs = [ws / (c * 32) / "runs" / f"20260101-00001{i}-ueo-abcdef" for i, c in ((1, "a"), (2, "b"))]
        code = ("from ueo_core import jobs; from ueo_core.config import RunConfig; "
                f"[jobs.submit(RunConfig.from_dict({{**{cfg(data, runs[0], epochs=60).to_dict()!r}, 'run_dir': r}})) "
                f"for r in {[str(r) for r in runs]!r}]")
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
        wait_for(lambda: (runs[0] / "checkpoint.safetensors").exists(), timeout=300, what="the first checkpoint")
        kill_ray_cluster(temp_dir)  # every Ray process: head, raylet, workers
        assert not (runs[0] / jobs.ENDED).exists() and not (runs[1] / jobs.WORKER).exists()
        said = cluster_up()
        assert f"submitted again after Ray restarted: 2 jobs ({runs[0].name}, {runs[1].name})" in said, said
        for r in runs:
            wait_for(lambda: (r / jobs.ENDED).exists(), timeout=400, what=f"{r.name} to end")
            assert jobs.read(r, jobs.ENDED)["status"] == "done"
        assert jobs.read(runs[0], jobs.JOB)["config"]["resume"] == str(runs[0])  # from its checkpoint
        epochs = [json.loads(line)["epoch"] for line in (runs[0] / "epochs.jsonl").read_text().splitlines()]
        assert epochs == list(range(61)), epochs  # every epoch once: the resumed one continued, not restarted
        assert jobs.read(runs[1], jobs.WORKER)["started"] >= jobs.read(runs[0], jobs.ENDED)["at"] - 0.5
        assert "submitted again" not in cluster_up()  # nothing lost any more: nothing submitted twice
    finally:
        kill_ray_cluster(temp_dir)
