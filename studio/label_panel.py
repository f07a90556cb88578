"""Inspect's "Check with a few labels" (issue 31): a person labels some of the run's images, one at a time, and the
page estimates from those labels what ground truth would tell (known-class accuracy, the unknowns rejected, AUROC,
each with a 95 % interval), beside the real values where the folder has ground truth. Layout only: the labels live
in the workspace's SQLite (``ueo_core.labels.LabelStore``), the estimates are ``ueo_core.estimate``'s.

Two browser tabs may label at once, so nothing of the labelling lives in one tab's session but what is that tab's
own (the images it skipped, the image it was asked to show again):
- the next image is chosen on every draw from the database as it is then (the first image of the list that nobody
  has labelled yet), never from what this tab remembers: a label given in the other tab is seen at once; and an
  image another tab shows is left to it (``_shown``), so two tabs take turns down the list instead of both labelling
  the same image;
- each button carries the image it was drawn with (``on_click`` arguments), so a click labels the image the person
  saw, even when the other tab labelled that same image in between (then both labels are rows, the later one in
  force: the race is recorded, not lost);
- every click is one row, written (and on disk) before the page redraws.

The model's verdict is not shown beside the image: a person who sees "circle 0.93" tends to agree with it
(anchoring), and a label that only repeats the model checks nothing.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np
import streamlit as st

from ueo_core.analysis import shown_rate
from ueo_core.estimate import DEFINITIONS, ESTIMATES, MIN_LABELS, estimate, true_values
from ueo_core.labels import UNKNOWN_LABEL, Label, LabelStore, labels_csv, proposals, random_order
from ueo_core.privacy import data_root, public_path

from . import ui
from .workspace import friendly, labels_db  # (friendly: no server path, no token)

N_RANDOM = 40          # the random sample proposed (more labels narrow the intervals; the list goes on)
N_INFORMATIVE = 20     # the images proposed near the threshold
RECENT = 50            # labels offered to change or remove, newest first
IMAGE_PX = 288         # one image, large enough to judge
LISTS = {"random": "Random sample (for the estimates)", "informative": "Most informative (near the threshold)"}
BASES = {"random": "the random sample only", "all": "all labels, weighted by inverse probability"}
YOUDEN = "youden"      # the third threshold choice on Inspect, beside metrics.SPLITS
KEYS = {"unknown": "U", "skip": "S", "undo": "Z"}  # keyboard shortcuts (the classes: 1-9)
SHOWN_S = 60.0         # an image shown in another tab is left to it this long (a closed tab's, then offered again)


# ------------------------------------------------------------------------------------------------- the labels
class LiveLabels(Mapping):
    """This run's labels as they are in the database when read, not when the page was drawn: the downloads (made
    when their button is pressed, outside the page's run) then carry the labels given since in the panel, whose
    clicks rerun the panel only. ``{image as the run names it: label text}``."""

    def __init__(self, db: str, paths: Sequence[str]):
        self.db, self.paths = db, list(paths)

    def _now(self) -> dict[str, str]:
        return {p: lab.label for p, lab in LabelStore(self.db).current(images=self.paths).items()}

    def __getitem__(self, key: str) -> str:
        return self._now()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    def items(self):  # one query, not one per key
        return self._now().items()


def person_labels(preds) -> Optional[LiveLabels]:
    """The person's labels of this run's images for the exports (``run_downloads``), read when a file is made;
    None while there is none (the exports then stay as they were)."""
    live = LiveLabels(str(labels_db()), preds.paths)
    try:
        return live if len(live) else None
    except (sqlite3.Error, OSError):  # (the panel says so; the exports stay the model's)
        return None


def labels_now(preds) -> dict[str, str]:
    """``{image: label text}`` as it is now: what a sort job (a JSON payload) is given; none when the labels
    cannot be read (the panel says so)."""
    try:
        return dict(LiveLabels(str(labels_db()), preds.paths).items())
    except (sqlite3.Error, OSError):
        return {}


def sorted_known(preds, thr: float) -> tuple[int, int]:
    """(images the sort puts in a known class's folder, images whose folder a person's label decides), as
    ``ueo_core.sort.decide`` does: a label of a prior class puts its image in that class's folder, "unknown" (or
    a class outside the prior) in 'unknown'; the others follow the threshold."""
    given = labels_now(preds)
    known = 0
    for i, p in enumerate(preds.paths):
        known += (given[p] in preds.classes) if p in given else bool(preds.confidence[i] >= thr)
    return int(known), len(given)


def sort_note(n_mine: int) -> str:
    return (f" Your labels decide the folders of {n_mine} of these images (counted above), marked as a person's."
            if n_mine else "")


# ------------------------------------------------------------------------------------------------ the estimates
def _snapshot(labels: dict[str, Label]) -> tuple:
    return tuple(sorted((p, lab.label, lab.source) for p, lab in labels.items()))


@st.cache_data(show_spinner=False, max_entries=64)
def _estimate(key: tuple, _preds, threshold: float, _labels: dict, random_only: bool) -> dict:
    """``estimate`` once per (run, score, labels, threshold, basis): the AUROC bootstrap takes from 0.1 s (40
    labels) to seconds (hundreds), and the page redraws far more often than the labels change."""
    return estimate(_preds, threshold, _labels, random_only=random_only)


def estimates(rid: str, preds, threshold: float, labels: dict[str, Label], random_only: bool) -> dict:
    """``estimate``, cached by the run's predictions (a resumed run rewrites them under the same id) and labels."""
    made = hashlib.sha1(np.ascontiguousarray(preds.confidence, dtype=np.float64).tobytes()
                        + np.ascontiguousarray(preds.pred, dtype=np.int64).tobytes()).hexdigest()
    return _estimate((rid, preds.score, made, _snapshot(labels)), preds, float(threshold), labels,
                     bool(random_only))


