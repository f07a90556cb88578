"""Search (issue 30): a text or an image ranks a run's images by the cosine similarity of their adapted features; the
known/unknown filter follows the run's predictions at its threshold; the CLI, the warm worker on Ray and the Explore
page answer as the engine does, and the page loads no model."""
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, tiny_ueo_run
from helpers import rendered
from ueo_core.cli import main

WS = "cd" * 16
RID = "20260102-120000-ueo-abc123"


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache):
    """A one-epoch UEO run of the random-init tiny model on 24 images (18 of the prior's 3 classes)."""
    root = tmp_path_factory.mktemp("search")
    return tiny_ueo_run(root, root / "ws" / WS / "runs" / RID)


@pytest.fixture(scope="module")
def searcher(run):
    from ueo_core.search import Searcher
    return Searcher(run)


def direct_features(run, cache_dir):
    """The run's adapted image features computed apart from the search and Explore: the base model, the
    checkpoint's parameters applied, the image tower over the predictions' files (a cache of its own)."""
    from ueo_core.analysis import read_predictions
    from ueo_core.embed import image_features
    from ueo_core.models import load_model
    from ueo_core.runs import load_checkpoint
    from ueo_core.train import apply_state
    cfg = json.loads((run / "config.json").read_text())
    loaded = load_model(cfg["model"], pretrained=cfg.get("pretrained"), seed=cfg["seed"])
    tensors, _ = load_checkpoint(run)
    assert apply_state(loaded, tensors) > 0
    return loaded, image_features(loaded, read_predictions(run).paths, variant="direct", cache_dir=cache_dir)


def cosine_order(features, vector, keep=None):
    """Indices by cosine similarity, best first, written out by hand (ties: lower index first)."""
    sims = [float(np.dot(f, vector) / (np.sqrt(np.dot(f, f)) * np.sqrt(np.dot(vector, vector)))) for f in features]
    idx = [i for i in range(len(features)) if keep is None or keep[i]]
    return sorted(idx, key=lambda i: (-sims[i], i)), sims


def test_rank_equals_a_direct_cosine_computation():
    """rank() on unnormalised features of different lengths: the order and values of a cosine written out by
    hand, within a kept subset too, and no more than ``top``."""
    from ueo_core.search import rank
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 8)) * rng.uniform(0.1, 10, size=(40, 1))
    vec = rng.normal(size=8) * 3
    order, sims = cosine_order(feats, vec)
    got = rank(feats, vec, 15)
    assert [i for i, _ in got] == order[:15]
    assert [s for _, s in got] == pytest.approx([sims[i] for i in order[:15]], abs=1e-5)
    keep = rng.random(40) < 0.4
    order_kept, _ = cosine_order(feats, vec, keep)
    assert [i for i, _ in rank(feats, vec, 100, keep)] == order_kept


def test_text_search_ranks_the_adapted_features_by_cosine_to_the_prompt(run, searcher, tmp_path):
    """A text query: the run's images in the order of the cosine between their adapted features (computed apart)
    and the text tower's feature of the run's template with the query (a leading article dropped)."""
    import torch
    loaded, feats = direct_features(run, tmp_path)
    with torch.no_grad():
        text = loaded.model.encode_text(loaded.tokenizer(["a photo of a red."]), normalize=True)[0].numpy()
    order, sims = cosine_order(feats, text)
    hits = searcher.text("a red", top=10)
    assert searcher.prompt_text("a red") == "a photo of a red."
    assert [h.index for h in hits] == order[:10]
    assert [h.similarity for h in hits] == pytest.approx([sims[i] for i in order[:10]], abs=1e-4)
    assert [h.rank for h in hits] == list(range(1, 11))
    assert [h.path for h in hits] == [searcher.preds["after"].paths[i] for i in order[:10]]


