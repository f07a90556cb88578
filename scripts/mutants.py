"""Deliberate bugs, one at a time, each in a temporary copy of the project: the fast tests must fail ("killed") for
every one. A mutant that survives names a place where the suite would let the trainer drift.

    python scripts/mutants.py            # every mutant
    python scripts/mutants.py --list     # what they are
    python scripts/mutants.py --only 3 7

First an unmutated copy must pass (else every mutant would look killed). Each copy runs ``pytest -x -q -m "not slow"`` over every test file, the engine's first (stopping at the first
failure, so a killed mutant is quick); the original tree is never touched. Prints one line per mutant and ends with ``killed=<n> survived=<n>``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (what, file, original text, mutated text): each original must occur exactly once in its file
MUTANTS = [
    ("drop the cosine learning-rate schedule", "ueo_core/train/loop.py",
     "                schedule.step()\n", "                pass\n"),
    ("evaluate on unscaled cosines (studio protocol)", "ueo_core/train/trainer.py",
     'probs = torch.softmax(self.scale("eval") * cos, dim=1)', "probs = torch.softmax(cos, dim=1)"),
    ("zero-shot weights at temperature 1 (studio protocol)", "ueo_core/methods/ueo.py",
     'run.scale("weights") if t is None else t', "1.0 if t is None else t"),
    ("train at x100 under the studio protocol", "ueo_core/train/loop.py",
     'logits = tr.scale("train") * feats', "logits = 100.0 * feats"),
    ("SGD with momentum 0.9", "ueo_core/methods/base.py",
     "return torch.optim.SGD(groups)", "return torch.optim.SGD(groups, momentum=0.9)"),
    ("SGD with weight decay", "ueo_core/methods/base.py",
     "return torch.optim.SGD(groups)", "return torch.optim.SGD(groups, weight_decay=5e-4)"),
    ("weight the marginal by w instead of 1/w", "ueo_core/methods/ueo.py",
     "marg = entropy(weighted_marginal(probs, 1.0 / weight))", "marg = entropy(weighted_marginal(probs, weight))"),
    ("BMA horizon x10 with beta 5", "ueo_core/methods/clipood.py",
     "BetaMovingAverage(dict(run.visual_params), run.total_steps, options.bma_beta)",
     "BetaMovingAverage(dict(run.visual_params), run.total_steps * 10, 5.0)"),
    ("flip the sign of CLIPood's margin", "ueo_core/methods/clipood.py",
     "return scale * (features - margin * text[labels]) @ text.T",
     "return scale * (features + margin * text[labels]) @ text.T"),
    ("norm selection without LayerNorm", "ueo_core/methods/base.py",
     "NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)",
     "NORM_TYPES = (nn.GroupNorm, nn.modules.batchnorm._BatchNorm)"),
    ("skip model.eval()", "ueo_core/train/trainer.py",
     "        model.eval()  # always:", "        pass  # always:"),
    ("known/unknown threshold: the median instead of 2-means", "ueo_core/metrics.py",
     "    return float(centres.mean())", "    return float(np.median(conf))"),
    ("H-score from image-level known accuracy", "ueo_core/metrics.py",
     '"h_score": _harmonic(acc_class, acc_unknown)', '"h_score": _harmonic(acc_image, acc_unknown)'),
    ("UEO without the marginal term's lambda", "ueo_core/methods/ueo.py",
     "return cond - trade * marg,", "return cond - marg,"),
    ("CLIPood: one pass over the source per epoch instead of iters_per_epoch", "ueo_core/methods/clipood.py",
     'return self.cfg.options["iters_per_epoch"] or math.ceil(', "return math.ceil("),
    ("CLIPood's defaults not read from its registry entry (a plain RunConfig gets UEO's)", "ueo_core/config.py",
     "for k, v in method_defaults(self.method).items():", 'for k, v in method_defaults("*").items():'),
    # the loop's seams (issue 20): a hook, a feature source, a batch source, resume
    ("a method hook not called: after_step (CLIPood's moving average never updates)", "ueo_core/train/loop.py",
     "                method.after_step(ctx)\n", "                pass\n"),
    ("a method hook not called: end_epoch (no checkpoint per epoch)", "ueo_core/train/loop.py",
     "            method.end_epoch(tr.view, ctx, epoch)\n", "            pass\n"),
    ("the full-tower feature source skips the prompt (its text gets no gradient)", "ueo_core/train/features.py",
     "        return feats, text()\n", "        return feats, text().detach()\n"),
    ("the cached feature source always reads view 0", "ueo_core/train/batches.py",
     "view=torch.randint(self.cfg.fast_views, (len(chunk),), generator=gen)",
     "view=torch.zeros(len(chunk), dtype=torch.long)"),
    ("labelled sources: only the first source per step", "ueo_core/methods/clipood.py",
     "for d, ds in enumerate(self.sets):", "for d, ds in enumerate(self.sets[:1]):"),
    ("resume without the schedule's fast-forward", "ueo_core/train/checkpoint.py",
     "    for _ in range(steps):\n", "    for _ in range(0):\n"),
    ("the estimate times UEO's loss whatever the method", "ueo_core/train/estimate.py",
     "loss, _, _ = step_loss(tr, ctx, next(iter(tr.batches.epoch(1))))",
     "loss, _, _ = step_loss(tr, ctx, next(iter(tr.batches.epoch(1)))) if tr.method.name == 'ueo' else "
     "(tr.prompt.ctx.sum(), None, None)"),
    # the known/unknown scores (issue 21)
    ("energy with the wrong sign", "ueo_core/scores.py",
     "logits, tau: ENERGY_T * logsumexp(", "logits, tau: -ENERGY_T * logsumexp("),
    ("MCM at tau = 1 where tau is set", "ueo_core/scores.py",
     "softmax(cos / tau, axis=1).max(axis=1)", "softmax(cos / 1.0, axis=1).max(axis=1)"),
    ("GEN over every class instead of the M largest", "ueo_core/scores.py",
     "[:, -min(GEN_M, cos.shape[1]):]", "[:, :]"),
    ("AUPR-Out ranked by the score instead of minus the score", "ueo_core/scores.py",
     '"aupr_out": float(average_precision_score(~known, -values))',
     '"aupr_out": float(average_precision_score(~known, values))'),
    # the training-free methods (issue 21)
    ("ZERO keeps all views", "ueo_core/methods/zero.py",
     "[:int(logits.size(0) * keep)]", "[:logits.size(0)]"),
    ("TDA never evicts from its cache", "ueo_core/methods/tda.py",
     "elif item[1] < cache[pred][-1][1]:", "elif False:"),
    ("TDA adds its negative cache instead of subtracting it", "ueo_core/methods/tda.py",
     "final -= cache_logits(", "final += cache_logits("),
    ("Otsu takes the least between-class variance", "ueo_core/metrics.py",
     "return float(edges[1:-1][np.argmax(between)])", "return float(edges[1:-1][np.argmin(between)])"),
    # truth and privacy (issue 29)
    ("a download names an image by the server's path", "ueo_core/privacy.py",
     "                return p.relative_to(r).as_posix()", "                return str(p)"),
    ("Compare calls a run best below chance", "ueo_core/analysis/comparison.py",
     "        if best[key] < chance(best):", "        if False:"),
    ("a collapse called on fewer images than classes", "ueo_core/metrics.py",
     '"collapsed": bool(k > 1 and n >= k and h < limit)', '"collapsed": bool(k > 1 and h < limit)'),
    ("a zip's wrapper folder read as a class when it holds images directly", "ueo_core/archive.py",
     "        if len(dirs) != 1 or any(",
     "        if len(dirs) != 1 or not any(p.is_dir() for p in dirs[0].iterdir()) or any("),
    ("sub-folders that name no prior class read as ground truth", "ueo_core/data.py",
     "    if subdirs and classes and include is None and not any(", "    if False and not any("),
    ("a grown prior's run leaves out one of the first run's settings", "ueo_core/grow.py",
     "settings = {k: v for k, v in cfg.items() if k not in NOT_COPIED}",
     'settings = {k: v for k, v in cfg.items() if k not in NOT_COPIED + ("epochs",)}'),
    ("the grown run's group counted as accepted whatever class it is given", "ueo_core/grow.py",
     "as_new = int((c_acc[gi] & (child.pred[gi] == new_k)).sum())", "as_new = int((c_acc[gi]).sum())"),
    ("a prior given with a preset ignored (a grown prior on a benchmark would not grow)", "ueo_core/data.py",
     "    prior = prior or preset_prior", "    prior = preset_prior"),
    ("a big JPEG drafted at 1/8 whatever the size it is needed at", "ueo_core/data.py",
     "img.draft(None, (-(-w * min_side // short), -(-h * min_side // short)))", "img.draft(None, (w // 8, h // 8))"),
    ("the labels' store without a busy timeout (two tabs at once lose labels)", "ueo_core/labels.py",
     "BUSY_TIMEOUT_MS = 10_000", "BUSY_TIMEOUT_MS = 0"),
    ("estimates count the informative labels as a random sample", "ueo_core/estimate.py",
     "        keep = random\n", "        keep = np.ones_like(random)\n"),
    ("a Wald interval for the labels' proportions instead of the exact one", "ueo_core/estimate.py",
     '    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")\n'
     "    return float(ci.low), float(ci.high)",
     "    p = k / n; h = 1.959964 * (p * (1 - p) / n) ** 0.5\n    return max(0.0, p - h), min(1.0, p + h)"),
    ("what adaptation changed: the zero-shot side judged at the adapted threshold", "ueo_core/analysis/changes.py",
     "d_before = open_set_predictions(b_pred, b_value, t_before)",
     "d_before = open_set_predictions(b_pred, b_value, t_after)"),
    ("what adaptation changed: the zero-shot file not matched by path", "ueo_core/analysis/changes.py",
     "b_pred, b_value = before.pred[order], before.confidence[order]", "b_pred, b_value = before.pred, before.confidence"),
    ("Inspect shows AUPR-Out as the score's AUPR", "studio/changed_panel.py", '("aupr_in", "AUPR")', '("aupr_out", "AUPR")'),
    ("groups among the rejected: k by the lowest silhouette", "ueo_core/unknowns.py",
     "best = max(sil, key=lambda k: (sil[k], -k))", "best = min(sil, key=lambda k: (sil[k], -k))"),
    ("groups among the rejected: the 'rejected by mistake' flag inverted", "ueo_core/unknowns.py",
     'near["similarity"] > names[0]["similarity"]', 'near["similarity"] < names[0]["similarity"]'),
    ("growing the prior from a group passes only its shown images", "studio/unknowns_panel.py",
     'group_paths=list(group["paths"])', 'group_paths=list(group["paths"])[:group["central"]]'),
    ("label panel: the next image ignores the database's labels", "studio/label_panel.py",
     "        if paths[i] not in labelled and paths[i] not in skipped:\n", "        if paths[i] not in skipped:\n"),
    ("label panel: a relabelled image takes the list's source (an informative label joins the random sample)",
     "studio/label_panel.py", "        i, source = index[focus[0]], focus[1]\n", "        i, source = index[focus[0]], which\n"),
    ("Youden's J offered from all labels, informative ones too", "studio/label_panel.py",
     "    est = estimates(rid, preds, 0.0, labels, random_only(rid))\n",
     "    est = estimates(rid, preds, 0.0, labels, False)\n"),
    ("CPU inference never autocast under bf16", "ueo_core/models.py",
     'if loaded.precision == "bf16" and loaded.device.type in ("cpu", "cuda"):',
     'if loaded.precision == "bf16" and loaded.device.type == "cuda":'),
    ("precision auto ignores the bf16 detector", "ueo_core/models.py",
     'return ("bf16", why) if why else ("fp32", "this CPU has no native bf16")',
     'return ("bf16", why or "this CPU has no native bf16")'),
    ("Inspect's run choice follows the session's run on every rerun (a finished run takes over mid-labelling)",
     "studio/pick.py", 'st.session_state.get("_arrived", True) and active in runs', "active in runs"),
    ("resume without loading the optimizer's saved state (AdamW's moments start at zero)",
     "ueo_core/train/checkpoint.py", '            self.optimizer.load_state_dict(saved["optimizer"])\n', '            pass\n'),
    ("resume restarts CLIPood's moving average", "ueo_core/train/checkpoint.py",
     '                self.averager.load_state_dict(saved["averager"])\n', '                pass\n'),
    ("the feature store hands back nothing it holds (every pass encodes again)", "ueo_core/embed.py",
     "        have = store.get(space, digests)\n", "        have = {}\n"),
    ("a run's evaluation never reads the feature store", "ueo_core/train/trainer.py",
     "        if now is None:\n            return self.loaded.variant\n",
     "        if now is None:\n            return None\n"),
    ("the feature space forgets the tower's weights (a random init of another seed reads this one's features)",
     "ueo_core/embed.py", "{loaded.pretrained}|{loaded.weights}|", "{loaded.pretrained}|"),
    ("spread's pass counts Ray as there when this process is not connected", "ueo_core/spread.py",
     "    if not ray.is_initialized():\n        return 0\n",
     "    if not ray.is_initialized():\n        return os.cpu_count() or 0\n"),
    ("spread's chunks do not start on batch boundaries", "ueo_core/spread.py",
     "    per = max(1, -(-n_files // (4 * actors * batch_size))) * batch_size\n",
     "    per = max(1, -(-n_files // (4 * actors * batch_size))) * batch_size + 1\n"),
    ("bench train_precision: autocast's casts counted as plain copies", "bench/train_precision.py",
     'name = CONVERSION if e.name == "aten::copy_" and parent == "aten::_to_copy" else e.name', "name = e.name"),
    ("bench train_precision: frozen bf16 weights also turn the text tower's residual stream to bf16",
     "bench/train_precision.py",
     'towers = [m for m in self.tr.loaded.model.modules() if hasattr(m, "get_cast_dtype")] if s.frozen_bf16 else []',
     "towers = []"),
    ("thumbnail tiles transposed (a hover shows another image)", "ueo_core/thumbs.py",
     "sheet.paste(_fit(img, tile), ((j % per_row) * tile, (j // per_row) * tile))",
     "sheet.paste(_fit(img, tile), ((j // per_row) * tile, (j % per_row) * tile))"),
    ("the exploration job makes no thumbnails", "ueo_core/explore.py",
     '    thumbs.make(read_predictions(run_dir).paths, out, progress=lambda d, n: status("thumbnails", d, n))\n',
     "    pass\n"),
    ("a stale point-map selection is taken", "studio/charts.py",
     'if not sel or sel.get("sig") != sig:', "if not sel:"),
    ("a new selection redraws the page twice", "pages/4_Explore.py",
     "        if polling:  # drawn below this fragment: the page follows the new selection",
     "        if True:  # drawn below this fragment: the page follows the new selection"),
    ("labels_of's fast naming takes a non-plain path by its prefix", "ueo_core/export.py",
     "        if not _plain(q) or len(set(hit)) > 1 or q in roots:", "        if len(set(hit)) > 1 or q in roots:"),
    ("Explore's UMAP bar counts the features' stage as maps (a value of 270 for a bar of 0-1)", "pages/4_Explore.py",
     'maps_done = min(2, status.get("done", 0)) if status.get("stage") == "UMAP" else 0',
     'maps_done = status.get("done", 0)'),
    ("the docs site stops checking anchors (a link into a renamed heading builds)", "mkdocs.yml",
     "    anchors: warn\n", "    anchors: info\n"),
    ("the README links a docs page that is gone", "README.md",
     "- [Layout](docs/layout.md) — which file", "- [Layout](docs/structure.md) — which file"),
    ("a method option is not checked against its declaration", "ueo_core/config.py",
     "self.options[name] = declared[name].check(value, METHODS[self.method].plain)", "self.options[name] = value"),
    ("the CLI takes another method's option silently", "ueo_core/cli.py",
     "raise ValueError(f\"{o.flag} is an option of {', '.join(owners)}, not of {method}.\")", "continue"),
    ("a method's hooks reach the whole trainer", "ueo_core/methods/base.py",
     "        if name not in Run.NAMES:\n", "        if False:\n"),
    ("UEO's loss reads the default lambda, not the run's", "ueo_core/methods/ueo.py",
     "return ueo_loss(step.probs, step.per_image(ctx.weights), ctx.options.trade)",
     "return ueo_loss(step.probs, step.per_image(ctx.weights), 1.0)"),
    ("ECE bins [lo, hi) instead of Guo's (lo, hi]", "ueo_core/metrics.py",
     'np.searchsorted(edges, conf, side="left") - 1', 'np.searchsorted(edges, conf, side="right") - 1'),
    ("ECE an unweighted mean over bins", "ueo_core/metrics.py",
     'float((rel["count"][full] * gaps).sum() / rel["count"].sum())', 'float(gaps.mean())'),
    ("Compare names the worst-calibrated run best", "ueo_core/analysis/comparison.py",
     'best = min(have, key=lambda r: r["ece"])', 'best = max(have, key=lambda r: r["ece"])'),
    ("run_error decides on the sentence, not the outcome", "studio/jobs.py",
     'if s.kind == "ended" and s.outcome == "error":', 'if s.kind == "ended" and s.words == "failed":'),
    ("a job's actor named from its folder, not its job.json", "ueo_core/jobs.py",
     "kind = kind or job_kind(p)", "kind = job_kind(p, {})"),
    ("the lesson's label-free methods from a list of names", "ueo_core/analysis/lesson_words.py",
     "return bool(m is not None and m.trains and not m.needs_truth and not m.supervised)",
     'return method in ("entropy", "im", "ueo")'),
    ("ROSITA: the unknown bank keeps its oldest features", "ueo_core/methods/rosita.py",
     "state.unknown = (state.unknown + [raw[:1].detach()])[-o.rosita_bank:]",
     "state.unknown = (state.unknown + [raw[:1].detach()])[:o.rosita_bank]"),
    ("ROSITA: known positives of any zero-shot class", "ueo_core/methods/rosita.py", ".argmax(1) == pl", ".argmax(1) >= 0"),
    ("UniEnt: entropy minimised for unknown images too", "ueo_core/methods/unient.py", "(1 if known else -1)",
     "(1 if known else 1)"),
    ("the docs' methods table is not made (the marker stays)", "docs/hooks.py",
     "return markdown.replace(MARKER, markdown_table(METHODS))", "return markdown"),
    ("Adapt draws no widget for a method's option", "studio/method_form.py",
     "for col, o in zip(cols, options[start:start + columns]):", "for col, o in zip(cols, options[start:start][:0]):"),
    ("the extended lesson from a fixed list", "ueo_core/lesson.py",
     'EXTENDED = tuple(m for m, entry in METHODS.items() if entry.lesson == "extended")', 'EXTENDED = ("zero", "tda")'),
    ("ROSITA/UniEnt: the tower is not put back after the stream", "ueo_core/methods/rosita.py",
     "                p.copy_(s)\n", "                pass\n"),
    ("STAMP: replay weights detached", "ueo_core/methods/stamp.py", "inv = 1 / torch.exp(ent)",
     "inv = 1 / torch.exp(ent.detach())"),
    ("STAMP: memory drops its newest image", "ueo_core/methods/stamp.py", "self.data[self.rng.choice(tied)].pop(0)",
     "self.data[self.rng.choice(tied)].pop()"),
    ("STAMP: consistency filter ignored", "ueo_core/methods/stamp.py", ".cpu() & same)", ".cpu() | same)"),
]


# the engine's own tests first: a killed mutant usually dies in the first minute; then every other fast test
FIRST = ["tests/test_losses_metrics.py", "tests/test_scores.py", "tests/test_training_free.py",
         "tests/test_protocol.py", "tests/test_truth.py", "tests/test_zip_layouts.py", "tests/test_trainer.py",
         "tests/test_clipood.py"]


def test_order(mutated: str | None = None) -> list[str]:
    """Every fast test file, the engine's first; with ``mutated`` (a file's path), the test files that name its
    module come before all, those that name it most first (a killed mutant then dies in seconds, not after the
    unrelated files)."""
    rest = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py"))
    order = [f for f in FIRST if f in rest] + [f for f in rest if f not in FIRST]
    if not mutated:
        return order
    name = Path(mutated).stem
    mentions = {f: (ROOT / f).read_text(encoding="utf-8").count(name) for f in order}
    related = sorted((f for f in order if mentions[f]), key=lambda f: -mentions[f])  # the most about it first
    return related + [f for f in order if f not in related]


def copy_tree(dst: Path) -> None:
    keep = {"ueo_core", "studio", "pages", "tests", "assets", "bench", "scripts", ".streamlit", "docs"}
    for item in ROOT.iterdir():
        if item.name in keep:
            shutil.copytree(item, dst / item.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif item.is_file():
            shutil.copy2(item, dst / item.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--only", type=int, nargs="+", help="mutant numbers (1-based)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutant's test run")
    ap.add_argument("--skip-control", action="store_true",
                    help="do not first run the unmutated copy (only when the same tree's suite has just passed, "
                         "e.g. in CI: it takes as long as the fast suite)")
    args = ap.parse_args()
    chosen = [(i + 1, m) for i, m in enumerate(MUTANTS) if not args.only or i + 1 in args.only]
    if args.list:
        for i, (what, path, _, _) in chosen:
            print(f"{i:2d}. {what} ({path})")
        return 0
    killed = survived = 0
    if not args.skip_control:
        chosen = [(0, ("none (control: the unmutated copy must pass)", None, "", ""))] + chosen
    for i, (what, path, old, new) in chosen:
        with tempfile.TemporaryDirectory(prefix="ueo-mutant-") as tmp:
            work = Path(tmp) / "project"
            work.mkdir()
            copy_tree(work)
            # the tests find ../shared/data beside the project, as in a checkout
            shared = ROOT.parent / "shared"
            if shared.exists():
                (Path(tmp) / "shared").symlink_to(shared)
            if path:
                f = work / path
                text = f.read_text()
                if text.count(old) != 1:
                    print(f"{i:2d}. {what}: the original text occurs {text.count(old)} times in {path}: fix it")
                    return 2
                f.write_text(text.replace(old, new))
            t0 = time.time()
            try:
                out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p",
                                      "no:cacheprovider", *test_order(path)], cwd=work, capture_output=True,
                                     text=True, timeout=args.timeout)
                dead = out.returncode != 0
                first = next((line for line in out.stdout.splitlines() if line.startswith("FAILED")), "")
            except subprocess.TimeoutExpired:
                dead, first = True, "(timed out)"
            if i == 0:
                print(f" 0. control: the unmutated copy {'FAILS: ' + first if dead else 'passes'} "
                      f"({time.time() - t0:.0f} s)", flush=True)
                if dead:
                    return 2  # a red suite kills every mutant: nothing would be learned
                continue
            killed += dead
            survived += not dead
            print(f"{i:2d}. {'killed  ' if dead else 'SURVIVED'} {what} ({time.time() - t0:.0f} s)"
                  + (f"  by {first.split(' - ')[0].replace('FAILED ', '')}" if first else ""), flush=True)
    print(f"killed={killed} survived={survived}")
    return 0 if survived == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
