"""Groups among the rejected, with suggested names (issue 31): k-means on the rejected images' adapted features, k by
silhouette (or the user's), each group named by the nearest text features of a vocabulary without the prior's
names, a group nearer a prior class flagged as probably rejected by mistake; the CLI prints public paths only, the
warm worker's query answers as the engine, and Inspect shows the groups and grows the prior without a model in
the page's process."""
import json
import pickle
import shutil
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, tiny_ueo_run
from helpers import rendered
from ueo_core import unknowns as U
from ueo_core.analysis.predictions import Predictions
from ueo_core.cli import main
from ueo_core.shapes import CONCEPTS

PRIOR = ["red", "green", "blue"]
WS = "ef" * 16
PAGE_CENTRAL = 2
RID = "20260103-120000-ueo-abc123"
DIM = 16


# ---------------------------------------------------------------------------------------------- synthetic searcher
class FakeSearcher:
    """What ``group_unknowns`` reads of a ``search.Searcher``: the predictions, the features, known(), the config,
    the template and a model whose tokenizer cannot count (so every name fits); text features come from
    ``texts`` ({name: vector}) through a patched ``unknowns.text_features``."""

    def __init__(self, features, confidence, truth_names=None, prior=("circle", "square"), model="ueo-shapes"):
        n = len(features)
        classes = list(prior)
        truth = None
        if truth_names is not None:
            truth = np.array([classes.index(t) if t in classes else -1 for t in truth_names])
        self.preds = {"after": Predictions(paths=[f"/srv/data/img_{i}.png" for i in range(n)],
                                           true_class=list(truth_names) if truth_names is not None else [""] * n,
                                           pred=np.zeros(n, dtype=int), confidence=np.asarray(confidence, float),
                                           entropy=np.zeros(n), classes=classes, truth=truth,
                                           scores={"msp": np.asarray(confidence, float)})}
        self.features = {"after": np.asarray(features, dtype=np.float32)}
        self.config = {"model": model, "summary": {"classes": classes}}
        self.template = "a photo of a {}."
        self.loaded = types.SimpleNamespace(tokenizer=object())
        self.lock = threading.Lock()

    def _features(self, which):
        return self.features[which]

    def threshold(self, which="after", score="msp"):
        return 0.5

    def known(self, which="after", score="msp", threshold=None):
        return self.preds[which].by(score).confidence >= (0.5 if threshold is None else threshold)


def axis(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim)
    v[i] = 1.0
    return v


@pytest.fixture
def texts(monkeypatch):
    """Synthetic text features: 'cross' on axis 0, 'arrow' on axis 1, the prior's 'circle' on axis 2, 'square' on
    axis 3, every other name on its own axis from 4 on (orthogonal to the blobs)."""
    table = {"cross": axis(0), "arrow": axis(1), "circle": axis(2), "square": axis(3)}
    rng = np.random.default_rng(7)

    def fake(searcher, names, prompt=U.DEFAULT_NAMING_PROMPT):
        for n in names:
            if n not in table:
                table[n] = np.concatenate([np.zeros(4), U._unit(rng.normal(size=DIM - 4))])
        return np.stack([table[n] for n in names]).astype(np.float32)
    monkeypatch.setattr(U, "text_features", fake)
    return table


def blobs(sizes=(30, 20, 10), accepted=8, seed=0, spread=0.05):
    """Rejected images in well-separated blobs around axes 0, 1, 2 (the last: a prior class, 'circle'), their truth
    cross, arrow, circle; then ``accepted`` images (confidence 0.9) elsewhere, which must never be grouped."""
    rng = np.random.default_rng(seed)
    feats, truth = [], []
    for ax, (size, name) in enumerate(zip(sizes, ("cross", "arrow", "circle"))):
        feats += [axis(ax) + rng.normal(0, spread, DIM) for _ in range(size)]
        truth += [name] * size
    feats += [axis(5) + rng.normal(0, spread, DIM) for _ in range(accepted)]
    truth += ["square"] * accepted
    conf = [0.2] * sum(sizes) + [0.9] * accepted
    order = rng.permutation(len(feats))  # interleaved: a grouping by position would fail
    return (np.array(feats)[order] * rng.uniform(0.5, 3, (len(feats), 1)),  # lengths vary: only directions count
            np.array(conf)[order], [truth[i] for i in order])


