"""The GPU measurements, in one table (run by bench/gpu.sh on a machine with CUDA; --device cpu --small is a smoke
run of the same script on a CPU, with the tiny model).

1. The official-style reference loop vs ueo_core's trainer: ViT-B-32, random initialisation (speed only), bf16
   autocast in both, same images, batch, seed; median of 2 alternating rounds, each in its own process.
2. DistributedDataParallel, 2 processes with batch B against 1 process with batch 2B (the same global batch): needs
   2 GPUs; with fewer, the row says so.
3. An end-to-end UEO run (python -m ueo_core train) with the GPU's utilisation sampled by nvidia-smi every 200 ms.

Each step has a time limit; the whole is sized for < 8 minutes on one H100/H200-class GPU.
``--quick`` (= ``--device cpu --small``, one round, 36 images) is the smoke run that tests/test_benches.py runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from quick import QUICK_NOTE, shapes_spec  # noqa: E402


def run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, **(env or {})})


def throughput(a) -> list[tuple[str, str, str]]:
    res = {"reference": [], "ours": []}
    base = [sys.executable, "bench/train_throughput.py", "--model", a.model, "--pretrained", "none",
            "--device", a.device, "--data", a.data, "--preset", "shapes", "--images", str(a.images),
            "--batch-size", str(a.batch), "--epochs", "1"]
    for _ in range(a.rounds):
        for impl in res:
            out = run(base + ["--impl", impl], timeout=a.step_timeout)
            if out.returncode:
                return [("reference loop vs ours", "failed", out.stderr.strip().splitlines()[-1][:200])]
            res[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(x["img_per_s"] for x in v) for k, v in res.items()}
    loss = {k: v[0]["first_loss"] for k, v in res.items()}
    precision = "bf16 autocast" if a.device.startswith("cuda") else "fp32 (CPU)"
    setting = f"{a.model} random init, {precision}, batch {a.batch}, {a.images} images, 1 epoch"
    return [("reference loop (official-style)", setting,
             f"{med['reference']:.0f} img/s, peak {max(x['peak_memory_mb'] for x in res['reference']):.0f} MB"),
            ("ueo_core trainer", setting,
             f"{med['ours']:.0f} img/s, peak {max(x['peak_memory_mb'] for x in res['ours']):.0f} MB, "
             f"**{med['ours'] / med['reference']:.2f}×** the reference"),
            ("first-step loss (must agree)", "reference vs ours",
             f"{loss['reference']:.5f} vs {loss['ours']:.5f}")]


def train_seconds(run_dir: Path) -> tuple[float, int]:
    """(seconds of the optimisation steps, images per step x steps) of a finished run folder."""
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines() if line.strip()]
    return sum(s["seconds"] for s in steps), sum(s["batch"] for s in steps)


def ddp(a, tmp: Path) -> list[tuple[str, str, str]]:
    import torch
    n_gpu = torch.cuda.device_count() if a.device == "cuda" else 0
    if a.device == "cuda" and n_gpu < 2:
        return [("DDP 2 processes vs 1 process at 2× batch", "-",
                 f"not measured: this machine has {n_gpu} GPU (DDP needs one per process)")]
    common = [a.data, "--preset", "shapes", "--model", a.model, "--pretrained", "none", "--epochs", "1"]
    out = {}
    for name, cmd, batch in (
            ("1 process", [sys.executable, "-m", "ueo_core", "train"], 2 * a.batch),
            ("2 processes", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "ueo_core", "train"], a.batch)):
        d = tmp / name.replace(" ", "_")
        r = run(cmd + common + ["--batch-size", str(batch), "--out", str(d)] +
                (["--device", a.device] if name == "1 process" else []), timeout=a.step_timeout)
        if r.returncode:
            return [("DDP 2 processes vs 1 process at 2× batch", name, "failed: " +
                     (r.stderr.strip().splitlines() or ["?"])[-1][:200])]
        out[name] = train_seconds(d)
    ips = {k: n / s for k, (s, n) in out.items()}
    return [("DDP: 1 process, batch 2B", f"{a.model}, B = {a.batch}", f"{ips['1 process']:.0f} img/s"),
            ("DDP: 2 processes, batch B each", f"{a.model}, B = {a.batch}",
             f"{ips['2 processes']:.0f} img/s, **{ips['2 processes'] / ips['1 process']:.2f}×** one process")]


def end_to_end(a, tmp: Path) -> list[tuple[str, str, str]]:
    smi = shutil.which("nvidia-smi") if a.device == "cuda" else None
    sampler = (subprocess.Popen([smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                 "-lms", "200"], stdout=subprocess.PIPE, text=True) if smi else None)
    t0 = time.time()
    r = run([sys.executable, "-m", "ueo_core", "train", a.data, "--preset", "shapes", "--model", a.model,
             "--pretrained", "none",
             "--device", a.device, "--epochs", str(a.e2e_epochs), "--batch-size", str(a.batch),
             "--workers", str(a.workers), "--out", str(tmp / "e2e")], timeout=a.step_timeout)
    wall = time.time() - t0
    util = ""
    if sampler:
        sampler.terminate()
        rows = [line.split(",") for line in sampler.communicate()[0].splitlines() if "," in line]
        u = [float(x[0]) for x in rows]
        mem = [float(x[1]) for x in rows]
        util = (f"; GPU busy {statistics.mean(u):.0f} % on average (max {max(u):.0f} %), up to {max(mem):.0f} MiB"
                if u else "")
    if r.returncode:
        return [("end-to-end UEO run", "-", "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:200])]
    s, n = train_seconds(tmp / "e2e")
    m = json.loads((tmp / "e2e" / "metrics.json").read_text())
    n_images = len((tmp / "e2e" / "predictions.csv").read_text().splitlines()) - 1  # (one row per image)
    return [("end-to-end UEO run (python -m ueo_core train)",
             f"{a.model} random init, Shapes photo ({n_images} images), {a.e2e_epochs} epoch(s), batch {a.batch}, "
             f"{a.workers} workers",
             f"{wall:.0f} s wall ({m['seconds']:.0f} s in the trainer), steps at {n / s:.0f} img/s{util}")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="smoke run: the tiny model, few images (for a CPU)")
    ap.add_argument("--step-timeout", type=float, default=150)
    ap.add_argument("--quick", action="store_true", help="smoke run: --device cpu --small, one round, 36 images")
    a = ap.parse_args()
    a.rounds, a.data = 2, "shapes:photo"
    if a.quick:
        print(QUICK_NOTE, flush=True)
        a.device, a.small, a.rounds, a.data = "cpu", True, 1, shapes_spec("photo", quick=True)
    if a.small:
        a.model, a.images, a.batch, a.e2e_epochs, a.workers = "ueo-tiny", 16 if a.quick else 64, 16, 1, 0
    else:
        a.model, a.images, a.batch, a.e2e_epochs, a.workers = "ViT-B-32", 2048, 128, 5, 8
    import torch
    if a.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA device here: run with --device cpu --small for a smoke run.", file=sys.stderr)
        return 2
    dev = torch.cuda.get_device_name(0) if a.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    tmp = Path(tempfile.mkdtemp(prefix="ueo-gpu-"))
    rows = []
    for part in (throughput, lambda x: ddp(x, tmp), lambda x: end_to_end(x, tmp)):
        try:
            rows += part(a)
        except subprocess.TimeoutExpired as err:
            rows.append(("(a step)", " ".join(err.cmd[1:4]), f"over its {a.step_timeout:.0f} s limit"))
        print(f"… {len(rows)} rows", file=sys.stderr, flush=True)
    print(f"\n{dev}, torch {torch.__version__}\n")
    print("| measurement | setting | result |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    if a.quick:
        print(QUICK_NOTE)
        # a measurement keeps the rows it got; a smoke run that lost one (a step failed or ran over) must fail
        failed = [r[0] for r in rows if r[1] == "failed" or r[2].startswith(("failed", "over its"))]
        if failed:
            print(f"bench/gpu.py --quick: these steps failed: {failed}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
