"""Headless UEO Studio: ``python -m ueo_core train|eval|lesson|embed|models``.

The CLI is one more listener of the same trainer the app uses; it shows a tqdm progress bar and writes a run folder.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from . import errors
from .cli_parser import DEFAULTS, OPTION_DEST, build_parser, option_owners
from .config import RunConfig
from .data import DataError, load_data
from .models import TINY_MODEL, ModelLoadError, list_pretrained, load_model
from .runs import RUN_FILES, images, new_run_id


def _pretrained(args) -> Optional[str]:
    tag = args.pretrained
    if tag in (None, "", "none"):
        return None
    if args.model != DEFAULTS.model and tag == DEFAULTS.pretrained:
        return None if args.checkpoint else _missing_tag(args.model)
    return tag


def _missing_tag(model: str):
    raise ModelLoadError(f"Give --pretrained TAG (see `python -m ueo_core models`) or --checkpoint PATH for {model}, "
                         f"or --pretrained none for a random initialisation.")


def _prior(text: Optional[str]):
    return [s.strip() for s in text.split(",")] if text else None


def _run_dir(args, method: str) -> str:
    # the default name carries a random part: two runs started in the same second get two folders
    return args.out or str(Path("runs") / new_run_id(method))


class ProgressBar:
    """A trainer listener: tqdm over optimisation steps, one line per evaluation."""

    def __init__(self, file=None):
        self.bar = None
        self.phase = None  # (name, tqdm) of a long pass that is not a step: evaluation, caching
        self.file = file if file is not None else sys.stderr  # looked up now, not at import
        self.reported = False  # an error event was printed

    def _phase(self, d: dict) -> None:
        if self.phase is None or self.phase[0] != d["phase"]:
            if self.phase is not None:
                self.phase[1].close()
            self.phase = (d["phase"], tqdm(total=d["total"], desc=d["phase"], unit="img", leave=False,
                                           file=self.file, dynamic_ncols=True))
        bar = self.phase[1]
        bar.update(d["done"] - bar.n)
        if d["done"] >= d["total"]:
            bar.close()
            self.phase = None

    def __call__(self, ev) -> None:
        d = ev.data
        if ev.kind == "progress":
            self._phase(d)
        elif ev.kind == "start":
            tqdm.write(f"{d['data']}\nmodel: {d['model']['model']} on {d['model']['device']}; "
                       f"{d['trainable_parameters']:,} trainable parameters", file=self.file)
            for w in d.get("warnings") or []:
                tqdm.write(f"warning: {w}", file=self.file)
            if d["total_steps"]:
                self.bar = tqdm(total=d["total_steps"], unit="step", file=self.file, dynamic_ncols=True)
        elif ev.kind == "step" and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=d["epoch"], loss=f"{d['loss']:.4f}", H=f"{d['cond_entropy']:.3f}")
        elif ev.kind in ("epoch", "bma"):
            tag = "moving average" if ev.kind == "bma" else f"epoch {d['epoch']}"
            tqdm.write(f"{tag}: " + format_metrics(d["metrics"]), file=self.file)
        elif ev.kind in ("done", "cancelled", "error") and self.bar is not None:
            self.bar.close()
        if ev.kind == "error":
            tqdm.write(f"error: {d['message']}", file=self.file)
            self.reported = True


def format_metrics(m: dict) -> str:
    keys = [k for k in ("gacc", "pacc", "auroc", "fpr95", "h_score", "ece", "acc_seen", "acc_unseen", "mean_confidence")
            if isinstance(m.get(k), float) and m[k] == m[k]]
    return "  ".join(f"{k}={m[k]:.4f}" for k in keys)


def cmd_train(args, method: Optional[str] = None) -> int:
    from .train import Trainer

    method = method or args.method
    given = {k: getattr(args, a) for k, a in (("batch_size", "batch_size"), ("epochs", "epochs"),
                                              ("lr_prompt", "lr_prompt"), ("lr_visual", "lr_visual"))
             if getattr(args, a, None) is not None}
    cfg = RunConfig(
        method=method, data=args.data, prior=_prior(args.prior), preset=args.preset, setting=args.setting,
        model=args.model, pretrained=_pretrained(args), checkpoint=args.checkpoint, device=args.device,
        template=args.template, threshold=args.threshold, split=args.split, mcm_temperature=args.mcm_temperature,
        seed=args.seed, num_workers=args.workers, precision=args.precision,
        protocol=args.protocol or DEFAULTS.protocol, run_dir=_run_dir(args, method), **given)
    if args.command == "train":
        cfg = cfg.replace(eval_every=args.eval_every, resume=args.resume, source=args.source,
                          fast_mode=None if args.fast_mode == "none" else args.fast_mode, fast_views=args.fast_views,
                          fast_blocks=args.fast_blocks, options=given_options(args, method))
    evaluates = None
    if getattr(args, "run", None):  # eval of an adapted run: its model, prompt and prior, its parameters
        cfg, evaluates = _eval_of_run(args)
    from .distributed import init_from_env, rank
    dev = init_from_env()  # under torchrun: join the process group, one device per process
    if dev is not None:
        cfg = cfg.replace(device=str(dev))
    cfg.validate()  # every option checked before anything is loaded
    bar = ProgressBar()
    try:
        trainer = Trainer(cfg, listeners=[bar] if rank() == 0 else [], evaluates=evaluates)
        result = trainer.run()
    except Exception as err:
        if bar.reported:  # the run's error event already printed its plain message
            raise Reported() from err
        raise
    if rank() != 0:
        return 0
    for name, what, metrics in _rows(cfg, trainer.evaluates, result):  # each: what it is, which images
        print(f"{name} ({what}, {images(metrics) or 'images not counted'}): {format_metrics(metrics)}")
    if evaluates is None:
        print(f"run folder: {result.run_dir}  ({result.seconds:.1f} s)")
    else:
        print(f"evaluation folder: {result.run_dir}  ({result.seconds:.1f} s; the run's folder {evaluates['run']} "
              f"was only read)")
    return 0


def given_options(args, method: str) -> dict:
    """The method options given on the command line (their flags are made from the registry); one that belongs
    to another method is refused in words."""
    out = {}
    for name, (o, owners) in option_owners().items():
        value = getattr(args, OPTION_DEST + name, None)
        if value is None:
            continue
        if method not in owners:
            raise ValueError(f"{o.flag} is an option of {', '.join(owners)}, not of {method}.")
        out[name] = value
    return out


def _rows(cfg: RunConfig, evaluates: Optional[dict], result) -> list[tuple[str, str, dict]]:
    """(name, what it is, metrics) of each line the CLI prints after a run or an evaluation."""
    if evaluates is not None:
        epoch = f", epoch {evaluates['epoch']}" if evaluates.get("epoch") else ""
        how = " at test time" if evaluates.get("test_time") else ""
        return [("before", "zero-shot", result.metrics_before),
                ("after", f"{evaluates['method']}{how}, run {evaluates['run']}{epoch}", result.metrics)]
    if cfg.method == "zero_shot":  # (eval without --run: nothing is adapted, one row)
        return [("zero-shot", "no adaptation", result.metrics)]
    return [("before", "zero-shot", result.metrics_before),
            ("after", "clipood, Beta moving average" if cfg.method == "clipood" else cfg.method, result.metrics)]


def _read_run(run: Path) -> dict:
    """The config.json of the run that ``eval --run`` evaluates, or a DataError in words."""
    if not run.is_dir():
        what = "is a file" if run.exists() else "does not exist"
        raise DataError(f"--run {run} {what}: give a run folder (made by `python -m ueo_core train`; it holds "
                        f"config.json and checkpoint.safetensors).")
    try:
        src = json.loads((run / "config.json").read_text())
        return src if isinstance(src, dict) else {}
    except FileNotFoundError:
        raise DataError(f"{run} holds no config.json: it is not a run folder (made by `python -m ueo_core "
                        f"train`).") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{run / 'config.json'} is damaged (not JSON): this run cannot be evaluated.") from None


def applied_config(run: str | Path, data: str, out: Optional[str | Path] = None, device: Optional[str] = None,
                   protocol: Optional[str] = None) -> tuple[RunConfig, dict]:
    """R's model, prompt, prior and adapted parameters applied to DATA (``eval --run``, and ``sort`` of new
    photos: one function, so both apply every method alike). The config runs zero-shot with R's checkpoint loaded
    (a training method: nothing trains here), or R's own method when it works at test time (ZERO, TDA: it adapts
    to DATA itself). The result goes to a new folder: R's is only read."""
    from .methods import METHODS

    run = Path(run)
    src = _read_run(run)
    src.pop("summary", None)
    method = src.get("method")
    if method not in METHODS:
        raise DataError(f"{run} was made by an unknown method ({method!r}): it cannot be evaluated.")
    test_time = not METHODS[method].trains  # zero-shot, ZERO, TDA: what they do happens on the images at hand
    out = Path(out or Path("runs") / new_run_id(f"eval_{method}"))
    if out.resolve() == run.resolve():
        raise DataError(f"--out {out} is the folder of the run being evaluated: an evaluation writes a folder of "
                        f"its own and never changes the run's results. Give another --out (or none).")
    used = [n for n in RUN_FILES if (out / n).exists()]
    if used:
        raise DataError(f"--out {out} already holds a run ({', '.join(used)}): give a new folder (or no --out). "
                        f"Nothing was changed.")
    cfg = RunConfig.from_dict(src).replace(
        data=data, method=method if test_time else "zero_shot", resume=str(run), run_dir=str(out), epochs=0,
        device=device, protocol=protocol or src.get("protocol", DEFAULTS.protocol),
        fast_mode=None, source=None)  # (evaluation runs the whole tower; CLIPood's sources are for training)
    return cfg, {"run": str(run), "method": method, "test_time": test_time}


