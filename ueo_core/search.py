"""Search a run's images: "Find images of …" (a text) or "More like this" (an image), ranked by the cosine similarity
of the run's adapted image features to the query's feature.

- The image features are Explore's (``explore.run_model``: the same disk cache), "after" by default; "before" (the
  zero-shot ones) is for comparison (``bench/search.py``).
- The text feature is the text tower's for the run's template with the query where a class name goes (``PROMPTS``:
  "template"), a leading article of the query dropped when the template ends with one ("a red star" → "a photo of
  a red star."). It ranked best of the three ways on Shapes (bench/search.py: mean precision@20 over the 9 shapes
  97.8 % vs 96.7 % for the words as typed and 95.6 % for the run's learned context, which was trained to tell the
  prior's classes apart, not to read new words: it lost hexagons, 85 → 65 %).
- ``filter="known"`` / ``"unknown"`` keeps the images the run accepts / rejects: its predictions at its threshold
  (``Predictions.at_threshold``, as Inspect), on the chosen score.

A ``Searcher`` holds the loaded model and the features: the warm search worker on Ray keeps one per run
(``ueo_core.workers.SearchWorker``, reached through ``ueo_core.jobs.search``); the CLI makes one per command
(``text_query``, ``like_image``). Nothing here runs in the web server.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .analysis import read_predictions
from .runs import CHECKPOINT, RunFolder
from .scores import DEFAULT

# How the query becomes a text feature. template (the default): the run's template in words ("a photo of a {}.")
# through the frozen tower, as the zero-shot classifier's; learned: the run's learned context + the query where a
# class name goes (the adapted classifier's own text side); raw: the query as typed. bench/search.py compares them.
PROMPTS = ("learned", "template", "raw")
DEFAULT_PROMPT = "template"
FILTERS = ("known", "unknown")
ARTICLES = ("a", "an", "the")


@dataclass(frozen=True)
class Hit:
    """One result: the image's index in the run's predictions.csv, its path on the server (for the page's
    thumbnail; the CLI prints it relative to the data folder), its similarity, and the run's verdict on it."""
    rank: int
    index: int
    path: str
    similarity: float
    predicted: str
    known: bool


def rank(features: np.ndarray, vector: np.ndarray, top: int, keep: Optional[np.ndarray] = None) \
        -> list[tuple[int, float]]:
    """(index, cosine similarity) of the ``top`` rows of ``features`` most similar to ``vector``, best first (ties:
    lower index first), among the rows where ``keep`` is True."""
    f = np.asarray(features, dtype=np.float32)
    v = np.asarray(vector, dtype=np.float32).ravel()
    sims = (f @ v) / np.maximum(np.linalg.norm(f, axis=1) * np.linalg.norm(v), 1e-12)
    idx = np.arange(len(f)) if keep is None else np.flatnonzero(keep)
    order = idx[np.argsort(-sims[idx], kind="stable")][:max(0, int(top))]
    return [(int(i), float(sims[i])) for i in order]


def query_name(query: str, template: str) -> str:
    """The query as it goes where the template's class name goes: spaces collapsed, and a leading article dropped
    when the template's words before ``{}`` end with one ("a red star" in "a photo of a {}." → "red star")."""
    words = " ".join(str(query).split())
    if not words:
        raise ValueError("Type what to find, e.g. 'a red star'.")
    before = template.split("{}")[0].split()
    first, _, rest = words.partition(" ")
    if before and before[-1].lower() in ARTICLES and first.lower() in ARTICLES and rest:
        return rest
    return words


def _check_length(text: str, tokenizer, what: str) -> None:
    """Refuse a query the text tower would cut off (it reads ``context_length`` tokens), in words."""
    limit = getattr(tokenizer, "context_length", None)
    if limit and hasattr(tokenizer, "encode"):
        n = len(tokenizer.encode(text)) + 2  # with the start and end of text
        if n > limit:
            raise ValueError(f"The search is too long for this model: {what} makes {n} tokens and it reads at most "
                             f"{limit}. Use fewer words.")