def test_well_separated_blobs_are_found_by_silhouette_and_named(texts):
    """Three blobs among the rejected: k = 3 (the highest silhouette among 2..8, said in words), each group exactly
    one blob, largest first, most central image first; named by the nearest text ('cross', 'arrow'); the blob near
    the prior's 'circle' flagged as probably rejected by mistake, the others not; the accepted images in no group."""
    feats, conf, truth = blobs()
    res = U.group_unknowns(FakeSearcher(feats, conf, truth))
    assert res["k"] == 3 and res["auto"]
    assert max(res["silhouettes"], key=res["silhouettes"].get) == 3
    assert res["how"].startswith("k = 3 of 2..8: the highest silhouette") and \
        f"({res['silhouettes'][3]:.2f}" in res["how"]
    assert [g["size"] for g in res["groups"]] == [30, 20, 10]
    assert [g["truth"] for g in res["groups"]] == [{"cross": 30}, {"arrow": 20}, {"circle": 10}]
    assert res["rejected"] == 60 and sum(g["size"] for g in res["groups"]) == 60
    assert not any(conf[i] >= 0.5 for g in res["groups"] for i in g["indices"])
    assert [g["names"][0]["name"] for g in res["groups"][:2]] == ["cross", "arrow"]
    assert all(len(g["names"]) == 3 for g in res["groups"])
    assert all(n["name"] not in ("circle", "square") for g in res["groups"] for n in g["names"])
    assert [g["nearest_prior"]["name"] for g in res["groups"]][2] == "circle"
    assert [g["mistaken"] for g in res["groups"]] == [False, False, True]
    assert "looks like 'circle' (already in your prior): probably rejected by mistake" in \
        U.mistake_sentence(res["groups"][2])
    assert U.mistake_sentence(res["groups"][0]) is None
    unit = U._unit(feats)
    for g in res["groups"]:  # most central first: by distance to the group's mean direction
        centre = unit[g["indices"]].mean(axis=0)
        d = np.linalg.norm(unit[g["indices"]] - centre, axis=1)
        assert g["indices"][0] == g["indices"][int(np.argmin(d))]
        assert list(d) == pytest.approx(sorted(d), abs=1e-3)
        assert g["paths"] == [f"/srv/data/img_{i}.png" for i in g["indices"]]
        mean = U._unit(unit[g["indices"]].mean(axis=0))  # the names' similarities: cosine to the group's mean
        for n in g["names"]:
            assert n["similarity"] == pytest.approx(float(U._unit(texts[n["name"]]) @ mean), abs=1e-3)
    again = U.group_unknowns(FakeSearcher(feats, conf, truth))
    assert again == res  # seeded: the same input, the same groups
    pickle.loads(pickle.dumps(res))  # plain data: the worker sends it through Ray
    json.dumps(res)


def test_the_users_k_and_the_threshold_and_score_are_followed(texts):
    feats, conf, truth = blobs()
    s = FakeSearcher(feats, conf, truth)
    res = U.group_unknowns(s, groups=2)
    assert res["k"] == 2 and not res["auto"] and res["how"] == "k = 2, as you asked."
    assert len(res["groups"]) == 2 and sum(g["size"] for g in res["groups"]) == 60
    res = U.group_unknowns(s, threshold=0.95)  # now every image is rejected: the accepted blob is a 4th group
    assert res["rejected"] == len(conf) and res["k"] == 4
    assert sorted(g["size"] for g in res["groups"]) == [8, 10, 20, 30]
    assert U.group_unknowns(s, top_names=1, central=5)["groups"][0]["central"] == 5
    assert len(U.group_unknowns(s, top_names=1)["groups"][0]["names"]) == 1
    with pytest.raises(ValueError, match="at least 1"):
        U.group_unknowns(s, groups=-1)


