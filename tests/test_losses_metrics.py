import math

import numpy as np
import pytest
import torch

from ueo_core.data import NO_TRUTH, UNKNOWN
from ueo_core.methods import confidence_weights, get_method, list_methods
from helpers import loss_of
from ueo_core.metrics import (compute_metrics, confidence_histogram, default_threshold, fpr_at_tpr,
                              open_confusion, predictions_table)

P = torch.tensor([[0.7, 0.2, 0.1],
                  [0.1, 0.8, 0.1],
                  [0.3, 0.3, 0.4],
                  [0.5, 0.25, 0.25]], dtype=torch.float64)
W = torch.tensor([0.9, 0.6, 0.3, 0.5], dtype=torch.float64)


def H(p):  # hand-written entropy with the official code's 1e-5 inside the log
    return -sum(x * math.log(x + 1e-5) for x in p)


def rows():
    return [list(map(float, r)) for r in P]


def test_registry_has_every_method():
    assert list_methods()[:5] == ["zero_shot", "entropy", "im", "ueo", "oracle"]
    assert not get_method("zero_shot").trains
    with pytest.raises(ValueError, match="Unknown method"):
        get_method("nope")


def test_entropy_minimisation_loss_by_hand():
    loss, _ = loss_of("entropy", P)
    assert loss.item() == pytest.approx(sum(H(r) for r in rows()) / 4, abs=1e-12)


def test_information_maximisation_loss_by_hand():
    mean = [sum(r[k] for r in rows()) / 4 for k in range(3)]
    expected = sum(H(r) for r in rows()) / 4 - 0.7 * H(mean)
    loss, stats = loss_of("im", P, trade=0.7)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert float(stats["loss_marginal"]) == pytest.approx(H(mean), abs=1e-12)


def test_ueo_loss_by_hand():
    w = list(map(float, W))
    cond = sum(wi * H(r) for wi, r in zip(w, rows())) / sum(w)
    inv = [1 / wi for wi in w]
    marg = [sum(iv * r[k] for iv, r in zip(inv, rows())) / sum(inv) for k in range(3)]
    loss, stats = loss_of("ueo", P, weights=W, trade=1.0)
    assert loss.item() == pytest.approx(cond - H(marg), abs=1e-12)
    assert float(stats["loss_cond"]) == pytest.approx(cond, abs=1e-12)
    # unconfident images dominate the marginal: it differs from the plain mean
    assert marg != pytest.approx([sum(r[k] for r in rows()) / 4 for k in range(3)])


def test_oracle_uses_true_known_mask_plus_official_epsilon():
    known = torch.tensor([1, 1, 0, 0])
    w = [1.001, 1.001, 0.001, 0.001]
    cond = sum(wi * H(r) for wi, r in zip(w, rows())) / sum(w)
    inv = [1 / wi for wi in w]
    marg = [sum(iv * r[k] for iv, r in zip(inv, rows())) / sum(inv) for k in range(3)]
    loss, _ = loss_of("oracle", P, known=known)
    assert loss.item() == pytest.approx(cond - H(marg), abs=1e-9)


@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_confidence_weights_by_hand(temperature):
    cos = torch.tensor([[0.30, 0.25, 0.20], [0.21, 0.22, 0.23]])
    w = confidence_weights(cos, temperature)
    for i, row in enumerate(cos.tolist()):
        z = [math.exp(temperature * c) for c in row]
        assert w[i].item() == pytest.approx(max(z) / sum(z), rel=1e-5)
    if temperature == 1.0:  # the official code's unscaled cosines: weights are near-uniform, about 1/K
        assert (w - 1 / 3).abs().max() < 0.02
    else:
        assert w[0] > 0.9


