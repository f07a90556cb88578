"""Grow the prior: add a name found among a run's rejected images (``ueo_core.unknowns``) to its class names, run
again with the same settings on the same images, and see what the new class took.

The new run is an ordinary run (``train DATA --prior "circle,…,hexagon,cross"`` does the same from the command
line); what links it to the first is one file in its folder:

    grown.json   {"parent": "<run id>", "added": "cross", "group": [<the group's image paths>], "at": <unix time>}

``outcome`` reads both runs and says, from their predictions at their own thresholds, how many of the group's
images the new run accepts as the new class, and — where the folders are ground truth — how the figures that mean
the same thing in both runs moved: accuracy on the first run's classes, the new class's images, the unknowns left.
(GACC, AUROC and H-score themselves are not comparable: the new class turns unknowns into knowns.)
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .data import DataError, normalize_name, parse_prior
from .runs import write_json_atomic
from .scores import DEFAULT

LINK = "grown.json"
NOT_COPIED = ("summary", "run_dir", "resume")  # a run's own bookkeeping, not its settings


def prior_of(run_dir: str | Path) -> list[str]:
    """The class names the run used (its prior, or its preset's), as its predictions name them."""
    from .runs import RunFolder
    classes = ((RunFolder(run_dir).config or {}).get("summary") or {}).get("classes")
    if not classes:
        raise ValueError("This run has no class names on record (no finished config.json): it cannot be grown.")
    return list(classes)


def clean_name(name: str) -> str:
    """The name as it will be added: spaces collapsed; refused when empty or when it would split in two."""
    name = " ".join(str(name or "").split())
    if not name:
        raise DataError("Type a class name to add.")
    if "," in name:
        raise DataError(f"'{name}' holds a comma: add one class name at a time.")
    return name


def grown_config(parent_dir: str | Path, name: str):
    """The parent run's settings with ``name`` appended to its prior (a ``RunConfig``, validated): same data,
    model, method, seed and options. Refuses a name already in the prior, and one too long for the model's text
    context (``prompts.check_prior_names``)."""
    from .config import RunConfig
    from .prompts import check_prior_names
    from .runs import RunFolder
    parent_dir = Path(parent_dir)
    cfg = dict(RunFolder(parent_dir).config or {})
    classes = prior_of(parent_dir)
    name = clean_name(name)
    same = [c for c in classes if normalize_name(c) == normalize_name(name)]
    if same:
        raise DataError(f"'{same[0]}' is already in this run's prior ({', '.join(classes)}).")
    prior = parse_prior(classes + [name])
    settings = {k: v for k, v in cfg.items() if k not in NOT_COPIED}
    check_prior_names([name], settings.get("model", ""), settings.get("template") or "a photo of a {}.")
    return RunConfig.from_dict({**settings, "prior": prior}).validate()


def link(parent_dir: str | Path, name: str, group_paths: Sequence[str] = ()) -> dict:
    return {"parent": Path(parent_dir).name, "added": clean_name(name), "group": [str(p) for p in group_paths],
            "at": time.time()}


def write_link(run_dir: str | Path, record: dict) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(run_dir) / LINK, record)


