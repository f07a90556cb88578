"""Every sentence the app builds, on the edge cases where a sentence can stop being true: one image, one class, no
ground truth, below chance, a collapsed run (issue 29). Each assertion reads the sentence against the numbers it
was made from. Also: names that leave the server (privacy), the lesson's estimate, the teacher's link."""
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from helpers import make_folder

CLASSES = ["circle", "square", "star"]
TOKEN = "4dbf6e61" + "0" * 24


def lesson_row(method, gacc=None, auroc=None, h=None, shares=(0.34, 0.33, 0.33), collapsed=False, n=90):
    after = {"gacc": gacc, "auroc": auroc, "h_score": h, "class_shares": list(shares), "collapsed": collapsed, "n": n}
    return {"method": method, "run": f"r-{method}", "after": after, "before": {}, "classes": CLASSES, "seconds": 1.0}


def fake_run(root: Path, rid: str, method: str, data: str, after: dict, before: dict = None, classes=CLASSES):
    d = root / rid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method, "data": data, "model": "ueo-shapes", "epochs": 5,
                                               "summary": {"classes": list(classes)}}))
    (d / "metrics.json").write_text(json.dumps({"before": before or {}, "after": after, "seconds": 3.0}))
    return d


# ------------------------------------------------------------------------------------------------- one image
def test_one_image_is_not_a_collapse_and_is_refused_before_a_run():
    from ueo_core.methods import METHODS, too_few_note
    from ueo_core.metrics import collapse_stats
    one = np.array([[0.1, 0.8, 0.1]])
    assert collapse_stats(one)["collapsed"] is False          # 100 % one class by necessity, not a collapse
    assert collapse_stats(np.repeat(one, 3, axis=0))["collapsed"] is True  # 3 images, K = 3, all one class
    assert METHODS["ueo"].too_few_images(1, 3).startswith("1 image: too few for UEO, which needs at least 3")
    assert METHODS["ueo"].too_few_images(3, 3) is None
    assert METHODS["zero_shot"].too_few_images(2, 6) is None and METHODS["zero_shot"].too_few_images(1, 6)
    note = too_few_note(1, 3)
    assert note.startswith("1 image: too few for any run")
    note = too_few_note(4, 6)  # enough to score zero-shot, not to adapt over 6 classes
    assert "enough for Zero-shot" in note and "UEO" in note.split("too few for")[1] and "at least 6" in note
    assert too_few_note(6, 6) is None