# ---------------------------------------------------------------- metrics
def test_metrics_against_direct_computation():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3) * 0.5, size=200)
    truth = rng.integers(-1, 3, size=200)  # -1 = unknown
    m = compute_metrics(probs, truth, threshold=0.6)
    pred, conf = probs.argmax(1), probs.max(1)
    known = truth >= 0
    assert m["gacc"] == pytest.approx((pred[known] == truth[known]).mean())
    per_class = [(pred[truth == k] == k).mean() for k in range(3)]
    assert m["pacc"] == pytest.approx(np.mean(per_class))
    # AUROC as the probability that a random known image is more confident than a random unknown one
    ck, cu = conf[known], conf[~known]
    pairs = (ck[:, None] > cu[None, :]).mean() + 0.5 * (ck[:, None] == cu[None, :]).mean()
    assert m["auroc"] == pytest.approx(pairs)
    # FPR at 95% TPR: the smallest threshold keeping >= 95% of known images, the share of unknowns above it
    t = np.sort(ck)[::-1][int(np.ceil(0.95 * len(ck))) - 1]
    assert m["fpr95"] == pytest.approx((cu >= t).mean())
    open_pred = np.where(conf >= 0.6, pred, -1)
    acc_k = (open_pred[known] == truth[known]).mean()
    acc_u = (open_pred[~known] == -1).mean()
    assert m["h_score_image"] == pytest.approx(2 * acc_k * acc_u / (acc_k + acc_u))
    acc_c = np.mean([(open_pred[truth == k] == k).mean() for k in range(3)])  # class-averaged (the literature's)
    assert m["h_score"] == pytest.approx(2 * acc_c * acc_u / (acc_c + acc_u))


def test_h_score_averages_known_accuracy_over_classes():
    """Unbalanced known classes: a big class all right, a small one all wrong. Image-level known accuracy is
    9/10, the class average 1/2; with every unknown rejected, H = 2*0.5*1/1.5 vs 2*0.9/1.9."""
    from ueo_core.metrics import h_score
    truth = np.array([0] * 9 + [1] + [-1] * 4)
    pred = np.array([0] * 9 + [0] + [0] * 4)
    conf = np.array([0.9] * 10 + [0.1] * 4)
    h = h_score(pred, conf, truth, 0.5)
    assert h["known_acc_open"] == pytest.approx(0.5) and h["known_acc_open_image"] == pytest.approx(0.9)
    assert h["h_score"] == pytest.approx(2 * 0.5 / 1.5) and h["h_score_image"] == pytest.approx(1.8 / 1.9)


def test_fpr95_simple_case():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    truth = np.array([0, 0, UNKNOWN, 0, UNKNOWN])
    # accepting all known needs threshold 0.6, which accepts one of two unknowns
    assert fpr_at_tpr(conf, truth) == pytest.approx(0.5)


def test_default_threshold_splits_two_groups():
    conf = np.r_[np.full(10, 0.2), np.full(10, 0.9)]
    assert default_threshold(conf) == pytest.approx(0.55)
    assert default_threshold(np.full(5, 0.4)) == pytest.approx(0.4)


def test_metrics_without_truth_and_closed_set():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = compute_metrics(probs, None)
    assert "gacc" not in m and m["n"] == 3
    m = compute_metrics(probs, np.array([0, 1, 1]))
    assert m["gacc"] == pytest.approx(2 / 3) and m["auroc"] is not None and math.isnan(m["auroc"])
    m = compute_metrics(probs, np.array([NO_TRUTH] * 3))
    assert "gacc" not in m


def test_open_confusion_and_histogram():
    probs = np.array([[0.9, 0.1], [0.45, 0.55], [0.8, 0.2], [0.3, 0.7]])
    truth = np.array([0, UNKNOWN, UNKNOWN, 1])
    cm = open_confusion(probs.argmax(1), probs.max(1), truth, 2, threshold=0.6)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    h = confidence_histogram(probs.max(1), truth, bins=10)
    assert sum(h["all"]) == 4 and sum(h["known"]) == 2 and sum(h["unknown"]) == 2
    assert h["all"][5] == 1 and h["all"][9] == 1  # 0.55 and 0.9


def test_predictions_table():
    probs = np.array([[0.9, 0.1], [0.4, 0.6]])
    rows = predictions_table(["a.png", "b.png"], probs, ["cat", "dog"], ["cat", None], threshold=0.7)
    assert rows[0]["predicted_class"] == "cat" and rows[0]["predicted_known"] is True
    assert rows[1]["predicted_class"] == "dog" and rows[1]["predicted_known"] is False
    assert rows[1]["entropy"] == pytest.approx(-(0.4 * math.log(0.4) + 0.6 * math.log(0.6)), abs=1e-5)


def test_collapse_rule_on_predicted_class_shares():
    from ueo_core.metrics import collapse_stats

    def probs(counts):
        rows = [k for k, n in enumerate(counts) for _ in range(n)]
        p = np.full((len(rows), len(counts)), 0.01)
        p[np.arange(len(rows)), rows] = 1.0
        return p
    c = collapse_stats(probs([95, 1, 1, 1, 1, 1]))
    assert c["collapsed"] and c["top_share"] == pytest.approx(0.95) and sum(c["class_shares"]) == pytest.approx(1)
    assert collapse_stats(probs([50, 50, 0, 0, 0, 0]))["collapsed"]          # two classes of six: 0.69 < 0.90
    assert not collapse_stats(probs([70, 6, 6, 6, 6, 6]))["collapsed"]       # unbalanced, not collapsed: 1.09
    assert not collapse_stats(probs([3, 9, 9, 51, 12, 16]))["collapsed"]     # Shapes photo zero-shot
    assert not collapse_stats(probs([10] * 6))["collapsed"]


