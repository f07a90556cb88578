"""Calibration (issue 33): the expected calibration error (ECE, 15 equal-width (lo, hi] bins, Guo et al. 2017) of the
known-class images, checked against a per-image loop written out here; in every evaluation's metrics.json of a
real run; and the Compare page's ECE column, sentence and reliability diagrams, whose bars are checked against the
same loop over the run's own predictions."""
import base64
import csv
import json
import math
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, tiny_ueo_run
from ueo_core.data import NO_TRUTH, UNKNOWN
from ueo_core.metrics import (CALIBRATION_BINS, calibration_error, compute_metrics, ece, reliability,
                              reliability_bins)

WS = "e5" * 16
RID = "20260103-120000-ueo-ca1b00"


def direct_bins(conf, correct, bins=15):
    """Per bin (lo, hi], image by image: [count, sum of confidences, number right]; a confidence of 0 in the first."""
    out = [[0, 0.0, 0] for _ in range(bins)]
    for c, r in zip(conf, correct):
        k = next(b for b in range(bins) if c <= (b + 1) / bins or b == bins - 1)
        out[k][0] += 1
        out[k][1] += c
        out[k][2] += int(r)
    return out


def direct_ece(conf, correct, bins=15):
    """ECE written out: for each non-empty bin, its share of images times |its accuracy - its mean confidence|."""
    n = len(conf)
    return sum(cnt / n * abs(right / cnt - total / cnt) for cnt, total, right in direct_bins(conf, correct, bins)
               if cnt)


def known_only(probs, truth):
    known = [i for i in range(len(truth)) if truth[i] >= 0]
    return [float(max(probs[i])) for i in known], [int(np.argmax(probs[i])) == truth[i] for i in known]


