"""A folder of phone photos through the whole app, before and after issue 32, side by side in one run (issue 32,
part 4).

It makes N photos of 4032×3024 (q90 JPEGs, every ``--heic-every``-th a HEIC; Shapes drawings blown up, with
sensor-like noise in the JPEGs so that they hold fine detail; class sub-folders circle / square / triangle / star,
star unknown to the prior), not timed. Then, with ViT-B-32 at random init (``--pretrained none``: no weights
offline) on the CPU, the same command lines in two trees, each stage before and then after (a shared machine's load
weighs on both alike), each tree with its own empty cache (``UEO_CACHE``):

- zero-shot (``train --method zero_shot``); UEO ``--fast-mode prompt_only`` for 5 epochs; full UEO for 1 epoch;
- Explore of the prompt_only run (``ueo_core.explore.compute``: features before and after, PCA, thumbnails, UMAP);
- sort of the folder by that run (``python -m ueo_core sort``).

"Before" is commit a5f8a9a (before issue 32), unpacked with ``git archive`` into a temporary folder (the
repository's ``.git`` is only read); "after" is this working tree. A stage's img/s is the folder's photos over the
stage's wall time, the process's start (import, model init) included, as a user waits for it.

Then the machine's limit: the best matmul GFLOPS (2048², fp32 and bf16, measured here; without native bf16 the CPU
emulates it and fp32 is the higher) over the model's FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``
on one image), against the model's forward img/s (batch 32, the precision ``auto`` picks). And the feature pass of
the folder split over a local Ray (``ueo_core.spread``) against the local pass, paired.

    python bench/big_folder.py              # 48 photos, ViT-B-32 (about 15 min on 2 busy cores, 5 of them making photos)
    python bench/big_folder.py --n 200 --json out.json
    python bench/big_folder.py --quick      # 6 small photos, the tiny model (the test suite runs this)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from ueo_core.data import load_rgb  # noqa: E402
from ueo_core.models import load_model, native_bf16  # noqa: E402

BEFORE = "a5f8a9a"  # the last commit before issue 32
PHONE = (4032, 3024)
CLASSES = ("circle", "square", "triangle", "star")
PRIOR = "circle,square,triangle"  # star: the unknown
STAGES = ("zero-shot", "prompt_only ×5", "full UEO ×1", "Explore", "sort")


# ------------------------------------------------------------------------------------------------------- the folder
def make_photos(out: Path, n: int, size=PHONE, heic_every: int = 8, seed: int = 0) -> list[str]:
    """``n`` photos in class sub-folders, distinct drawings (each its own shape, colour, place), blown up to
    ``size``. JPEGs get ±6 noise (a phone's sensor; it makes the file as large as a real one); HEICs stay smooth
    (libheif's encoder takes a minute on a noisy 12-MP image, and a bench must not spend its time making files)."""
    import pillow_heif
    from ueo_core.shapes import render
    pillow_heif.register_heif_opener()
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        shape = CLASSES[i % len(CLASSES)]
        (out / shape).mkdir(parents=True, exist_ok=True)
        img = render(shape, "photo", rng)[0].convert("RGB").resize(size, Image.BICUBIC)
        if heic_every and i % heic_every == heic_every - 1:
            f = out / shape / f"IMG_{i:04d}.heic"
            img.save(f, quality=90)
        else:
            arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, size=(size[1], size[0], 3), dtype=np.int16)
            f = out / shape / f"IMG_{i:04d}.jpg"
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(f, "JPEG", quality=90)
        files.append(str(f))
    return files


# ------------------------------------------------------------------------------------------------------- the stages
def stage_commands(data: Path, work: Path, model: str, batch: int, sort_by: str = "po") -> dict[str, list[str]]:
    """The same command line for both trees (flags that exist at a5f8a9a too: no --precision, auto after); sort
    and Explore by the prompt_only run (``sort_by``: another run, in quick mode)."""
    py, runs = sys.executable, work / "runs"
    common = ["--prior", PRIOR, "--model", model, "--pretrained", "none", "--device", "cpu", "--batch-size",
              str(batch), "--seed", "0"]
    train = [py, "-m", "ueo_core", "train", str(data)] + common
    return {
        "zero-shot": train + ["--method", "zero_shot", "--out", str(runs / "zs")],
        "prompt_only ×5": train + ["--method", "ueo", "--epochs", "5", "--fast-mode", "prompt_only", "--lr-prompt",
                                   "0.05", "--out", str(runs / "po")],
        "full UEO ×1": train + ["--method", "ueo", "--epochs", "1", "--lr-prompt", "0.05", "--lr-visual", "0.05",
                                "--out", str(runs / "full")],
        "Explore": [py, "-c", f"from ueo_core.explore import compute; compute({str(runs / 'po')!r})"],
        "sort": [py, "-m", "ueo_core", "sort", str(data), "--run", str(runs / sort_by), "--out",
                 str(work / "sorted")],
    }


def before_tree(dest: Path) -> Path | None:
    """Commit ``BEFORE`` unpacked into ``dest`` (git archive: the repository is only read), or None without git."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"before: commit {BEFORE} not available ({err}); only 'after' is measured")
        return None
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def run_stage(cmd: list[str], tree: Path, cache: Path) -> float:
    """Seconds of one stage's process in ``tree`` (its own package first on the path, its own cache)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "UEO_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])}… in {tree} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return took


# ---------------------------------------------------------------------------------------------- the machine's limit
def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 3) -> float:
    """Best GFLOPS of an n×n matrix product (2n³ operations) in ``dtype`` over ``repeats``, after a warm-up."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def flops_per_image(loaded) -> int:
    """The image tower's FLOPs on one image, counted by torch's FlopCounterMode (matmuls, convolutions, attention).
    With nn.MultiheadAttention's inference fast path off: its fused kernel (``_native_multi_head_attention``) is not
    an op the counter knows, and a third of a ViT-B-32's FLOPs (the attention's projections) would go uncounted."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 3, loaded.image_size, loaded.image_size)
    counter = FlopCounterMode(display=False)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), counter:
            loaded.model.encode_image(x, normalize=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return counter.get_total_flops()


def forward_img_s(loaded, batch: int, repeats: int = 2) -> float:
    """The image tower's img/s on ready tensors (no decoding), batch ``batch``, its inference precision."""
    from ueo_core.models import inference_autocast
    x = torch.randn(batch, 3, loaded.image_size, loaded.image_size)
    with torch.no_grad(), inference_autocast(loaded):
        loaded.model.encode_image(x[:2], normalize=True)
        best = min(_timed(lambda: loaded.model.encode_image(x, normalize=True)) for _ in range(repeats))
    return batch / best


def decode_ms(files: list[str], loaded) -> tuple[float, float]:
    """Median ms per photo of what a pass reads (decode + the model's transform): a full decode (before) and
    ``load_rgb(f, image_size)`` (after: JPEG draft; other formats decoded, then downscaled), paired per photo."""
    t, side = loaded.preprocess, loaded.image_size
    pairs = [(1000 * _timed(lambda: t(load_rgb(f))), 1000 * _timed(lambda: t(load_rgb(f, side)))) for f in files]
    return float(np.median([p[0] for p in pairs])), float(np.median([p[1] for p in pairs]))


# ----------------------------------------------------------------------------------------------- the split pass
def spread_pass(loaded, files: list[str], batch: int) -> list[tuple[str, float]]:
    """Seconds of the folder's feature pass: local (torch's threads), local with a DataLoader worker decoding
    beside the model, and split over a local Ray of this machine's CPUs (``spread.encode_files``, the actors'
    start included), one after the other; the split's features checked against the local ones."""
    import ray

    from ueo_core import cluster, spread
    from ueo_core.train.features import encode_images
    from ueo_core.data import ImageDataset
    batch = max(1, min(batch, len(files) // 2))  # at least two batches: two actors' worth
    temp_dir = tempfile.mkdtemp(prefix="ueo-ray-bigfolder-", dir="/tmp")
    try:
        head = cluster.start_local_head(state_dir=Path(temp_dir) / "state", slots=1, temp_dir=temp_dir)
        ray.init(address=head, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="ERROR")
        t0 = time.perf_counter()
        local = spread.local_pass(loaded, files, batch)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        images = ImageDataset(files, loaded.preprocess, min_side=loaded.image_size)
        encode_images(loaded, images, batch, num_workers=1)
        t_worker = time.perf_counter() - t0
        where = []
        t0 = time.perf_counter()
        split = spread.encode_files(loaded, files, batch, min_per_task=1, where=where)
        t_split = time.perf_counter() - t0
        diff = float(np.abs(split - local).max())
    finally:
        ray.shutdown()
        cluster.stop_local_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    print(f"split pass: {len(where)} actors ({', '.join(str(w['files']) for w in where)} files), "
          f"max |split − local| = {diff:.2e}")
    return [("local, torch threads", t_local), ("local + 1 DataLoader worker decoding", t_worker),
            (f"split over Ray ({len(where)} actors, start included)", t_split)]


# ---------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="photos in the folder (default 48)")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--heic-every", type=int, default=8, help="every k-th photo a HEIC (0: none)")
    ap.add_argument("--folder", help="make the photos here (kept) instead of a temporary folder")
    ap.add_argument("--no-before", action="store_true", help="measure only this tree")
    ap.add_argument("--no-spread", action="store_true", help="leave out the split pass over Ray")
    ap.add_argument("--quick", action="store_true", help="4 photos of 1008×756, the tiny model, zero-shot and sort "
                    "only, no split pass (a check that it runs: each stage is a process in each tree)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    size, stages, sort_by = PHONE, STAGES, "po"
    if a.quick:
        from quick import QUICK_NOTE
        from ueo_core.models import TINY_MODEL
        print(QUICK_NOTE, flush=True)
        a.n, a.model, a.batch, a.heic_every, size = 4, TINY_MODEL, 4, 4, (1008, 756)
        stages, sort_by, a.no_spread = ("zero-shot", "sort"), "zs", True
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="ueo-bigfolder-") as tmp:
        tmp = Path(tmp)
        data = Path(a.folder) if a.folder else tmp / "photos"
        t0 = time.perf_counter()
        files = make_photos(data, a.n, size, a.heic_every)
        heics = sum(f.endswith(".heic") for f in files)
        print(f"{a.n} photos of {size[0]}×{size[1]} ({a.n - heics} JPEG q90, {heics} HEIC) made in "
              f"{time.perf_counter() - t0:.0f} s (not counted); {a.model} random init, CPU, "
              f"{torch.get_num_threads()} threads, batch {a.batch}\n", flush=True)
        trees = {"after": ROOT}
        if not a.no_before and (tree := before_tree(tmp / "before")):
            trees = {"before": tree, "after": ROOT}
        seconds: dict[str, dict[str, float]] = {t: {} for t in trees}
        for stage in stages:
            for name, tree in trees.items():
                work = tmp / f"work-{name}"
                cmd = stage_commands(data, work, a.model, a.batch, sort_by)[stage]
                seconds[name][stage] = run_stage(cmd, tree, tmp / f"cache-{name}")
            print(f"  {stage}: " + ", ".join(f"{t} {s[stage]:.1f} s" for t, s in seconds.items()), flush=True)
        names = list(trees)
        print("\n| stage (the folder's photos / wall s, process start included) | "
              + " | ".join(f"{t} s | {t} img/s" for t in names) + (" | speed-up |" if len(names) == 2 else " |"))
        print("|---" * (1 + 2 * len(names) + (len(names) == 2)) + "|")
        for stage in stages + ("whole",):
            s = {t: sum(seconds[t].values()) if stage == "whole" else seconds[t][stage] for t in names}
            cells = " | ".join(f"{s[t]:.1f} | {a.n / s[t]:.2f}" for t in names)
            print(f"| {stage} | {cells}" + (f" | {s['before'] / s['after']:.2f}× |" if len(names) == 2 else " |"))

        loaded = load_model(a.model, pretrained=None, device="cpu", seed=0)  # precision auto, as the CLI
        jpegs = [f for f in files if f.endswith(".jpg")][:8]
        heic = [f for f in files if f.endswith(".heic")][:2]
        dec = decode_ms(jpegs, loaded)
        dec_heic = decode_ms(heic, loaded) if heic else (float("nan"),) * 2
        fwd = forward_img_s(loaded, a.batch)
        print(f"\n| per photo | before ms | after ms |\n|---|---|---|\n"
              f"| decode + transform, JPEG (median of {len(jpegs)}) | {dec[0]:.0f} | {dec[1]:.0f} |\n"
              f"| decode + transform, HEIC (median of {len(heic)}) | {dec_heic[0]:.0f} | {dec_heic[1]:.0f} |\n"
              f"| the model's forward ({loaded.precision}, batch {a.batch}) | {1000 / fwd:.0f} | {1000 / fwd:.0f} |")

        gf = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
        best = max(gf, key=gf.get)
        flops = flops_per_image(loaded)
        limit = gf[best] * 1e9 / flops
        print(f"\nmatmul 2048²: fp32 {gf['fp32']:.0f} GFLOPS, bf16 {gf['bf16']:.0f} GFLOPS "
              f"(native bf16: {native_bf16(torch.device('cpu')) or 'no, emulated'}); the limit uses {best}. "
              f"{a.model}: {flops / 1e9:.2f} GFLOPs per image (FlopCounterMode)")

        spread_rows = []
        if not a.no_spread:
            spread_rows = spread_pass(loaded, files, a.batch)
            print("\n| the folder's feature pass | s | img/s | vs local |\n|---|---|---|---|")
            for what, s in spread_rows:
                print(f"| {what} | {s:.1f} | {a.n / s:.2f} | {spread_rows[0][1] / s:.2f}× |")

        if "prompt_only ×5" in seconds["after"]:
            po = seconds["after"]["prompt_only ×5"] + seconds["after"]["sort"]
            print(f"\n2,000 photos, upload to sorted folders in prompt_only (after), extrapolated linearly from this "
                  f"run's {a.n / po:.2f} img/s (its fixed starts included): {2000 / (a.n / po) / 60:.0f} min")
        zs = a.n / seconds["after"]["zero-shot"]
        print(f"\nlast line: zero-shot stage {zs:.2f} img/s, forward {fwd:.2f} img/s; limit {limit:.1f} img/s "
              f"({best} {gf[best]:.0f} GFLOPS / {flops / 1e9:.2f} GFLOPs); ratio forward {fwd / limit:.0%}, "
              f"stage {zs / limit:.0%}")
        if a.json:
            Path(a.json).write_text(json.dumps({
                "n": a.n, "model": a.model, "heic": heics, "seconds": seconds, "decode_ms": {"jpeg": dec, "heic":
                dec_heic}, "forward_img_s": fwd, "gflops": gf, "flops_per_image": flops, "limit_img_s": limit,
                "spread_s": dict(spread_rows), "threads": torch.get_num_threads()}, indent=1))
    if a.quick:
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