def _basis_key(rid: str) -> str:
    return f"lbl_basis|{rid}"


def random_only(rid: str) -> bool:
    return st.session_state.get(_basis_key(rid), "random") == "random"


@dataclass(frozen=True)
class YoudenChoice:
    """Inspect's third threshold choice: ``options`` ({YOUDEN: its name}) when the labels support one, else empty
    and ``note`` says why."""
    options: dict = field(default_factory=dict)
    value: Optional[float] = None
    n: int = 0
    note: str = ""

    @property
    def key(self) -> str:
        """For the threshold slider's key: a new value from new labels moves the slider there."""
        return f"{YOUDEN}{self.value:.6g}"


def youden_choice(rid: str, preds) -> YoudenChoice:
    """Youden's J from this run's labels at the page's score (the basis chosen in the panel), or why not. (The
    threshold given to ``estimate`` does not change Youden's J: it only judges the unknowns rejected.)"""
    absent = "A third choice, Youden's J from your labels (Check with a few labels, below), is not offered: "
    try:
        labels = LabelStore(labels_db()).current(images=preds.paths)
    except (sqlite3.Error, OSError) as err:
        return YoudenChoice(note=absent + f"your labels cannot be read now ({friendly(err)}).")
    if not labels:
        return YoudenChoice(note=absent + "no image of this run is labelled yet.")
    est = estimates(rid, preds, 0.0, labels, random_only(rid))
    if est["threshold_youden"] is None:
        why = est.get("threshold_youden_reason") or "too few labels."
        return YoudenChoice(note=absent + why[0].lower() + why[1:])
    n = int(est["n_used"])
    return YoudenChoice({YOUDEN: f"Youden's J from your {n} label{'s' if n != 1 else ''}"},
                        float(est["threshold_youden"]), n,
                        f"Youden's J on your {n} label{'s' if n != 1 else ''} ("
                        + ("the random sample" if est["random_only"] else "all, weighted") + "): the cut that "
                        "maximises the share of known images accepted minus the share of unknowns accepted.")


# ------------------------------------------------------------------------------------------------- the clicks
def _say(rid: str, text: str, error: bool = False) -> None:
    st.session_state[f"lbl_said|{rid}"] = (text, error)


def _give(db: str, rid: str, image: str, label: str, source: str, name: str) -> None:
    """A label button: one row for the image this button was drawn with."""
    try:
        LabelStore(db).add(image, label, rid, source)
    except (sqlite3.Error, OSError, ValueError) as err:
        _say(rid, f"Not saved: {name} could not be labelled ({friendly(err)}). Try again.", error=True)
        return
    st.session_state.pop(f"lbl_focus|{rid}", None)
    _say(rid, f"Saved: {name} is '{label}'.")