class Searcher:
    """A run's model (text tower, adapted image tower) and its images' features, loaded once."""

    def __init__(self, run_dir: str | Path, maps: Sequence[str] = ("after",), device: Optional[str] = None,
                 cache_dir=None, progress=None):
        from . import explore
        self.run_dir = Path(run_dir)
        folder = RunFolder(self.run_dir)
        self.config = folder.config
        if not self.config:
            raise ValueError("This run has no results to search yet (no config.json).")
        self.template = self.config.get("template") or "a photo of a {}."
        self.stamp = self._stamp()
        self.loaded, tensors, self.features = explore.run_model(self.run_dir, cache_dir=cache_dir, progress=progress,
                                                                maps=maps, device=device)
        self.ctx = tensors.get("prompt.ctx")
        self.preds = {"after": read_predictions(self.run_dir)}
        before = explore.predictions_before(self.run_dir)
        self.preds["before"] = before if before is not None else self.preds["after"]
        self.metrics = folder.read_json("metrics.json") or {}
        self.lock = threading.Lock()  # one query at a time (a warm worker may be asked by several pages)

    def _stamp(self) -> tuple:
        """What the loaded state depends on (the checkpoint and the predictions): a resumed run changes them."""
        out = []
        for name in (CHECKPOINT, "predictions.csv"):
            try:
                st = os.stat(self.run_dir / name)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def stale(self) -> bool:
        return self._stamp() != self.stamp

    # ------------------------------------------------------------------------------------------ query features
    def text_feature(self, query: str, which: str = "after", prompt: str = DEFAULT_PROMPT) -> np.ndarray:
        """The query's L2-normalised text feature (see ``PROMPTS``). "before" has no learned context: its learned
        prompt is the template's own words, as the zero-shot classifier's."""
        import torch
        from .models import inference_autocast
        from .prompts import PromptLearner
        if prompt not in PROMPTS:
            raise ValueError(f"Unknown prompt '{prompt}': one of {', '.join(PROMPTS)}.")
        loaded = self.loaded
        name = query_name(query, self.template)  # (refuses an empty query)
        text = self.prompt_text(query, prompt)
        _check_length(text, loaded.tokenizer, f"'{text}'")
        with torch.no_grad(), inference_autocast(loaded):
            if prompt == "learned":
                learner = PromptLearner(loaded, [name], self.template).to(loaded.device)
                if which == "after" and self.ctx is not None and tuple(self.ctx.shape) == tuple(learner.ctx.shape):
                    learner.ctx.copy_(self.ctx.to(learner.ctx.device, learner.ctx.dtype))
                f = learner(normalize=True)
            else:
                f = loaded.model.encode_text(loaded.tokenizer([text]).to(loaded.device), normalize=True)
        return f.float().cpu().numpy()[0]

    def prompt_text(self, query: str, prompt: str = DEFAULT_PROMPT) -> str:
        """The words the query is encoded as (the learned prompt's context shown as the template's own words)."""
        if prompt == "raw":
            return " ".join(str(query).split())
        from .prompts import class_prompt_name
        return self.template.format(class_prompt_name(query_name(query, self.template)))

    def index_of(self, image) -> Optional[int]:
        """The index of ``image`` in the run (an index, a server path, or a path inside the run's data folder), or
        None for a file that is not one of the run's images."""
        paths = self.preds["after"].paths
        if isinstance(image, (int, np.integer)):
            if not 0 <= int(image) < len(paths):
                raise ValueError(f"No image {int(image)} in this run (it has {len(paths)}).")
            return int(image)
        from .privacy import data_root
        root = data_root(self.config.get("data"))
        where = {os.path.realpath(p): i for i, p in enumerate(paths)}
        for cand in (Path(image), (root / image) if root is not None else None):
            if cand is not None and os.path.realpath(cand) in where:
                return where[os.path.realpath(cand)]
        return None

    def image_feature(self, image, which: str = "after") -> np.ndarray:
        """The feature of one of the run's images (by index or path), or of another image file through the run's
        adapted image tower ("after" only: the model holds the adapted tower)."""
        i = self.index_of(image)
        if i is not None:
            return self._features(which)[i]
        p = Path(image)
        if not p.is_file():
            raise ValueError(f"'{image}' is neither one of this run's images nor an image file.")
        if which != "after":
            raise ValueError("An image from outside the run can be compared with the adapted features only.")
        from .embed import image_features
        return image_features(self.loaded, [str(p)], variant=self.loaded.variant)[0]

    def _features(self, which: str) -> np.ndarray:
        if which not in self.features:
            raise ValueError(f"This search holds the {', '.join(self.features)} features, not '{which}'.")
        return self.features[which]

    # --------------------------------------------------------------------------------------------- the filter
    def threshold(self, which: str = "after", score: str = DEFAULT) -> float:
        """The run's own threshold on ``score``, as Inspect opens with: metrics.json's for MSP, else the score's
        label-free split (the run's ``split``)."""
        saved = (self.metrics.get(which) or {}).get("threshold")
        if score == DEFAULT and saved is not None:
            return float(saved)
        return float(self.preds[which].by(score).default_threshold(self.config.get("split", "2means")))

    def known(self, which: str = "after", score: str = DEFAULT, threshold: Optional[float] = None) -> np.ndarray:
        """True where the run accepts the image as known: its predictions at ``threshold`` (default: its own)."""
        p = self.preds[which].by(score)
        t = self.threshold(which, score) if threshold is None else float(threshold)
        mask = np.zeros(len(p), dtype=bool)
        mask[p.at_threshold(t)["accepted"]] = True
        return mask

    # ------------------------------------------------------------------------------------------------ queries
    def _hits(self, vector: np.ndarray, top: int, filter: Optional[str], which: str, score: str,
              threshold: Optional[float]) -> list[Hit]:
        if filter not in (None, *FILTERS):
            raise ValueError(f"Filter must be one of {', '.join(FILTERS)} (or none), not '{filter}'.")
        known = self.known(which, score, threshold)
        keep = None if filter is None else (known if filter == "known" else ~known)
        p = self.preds[which]
        return [Hit(r + 1, i, p.paths[i], s, p.classes[p.pred[i]] if 0 <= p.pred[i] < len(p.classes) else "?",
                    bool(known[i]))
                for r, (i, s) in enumerate(rank(self._features(which), vector, top, keep))]

    def text(self, query: str, top: int = 20, filter: Optional[str] = None, score: str = DEFAULT,
             threshold: Optional[float] = None, which: str = "after", prompt: str = DEFAULT_PROMPT) -> list[Hit]:
        """The ``top`` images most like ``query``, best first."""
        with self.lock:
            return self._hits(self.text_feature(query, which, prompt), top, filter, which, score, threshold)

    def like(self, image, top: int = 20, filter: Optional[str] = None, score: str = DEFAULT,
             threshold: Optional[float] = None, which: str = "after") -> list[Hit]:
        """The ``top`` images most like ``image`` (an index of the run, or a path), best first: one of the run's
        own images comes first itself (similarity 1) unless the filter leaves it out."""
        with self.lock:
            return self._hits(self.image_feature(image, which), top, filter, which, score, threshold)

    def query(self, kind: str, what, **options) -> list[Hit]:
        """``kind`` "text" (``what``: the query) or "like" (``what``: an image); what the warm worker answers."""
        if kind == "text":
            return self.text(str(what), **options)
        if kind == "like":
            return self.like(what, **options)
        raise ValueError(f"Unknown search kind '{kind}' (text or like).")


