"""Explore (issue 29): each map's selection apart with its own captions, the score colours follow the chosen score,
and a run on too few images is told so without a Try again. No Ray: the runs and their maps are made on disk."""
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from studio import workspace

WS = "ab" * 16
RID = "20260101-120000-ueo-abcdef"
CLASSES = ["circle", "square"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A workspaces root of the test's own; submitting an exploration is recorded and refused (no Ray here)."""
    from ueo_core import jobs
    from ueo_core.cluster import ClusterError
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    submitted = []

    def refuse(run_dir, *a, **kw):
        submitted.append(run_dir)
        raise ClusterError("no Ray in this test")
    monkeypatch.setattr(jobs, "submit_exploration", refuse)
    return submitted


def predictions(paths, pred, values, score="energy"):
    from ueo_core.analysis.predictions import Predictions
    values = np.asarray(values, dtype=float)
    return Predictions(paths=list(paths), true_class=[""] * len(paths), pred=np.asarray(pred),
                       confidence=values, entropy=np.zeros(len(paths)), classes=CLASSES, truth=None,
                       scores={score: values}, score=score)


def make_run(n: int, with_maps: bool = False):
    """A finished run of ``n`` images in the test workspace (its zero-shot predictions differ from its adapted
    ones), and with ``with_maps`` its exploration's PCA and UMAP maps, as the job writes them."""
    from ueo_core import explore
    run = workspace.WORKSPACES / WS / "runs" / RID
    (run / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = {"predictions.csv": [], "predictions_zero_shot.csv": []}
    for i in range(n):
        path = run / "images" / f"img_{i}.png"
        Image.new("RGB", (8, 8), (30 * i % 255, 0, 0)).save(path)
        for name, pred, energy in (("predictions_zero_shot.csv", 0, 3.0 + 0.2 * i),
                                   ("predictions.csv", 1, 5.0 + 0.3 * i)):
            rows[name].append({"path": str(path), "true_class": "", "predicted_class": CLASSES[pred],
                               "confidence": round(0.5 + 0.04 * i, 6), "entropy": 0.5, "predicted_known": True,
                               "score_energy": round(energy, 6)})
    from ueo_core.metrics import write_predictions
    for name, r in rows.items():
        write_predictions(run / name, r)
    (run / "config.json").write_text(json.dumps({"method": "ueo", "data": "shapes:sketch", "model": "ueo-tiny",
                                                 "summary": {"classes": CLASSES}}))
    (run / "metrics.json").write_text(json.dumps({"before": {"threshold": 0.6}, "after": {"threshold": 0.7}}))
    if with_maps:
        explore.folder(run).mkdir()
        for name in (explore.PCA, explore.UMAP):
            np.savez(explore.folder(run) / name, before=rng.normal(size=(n, 2)), after=rng.normal(size=(n, 2)))
    return run


def explore_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/4_Explore.py"), default_timeout=120)
    at.session_state["ws"] = WS
    at.session_state["active_run"] = RID
    return at


def test_selections_keep_each_maps_picks_apart_with_that_maps_captions():
    """Points picked on the zero-shot map are captioned with the zero-shot class and score, those on the adapted
    map with the adapted ones; the two lists are never merged, and each is ordered most sure first."""
    from ueo_core.explore import selections
    paths = [f"/x/img_{i}.png" for i in range(5)]
    before = predictions(paths, [0, 0, 0, 0, 0], [3.0, 3.5, 4.0, 4.5, 2.0])
    after = predictions(paths, [1, 1, 1, 1, 1], [6.0, 5.0, 7.0, 5.5, 8.0])
    zs, ad = selections({"before": [1, 3, 3], "after": [0, 4]}, {"before": before, "after": after})
    assert (zs.key, zs.heading, zs.indices) == ("before", "Selected on the zero-shot map (2)", [3, 1])
    assert zs.paths == [paths[3], paths[1]] and zs.captions == ["circle 4.5", "circle 3.5"]
    assert (ad.key, ad.heading, ad.indices) == ("after", "Selected on the adapted map (2)", [4, 0])
    assert ad.captions == ["square 8", "square 6"]
    empty, only = selections({"after": [2]}, {"before": before, "after": after})
    assert empty.heading == "Selected on the zero-shot map (0)" and not empty.paths
    assert only.indices == [2] and only.captions == ["square 7"]


@pytest.mark.parametrize("score, before, after, thr_before, thr_after", [
    ("energy", [3.2, 4.1, 4.9, 5.3], [4.6, 5.8, 6.4, 7.1], 4.4, 4.97),
    ("msp", [0.31, 0.42, 0.55, 0.61], [0.48, 0.71, 0.88, 0.94], 0.5, 0.6)])
def test_score_colours_follow_the_chosen_score(score, before, after, thr_before, thr_after):
    """The colour bar spans the chosen score's values, the same on both maps, is titled with the score's name,
    and each map's threshold is the neutral middle of its diverging scale (orange below, green above)."""
    from studio.charts import KNOWN_COLOR, NEUTRAL_COLOR, UNKNOWN_COLOR, embedding_scatter
    from ueo_core.explore import score_colours
    from ueo_core.scores import LABELS
    values = {"before": np.array(before), "after": np.array(after)}
    thresholds = {"before": thr_before, "after": thr_after}
    sc = score_colours(values, thresholds, score)
    lo, hi = min(before + after), max(before + after)
    assert (sc.lo, sc.hi) == (lo, hi) and sc.title == LABELS[score]
    xy = np.arange(8.0).reshape(4, 2)
    for key in ("before", "after"):
        fig = embedding_scatter(xy, values[key], ["h"] * 4, key, continuous=True, colour_range=(sc.lo, sc.hi),
                                threshold=thresholds[key], colour_title=sc.title)
        marker = fig.data[0].marker
        assert (marker.cmin, marker.cmax) == (lo, hi)
        assert marker.colorbar.title.text == LABELS[score]
        scale = [(float(f), c) for f, c in marker.colorscale]
        mid = (thresholds[key] - lo) / (hi - lo)
        assert scale == [(0.0, UNKNOWN_COLOR), (pytest.approx(mid), NEUTRAL_COLOR), (1.0, KNOWN_COLOR)]
        assert f"threshold {thresholds[key]:.3g}" in marker.colorbar.ticktext
    note = sc.note()
    assert LABELS[score] in note and f"from {lo:.3g} to {hi:.3g}" in note
    assert f"{thr_before:.3g} on the zero-shot map, {thr_after:.3g} on the adapted one" in note


def test_the_minimum_is_the_one_the_maps_need():
    """explore.MIN_IMAGES is what the maps need: PCA and UMAP refuse one image fewer (before any UMAP work)."""
    from ueo_core import explore
    from ueo_core.embed import pca_2d, umap_2d
    assert pca_2d(np.random.default_rng(0).normal(size=(explore.MIN_IMAGES, 8))).shape == (explore.MIN_IMAGES, 2)
    with pytest.raises(ValueError, match="at least"):
        umap_2d(np.ones((explore.MIN_IMAGES - 1, 8)))
    assert explore.too_few(explore.MIN_IMAGES) is None
    assert explore.too_few(1).startswith("This run has 1 image;")


def test_a_run_on_one_image_is_told_plainly_without_try_again(isolated):
    """One image: the page says the maps need more, offers no Try again, and queues no job that must fail; the job
    itself refuses with the same sentence (one minimum, ``explore.MIN_IMAGES``)."""
    run = make_run(1)
    at = explore_page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(m.value for m in list(at.info) + list(at.error) + list(at.warning))
    assert not isolated, f"an exploration that must fail was queued; the page said: {said}"
    assert not [b for b in at.button if b.label == "Try again"]
    from ueo_core import explore
    assert f"This run has 1 image; the maps need at least {explore.MIN_IMAGES}" in said, said
    with pytest.raises(ValueError, match="This run has 1 image;"):  # the job says the same, before any work
        explore.compute(run)
    assert not explore.folder(run).exists()


def on_maps_with_energy(n: int = 6):
    """The Explore page of a run whose maps have landed, coloured by Energy; returns (page, run folder)."""
    run = make_run(n, with_maps=True)
    at = explore_page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [r for r in at.radio if r.label == "Colour by"][0].set_value("score").run()
    next(b for b in at.selectbox if b.label == "Known/unknown score").set_value("energy").run()
    assert not at.exception, [e.value for e in at.exception]
    return at, run


def test_explore_page_colours_by_energy_on_one_range_titled_energy(isolated):
    """Coloured by Energy, both maps share one range (the values of both) titled 'Energy', and the caption says
    what the colours mean."""
    from ueo_core.analysis import read_predictions
    from ueo_core.explore import predictions_before
    at, run = on_maps_with_energy()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == 2
    energy = np.concatenate([read_predictions(run).by("energy").confidence,
                             predictions_before(run).by("energy").confidence])
    for spec in specs:
        marker = spec["data"][0]["marker"]
        assert (marker["cmin"], marker["cmax"]) == (pytest.approx(energy.min()), pytest.approx(energy.max()))
        assert marker["colorbar"]["title"]["text"] == "Energy"
    assert any(c.value.startswith("Colour: Energy from 3 to 6.5, the same scale on both maps") for c in at.caption)
    assert not isolated


def test_explore_page_lists_each_maps_selection_apart(isolated):
    """A lasso on each map (the chart's selection state, as the browser sends it): each map's picks are listed
    under its own heading, captioned with that map's class and Energy, most sure first."""
    at, _ = on_maps_with_energy()
    for key, idx in (("before", [1, 4]), ("after", [2])):
        at.session_state[f"map_{key}_UMAP"] = {"selection": {"points": [{"customdata": i} for i in idx],
                                                             "point_indices": idx, "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    heads = [s.value for s in at.subheader]
    assert heads[-3:] == ["Selected on the zero-shot map (2)", "Selected on the adapted map (1)",
                          "Take the selection home"], heads
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert [c.split(" · ")[0] for c in captions] == ["circle 3.8", "circle 3.2", "square 5.6"], captions
    assert all(c.endswith((" · known", " · unknown")) for c in captions)  # where each goes, at its map's threshold
    assert not isolated


def test_a_selection_goes_home_as_labels_and_a_sort_of_just_those_images(isolated, monkeypatch):
    """The lasso's images, sent on: the page offers the three label formats and a sort of exactly those images (a
    job, asked with their paths), and the labels hold exactly those images at the adapted map's threshold."""
    import csv
    import io
    from ueo_core.export import export_bytes
    from studio import jobs as studio_jobs
    at, run = on_maps_with_energy()
    at.session_state["map_after_UMAP"] = {"selection": {"points": [{"customdata": i} for i in (2, 5)],
                                                        "point_indices": [2, 5], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["labels for Label Studio tasks with pre-filled choices", "labels for FiftyOne image "
                      "classification", "labels for plain CSV"], labels
    asked = []
    monkeypatch.setattr(studio_jobs.engine, "submit_sort", lambda job_dir, payload, **kw: asked.append(payload))
    next(b for b in at.button if b.label == "Sort these 2 images").click().run()
    assert not at.exception, [e.value for e in at.exception]
    paths = [str(run / "images" / f"img_{i}.png") for i in (2, 5)]
    assert len(asked) == 1 and sorted(asked[0]["only"]) == paths and asked[0]["score"] == "energy"
    threshold = asked[0]["threshold"]
    rows = list(csv.DictReader(io.StringIO(export_bytes(run, "csv", "energy", threshold, only=paths)[2].decode())))
    assert sorted(r["path"] for r in rows) == ["img_2.png", "img_5.png"]


def test_a_sort_of_a_selection_decides_just_those_images(isolated):
    from ueo_core.sort import decide
    run = make_run(6)
    paths = [str(run / "images" / f"img_{i}.png") for i in (0, 3)]
    (run / "config.json").write_text(json.dumps({"method": "ueo", "data": str(run / "images"), "model": "ueo-tiny",
                                                 "summary": {"classes": CLASSES}}))
    dec = decide(run, None, "energy", 5.5, only=paths)
    assert sorted(r.source for r in dec.rows) == paths
    assert [r.known for r in sorted(dec.rows, key=lambda r: r.source)] == [False, True]  # energies 5.0 and 5.9