def _skip(rid: str, image: str, name: str) -> None:
    """Skip: nothing is stored; this tab does not show the image again (until 'Show the skipped again')."""
    st.session_state.setdefault(f"lbl_skipped|{rid}", set()).add(image)
    st.session_state.pop(f"lbl_focus|{rid}", None)
    _say(rid, f"Skipped {name} (not labelled).")


def _undo(db: str, rid: str, root, by_server: dict) -> None:
    """Undo: the newest label given on this run that is still in force (from any tab) is removed, and its image
    shown again."""
    try:
        image = LabelStore(db).undo_last(rid)
    except (sqlite3.Error, OSError) as err:
        _say(rid, f"Nothing undone: the labels cannot be written now ({friendly(err)}).", error=True)
        return
    if image is None:
        _say(rid, "Nothing to undo: no label of this run is in force.")
        return
    path, source = by_server.get(image, (image, "other"))
    st.session_state[f"lbl_focus|{rid}"] = (path, source)
    _say(rid, f"Undone: {public_path(image, root)} is unlabelled again.")


def _focus(rid: str, path: str, source: str, name: str) -> None:
    st.session_state[f"lbl_focus|{rid}"] = (path, source)
    _say(rid, f"Showing {name} again: give it another label below.")


def _remove(db: str, rid: str, path: str, name: str) -> None:
    try:
        LabelStore(db).remove(path, rid)
    except (sqlite3.Error, OSError) as err:
        _say(rid, f"Not removed: {friendly(err)}", error=True)
        return
    _say(rid, f"Removed the label of {name}: it counts as unlabelled again.")


def _unskip(rid: str) -> None:
    st.session_state.pop(f"lbl_skipped|{rid}", None)


# ------------------------------------------------------------------------------------------------- the page
def next_image(order: Sequence[int], paths: Sequence[str], labelled, skipped, shown_elsewhere=()) -> Optional[int]:
    """The first image of ``order`` nobody has labelled (``labelled``: the database's, now), this tab has not
    skipped and no other tab shows; when every such image is shown elsewhere, the first of those."""
    spare = None
    for i in order:
        if paths[i] not in labelled and paths[i] not in skipped:
            if paths[i] not in shown_elsewhere:
                return int(i)
            spare = int(i) if spare is None else spare
    return spare


@st.cache_resource(show_spinner=False)
def _shown() -> tuple[dict, threading.Lock]:
    """What each tab of each workspace shows now, in this server's memory: ``{(db, run): {tab: (image, time)}}``.
    Two tabs labelling one run are then shown different images, instead of the same one twice (where the later
    label would only replace the earlier: work lost). A tab closed leaves its image to the others after
    ``SHOWN_S``."""
    return {}, threading.Lock()


def _pick(rid: str, db: str, order, paths, labelled, skipped) -> Optional[int]:
    """``next_image``, leaving the images other tabs show to them; this tab's choice is noted at once (under one
    lock, so that two tabs drawing together do not both take the same image)."""
    tab = st.session_state.setdefault("lbl_tab", uuid.uuid4().hex)
    seen, lock = _shown()
    with lock:
        now = time.time()
        here = seen.setdefault((db, rid), {})
        for other in [t for t, (_, at) in here.items() if now - at > SHOWN_S]:
            del here[other]
        elsewhere = {img for t, (img, _) in here.items() if t != tab}
        i = next_image(order, paths, labelled, skipped, elsewhere)
        if i is None:
            here.pop(tab, None)
        else:
            here[tab] = (paths[i], now)
        return i


