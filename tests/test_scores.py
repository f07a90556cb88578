"""Each known/unknown score against its formula written out by hand, and its detection figures against direct
computation (AUROC by counting pairs, AUPR by walking the ranking); a real run's metrics.json carries them all."""
import json
import math

import numpy as np
import pytest

from ueo_core.scores import SCORES, all_scores, detection, score as score_of, score_table, softmax_of

COS = np.array([[0.30, 0.20, 0.10], [0.25, 0.24, 0.23], [0.05, 0.40, 0.10], [0.12, 0.11, 0.30],
                [0.20, 0.21, 0.19]])
TRUTH = np.array([0, -1, 1, 2, -1])


def score(name, cos, scale, **kw):
    """A score of the usual head: the softmax is that of the scaled cosines."""
    return score_of(name, cos, softmax_of(cos, scale), scale, **kw)


def softmax_row(row, t):
    e = [math.exp(v * t) for v in row]
    return [x / sum(e) for x in e]


@pytest.mark.parametrize("scale", [1.0, 15.0])
def test_each_score_is_its_formula(scale):
    for i, row in enumerate(COS):
        p = softmax_row(row, scale)
        assert score("msp", COS, scale)[i] == pytest.approx(max(p), abs=1e-12)
        assert score("maxlogit", COS, scale)[i] == pytest.approx(scale * max(row), abs=1e-12)
        assert score("energy", COS, scale)[i] == pytest.approx(math.log(sum(math.exp(scale * v) for v in row)),
                                                               abs=1e-9)
        assert score("mcm", COS, scale)[i] == pytest.approx(max(softmax_row(row, 1.0)), abs=1e-12)  # tau = 1
        assert score("mcm", COS, scale, mcm_tau=0.05)[i] == pytest.approx(max(softmax_row(row, 20.0)), abs=1e-9)
        gen = sum(q ** 0.1 * (1 - q) ** 0.1 for q in p)  # M = 100 > K: every class
        assert score("gen", COS, scale)[i] == pytest.approx(-gen, abs=1e-12)


def test_gen_keeps_only_the_m_largest_probabilities(monkeypatch):
    import ueo_core.scores as scores
    monkeypatch.setattr(scores, "GEN_M", 2)
    p = softmax_row(COS[1], 15.0)
    top = sorted(p)[-2:]
    assert score("gen", COS, 15.0)[1] == pytest.approx(-sum(q ** 0.1 * (1 - q) ** 0.1 for q in top), abs=1e-12)


def test_a_confident_image_scores_higher_on_every_score():
    sure, unsure = np.array([[0.4, 0.0, 0.0]]), np.array([[0.2, 0.2, 0.2]])
    for name in SCORES:
        assert score(name, sure, 15.0)[0] > score(name, unsure, 15.0)[0], name


def aupr(values, positive):
    """Average precision by walking the ranking (ties broken by order, none here)."""
    order = np.argsort(-values, kind="stable")
    hits, total = 0, positive.sum()
    ap = 0.0
    for k, i in enumerate(order, start=1):
        if positive[i]:
            hits += 1
            ap += hits / k / total
    return ap


def test_detection_against_direct_computation():
    rng = np.random.default_rng(0)
    values = rng.normal(size=40)
    truth = np.where(rng.random(40) < 0.6, 1, -1)
    values[truth >= 0] += 0.8
    known = truth >= 0
    pairs = [(a > b) + 0.5 * (a == b) for a in values[known] for b in values[~known]]
    d = detection(values, truth)
    assert d["auroc"] == pytest.approx(np.mean(pairs), abs=1e-12)
    assert d["aupr_in"] == pytest.approx(aupr(values, known), abs=1e-12)
    assert d["aupr_out"] == pytest.approx(aupr(-values, ~known), abs=1e-12)
    # FPR95: the share of unknowns above the highest threshold that still accepts 95 % of the knowns
    thr = np.sort(values[known])[::-1][math.ceil(0.95 * known.sum()) - 1]
    assert d["fpr95"] == pytest.approx(np.mean(values[~known] >= thr), abs=1e-12)
    assert all(math.isnan(v) for v in detection(values, np.ones(40, int)).values())


