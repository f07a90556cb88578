"""The command line's options (``python -m ueo_core --help``): each default read from where it is defined
(``RunConfig``, a method's registry entry), so the help never restates a number."""
from __future__ import annotations

import argparse

from .config import FAST_MODES, PROTOCOLS, SETTINGS, RunConfig
from .methods import METHODS
from .metrics import SPLITS
from .presets import PRESETS

DEFAULTS = RunConfig()
OPTION_DEST = "option_"  # the parsed flag of a method option ``name`` is ``args.option_<name>``
DESCRIPTION = """Headless UEO Studio: ``python -m ueo_core train|eval|lesson|embed|models|cluster``.

The CLI is one more listener of the same trainer the app uses; it shows a tqdm progress bar and writes a run folder.
"""


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="image folder: one sub-folder per class (truth from folder names), or a flat folder "
                                "of unlabeled images; or shapes:flat|sketch|photo for the built-in Shapes world")
    p.add_argument("--prior", help="known class names, comma-separated (default: every class sub-folder). Class "
                                   "folders not named here are treated as unknown")
    p.add_argument("--preset", choices=sorted(PRESETS), help="benchmark class list and split (sets the prior and "
                                                              "which class folders are in the target)")
    p.add_argument("--setting", default=DEFAULTS.setting, choices=list(SETTINGS),
                   help="with --preset: closed / partial / open / open-partial / all classes (default %(default)s)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULTS.model,
                   help="open_clip architecture, e.g. ViT-B-32, RN50 (default %(default)s: the built-in small CLIP "
                        "trained on Shapes, works offline)")
    p.add_argument("--pretrained", default=DEFAULTS.pretrained,
                   help="open_clip pretrained tag, e.g. openai (downloads weights; see `models`); 'builtin' for "
                        "ueo-shapes; 'none' for random init (default %(default)s)")
    p.add_argument("--checkpoint", help="local open_clip checkpoint file for --model (offline use)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when present, else CPU)")


def _add_run_args(p: argparse.ArgumentParser, out_help: str = "run folder to write (default runs/<time>-<method>)"):
    p.add_argument("--out", help=out_help)
    p.add_argument("--template", default=DEFAULTS.template,
                   help="prompt template; the words before {} initialise the learnable context (default "
                        "'%(default)s')")
    p.add_argument("--batch-size", type=int,
                   help=f"images per step (default {DEFAULTS.batch_size}; " + _own_defaults("batch_size") + ")")
    p.add_argument("--threshold", type=float,
                   help="known/unknown confidence threshold (default: an unsupervised split of confidences, --split)")
    p.add_argument("--split", choices=list(SPLITS), default=DEFAULTS.split,
                   help="how the default threshold is found without labels: 2means (the midpoint of the two "
                        "clusters' centres) or otsu (Otsu's method) (default %(default)s)")
    p.add_argument("--mcm-temperature", type=float, default=DEFAULTS.mcm_temperature,
                   help="tau of the MCM known/unknown score (metrics.json reports MSP, MaxLogit, energy, MCM and GEN; "
                        "default %(default)s, as Ming et al. 2022)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default %(default)s)")
    p.add_argument("--protocol", choices=list(PROTOCOLS),
                   help="logit scales: studio (default) uses the model's logit scale for training, the zero-shot "
                        "weights and every score; official reproduces tim-learn/UEO demo.py, as in the paper's tables "
                        "(training x100, weights and scores from the softmax of unscaled cosines)")
    p.add_argument("--workers", type=int, default=DEFAULTS.num_workers,
                   help="DataLoader worker processes (default %(default)s)")
    p.add_argument("--precision", default=DEFAULTS.precision,
                   help="precision of inference passes (zero-shot, evaluations, cached features): auto, fp32 or "
                        "bf16 (default %(default)s: bf16 on CUDA and on a CPU with native bf16, else fp32; "
                        "training on a CPU stays fp32)")


