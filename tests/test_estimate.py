"""Estimates from a person's labels (issue 31, part 4): exact intervals against known values, "too few" said with
its rule and counts, the JSON shape, the definitions of ``metrics.compute_metrics``, Youden's J, the random-only
basis, inverse-probability weights, and ``python -m ueo_core estimate`` on a tiny run.

Deliberate bugs each test was seen to catch (on a copy of the tree):
- the interval of a proportion from the normal approximation (Wald) instead of Clopper-Pearson:
  ``test_exact_intervals_match_known_values`` fails.
- ``random_only`` counting every label: ``test_random_only_leaves_informative_labels_out`` fails.
- unknown rejection counted as ``value <= threshold`` (Inspect accepts at ``>=``): ``test_every_label_gives_
  the_real_metrics`` fails on an image exactly at the threshold.
- ``MIN_LABELS`` checked with ``>`` instead of ``>=``: ``test_too_few_labels_say_the_rule_and_the_counts`` fails.
- Youden's cut put at the lowest accepted value instead of between two labelled values: ``test_youden...``
  fails.
- the CLI printing server paths / a traceback for a bad CSV: ``test_cli...`` fails.
"""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from helpers import make_folder
from ueo_core.analysis.predictions import Predictions, read_predictions
from ueo_core.cli import main
from ueo_core.estimate import MIN_LABELS, estimate, exact_interval, true_values, youden_threshold
from ueo_core.labels import Label
from ueo_core.metrics import compute_metrics

PRIOR = ["red", "green", "blue"]
TINY = ["--model", "ueo-tiny", "--pretrained", "none"]
KEYS = ("known_accuracy", "unknown_rejected", "auroc")


def synthetic(n=200, seed=0, classes=("a", "b", "c")):
    """Predictions with ground truth: known images (2/3) mostly right and confident, unknowns less so."""
    rng = np.random.default_rng(seed)
    truth = np.where(rng.random(n) < 2 / 3, rng.integers(0, len(classes), n), -1)
    pred = np.where((truth >= 0) & (rng.random(n) < 0.8), np.maximum(truth, 0), rng.integers(0, len(classes), n))
    conf = np.clip(np.where(truth >= 0, rng.normal(0.75, 0.15, n), rng.normal(0.5, 0.15, n)), 0.34, 0.99)
    return Predictions(paths=[f"/data/{i:04d}.png" for i in range(n)],
                       true_class=[classes[t] if t >= 0 else "other" for t in truth], pred=pred, confidence=conf,
                       entropy=np.zeros(n), classes=list(classes), truth=truth, scores={"msp": conf})


def truth_labels(preds, idx, source="random"):
    return {preds.paths[i]: Label(preds.paths[i], preds.classes[preds.truth[i]] if preds.truth[i] >= 0
                                  else "unknown", "r", source, 0.0) for i in idx}


def test_exact_intervals_match_known_values():
    # Clopper-Pearson, closed forms at the ends: k = 0 -> [0, 1 - (a/2)^(1/n)]; k = n -> [(a/2)^(1/n), 1]
    assert exact_interval(0, 5) == pytest.approx((0.0, 1 - 0.025 ** (1 / 5)))
    assert exact_interval(5, 5) == pytest.approx((0.025 ** (1 / 5), 1.0))
    # 7 of 10: 0.3475 - 0.9333 (Clopper & Pearson's tables; e.g. R binom.test(7, 10))
    assert exact_interval(7, 10) == pytest.approx((0.34755, 0.93326), abs=1e-5)
    assert exact_interval(20, 40) == pytest.approx((0.33802, 0.66198), abs=1e-5)  # R: 0.3380178 0.6619822


