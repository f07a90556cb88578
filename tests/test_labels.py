"""A person's labels (issue 31, part 4): the SQLite store (WAL, one row per action with its time, change, remove,
undo, a restart, two writers at once), the proposals (a stable random sample, then the images nearest the threshold
spread over the classes) and the CSV round trip.

Deliberate bugs each test was seen to catch (on a copy of the tree):
- ``BUSY_TIMEOUT_MS = 0``: the two-process writers test fails ("database is locked" in a writer).
- the store replaced by a JSON file read, changed and written back on each ``add``: the two-writers test kept
  7, 4 and 15 of the 600 labels in three tries (a reader meets the file half-written and starts again) and failed.
- ``journal_mode`` left at the default (the WAL pragma removed): ``test_wal_mode...`` fails.
- ``undo_last`` without "still in force" (the latest non-NULL row of the run): the second undo returned the same
  image again and ``test_change_remove_and_undo`` failed.
- proposals' informative images not excluding the random ones: ``test_proposals...`` fails.
"""
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from ueo_core.analysis.predictions import Predictions
from ueo_core.labels import (Label, LabelStore, labels_csv, person_labels, proposals, random_order,
                             read_labels_csv, read_labels_text)


def fake_preds(n=60, classes=("circle", "square", "star"), seed=0, root="/data"):
    """Predictions of ``n`` images with random scores and classes (no model needed)."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.2, 1.0, n)
    pred = rng.integers(0, len(classes), n)
    return Predictions(paths=[f"{root}/img_{i:03d}.png" for i in range(n)], true_class=[""] * n, pred=pred,
                       confidence=conf, entropy=np.zeros(n), classes=list(classes), truth=None,
                       scores={"msp": conf})


@pytest.fixture
def store(tmp_path):
    return LabelStore(tmp_path / "ws" / "labels.sqlite")


def test_wal_mode_a_busy_timeout_and_the_file_made_on_first_use(tmp_path):
    db = tmp_path / "new" / "labels.sqlite"
    assert not db.exists()
    s = LabelStore(db)
    assert db.is_file()
    assert s.journal_mode() == "wal"
    con = sqlite3.connect(db)  # another connection, as another process would open it
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in con.execute("PRAGMA table_info(labels)")]
    assert cols == ["id", "image", "label", "run", "source", "at"]
    con.close()


def test_rows_with_their_time_and_the_server_path(store, tmp_path):
    real = tmp_path / "photos" / "a.png"
    real.parent.mkdir()
    real.write_bytes(b"x")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    t0 = time.time()
    rid = store.add(str(link), "circle", "run1", "random")
    t1 = time.time()
    (h,) = store.history()
    assert isinstance(rid, int)
    assert h.image == os.path.realpath(real) and h.label == "circle" and h.run == "run1" and h.source == "random"
    assert t0 <= h.at <= t1
    # asked by either name, the one image is found, keyed by the name asked with
    assert store.current([str(link)])[str(link)].label == "circle"
    assert store.current([str(real)])[str(real)].label == "circle"
    assert list(store.current()) == [os.path.realpath(real)]


def test_skip_and_bad_sources_are_not_stored(store):
    with pytest.raises(ValueError, match="skip"):
        store.add("/d/a.png", "skip", "r")
    with pytest.raises(ValueError, match="source"):
        store.add("/d/a.png", "circle", "r", "guess")
    with pytest.raises(ValueError):
        store.add("/d/a.png", "", "r")
    assert store.history() == [] and store.count() == 0
    store.add("/d/a.png", "Unknown", "r")
    assert store.current()["/d/a.png"].label == "unknown"


def test_change_remove_and_undo(store):
    for img, lab in (("/d/a.png", "circle"), ("/d/b.png", "star"), ("/d/c.png", "unknown")):
        store.add(img, lab, "r1", "random")
    store.add("/d/a.png", "square", "r1", "random")  # a change: one more row, the latest wins
    assert store.current()["/d/a.png"].label == "square"
    assert len(store.history(limit=100)) == 4
    store.add("/d/z.png", "circle", "r2", "other")  # another run's: undo on r1 never touches it
    assert store.count() == 4 and store.count("r1") == 3 and store.count("r2") == 1
    assert store.undo_last("r1") == "/d/a.png"  # the latest label in force on r1
    assert "/d/a.png" not in store.current()
    assert store.undo_last("r1") == "/d/c.png"  # undoing again walks further back
    assert store.remove("/d/b.png", "r1") > 0
    assert store.undo_last("r1") is None  # nothing of r1 left in force
    assert set(store.current()) == {"/d/z.png"}
    hist = store.history("r1", limit=100)
    assert [h.label for h in hist[:3]] == [None, None, None]  # removals are rows too, newest first
    assert hist == sorted(hist, key=lambda h: -h.at)
    store.add("/d/a.png", "circle", "r1")  # labelled again after an undo
    assert store.current()["/d/a.png"].label == "circle"


def test_labels_survive_a_restart(tmp_path):
    db = tmp_path / "labels.sqlite"
    LabelStore(db).add("/d/a.png", "circle", "r", "random")
    # a new process (a server restart) opens the same file
    code = ("import json, sys; from ueo_core.labels import LabelStore; "
            "print(json.dumps({k: v.label for k, v in LabelStore(sys.argv[1]).current().items()}))")
    out = subprocess.run([sys.executable, "-c", code, str(db)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == {"/d/a.png": "circle"}, out.stderr
    assert LabelStore(db).current()["/d/a.png"] == Label("/d/a.png", "circle", "r", "random",
                                                         LabelStore(db).history()[0].at)


def _writer(db: str, who: str, n: int, start) -> None:
    start.wait()
    store = LabelStore(db)
    for i in range(n):
        store.add(f"/d/{who}/{i:04d}.png", "circle" if i % 2 else "unknown", f"run-{who}", "random")


def test_two_writers_at_once_lose_nothing(tmp_path):
    """Two browser tabs are two sessions of one server, or two servers on one workspace: two processes each add
    300 labels at the same moment; every one of the 600 is there."""
    db = str(tmp_path / "labels.sqlite")
    LabelStore(db)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(db, who, 300, start)) for who in ("tab1", "tab2")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0], "a writer failed (see its traceback above)"
    store = LabelStore(db)
    assert store.count() == 600
    assert store.count("run-tab1") == 300 and store.count("run-tab2") == 300
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM labels").fetchone() == (600, 600)


def test_two_threads_of_one_server_lose_nothing(tmp_path):
    """Streamlit runs each session's script in a thread of one process: two threads labelling and undoing."""
    store = LabelStore(tmp_path / "labels.sqlite")
    errors = []

    def tab(who):
        try:
            for i in range(100):
                store.add(f"/d/{who}/{i}.png", "star", who, "informative")
                if i % 10 == 9:
                    store.undo_last(who)
        except Exception as err:  # pragma: no cover - what the test reports
            errors.append(err)
    threads = [threading.Thread(target=tab, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count("a") == 90 and store.count("b") == 90
    assert len(store.history(limit=1000)) == 220


def test_proposals_random_then_informative():
    preds = fake_preds(120)
    thr = 0.6
    a = proposals(preds, thr, n_random=40, n_informative=20)
    assert a == proposals(fake_preds(120), thr, n_random=40, n_informative=20)  # stable (a refresh, a restart)
    assert len(a["random"]) == 40 and len(set(a["random"])) == 40
    # labelling the first n of a longer list is the same sample: the order is one permutation
    assert proposals(preds, thr, n_random=80)["random"][:40] == a["random"]
    assert sorted(random_order(preds).tolist()) == list(range(120))
    assert proposals(preds, thr, seed=1)["random"] != a["random"]
    inf = a["informative"]
    assert len(inf) == 20 and not set(inf) & set(a["random"])
    # spread: every predicted class among the accepted, and the rejected, get their turn
    groups = [("rejected" if preds.confidence[i] < thr else int(preds.pred[i])) for i in inf]
    assert set(groups) == {0, 1, 2, "rejected"}
    assert max(groups.count(g) for g in set(groups)) - min(groups.count(g) for g in set(groups)) <= 1
    # within a group, nearest the threshold first, and nothing nearer left out
    for g in set(groups):
        mine = [i for i, gg in zip(inf, groups) if gg == g]
        d = [abs(preds.confidence[i] - thr) for i in mine]
        assert d == sorted(d)
        others = [i for i in range(120) if i not in a["random"] and i not in inf
                  and ("rejected" if preds.confidence[i] < thr else int(preds.pred[i])) == g]
        assert all(abs(preds.confidence[i] - thr) >= d[-1] for i in others)


def test_proposals_uniform_over_images():
    """Each image is equally likely to be among the first 10 (over seeds): a uniform sample, not the first files."""
    preds = fake_preds(30)
    hits = np.zeros(30)
    for s in range(600):
        hits[random_order(preds, seed=s)[:10]] += 1
    assert abs(hits.mean() - 200) < 1e-9
    assert hits.min() > 140 and hits.max() < 260  # binomial(600, 1/3): sd 11.5


def test_labels_csv_round_trip(tmp_path):
    root = tmp_path / "data"
    preds = fake_preds(5, root=str(root))
    labels = {preds.paths[0]: "circle", preds.paths[3]: "unknown"}
    text = labels_csv(labels, root)
    assert text.splitlines() == ["path,label", "img_000.png,circle", "img_003.png,unknown"]
    assert str(tmp_path) not in text
    f = tmp_path / "labels.csv"
    f.write_text(text)
    assert read_labels_csv(f, root, images=preds.paths, classes=preds.classes) == labels
    # from the store: Label values; absolute paths are read too
    store_labels = {preds.paths[1]: Label(preds.paths[1], "Star", "r", "random", 0.0)}
    f.write_text(labels_csv(store_labels, root).replace("img_001.png", str(root / "img_001.png")))
    assert read_labels_csv(f, root, images=preds.paths, classes=preds.classes) == {preds.paths[1]: "star"}


@pytest.mark.parametrize("text,words", [
    ("file,label\na.png,circle\n", "no 'path' column"),
    ("path\nimg_000.png\n", "no 'label' column"),
    ("path,label\nimg_000.png,circle\nnope.png,circle\n", "row 3: 'nope.png' is not one of this run's images"),
    ("path,label\nimg_000.png,dog\n", "row 2: the label 'dog' is neither a prior class"),
    ("path,label\nimg_000.png,circle\nimg_000.png,star\n", "rows 2 and 3"),
])
def test_a_bad_labels_csv_is_named_by_its_row(text, words):
    preds = fake_preds(3)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("'", "'")):
        read_labels_text(text, Path("/data"), images=preds.paths, classes=preds.classes)


def test_person_labels_match_by_server_path(tmp_path):
    real = tmp_path / "a.png"
    real.write_bytes(b"x")
    link = tmp_path / "b.png"
    link.symlink_to(real)
    assert person_labels([str(tmp_path / "x.png"), str(link)], {str(real): "circle"}) == {1: "circle"}
    assert person_labels([str(real)], {str(real): Label(str(real), None, "r", "other", 0)}) == {}
    assert person_labels([str(real)], None) == {}