def _add_train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--method", default=DEFAULTS.method, choices=list(METHODS),
                   help="; ".join(f"{k}: {m.description}".replace("%", "%%") for k, m in METHODS.items())
                   + " (default %(default)s)")
    t.add_argument("--epochs", type=int, help=f"passes over the folder (default {DEFAULTS.epochs}; "
                                                + _own_defaults("epochs") + ")")
    t.add_argument("--lr-prompt", type=float,
                   help=f"SGD learning rate of the prompt context; 0 freezes it (default {DEFAULTS.lr_prompt})")
    t.add_argument("--lr-visual", type=float,
                   help=f"learning rate of the image tower's trained params (the norm affine params; CLIPood: the "
                        f"whole tower); 0 freezes them (default {DEFAULTS.lr_visual}; " + _own_defaults("lr_visual")
                        + ")")
    t.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every,
                   help="evaluate every N epochs (default %(default)s; the last epoch always)")
    t.add_argument("--resume", help="run folder (or checkpoint) to continue from")
    t.add_argument("--fast-mode", choices=["none", *FAST_MODES], default="none",
                   help="APPROXIMATIONS for CPUs. prompt_only: the image tower is frozen, features of a few "
                        "augmented views per image are computed once, only the prompt context trains. last_blocks "
                        "(ResNet towers): only the norm params of the last --fast-blocks stages train, the earlier "
                        "stages' outputs are cached. (default: none, the full method)")
    t.add_argument("--fast-blocks", type=int, default=DEFAULTS.fast_blocks,
                   help="--fast-mode last_blocks: ResNet stages trained, counted from the last (default %(default)s)")
    t.add_argument("--fast-views", type=int, default=DEFAULTS.fast_views,
                   help="augmented views per image cached by the fast modes (default %(default)s)")
    t.add_argument("--source", action="append",
                   help="CLIPood: a labelled source folder (class-per-folder; repeat for several domains, one batch "
                        "from each per step); the positional DATA folder is the target it is evaluated on")
    _add_option_args(t)


def _own_defaults(field: str) -> str:
    """The methods whose registry entry sets ``field`` otherwise than UEO's, with their value ("" if none)."""
    own = [f"{m.name}: {m.defaults[field]:g}" for m in METHODS.values()
           if field in m.defaults and m.defaults[field] != getattr(DEFAULTS, field)]
    return "; ".join(own) or "the same for every method"


def option_owners() -> dict:
    """Each method option's name -> (its declaration, the methods that declare it), from the registry."""
    out: dict = {}
    for m in METHODS.values():
        for o in m.options:
            out.setdefault(o.name, (o, []))[1].append(m.name)
    return out


