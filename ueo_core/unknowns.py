"""Groups among a run's rejected images, with suggested names (issue 31): what the "unknown" images are.

The run rejects some images as unknown. Here their adapted image features (the run's own image tower, as Explore
and search read them) are clustered, and each group is named by the text features of a vocabulary:

- **Clustering**: k-means (scikit-learn's ``KMeans``, seeded: the same images give the same groups) on the
  L2-normalised features (on unit vectors, k-means' squared distance is 2 − 2·cosine: it groups by cosine). The
  number of groups ``k`` is the one of ``K_RANGE`` with the highest mean silhouette (Rousseeuw 1987, "Silhouettes: a
  graphical aid to the interpretation and validation of cluster analysis", J. Comp. Appl. Math. 20), unless the user
  gives k. The silhouette cannot judge one group against several, so the automatic choice never answers "one
  group"; the sentence ``how`` says which k and why, with the silhouette, so that a low one reads as "no clear
  groups".
- **Naming**: each group's mean feature (of the normalised features, normalised again) against the text feature of
  every name of the vocabulary, by cosine similarity, best first: as MCM (Ming et al., NeurIPS 2022, "Delving into
  out-of-distribution detection with vision-language representations") scores an image by its cosine to the class
  names' text embeddings, and NegLabel (Jiang et al., ICLR 2024, "Negative label guided OOD detection with pretrained
  vision-language models") compares images with a large vocabulary of labels outside the prior. Names go through the
  run's template in words ("a photo of a cross.", ``prompt="template"``, the default: the zero-shot classifier's and
  search's way) or with the run's learned context in place of the template's words (``"learned"``, the adapted
  classifier's own text side). The template is the default because the learned context was trained to tell the
  prior's classes apart on the images it accepts, and the rejected images are those it fits worst: on Shapes ·
  sketch (``bench/unknowns.py``) both name the three unknown groups alike, but with the learned context a group of
  20 rejected squares is nearest the prior's 'hexagon', through the template its own 'square' (search chose the
  template for new words too: ``ueo_core.search``).
- **The vocabulary** (``vocabulary``): the words the model knows, less the prior's names (what the run already
  knows), plus the user's own. For any other model: open_clip's 1,000 ImageNet class names. For the built-in
  Shapes model: the 22 Shapes concepts its text tower was trained on, and not ImageNet's names by default (the
  issue asked for both): it never read those words, so their text features fall anywhere, and on Shapes · sketch
  "Kuvasz", "storage chest" and "military aircraft" came first for groups of squares and hexagons, above every
  prior name, which hid the false rejections below. ``imagenet=True`` (``--imagenet``) adds them back.
- **Probably rejected by mistake**: a group whose mean is closer to one of the prior's class names (encoded the same
  way) than to any new name looks like a known class the run rejected: said so, with both similarities.

Nothing here loads a model by itself: it works on a ``ueo_core.search.Searcher`` (the run's model, adapted
parameters and image features, loaded once), so the app's warm search worker answers it (``workers.answer(
"unknowns", …)``) and the CLI makes one Searcher per command. Results are plain data (picklable, JSON-able); paths
in them are the server's, and the CLI prints them inside the data folder (``privacy.public_path``).
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from .scores import DEFAULT

K_RANGE = (2, 8)          # the numbers of groups the silhouette chooses among (at most one fewer than the images)
TOP_NAMES = 3             # suggested names per group
CENTRAL = 12              # the most central images shown per group (the gallery's first page)
SEED = 0                  # KMeans' random_state: the same features give the same groups
N_INIT = 10               # KMeans restarts (the best of them is kept)
SILHOUETTE_SAMPLE = 2000  # beyond this many images the silhouette is estimated on a seeded sample (it is O(n²))
NAMING_PROMPTS = ("learned", "template")
DEFAULT_NAMING_PROMPT = "template"
TEXT_BATCH = 256          # names encoded at once
MISTAKE = "probably rejected by mistake"


# ------------------------------------------------------------------------------------------------ vocabulary
def _key(name: str) -> str:
    """How two names are compared: case, underscores and spacing ignored ("Great_White shark" = "great white
    shark"), as prompts write folder names (``prompts.class_prompt_name``)."""
    return " ".join(str(name).replace("_", " ").split()).lower()


def parse_names(text: str) -> list[str]:
    """Names a user pastes or puts in a file: one per line or comma-separated; blank lines and '#' comments
    ignored."""
    out = []
    for line in str(text or "").splitlines():
        line = line.split("#", 1)[0]
        out += [" ".join(n.split()) for n in line.split(",") if n.strip()]
    return out


def read_names(path: str | Path) -> list[str]:
    """A vocabulary file's names (``parse_names``), refused in words when there is none."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"No vocabulary file at {path}: give a text file with one name per line.")
    try:
        names = parse_names(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"The vocabulary file {path} is not text (UTF-8): one name per line.") from None
    if not names:
        raise ValueError(f"The vocabulary file {path} holds no names: one name per line.")
    return names


def prior_names(config: dict) -> list[str]:
    """The run's known classes (its classifier's), as its config records them."""
    return list((config.get("summary") or {}).get("classes") or config.get("prior") or [])


def vocabulary(config: dict, extra: Iterable[str] = (), imagenet: Optional[bool] = None) -> list[str]:
    """The names a group may be given: Shapes' ``CONCEPTS`` when the run's model is the built-in one (the words it
    was trained on), open_clip's ImageNet class names for any other model or with ``imagenet=True``, then ``extra``
    (the user's); the prior's names left out, each name once (compared without case, underscores or extra spaces;
    the first spelling kept)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from .models import BUILTIN_MODEL
    from .shapes import CONCEPTS
    builtin = config.get("model") == BUILTIN_MODEL
    names = list(CONCEPTS) if builtin else []
    if imagenet or (imagenet is None and not builtin):
        names += list(IMAGENET_CLASSNAMES)
    names += [" ".join(str(n).split()) for n in extra if str(n).strip()]
    seen = {_key(p) for p in prior_names(config)}
    out = []
    for n in names:
        if _key(n) not in seen:
            seen.add(_key(n))
            out.append(n)
    return out


# ------------------------------------------------------------------------------------------- text features
def text_features(searcher, names: Sequence[str], prompt: str = DEFAULT_NAMING_PROMPT) -> np.ndarray:
    """(len(names), dim) L2-normalised text features of ``names``, encoded as the run's classifier encodes its
    class names (``prompt="learned"``: the template with the run's learned context) or through the template's
    words (``"template"``). Kept per Searcher and name: a second call encodes only names it has not seen."""
    import torch
    from .models import inference_autocast
    from .prompts import PromptLearner
    if prompt not in NAMING_PROMPTS:
        raise ValueError(f"Unknown naming prompt '{prompt}': one of {', '.join(NAMING_PROMPTS)}.")
    cache = searcher.__dict__.setdefault("_unknowns_text", {}).setdefault(prompt, {})
    missing = list(dict.fromkeys(n for n in names if n not in cache))
    loaded = searcher.loaded  # (a name too long for the text context: PromptLearner refuses it in words; see fitting)
    for start in range(0, len(missing), TEXT_BATCH):
        batch = missing[start:start + TEXT_BATCH]
        with torch.no_grad(), inference_autocast(loaded):
            learner = PromptLearner(loaded, batch, searcher.template).to(loaded.device)
            ctx = searcher.ctx
            if prompt == "learned" and ctx is not None and tuple(ctx.shape) == tuple(learner.ctx.shape):
                learner.ctx.copy_(ctx.to(learner.ctx.device, learner.ctx.dtype))
            feats = learner(normalize=True).float().cpu().numpy()
        cache.update(zip(batch, feats))
    if not names:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cache[n] for n in names]).astype(np.float32)


