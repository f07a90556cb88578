"""The house tidied (issue 33, part 2): one table of method names (the registry) for the lesson's sentences; a job's
state as codes for the code and a sentence for a person; a job's kind read from its job.json; the pages ask the
engine (Explore's known/unknown, Inspect's score range). No Ray: job folders are made on disk."""
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT

WS = "cd" * 16
RID = "20260101-120000-ueo-abcdef"
CLASSES = ["circle", "square", "star"]


# ------------------------------------------------------------------------------------ the lesson's method names
def row(method, gacc=None, auroc=None, shares=(0.34, 0.33, 0.33), collapsed=False):
    after = {"gacc": gacc, "auroc": auroc, "h_score": None, "class_shares": list(shares), "collapsed": collapsed}
    return {"method": method, "run": f"r-{method}", "after": after, "before": {}, "classes": CLASSES, "seconds": 1.0}


@pytest.fixture
def throwaway(monkeypatch):
    """A label-free method registered for this test only (as a new method's module would register itself)."""
    from ueo_core import methods
    from ueo_core.methods import Method

    class Throwaway(Method):
        name, label, plain = "throwaway", "Throwaway", "the throwaway objective"
        description = "A method that exists for one test."
    monkeypatch.setitem(methods.METHODS, "throwaway", Throwaway())
    return "throwaway"


def test_a_method_added_to_the_lesson_is_named_and_placed_by_its_registry_entry(throwaway):
    """The lesson's sentences name a new method by its ``plain`` and count it among the label-free ones (it
    trains, needs no truth): no second table of names to forget, no KeyError."""
    from ueo_core.lesson import lesson_state, lesson_summary
    s = lesson_summary([row("zero_shot", 0.70, 0.80), row("im", 0.85, 0.84),
                        row(throwaway, 0.30, 0.90, (0.95, 0.03, 0.02), collapsed=True)])
    assert any(line.startswith("The throwaway objective collapsed: 95% of all images are now predicted as "
                               "'circle'") for line in s), s
    best = next(line for line in s if line.startswith("Of the methods that use no labels"))
    assert best.startswith("Of the methods that use no labels, the throwaway objective separated known from "
                           "unknown best: AUROC 90.0 (IM 84.0"), best
    from ueo_core.jobs import JobState
    manifest = {"methods": ["zero_shot", throwaway], "runs": {}}
    st = lesson_state(manifest, {"zero_shot": JobState("ended", "finished", outcome="done"),
                                 throwaway: JobState("running", "training")})
    assert st["where"] == "1 of 2 runs done · training: the throwaway objective"


def test_the_lesson_has_no_name_table_of_its_own_and_never_fails_on_a_name(throwaway, monkeypatch):
    """``PLAIN_NAMES`` is gone from the lesson; a method without a ``plain`` says its label, one no longer
    registered (an old lesson's manifest) its own name; the in-process runner's progress line too."""
    import ueo_core.lesson as lesson
    from ueo_core.analysis.lesson_words import plain_name, progress_line
    from ueo_core.methods import METHODS
    assert not hasattr(lesson, "PLAIN_NAMES")
    assert [plain_name(m) for m in ("entropy", "oracle", throwaway)] == [
        "entropy minimisation (TENT)", "the oracle", "the throwaway objective"]
    monkeypatch.delattr(type(METHODS[throwaway]), "plain")
    assert plain_name(throwaway) == "Throwaway" and plain_name("gone") == "gone"
    assert progress_line(1, 3, "gone", 4, 10) == "run 2/3: gone · step 4/10"
    assert lesson.lesson_summary([row("zero_shot", 0.7, 0.8), row("gone", 0.8, 0.9)])  # no KeyError


