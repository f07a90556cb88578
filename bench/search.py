"""Search (issue 30): does a query for each Shapes shape find that shape, and how long does a query take once the
run's search worker is warm?

    python bench/search.py             # UEO on Shapes · sketch (540 images, the app's quick settings), a local Ray
    python bench/search.py --quick     # smoke run: 36 images, 1 epoch, 3 queries of each kind (tests/test_benches.py)

1. Trains UEO on Shapes · sketch with the built-in model and the app's quick settings (``train shapes:sketch
   --epochs 5 --lr-prompt 0.05 --lr-visual 0.05``) and computes Explore's features (before = zero-shot, after =
   adapted), as the exploration job does.
2. For each of the 9 shape names: the true folder of the first result and precision@20 (the share of the top 20
   whose true folder is that shape), on the zero-shot features and on the adapted ones, for each way the text
   becomes a feature (``ueo_core.search.PROMPTS``).
3. On UEO_RAY_ADDRESS's Ray, else a local Ray of its own (its own temp dir), asks the run's search worker, as the app does (``ueo_core.jobs.search``):
   the cold start (first query: the worker starts, loads the model and the cached features), then text and
   "more like this" queries interleaved, each timed from the caller (the web server's view), beside the same
   queries in-process (no Ray); and the warm worker's resident memory.

Last line: search p_at_20_after=<mean> rank1_after=<n>/9 text_median_ms=<ms> like_median_ms=<ms> cold_s=<s>
(p_at_4 in quick mode: 4 images a shape)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from quick import QUICK_NOTE, shapes_spec  # noqa: E402
from studio.advice import suggested_settings  # noqa: E402
from ueo_core.models import BUILTIN_MODEL  # noqa: E402
from ueo_core.shapes import SHAPES  # noqa: E402

GOAL_MS = 1000.0


def train(spec: str, out: Path, quick: bool) -> Path:
    from ueo_core.config import RunConfig
    from ueo_core.train import Trainer
    q = suggested_settings(BUILTIN_MODEL)  # the app's quick settings: 5 epochs, batch 64, SGD lr 0.05
    cfg = RunConfig(data=spec, method="ueo", epochs=1 if quick else q["epochs"], batch_size=q["batch_size"],
                    lr_prompt=q["lr_prompt"], lr_visual=q["lr_visual"], run_dir=str(out),
                    preset="shapes" if quick else None)
    r = Trainer(cfg).run()
    print(f"UEO on {spec if not quick else 'quick Shapes sketch'}: GACC {r.metrics_before['gacc'] * 100:.1f} → "
          f"{r.metrics['gacc'] * 100:.1f}, AUROC {r.metrics_before['auroc'] * 100:.1f} → "
          f"{r.metrics['auroc'] * 100:.1f} ({r.seconds:.0f} s)", flush=True)
    return out


def precision_table(run: Path) -> dict:
    """{(map, prompt): {shape: (rank-1 true folder, precision@k)}, "k": k}: k = 20 (fewer when a shape has fewer
    images)."""
    from ueo_core.search import PROMPTS, Searcher
    s = Searcher(run, maps=("before", "after"))
    truth = [Path(p).parent.name for p in s.preds["after"].paths]
    k = min(20, min(truth.count(shape) for shape in SHAPES))  # 20, or fewer in quick mode (4 images a shape)
    out = {"k": k}
    for which in ("before", "after"):
        for prompt in PROMPTS:
            row = {}
            for shape in SHAPES:
                hits = s.text(shape, top=k, which=which, prompt=prompt)
                row[shape] = (truth[hits[0].index], sum(truth[h.index] == shape for h in hits) / len(hits))
            out[(which, prompt)] = row
    return out


def print_precision(table: dict, known: set) -> tuple[float, int]:
    from ueo_core.search import DEFAULT_PROMPT, PROMPTS
    cols = [("before", DEFAULT_PROMPT)] + [("after", p) for p in PROMPTS]
    name = {"before": "zero-shot", "after": "adapted"}
    print(f"\nprecision@{table['k']} (and the first result's true shape when it is not the query's)\n")
    print("| query | " + " | ".join(f"{name[w]}, {p}" + (" (default)" if w == "after" and p == DEFAULT_PROMPT
                                                          else "") for w, p in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for shape in SHAPES:
        cells = []
        for c in cols:
            first, p20 = table[c][shape]
            cells.append(f"{p20 * 100:.0f} %" + ("" if first == shape else f" (1st: {first})"))
        print(f"| {shape}{'' if shape in known else ' (unknown)'} | " + " | ".join(cells) + " |")
    means = [statistics.mean(table[c][s][1] for s in SHAPES) for c in cols]
    firsts = [sum(table[c][s][0] == s for s in SHAPES) for c in cols]
    print("| **mean** (rank 1 right) | " + " | ".join(f"**{m * 100:.1f} %** ({f}/9)" for m, f in zip(means, firsts))
          + " |")
    default = cols.index(("after", DEFAULT_PROMPT))
    return means[default], firsts[default], table["k"]


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def latency(run: Path, n: int) -> dict:
    """Cold start and warm queries through the worker on a local Ray of the bench's own; the same queries
    in-process beside them."""
    import ray
    from ueo_core import cluster, jobs
    from ueo_core.analysis import read_predictions
    from ueo_core.search import Searcher
    own = cluster.configured_address() is None  # UEO_RAY_ADDRESS (tests/test_benches.py's Ray), else one of its own
    temp = tempfile.mkdtemp(prefix="ueo-ray-bench-", dir="/tmp") if own else None
    if own:
        os.environ["UEO_RAY_ADDRESS"] = cluster.start_local_head(state_dir=Path(temp) / "state", slots=1,
                                                                 temp_dir=temp)
    out: dict = {}
    try:
        cluster.connect()
        n_images = len(read_predictions(run))
        t = time.perf_counter()
        jobs.search(run, "text", "star", top=20)
        out["cold_s"] = time.perf_counter() - t
        texts = [SHAPES[i % len(SHAPES)] if i % 2 else f"a {SHAPES[i % len(SHAPES)]}" for i in range(n)]
        likes = [(7 * i + 3) % n_images for i in range(n)]
        for q, i in zip(texts[:3], likes[:3]):  # warm-up: the first calls of each path
            jobs.search(run, "text", q)
            jobs.search(run, "like", i)
        ray_t, ray_l = [], []
        for q, i in zip(texts, likes):  # interleaved, so that both kinds see the same machine
            t = time.perf_counter()
            jobs.search(run, "text", q, top=20)
            ray_t.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            jobs.search(run, "like", i, top=20)
            ray_l.append((time.perf_counter() - t) * 1000)
        out["ray"] = {"text": ray_t, "like": ray_l}
        actor = ray.get_actor(f"search:{run.name}", namespace=cluster.NAMESPACE)
        pid = ray.get(actor.pid.remote())
        status = Path(f"/proc/{pid}/status").read_text()
        field = lambda k: int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith(k))) / 1024  # noqa
        out["rss_mb"], out["anon_mb"] = field("VmRSS:"), field("RssAnon:")
        s = Searcher(run)  # in-process: the CLI's path, no Ray round trip
        s.text("star"), s.like(0)
        loc_t, loc_l = [], []
        for q, i in zip(texts, likes):
            t = time.perf_counter()
            s.text(q, top=20)
            loc_t.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            s.like(i, top=20)
            loc_l.append((time.perf_counter() - t) * 1000)
        out["local"] = {"text": loc_t, "like": loc_l}
    finally:
        try:
            ray.kill(ray.get_actor(f"search:{run.name}", namespace=cluster.NAMESPACE), no_restart=True)
        except Exception:  # never started, or already gone
            pass
        ray.shutdown()
        if own:
            cluster.stop_local_head(temp)
            shutil.rmtree(temp, ignore_errors=True)
            os.environ.pop("UEO_RAY_ADDRESS", None)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=30, help="timed queries of each kind (default %(default)s)")
    ap.add_argument("--run", help="an existing UEO run on Shapes to search instead of training one")
    ap.add_argument("--quick", action="store_true", help="smoke run: 36 images, 1 epoch, 3 queries of each kind")
    args = ap.parse_args(argv)
    if args.quick:
        print(QUICK_NOTE, flush=True)
        args.queries = 3
    from ueo_core import explore
    from ueo_core.analysis import read_predictions
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ueo-search-bench-") as tmp:
        run = Path(args.run) if args.run else train(shapes_spec("sketch", args.quick), Path(tmp) / "run", args.quick)
        t = time.time()
        explore.run_features(run)  # what the exploration job computes (and caches) before the page offers search
        print(f"Explore's features (before and after): {time.time() - t:.1f} s", flush=True)
        preds = read_predictions(run)
        known = set(preds.classes)
        p20, first, k = print_precision(precision_table(run), known)
        lat = latency(run, args.queries)
    print(f"\nquery latency, {args.queries} queries of each kind after warm-up, interleaved; {os.cpu_count()} CPU "
          f"cores; {len(preds)} images\n")
    print("| query | warm worker on Ray: median / p90 | in-process (CLI): median / p90 | goal |\n|---|---|---|---|")
    for kind, label in (("text", "text ('a star', …)"), ("like", "more like this (an image)")):
        r, loc = lat["ray"][kind], lat["local"][kind]
        ok = "met" if pct(r, 0.9) <= GOAL_MS else "**not met**"
        print(f"| {label} | {statistics.median(r):.1f} / {pct(r, 0.9):.1f} ms | {statistics.median(loc):.1f} / "
              f"{pct(loc, 0.9):.1f} ms | ≤ 1 s: {ok} |")
    print(f"\ncold start (first query: the worker starts, loads the model and the cached features): "
          f"{lat['cold_s']:.1f} s · warm worker resident memory {lat['rss_mb']:.0f} MB ({lat['anon_mb']:.0f} MB "
          f"anonymous) · bench {time.time() - t0:.0f} s in all")
    print(f"search p_at_{k}_after={p20:.3f} rank1_after={first}/9 "
          f"text_median_ms={statistics.median(lat['ray']['text']):.1f} "
          f"like_median_ms={statistics.median(lat['ray']['like']):.1f} cold_s={lat['cold_s']:.1f}")
    if args.quick:
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
