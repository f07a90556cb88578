"""What adaptation changed (issue 31, part 3): each image's zero-shot decision beside its adapted one, the flips by
kind, fixed / broken / still wrong where truth exists, the sentence from those counts; Inspect's "What adaptation
changed" view and its AUROC, FPR95 and AUPR beside the counts; Explore's colouring by what changed. No Ray: runs
are made on disk."""
import json
import re
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT

CLASSES = ["circle", "square"]
T_BEFORE, T_AFTER = 0.5, 0.6
# (truth, zero-shot class, zero-shot MSP, adapted class, adapted MSP, kind, outcome): truth -1 is an unknown image.
# Zero-shot is judged at T_BEFORE, adapted at T_AFTER: a value between the two (0.55) is known zero-shot and unknown
# adapted, and a value equal to a threshold is accepted.
UP, DOWN, CLASS, SAME = "unknown → known", "known → unknown", "class changed", "unchanged"
SPEC = [
    (0, 0, 0.40, 0, 0.90, UP, "fixed"),
    (1, 1, 0.30, 1, 0.80, UP, "fixed"),
    (0, 1, 0.45, 0, 0.70, UP, "fixed"),
    (-1, 0, 0.30, 1, 0.80, UP, "broken"),
    (1, 0, 0.20, 0, 0.70, UP, "still wrong"),
    (0, 1, 0.49, 1, 0.61, UP, "still wrong"),
    (-1, 1, 0.90, 1, 0.55, DOWN, "fixed"),
    (0, 0, 0.80, 0, 0.50, DOWN, "broken"),
    (1, 1, 0.50, 1, 0.59, DOWN, "broken"),
    (1, 0, 0.90, 0, 0.10, DOWN, "still wrong"),
    (1, 0, 0.90, 1, 0.90, CLASS, "fixed"),
    (0, 1, 0.70, 0, 0.60, CLASS, "fixed"),
    (0, 0, 0.90, 1, 0.90, CLASS, "broken"),
    (-1, 0, 0.90, 1, 0.90, CLASS, "still wrong"),
    (-1, 1, 0.80, 0, 0.95, CLASS, "still wrong"),
    (0, 0, 0.70, 0, 0.95, SAME, ""),
    (-1, 1, 0.10, 0, 0.20, SAME, ""),      # the nearest class changed, but unknown both times
    (1, 0, 0.90, 0, 0.80, SAME, ""),       # wrong both times, the same decision
]
COUNTS = {UP: {"images": 6, "fixed": 3, "broken": 1, "still wrong": 2},
          DOWN: {"images": 4, "fixed": 1, "broken": 2, "still wrong": 1},
          CLASS: {"images": 5, "fixed": 2, "broken": 1, "still wrong": 2}}
SENTENCE = ("Adaptation changed 15 of 18 decisions: 6 unknown → known (3 fixed, 1 broken, 2 still wrong), "
            "4 known → unknown (1 fixed, 2 broken, 1 still wrong), 5 class changed (2 fixed, 1 broken, 2 still "
            "wrong); net +2 right decisions.")
UNKNOWN_FOLDER = "cross"


def folder_of(truth: int) -> str:
    return CLASSES[truth] if truth >= 0 else UNKNOWN_FOLDER


def pair(truth: bool = True, shuffle: bool = True):
    """(zero-shot, adapted) Predictions of SPEC; the zero-shot ones listed in another order (matched by path)."""
    from ueo_core.analysis.predictions import Predictions
    paths = [f"/data/{folder_of(t)}/img_{i}.png" for i, (t, *_) in enumerate(SPEC)]
    t = np.array([s[0] for s in SPEC])

    def preds(cls, val, order):
        val = np.asarray(val, dtype=float)[order]
        return Predictions(paths=[paths[i] for i in order],
                           true_class=[folder_of(t[i]) if truth else "" for i in order],
                           pred=np.asarray(cls)[order], confidence=val, entropy=np.zeros(len(order)),
                           classes=CLASSES, truth=t[order] if truth else None,
                           scores={"msp": val, "energy": 10 * val[::-1].copy()})
    order = np.arange(len(SPEC))
    before = preds([s[1] for s in SPEC], [s[2] for s in SPEC], order[::-1].copy() if shuffle else order)
    after = preds([s[3] for s in SPEC], [s[4] for s in SPEC], order)
    return before, after


