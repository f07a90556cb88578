"""Full UEO vs the fast modes (prompt only; last ResNet stage) on Shapes with the built-in model: wall time and
metrics, side by side.

    python bench/fast_modes.py                 # README table (sketch and photo, 5 epochs)
    python bench/fast_modes.py --quick         # smoke run: sketch, 1 epoch, 36 images

Each run is the whole thing a user waits for (zero-shot pass, view caching, training, evaluations), timed in
this process one after another; the ratio is what to read.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quick import QUICK_NOTE, load_shapes, shapes_spec  # noqa: E402
from ueo_core.config import RunConfig  # noqa: E402
from studio.advice import suggested_settings  # noqa: E402
from ueo_core.train import Trainer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="+", default=["sketch", "photo"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: sketch, 1 epoch, 36 images")
    args = ap.parse_args(argv)
    s = suggested_settings("ueo-shapes")
    if args.quick:
        print(QUICK_NOTE, flush=True)
        args.domains, args.rounds, s = ["sketch"], 1, {**s, "epochs": 1}
    rows = []
    for dom in args.domains:
        ims = load_shapes(dom, args.quick)
        for _ in range(args.rounds):
            for mode in (None, "prompt_only", "last_blocks"):
                cfg = RunConfig(data=shapes_spec(dom, args.quick), preset="shapes", epochs=s["epochs"],
                                batch_size=s["batch_size"],
                                lr_prompt=s["lr_prompt"], lr_visual=s["lr_visual"], fast_mode=mode)
                t = time.time()
                r = Trainer(cfg, image_set=ims).run()
                rows.append((dom, mode or "full", time.time() - t, r.metrics_before, r.metrics))
                print(f"{dom:7s} {mode or 'full':12s} {rows[-1][2]:6.1f} s  GACC {r.metrics['gacc']*100:5.1f}  "
                      f"AUROC {r.metrics['auroc']*100:5.1f}", flush=True)
    print("\n| domain | mode | seconds | speed-up | GACC | AUROC | (zero-shot GACC / AUROC) |\n"
          "|---|---|---|---|---|---|---|")
    for dom in args.domains:
        full = [r for r in rows if r[0] == dom and r[1] == "full"]
        tf = sorted(r[2] for r in full)[len(full) // 2]
        for d, mode, sec, b, m in [r for r in rows if r[0] == dom][:3]:
            print(f"| {d} | {mode} | {sec:.1f} | {tf / sec:.1f}x | {m['gacc']*100:.1f} | {m['auroc']*100:.1f} | "
                  f"{b['gacc']*100:.1f} / {b['auroc']*100:.1f} |")
    print(f"\nsettings: {s['epochs']} epochs, batch {s['batch_size']}, lr {s['lr_prompt']} (prompt) / "
          f"{s['lr_visual']} (norm params: all in full mode, the last stage's in last_blocks); the fast modes cache "
          f"4 augmented views per image")
    if args.quick:
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