def _add_option_args(t: argparse.ArgumentParser) -> None:
    """One flag per method option, made from its declaration on the registry entry (``Method.options``): the
    methods it belongs to, its help, default, allowed range and official value. Parsed to None when not given, so
    that RunConfig fills the method's default and validate() checks what was given."""
    group = t.add_argument_group("method options (each method's own, from its registry entry)")
    for name, (o, owners) in option_owners().items():
        default = f"unset: {o.unset}" if o.optional else f"default {o.default}"
        extra = "; ".join(x for x in (default, o.official_text(), o.rule()) if x)
        kind = {"action": argparse.BooleanOptionalAction} if o.kind is bool else {"type": o.kind}
        group.add_argument(o.flag, dest=OPTION_DEST + name, default=None, choices=list(o.choices) or None,
                           metavar=None if o.kind is bool or o.choices else name.upper(),
                           help=(f"{', '.join(owners)}: {o.help} ({extra})").replace("%", "%%"), **kind)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ueo_core", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="adapt a model to an unlabeled folder with UEO or a baseline")
    _add_data_args(t)
    _add_model_args(t)
    _add_run_args(t)
    _add_train_args(t)

    e = sub.add_parser("eval", help="evaluate zero-shot, or a run's adapted checkpoint, on a folder")
    _add_data_args(e)
    _add_model_args(e)
    _add_run_args(e, "a new folder for the evaluation's results (default runs/<time>-<method>; with --run "
                     "runs/<time>-eval_<run's method>); never the run's own folder")
    e.add_argument("--run", help="run folder whose adapted model (its parameters, base model, prompt and prior) to "
                                 "apply to DATA, beside the zero-shot of the same base model on DATA (ZERO, TDA: "
                                 "their test-time method runs on DATA). The run's folder is only read")

    m = sub.add_parser("embed", help="image features and a 2-D UMAP of a folder, before (and after) adaptation")
    _add_data_args(m)
    _add_model_args(m)
    m.add_argument("--run", help="also embed with this run's adapted image tower")
    m.add_argument("--output", default="embedding.csv", help="CSV to write: path, class, x, y (default %(default)s)")
    m.add_argument("--seed", type=int, default=0, help="UMAP random state (default %(default)s)")

    from .lesson import EXTENDED  # (each method says whether it is in the lesson: Method.lesson)
    field = ", ".join(METHODS[m].plain for m in EXTENDED)
    les = sub.add_parser("lesson", help="zero-shot, entropy minimisation, IM, UEO (and the oracle with ground "
                                        f"truth; with --extended {field}) on one folder with the same "
                                        "settings, then what happened in words")
    _add_data_args(les)
    _add_model_args(les)
    les.add_argument("--out", default="runs", help="folder for the lesson's run folders (default %(default)s)")
    les.add_argument("--extended", action="store_true",
                     help=f"the extended lesson: also {field}, the field's methods")
    les.add_argument("--epochs", type=int, default=5, help="epochs of each training run (default %(default)s)")
    les.add_argument("--batch-size", type=int, default=64, help="images per step (default %(default)s)")
    les.add_argument("--lr", type=float, default=0.05,
                     help="SGD learning rate of the prompt context and norm params (default %(default)s: the app's "
                          "quick setting for the built-in model; the paper uses 1e-4 for 50 epochs)")
    les.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default %(default)s)")
    les.add_argument("--protocol", choices=list(PROTOCOLS), default=DEFAULTS.protocol,
                     help="logit scales (see `train --help`; default %(default)s)")

    from .scores import SCORES
    srt = sub.add_parser("sort", help="sort a folder of photos into OUT/<class>/ and OUT/unknown/ by a run's adapted "
                                      "model (links or copies: the photos themselves are only read), with "
                                      "OUT/manifest.csv and OUT/skipped.txt")
    srt.add_argument("folder", help="the photos: the run's own data (its predictions are used as they are) or a new "
                                    "folder (a flat folder, class sub-folders, any depth), or shapes:<domain>")
    srt.add_argument("--run", required=True, help="a finished run folder whose adapted model sorts the photos (ZERO, "
                                                  "TDA: their test-time method runs on the photos)")
    srt.add_argument("--out", required=True,
                     help="the folder to write: new, empty, or one an earlier sort wrote (replaced whole); never "
                          "inside FOLDER")
    srt.add_argument("--score", choices=list(SCORES),
                     help="known/unknown score (default: msp, the run's own, as Inspect opens)")
    srt.add_argument("--threshold", type=float,
                     help="known/unknown threshold on the score (default: the run's own: its metrics.json for msp, "
                          "else the run's label-free split of that score on its own images; never re-fitted on "
                          "FOLDER)")
    srt.add_argument("--link", choices=["hard", "symlink", "copy"], default="hard",
                     help="how a photo arrives in OUT: a hard link (a second name of the same file; a copy where "
                          "the file system refuses), a symbolic link, or a copy (default %(default)s)")
    srt.add_argument("--device", help="cpu, cuda, cuda:1 ... for applying the run to new photos (default: CUDA when "
                                      "present, else CPU)")
    srt.add_argument("--labels", metavar="CSV", help="a person's labels (path,label; Inspect's labels.csv): a "
                                                    "labelled photo goes to its label's folder, marked as a person's")

    from .export import add_export_parser  # (its options and help live beside the formats they describe)
    add_export_parser(sub)
    from .search import add_search_parser  # (its options live beside the search they run)
    add_search_parser(sub)
    from .estimate import add_estimate_parser  # (its options live beside the estimates they print)
    add_estimate_parser(sub)
    from .unknowns import add_unknowns_parser  # (its options live beside the grouping they run)
    add_unknowns_parser(sub)
    from .grow import add_grow_parser  # (beside the prior's growth it runs)
    add_grow_parser(sub)

    sub.add_parser("models", help="list the open_clip architectures and pretrained tags")
    c = sub.add_parser("cluster", help="the Ray that the app's runs queue on: 'up' connects to UEO_RAY_ADDRESS / "
                                       "RAY_ADDRESS, or starts a local one (UEO_SLOTS run slots) if none is running; "
                                       "'status' says its slots and what is queued and training")
    c.add_argument("action", choices=["up", "status"])
    c.add_argument("--workspaces", help="the app's workspaces folder (default: the app's, UEO_WORKSPACES); 'up' "
                                        "submits again the jobs that a restarted local Ray lost")
    return ap