# ---------------------------------------------------------------- the number
@pytest.mark.parametrize("seed", range(5))
def test_ece_equals_a_per_image_loop_over_the_known_images(seed):
    """Random softmax rows of 2 to 8 classes with unknown and unlabelled images mixed in: the known images' ECE,
    and the reliability bins it is computed from, are the loop's."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 9))
    probs = rng.dirichlet(np.ones(k) * rng.uniform(0.2, 2), size=300)
    truth = rng.integers(NO_TRUTH, k, size=300)
    conf, right = known_only(probs, truth)
    assert ece(probs, truth) == pytest.approx(direct_ece(conf, right), abs=1e-12)
    rel = reliability(probs, truth)
    want = direct_bins(conf, right)
    assert rel["count"].tolist() == [c for c, _, _ in want]
    full = rel["count"] > 0
    assert rel["confidence"][full] == pytest.approx([t / c for c, t, _ in want if c])
    assert rel["accuracy"][full] == pytest.approx([r / c for c, _, r in want if c])
    assert np.isnan(rel["accuracy"][~full]).all() and rel["edges"] == pytest.approx(np.arange(16) / 15)


def test_a_confidence_on_a_bin_edge_goes_to_the_bin_below():
    """Bins are (lo, hi] (Guo et al.'s code): confidences exactly k/15 land in bin k-1; an image at 9/15 = 0.6 (right)
    and one at 0.62 (wrong) are in two bins, ECE (0.4 + 0.62) / 2 = 0.51; with [lo, hi) bins (torchmetrics') they
    would share one, ECE |0.5 - 0.61| = 0.11."""
    edges = np.arange(1, 16) / 15
    rel = reliability_bins(edges, np.ones(15, bool))
    assert rel["count"].tolist() == [1] * 15 and rel["confidence"] == pytest.approx(edges)
    probs = np.array([[0.6, 0.4], [0.38, 0.62]])
    assert ece(probs, np.array([0, 0])) == pytest.approx(0.51)
    rng = np.random.default_rng(7)  # random images on edges and off them, against the loop
    conf = np.r_[rng.integers(8, 16, size=40) / 15, rng.uniform(0.5, 1, size=40)]
    probs = np.c_[conf, 1 - conf]
    truth = rng.integers(0, 2, size=80)
    assert ece(probs, truth) == pytest.approx(direct_ece(*known_only(probs, truth)), abs=1e-12)


def test_a_perfectly_calibrated_set_has_ece_zero_and_an_overconfident_one_its_gap():
    """300 images at each bin's centre (2k+1)/30, 10(2k+1) of them right: accuracy equals confidence in every bin.
    Every image at 0.9 and 60 % right: ECE 0.3. Two classes, so confidence (from 0.5) is the max softmax."""
    centres = (2 * np.arange(15) + 1) / 30
    conf = np.repeat(centres, 300)
    right = np.concatenate([np.arange(300) < 10 * (2 * k + 1) for k in range(15)])
    assert calibration_error(reliability_bins(conf, right)) == pytest.approx(0, abs=1e-12)
    upper = conf > 0.5  # the bins a 2-class softmax can reach, through ece() itself
    probs = np.c_[conf[upper], 1 - conf[upper]]
    assert ece(probs, np.where(right[upper], 0, 1)) == pytest.approx(0, abs=1e-12)
    probs = np.tile([0.9, 0.1], (10, 1))
    assert ece(probs, np.array([0] * 6 + [1] * 4)) == pytest.approx(0.3)
    assert ece(probs, np.array([0] * 6 + [UNKNOWN] * 4)) == pytest.approx(0.1)  # unknowns don't count


def test_no_truth_no_known_image_and_one_image():
    """No truth or no known image: None (compute_metrics: no key without truth, NaN as its other missing metrics,
    written as null). One image: |right - confidence|."""
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert ece(probs, None) is None and reliability(probs, None) is None
    assert ece(probs, np.array([UNKNOWN, NO_TRUTH])) is None
    assert ece(np.zeros((0, 2)), np.zeros(0, int)) is None
    assert "ece" not in compute_metrics(probs, None)
    m = compute_metrics(probs, np.array([UNKNOWN, UNKNOWN]))
    assert math.isnan(m["ece"])
    from ueo_core.runs import dumps
    assert json.loads(dumps(m))["ece"] is None
    assert ece(probs[:1], np.array([0])) == pytest.approx(0.3) and ece(probs[:1], np.array([1])) == pytest.approx(0.7)
    assert compute_metrics(probs, np.array([0, NO_TRUTH]))["ece"] == pytest.approx(0.3)
    assert CALIBRATION_BINS == 15


# ---------------------------------------------------------------- a real run and the Compare page
def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def direct_from_predictions(path, classes):
    """(confidence, right) of the known images of a predictions CSV, read as plain text."""
    rows = [r for r in read_rows(path) if r["true_class"].lower() in [c.lower() for c in classes]]
    return ([float(r["confidence"]) for r in rows],
            [r["predicted_class"].lower() == r["true_class"].lower() for r in rows])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch UEO run of the random-init tiny model (CLI) on 24 images, 18 of the prior's 3 classes."""
    root = tmp_path_factory.mktemp("calibration")
    return tiny_ueo_run(root, root / "ws" / WS / "runs" / RID)


def test_every_evaluation_of_a_run_records_its_ece(run):
    """metrics.json before and after, and each epoch's evaluation, carry ECE; before/after are the loop's over the
    zero-shot and final predictions (confidences saved to 6 decimals)."""
    m = json.loads((run / "metrics.json").read_text())
    classes = json.loads((run / "config.json").read_text())["summary"]["classes"]
    for key, name in (("before", "predictions_zero_shot.csv"), ("after", "predictions.csv")):
        assert m[key]["ece"] == pytest.approx(direct_ece(*direct_from_predictions(run / name, classes)), abs=1e-4)
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines() if line.strip()]
    assert epochs and all(isinstance(e["metrics"]["ece"], float) for e in epochs)


def decode(v):
    """A Plotly array as the page sent it (numpy arrays travel as base64 with a dtype and shape)."""
    if isinstance(v, dict):
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(s) for s in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v)


@pytest.fixture
def workspace_runs(run, monkeypatch):
    """The workspaces root that holds the run (its only run)."""
    monkeypatch.setattr("studio.workspace.WORKSPACES", run.parents[2])
    return run


def compare_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/6_Compare.py"), default_timeout=60)
    at.session_state["ws"] = WS
    return at