def vocabulary_words(config: dict, extra: Sequence[str] = (), imagenet: Optional[bool] = None) -> str:
    """Where ``vocabulary``'s names come from, in words: "the 22 Shapes concepts the built-in model was trained on
    and 2 names of yours"."""
    from .models import BUILTIN_MODEL
    from .shapes import CONCEPTS
    builtin = config.get("model") == BUILTIN_MODEL
    parts = [f"the {len(CONCEPTS)} Shapes concepts the built-in model was trained on"] if builtin else []
    if imagenet or (imagenet is None and not builtin):
        parts.append("ImageNet's 1,000 class names" + (" (words it never learned)" if builtin else ""))
    mine = len({_key(n) for n in extra if str(n).strip()})
    if mine:
        parts.append(f"{mine} name{'s' if mine != 1 else ''} of yours")
    return " and ".join(parts)


def fitting(searcher, names: Sequence[str], own: Iterable[str] = ()) -> tuple[list[str], int]:
    """(the names whose prompt fits the model's text context, how many of the default vocabulary's do not: the
    built-in model reads 16 tokens, too few for "Mexican hairless dog (xoloitzcuintli)"). A name of the user's
    (``own``) that does not fit is refused in words instead: they meant it."""
    from .prompts import prompt_length_problem
    tokenizer, mine = searcher.loaded.tokenizer, {_key(n) for n in own}
    said = searcher.__dict__.setdefault("_unknowns_fit", {})  # (kept per Searcher: a name's tokens do not change)
    keep, dropped = [], 0
    for n in names:
        if n not in said:
            said[n] = prompt_length_problem([n], searcher.template, tokenizer)
        problem = said[n]
        if problem and _key(n) in mine:
            raise ValueError(problem.replace("The class name", "Your name"))
        if problem:
            dropped += 1
        else:
            keep.append(n)
    return keep, dropped


