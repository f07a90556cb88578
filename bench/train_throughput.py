"""Training throughput: the official-style reference loop vs ueo_core's trainer, side by side in one run.

    python bench/train_throughput.py                                  # built-in model, Shapes photo
    python bench/train_throughput.py --data ../shared/data/PACS/sketch --preset pacs
    python bench/train_throughput.py --model ViT-B-32 --images 128 --batch-size 32   # random init: speed only
    python bench/train_throughput.py --quick       # smoke run: 1 round, 1 epoch, 16 images of Shapes photo

Each measurement runs in its own process (clean peak memory), reference and ours alternating for --rounds rounds;
it prints images/s of the training loop (zero-shot pass excluded), the first-step loss of both (same model, batch,
seed, augmentation: they must agree), peak memory, and the median ratio. Machines are shared and noisy: read the
ratio, not the absolute numbers.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from quick import QUICK_NOTE, shapes_spec  # noqa: E402


def peak_memory_mb(device) -> float:
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    import torch
    from ueo_core.config import RunConfig
    from ueo_core.data import load_data
    from ueo_core.models import load_model
    from ueo_core.train import Trainer

    torch.set_num_threads(args.threads) if args.threads else None
    ims = load_data(args.data, preset=args.preset)
    if args.prior_preset:  # a long prior (e.g. Office-Home's 65 names): the text tower's share of a step grows
        from ueo_core.presets import get_preset
        from ueo_core.data import load_folder
        ims = load_folder(ims.root, prior=list(get_preset(args.prior_preset).classnames))
    files = ims.files[: args.images] if args.images else ims.files
    ims.files, ims.labels, ims.folder_names = files, ims.labels[: len(files)], ims.folder_names[: len(files)]
    pretrained = None if args.pretrained == "none" else args.pretrained
    loaded = load_model(args.model, pretrained=pretrained, device=args.device, seed=0)
    if args.impl == "reference":
        from reference_ueo import run_reference
        out = run_reference(loaded, files, ims.classes, args.epochs, args.batch_size, lr=args.lr,
                            seed=args.seed, weight_temperature=1.0)
    else:
        marks = {}

        def on(ev):
            if ev.kind == "epoch" and ev.data["epoch"] == 0:
                marks["t0"] = time.time()
            elif ev.kind == "step":
                marks.setdefault("first_loss", ev.data["loss"])
                marks["t1"] = time.time()
                marks["n"] = marks.get("n", 0) + ev.data["batch"]
        cfg = RunConfig(data=args.data, method="ueo", pretrained=pretrained, model=args.model, epochs=args.epochs,
                        batch_size=args.batch_size, lr_prompt=args.lr, lr_visual=args.lr, seed=args.seed,
                        eval_every=100_000, device=args.device, options={"weight_temperature": 1.0},
                        fast_mode=None if args.impl == "ours" else args.impl)
        Trainer(cfg, loaded=loaded, image_set=ims, listeners=[on]).run()
        out = {"first_loss": marks["first_loss"], "train_images": marks["n"],
               "train_seconds": marks["t1"] - marks["t0"]}
    out.update({"impl": args.impl, "img_per_s": out["train_images"] / out["train_seconds"],
                "peak_memory_mb": peak_memory_mb(loaded.device), "device": str(loaded.device)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shapes:photo")
    ap.add_argument("--preset")
    ap.add_argument("--prior-preset", help="use this preset's full class list as the prior (e.g. officehome)")
    ap.add_argument("--model", default="ueo-shapes")
    ap.add_argument("--pretrained", default="builtin", help="'none' for random init (speed is the same)")
    ap.add_argument("--device")
    ap.add_argument("--images", type=int, default=0, help="use only the first N images (0: all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--with-fast", action="store_true", help="also measure the prompt_only fast mode")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 epoch on 16 images (36 made)")
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:  # (the workers get --quick too, and the same sizes)
        args.data, args.preset = shapes_spec("photo", quick=True), args.preset or "shapes"
        args.images, args.epochs, args.rounds, args.batch_size = 16, 1, 1, 8
    if args.impl:
        print(json.dumps(worker(args)))
        return 0

    if args.quick:
        print(QUICK_NOTE, flush=True)
    impls = ["reference", "ours"] + (["prompt_only"] if args.with_fast else [])
    results = {k: [] for k in impls}
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--with-fast"]
    for r in range(args.rounds):
        for impl in impls:
            out = subprocess.run([sys.executable, __file__, *passthrough, "--impl", impl], capture_output=True,
                                 text=True, cwd=ROOT)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[impl].append(res)
            print(f"round {r + 1} {impl:12s} {res['img_per_s']:8.1f} img/s  first loss {res['first_loss']:.6f}  "
                  f"peak {res['peak_memory_mb']:.0f} MB  ({res['device']})", flush=True)
    med = {k: statistics.median(x["img_per_s"] for x in v) for k, v in results.items()}
    print(f"\n{args.model} ({args.pretrained}) on {results['ours'][0]['device']}, data {args.data}, "
          f"batch {args.batch_size}, {args.epochs} epochs, {args.rounds} rounds (median):\n")
    print("| implementation | img/s | ratio vs reference | peak memory MB | first-step loss |\n|---|---|---|---|---|")
    for k in impls:
        print(f"| {k} | {med[k]:.1f} | {med[k] / med['reference']:.2f}x | "
              f"{max(x['peak_memory_mb'] for x in results[k]):.0f} | {results[k][0]['first_loss']:.6f} |")
    d = abs(results["reference"][0]["first_loss"] - results["ours"][0]["first_loss"])
    print(f"\nfirst-step loss: reference {results['reference'][0]['first_loss']:.6f}, ours "
          f"{results['ours'][0]['first_loss']:.6f} (|diff| {d:.2e})")
    if args.quick:
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
