"""CLIPood (labelled source) vs zero-shot vs UEO (no labels) on Shapes with the built-in model (README, issue 5).

    python bench/clipood_table.py
    python bench/clipood_table.py --quick      # smoke run: sketch, 1 learning rate, 1 epoch of 2 steps, 36 images

Source = the flat domain with its labels (6 known shapes; crosses/arrows are not in the prior, so not trained on);
targets = sketch and photo, evaluated with the same prior (crosses/arrows there are the unknowns). A last row per
target trains on the two other domains' labels (as CLIPood is meant to be used: several source domains).
CLIPood runs with its official defaults (RunConfig: 10 epochs of 500 steps, batch 12 per source, AdamW wd 0.1,
lambda 0.3, Beta(0.5, 0.5)); ``--iters-per-epoch 0`` takes one pass over the largest source instead.
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
from ueo_core.models import BUILTIN_MODEL  # noqa: E402
from ueo_core.train import Trainer  # noqa: E402

_q = suggested_settings(BUILTIN_MODEL)  # the app's quick settings for the built-in model, as bench/world_table.py
UEO_QUICK = {k: _q[k] for k in ("epochs", "batch_size", "lr_prompt", "lr_visual")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=["sketch", "photo"])
    ap.add_argument("--clipood-lrs", type=float, nargs="+", default=[5e-6, 1e-4],
                    help="AdamW learning rates to try (5e-6 = official PACS script)")
    ap.add_argument("--epochs", type=int, default=None, help="CLIPood epochs (default: the official 10)")
    ap.add_argument("--iters-per-epoch", type=int, default=None, help="CLIPood steps per epoch (default: the "
                    "official 500; 0: one pass over the largest source)")
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--quick", action="store_true", help="smoke run: sketch, 1 learning rate, 1 epoch of 2 steps, "
                                                             "36 images per domain")
    args = ap.parse_args(argv)
    ueo = UEO_QUICK
    if args.quick:  # every row kind still runs, on few images and steps
        print(QUICK_NOTE, flush=True)
        args.targets, args.clipood_lrs, args.epochs, args.iters_per_epoch = ["sketch"], args.clipood_lrs[:1], 1, 2
        ueo = {**UEO_QUICK, "epochs": 1}
    spec = lambda d: shapes_spec(d, args.quick)  # noqa: E731
    rows, t0 = [], time.time()
    for tgt in args.targets:
        ims = load_shapes(tgt, args.quick)
        runs = [("zero-shot", RunConfig(data=spec(tgt), preset="shapes", method="zero_shot", seed=args.seed)),
                ("UEO (no labels)", RunConfig(data=spec(tgt), preset="shapes", method="ueo", seed=args.seed, **ueo))]
        clipood = dict(method="clipood", data=spec(tgt), preset="shapes", epochs=args.epochs, seed=args.seed,
                       options={"iters_per_epoch": args.iters_per_epoch})
        for lr in args.clipood_lrs:
            runs.append((f"CLIPood lr {lr:g} (flat labels)", RunConfig(source=[spec("flat")], lr_visual=lr,
                                                                        **clipood)))
        others = [d for d in ("flat", "photo", "sketch") if d != tgt]
        runs.append((f"CLIPood lr {args.clipood_lrs[0]:g} ({' + '.join(others)} labels)",
                     RunConfig(source=[spec(d) for d in others], lr_visual=args.clipood_lrs[0], **clipood)))
        for name, cfg in runs:
            tr = Trainer(cfg, image_set=ims)
            r = tr.run()
            last = tr.outcome.get("last")
            rows.append((tgt, name, r.metrics, last))
            extra = f"  (last model: GACC {last['gacc']*100:.1f} AUROC {last['auroc']*100:.1f})" if last else ""
            print(f"{tgt:7s} {name:28s} GACC {r.metrics['gacc']*100:5.1f} AUROC {r.metrics['auroc']*100:5.1f} "
                  f"H {r.metrics['h_score']*100:5.1f}{extra}   ({time.time() - t0:.0f} s)", flush=True)
    print("\n| target | method | GACC | AUROC | H-score | last model (GACC / AUROC) |\n|---|---|---|---|---|---|")
    for tgt, name, m, last in rows:
        lst = f"{last['gacc']*100:.1f} / {last['auroc']*100:.1f}" if last else "–"
        print(f"| {tgt} | {name} | {m['gacc']*100:.1f} | {m['auroc']*100:.1f} | {m['h_score']*100:.1f} | {lst} |")
    c = runs[-1][1]
    o = c.options
    print(f"\nseed {args.seed}; CLIPood: {c.epochs} epochs of {o['iters_per_epoch'] or 'one pass of'} steps, batch "
          f"{c.batch_size} per source, AdamW wd {o['weight_decay']:g}, lambda {o['margin']:g}, beta {o['bma_beta']:g}; "
          f"{time.time() - t0:.0f} s in all")
    if args.quick:
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