def render(rid: str, folder, preds, score: str, thr: float) -> None:
    """The panel, under Inspect's galleries: the interactive part is a fragment (a click reruns it, not the
    page)."""
    st.subheader("Check with a few labels")
    ui.explain("Label a few images and the page estimates, with a 95 % interval each, what ground truth would tell: "
               "how often the run gives a known image its class, how many unknowns it rejects, AUROC. The estimates "
               "come from the random sample: every image had the same chance to be in it, so its labels are honest "
               "about the whole folder. The most informative images sit near the threshold, where a label teaches "
               "the most about where to cut, but they are not typical: they are kept out of the estimates.")
    root = data_root((folder.config or {}).get("data"))
    try:
        db = str(labels_db())
        had = bool(LabelStore(db).current(images=preds.paths))
    except (sqlite3.Error, OSError) as err:
        st.error(f"Your labels cannot be read now: {friendly(err)}")
        return
    page_youden = youden_choice(rid, preds).value
    _panel(rid, preds, score, float(thr), root, db, had, page_youden)


@st.fragment
def _panel(rid, preds, score, thr, root, db, had, page_youden) -> None:
    store = LabelStore(db)
    current = store.current(images=preds.paths)
    basis = random_only(rid)
    est = estimates(rid, preds, thr, current, basis)
    now = (bool(current), est["threshold_youden"])
    if now != (had, page_youden) and st.session_state.get(f"lbl_synced|{rid}") != now:
        st.session_state[f"lbl_synced|{rid}"] = now  # (once per state: never a loop of reruns)
        st.rerun()  # the exports' labels or the Youden choice above change: redraw the page once
    _labelling(rid, preds, thr, root, db, current)
    _estimates(rid, preds, score, thr, root, current, est)


def _labelling(rid, preds, thr, root, db, current: dict[str, Label]) -> None:
    which = st.radio("Images to label", list(LISTS), format_func=LISTS.get, horizontal=True, key=f"lbl_list|{rid}",
                     help="The random sample is the images of this run in a random order fixed for the run: its "
                          "first labels are a simple random sample. The informative ones: the images nearest the "
                          "threshold, taken in turn from each predicted class and the rejected.")
    order = (random_order(preds) if which == "random" else
             proposals(preds, thr, n_random=N_RANDOM, n_informative=N_INFORMATIVE)["informative"])
    skipped = st.session_state.get(f"lbl_skipped|{rid}", set())
    focus = st.session_state.get(f"lbl_focus|{rid}")
    index = {p: i for i, p in enumerate(preds.paths)}
    if focus and focus[0] in index:
        i, source = index[focus[0]], focus[1]
    else:
        i, source = _pick(rid, db, order, preds.paths, current, skipped), which
    _progress(preds, current, skipped)
    said = st.session_state.get(f"lbl_said|{rid}")
    if i is None and which == "informative" and not order:
        st.info(f"No image is left to propose as informative: all {len(preds)} images of this run are in the "
                f"random sample of {N_RANDOM}. Label them there.")
    elif i is None:
        st.success(f"Every image of this list is labelled{' or skipped' if skipped else ''}."
                   + (" More random labels narrow the intervals: the random sample goes on past "
                      f"{N_RANDOM}." if which == "informative" else ""))
    else:
        _one_image(rid, preds, root, db, current, i, source)
    if said:
        (st.error if said[1] else st.caption)(said[0])
    if skipped:
        st.button(f"Show the {len(skipped)} skipped image{'s' if len(skipped) != 1 else ''} again",
                  key=f"lbl_unskip|{rid}", on_click=_unskip, args=(rid,), type="tertiary")
    _your_labels(rid, preds, root, db, current)


def _progress(preds, current: dict[str, Label], skipped) -> None:
    n_random = sum(1 for lab in current.values() if lab.source == "random")
    n_inf = sum(1 for lab in current.values() if lab.source == "informative")
    other = len(current) - n_random - n_inf
    # (the random sample goes on past the 40 proposed; a folder of fewer images has fewer to give)
    target = max(min(N_RANDOM, len(preds)), n_random)
    parts = [f"{n_random} of {target} random labels", f"{n_inf} of {N_INFORMATIVE} informative"]
    if other:
        parts.append(f"{other} other")
    text = (" · ".join(parts) + f" · {len(current)} of this run's {len(preds)} images labelled"
            + (f" · {len(skipped)} skipped in this tab" if skipped else ""))
    st.progress(min(1.0, n_random / target), text=text)