def _eval_of_run(args) -> tuple[RunConfig, dict]:
    """``eval DATA --run R``: ``applied_config``, with the prior or preset given on the command line."""
    cfg, evaluates = applied_config(args.run, args.data, args.out, device=args.device, protocol=args.protocol)
    cfg = cfg.replace(precision=args.precision)
    if args.prior or args.preset:
        cfg = cfg.replace(prior=_prior(args.prior), preset=args.preset, setting=args.setting)
    return cfg, evaluates


def cmd_lesson(args) -> int:
    from .lesson import Lesson, lesson_rows, lesson_summary, plain_name, read_lesson

    ims = load_data(args.data, prior=_prior(args.prior), preset=args.preset, setting=args.setting)
    base = RunConfig(data=args.data, prior=ims.classes, model=args.model, pretrained=_pretrained(args),
                     checkpoint=args.checkpoint, device=args.device, epochs=args.epochs, batch_size=args.batch_size,
                     lr_prompt=args.lr, lr_visual=args.lr, seed=args.seed, protocol=args.protocol)
    bar = ProgressBar()

    def listener(ev):
        if ev.kind == "lesson" and "method" in ev.data:
            tqdm.write(f"== {ev.data['index'] + 1}. {plain_name(ev.data['method'])} ({ev.data['run_id']})",
                       file=bar.file)
        elif ev.kind != "lesson":
            bar(ev)

    lesson = Lesson(base, ims, args.out, listeners=(listener,), extended=args.extended)
    try:
        lesson.run()
    except Exception as err:
        if bar.reported:
            raise Reported() from err
        raise
    rows = lesson_rows(args.out, read_lesson(lesson.manifest_path))
    print(f"{'method':<12}{'GACC':>7}{'AUROC':>7}{'H':>7}  largest class")
    for r in rows:
        a = r["after"]
        cell = lambda k: f"{a[k] * 100:7.1f}" if a.get(k) is not None else f"{'-':>7}"  # noqa: E731
        print(f"{r['method']:<12}{cell('gacc')}{cell('auroc')}{cell('h_score')}  "
              f"{max(a.get('class_shares') or [0]):.0%}" + ("  collapsed" if a.get("collapsed") else ""))
    for line in lesson_summary(rows):
        print("- " + line)
    print(f"lesson: {lesson.manifest_path}")
    return 0 if lesson.state == "done" else 1