def test_run_verdict_is_computed_from_the_numbers():
    from ueo_core.analysis import run_verdict
    before = {"gacc": 0.7, "auroc": 0.8}
    level, text = run_verdict(before, {"gacc": 0.2, "auroc": 0.4, "collapsed": True, "top_share": 0.95,
                                       "class_shares": [0.01, 0.95, 0.04]}, ["a", "b", "c"], 12)
    assert level == "warning" and "95%" in text and "'b'" in text and "IM and UEO prevents it" not in text
    level, text = run_verdict(before, {"gacc": 0.2, "auroc": 0.4, "collapsed": True, "top_share": 0.95,
                                       "class_shares": [0.01, 0.95, 0.04]}, ["a", "b", "c"], 12, "entropy")
    assert "the marginal-entropy term of IM and UEO prevents it" in text
    level, text = run_verdict(before, {"gacc": 0.2, "auroc": 0.4, "collapsed": True, "top_share": 0.95,
                                       "class_shares": [0.01, 0.95, 0.04]}, ["a", "b", "c"], 12, "ueo")
    assert "prevents it" not in text and "did not hold them" in text and "near chance" in text
    level, text = run_verdict(before, {"gacc": 0.6, "auroc": 0.85, "collapsed": False}, ["a", "b"], 5)
    assert level == "warning" and "GACC -10.0" in text and "AUROC" not in text
    level, text = run_verdict(before, {"gacc": 0.8, "auroc": 0.9, "collapsed": False}, ["a", "b"], 5)
    assert level == "success" and "GACC +10.0" in text and "AUROC +10.0" in text
    # the gain is the difference of the figures the page shows (83.7 -> 84.5: +0.8), not of the unrounded rates
    level, text = run_verdict({"gacc": 0.9, "auroc": 0.8366}, {"gacc": 0.9, "auroc": 0.8454, "collapsed": False},
                              ["a", "b"], 5)
    assert "AUROC +0.8" in text and "GACC +0.0" in text
    # near chance (the 40 real photos of issue 11: 3 known classes, GACC 43 %, AUROC 53 %): said plainly
    level, text = run_verdict({"gacc": 0.43, "auroc": 0.53}, {"gacc": 0.43, "auroc": 0.53}, ["dog", "elephant",
                                                                                          "horse"], 20)
    assert level == "warning" and "near chance" in text and "AUROC 53.0 where guessing gives 50" in text
    assert "known-class accuracy 43.0% where guessing among 3 classes gives 33%" in text


def test_chance_note_thresholds_and_the_builtin_model_warning():
    from ueo_core.analysis import builtin_model_warning, chance_note
    assert chance_note({"gacc": 0.51, "auroc": 0.61}, 3) is None            # above both lines
    assert "AUROC 59.0" in chance_note({"gacc": 0.9, "auroc": 0.59}, 3)
    assert "known-class accuracy 49.0%" in chance_note({"gacc": 0.49, "auroc": 0.9}, 3)  # 1.5 / 3 = 50 %
    assert chance_note({"gacc": None, "auroc": None}, 3) is None            # no truth: nothing to say
    w = builtin_model_warning("ueo-shapes", "builtin", "/data/pets", ["dog", "circle", "horse"])
    assert "trained only on drawn shapes" in w and "'dog', 'horse'" in w and "'circle'" not in w
    assert builtin_model_warning("ueo-shapes", "builtin", "shapes:photo", ["circle"]) is None
    assert builtin_model_warning("ViT-B-32", "openai", "/data/pets", ["dog"]) is None