def test_the_cli_refuses_one_image_with_a_sentence_not_a_run(tmp_path):
    folder = make_folder(tmp_path / "one", classes=("red",), per_class=1)
    (folder / "red" / "img_0.png").rename(folder / "img_0.png")
    (folder / "red").rmdir()
    r = subprocess.run([os.sys.executable, "-m", "ueo_core", "train", str(folder), "--prior", "red,green,blue",
                        "--model", "ueo-tiny", "--pretrained", "none", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "1 image: too few for UEO, which needs at least 3" in r.stdout + r.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_entropy_note_never_calls_a_collapsed_run_spread():
    from ueo_core.analysis import entropy_note
    steps = [{"marginal_entropy": 1.0, "cond_entropy": 0.9}, {"marginal_entropy": 0.98, "cond_entropy": 0.2}]
    assert "fell from 1.00 to 0.98 (less than 30 % down): the predictions stay spread" in \
        entropy_note(steps, collapsed=False)
    moved = lambda a, b: entropy_note([{"marginal_entropy": a}, {"marginal_entropy": b}])  # noqa: E731
    assert "fell from 1.03 to 0.84" in moved(1.03, 0.84) and "rose from 1.46 to 1.59" in moved(1.46, 1.59)
    assert "stayed at 1.20" in moved(1.2, 1.201)
    text = entropy_note(steps, collapsed=True)
    assert "spread over classes" not in text and "yet the run collapsed" in text and "0.98" in text


# --------------------------------------------------------------------------------------------- one class
def test_one_class_is_refused_with_the_reason():
    from ueo_core.data import DataError, parse_prior
    with pytest.raises(DataError, match="at least 2 known classes"):
        parse_prior(["dog"])


# ------------------------------------------------------------------------------------------ no ground truth
def test_sentences_without_ground_truth_claim_no_accuracy():
    from ueo_core.analysis import compare_summary, rejection_summary, run_verdict
    from ueo_core.lesson import lesson_summary
    level, text = run_verdict({"mean_confidence": 0.5}, {"mean_confidence": 0.7, "collapsed": False}, CLASSES, 4)
    assert level == "success" and "GACC" not in text and "AUROC" not in text and "over zero-shot" not in text
    assert rejection_summary([None, None]) == ("2 images rejected; without ground truth nobody can say which "
                                               "rejections are right.")
    rows = [{"method": "im", "mean_confidence": 0.612, "largest class": 0.4, "data": "d", "prior": "a, b"},
            {"method": "ueo", "mean_confidence": 0.734, "largest class": 0.35, "data": "d", "prior": "a, b"}]
    text = compare_summary(rows)
    assert "No run has ground truth" in text and "ueo is the most confident (mean 73.4)" in text
    assert "im the least (61.2)" in text and "better" not in text.split(";")[0]
    s = " ".join(lesson_summary([lesson_row("zero_shot"), lesson_row("ueo")]))
    assert "no class folders" in s and "GACC" not in s and "AUROC" not in s


def test_compare_shows_the_columns_its_no_truth_sentence_names(tmp_path):
    from ueo_core.analysis import compare_summary, compare_table
    a = fake_run(tmp_path, "20261206-000001-im-aaaaaa", "im", "shapes:photo",
                 {"mean_confidence": 0.61, "top_share": 0.4, "collapsed": False, "n": 40})
    b = fake_run(tmp_path, "20261206-000002-ueo-bbbbbb", "ueo", "shapes:photo",
                 {"mean_confidence": 0.73, "top_share": 0.3, "collapsed": False, "n": 40}, classes=["a", "b"])
    rows = compare_table([a, b])
    assert [r["mean_confidence"] for r in rows] == [0.61, 0.73] and [r["largest class"] for r in rows] == [0.4, 0.3]
    assert [r["prior"] for r in rows] == ["circle, square, star", "a, b"] and rows[0]["images"] == 40
    text = compare_summary(rows)
    assert text == ("These runs use different priors (circle, square, star; a, b), so their numbers are not "
                    "comparable: none is ranked."), text
    rows[1]["prior"] = rows[0]["prior"]
    assert compare_summary(rows[:1]) == ("No ground truth (class folders named in the prior), so no accuracy: im's "
                                         "mean confidence is 61.0 and its largest class holds 40.0 %.")


def test_compare_tells_two_runs_of_one_method_apart_and_ranks_only_runs_with_truth():
    from ueo_core.analysis import compare_summary
    rows = [{"method": "ueo", "run": "20261206-000001-ueo-aaaaaa", "auroc": 0.80, "gacc": 0.7, "classes": 3},
            {"method": "ueo", "run": "20261206-000002-ueo-bbbbbb", "auroc": 0.85, "gacc": 0.6, "classes": 3},
            {"method": "im", "run": "20261206-000003-im-cccccc", "mean_confidence": 0.7}]
    text = compare_summary(rows)
    assert text.startswith("1 of these runs have no ground truth and are not ranked; ueo bbbbbb separated the "
                           "unknowns best (AUROC 85.0)"), text
    assert "ueo aaaaaa was most accurate on known classes (GACC 70.0)" in text


# ---------------------------------------------------------------------------------------------- below chance
def test_compare_calls_no_run_best_below_chance():
    from ueo_core.analysis import compare_summary
    rows = [{"method": "zero_shot", "gacc": 0.30, "auroc": 0.474, "classes": 3},
            {"method": "ueo", "gacc": 0.31, "auroc": 0.45, "classes": 3}]
    text = compare_summary(rows)
    assert "best" not in text
    assert "No run separates known from unknown clearly better than chance: the highest AUROC is zero_shot's " \
           "47.4, where guessing gives 50" in text
    assert "the highest GACC is ueo's 31.0, where guessing gives 33" in text
    rows[1]["auroc"] = 0.80  # one run above the line: it is named best, as before
    assert "ueo separated the unknowns best (AUROC 80.0)" in compare_summary(rows)


def test_lesson_and_verdict_below_chance_say_so():
    from ueo_core.analysis import run_verdict
    from ueo_core.lesson import lesson_summary
    level, text = run_verdict({"gacc": 0.3, "auroc": 0.5}, {"gacc": 0.3, "auroc": 0.5, "collapsed": False},
                              CLASSES, 3)
    assert level == "warning" and "near chance" in text and "Done in 3 s." in text
    s = lesson_summary([lesson_row("zero_shot", 0.3, 0.5, 0.2), lesson_row("ueo", 0.32, 0.52, 0.2)])
    assert any("near chance" in line for line in s)


# ------------------------------------------------------------------------------------------------- collapse
def test_collapsed_runs_are_said_to_be_collapsed_everywhere():
    from ueo_core.analysis import compare_summary, run_verdict, shares_note
    from ueo_core.lesson import lesson_summary
    after = {"gacc": 0.3, "auroc": 0.7, "collapsed": True, "top_share": 0.9, "class_shares": [0.9, 0.05, 0.05]}
    level, text = run_verdict({"gacc": 0.7, "auroc": 0.8}, after, CLASSES, 9, "entropy")
    assert level == "warning" and text.startswith("Collapsed after 9 s: 90% of all images are now predicted as "
                                                  "'circle'")
    assert "collapsed onto one class" in shares_note([{"epoch": 0, "class_shares": [0.4, 0.3, 0.3]},
                                                       {"epoch": 5, **after}], CLASSES)
    assert compare_summary([{"method": "entropy", **after}]).startswith("entropy collapsed")
    s = lesson_summary([lesson_row("zero_shot", 0.7, 0.8, 0.6),
                        lesson_row("entropy", 0.3, 0.45, 0.1, (0.9, 0.05, 0.05), True)])
    assert any(line.startswith("Entropy minimisation (TENT) collapsed: 90%") for line in s)
    assert not any("kept the predictions spread" in line for line in s)


# ------------------------------------------------------------------------------------------------- the oracle
def test_the_oracle_is_said_to_bound_the_weighting_not_everything():
    from ueo_core.lesson import lesson_summary
    rows = [lesson_row("zero_shot", 0.70, 0.80, 0.6), lesson_row("im", 0.875, 0.84, 0.7),
            lesson_row("ueo", 0.861, 0.87, 0.7), lesson_row("oracle", 0.856, 0.90, 0.75)]
    s = lesson_summary(rows)
    assert "a reference for what these settings allow with perfect weights" not in " ".join(s)
    assert any(line.startswith("The oracle is UEO given the true known/unknown split as its weights: AUROC 90.0, "
                               "GACC 85.6") for line in s)
    ahead = [line for line in s if "ahead of the oracle" in line]
    assert ahead == [next(line for line in s if line.startswith("IM and UEO are ahead of the oracle on GACC "
                                                                "(87.5 and 86.1 vs 85.6)"))]
    assert "do not bound known-class accuracy" in ahead[0]
    rows[-1]["after"]["gacc"] = 0.90  # the oracle first on both: nothing is ahead of it
    assert not any("ahead of the oracle" in line for line in lesson_summary(rows))
    rows[2]["after"]["auroc"] = 0.91
    assert any(line.startswith("UEO is ahead of the oracle on AUROC (91.0 vs 90.0)") for line in lesson_summary(rows))


# ------------------------------------------------------------------------------------------ a long class name
def test_a_long_class_name_is_named_as_the_cause():
    from ueo_core.data import DataError
    from ueo_core.prompts import check_prior_names, prompt_length_problem
    import open_clip
    long = ("a very long class name " * 16).strip()
    with pytest.raises(DataError, match=r"^The class name 'a very long class name a very long cl…' is \d+ tokens "
                                        r"long \(367 characters\)"):
        check_prior_names(["dog", long], "ueo-shapes")
    check_prior_names(["dog", "cat"], "ueo-shapes")  # ordinary names pass
    tok = open_clip.get_tokenizer("ViT-B-32")
    assert "Use a shorter template" in prompt_length_problem(["dog"], "a photo of a {} " + "very " * 80, tok)


# ------------------------------------------------------------------------------------------------ privacy
def test_data_names_and_image_paths_carry_no_server_path(tmp_path):
    from ueo_core.privacy import data_name, public_path, scrub
    ws = tmp_path / "workspaces" / TOKEN
    up = ws / "uploads" / "20261206-035612"
    assert data_name(str(up)) == "upload 20261206-035612"
    assert data_name(str(up / "my_photos")) == "upload 20261206-035612/my_photos"
    assert data_name("shapes:sketch") == "Shapes · sketch"
    assert data_name("/srv/datasets/PACS/sketch") == "PACS/sketch"
    assert public_path(str(up / "dogs" / "IMG_1.jpg"), up) == "dogs/IMG_1.jpg"
    assert public_path("/elsewhere/IMG_2.jpg", up) == "IMG_2.jpg"
    run = fake_run(ws / "runs", "20261206-000003-ueo-cccccc", "ueo", str(up), {})
    text = scrub(f"160 images in {up} (3 known); first {up}/dogs/IMG_1.jpg; run {run}; key {TOKEN}", run)
    assert TOKEN not in text and str(tmp_path) not in text
    assert text == ("160 images in upload 20261206-035612 (3 known); first dogs/IMG_1.jpg; run "
                    "[your workspace]/runs/20261206-000003-ueo-cccccc; key [token]")


def test_compare_table_names_the_upload_not_its_path(tmp_path):
    from ueo_core.analysis import compare_table
    up = tmp_path / "workspaces" / TOKEN / "uploads" / "20261206-035612"
    run = fake_run(tmp_path / "workspaces" / TOKEN / "runs", "20261206-000004-ueo-dddddd", "ueo", str(up), {})
    row = compare_table([run])[0]
    assert row["data"] == "upload 20261206-035612" and TOKEN not in json.dumps(row)


def test_the_predictions_download_names_images_inside_the_data_folder(tmp_path):
    from ueo_core.analysis import Predictions
    root = tmp_path / TOKEN / "uploads" / "x"
    p = Predictions(paths=[str(root / "dogs" / "a.jpg"), str(root / "cats" / "b.jpg")], true_class=["dogs", "cats"],
                    pred=np.array([0, 1]), confidence=np.array([0.9, 0.4]), entropy=np.zeros(2),
                    classes=["dogs", "cats"], truth=np.array([0, 1]))
    rows = p.csv_at_threshold(0.5, root=root).splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["dogs/a.jpg", "cats/b.jpg"] and TOKEN not in "".join(rows)


# --------------------------------------------------------------------------------------- the lesson's estimate
def test_the_lesson_estimate_comes_from_the_servers_own_runs_or_is_not_given(tmp_path, monkeypatch):
    from ueo_core import jobs
    monkeypatch.setattr(jobs, "_slots_or_one", lambda: 1)
    ws = tmp_path / "ws"
    cfg = {"method": "ueo", "data": "shapes:sketch", "model": "ueo-shapes", "pretrained": "builtin", "epochs": 5,
           "batch_size": 64, "fast_mode": None}
    assert jobs.estimate_runs([cfg], ws) is None  # nothing has finished: nothing is promised
    for k, (method, seconds) in enumerate([("ueo", 30.0), ("ueo", 50.0), ("ueo", 161.0), ("zero_shot", 2.0)]):
        d = ws / TOKEN / "runs" / f"r{k}"
        d.mkdir(parents=True)
        (d / jobs.JOB).write_text(json.dumps({"config": {**cfg, "method": method}}))
        (d / jobs.WORKER).write_text(json.dumps({"started": 100.0}))
        (d / jobs.ENDED).write_text(json.dumps({"status": "done", "at": 100.0 + seconds}))
    assert jobs.estimate_runs([cfg], ws) == 50.0                                      # the median of its three
    assert jobs.estimate_runs([cfg, {**cfg, "method": "zero_shot"}], ws) == 52.0      # one slot: one after another
    assert jobs.estimate_runs([cfg, {**cfg, "method": "im"}], ws) is None             # no IM has run here
    assert jobs.estimate_runs([{**cfg, "data": "shapes:photo"}], ws) is None          # other images
    assert jobs.duration_words(161) == "3 min" and jobs.duration_words(28) == "30 s"


def test_the_lesson_page_promises_no_duration_it_has_not_measured(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    at = AppTest.from_file(str(ROOT / "pages/8_Lesson.py"), default_timeout=120)
    at.run()
    assert not at.exception
    info = [i.value for i in at.info if i.value.startswith("No lesson yet")]
    assert info == ["No lesson yet: press ▶ Run the lesson."]


# ----------------------------------------------------------------------------------- what the server keeps
def test_pages_say_when_a_workspace_is_deleted(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from studio.workspace import retention_note
    assert "nobody has used for 14 days is deleted" in retention_note(14)
    assert "for 1 day is deleted" in retention_note(1)
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=60)
    at.run()
    assert any(retention_note() in c.value for c in at.caption)


# ------------------------------------------------------------------------------------------ the teacher's link
def test_a_localhost_link_is_said_to_work_only_here():
    from studio.share import local_only
    for url in ("http://localhost:8611/lesson?lesson_link=x", "http://127.0.0.1:8501/", "http://[::1]:8501/"):
        w = local_only(url)
        assert w and "Students need the server's address" in w, url
    assert "localhost:8611" in local_only("http://localhost:8611/lesson")
    assert local_only("http://classroom.school.org:8611/lesson") is None
    assert local_only("https://10.0.0.5/lesson") is None


# ---------------------------------------------------------------------------------------- the served app
def fake_env(tmp_path: Path) -> Path:
    """A virtual environment whose python records its arguments: scripts/app.sh runs through setup.sh's checks
    (the lock's stamp matches) to the streamlit command, which is recorded instead of started."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.txt"
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".ueo-lock.sha256").write_text(hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest())
    return venv


@pytest.mark.parametrize("watch", [None, "1"])
def test_the_served_app_does_not_watch_its_source(tmp_path, watch):
    venv = fake_env(tmp_path)
    env = {**os.environ, "UEO_VENV": str(venv)}
    env.pop("UEO_WATCH", None)
    if watch:
        env["UEO_WATCH"] = watch
    subprocess.run(["bash", "scripts/app.sh", "--server.port", "8611"], cwd=ROOT, env=env, check=True, timeout=60)
    last = (tmp_path / "calls.txt").read_text().splitlines()[-1]
    assert last.startswith("-m streamlit run app.py") and last.endswith("--server.port 8611")
    assert ("--server.fileWatcherType none" in last) == (watch is None)


def test_the_data_page_says_before_any_run_what_is_wrong(tmp_path, monkeypatch):
    """A class name too long for the prompt is named on Data (not blamed on the template at Start); one image is
    said to be too few there."""
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    monkeypatch.setenv("UEO_DATA_ROOTS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "pages/1_Data.py"), default_timeout=120)
    at.run()
    at.text_input[0].set_value("x" * 300)  # beside the six Shapes names already picked
    next(b for b in at.button if b.label == "Apply data and prior").click().run()
    assert not at.exception
    assert any(e.value.startswith("The class name 'xxxxxxxx") and "Shorten it" in e.value for e in at.error)
    folder = make_folder(tmp_path / "one", classes=("red",), per_class=1)
    at.radio[0].set_value("Folder on this machine").run()
    at.text_input[0].set_value(str(folder)).run()
    at.text_input[1].set_value("green")
    next(b for b in at.button if b.label == "Apply data and prior").click().run()
    assert not at.exception
    assert any(w.value.startswith("1 image: too few for any run") for w in at.warning), [w.value for w in at.warning]
