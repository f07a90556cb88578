"""The lesson engine: its configs share every setting, its summary is computed from the numbers, it can stop."""
import numpy as np
from helpers import make_folder
from ueo_core.config import RunConfig
from ueo_core.data import load_data
from ueo_core.lesson import Lesson, lesson_configs, lesson_methods, lesson_summary
from ueo_core.methods import get_method

CLASSES = ["circle", "square", "star"]


def row(method, gacc=None, auroc=None, h=None, shares=(0.34, 0.33, 0.33), collapsed=False):
    after = {"gacc": gacc, "auroc": auroc, "h_score": h, "class_shares": list(shares), "collapsed": collapsed}
    return {"method": method, "run": f"r-{method}", "after": after, "before": {}, "classes": CLASSES, "seconds": 1.0}


def test_configs_share_every_setting_but_the_method():
    base = RunConfig(data="shapes:sketch", epochs=3, lr_prompt=0.05, lr_visual=0.05, seed=7, fast_mode="prompt_only",
                     options={"trade": 0.5})
    cfgs = lesson_configs(base, has_truth=True)
    assert [c.method for c in cfgs] == ["zero_shot", "entropy", "im", "ueo", "oracle"]
    assert lesson_methods(False) == ["zero_shot", "entropy", "im", "ueo"]  # no truth: no oracle
    for c in cfgs:
        d = c.to_dict()
        d.pop("method"), d.pop("fast_mode")
        ref = base.to_dict()
        ref.pop("method"), ref.pop("fast_mode")
        options = d.pop("options")  # the base's options, those the method declares (lambda: IM, UEO, the oracle)
        assert options == {k: v for k, v in ref.pop("options").items() if k in get_method(c.method).option_names()}
        assert d == ref
    assert [c.options.get("trade") for c in cfgs] == [None, None, 0.5, 0.5, 0.5]
    # the fast mode is kept for the methods that train and dropped for zero-shot (which trains nothing)
    assert [c.fast_mode for c in cfgs] == [None] + ["prompt_only"] * 4


def test_summary_names_the_collapse_and_the_best_separation():
    rows = [row("zero_shot", 0.70, 0.80, 0.60), row("entropy", 0.20, 0.45, 0.05, (0.96, 0.02, 0.02), True),
            row("im", 0.85, 0.84, 0.66, (0.40, 0.30, 0.30)), row("ueo", 0.84, 0.88, 0.70, (0.36, 0.34, 0.30)),
            row("oracle", 0.86, 0.90, 0.75)]
    s = lesson_summary(rows)
    assert "Entropy minimisation (TENT) collapsed: 96% of all images are now predicted as 'circle'" in s[1]
    assert "GACC went from 70.0 to 20.0 and AUROC from 80.0 to 45.0" in s[1]
    assert "IM and UEO kept the predictions spread (largest class 40%, 36%)" in s[2]
    assert s[3].startswith("Of the methods that use no labels, UEO separated known from unknown best: AUROC 88.0")
    assert "+8.0 points" in s[3]
    assert s[4].startswith("UEO is ahead of IM on AUROC and H-score, behind on GACC (UEO minus IM: AUROC +4.0, "
                           "H-score +4.0, GACC -1.0 points)")
    assert "oracle" in s[5] and "AUROC 90.0" in s[5]


def test_every_difference_in_the_summary_is_the_difference_of_the_figures_beside_it():
    """84.54 and 83.66 are shown as 84.5 and 83.7: the sentence says +0.8 (what a student computes from them),
    not the unrounded +0.9."""
    rows = [row("zero_shot", 0.6136, 0.7064, 0.50), row("im", 0.8366, 0.8366, 0.686),
            row("ueo", 0.8334, 0.8454, 0.701), row("tda", 0.6674, 0.8104, 0.57)]
    s = " ".join(lesson_summary(rows))
    assert "(UEO minus IM: AUROC +0.8, H-score +1.5, GACC -0.4 points)" in s
    assert "AUROC 84.5 (IM 83.7, TDA 81.0; zero-shot 70.6, so +13.9 points)" in s
    assert "raised GACC by 5.3 points (61.4 → 66.7) and raised AUROC by 10.4 points (70.6 → 81.0)" in s


def test_summary_says_so_when_im_wins():
    rows = [row("zero_shot", 0.70, 0.80, 0.60), row("entropy", 0.72, 0.70, 0.5),
            row("im", 0.85, 0.86, 0.70), row("ueo", 0.84, 0.83, 0.66)]
    s = " ".join(lesson_summary(rows))
    assert "IM separated known from unknown best: AUROC 86.0" in s
    assert "On this data IM is ahead of UEO on every score" in s
    assert "collapsed" not in s and "oracle" not in s


def test_summary_without_truth_compares_only_shares():
    rows = [row("zero_shot"), row("entropy", shares=(0.9, 0.05, 0.05), collapsed=True), row("im"), row("ueo")]
    s = lesson_summary(rows)
    assert s[0].startswith("Entropy minimisation (TENT) collapsed: 90%") and "GACC" not in s[0]
    assert "nobody can say which method is right" in s[-1]
    assert not any("AUROC" in x for x in s)