# ------------------------------------------------------------------------------------------------- the engine
def test_each_kind_and_outcome_on_a_hand_made_pair():
    """Every image gets the kind and outcome worked out by hand, each side at its own threshold, the zero-shot file
    matched by path though it lists the images in another order; the counts follow."""
    from ueo_core.analysis import changes
    before, after = pair()
    ch = changes(before, after, T_BEFORE, T_AFTER)
    assert list(ch.kind) == [s[5] for s in SPEC]
    assert list(ch.outcome()) == [s[6] for s in SPEC]
    assert ch.counts() == COUNTS
    assert ch.rows()[-1] == {"change": "all changes", "images": 15, "fixed": 6, "broken": 4, "still wrong": 5}
    assert (ch.t_before, ch.t_after) == (T_BEFORE, T_AFTER) and not ch.identical
    # captions: ✓/✗ of the adapted decision, the true folder, zero-shot → adapted and the adapted value
    assert ch.caption(0) == "✓ circle · unknown → circle 0.9"
    assert ch.caption(6) == "✓ cross · square → unknown 0.55"
    assert ch.caption(14) == "✗ cross · square → circle 0.95"
    assert list(ch.of(CLASS)) == [14, 10, 12, 13, 11]  # surest adapted first (stable among equals)


def test_the_sentence_is_the_counts_and_net_is_the_open_set_accuracy_gained():
    """The sentence's numbers are the counts; net = right decisions after − before, as metrics.h_score counts them
    (known images accepted with their class, unknown images rejected)."""
    from ueo_core.analysis import changes
    from ueo_core.metrics import h_score
    before, after = pair()
    ch = changes(before, after, T_BEFORE, T_AFTER)
    text = ch.summary()
    assert text == SENTENCE
    head = re.match(r"Adaptation changed (\d+) of (\d+) decisions", text)
    assert int(head[1]) == sum(c["images"] for c in ch.counts().values()) and int(head[2]) == len(SPEC)
    for kind, c in ch.counts().items():
        found = re.search(rf"(\d+) {kind} \((\d+) fixed, (\d+) broken, (\d+) still wrong\)", text)
        assert tuple(map(int, found.groups())) == (c["images"], c["fixed"], c["broken"], c["still wrong"])

    def right(p, thr):
        h = h_score(p.pred, p.confidence, p.truth, thr)
        known = p.truth >= 0
        return round(h["known_acc_open_image"] * known.sum() + h["unknown_rejection"] * (~known).sum())
    net = int(re.search(r"net ([+-]\d+)", text)[1])
    assert net == right(after, T_AFTER) - right(before, T_BEFORE) == 2


def test_without_ground_truth_only_kinds_are_counted():
    """No truth: the same kinds, no fixed/broken, no ✓ or ✗, and a sentence that claims no rightness."""
    from ueo_core.analysis import changes
    ch = changes(*pair(truth=False), T_BEFORE, T_AFTER)
    assert list(ch.kind) == [s[5] for s in SPEC] and ch.outcome() is None and not ch.has_truth
    assert ch.counts() == {k: {"images": c["images"]} for k, c in COUNTS.items()}
    assert ch.summary() == ("Adaptation changed 15 of 18 decisions: 6 unknown → known, 4 known → unknown, 5 class "
                            "changed. Without ground truth nobody can say which changes were right.")
    assert ch.caption(0) == "unknown → circle 0.9"


def one_image_fewer(p):
    keep = slice(0, len(p) - 1)
    return replace(p, paths=p.paths[keep], true_class=p.true_class[keep], pred=p.pred[keep],
                   confidence=p.confidence[keep], entropy=p.entropy[keep], truth=p.truth[keep],
                   scores={k: v[keep] for k, v in p.scores.items()})