def test_every_label_gives_the_real_metrics():
    """Labelling every image with its truth: each estimate is the real metric, as compute_metrics reports it."""
    preds = synthetic()
    thr = float(np.sort(preds.confidence[preds.truth < 0])[10])  # an unknown image's value: >= accepts it
    est = estimate(preds, thr, truth_labels(preds, range(len(preds))))
    probs = np.full((len(preds), 3), 0.0)
    probs[np.arange(len(preds)), preds.pred] = preds.confidence  # max softmax = confidence, argmax = pred
    rest = (1 - preds.confidence) / 2
    for k in range(3):
        probs[:, k] = np.where(preds.pred == k, probs[:, k], rest)
    real = compute_metrics(probs, preds.truth, threshold=thr)
    assert est["known_accuracy"]["value"] == pytest.approx(real["gacc"])
    assert est["unknown_rejected"]["value"] == pytest.approx(real["unknown_rejection"])
    assert est["auroc"]["value"] == pytest.approx(real["auroc"])
    assert true_values(preds, thr) == pytest.approx({"known_accuracy": real["gacc"], "auroc": real["auroc"],
                                                     "unknown_rejected": real["unknown_rejection"]})
    for k in KEYS:
        e = est[k]
        assert 0 <= e["low"] <= e["value"] <= e["high"] <= 1 and e["n"] > 0


def test_json_shape_and_values_from_a_random_sample():
    preds = synthetic()
    idx = np.random.default_rng(3).permutation(len(preds))[:40]
    est = estimate(preds, 0.6, truth_labels(preds, idx))
    back = json.loads(json.dumps(est))  # plain JSON types only
    assert set(KEYS) <= set(back) and "threshold_youden" in back and "basis" in back
    t = preds.truth[idx]
    known = t >= 0
    k = int((preds.pred[idx][known] == t[known]).sum())
    assert back["known_accuracy"]["value"] == pytest.approx(k / known.sum())
    assert (back["known_accuracy"]["low"], back["known_accuracy"]["high"]) == pytest.approx(
        exact_interval(k, int(known.sum())))
    r = int((preds.confidence[idx][~known] < 0.6).sum())
    assert back["unknown_rejected"]["value"] == pytest.approx(r / (~known).sum())
    assert back["unknown_rejected"]["n"] == int((~known).sum()) and back["known_accuracy"]["n"] == int(known.sum())
    a = back["auroc"]
    assert a["value"] == pytest.approx(roc_auc_score(known, preds.confidence[idx]))
    assert a["low"] < a["value"] < a["high"] and a["n"] == 40
    assert estimate(preds, 0.6, truth_labels(preds, idx))["auroc"] == est["auroc"]  # seeded: the same interval
    assert back["basis"] == "The 40 labels of the random sample."


def test_too_few_labels_say_the_rule_and_the_counts():
    preds = synthetic()
    known = [i for i in range(len(preds)) if preds.truth[i] >= 0]
    unknown = [i for i in range(len(preds)) if preds.truth[i] < 0]
    est = estimate(preds, 0.6, truth_labels(preds, known[:MIN_LABELS] + unknown[:MIN_LABELS - 1]))
    assert est["known_accuracy"]["value"] is not None  # exactly MIN_LABELS: enough
    u = est["unknown_rejected"]
    assert u["value"] is None and u["n"] == MIN_LABELS - 1
    assert f"at least {MIN_LABELS} labels 'unknown'" in u["reason"] and f"are {MIN_LABELS - 1} such" in u["reason"]
    a = est["auroc"]
    assert a["value"] is None and a["n"] == 2 * MIN_LABELS - 1
    assert f"are {MIN_LABELS} labels of a prior class and {MIN_LABELS - 1} 'unknown'" in a["reason"]
    assert est["threshold_youden"] is None and "Too few" in est["threshold_youden_reason"]
    flip = estimate(preds, 0.6, truth_labels(preds, known[:MIN_LABELS - 1] + unknown[:MIN_LABELS]))
    assert flip["unknown_rejected"]["value"] is not None and flip["known_accuracy"]["value"] is None
    assert flip["auroc"]["value"] is None
    both = estimate(preds, 0.6, truth_labels(preds, known[:MIN_LABELS] + unknown[:MIN_LABELS]))
    assert both["auroc"]["value"] is not None and both["threshold_youden"] is not None
    none = estimate(preds, 0.6, {})
    assert all(none[k]["value"] is None and none[k]["n"] == 0 for k in KEYS)
    assert none["basis"] == "The random sample, which has no labels yet."