def read_link(run_dir: str | Path) -> Optional[dict]:
    try:
        record = json.loads((Path(run_dir) / LINK).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("parent") and record.get("added") else None


def _share(mask: np.ndarray) -> Optional[float]:
    return float(mask.mean()) if mask.size else None


def outcome(parent_dir: str | Path, child_dir: str | Path) -> dict:
    """What growing the prior did, each run at its own threshold on MSP:

    - ``group``: of the group's images (those the user picked among the parent's rejections), how many the new
      run accepts as the added class, as another known class, and rejects (and how many the parent rejects);
    - with ground truth, ``rows``: figures that mean the same in both runs — accuracy on the parent's classes
      (accepted with their own class), the added class's own images (the parent was right to reject them; the
      new run is right to accept them as the new class) and the unknowns left (rejected);
    - ``sentence``: all of it in words, computed from these numbers.
    """
    from .analysis import read_predictions, shown_rate
    from .analysis.predictions import run_threshold
    record = read_link(child_dir)
    if record is None:
        raise ValueError("This run was not made by growing another run's prior (it has no grown.json).")
    parent, child = read_predictions(parent_dir), read_predictions(child_dir)
    if sorted(parent.paths) != sorted(child.paths):
        raise ValueError("The two runs did not read the same images, so their figures cannot be set side by side.")
    added = record["added"]
    new_k = next((k for k, c in enumerate(child.classes) if normalize_name(c) == normalize_name(added)), None)
    if new_k is None:
        raise ValueError(f"The new run's prior has no class '{added}'.")
    t_parent, t_child = run_threshold(parent_dir)[0], run_threshold(child_dir)[0]  # (MSP: Inspect's default)
    p_at = {p: i for i, p in enumerate(parent.paths)}
    c_at = {p: i for i, p in enumerate(child.paths)}
    group = [p for p in record.get("group", []) if p in c_at]
    gi = np.array([c_at[p] for p in group], dtype=int)
    c_acc = child.confidence >= t_child
    as_new = int((c_acc[gi] & (child.pred[gi] == new_k)).sum()) if gi.size else 0
    as_other = int((c_acc[gi] & (child.pred[gi] != new_k)).sum()) if gi.size else 0
    p_rej = int(sum(parent.confidence[p_at[p]] < t_parent for p in group))
    out = {"parent": record["parent"], "child": Path(child_dir).name, "added": added, "thresholds":
           {"parent": t_parent, "child": t_child},
           "group": {"size": len(group), "accepted_as_new": as_new, "accepted_as_other": as_other,
                     "rejected": len(group) - as_new - as_other, "rejected_by_parent": p_rej},
           "rows": []}
    words = [f"Of the {len(group)} images of the group, the run with '{added}' accepts {as_new} as '{added}'"
             f", {as_other} as another class and rejects {len(group) - as_new - as_other}"
             f" (the first run rejects {p_rej} of them at its own threshold)." if group else
             f"The run with '{added}' was started without a group of images, so no group is counted."]
    if parent.truth is not None and child.truth is not None:
        order = np.array([c_at[p] for p in parent.paths], dtype=int)  # child's rows in the parent's order
        c_pred, c_ok_acc, c_truth = child.pred[order], c_acc[order], child.truth[order]
        p_acc = parent.confidence >= t_parent
        old_known = parent.truth >= 0
        new_own = c_truth == new_k
        left = c_truth < 0
        rows = [
            ("accuracy on the first run's classes", old_known,
             p_acc & (parent.pred == parent.truth), c_ok_acc & (c_pred == c_truth)),
            (f"'{added}' images accepted as '{added}'", new_own, None, c_ok_acc & (c_pred == new_k)),
            (f"'{added}' images rejected as unknown", new_own, ~p_acc, ~c_ok_acc),
            ("other unknowns rejected", left, ~p_acc, ~c_ok_acc),
        ]
        for what, mask, right_p, right_c in rows:
            n = int(mask.sum())
            out["rows"].append({"figure": what, "images": n,  # (the first run has no such class: None)
                                "first": None if right_p is None else _share(right_p[mask]),
                                "grown": _share(right_c[mask])})
        r = {row["figure"]: row for row in out["rows"]}
        acc, left_row = r["accuracy on the first run's classes"], r["other unknowns rejected"]
        own = r[f"'{added}' images accepted as '{added}'"]
        if own["images"]:
            words.append(f"Of the {own['images']} images in the folder '{added}', it accepts "
                         f"{shown_rate(own['grown'])} % as '{added}'.")
        else:
            words.append(f"No folder is named '{added}', so nothing says which images truly are '{added}'.")
        if acc["images"]:
            words.append(f"On the first run's {len(parent.classes)} classes, accuracy went from "
                         f"{shown_rate(acc['first'])} % to {shown_rate(acc['grown'])} % "
                         f"({_moved(acc['first'], acc['grown'])}).")
        if left_row["images"]:
            words.append(f"Of the {left_row['images']} unknown images left, it rejects "
                         f"{shown_rate(left_row['grown'])} % (the first run: {shown_rate(left_row['first'])} %).")
    else:
        words.append("Without ground truth (class folders), only the group's counts can be compared.")
    out["sentence"] = " ".join(words)
    return out


def _moved(a: float, b: float) -> str:
    from .analysis import shown_gain
    d = shown_gain(b, a)  # between the figures as shown beside it
    return "unchanged" if d == 0 else f"{'+' if d > 0 else '−'}{abs(d):.1f} points"


def grown_pairs(run_dirs: Sequence[str | Path], among: Optional[Sequence[str | Path]] = None) \
        -> list[tuple[Path, Path]]:
    """(parent, child) pairs: each run of ``run_dirs`` made by growing a parent found in ``among`` (default:
    ``run_dirs`` themselves), in the order of ``run_dirs``."""
    by_name = {Path(p).name: Path(p) for p in (among if among is not None else run_dirs)}
    pairs = []
    for p in run_dirs:
        rec = read_link(p)
        if rec and rec["parent"] in by_name:
            pairs.append((by_name[rec["parent"]], Path(p)))
    return pairs


# ---------------------------------------------------------------------------------------------- command line
def add_grow_parser(sub) -> None:
    """``python -m ueo_core grow --run RUN --add NAME [--group FILE] [--out DIR]``."""
    g = sub.add_parser("grow", help="run again with one more class name in the prior (e.g. a name 'unknowns' "
                                    "suggested), same settings and images, and say what the new class took")
    g.add_argument("--run", required=True, help="the finished run to grow")
    g.add_argument("--add", required=True, metavar="NAME", help="the class name to add, e.g. cross")
    g.add_argument("--group", metavar="FILE", help="the images the name was found for, one path a line (inside the "
                                                   "data folder, as 'unknowns' prints them, or absolute): counted "
                                                   "at the end")
    g.add_argument("--out", help="the new run's folder (default: beside RUN, a new run id)")


def _group_file(path: str, data_spec: str) -> list[str]:
    import os
    from .privacy import data_root
    root = data_root(data_spec)
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as err:
        raise ValueError(f"Cannot read the group file {path}: {err.strerror or err}.") from None
    out = []
    for ln in lines:
        p = Path(ln) if Path(ln).is_absolute() or root is None else root / ln
        if not p.is_file():
            raise ValueError(f"The group file names '{ln}', which is not an image of this run's data.")
        out.append(os.path.normpath(str(p)))
    return out


def cmd_grow(args) -> int:
    """Trains in this process (the CLI is not the web server), as ``train`` does, then prints ``outcome``."""
    from .runs import RunFolder, new_run_id
    from .train import Trainer
    parent = Path(args.run)
    if not (parent / "predictions.csv").is_file():
        raise ValueError(f"{args.run} is not a finished run folder (no predictions.csv).")
    cfg = grown_config(parent, args.add)
    paths = _group_file(args.group, cfg.data) if args.group else []
    if paths:  # predictions.csv holds the paths as the run read them
        from .analysis import read_predictions
        real = {str(Path(p).resolve()): p for p in read_predictions(parent).paths}
        paths = [real.get(str(Path(p).resolve()), p) for p in paths]
    out = Path(args.out) if args.out else parent.parent / new_run_id(cfg.method)
    if out.resolve() == parent.resolve():
        raise ValueError("--out must be a new folder, not the run being grown.")
    write_link(out, link(parent, args.add, paths))
    result = Trainer(cfg.replace(run_dir=str(out))).run()
    print(f"run folder: {result.run_dir}  (prior: {', '.join(prior_of(out))})")
    print(outcome(parent, out)["sentence"])
    return 0
