"""How many image-tower passes a lesson and an Explore cost, before and after the feature store (issue 32), in one
run.

    python bench/tower_passes.py            # the lesson on Shapes sketch (540 images, built-in model), 2 epochs
    python bench/tower_passes.py --quick    # smoke run: 36 images, 1 epoch (the test suite runs this)

Each side runs in its own process, each mode from an empty cache root: "before" is this project at ``--before`` (a
commit before the store, unpacked with ``git archive``), "after" is this tree. Both run the same script: the
lesson (zero-shot, TENT, IM, UEO, the oracle, one after another on the same images, as the app runs it), then
Explore's features of the UEO run, once with the whole tower learning (the default) and once with ``prompt_only``.
Every batch through the open_clip image tower is counted (``CLIP.encode_image``), split into inference passes
(no gradient: zero-shot, evaluations, caches, Explore) and training steps; a pass is the folder's images once.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "9766834"  # main before the feature store: each run paid its own zero-shot pass, Explore two

# what each side runs (in a fresh process, the side's tree first on sys.path): prints one JSON line
SIDE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import open_clip, torch
counts = {"inference": 0, "training": 0}
real = open_clip.model.CLIP.encode_image
def counted(self, image, *a, **k):
    counts["training" if torch.is_grad_enabled() else "inference"] += len(image)
    return real(self, image, *a, **k)
open_clip.model.CLIP.encode_image = counted
from ueo_core.config import RunConfig
from ueo_core.data import load_data
from ueo_core.lesson import Lesson
from ueo_core import explore
spec, epochs, runs = sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = {}
import os
cache = os.environ["UEO_CACHE"]
for mode in (None, "prompt_only"):
    os.environ["UEO_CACHE"] = f"{cache}/{mode or 'full'}"  # each mode from an empty cache
    ims = load_data(spec, preset="shapes")
    base = RunConfig(data=spec, preset="shapes", epochs=epochs, lr_prompt=0.05, lr_visual=0.05, seed=7,
                     fast_mode=mode)
    made = Lesson(base, ims, f"{runs}/{mode or 'full'}").run()
    lesson = dict(counts)
    for k in counts: counts[k] = 0
    explore.run_features(made["ueo"])
    out[mode or "full"] = {"n": len(ims), "lesson": lesson, "explore": dict(counts)}
    for k in counts: counts[k] = 0
print("RESULT " + json.dumps(out))
"""


def side(tree: Path, spec: str, epochs: int, work: Path) -> dict:
    env = {**os.environ, "UEO_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("UEO_RAY_ADDRESS", None)  # the lesson runs in this process
    p = subprocess.run([sys.executable, "-c", SIDE, str(tree), spec, str(epochs), str(work / "runs")], cwd=tree,
                       env=env, capture_output=True, text=True)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        raise SystemExit(f"{tree}: exited {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT "):])


def unpack(commit: str, dst: Path) -> Path:
    """The project at ``commit`` (``git archive``: the working tree is not touched)."""
    dst.mkdir(parents=True)
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=arch, check=True)
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="36 images, 1 epoch (a check that it runs)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--before", default=BEFORE, help="the commit to compare with (default: main before the store)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    from quick import QUICK_NOTE, shapes_spec
    sys.path.insert(0, str(ROOT))
    spec = shapes_spec("sketch", args.quick)
    epochs = 1 if args.quick else args.epochs
    if args.quick:
        print(QUICK_NOTE)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        got = {"before": side(unpack(args.before, tmp / "before-tree"), spec, epochs, tmp / "before"),
               "after": side(ROOT, spec, epochs, tmp / "after")}
    print(f"\nImage-tower passes (the folder's images once = 1 pass), Shapes sketch, the lesson's 5 methods, "
          f"{epochs} epoch(s); before = {args.before}\n")
    print("| mode | what | before: inference | before: training | after: inference | after: training | "
          "inference passes saved |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("full", "prompt_only"):
        for what in ("lesson", "explore"):
            b, a = got["before"][mode], got["after"][mode]
            n = a["n"]
            cell = lambda d, k: f"{d[what][k] / n:.2f}"  # noqa: E731
            saved = (b[what]["inference"] - a[what]["inference"]) / n
            print(f"| {mode} | {what} | {cell(b, 'inference')} | {cell(b, 'training')} | {cell(a, 'inference')} | "
                  f"{cell(a, 'training')} | {saved:.2f} |")
    print(json.dumps(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