def test_compare_shows_ece_and_a_reliability_diagram_of_the_run(workspace_runs):
    """The table's ECE is metrics.json's; the diagram's bars are the loop's bins over predictions.csv (x at the bin
    centres, widths 1/15, heights the accuracy, hover counts), and its caption's ECE is theirs."""
    run = workspace_runs
    at = compare_page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    after = json.loads((run / "metrics.json").read_text())["after"]
    row = at.table[0].value.iloc[0]
    assert row["ece"] == f"{after['ece'] * 100:.1f}"
    classes = json.loads((run / "config.json").read_text())["summary"]["classes"]
    conf, right = direct_from_predictions(run / "predictions.csv", classes)
    want = [(k, c, t / c, r / c) for k, (c, t, r) in enumerate(direct_bins(conf, right)) if c]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    diagram = [c for c in charts if "reliability" in str(c["layout"].get("title"))]
    assert len(diagram) == 1
    bars = next(t for t in diagram[0]["data"] if t["type"] == "bar")
    assert decode(bars["x"]) == pytest.approx([(2 * k + 1) / 30 for k, *_ in want])
    assert decode(bars["width"]) == pytest.approx([1 / 15] * len(want))
    assert decode(bars["y"]) == pytest.approx([a for *_, a in want])
    assert decode(bars["customdata"])[:, 2].tolist() == [c for _, c, _, _ in want]
    dots = next(t for t in diagram[0]["data"] if t.get("name") == "mean confidence")
    assert decode(dots["x"]) == pytest.approx([m for _, _, m, _ in want])
    captions = " ".join(c.value for c in at.caption)
    shown = f"{direct_ece(conf, right) * 100:.1f}"
    assert f"ECE {shown} over {len(conf)} known-class images in {len(want)} of 15 confidence bins" in captions
    k, c, _, acc = max(want, key=lambda w: w[1])
    assert (f"The fullest bin, confidence {k / 15 * 100:.1f}–{(k + 1) / 15 * 100:.1f}, holds {c} of the {len(conf)} "
            f"at accuracy {acc * 100:.1f}") in captions
    assert f"lower is better): ueo: ECE {row['ece']}, zero-shot {row['ece (zero-shot)']}." in captions, captions
    from helpers import rendered
    assert str(run.parents[2]) not in rendered(at)


def test_compare_ranks_calibration_and_says_why_a_run_has_none(run, tmp_path, monkeypatch):
    """Three runs on the same data: the lower ECE is named best calibrated; a run whose metrics.json has no ECE (made
    before) and one without ground truth are said so, and get no diagram."""
    ws = tmp_path / "ws" / WS / "runs"
    better, older, blind = (ws / f"20260103-12000{i}-ueo-{i}aaaaa" for i in range(3))
    for d in (better, older, blind):
        shutil.copytree(run, d)
    m = json.loads((run / "metrics.json").read_text())
    m["after"]["ece"] = m["after"]["ece"] / 2
    (better / "metrics.json").write_text(json.dumps(m))
    for d, keys in ((older, ("ece",)), (blind, ("ece", "gacc", "pacc", "auroc", "fpr95", "h_score"))):
        m = json.loads((run / "metrics.json").read_text())
        for k in keys:
            m["after"].pop(k, None)
            m["before"].pop(k, None)
        (d / "metrics.json").write_text(json.dumps(m))
    rows = read_rows(blind / "predictions.csv")
    for r in rows:
        r["true_class"] = ""
    with open(blind / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    shutil.copytree(run, ws / RID)
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    at = compare_page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    from ueo_core.analysis.verdicts import shown_rate
    m = json.loads((run / "metrics.json").read_text())["after"]
    assert (f"ueo {better.name[-6:]} is the best calibrated (ECE {shown_rate(m['ece'] / 2)}, zero-shot "
            f"{shown_rate(json.loads((run / 'metrics.json').read_text())['before']['ece'])}), ueo {RID[-6:]} the "
            f"least (ECE {shown_rate(m['ece'])}") in captions, captions
    assert "1 of these runs was made before ECE was recorded" in captions
    assert "1 has no known-class image with ground truth, so no ECE" in captions
    diagrams = [c for c in at.get("plotly_chart") if "reliability" in c.proto.spec]
    assert len(diagrams) == 3  # the run, its better copy and the older one (its predictions have truth); not blind


def test_the_sentences_without_any_ece_and_across_data():
    from ueo_core.analysis.comparison import calibration_note, reliability_note
    none = [{"run": "a", "method": "ueo", "data": "x", "prior": "p"}]
    assert calibration_note(none).startswith("No ECE: 1 has no known-class image with ground truth")
    rows = [{"run": "r1", "method": "ueo", "data": "x", "prior": "p", "ece": 0.1, "gacc": 0.5},
            {"run": "r2", "method": "im", "data": "y", "prior": "p", "ece": 0.05, "gacc": 0.5}]
    text = calibration_note(rows)
    assert "ueo ECE 10.0; im ECE 5.0 (other data or priors: not ranked)" in text and "best" not in text
    one = reliability_bins([0.8], [True])
    assert reliability_note(one).startswith("ECE 20.0 over 1 known-class image in 1 of 15 confidence bins")
    assert "Overall underconfident: mean confidence 80.0, accuracy 100.0" in reliability_note(one)
    assert "no bin holds 10 images" in reliability_note(one)
    assert "The fullest bin, confidence 73.3–80.0, holds 1 of the 1 at accuracy 100.0" in reliability_note(one)
