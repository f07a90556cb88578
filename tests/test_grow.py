"""Grow the prior (issue 31, part 2): a name added to a run's prior runs again with the same settings on the same
images, linked to the first; the outcome counts what the new class took, and Compare shows the two side by side."""
import json
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from helpers import make_folder
from ueo_core.cli import main

PRIOR = ["red", "green", "blue"]
TINY = ["--model", "ueo-tiny", "--pretrained", "none"]
WS = "ab" * 16
PARENT = "20260102-120000-ueo-aaa111"
CHILD = "20260102-130000-ueo-bbb222"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A one-epoch UEO run of the tiny model on 24 images (yellow unknown), then the CLI's grow with 'yellow'."""
    root = tmp_path_factory.mktemp("grow")
    data = make_folder(root / "data", classes=("red", "green", "blue", "yellow"), per_class=6, seed=5)
    runs = root / "ws" / WS / "runs"
    parent = runs / PARENT
    assert main(["train", str(data), "--prior", ",".join(PRIOR), *TINY, "--batch-size", "8", "--epochs", "1",
                 "--lr-prompt", "0.05", "--lr-visual", "0.05", "--out", str(parent)]) == 0
    group = root / "group.txt"
    group.write_text("\n".join(f"yellow/img_{i}.png" for i in range(4)) + "\n")  # inside the data folder
    assert main(["grow", "--run", str(parent), "--add", "Yellow ", "--group", str(group),
                 "--out", str(runs / CHILD)]) == 0
    return data, parent, runs / CHILD


def test_grown_config_keeps_every_setting_and_adds_one_name(runs):
    from ueo_core import grow
    _, parent, child = runs
    a, b = (json.loads((p / "config.json").read_text()) for p in (parent, child))
    assert b["prior"] == PRIOR + ["Yellow"] and b["summary"]["classes"] == PRIOR + ["Yellow"]
    same = {k for k in a if k not in ("prior", "summary", "run_dir")}
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    link = grow.read_link(child)
    assert link["parent"] == PARENT and link["added"] == "Yellow" and len(link["group"]) == 4
    assert all(p.startswith(str(runs[0])) for p in link["group"])   # the run's own paths, to match predictions
    for bad, why in (("RED", "already in this run's prior"), ("  ", "Type a class name"), ("a,b", "one class name")):
        with pytest.raises(ValueError, match=why):
            grow.grown_config(parent, bad)


def test_outcome_counts_add_up_and_the_sentence_says_them(runs):
    from ueo_core import grow
    from ueo_core.analysis import read_predictions, shown_rate
    _, parent, child = runs
    got = grow.outcome(parent, child)
    g = got["group"]
    assert g["size"] == 4 and g["accepted_as_new"] + g["accepted_as_other"] + g["rejected"] == 4
    c = read_predictions(child)
    t = got["thresholds"]["child"]
    at = {p: i for i, p in enumerate(c.paths)}
    idx = [at[p] for p in grow.read_link(child)["group"]]
    assert g["accepted_as_new"] == sum(c.confidence[i] >= t and c.pred[i] == 3 for i in idx)
    rows = {r["figure"]: r for r in got["rows"]}
    own = rows["'Yellow' images accepted as 'Yellow'"]
    assert own["images"] == 6 and own["first"] is None
    yellow = [i for i, tc in enumerate(c.true_class) if tc == "yellow"]
    assert own["grown"] == pytest.approx(np.mean([c.confidence[i] >= t and c.pred[i] == 3 for i in yellow]))
    assert rows["accuracy on the first run's classes"]["images"] == 18
    assert "other unknowns rejected" in rows and rows["other unknowns rejected"]["images"] == 0
    s = got["sentence"]
    assert f"Of the 4 images of the group, the run with 'Yellow' accepts {g['accepted_as_new']} as 'Yellow'" in s
    assert f"it accepts {shown_rate(own['grown'])} % as 'Yellow'" in s
    acc = rows["accuracy on the first run's classes"]
    assert f"from {shown_rate(acc['first'])} % to {shown_rate(acc['grown'])} %" in s


def test_a_run_that_was_not_grown_or_read_other_images_is_refused_in_words(runs, tmp_path):
    from ueo_core import grow
    _, parent, child = runs
    with pytest.raises(ValueError, match="not made by growing"):
        grow.outcome(child, parent)
    other = tmp_path / CHILD
    shutil.copytree(child, other)
    lines = (other / "predictions.csv").read_text().splitlines()
    (other / "predictions.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="did not read the same images"):
        grow.outcome(parent, other)


def test_a_prior_given_with_a_preset_replaces_its_prior_and_keeps_its_folders(tmp_path):
    from ueo_core.data import load_data
    data = make_folder(tmp_path / "pacs", classes=("dog", "elephant", "guitar", "house", "person", "zebra"),
                       per_class=2)
    base = load_data(str(data), preset="pacs", setting="ODA")
    grown = load_data(str(data), preset="pacs", setting="ODA", prior=base.classes + ["house"])
    assert grown.files == base.files and "zebra" not in {f for f in grown.folder_names}  # the preset's folders
    assert grown.classes == base.classes + ["house"]
    house = [i for i, f in enumerate(grown.folder_names) if f == "house"]
    assert house and all(base.labels[i] < 0 for i in house)
    assert all(grown.labels[i] == len(base.classes) for i in house)


def test_the_app_queues_the_grown_run_with_its_link_written_first(runs, tmp_path, monkeypatch):
    from studio import grow as studio_grow
    from ueo_core import jobs as engine
    data, parent, _ = runs
    monkeypatch.setenv("UEO_DATA_ROOTS", str(data))  # the server may read the run's data folder
    ws = tmp_path / "ws" / WS / "runs"
    shutil.copytree(parent, ws / PARENT)
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    submitted = []

    def submit(cfg, threads=None):
        from pathlib import Path
        submitted.append((cfg, json.loads((Path(cfg.run_dir) / "grown.json").read_text())))
    monkeypatch.setattr(engine, "submit", submit)
    import streamlit as st
    monkeypatch.setattr(st, "session_state", {"ws": WS})
    monkeypatch.setattr(st, "query_params", {})
    monkeypatch.setattr("studio.jobs.remember", lambda: None)
    new = studio_grow.start(PARENT, "yellow", ["/x/yellow/img_0.png"])
    cfg, link = submitted[0]
    assert cfg.prior == PRIOR + ["yellow"] and cfg.run_dir.endswith(new)
    assert link == {**link, "parent": PARENT, "added": "yellow", "group": ["/x/yellow/img_0.png"]}
    with pytest.raises(ValueError, match="not in this workspace"):
        studio_grow.start("20260102-120000-ueo-ffffff", "yellow")


def test_compare_shows_what_the_added_class_took(runs, monkeypatch):
    from ueo_core import grow
    _, parent, child = runs
    monkeypatch.setattr("studio.workspace.WORKSPACES", parent.parents[2])
    at = AppTest.from_file(str(ROOT / "pages/6_Compare.py"), default_timeout=60)
    at.session_state["ws"] = WS
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    got = grow.outcome(parent, child)
    assert f"'Yellow' added to the prior: {CHILD} grew {PARENT}" in [s.value for s in at.subheader]
    assert any(got["sentence"] in c.value for c in at.caption)
    assert any("(the 6 images of the folder 'Yellow' are unknown to the first, known to the second)" in c.value
               for c in at.caption)
    from helpers import rendered
    page = rendered(at)
    assert str(parent.parents[2]) not in page and WS not in page