def _one_image(rid, preds, root, db, current: dict[str, Label], i: int, source: str) -> None:
    path = preds.paths[i]
    name = public_path(path, root)
    now = current.get(path)  # (shown again to change it: ``source`` is still how it came to be labelled)
    c_img, c_buttons = st.columns([1, 2])
    with c_img, st.container(key=f"lbl_view|{rid}"):
        try:
            st.image(ui.thumbnail(path, size=IMAGE_PX, mtime=os.stat(path).st_mtime), width=IMAGE_PX)
        except Exception:  # a file that vanished or broke since the run: say so, the buttons still work
            st.warning(f"{name} cannot be shown.")
        st.caption(f"`{name}`" + (f" · labelled '{now.label}': pick another label to change it" if now else ""))
    with c_buttons:
        st.markdown("**What is this image?**")
        names = list(preds.classes)
        cols = st.columns(3)
        for k, c in enumerate(names):
            cols[k % 3].button(c, key=f"lbl_class|{rid}|{k}", shortcut=str(k + 1) if k < 9 else None,
                               on_click=_give, args=(db, rid, path, c, source, name), width="stretch",
                               type="primary" if now is not None and now.label == c else "secondary")
        c1, c2, c3 = st.columns(3)
        c1.button("unknown", key=f"lbl_unknown|{rid}", shortcut=KEYS["unknown"], on_click=_give,
                  args=(db, rid, path, UNKNOWN_LABEL, source, name), width="stretch",
                  type="primary" if now is not None and now.label == UNKNOWN_LABEL else "secondary",
                  help="none of the prior's classes")
        c2.button("skip", key=f"lbl_skip|{rid}", shortcut=KEYS["skip"], on_click=_skip, args=(rid, path, name),
                  width="stretch", help="cannot tell: nothing is stored, the next image comes")
        by_server = {lab.image: (p, lab.source) for p, lab in current.items()}
        c3.button("undo", key=f"lbl_undo|{rid}", shortcut=KEYS["undo"], on_click=_undo,
                  args=(db, rid, root, by_server), width="stretch",
                  help="removes the newest label given on this run (in any tab) and shows its image again")
        ui.explain(f"Keys: 1–{min(len(names), 9)} for the classes in this order, U unknown, S skip, Z undo. The "
                   "model's verdict is hidden, so that it does not sway your label.")


def _your_labels(rid, preds, root, db, current: dict[str, Label]) -> None:
    if not current:
        return
    newest = sorted(current.items(), key=lambda kv: -kv[1].at)[:RECENT]
    with st.expander(f"Your labels of this run's images ({len(current)}): change or remove one"):
        now = time.time()
        if len(current) > 10:
            st.caption(f"The 10 newest of your {len(current)} labels; the list below offers the "
                       f"{len(newest)} newest.")
        ui.table([{"image": public_path(p, root), "label": lab.label, "list": lab.source,
                   "given": _ago(now - lab.at)} for p, lab in newest[:10]])
        names = {p: f"{public_path(p, root)} · {lab.label}" for p, lab in newest}
        pick = st.selectbox("Label", list(names), format_func=names.get, key=f"lbl_pick|{rid}",
                            help=f"the {len(newest)} newest labels, newest first")
        if pick in current:
            name = public_path(pick, root)
            c1, c2 = st.columns(2)
            c1.button("Show it to label again", key=f"lbl_again|{rid}", on_click=_focus,
                      args=(rid, pick, current[pick].source, name), width="stretch")
            c2.button("Remove its label", key=f"lbl_remove|{rid}", on_click=_remove, args=(db, rid, pick, name),
                      width="stretch")


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    return (f"{s} s ago" if s < 60 else f"{s // 60} min ago" if s < 3600 else f"{s // 3600} h ago" if s < 86400
            else f"{s // 86400} d ago")