def test_edge_cases_say_what_happened_in_words(texts):
    """0 rejected, 1, 2 (too few for a silhouette), identical features, and a user's k larger than the images:
    a sentence each, never an exception."""
    feats, conf, truth = blobs(sizes=(3, 0, 0), accepted=5)
    s = FakeSearcher(feats, conf, truth)
    none = U.group_unknowns(s, threshold=0.0)
    assert none["groups"] == [] and none["rejected"] == 0 and none["how"].startswith("No image is rejected")
    one = U.group_unknowns(FakeSearcher(feats[:1], [0.1], truth[:1]))
    assert one["k"] == 1 and [g["size"] for g in one["groups"]] == [1]
    assert one["how"] == "One rejected image: one group (nothing to compare)."
    assert one["groups"][0]["names"] and one["groups"][0]["nearest_prior"]
    two = U.group_unknowns(FakeSearcher(feats[:2], [0.1, 0.1], truth[:2]))
    assert two["k"] == 1 and "too few to compare groupings" in two["how"]
    same = U.group_unknowns(FakeSearcher(np.tile(axis(0), (6, 1)), [0.1] * 6, ["cross"] * 6))
    assert same["k"] == 1 and "1 distinct feature" in same["how"] and same["groups"][0]["size"] == 6
    many = U.group_unknowns(s, groups=10)  # 3 rejected
    assert many["k"] == 3 and "you asked for 10 groups, but only 3 images are rejected" in many["how"]
    assert [g["size"] for g in many["groups"]] == [1, 1, 1]
    blind = U.group_unknowns(FakeSearcher(feats, conf, None))  # no ground truth: nothing said about it
    assert all(g["truth"] is None and U.truth_sentence(g) is None for g in blind["groups"])