@pytest.mark.parametrize("break_it, words", [
    (one_image_fewer, "do not list the same images"),
    (lambda p: replace(p, paths=["/data/other.png"] + p.paths[1:]), "do not list the same images"),
    (lambda p: replace(p, paths=[p.paths[0]] + p.paths[:-1]), "twice"),
    (lambda p: replace(p, classes=["circle", "star"]), "different known classes"),
], ids=["one image fewer", "another image", "an image twice", "other classes"])
def test_files_that_do_not_list_the_same_images_are_refused_in_words(break_it, words):
    from ueo_core.analysis import changes
    before, after = pair()
    with pytest.raises(ValueError, match=words) as err:
        changes(break_it(before), after, T_BEFORE, T_AFTER)
    assert "/data" not in str(err.value)  # no path in the words


def test_a_run_that_did_not_adapt_changed_nothing_whatever_the_thresholds():
    """A zero-shot (or training-free) run: its two files hold the same predictions, so nothing changed, even where
    the chosen threshold is not the zero-shot one (moving a threshold is not adapting)."""
    from ueo_core.analysis import changes
    _, after = pair(shuffle=False)
    before, _ = pair(shuffle=True)
    same = replace(after)
    ch = changes(same, after, 0.3, T_AFTER)
    assert ch.identical and (ch.kind == SAME).all() and ch.t_before == ch.t_after == T_AFTER
    assert ch.summary().startswith("Nothing changed: this run's predictions are its zero-shot ones") and "18" in \
        ch.summary()
    assert not changes(before, after, T_BEFORE, T_AFTER).identical


def test_the_zero_shot_threshold_is_the_runs_own():
    """MSP at the run's split: metrics.json's "before" threshold (said to be given where the run was given one);
    another score or split: that split of the zero-shot values."""
    from ueo_core.analysis import zero_shot_threshold
    before, _ = pair()
    metrics = {"before": {"threshold": 0.42}, "after": {"threshold": 0.6}}
    assert zero_shot_threshold(before, metrics, "msp", "2means", {"split": "2means"}) == (0.42, "label-free, 2-means")
    assert zero_shot_threshold(before, metrics, "msp", "2means", {"threshold": 0.42})[1] == \
        "the threshold the run was given"
    assert zero_shot_threshold(before, metrics, "msp", "otsu", {})[0] == before.default_threshold("otsu")
    assert zero_shot_threshold(before, metrics, "energy", "2means", {})[0] == \
        pytest.approx(before.by("energy").default_threshold("2means"))


# -------------------------------------------------------------------------------------------- the pages
WS = "cd" * 16
RID = "20260101-120000-ueo-c4a9ed"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A workspaces root of the test's own; an exploration is refused (no Ray here)."""
    from ueo_core import jobs
    from ueo_core.cluster import ClusterError
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")

    def refuse(*a, **kw):
        raise ClusterError("no Ray in this test")
    monkeypatch.setattr(jobs, "submit_exploration", refuse)