def test_a_cancelled_lesson_stops_before_the_next_run(tmp_path):
    folder = make_folder(tmp_path / "imgs", classes=("red", "green", "blue"), per_class=4)
    ims = load_data(str(folder), prior=["red", "green"])
    base = RunConfig(data=str(folder), prior=["red", "green"], model="ueo-tiny", pretrained=None, epochs=1,
                     batch_size=4)
    lesson = Lesson(base, ims, tmp_path / "runs")
    seen = []

    def listener(ev):
        seen.append(ev.kind)
        if ev.kind == "done":
            lesson.cancel()  # after the first run (zero-shot) finishes

    lesson.listeners.append(listener)
    out = lesson.run()
    assert list(out) == ["zero_shot"] and lesson.state == "cancelled"
    assert lesson.progress()[0] < 1.0 and seen.count("done") == 1


def test_cli_lesson_prints_the_table_and_the_summary(tmp_path, capsys):
    from ueo_core.cli import main
    folder = make_folder(tmp_path / "imgs", classes=("red", "green", "blue"), per_class=4)
    rc = main(["lesson", str(folder), "--prior", "red,green", "--model", "ueo-tiny", "--pretrained", "none",
               "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0
    for m in ("zero_shot", "entropy", "im", "ueo", "oracle"):
        assert any(line.startswith(m) for line in out.splitlines()), out
    assert "- Zero-shot, before any adaptation" in out and "lessons" in out
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 5


def test_the_extended_lesson_adds_the_fields_methods_and_says_what_each_did():
    assert lesson_methods(True, extended=True) == ["zero_shot", "entropy", "im", "ueo", "oracle", "zero", "tda",
                                                   "rosita", "stamp", "unient"]
    base = RunConfig(data="shapes:sketch", epochs=3, lr_prompt=0.05, lr_visual=0.05, seed=7)
    assert [c.method for c in lesson_configs(base, True, methods=["zero_shot", "ueo", "zero", "tda"])] == \
        ["zero_shot", "ueo", "zero", "tda"]
    rows = [row("zero_shot", 0.739, 0.837, 0.60), row("ueo", 0.80, 0.90, 0.70),
            row("zero", 0.483, 0.485, 0.2), row("tda", 0.778, 0.816, 0.65)]
    s = lesson_summary(rows)
    assert ("ZERO, which trains nothing, lowered GACC by 25.6 points (73.9 → 48.3) and lowered AUROC by 35.2 points "
            "(83.7 → 48.5) against zero-shot.") in s
    assert ("TDA, which trains nothing, raised GACC by 3.9 points (73.9 → 77.8) but lowered AUROC by 2.1 points "
            "(83.7 → 81.6) against zero-shot.") in s
    best = next(x for x in s if x.startswith("Of the methods that use no labels"))
    assert "UEO separated known from unknown best" in best and "TDA 81.6" in best and "ZERO 48.5" in best
    s = lesson_summary(rows + [row("unient", 0.744, 0.840, 0.65)])  # a method that adapts as the images stream by
    assert ("UniEnt, which adapts its image tower image by image as they stream by, raised GACC by 0.5 points "
            "(73.9 → 74.4) and raised AUROC by 0.3 points (83.7 → 84.0) against zero-shot.") in s


def test_cli_extended_lesson_runs_the_fields_methods_too(tmp_path, capsys):
    from ueo_core.cli import main
    folder = make_folder(tmp_path / "imgs", classes=("red", "green", "blue"), per_class=4)
    rc = main(["lesson", str(folder), "--prior", "red,green", "--model", "ueo-tiny", "--pretrained", "none",
               "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "runs"), "--extended"])
    out = capsys.readouterr().out
    assert rc == 0
    for m in ("zero", "tda", "rosita", "stamp", "unient"):
        assert any(line.startswith(m + " ") for line in out.splitlines()), out
    assert "- ZERO, which trains nothing," in out and "- TDA, which trains nothing," in out
    assert "- ROSITA, which adapts its image tower image by image as they stream by," in out
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 10


def count_tower_images(monkeypatch) -> list[int]:
    """Every batch through an open_clip image tower (evaluations, caches and training steps alike), by size."""
    import open_clip
    seen, real = [], open_clip.model.CLIP.encode_image

    def counted(self, image, *a, **k):
        seen.append(len(image))
        return real(self, image, *a, **k)
    monkeypatch.setattr(open_clip.model.CLIP, "encode_image", counted)
    return seen


def test_a_lesson_encodes_its_zero_shot_pass_once_and_explore_after_it_costs_no_pass(tmp_path, monkeypatch):
    """The feature store (issue 32): the five runs' zero-shot passes are one (same model, same photos), and the
    exploration of a run right after it reads the zero-shot and the adapted features the run stored."""
    from ueo_core import explore
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))  # an empty store
    folder = make_folder(tmp_path / "imgs", classes=("red", "green", "blue"), per_class=4)
    ims = load_data(str(folder), prior=["red", "green"])
    base = RunConfig(data=str(folder), prior=["red", "green"], model="ueo-tiny", pretrained=None, epochs=1,
                     batch_size=4, lr_prompt=0.05, lr_visual=0.05)
    seen = count_tower_images(monkeypatch)
    out = Lesson(base, ims, tmp_path / "runs").run()
    assert list(out) == ["zero_shot", "entropy", "im", "ueo", "oracle"]
    n = len(ims)
    # zero-shot: one pass; each adapting run: its epoch's training pass and its last evaluation (its own tower);
    # before the store every run also paid its own zero-shot pass: n + 4 * 3n
    assert sum(seen) == n + 4 * (n + n)
    seen.clear()
    feats = explore.run_features(out["ueo"])
    assert sum(seen) == 0 and not np.allclose(feats["before"], feats["after"])