def text_query(run_dir: str | Path, query: str, top: int = 20, filter: Optional[str] = None, score: str = DEFAULT,
               threshold: Optional[float] = None, **options) -> list[Hit]:
    """The run's ``top`` images most like ``query`` (one-off: loads the model; the app asks its warm worker)."""
    return Searcher(run_dir).text(query, top, filter, score, threshold, **options)


def like_image(run_dir: str | Path, image, top: int = 20, filter: Optional[str] = None, score: str = DEFAULT,
               threshold: Optional[float] = None, **options) -> list[Hit]:
    """The run's ``top`` images most like ``image`` (an index of the run, or a path), one-off."""
    return Searcher(run_dir).like(image, top, filter, score, threshold, **options)



# ---------------------------------------------------------------------------------------------- command line
def add_search_parser(sub) -> None:
    """``python -m ueo_core search --run RUN "a red star" --top 20 [--known|--unknown] [--like PATH]``."""
    from .scores import SCORES
    s = sub.add_parser("search", help="find a run's images by a text ('a red star') or like an image, ranked by "
                                      "cosine similarity of its adapted image features (Explore's, cached)")
    s.add_argument("query", nargs="?", help="what to find, e.g. \"a red star\" (or --like)")
    s.add_argument("--run", required=True, help="a finished run folder")
    s.add_argument("--like", metavar="PATH", help="instead of a text: images like this one (a path as printed here, "
                                                  "inside the run's data folder, or any image file)")
    s.add_argument("--top", type=int, default=20, help="how many results (default %(default)s)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--known", dest="filter", action="store_const", const="known",
                       help="only images the run accepts as known (its predictions at its threshold)")
    which.add_argument("--unknown", dest="filter", action="store_const", const="unknown",
                       help="only images the run rejects as unknown")
    s.add_argument("--score", choices=list(SCORES), default=DEFAULT,
                   help="known/unknown score of --known/--unknown (default %(default)s, as Inspect opens)")
    s.add_argument("--threshold", type=float, help="threshold on the score (default: the run's own)")
    s.add_argument("--prompt", choices=list(PROMPTS), default=DEFAULT_PROMPT,
                   help="how the text becomes a feature: the run's template in words (template), the run's learned "
                        "context with the text as a class name (learned), or the text as typed (raw) (default "
                        "%(default)s; bench/search.py compares them)")


