"""Label estimates (issue 31, part 4): how often does each 95 % interval of ``ueo_core.estimate`` cover the true
value, when a person labels a uniformly random sample of a Shapes run?

    python bench/label_coverage.py                          # trains UEO on Shapes · sketch into a temp folder
    python bench/label_coverage.py --run /tmp/m31/photo-ueo # a finished run
    python bench/label_coverage.py --quick                  # smoke run: 36 images, 1 epoch, 20 draws of 12 labels

1. The run's predictions at its own MSP threshold (as Inspect opens); the true values are the metrics on all the
   run's images from the folder's ground truth (``estimate.true_values``, the definitions of
   ``metrics.compute_metrics``).
2. ``--draws`` (200) seeded draws: draw d labels the first ``--labels`` (40) images of the app's random order
   (``labels.random_order(preds, seed=d)``: a simple random sample without replacement) with their ground truth,
   as a person who never errs would, and asks ``estimate.estimate`` (random sample only).
3. Per estimate: how often its interval holds the true value (among the draws with enough labels), the mean
   interval width, and how often it said "too few labels". Beside the AUROC that ``estimate`` reports
   (``estimate.AUROC_METHOD``), the other bootstrap intervals on the same draws, which chose it.

A coverage under 90 % means the interval method is wrong (the issue's rule). The last line:
coverage known_accuracy=<%> unknown_rejected=<%> auroc=<%>
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from quick import QUICK_NOTE, shapes_spec  # noqa: E402

GOAL = 0.90
OTHER_AUROC = ("percentile", "basic", "BCa")  # scipy.stats.bootstrap's methods, compared on the same draws


def train(out: Path, quick: bool) -> Path:
    """UEO on Shapes · sketch with the app's quick settings (``train shapes:sketch --epochs 5 --lr-prompt 0.05
    --lr-visual 0.05``)."""
    from studio.advice import suggested_settings
    from ueo_core.config import RunConfig
    from ueo_core.models import BUILTIN_MODEL
    from ueo_core.train import Trainer
    q = suggested_settings(BUILTIN_MODEL)
    cfg = RunConfig(data=shapes_spec("sketch", quick), method="ueo", epochs=1 if quick else q["epochs"],
                    batch_size=q["batch_size"], lr_prompt=q["lr_prompt"], lr_visual=q["lr_visual"], run_dir=str(out),
                    preset="shapes" if quick else None)
    r = Trainer(cfg).run()
    print(f"trained UEO on {'quick ' if quick else ''}Shapes · sketch in {r.seconds:.0f} s", flush=True)
    return out


def simulate(run: Path, draws: int, n_labels: int, compare: bool) -> dict:
    from ueo_core.analysis import read_predictions
    from ueo_core.estimate import ESTIMATES, _auc, auroc_interval, estimate, true_values
    from ueo_core.labels import UNKNOWN_LABEL, random_order
    from ueo_core.analysis.predictions import run_threshold

    preds = read_predictions(run)
    if preds.truth is None:
        raise SystemExit(f"{run}: its folder has no ground truth; coverage cannot be measured.")
    thr = run_threshold(run)[0]
    truth = true_values(preds, thr)
    names = {i: (preds.classes[t] if t >= 0 else UNKNOWN_LABEL) for i, t in enumerate(preds.truth)}
    rows = {k: {"covered": 0, "counted": 0, "width": [], "too_few": 0} for k in ESTIMATES}
    other = {m: {"covered": 0, "counted": 0, "width": []} for m in OTHER_AUROC} if compare else {}
    youden = []
    t0 = time.time()
    for d in range(draws):
        picked = random_order(preds, seed=d)[:n_labels]
        labels = {preds.paths[i]: names[int(i)] for i in picked}
        est = estimate(preds, thr, labels, random_only=True)
        for k, r in rows.items():
            e = est[k]
            if e["value"] is None:
                r["too_few"] += 1
                continue
            r["counted"] += 1
            r["covered"] += int(e["low"] - 1e-12 <= truth[k] <= e["high"] + 1e-12)
            r["width"].append(e["high"] - e["low"])
        if est["threshold_youden"] is not None:
            youden.append(est["threshold_youden"])
        if compare and est["auroc"]["value"] is not None:
            t = preds.truth[picked]
            v = preds.confidence[picked]
            for m, r in other.items():
                low, high = auroc_interval(v[t >= 0], v[t < 0], method=m)
                r["counted"] += 1
                r["covered"] += int(low - 1e-12 <= truth["auroc"] <= high + 1e-12)
                r["width"].append(high - low)
            assert abs(_auc(v[t >= 0], v[t < 0]) - est["auroc"]["value"]) < 1e-12
    return {"rows": rows, "other": other, "truth": truth, "threshold": thr, "n_images": len(preds),
            "youden": youden, "seconds": time.time() - t0}


def share(r: dict) -> str:
    return f"{r['covered'] / r['counted']:.1%} ({r['covered']}/{r['counted']})" if r["counted"] else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a finished Shapes run (default: train UEO on Shapes · sketch into a temp folder)")
    ap.add_argument("--draws", type=int, default=200, help="seeded draws of random labels (default %(default)s)")
    ap.add_argument("--labels", type=int, default=40, help="labels per draw (default %(default)s)")
    ap.add_argument("--no-compare", action="store_true", help="skip the other AUROC bootstrap methods")
    ap.add_argument("--quick", action="store_true", help="smoke run at tiny sizes (tests/test_benches.py)")
    args = ap.parse_args()
    if args.quick:
        print(QUICK_NOTE)
        args.draws, args.labels = min(args.draws, 20), min(args.labels, 12)
    from ueo_core.estimate import AUROC_METHOD, AUROC_RESAMPLES, ESTIMATES, MIN_LABELS
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train(Path(tmp) / "ueo-sketch", args.quick)
        res = simulate(run, args.draws, args.labels, compare=not args.no_compare)
    t = res["truth"]
    print(f"\n{run.name}: {res['n_images']} images, MSP threshold {res['threshold']:.4f} (the run's own); "
          f"{args.draws} draws of {args.labels} random labels; too few = under {MIN_LABELS} labels of a kind; "
          f"{res['seconds']:.0f} s\n")
    print("| estimate | true value | covered | mean width | too few |")
    print("|---|---|---|---|---|")
    for k, r in res["rows"].items():
        how = f"{AUROC_METHOD} bootstrap, {AUROC_RESAMPLES}" if k == "auroc" else "exact (Clopper-Pearson)"
        width = f"{np.mean(r['width']):.3f}" if r["width"] else "-"
        print(f"| {ESTIMATES[k]} ({how}) | {t[k]:.3f} | {share(r)} | {width} | {r['too_few']}/{args.draws} |")
    for m, r in res["other"].items():
        width = f"{np.mean(r['width']):.3f}" if r["width"] else "-"
        print(f"| AUROC ({m} bootstrap, {AUROC_RESAMPLES}; same draws) | {t['auroc']:.3f} | {share(r)} | {width} "
              f"| - |")
    if res["youden"]:
        y = np.asarray(res["youden"])
        print(f"\nYouden threshold from the labels: median {np.median(y):.4f}, 5-95 % {np.quantile(y, 0.05):.4f}-"
              f"{np.quantile(y, 0.95):.4f} (the run's own {res['threshold']:.4f})")
    cov = {k: (r["covered"] / r["counted"] if r["counted"] else float("nan")) for k, r in res["rows"].items()}
    low = [k for k, c in cov.items() if c < GOAL]
    if low and not args.quick:
        print(f"\nUNDER {GOAL:.0%}: {', '.join(low)} (the interval method is wrong)")
    print("coverage " + " ".join(f"{k}={c * 100:.1f}" for k, c in cov.items()))
    return 1 if low and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