def test_score_table_has_every_score_and_nothing_without_truth():
    table = score_table(all_scores(COS, softmax_of(COS, 15.0), 15.0), TRUTH)
    assert set(table) == set(SCORES) and all(set(d) == {"auroc", "fpr95", "aupr_in", "aupr_out"}
                                             for d in table.values())
    assert score_table(all_scores(COS, softmax_of(COS, 15.0), 15.0), None) == {}


def test_a_run_reports_every_score_and_msp_is_the_default_auroc(folder, tmp_path):
    from ueo_core.config import RunConfig
    from ueo_core.train import Trainer
    cfg = RunConfig(data=str(folder), prior=["red", "green", "blue"], model="ueo-tiny", pretrained=None, epochs=1,
                    batch_size=8, lr_prompt=0.05, lr_visual=0.05, seed=7, run_dir=str(tmp_path / "run"),
                    mcm_temperature=0.5)
    tr = Trainer(cfg)
    r = tr.run()
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for when in ("before", "after"):
        assert set(m[when]["scores"]) == set(SCORES)
        assert m[when]["scores"]["msp"]["auroc"] == pytest.approx(m[when]["auroc"], abs=1e-12)
        assert m[when]["scores"]["msp"]["fpr95"] == pytest.approx(m[when]["fpr95"], abs=1e-12)
    # the MCM figures are those of the run's own tau, on its final cosines
    cos = tr.latest.cos.numpy()
    assert r.metrics["scores"]["mcm"] == pytest.approx(detection(score("mcm", cos, 1.0, mcm_tau=0.5), tr.truth))


def test_msp_and_gen_read_the_methods_own_softmax():
    """A method whose probabilities are not CLIP's softmax (ZERO's votes): MSP and GEN read them, the logit scores
    the cosines."""
    votes = np.array([[0.6, 0.4, 0.0], [1.0, 0.0, 0.0]])
    assert list(score_of("msp", COS[:2], votes, 15.0)) == [0.6, 1.0]
    assert score_of("gen", COS[:2], votes, 15.0)[1] == pytest.approx(0.0, abs=1e-12)  # a unanimous vote
    assert list(score_of("maxlogit", COS[:2], votes, 15.0)) == pytest.approx([15 * 0.30, 15 * 0.25])


def test_compare_names_each_runs_best_score_and_what_it_would_change():
    from ueo_core.analysis import compare_summary
    from ueo_core.analysis.comparison import best_score
    scores = {"msp": {"auroc": 0.837}, "maxlogit": {"auroc": 0.991}, "energy": {"auroc": 0.993},
              "mcm": {"auroc": 0.828}, "gen": {"auroc": float("nan")}}
    assert best_score(scores) == ("energy", 0.993)
    assert best_score({"msp": {"auroc": 0.8}, "energy": {"auroc": 0.8}}) == ("msp", 0.8)  # a tie: the default
    assert best_score({}) == (None, None)
    rows = [{"method": "zero_shot", "gacc": 0.739, "auroc": 0.837, "best score": "energy", "auroc (best score)": 0.993},
            {"method": "tda", "gacc": 0.778, "auroc": 0.932, "best score": "energy", "auroc (best score)": 0.994}]
    assert "scored by Energy instead of MSP, zero_shot would separate them at AUROC 99.3 (MSP 83.7)" in \
        compare_summary(rows)
    rows[0]["auroc (best score)"] = 0.84  # under a point of gain: nothing to say
    rows[1]["auroc (best score)"] = 0.935
    assert "instead of MSP" not in compare_summary(rows)


def test_otsu_maximises_the_between_class_variance_and_splits_two_groups():
    from ueo_core.metrics import default_threshold, otsu_threshold
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0.3, 0.05, 300), rng.normal(0.8, 0.08, 120)])
    t = otsu_threshold(values)
    counts, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2

    def between(k):  # the two sides of edge k, by the bins' centres
        w0, w1 = counts[:k].sum(), counts[k:].sum()
        if not w0 or not w1:
            return -1.0
        mu0 = (counts[:k] * centres[:k]).sum() / w0
        mu1 = (counts[k:] * centres[k:]).sum() / w1
        return w0 * w1 * (mu0 - mu1) ** 2
    best = max(range(1, 256), key=between)
    assert t == pytest.approx(edges[best], abs=1e-12)
    assert 0.4 < t < 0.7 and default_threshold(values, split="otsu") == t
    assert 0.4 < default_threshold(values) < 0.7  # 2-means splits the same two groups
    with pytest.raises(ValueError, match="otsu"):
        default_threshold(values, split="median")