def cmd_embed(args) -> int:
    from .embed import image_features, umap_2d
    from .runs import load_checkpoint
    from .train import apply_state

    ims = load_data(args.data, prior=_prior(args.prior), preset=args.preset, setting=args.setting, need_prior=False)
    loaded = load_model(args.model, pretrained=_pretrained(args), checkpoint=args.checkpoint, device=args.device)
    cols = {}
    with tqdm(total=len(ims), desc="features (before)", unit="img") as bar:
        before = image_features(loaded, ims.files, progress=lambda d, n: bar.update(d - bar.n))
    cols["before"] = umap_2d(before, seed=args.seed)
    if args.run:
        tensors, _ = load_checkpoint(args.run)
        apply_state(loaded, tensors)
        with tqdm(total=len(ims), desc="features (after)", unit="img") as bar:
            after = image_features(loaded, ims.files, variant=loaded.variant,
                                   progress=lambda d, n: bar.update(d - bar.n))
        cols["after"] = umap_2d(after, seed=args.seed)
    with open(args.output, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "folder"] + [f"{k}_{a}" for k in cols for a in "xy"])
        for i, f in enumerate(ims.files):
            w.writerow([f, ims.folder_names[i] or ""] + [f"{cols[k][i, j]:.5f}" for k in cols for j in (0, 1)])
    print(f"wrote {args.output} ({len(ims)} images; {', '.join(cols)})")
    return 0