# ------------------------------------------------------------------------------------------------- grouping
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _kmeans(x: np.ndarray, k: int):
    from sklearn.cluster import KMeans
    return KMeans(n_clusters=k, n_init=N_INIT, random_state=SEED).fit(x)


def choose_k(x: np.ndarray, k_range: tuple[int, int] = K_RANGE) -> tuple[int, dict, str]:
    """(k, {k: silhouette}, the sentence saying how) for unit feature rows ``x``, k from ``k_range`` with the highest
    silhouette (the smaller k on a tie). Too few images or too few distinct ones for two groups: k = 1, said so."""
    import warnings
    from sklearn.metrics import silhouette_score
    n = len(x)
    distinct = len(np.unique(np.round(x, 6), axis=0)) if n else 0
    lo, hi = k_range[0], min(k_range[1], n - 1, distinct)
    if n == 1:
        return 1, {}, "One rejected image: one group (nothing to compare)."
    if hi < lo:
        why = (f"{n} rejected images are too few to compare groupings (the silhouette needs at least "
               f"{lo + 1})" if n - 1 < lo else f"the {n} rejected images have {distinct} distinct feature(s)")
        return 1, {}, f"k = 1: {why}, so they make one group."
    sil = {}
    for k in range(lo, hi + 1):
        with warnings.catch_warnings():  # (duplicate features: fewer distinct clusters than k, handled below)
            warnings.simplefilter("ignore")
            labels = _kmeans(x, k).labels_
        if 2 <= len(set(labels.tolist())) <= n - 1:
            sil[k] = float(silhouette_score(x, labels, sample_size=min(n, SILHOUETTE_SAMPLE), random_state=SEED))
    if not sil:
        return 1, {}, f"k = 1: no grouping of the {n} rejected images into {lo} to {hi} groups separates them."
    best = max(sil, key=lambda k: (sil[k], -k))
    return best, sil, (f"k = {best} of {lo}..{hi}: the highest silhouette ({sil[best]:.2f}; 1 = groups far apart, "
                       f"0 = no separation).")


def group_unknowns(searcher, score: str = DEFAULT, threshold: Optional[float] = None, groups: Optional[int] = None,
                   vocab_extra: Iterable[str] = (), top_names: int = TOP_NAMES, central: int = CENTRAL,
                   prompt: str = DEFAULT_NAMING_PROMPT, imagenet: Optional[bool] = None, which: str = "after") -> dict:
    """The run's rejected images (on ``score`` below ``threshold``, default the run's own) in groups, each named.

    Returns plain data: {"groups": [{"size", "names": [{"name", "similarity"}…], "nearest_prior": {"name",
    "similarity"}, "mistaken" (nearest prior closer than any new name), "indices" and "paths" (all the group's
    images, most central first: nearest the group's centre), "central" (how many of them to show), "truth" ({true
    folder: count}, or None without ground truth)}…] (largest group first), "how" (how k was chosen, in words), "k",
    "auto", "silhouettes", "rejected", "images", "vocabulary" (how many names), "prompt", "score", "threshold"}.
    ``groups`` = None or 0: chosen by silhouette."""
    with searcher.lock:
        return _group(searcher, score, threshold, groups, list(vocab_extra), top_names, central, prompt, imagenet,
                      which)