def test_random_only_leaves_informative_labels_out():
    preds = synthetic()
    rnd = list(range(0, 120, 3))
    labels = truth_labels(preds, rnd)
    base = estimate(preds, 0.6, labels)
    # informative labels, all of them of images the run gets wrong: they must not move a random-only estimate
    wrong = [i for i in range(len(preds)) if i not in rnd and preds.truth[i] >= 0 and preds.pred[i] != preds.truth[i]]
    more = {**labels, **truth_labels(preds, wrong, source="informative")}
    est = estimate(preds, 0.6, more)
    for k in KEYS:
        assert est[k] == base[k]
    assert est["basis"].startswith(f"The {len(rnd)} labels of the random sample ({len(wrong)} labels given to "
                                   "images chosen as informative or by hand are left out")
    assert est["n_labels"] == len(rnd) + len(wrong) and est["n_used"] == len(rnd)
    weighted = estimate(preds, 0.6, more, random_only=False)
    assert weighted["known_accuracy"]["value"] < base["known_accuracy"]["value"]
    assert weighted["basis"].startswith(f"All {len(rnd) + len(wrong)} labels, weighted by inverse probability")


def test_inverse_probability_weights_by_hand():
    """100 known images: 10 chosen by hand, all wrong; of the other 90, a random 20, all right. Each random label
    stands for 90 / 20 images: accuracy (0 * 10 + 1 * 90) / 100 = 0.9, where the unweighted share is 20 / 30."""
    n = 100
    truth = np.zeros(n, dtype=int)
    pred = np.zeros(n, dtype=int)
    pred[:10] = 1
    conf = np.linspace(0.1, 0.9, n)
    preds = Predictions(paths=[f"/d/{i}.png" for i in range(n)], true_class=["a"] * n, pred=pred, confidence=conf,
                        entropy=np.zeros(n), classes=["a", "b"], truth=truth, scores={"msp": conf})
    labels = {**truth_labels(preds, range(10), source="other"), **truth_labels(preds, range(50, 70))}
    est = estimate(preds, 0.5, labels, random_only=False)
    assert est["known_accuracy"]["value"] == pytest.approx(0.9)
    assert est["known_accuracy"]["low"] <= 0.9 <= est["known_accuracy"]["high"]
    assert "each of the 20 of the random sample stands for 4.5 of the 90 other images" in est["basis"]
    assert est["unknown_rejected"]["value"] is None  # no unknown labels


def test_youden_threshold_on_a_synthetic_case():
    # known 0.9, 0.8, 0.7, 0.4; unknown 0.5, 0.3, 0.2: the best cut accepts >= 0.7 (J = 3/4 - 0 = 0.75, against
    # 1 - 1/3 for >= 0.4), placed halfway to the next lower labelled value, 0.5
    values = [0.9, 0.8, 0.7, 0.4, 0.5, 0.3, 0.2]
    known = [True, True, True, True, False, False, False]
    assert youden_threshold(values, known) == pytest.approx(0.6)
    # a tie (>= 0.9 and >= 0.6 both J = 0.5): the highest cut, halfway down to 0.7
    assert youden_threshold([0.9, 0.6, 0.7, 0.3], [True, True, False, False]) == pytest.approx(0.8)
    # separable: between the lowest known and the highest unknown; every labelled image judged right
    v = np.array([0.95, 0.85, 0.61, 0.59, 0.2])
    k = np.array([True, True, True, False, False])
    t = youden_threshold(v, k)
    assert t == pytest.approx(0.60) and ((v >= t) == k).all()
    with pytest.raises(ValueError):
        youden_threshold([0.5, 0.6], [True, True])


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("estimate")
    data = make_folder(root / "data", classes=("red", "green", "blue", "yellow"), per_class=6, seed=1)
    run = root / "run"
    assert main(["train", str(data), "--prior", ",".join(PRIOR), *TINY, "--batch-size", "8", "--epochs", "1",
                 "--lr-prompt", "0.05", "--lr-visual", "0.05", "--out", str(run)]) == 0
    return {"root": root, "data": data, "run": run}


def write_labels(path: Path, rows) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return path