def cmd_models() -> int:
    from .models import register_configs

    register_configs()
    print(f"tests: {TINY_MODEL} (random init, for trying the mechanics)")
    by_arch: dict[str, list[str]] = {}
    for arch, tag in list_pretrained():
        by_arch.setdefault(arch, []).append(tag)
    for arch in sorted(by_arch):
        print(f"{arch}: {', '.join(by_arch[arch])}")
    return 0


class Reported(Exception):
    """An error whose message the run already printed."""


def cmd_cluster(args) -> int:
    from . import cluster, jobs
    address = cluster.connect()
    slots = cluster.cluster_slots()
    print(f"Ray at {address}: {slots} run slot{'s' if slots != 1 else ''}"
          + (" (its GPUs)" if cluster.cluster_gpus() else " (UEO_SLOTS on a CPU-only head)"))
    root = Path(args.workspaces) if args.workspaces else jobs.WORKSPACES
    if args.action == "up":
        back = jobs.recover(root)
        if back:
            print(f"submitted again after Ray restarted: {len(back)} job{'s' if len(back) != 1 else ''} "
                  f"({', '.join(p.name if p.name != jobs.EXPLORE else p.parent.name + '/explore' for p in back)})")
    if args.action == "status":
        queued = jobs.queued_runs(root)
        running = [d for d in jobs.active_runs(root)]
        print(f"training: {len(running)} · queued: {len(queued)}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "eval":
            return cmd_train(args, method="zero_shot")
        if args.command == "embed":
            return cmd_embed(args)
        if args.command == "lesson":
            return cmd_lesson(args)
        if args.command == "cluster":
            return cmd_cluster(args)
        if args.command == "export":
            from .export import cmd_export
            return cmd_export(args)
        if args.command == "sort":
            from .sort import cmd_sort
            return cmd_sort(args)
        if args.command == "search":
            from .search import cmd_search
            return cmd_search(args)
        if args.command == "estimate":
            from .estimate import cmd_estimate
            return cmd_estimate(args)
        if args.command == "unknowns":
            from .unknowns import cmd_unknowns
            return cmd_unknowns(args)
        if args.command == "grow":
            from .grow import cmd_grow
            return cmd_grow(args)
        return cmd_models()
    except Reported:
        return 2
    except (ModelLoadError, ValueError, OSError) as err:  # (DataError is a ValueError) in words; others: traceback
        print(f"error: {errors.explain(err, 'cli')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