def test_the_vocabulary_is_the_models_words_without_the_prior():
    """The built-in model: its 22 Shapes concepts (ImageNet's names only when asked); another model: ImageNet's
    class names; the prior left out without regard to case or underscores; the user's names added once."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    builtin = {"model": "ueo-shapes", "summary": {"classes": ["Circle", "lightning_bolt"]}}
    v = U.vocabulary(builtin, ["Cross", "  paper   clip ", "paper clip", ""])
    assert v == [c for c in CONCEPTS if c not in ("circle", "lightning bolt")] + ["paper clip"]
    assert len(U.vocabulary(builtin, imagenet=True)) > 1000
    other = {"model": "ViT-B-32", "summary": {"classes": ["tench", "Great_White_Shark"]}}
    v = U.vocabulary(other)
    assert "tench" not in v and "great white shark" not in v and "goldfish" in v
    assert "cross" not in v and len(v) == len({n.lower() for n in IMAGENET_CLASSNAMES}) - 2
    assert U.vocabulary_words(builtin, ["a", "b"]) == ("the 22 Shapes concepts the built-in model was trained on "
                                                       "and 2 names of yours")
    assert U.parse_names("cross, arrow\n\n# a comment\nlightning bolt  # trailing\n") == \
        ["cross", "arrow", "lightning bolt"]


# ----------------------------------------------------------------------------------------------- a real tiny run
@pytest.fixture(scope="module")
def run(tmp_path_factory, cache):
    """A one-epoch UEO run of the random-init tiny model on 24 images (18 of the prior's 3 classes)."""
    root = tmp_path_factory.mktemp("unknowns")
    return tiny_ueo_run(root, root / "ws" / WS / "runs" / RID)


@pytest.fixture(scope="module")
def searcher(run):
    from ueo_core.search import Searcher
    return Searcher(run)


def test_names_are_encoded_as_the_search_encodes_them_and_kept(searcher, monkeypatch):
    """text_features: the same vectors as the search's text feature of each name (template words, or the learned
    context), in batches; a second call encodes nothing again."""
    names = ["cross", "paper clip", "yellow", "lightning bolt"]
    want = {}
    for prompt in U.NAMING_PROMPTS:
        want[prompt] = np.stack([searcher.text_feature(n, prompt=prompt) for n in names])
        assert U.text_features(searcher, names, prompt) == pytest.approx(want[prompt], abs=1e-4)
    assert np.abs(want["learned"] - want["template"]).max() > 1e-2  # (the learned context moved: two ways apart)
    import ueo_core.prompts as prompts

    def refuse(*a, **kw):
        raise AssertionError("encoded again")
    monkeypatch.setattr(prompts, "PromptLearner", refuse)
    assert U.text_features(searcher, names[::-1], "learned") == pytest.approx(want["learned"][::-1], abs=1e-4)
    with pytest.raises(ValueError, match="Unknown naming prompt"):
        U.text_features(searcher, names, "raw")


def test_a_real_run_groups_its_rejected_images_and_the_worker_query_answers_the_same(searcher):
    from ueo_core.scores import DEFAULT
    res = U.group_unknowns(searcher)
    rejected = set(np.flatnonzero(~searcher.known()).tolist())
    assert res["rejected"] == len(rejected) > 0
    assert {i for g in res["groups"] for i in g["indices"]} == rejected
    assert res["vocabulary"] == len(U.vocabulary(searcher.config))  # ueo-tiny: ImageNet's names, 77 tokens fit
    assert not ({n["name"] for g in res["groups"] for n in g["names"]} & set(PRIOR))
    from ueo_core.workers import answer
    via = answer(searcher, "unknowns", None, score=DEFAULT, groups=None)
    assert pickle.loads(pickle.dumps(via)) == res
    with pytest.raises(ValueError, match="Your name"):
        U.group_unknowns(searcher, vocab_extra=[" ".join(["word"] * 90)])


def test_cli_prints_groups_with_public_paths_only(run, searcher, capsys, tmp_path):
    """``unknowns --run RUN --json``: the engine's groups, every path inside the data folder, exit 0; the text form
    says how k was chosen and lists each group; --vocab adds names; a missing run or file: a sentence, exit 2."""
    data = json.loads((run / "config.json").read_text())["data"]
    assert main(["unknowns", "--run", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    got = json.loads(out)
    res = U.group_unknowns(searcher)
    assert [(g["size"], g["names"], g["nearest_prior"]) for g in got["groups"]] == \
        [(g["size"], g["names"], g["nearest_prior"]) for g in res["groups"]]
    assert [g["paths"] for g in got["groups"]] == [[str(Path(p).relative_to(data)) for p in g["paths"]]
                                                   for g in res["groups"]]
    assert data not in out and str(run) not in out and got["how"] == res["how"]
    assert main(["unknowns", "--run", str(run), "--groups", "2", "--central", "1"]) == 0
    text = capsys.readouterr().out
    assert "k = 2, as you asked." in text and "group 2:" in text and "group 3:" not in text
    assert data not in text and "most central first (1 of" in text
    vocab = tmp_path / "names.txt"
    vocab.write_text("zebra crossing\nRed\ngoldfish\n")  # (red: the prior's; goldfish: ImageNet's already)
    assert main(["unknowns", "--run", str(run), "--vocab", str(vocab), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vocabulary"] == res["vocabulary"] + 1
    assert main(["unknowns", "--run", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "No run folder at" in err and "Traceback" not in err
    assert main(["unknowns", "--run", str(run), "--vocab", str(tmp_path / "none.txt")]) == 2
    assert "No vocabulary file" in capsys.readouterr().err


@pytest.mark.slow
def test_the_warm_search_worker_on_ray_answers_the_grouping(run, searcher, ray_cluster):
    """jobs.search(run, "unknowns", None, …): the run's search worker on Ray groups and names as the engine does
    in-process, and the answer crosses Ray as plain data."""
    from ueo_core import jobs
    got = jobs.search(run, "unknowns", None, groups=2, vocab_extra=["zebra crossing"], timeout=120)
    want = U.group_unknowns(searcher, groups=2, vocab_extra=["zebra crossing"])
    assert [(g["indices"], [n["name"] for n in g["names"]]) for g in got["groups"]] == \
        [(g["indices"], [n["name"] for n in g["names"]]) for g in want["groups"]]
    assert got["how"] == want["how"] and got["vocabulary"] == want["vocabulary"]


# --------------------------------------------------------------------------------------------- the Inspect page
@pytest.fixture
def page_run(run, monkeypatch, searcher):
    """The run in a workspace of the test's own; the worker's answers given in this process by the test's
    Searcher (through ``ueo_core.jobs.search``, as the page's ``state.search`` calls it), any model load in the
    page's process an error, and ``studio.grow.start`` recorded."""
    from ueo_core import jobs
    monkeypatch.setattr("studio.workspace.WORKSPACES", run.parents[2])
    asked, grown = [], []

    def answer(run_dir, kind, what, **options):
        asked.append((Path(run_dir), kind, what, options))
        from ueo_core.workers import answer
        return answer(searcher, kind, what, central=PAGE_CENTRAL, **options)  # (fewer than a group: see the grow)

    def no_model(*a, **kw):
        raise AssertionError("the web server loaded a model")

    def start(run_id, name, group_paths=()):
        if name == "red":
            raise ValueError("'red' is already in the prior.")
        grown.append((run_id, name, list(group_paths)))
        return "20260103-130000-ueo-new001"
    grow = types.ModuleType("studio.grow")
    grow.start = start
    import studio
    monkeypatch.setitem(__import__("sys").modules, "studio.grow", grow)
    monkeypatch.setattr(studio, "grow", grow, raising=False)
    monkeypatch.setattr(jobs, "search", answer)
    monkeypatch.setattr("ueo_core.models.load_model", no_model)
    monkeypatch.setattr("ueo_core.explore.run_model", no_model)
    yield asked, grown


def inspect_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/5_Inspect.py"), default_timeout=120)
    at.session_state["ws"] = WS
    at.session_state["active_run"] = RID
    return at


def ok(at):
    assert not at.exception, [e.value for e in at.exception]


def test_inspect_finds_the_groups_on_request_shows_their_names_and_grows_the_prior(page_run, searcher, run):
    """The button says how many are rejected and asks the worker once (not on a redraw); each group: its size and
    names with similarities, its true folders, a gallery of its images; a name's button grows the prior with the
    group's server paths, a refusal is an error in words. No server path or token on the page."""
    asked, grown = page_run
    at = inspect_page()
    at.run()
    ok(at)
    thr = json.loads((run / "metrics.json").read_text())["after"]["threshold"]
    res = U.group_unknowns(searcher, threshold=thr, central=PAGE_CENTRAL)
    button = next(b for b in at.button if b.label.startswith("Find groups among"))
    assert button.label == f"Find groups among the {res['rejected']} rejected"
    assert not asked and not any(m.value.startswith("#### Group") for m in at.markdown)
    button.click().run()
    ok(at)
    assert len(asked) == 1 and asked[0][:3] == (run, "unknowns", None)
    assert asked[0][3]["groups"] is None and asked[0][3]["vocab_extra"] == []
    heads = [m.value for m in at.markdown if m.value.startswith("#### Group")]
    assert heads == [f"#### Group {n}: {g['size']} image{'s' if g['size'] != 1 else ''} — "
                     + " · ".join(f"“{d['name']}” {d['similarity']:.2f}" for d in g["names"])
                     for n, g in enumerate(res["groups"], 1)]
    caps = [c.value for c in at.caption]
    assert [c for c in caps if c.startswith("True folders: ")] == ["T" + U.truth_sentence(g)[1:]
                                                                   for g in res["groups"]]
    assert any(res["how"] in c for c in caps)
    at.run()
    assert len(asked) == 1  # a redraw asks nothing again
    first = res["groups"][0]
    assert first["size"] > first["central"] == PAGE_CENTRAL  # the grow gets every image of the group, not the shown
    name = first["names"][0]["name"]
    next(b for b in at.button if b.label == f"Add '{name}' to the prior and run again").click().run()
    ok(at)
    assert grown == [(RID, name, first["paths"])]
    assert any("Started run 20260103-130000-ueo-new001" in s.value and "Compare" in s.value for s in at.success)
    at.text_input(key=f"unk_typed|{RID}|1").set_value("red").run()
    next(b for b in at.button if b.key == f"unk_add_typed|{RID}|1").click().run()
    assert any("already in the prior" in e.value for e in at.error)
    shown = rendered(at)
    assert str(run.parents[3]) not in shown and WS not in shown


def test_inspect_passes_the_users_k_and_names_and_says_when_none_are_rejected(page_run, run):
    asked, _ = page_run
    at = inspect_page()
    at.run()
    at.number_input(key=f"unk_k|{RID}").set_value(2).run()
    at.text_area(key=f"unk_vocab|{RID}").input("zebra crossing, lamp").run()
    next(b for b in at.button if b.label.startswith("Find groups among")).click().run()
    ok(at)
    assert asked[-1][3]["groups"] == 2 and asked[-1][3]["vocab_extra"] == ["zebra crossing", "lamp"]
    assert any("k = 2, as you asked." in c.value for c in at.caption)
    assert len([m for m in at.markdown if m.value.startswith("#### Group")]) == 2
    at.slider[0].set_value(at.slider[0].min).run()  # nothing below the lowest value: nothing rejected
    ok(at)
    assert any(c.value == "No image is rejected at this threshold: there are no groups to find." for c in at.caption)
    assert not any(b.label.startswith("Find groups among") for b in at.button)