def cmd_search(args) -> int:
    """Runs in this process (the CLI is not the web server): the same ``Searcher`` as the warm worker."""
    from .privacy import data_root, public_path
    if args.query and args.like:
        raise ValueError("Give either a text to find or --like PATH, not both.")
    if not (args.query or args.like):
        raise ValueError("Give a text to find (e.g. \"a red star\") or --like PATH.")
    s = Searcher(args.run)
    opts = dict(top=args.top, filter=args.filter, score=args.score, threshold=args.threshold)
    if args.like:
        hits = s.like(args.like, **opts)
        what = f"like {args.like}"
    else:
        hits = s.text(args.query, prompt=args.prompt, **opts)
        what = f"'{args.query}' (as '{s.prompt_text(args.query, args.prompt)}', {args.prompt} prompt)"
    among = {None: "all images", "known": "images accepted as known", "unknown": "images rejected as unknown"}
    t = s.threshold("after", args.score) if args.threshold is None else args.threshold
    print(f"{what}: {len(hits)} of {len(s.preds['after'])} images, among {among[args.filter]} "
          f"({args.score} threshold {t:.3g}), adapted features")
    root = data_root(s.config.get("data"))
    print(f"{'rank':>4}  {'similarity':>10}  {'predicted':<14}{'verdict':<9}path")
    for h in hits:
        print(f"{h.rank:>4}  {h.similarity:>10.4f}  {h.predicted:<14}{'known' if h.known else 'unknown':<9}"
              f"{public_path(h.path, root)}")
    return 0