def _group(searcher, score, threshold, groups, vocab_extra, top_names, central, prompt, imagenet, which) -> dict:
    preds = searcher.preds[which]
    thr = searcher.threshold(which, score) if threshold is None else float(threshold)
    rejected = np.flatnonzero(~searcher.known(which, score, thr))
    n = len(rejected)
    out = {"groups": [], "k": 0, "auto": not groups, "silhouettes": {}, "rejected": n, "images": len(preds),
           "vocabulary": 0, "vocabulary_from": "", "too_long": 0, "prompt": prompt, "score": score, "threshold": thr}
    if groups is not None and int(groups) < 0:
        raise ValueError(f"The number of groups must be at least 1 (or 0 to choose it), not {int(groups)}.")
    if n == 0:
        out["how"] = "No image is rejected at this threshold: there is nothing to group."
        return out
    x = _unit(searcher._features(which)[rejected])
    if groups:
        k = min(int(groups), n)
        out["how"] = (f"k = {k}, as you asked." if k == int(groups) else
                      f"k = {k}: you asked for {int(groups)} groups, but only {n} image"
                      f"{' is' if n == 1 else 's are'} rejected, so each is a group of its own.")
        sil = {}
    else:
        k, sil, out["how"] = choose_k(x)
    out["k"], out["silhouettes"] = k, sil
    if k == 1:
        labels, centres = np.zeros(n, dtype=int), x.mean(axis=0, keepdims=True)
    else:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km = _kmeans(x, k)
        labels, centres = km.labels_, km.cluster_centers_
    vocab, out["too_long"] = fitting(searcher, vocabulary(searcher.config, vocab_extra, imagenet), vocab_extra)
    prior = prior_names(searcher.config)
    out["vocabulary"], out["vocabulary_from"] = len(vocab), vocabulary_words(searcher.config, vocab_extra, imagenet)
    t_vocab = text_features(searcher, vocab, prompt) if vocab else None
    t_prior = text_features(searcher, prior, prompt) if prior else None
    found = []
    for g in range(k):
        members = np.flatnonzero(labels == g)
        if not len(members):
            continue
        dist = np.linalg.norm(x[members] - centres[g], axis=1)
        order = members[np.argsort(dist, kind="stable")]
        idx = [int(rejected[i]) for i in order]
        mean = _unit(x[members].mean(axis=0))
        names = _nearest(mean, t_vocab, vocab, top_names)
        near = (_nearest(mean, t_prior, prior, 1) or [None])[0]
        found.append({"size": len(idx), "names": names, "nearest_prior": near,
                      "mistaken": bool(near is not None and (not names or near["similarity"] > names[0]["similarity"])),
                      "indices": idx, "paths": [preds.paths[i] for i in idx], "central": min(int(central), len(idx)),
                      "truth": (dict(Counter(preds.true_class[i] for i in idx).most_common())
                                if preds.truth is not None else None)})
    found.sort(key=lambda d: (-d["size"], d["indices"][0]))
    out["groups"] = found
    return out


def _nearest(mean: np.ndarray, texts: Optional[np.ndarray], names: Sequence[str], top: int) -> list[dict]:
    """The ``top`` names whose text features have the highest cosine with ``mean`` (both unit), best first (ties:
    earlier name)."""
    if texts is None or not len(names) or top <= 0:
        return []
    sims = texts.astype(np.float64) @ mean
    order = np.argsort(-sims, kind="stable")[:top]
    return [{"name": names[i], "similarity": round(float(sims[i]), 4)} for i in order]


def mistake_sentence(group: dict) -> Optional[str]:
    """"looks like 'hexagon' (already in your prior): probably rejected by mistake", with both similarities, for a
    group whose mean is closer to a prior class than to any new name; None otherwise."""
    near = group.get("nearest_prior")
    if not group.get("mistaken") or not near:
        return None
    best = group["names"][0] if group.get("names") else None
    than = (f" than to any new name (best: '{best['name']}', {best['similarity']:.2f})" if best else "")
    return (f"looks like '{near['name']}' (already in your prior): {MISTAKE}. Its mean is closer to "
            f"'{near['name']}' ({near['similarity']:.2f}){than}.")


def truth_sentence(group: dict) -> Optional[str]:
    """"true folders: cross 43, arrow 1" (None without ground truth)."""
    t = group.get("truth")
    if not t:
        return None
    return "true folders: " + ", ".join(f"{name or '(none)'} {c}" for name, c in t.items())


