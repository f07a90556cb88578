"""Groups among the rejected, with suggested names (issue 31): are the run's unknown classes found and named, and are
the known images it rejected recognised as such?

    python bench/unknowns.py /tmp/m31/sketch-ueo /tmp/m31/photo-ueo     # finished run folders (read only)
    python bench/unknowns.py RUN --variants default                     # the default settings only
    python bench/unknowns.py RUN --json                                 # the tables as JSON (one object per run)

For each run folder and each variant (the naming prompt: the template's words or the run's learned context; the
vocabulary: the model's own, or with ImageNet's 1,000 names added for the built-in model), ``ueo_core.unknowns``
groups the images the run rejects (its own threshold, MSP) and names them; this prints, per group: its size, its
true composition (predictions.csv's true folders), its top-3 names with their cosine similarity, the nearest prior
class and whether the group is flagged "probably rejected by mistake". Then one line per variant:

    named: the unknown folders (those not in the prior) that some group, mostly of that folder, has among its
           top-3 names (the issue's bar on Shapes · sketch: at least 2 of cross, arrow, rectangle);
    flags: groups mostly of a known class flagged as such (right), not flagged (missed); groups mostly of an
           unknown class flagged (wrong).

The image features are Explore's (the disk cache: the first run computes them). Nothing is written into the run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ueo_core.unknowns import group_unknowns, prior_names  # noqa: E402

VARIANTS = {"default": dict(prompt="template", imagenet=None),
            "learned": dict(prompt="learned", imagenet=None),
            "imagenet": dict(prompt="template", imagenet=True),
            "learned+imagenet": dict(prompt="learned", imagenet=True)}


def majority(truth: dict) -> str:
    return max(truth, key=lambda k: (truth[k], k)) if truth else ""


def summary(res: dict, prior: list[str]) -> dict:
    """The variant's acceptance figures (needs ground truth: the groups' true folders)."""
    known = {p.lower() for p in prior}
    unknown_folders = sorted({f for g in res["groups"] for f in (g["truth"] or {}) if f and f.lower() not in known})
    named = sorted({majority(g["truth"]) for g in res["groups"]
                    if majority(g["truth"]) in unknown_folders
                    and majority(g["truth"]).lower() in [d["name"].lower() for d in g["names"]]})
    of_known = [g for g in res["groups"] if majority(g["truth"]).lower() in known]
    return {"unknown_folders": unknown_folders, "named": named,
            "flag_right": sum(g["mistaken"] for g in of_known), "flag_missed": sum(not g["mistaken"] for g in of_known),
            "flag_wrong": sum(g["mistaken"] for g in res["groups"] if majority(g["truth"]) in unknown_folders)}


def table(res: dict) -> list[str]:
    rows = [f"{'group':>5} {'size':>4}  {'true composition':<34} {'top-3 names (cosine)':<58} nearest prior"]
    for n, g in enumerate(res["groups"], 1):
        truth = ", ".join(f"{k} {v}" for k, v in (g["truth"] or {}).items()) or "(no ground truth)"
        names = "; ".join(f"{d['name']} {d['similarity']:.3f}" for d in g["names"])
        near = g["nearest_prior"]
        flag = "  ← probably rejected by mistake" if g["mistaken"] else ""
        rows.append(f"{n:>5} {g['size']:>4}  {truth:<34} {names:<58} "
                    f"{near['name'] + ' ' + format(near['similarity'], '.3f') if near else '-'}{flag}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="finished run folders")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--groups", type=int, default=0, help="k (default: by silhouette)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from ueo_core.search import Searcher
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s): {', '.join(unknown)}")
    out = []
    for run in args.runs:
        t0 = time.time()
        s = Searcher(run)
        load_s = time.time() - t0
        prior = prior_names(s.config)
        for v in variants:
            t0 = time.time()
            res = group_unknowns(s, groups=args.groups or None, **VARIANTS[v])
            first_s = time.time() - t0
            t0 = time.time()
            group_unknowns(s, groups=args.groups or None, **VARIANTS[v])  # a second call: the names are cached
            again_s = time.time() - t0
            summ = summary(res, prior)
            out.append({"run": str(run), "variant": v, **summ, "how": res["how"], "vocabulary": res["vocabulary"],
                        "seconds": {"load": round(load_s, 2), "first": round(first_s, 2), "again": round(again_s, 2)},
                        "groups": [{k: g[k] for k in ("size", "truth", "names", "nearest_prior", "mistaken")}
                                   for g in res["groups"]]})
            if args.json:
                continue
            print(f"\n== {run} · {v} ({VARIANTS[v]['prompt']} prompt, vocabulary of {res['vocabulary']}: "
                  f"{res['vocabulary_from']})")
            print(f"{res['rejected']} of {res['images']} rejected (msp threshold {res['threshold']:.3f}); {res['how']}")
            print("\n".join(table(res)))
            print(f"named: {len(summ['named'])}/{len(summ['unknown_folders'])} unknown folders "
                  f"({', '.join(summ['named']) or 'none'} of {', '.join(summ['unknown_folders'])}); "
                  f"flags: {summ['flag_right']} right, {summ['flag_missed']} missed, {summ['flag_wrong']} wrong; "
                  f"seconds: model+features {load_s:.1f}, first grouping {first_s:.2f}, again {again_s:.2f}")
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