def test_the_filter_keeps_only_known_or_unknown_images_at_the_threshold(run, searcher):
    """--known / --unknown: the images the run accepts / rejects, by its predictions at its threshold
    (metrics.json's for MSP) or at a threshold given, on the score given; each hit says which it is."""
    from ueo_core.analysis import read_predictions
    preds = read_predictions(run)
    n = len(preds)
    cases = []
    for score in ("msp", "energy"):  # two thresholds a score: a search that ignored the one given passes one at most
        uv = np.unique(preds.by(score).confidence)
        cases += [(score, float(uv[len(uv) // 4])), (score, float(uv[3 * len(uv) // 4]))]
    for score, thr in cases:
        values = preds.by(score).confidence
        known = {i for i in range(n) if values[i] >= thr}
        assert 0 < len(known) < n, "the threshold splits nothing: the test would prove nothing"
        for flt, want in (("known", known), ("unknown", set(range(n)) - known), (None, set(range(n)))):
            hits = searcher.text("red", top=n, filter=flt, score=score, threshold=thr)
            assert {h.index for h in hits} == want, (score, thr, flt)
            assert all(h.known == (h.index in known) for h in hits)
    own = json.loads((run / "metrics.json").read_text())["after"]["threshold"]  # no threshold given: the run's
    assert {h.index for h in searcher.text("red", top=n, filter="known")} == {
        i for i in range(n) if preds.confidence[i] >= own}
    with pytest.raises(ValueError, match="Filter must be"):
        searcher.text("red", filter="maybe")


def test_more_like_this_ranks_the_image_itself_first(run, searcher):
    """Like an image (by index, by its server path, by its path inside the data folder): the image itself first,
    at similarity 1, then the others by cosine; filtered out, it is not there."""
    paths = searcher.preds["after"].paths
    data = Path(json.loads((run / "config.json").read_text())["data"])
    for i in (0, 7, len(paths) - 1):
        for image in (i, paths[i], str(Path(paths[i]).relative_to(data))):
            hits = searcher.like(image, top=5)
            assert hits[0].index == i and hits[0].similarity == pytest.approx(1.0, abs=1e-5), image
            assert hits[1].similarity < hits[0].similarity
        known = searcher.known()
        other = "unknown" if known[i] else "known"
        assert i not in [h.index for h in searcher.like(i, top=len(paths), filter=other)]
    with pytest.raises(ValueError, match="No image 99"):
        searcher.like(99)


def test_a_query_too_long_for_the_text_tower_is_refused_in_words(searcher):
    with pytest.raises(ValueError, match="too long for this model"):
        searcher.text(" ".join(["red"] * 100))
    with pytest.raises(ValueError, match="Type what to find"):
        searcher.text("   ")


def result_rows(out: str) -> list[list[str]]:
    return [ln.split() for ln in out.splitlines() if re.match(r"^\s*\d+\s+\d", ln)]


def test_cli_search_prints_rank_similarity_class_verdict_and_the_path_inside_the_data_folder(run, searcher, capsys):
    """``python -m ueo_core search --run RUN "a red" --top 5``: the engine's hits, each path relative to the data
    folder (no server path); --known keeps known images only; --like a printed path puts it first."""
    data = json.loads((run / "config.json").read_text())["data"]
    assert main(["search", "--run", str(run), "a red", "--top", "5"]) == 0
    out = capsys.readouterr().out
    rows = result_rows(out)
    hits = searcher.text("a red", top=5)
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [float(r[1]) for r in rows] == pytest.approx([h.similarity for h in hits], abs=1e-4)
    assert [(r[2], r[3]) for r in rows] == [(h.predicted, "known" if h.known else "unknown") for h in hits]
    assert [r[4] for r in rows] == [str(Path(h.path).relative_to(data)) for h in hits]
    assert data not in out and "a photo of a red." in out
    assert main(["search", "--run", str(run), "red", "--top", "30", "--known"]) == 0
    assert {r[3] for r in result_rows(capsys.readouterr().out)} == {"known"}
    assert main(["search", "--run", str(run), "--like", rows[2][4], "--top", "3"]) == 0
    assert result_rows(capsys.readouterr().out)[0][4] == rows[2][4]
    assert main(["search", "--run", str(run), " ".join(["red"] * 100)]) == 2
    assert "too long for this model" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- the warm worker
def test_the_warm_worker_on_ray_answers_as_the_engine_even_with_every_slot_taken(run, searcher, ray_cluster,
                                                                                 monkeypatch):
    """jobs.search asks the run's detached worker (search:<run id>): the same hits as the in-process engine, for
    a text and for an image, while every run slot is held (a query never waits behind runs); a refused query is a
    ValueError in words; a second query finds the same warm worker; idle, it ends itself, and the next query
    starts a new one."""
    import ray
    from ueo_core import jobs
    from ueo_core.cluster import NAMESPACE, SLOT

    @ray.remote(num_cpus=0, resources={SLOT: 1})
    class Holder:
        def ready(self):
            return True

    holders = [Holder.remote() for _ in range(int(ray.cluster_resources()[SLOT]))]
    try:
        ray.get([h.ready.remote() for h in holders], timeout=60)
        for kind, what, local in (("text", "a red", searcher.text("a red", top=8, filter="known")),
                                  ("like", 5, searcher.like(5, top=8, filter="known"))):
            got = jobs.search(run, kind, what, top=8, filter="known", timeout=120)
            assert [(h.index, h.predicted, h.known) for h in got] == [(h.index, h.predicted, h.known) for h in local]
            assert [h.similarity for h in got] == pytest.approx([h.similarity for h in local], abs=1e-4)
    finally:
        for h in holders:
            ray.kill(h)
    actor = ray.get_actor(f"search:{run.name}", namespace=NAMESPACE)
    pid = ray.get(actor.pid.remote())
    with pytest.raises(ValueError, match="too long for this model"):
        jobs.search(run, "text", " ".join(["red"] * 100))
    assert ray.get(ray.get_actor(f"search:{run.name}", namespace=NAMESPACE).pid.remote()) == pid  # still warm

    idle = run.parent / "20260102-120001-ueo-def456"  # a second run (a copy) whose worker is told to idle 1 s
    shutil.copytree(run, idle)
    monkeypatch.setattr(jobs, "SEARCH_IDLE_S", 1.0)
    first = jobs.search(idle, "like", 3, top=3)
    assert first[0].index == 3
    t0 = time.time()
    while time.time() - t0 < 60:
        try:
            ray.get_actor(f"search:{idle.name}", namespace=NAMESPACE)
        except ValueError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the idle search worker did not end itself")
    assert [h.index for h in jobs.search(idle, "like", 3, top=3)] == [h.index for h in first]


# ------------------------------------------------------------------------------------------- the Explore page
@pytest.fixture
def page_run(run, tmp_path, monkeypatch, searcher):
    """The run in a workspace of the test's own, its maps written as the exploration writes them; the engine's
    search answered in this process by the test's Searcher (the worker is tested above), and any model load in
    the page's process an error."""
    from ueo_core import explore, jobs
    from ueo_core.cluster import ClusterError
    monkeypatch.setattr("studio.workspace.WORKSPACES", run.parents[2])
    n = len(searcher.preds["after"])
    rng = np.random.default_rng(0)
    explore.folder(run).mkdir(exist_ok=True)
    for name in (explore.PCA, explore.UMAP):
        np.savez(explore.folder(run) / name, before=rng.normal(size=(n, 2)), after=rng.normal(size=(n, 2)))
    asked = []

    def answer(run_dir, kind, what, **options):
        asked.append((Path(run_dir), kind, what, options))
        return searcher.query(kind, what, **options)

    def no_model(*a, **kw):
        raise AssertionError("the web server loaded a model")

    def refuse(*a, **kw):
        raise ClusterError("no Ray in this test")
    monkeypatch.setattr(jobs, "search", answer)
    monkeypatch.setattr(jobs, "submit_exploration", refuse)
    monkeypatch.setattr("ueo_core.models.load_model", no_model)
    monkeypatch.setattr("ueo_core.explore.run_model", no_model)
    yield asked
    shutil.rmtree(explore.folder(run))


def explore_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/4_Explore.py"), default_timeout=120)
    at.session_state["ws"] = WS
    at.session_state["active_run"] = RID
    return at


def captions(at) -> list[str]:
    """The one gallery's captions in reading order (AppTest lists its grid column by column)."""
    from studio.ui import GALLERY_COLUMNS as cols
    tree = [im.proto.imgs[0].caption for im in at.get("image")]
    per_column = [len(range(c, len(tree), cols)) for c in range(cols)]
    starts = np.cumsum([0] + per_column[:-1])
    return [tree[starts[i % cols] + i // cols] for i in range(len(tree))]


def test_explore_finds_images_of_a_text_filters_them_and_ranks_more_like_this(page_run, searcher, run):
    """On Explore: 'Find images of …' lists the engine's hits with their similarity, class and verdict (and rings
    them on both maps); 'known' keeps known ones; 'More like this' under a result ranks by that image, itself
    first. No server path on the page; the search is asked of the worker with the run's folder."""
    at = explore_page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not captions(at) and not page_run
    next(t for t in at.text_input if t.label == "Find images of …").input("a red").run()
    assert not at.exception, [e.value for e in at.exception]
    thr = json.loads((run / "metrics.json").read_text())["after"]["threshold"]
    hits = searcher.text("a red", top=24, threshold=thr)
    assert captions(at) == [f"{h.similarity:.3f} · {h.predicted} · {'known' if h.known else 'unknown'}"
                            for h in hits]
    assert page_run[-1][:3] == (run, "text", "a red")
    assert "Images of “a red”" in [s.value for s in at.subheader]
    for spec in (json.loads(c.proto.spec) for c in at.get("plotly_chart")):
        ringed = [t for t in spec["data"] if t.get("name") == "search results"]
        assert len(ringed) == 1 and ringed[0]["customdata"] == [h.index for h in hits]

    next(r for r in at.radio if r.label == "Among").set_value("known").run()
    known = searcher.text("a red", top=24, filter="known", threshold=thr)
    assert captions(at) == [f"{h.similarity:.3f} · {h.predicted} · known" for h in known]

    next(r for r in at.radio if r.label == "Among").set_value("all images").run()
    asked = len(page_run)
    at.run()  # a redraw asks nothing again
    assert len(page_run) == asked
    third = hits[2]
    [b for b in at.button if b.key == "explore_search|act|2"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert page_run[-1][:3] == (run, "like", third.index)
    like = captions(at)
    assert like[0] == f"1.000 · {third.predicted} · {'known' if third.known else 'unknown'}"
    data = Path(json.loads((run / "config.json").read_text())["data"])
    assert f"More like {Path(third.path).relative_to(data)}" in [s.value for s in at.subheader]  # as in the folder
    shown = rendered(at)  # everything sent to the browser: no server path, no workspace token
    assert "More like" in shown and str(run.parents[3]) not in shown and WS not in shown