# ------------------------------------------------------------------------------ a job's state: codes and words
def job_folder(path, status=None, kind=None, worker=True, **job):
    """A job folder as a worker leaves it: job.json (with ``kind`` when given), worker.json, ended.json."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "job.json").write_text(json.dumps({**({"kind": kind} if kind else {}), "submitted": 1.0, **job}))
    if worker:
        (path / "worker.json").write_text(json.dumps({"started": 100.0}))
    if status:
        (path / "ended.json").write_text(json.dumps({"status": status, "message": f"it {status}", "at": 130.0}))
    return path


@pytest.mark.parametrize("status, outcome", [("done", "done"), ("error", "error"), ("cancelled", "cancelled"),
                                             ("stopped-queued", "cancelled")])
def test_an_ended_job_has_an_outcome_code_and_a_sentence(tmp_path, status, outcome):
    from ueo_core import jobs
    s = jobs.job_state(job_folder(tmp_path / "r", status))
    assert (s.kind, s.outcome) == ("ended", outcome)
    assert s.words == jobs.ended_words(status) and s.words != status  # words for a person, not the code
    none = jobs.job_state(tmp_path / "not-a-job")
    assert none.kind == "none" and none.outcome is None and none.words


def test_rewording_a_status_sentence_changes_no_logic(tmp_path, monkeypatch):
    """Every caller decides on the codes: with the sentences reworded, a failed run still reads as failed (its
    error shown), a finished one as done, a lesson still counts its finished and failed runs, a sort is done."""
    from studio import jobs as studio_jobs
    from ueo_core import jobs, sort
    from ueo_core.lesson import lesson_state
    monkeypatch.setattr(jobs, "ended_words", lambda status: "Reworded for a person.")
    runs = {"zero_shot": job_folder(tmp_path / "r0", "done"), "im": job_folder(tmp_path / "r1", "error"),
            "ueo": job_folder(tmp_path / "r2", "cancelled")}
    states = {m: jobs.job_state(p) for m, p in runs.items()}
    assert {s.words for s in states.values()} == {"Reworded for a person."}
    st = lesson_state({"methods": list(runs), "runs": {}}, states)
    assert (st["state"], st["finished"], st["failed"], st["live"]) == ("error", 1, ["im"], False)
    monkeypatch.setattr(studio_jobs, "run_path", lambda rid: runs.get(rid))
    assert studio_jobs.run_error("im") == "it error"
    assert studio_jobs.run_error("zero_shot") is None and studio_jobs.run_error("ueo") is None
    sorted_ = job_folder(tmp_path / "ws" / "sorts" / "s1", "done", kind="sorts")
    (sorted_ / sort.RESULT).write_text(json.dumps({"n": 3}))
    monkeypatch.setattr(studio_jobs, "sort_path", lambda sid: sorted_)
    assert studio_jobs.sorting("s1").kind == "done"
    failed = job_folder(tmp_path / "ws" / "sorts" / "s2", "error", kind="sorts")
    monkeypatch.setattr(studio_jobs, "sort_path", lambda sid: failed)
    assert (studio_jobs.sorting("s2").kind, studio_jobs.sorting("s2").words) == ("failed", "it error")


# ------------------------------------------------------------------------------------- a job's kind: its job.json
def test_a_jobs_kind_is_read_from_its_job_json_not_its_folder_name(tmp_path, monkeypatch):
    """A run whose folder is named 'explore' is a run (its actor, its length in the estimates); an old
    exploration without a kind in its job.json is still told by where it lies; a run is submitted with its
    kind."""
    from ueo_core import jobs
    ws = tmp_path / "workspaces"
    liar = job_folder(ws / WS / "runs" / "explore", "done", kind="run", config={"method": "ueo"})
    assert jobs.job_kind(liar) == "run" and jobs._actor_name(liar) == "run:explore"
    assert jobs._workspaces_of(liar) == ws
    monkeypatch.setattr(jobs, "_slots_or_one", lambda: 1)
    assert jobs.estimate_runs([{"method": "ueo"}], ws) == 30.0  # counted as the run it is
    assert jobs.estimate_wait(1, ws) == 0.0  # (a finished run known: an estimate, not None)
    maps = job_folder(ws / WS / "runs" / RID / "explore", "done", kind="explore")
    assert jobs.estimate_runs([{"method": "ueo"}], ws) == 30.0  # an exploration's length is no run's
    (maps / "job.json").write_text(json.dumps({"run_id": RID, "submitted": 1.0}))  # an old one: no kind
    assert jobs.job_kind(maps) == "explore" and jobs._actor_name(maps) == f"explore:{RID}"
    sort_job = job_folder(ws / WS / "sorts" / "20260101-000000-sort-abcdef", kind="sorts", worker=False)
    assert jobs._actor_name(sort_job) == "sort:20260101-000000-sort-abcdef"
    sent = []
    monkeypatch.setattr(jobs, "_submit", lambda worker, run_dir, payload, job, threads: sent.append(job))
    from ueo_core.config import RunConfig
    jobs.submit(RunConfig(data="shapes:sketch", run_dir=str(ws / WS / "runs" / RID)))
    assert sent[0]["kind"] == "run"


# --------------------------------------------------------------------------------------- pages ask the engine
def test_every_score_declares_its_range_and_bounded_ones_keep_to_it():
    from ueo_core import scores
    assert set(scores.BOUNDS) == set(scores.SCORES)
    rng = np.random.default_rng(0)
    cos = rng.uniform(-1, 1, size=(200, 5))
    for name, scale in ((n, s) for n in scores.SCORES for s in (1.0, 100.0)):
        v = scores.score(name, cos, scores.softmax_of(cos, scale), scale)
        lo, hi = scores.span(name, v)
        assert lo <= v.min() and v.max() <= hi, (name, scale)
        if scores.BOUNDS[name] is None:
            assert (lo, hi) == (v.min(), pytest.approx(v.max(), abs=1e-8))  # (a hair above the top)


@pytest.fixture
def workspace_root(tmp_path, monkeypatch):
    from ueo_core import jobs
    from ueo_core.cluster import ClusterError
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")

    def refuse(*a, **kw):
        raise ClusterError("no Ray in this test")
    monkeypatch.setattr(jobs, "submit_exploration", refuse)
    return tmp_path / "ws"


def make_run(root, n=6, with_maps=False):
    """A finished run of ``n`` images with MSP and Energy scores (and, ``with_maps``, its exploration's maps)."""
    from ueo_core import explore
    from ueo_core.metrics import write_predictions
    run = root / WS / "runs" / RID
    (run / "images").mkdir(parents=True)
    rows = {"predictions.csv": [], "predictions_zero_shot.csv": []}
    for i in range(n):
        path = run / "images" / f"img_{i}.png"
        Image.new("RGB", (8, 8), (30 * i % 255, 0, 0)).save(path)
        for name, pred, energy in (("predictions_zero_shot.csv", 0, 3.0 + 0.2 * i),
                                   ("predictions.csv", 1, 5.0 + 0.3 * i)):
            rows[name].append({"path": str(path), "true_class": "", "predicted_class": CLASSES[pred],
                               "confidence": round(0.5 + 0.04 * i, 6), "entropy": 0.5, "predicted_known": True,
                               "score_msp": round(0.5 + 0.04 * i, 6), "score_energy": round(energy, 6)})
    for name, r in rows.items():
        write_predictions(run / name, r)
    (run / "config.json").write_text(json.dumps({"method": "ueo", "data": "shapes:sketch", "model": "ueo-tiny",
                                                 "summary": {"classes": CLASSES}}))
    (run / "metrics.json").write_text(json.dumps({"before": {"threshold": 0.6}, "after": {"threshold": 0.7}}))
    if with_maps:
        rng = np.random.default_rng(0)
        explore.folder(run).mkdir()
        for name in (explore.PCA, explore.UMAP):
            np.savez(explore.folder(run) / name, before=rng.normal(size=(n, 2)), after=rng.normal(size=(n, 2)))
    return run


def page(path) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    at.session_state["ws"] = WS
    at.session_state["active_run"] = RID
    return at


def threshold_slider(at):
    return next(s for s in at.slider if s.label.startswith("Known/unknown threshold on"))


def test_inspect_reads_each_scores_range_from_the_registry(workspace_root, monkeypatch):
    """The threshold slider spans the score's declared bounds, or the values' span where it declares none: the
    page holds no list of bounded scores."""
    from ueo_core import scores
    make_run(workspace_root)
    at = page("pages/5_Inspect.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    s = threshold_slider(at)
    assert (s.min, s.max) == (0.0, 1.0)  # MSP: [0, 1] by its registry entry
    monkeypatch.setitem(scores.BOUNDS, "msp", None)
    at = page("pages/5_Inspect.py")
    at.run()
    s = threshold_slider(at)
    assert (s.min, s.max) == (pytest.approx(0.5), pytest.approx(0.7))  # MSP's values here: 0.50 … 0.70
    monkeypatch.setitem(scores.BOUNDS, "energy", (0.0, 20.0))
    next(b for b in at.selectbox if b.label == "Known/unknown score").set_value("energy").run()
    assert not at.exception, [e.value for e in at.exception]
    s = threshold_slider(at)
    assert (s.min, s.max) == (0.0, 20.0)


def test_explores_known_and_unknown_are_the_engines_decision(workspace_root, monkeypatch):
    """The map's known/unknown colours and counts come from ``Predictions.at_threshold`` (the engine's one rule),
    not from a comparison on the page: an engine that accepted every image shows every point known."""
    from ueo_core.analysis.predictions import Predictions
    make_run(workspace_root, with_maps=True)
    at = page("pages/4_Explore.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    counts = [c.value for c in at.caption if " known · " in c.value]
    assert counts and not all(c.startswith("6 known · 0 unknown") for c in counts), counts
    original = Predictions.at_threshold
    monkeypatch.setattr(Predictions, "at_threshold",
                        lambda self, t: {**original(self, t), "accepted": np.arange(len(self))})
    import streamlit
    streamlit.cache_resource.clear()  # (the page keeps each map's colours for its files and threshold)
    at = page("pages/4_Explore.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    counts = [c.value for c in at.caption if " known · " in c.value]
    assert counts and all(c.startswith("6 known · 0 unknown") for c in counts), counts