# ---------------------------------------------------------------------------------------------- command line
def add_unknowns_parser(sub) -> None:
    """``python -m ueo_core unknowns --run RUN [--vocab FILE] [--groups K] [--score S] [--threshold T] [--json]``."""
    from .scores import SCORES
    u = sub.add_parser("unknowns", help="groups among a run's rejected images (k-means on their adapted features, k "
                                        "by silhouette), each with suggested names from a vocabulary (ImageNet's "
                                        "class names, Shapes' concepts for the built-in model, your own)")
    u.add_argument("--run", required=True, help="a finished run folder")
    u.add_argument("--vocab", metavar="FILE", help="more names to suggest: a text file, one per line (added to the "
                                                   "default vocabulary; the prior's names are always left out)")
    u.add_argument("--groups", type=int, metavar="K", default=0,
                   help="number of groups (default: chosen by silhouette among "
                        f"{K_RANGE[0]}..{K_RANGE[1]})")
    u.add_argument("--score", choices=list(SCORES), default=DEFAULT,
                   help="known/unknown score (default %(default)s, as Inspect opens)")
    u.add_argument("--threshold", type=float, help="threshold on the score (default: the run's own)")
    u.add_argument("--prompt", choices=list(NAMING_PROMPTS), default=DEFAULT_NAMING_PROMPT,
                   help="how names become text features: the run's template in words (template) or with its learned "
                        "context, as the adapted classifier encodes its classes (learned) (default %(default)s)")
    u.add_argument("--imagenet", action="store_true",
                   help="with the built-in Shapes model, add ImageNet's 1,000 class names to its 22 concepts (words "
                        "it never learned: expect odd names; other models always use them)")
    u.add_argument("--central", type=int, default=CENTRAL,
                   help="most central images listed per group (default %(default)s; --json lists all)")
    u.add_argument("--json", action="store_true", help='print {"groups": [{"size", "names", "nearest_prior", '
                                                       '"paths"}…], "how"} as JSON')


def public_result(result: dict, root) -> dict:
    """The result as the CLI prints it: every path inside the data folder, never the server's."""
    from .privacy import public_path
    groups = [{"size": g["size"], "names": g["names"], "nearest_prior": g["nearest_prior"],
               "mistaken": g["mistaken"], "truth": g["truth"], "paths": [public_path(p, root) for p in g["paths"]]}
              for g in result["groups"]]
    keep = ("how", "k", "auto", "rejected", "images", "vocabulary", "vocabulary_from", "too_long", "prompt", "score",
            "threshold")
    return {"groups": groups, **{k: result[k] for k in keep}}


def cmd_unknowns(args) -> int:
    """Runs in this process (the CLI is not the web server): the same engine as the warm worker."""
    from .privacy import data_root
    from .search import Searcher
    if not Path(args.run).is_dir():
        raise ValueError(f"No run folder at {args.run}.")
    if args.groups < 0:
        raise ValueError(f"--groups must be at least 1 (or 0 to choose it), not {args.groups}.")
    extra = read_names(args.vocab) if args.vocab else []
    s = Searcher(args.run)
    res = group_unknowns(s, score=args.score, threshold=args.threshold, groups=args.groups or None,
                         vocab_extra=extra, central=args.central, prompt=args.prompt,
                         imagenet=True if args.imagenet else None)
    pub = public_result(res, data_root(s.config.get("data")))
    if args.json:
        json.dump(pub, sys.stdout, indent=1)
        print()
        return 0
    print(f"{res['rejected']} of {res['images']} images rejected ({res['score']} threshold {res['threshold']:.3g}); "
          f"{res['how']}")
    print(f"names from a vocabulary of {res['vocabulary']} ({res['vocabulary_from']}; {res['prompt']} prompt), the "
          "prior's left out"
          + (f", and {res['too_long']} too long for this model's text context" if res["too_long"] else "")
          + "; similarity: cosine of the group's mean adapted image feature to the name's text feature")
    for n, (g, raw) in enumerate(zip(pub["groups"], res["groups"]), 1):
        print(f"\ngroup {n}: {g['size']} image{'s' if g['size'] != 1 else ''}")
        print("  names: " + ("; ".join(f"{d['name']} {d['similarity']:.3f}" for d in g["names"]) or "(none)"))
        if g["nearest_prior"]:
            print(f"  nearest prior: {g['nearest_prior']['name']} {g['nearest_prior']['similarity']:.3f}")
        sentence = mistake_sentence(raw)
        if sentence:
            print(f"  {sentence}")
        if truth_sentence(raw):
            print(f"  {truth_sentence(raw)}")
        shown, total = g["paths"][:max(0, args.central)], len(g["paths"])
        print(f"  most central first{'' if len(shown) == total else f' ({len(shown)} of {total})'}:")
        for p in shown:
            print(f"    {p}")
    return 0