def make_run(truth: bool = True, zero_shot: bool = True, maps: bool = False, adapted: bool = True):
    """SPEC as a finished run in the test workspace: images, predictions.csv and predictions_zero_shot.csv (MSP and
    Energy), metrics.json's thresholds T_BEFORE / T_AFTER; with ``maps`` its exploration's PCA and UMAP. Not
    ``adapted``: a zero-shot run, whose two files hold the same (adapted) predictions."""
    from studio import workspace
    from ueo_core import explore
    from ueo_core.metrics import write_predictions
    run = workspace.WORKSPACES / WS / "runs" / RID
    rows = {"predictions_zero_shot.csv": [], "predictions.csv": []}
    for i, (t, bc, bv, ac, av, *_) in enumerate(SPEC):
        path = run / "images" / folder_of(t) / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (12 * i, 0, 0)).save(path)
        zs = (bc, bv) if adapted else (ac, av)
        for name, cls, v in (("predictions_zero_shot.csv", *zs), ("predictions.csv", ac, av)):
            rows[name].append({"path": str(path), "true_class": folder_of(t) if truth else "",
                               "predicted_class": CLASSES[cls], "confidence": v, "entropy": 0.5,
                               "predicted_known": True, "score_msp": v, "score_energy": round(3 + 4 * v + 0.01 * i, 6)})
    for name, r in rows.items():
        if zero_shot or name == "predictions.csv":
            write_predictions(run / name, r)
    (run / "config.json").write_text(json.dumps({"method": "ueo", "data": str(run / "images"), "model": "ueo-tiny",
                                                 "split": "2means", "summary": {"classes": CLASSES}}))
    (run / "metrics.json").write_text(json.dumps({"before": {"threshold": T_BEFORE}, "after": {"threshold": T_AFTER}}))
    if maps:
        rng = np.random.default_rng(0)
        explore.folder(run).mkdir()
        for name in (explore.PCA, explore.UMAP):
            np.savez(explore.folder(run) / name, before=rng.normal(size=(len(SPEC), 2)),
                     after=rng.normal(size=(len(SPEC), 2)))
    return run


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=120)
    at.session_state["ws"] = WS
    at.session_state["active_run"] = RID
    return at


def ok(at) -> None:
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]