def test_compare_summary_and_shares_note_follow_the_numbers():
    from ueo_core.analysis import compare_summary, shares_note
    rows = [{"method": "entropy", "gacc": 0.19, "auroc": 0.44, "collapsed": True, "gacc (zero-shot)": 0.74,
             "auroc (zero-shot)": 0.84},
            {"method": "im", "gacc": 0.875, "auroc": 0.862, "collapsed": False, "gacc (zero-shot)": 0.74,
             "auroc (zero-shot)": 0.84},
            {"method": "ueo", "gacc": 0.858, "auroc": 0.869, "collapsed": False, "gacc (zero-shot)": 0.74,
             "auroc (zero-shot)": 0.84}]
    text = compare_summary(rows)
    assert text.startswith("entropy collapsed") and "ueo separated the unknowns best (AUROC 86.9" in text
    assert "im was most accurate on known classes (GACC 87.5" in text
    rows[2]["auroc"] = 0.5
    assert "im separated the unknowns best" in compare_summary(rows)
    epochs = [{"epoch": 0, "class_shares": [0.5, 0.3, 0.2], "collapsed": False},
              {"epoch": 3, "class_shares": [0.05, 0.9, 0.05], "collapsed": True}]
    note = shares_note(epochs, ["a", "b", "c"])
    assert "'a' with 50%" in note and "epoch 3: 'b' with 90%" in note and "collapsed" in note


def test_inspect_numbers_follow_the_threshold():
    from ueo_core.analysis import Predictions, rejection_summary
    p = Predictions(paths=["a", "b", "c", "d"], true_class=["x", "x", "y", "z"], pred=np.array([0, 0, 1, 0]),
                    confidence=np.array([0.9, 0.4, 0.8, 0.3]), entropy=np.zeros(4), classes=["x", "y"],
                    truth=np.array([0, 0, 1, -1]))
    assert p.per_class_accuracy() == {"x": 1.0, "y": 1.0}            # closed set
    assert p.per_class_accuracy(0.5) == {"x": 0.5, "y": 1.0}         # b is rejected at 0.5: not right
    rej = list(p.at_threshold(0.5)["rejected"])
    assert [p.paths[i] for i in rej] == ["b", "d"] and p.rejection_marks(rej) == [False, True]
    assert rejection_summary(p.rejection_marks(rej)).startswith("1 of 2 rejections are right")
    rows = p.csv_at_threshold(0.85).splitlines()
    assert rows[0].endswith("threshold,predicted_known") and rows[1].endswith("0.850000,True")
    assert rows[3].endswith("0.850000,False")


def test_default_threshold_is_the_2_means_midpoint():
    """90 confident images near 0.9 and 10 unsure ones near 0.2: the 2-means centres are ~0.9 and ~0.2, so the
    threshold is their midpoint ~0.55 (a median or mean would sit inside the big group and reject half of it)."""
    from ueo_core.metrics import default_threshold
    rng = np.random.default_rng(0)
    conf = np.concatenate([0.9 + 0.02 * rng.standard_normal(90), 0.2 + 0.02 * rng.standard_normal(10)])
    hi, lo = conf[:90].mean(), conf[90:].mean()
    assert default_threshold(conf) == pytest.approx((hi + lo) / 2, abs=1e-6)


def test_each_method_declares_exactly_the_options_its_objective_reads():
    """METHODS[m].options is what the app offers for a method: an option declared there must change the loss, one
    not declared must not (so the Adapt form never shows a knob that does nothing, nor hides one that matters)."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(8, 4, generator=g) * 3, dim=1)
    feats, text = F.normalize(torch.randn(8, 5, generator=g), dim=1), F.normalize(torch.randn(4, 5, generator=g), dim=1)
    base = dict(weights=torch.rand(8, generator=g) * 0.5 + 0.3, known=(torch.arange(8) % 2).float(),
                features=feats, text=text, labels=torch.arange(8) % 4, scale=10.0)
    for name in ("zero_shot", "entropy", "im", "ueo", "oracle", "clipood", "zero", "tda"):  # (new methods: their own)
        m = get_method(name)
        if not m.trains:  # a training-free method offers only what changes its inference (ZERO: its views)
            from ueo_core.config import RunConfig
            assert m.option_names() == (("zero_views",) if name == "zero" else ())
            if name == "zero":
                assert m.passes(RunConfig(method=name, options={"zero_views": 8})) != m.passes(
                    RunConfig(method=name, options={"zero_views": 16}))
            continue
        for option, a, b in (("trade", 1.0, 2.5), ("margin", 0.3, 0.8)):
            la = float(loss_of(name, probs, **base, **{option: a})[0])
            lb = float(loss_of(name, probs, **base, **{option: b})[0])
            assert (la != pytest.approx(lb, abs=1e-6)) == (option in m.option_names()), (name, option, la, lb)
        # the temperature only sets UEO's weights; CLIPood's other options act outside the loss (AdamW, the moving
        # average, the steps per epoch: tests/test_clipood.py)
        assert ("weight_temperature" in m.option_names()) == m.needs_weights, name