def _estimates(rid, preds, score, thr, root, current: dict[str, Label], est: dict) -> None:
    st.markdown("**Estimates from your labels**")
    st.radio("Estimate from", list(BASES), format_func=BASES.get, horizontal=True, key=_basis_key(rid),
             help="The random sample only: honest, the informative labels left out. All labels: each image of the "
                  "random sample stands for the images nobody chose (inverse-probability weights), the chosen "
                  "ones count once each.")
    real = true_values(preds, thr)
    rows, reasons = [], []
    for key, what in ESTIMATES.items():
        e = est[key]
        row = {"estimate": what, "from your labels": "too few labels" if e["value"] is None
               else shown_rate(e["value"]),
               "95 % interval": "–" if e["value"] is None else f"{shown_rate(e['low'])} – {shown_rate(e['high'])}",
               "n labels": int(e["n"])}
        if e["value"] is None:
            reasons.append(e["reason"])
        if real:
            row[f"real value (all {len(preds)} images)"] = shown_rate(real.get(key))
            row["inside the interval"] = _inside(e, real.get(key))
        rows.append(row)
    ui.table(rows)
    if not est["n_used"]:  # nothing to estimate from yet: one sentence, not three "too few"
        ui.explain(est["basis"] + f" Each estimate needs at least {MIN_LABELS} labels of its kind: {MIN_LABELS} of "
                   f"a prior class for the known-class accuracy, {MIN_LABELS} 'unknown' for the unknowns rejected, "
                   "both for AUROC and for Youden's J.")
    else:
        ui.explain(est["basis"] + " " + " ".join(reasons))
        ui.explain(agreement(est, real, len(preds)) if real else
                   "This folder has no ground truth (no class folders named in the prior): your labels are the only "
                   "check of this run there is.")
    ui.explain(". ".join(f"{ESTIMATES[k][0].upper() + ESTIMATES[k][1:]}: {DEFINITIONS[k]}" for k in ESTIMATES)
               + f". The threshold is the one above ({thr:.3f}); rates in points (86.7 = 86.7 %).")
    t = est["threshold_youden"]
    if t is not None:
        ui.explain(f"Youden's J from these labels puts the threshold at {t:.3f}: it is offered above as a third "
                   "default threshold, beside 2-means and Otsu.")
    elif est["n_used"]:
        ui.explain(est["threshold_youden_reason"])
    _downloads(rid, root, current)


def _inside(e: dict, real: Optional[float]) -> str:
    """Whether the real value lies in the interval, judged on the figures as shown (one decimal), so that a reader
    checking the table finds the same."""
    if e["value"] is None or real is None:
        return "–"
    shown = lambda v: round(v * 100, 1)  # noqa: E731
    return "yes" if shown(e["low"]) <= shown(real) <= shown(e["high"]) else "no"


def agreement(est: dict, real: dict, n_images: int) -> str:
    """A sentence, from the table's numbers: which real values lie inside their estimate's interval."""
    inside, outside, none = [], [], []
    for key, what in ESTIMATES.items():
        verdict = _inside(est[key], real.get(key))
        (inside if verdict == "yes" else outside if verdict == "no" else none).append(what)
    parts = []
    if inside:
        one = len(inside) == 1
        who = (f"all {len(inside)} real values" if len(inside) == len(ESTIMATES) else f"the real {_and(inside)}")
        parts.append(f"{who} (over all {n_images} images) lie{'s' if one else ''} inside "
                     f"{'its' if one else 'their'} 95 % interval{'' if one else 's'}")
    if outside:
        one = len(outside) == 1
        parts.append(f"the real {_and(outside)} lie{'s' if one else ''} outside {'its' if one else 'their'} "
                     f"interval{'' if one else 's'}: a 95 % interval misses about 1 time in 20 by chance; more "
                     "random labels tell")
    if none:
        parts.append(f"no interval yet for {_and(none)} (too few labels)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _and(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _downloads(rid, root, current: dict[str, Label]) -> None:
    if not current:
        return
    random = {p: lab for p, lab in current.items() if lab.source == "random"}
    c1, c2 = st.columns(2)
    c1.download_button("Download my labels (labels.csv)", labels_csv(current, root), f"{rid}-labels.csv",
                       "text/csv", key=f"lbl_csv|{rid}", on_click="ignore",
                       help="path,label: images named by their path inside the data folder; "
                            "`python -m ueo_core estimate --run RUN --labels labels.csv` reads it")
    if len(random) < len(current):
        c2.download_button(f"Download the random sample's {len(random)} labels only", labels_csv(random, root),
                           f"{rid}-labels-random.csv", "text/csv", key=f"lbl_csv_random|{rid}", on_click="ignore",
                           help="the CLI counts every row of a labels CSV as a random sample: give it these for "
                                "honest estimates")