def test_cli_estimate_json_and_text(tiny_run, tmp_path, capsys):
    preds = read_predictions(tiny_run["run"])
    rows = [(Path(p).relative_to(tiny_run["data"]).as_posix(), t if t in PRIOR else "unknown")
            for p, t in zip(preds.paths, preds.true_class)]
    f = write_labels(tmp_path / "labels.csv", rows)
    assert main(["estimate", "--run", str(tiny_run["run"]), "--labels", str(f), "--json"]) == 0
    out = capsys.readouterr().out
    got = json.loads(out)
    thr = json.loads((tiny_run["run"] / "metrics.json").read_text())["after"]["threshold"]
    real = true_values(preds, thr)
    for k in KEYS:  # every image labelled: the estimates are the real values
        assert got[k]["value"] == pytest.approx(real[k]) and got[k]["n"] > 0
    assert got["threshold"] == pytest.approx(thr)
    assert isinstance(got["threshold_youden"], float) or "chance" in got["threshold_youden_reason"]  # (random init)
    assert "counted as a uniformly random sample" in got["basis"]
    assert str(tiny_run["root"]) not in out and str(tmp_path) not in out
    assert main(["estimate", "--run", str(tiny_run["run"]), "--labels", str(f)]) == 0
    text = capsys.readouterr().out
    assert "uniformly random sample" in text and "95 % interval" in text and "labels" in text
    assert str(tiny_run["root"]) not in text
    # too few: two labels, said in words, null values in JSON
    f2 = write_labels(tmp_path / "few.csv", rows[:1] + rows[-1:])
    assert main(["estimate", "--run", str(tiny_run["run"]), "--labels", str(f2), "--json"]) == 0
    few = json.loads(capsys.readouterr().out)
    assert few["auroc"]["value"] is None and "Too few labels" in few["auroc"]["reason"]


@pytest.mark.parametrize("rows,words", [
    ([("red/img_0.png", "purple")], "row 2: the label 'purple' is neither a prior class"),
    ([("red/img_0.png", "red"), ("nowhere/x.png", "red")], "row 3: 'nowhere/x.png' is not one of this run's images"),
])
def test_cli_a_bad_csv_is_a_clear_message_and_exit_2(tiny_run, tmp_path, capsys, rows, words):
    f = write_labels(tmp_path / "bad.csv", rows)
    assert main(["estimate", "--run", str(tiny_run["run"]), "--labels", str(f)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and str(tiny_run["root"]) not in err
    f.write_text("file,class\nred/img_0.png,red\n")
    assert main(["estimate", "--run", str(tiny_run["run"]), "--labels", str(f)]) == 2
    assert "its first line must be 'path,label'" in capsys.readouterr().err
    assert main(["estimate", "--run", str(tmp_path), "--labels", str(f)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_estimates_are_finite_numbers_or_none():
    preds = synthetic(seed=5)
    for n in (0, 3, 12, 40, 200):
        est = estimate(preds, 0.6, truth_labels(preds, range(n)))
        for k in KEYS:
            v = est[k]["value"]
            assert v is None or (math.isfinite(v) and 0 <= v <= 1)


def test_weighted_estimates_need_a_random_sample_and_a_useful_cut():
    preds = synthetic()
    known = [i for i in range(len(preds)) if preds.truth[i] >= 0]
    unknown = [i for i in range(len(preds)) if preds.truth[i] < 0]
    labels = {**truth_labels(preds, known[:10] + unknown[:10], source="informative"),
              **truth_labels(preds, known[10:13])}
    est = estimate(preds, 0.6, labels, random_only=False)
    for k in KEYS:
        assert est[k]["value"] is None
        assert ("there are 3 labels of the random sample, and with fewer than 5 the images nobody chose are not "
                "represented") in est[k]["reason"]
    # labels that rank every unknown above every known: no cut beats chance, said instead of a threshold
    flipped = {preds.paths[i]: ("unknown" if preds.truth[i] >= 0 else "a") for i in known[:6] + unknown[:6]}
    est = estimate(preds, 0.6, flipped)
    assert est["auroc"]["value"] < 0.5
    assert est["threshold_youden"] is None and "better than chance" in est["threshold_youden_reason"]
    assert youden_threshold([0.2, 0.3, 0.8, 0.9], [True, True, False, False]) > 0.9  # accept nothing
