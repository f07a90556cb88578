"""Every bench's quick mode, run as a user runs the bench (its own process, its command line): a renamed widget, a
changed API or command line fails here the day it changes, not in a measurement found broken weeks later (issue 29,
item 16). A quick mode runs the bench's own code at tiny sizes; its numbers are not a measurement.

The benches share one Shapes cache (each world is made once) and the session's Ray (``ray_cluster``), which the ones
whose app submits jobs use through UEO_RAY_ADDRESS. Benches over this file's time budget (about 150 s on a 2-core
machine, all together) run only with UEO_ALL_BENCHES=1, and the skip says so. Not here: bench/nothing_lost.py (a
scripted demonstration with screenshots, not a measurement), bench/export_readback.py (a read-back check that
installs Label Studio's SDK and FiftyOne with its MongoDB into a throwaway environment: minutes and network, no
measurement; tests/test_export.py checks the same files with the standard library) and the helpers appserver.py, quick.py and
reference_ueo.py (which train_throughput and gpu run).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

CHROMIUM = os.environ.get("UEO_CHROMIUM", "/usr/bin/chromium")
ALL = os.environ.get("UEO_ALL_BENCHES") == "1"
NOTE = "QUICK MODE"  # bench/quick.py's QUICK_NOTE: a quick run says that its numbers are not a measurement

# (script, the line its table starts with, needs a browser, needs Ray, within this file's budget). Out of it, by CPU
# time of a quick run: clipood_table (four runs, two of them fine-tuning the whole tower), gpu (seven processes that
# each import torch: two throughput workers, DDP's 1 + 1 + 2, the end-to-end CLI run) and classroom (two real runs
# pressed in the app, a Ray worker each).
BENCHES = [
    ("ui_latency.py", "| interaction | n | median ms | worst ms |", True, True, True),
    ("ui_elements.py", "| page switch to | n | median ms | minus the empty page |", True, False, True),
    ("world_table.py", "| domain | method | GACC | AUROC | H-score |", False, False, True),
    ("fast_modes.py", "| domain | mode | seconds | speed-up |", False, False, True),
    ("train_throughput.py", "| implementation | img/s | ratio vs reference |", False, False, True),
    ("embed.py", "| step | seconds | rate |", False, False, True),
    ("search.py", "| query | warm worker on Ray: median / p90 |", False, True, True),
    ("decode.py", "| decode to (median per photo) | full ms | draft ms | ratio | decoded shorter side |", False,
     False, True),
    ("precision.py", "| precision | img/s | ratio |", False, False, True),
    ("train_precision.py", "| setting | s/step (median) | img/s | vs fp32 (paired median) |", False, False, True),
    ("label_coverage.py", "| estimate | true value | covered | mean width | too few |", False, False, True),
    ("map_scale.py", "| tool | points | first paint ms |", True, False, True),  # ~55 s: Explore's maps' browser check
    ("clipood_table.py", "| target | method | GACC | AUROC | H-score |", False, False, False),
    ("gpu.py", "| measurement | setting | result |", False, False, False),
    ("classroom.py", "| K | lost | all done s |", True, True, False),
    # big_folder: two stages in two trees (a5f8a9a unpacked, and this one), each a process importing torch: ~60 s
    ("big_folder.py", "| stage (the folder's photos / wall s, process start included) |", False, False, False),
    # tower_passes: two trees, each a lesson of 5 runs in both modes: ~2 min (tests/test_lesson.py checks the counts)
    ("tower_passes.py", "| mode | what | before: inference |", False, False, False),
]
OVER_BUDGET = "over this file's ~150 s budget (see BENCHES); UEO_ALL_BENCHES=1 runs it"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory):
    """One Shapes cache for every bench (each domain made once), no hub look-ups."""
    return {**os.environ, "UEO_CACHE": str(tmp_path_factory.mktemp("bench-cache")), "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("script,header,browser,ray,in_budget", BENCHES, ids=[b[0] for b in BENCHES])
def test_bench_quick_mode(script, header, browser, ray, in_budget, bench_env, request):
    if not (in_budget or ALL):
        pytest.skip(f"bench/{script} --quick: {OVER_BUDGET}")
    if browser and not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    env = dict(bench_env)
    if ray:  # the session's Ray (started once for every test that needs one)
        env["UEO_RAY_ADDRESS"] = request.getfixturevalue("ray_cluster")
    t0 = time.time()
    out = subprocess.run([sys.executable, f"bench/{script}", "--quick"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    took = time.time() - t0
    print(f"bench/{script} --quick: {took:.0f} s")
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"bench/{script} --quick exited {out.returncode} after {took:.0f} s:\n{text[-3000:]}"
    assert header in out.stdout, f"bench/{script} --quick printed no table ({header!r}):\n{out.stdout[-3000:]}"
    assert NOTE in out.stdout, f"bench/{script} --quick did not say it is a quick run"
