"""Method x domain table on Shapes with the built-in model (README, issue 3).

    python bench/shapes_table.py                      # the README table
    python bench/shapes_table.py --domains sketch --methods ueo --epochs 5 --lr 0.01

Every cell is a real run of the trainer on the unlabeled target folder (6 shapes in the prior, 2 unknown);
GACC/PACC/AUROC are measured against the folder names, which the methods never see (except the oracle).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ueo_core.config import RunConfig  # noqa: E402
from ueo_core.data import load_data  # noqa: E402
from ueo_core.models import load_model  # noqa: E402
from ueo_core.trainer import Trainer  # noqa: E402

# Recommended Shapes settings (see README): the official lr 1e-4 barely moves a small model in a few epochs.
SHAPES_DEFAULTS = dict(epochs=5, batch_size=64, lr_prompt=1e-2, lr_visual=1e-2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="+", default=["flat", "sketch", "photo"])
    ap.add_argument("--methods", nargs="+", default=["zero_shot", "entropy", "im", "ueo", "oracle"])
    ap.add_argument("--epochs", type=int, default=SHAPES_DEFAULTS["epochs"])
    ap.add_argument("--batch-size", type=int, default=SHAPES_DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=SHAPES_DEFAULTS["lr_visual"], help="lr of prompt and norm params")
    ap.add_argument("--seeds", type=int, nargs="+", default=[2023])
    ap.add_argument("--weight-temperature", type=float)
    args = ap.parse_args(argv)

    rows = []
    t0 = time.time()
    for dom in args.domains:
        ims = load_data(f"shapes:{dom}")
        for method in args.methods:
            vals = []
            for seed in args.seeds:
                loaded = load_model("ueo-shapes", pretrained="builtin", seed=seed)
                cfg = RunConfig(data=f"shapes:{dom}", method=method, epochs=args.epochs, batch_size=args.batch_size,
                                lr_prompt=args.lr, lr_visual=args.lr, seed=seed,
                                weight_temperature=args.weight_temperature)
                r = Trainer(cfg, loaded=loaded, image_set=ims).run()
                vals.append(r.metrics)
            mean = {k: sum(v[k] for v in vals) / len(vals) for k in ("gacc", "pacc", "auroc", "h_score")}
            rows.append((dom, method, mean))
            print(f"{dom:7s} {method:10s} GACC {mean['gacc']*100:5.1f}  PACC {mean['pacc']*100:5.1f}  "
                  f"AUROC {mean['auroc']*100:5.1f}  H {mean['h_score']*100:5.1f}   ({time.time() - t0:.0f} s)",
                  flush=True)
    print("\n| domain | method | GACC | PACC | AUROC | H-score |\n|---|---|---|---|---|---|")
    for dom, method, m in rows:
        print(f"| {dom} | {method} | {m['gacc']*100:.1f} | {m['pacc']*100:.1f} | {m['auroc']*100:.1f} | "
              f"{m['h_score']*100:.1f} |")
    print(f"\n{len(args.seeds)} seed(s) {args.seeds}; epochs {args.epochs}, batch {args.batch_size}, lr {args.lr}; "
          f"{time.time() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