def metrics_of(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_inspect_shows_the_scores_auroc_fpr95_aupr_beside_its_counts():
    """Inspect's counts at the threshold and, beside them, the chosen score's AUROC, FPR95 and AUPR-In as the
    engine computes them (``scores.detection``) from the run's predictions; they follow the chosen score."""
    from ueo_core.analysis import read_predictions, shown_rate
    from ueo_core.scores import detection
    run = make_run()
    at = page("5_Inspect.py")
    at.run()
    ok(at)
    preds = read_predictions(run)
    for score in ("msp", "energy"):
        if score != "msp":
            next(b for b in at.selectbox if b.label == "Known/unknown score").set_value(score).run()
            ok(at)
        p = preds.by(score)
        thr = at.slider[0].value
        d = detection(p.confidence, p.truth)
        n_acc = int((p.confidence >= thr).sum())
        assert metrics_of(at) == {"Accepted as known": str(n_acc), "Rejected as unknown": str(len(p) - n_acc),
                                  "AUROC": shown_rate(d["auroc"]), "FPR95": shown_rate(d["fpr95"]),
                                  "AUPR": shown_rate(d["aupr_in"])}, score
    assert not any("metrics.json reports" in (b.help or "") for b in at.selectbox)


def test_inspect_without_ground_truth_says_there_is_no_auroc():
    make_run(truth=False)
    at = page("5_Inspect.py")
    at.run()
    ok(at)
    assert set(metrics_of(at)) == {"Accepted as known", "Rejected as unknown"}
    assert any("No ground truth" in c.value and "no AUROC, FPR95 or AUPR" in c.value for c in at.caption)


def test_inspect_shows_what_adaptation_changed_with_its_counts_and_images():
    """The "What adaptation changed" view at the run's thresholds: the sentence and table of SPEC's counts, and the
    images of the kind picked, captioned zero-shot → adapted with ✓/✗."""
    make_run()
    at = page("5_Inspect.py")
    at.run()
    ok(at)
    assert "What adaptation changed" in [s.value for s in at.subheader]
    assert SENTENCE in [m.value for m in at.markdown], [m.value for m in at.markdown]
    assert any(c.value.endswith(f"Zero-shot decisions are judged at their own threshold, MSP (max softmax) ≥ "
                                f"{T_BEFORE:.3f} (label-free, 2-means); adapted ones at the threshold chosen above, "
                                f"MSP (max softmax) ≥ {T_AFTER:.3f}.") for c in at.caption)
    table = next(t.value for t in at.table if "change" in t.value.columns)
    got = {r["change"]: {k: int(r[k]) for k in ("images", "fixed", "broken", "still wrong")}
           for _, r in table.iterrows()}
    assert got == {**COUNTS, "all changes": {"images": 15, "fixed": 6, "broken": 4, "still wrong": 5}}
    radio = next(r for r in at.radio if r.label == "Kind of change")
    assert radio.options == [f"{k} · {c['images']}" for k, c in COUNTS.items()]
    radio.set_value(DOWN).run()
    ok(at)
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert [c for c in captions if " → unknown " in c] == [  # surest adapted first
        "✗ square · square → unknown 0.59", "✓ cross · square → unknown 0.55",
        "✗ circle · circle → unknown 0.5", "✗ square · circle → unknown 0.1"]


def test_inspect_says_why_a_run_without_zero_shot_predictions_has_no_changed_view():
    from ueo_core.analysis.changes import NO_ZERO_SHOT
    make_run(zero_shot=False)
    at = page("5_Inspect.py")
    at.run()
    ok(at)
    assert NO_ZERO_SHOT in [i.value for i in at.info]
    assert not [r for r in at.radio if r.label == "Kind of change"]


def test_inspect_says_nothing_changed_on_a_run_that_did_not_adapt():
    """A zero-shot run: one sentence that nothing changed (no table, no gallery), whatever its two thresholds."""
    make_run(adapted=False)
    at = page("5_Inspect.py")
    at.run()
    ok(at)
    said = [m.value for m in at.markdown if m.value.startswith("Nothing changed")]
    assert said == ["Nothing changed: this run's predictions are its zero-shot ones (the same class and score for "
                    f"each of its {len(SPEC)} images), so no decision flipped."]
    assert not [r for r in at.radio if r.label == "Kind of change"]
    assert not [t for t in at.table if "change" in t.value.columns]


def explore_maps(zero_shot: bool = True) -> AppTest:
    make_run(maps=True, zero_shot=zero_shot)
    at = page("4_Explore.py")
    at.run()
    ok(at)
    return at


def traces(at) -> list[list[dict]]:
    """Each map's traces, their image indices (customdata) decoded (Plotly sends arrays as base64)."""
    import base64
    out = []
    for c in at.get("plotly_chart"):
        data = json.loads(c.proto.spec)["data"]
        for t in data:
            cd = t["customdata"]
            t["customdata"] = (np.frombuffer(base64.b64decode(cd["bdata"]), dtype=cd["dtype"]).tolist()
                               if isinstance(cd, dict) else list(cd))
        out.append(data)
    return out


def test_explore_colours_the_points_that_flipped_and_can_show_only_those():
    """Colour by "what adaptation changed": both maps carry one trace per kind with its images (the engine's
    kinds at each map's threshold), and "only the points whose decision flipped" hides the unchanged ones while the
    flipped ones keep their image indices for selections."""
    at = explore_maps()
    colour_by = next(r for r in at.radio if r.label == "Colour by")
    assert "what adaptation changed" in colour_by.options
    colour_by.set_value("what adaptation changed").run()
    ok(at)
    want = {k: sorted(i for i, s in enumerate(SPEC) if s[5] == k) for k in (UP, DOWN, CLASS, SAME)}
    for data in traces(at):
        got = {t["name"].split(" · ")[0]: sorted(t["customdata"]) for t in data}
        assert got == want
        assert [t["name"] for t in data][0] == f"{SAME} · 3"  # under the flips
        assert all(t.get("visible", True) is True for t in data)
    assert any(c.value.startswith(SENTENCE) for c in at.caption), [c.value for c in at.caption]
    next(c for c in at.checkbox if c.label == "Only the points whose decision flipped").check().run()
    ok(at)
    for data in traces(at):
        hidden = [t["name"] for t in data if t.get("visible") == "legendonly"]
        assert hidden == [f"{SAME} · 3"]
        assert sorted(i for t in data if t.get("visible", True) is True for i in t["customdata"]) == \
            sorted(want[UP] + want[DOWN] + want[CLASS])


def test_explore_offers_no_changes_for_a_run_without_zero_shot_predictions():
    at = explore_maps(zero_shot=False)
    assert "what adaptation changed" not in next(r for r in at.radio if r.label == "Colour by").options
