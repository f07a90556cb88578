"""`python -m ueo_core eval NEW --run R` (issue 29, item 10): the run's adapted model applied to NEW, beside the
zero-shot of the same base model on the same images NEW; every row counts its images; the report names the run's
method and the run; the run's own folder is only read (an evaluation never changes a user's results)."""
import hashlib
import json
import re

import pytest

from helpers import assert_close_tree, make_folder
from ueo_core.cli import main
from ueo_core.config import RunConfig
from ueo_core.train import Trainer

PRIOR = ["red", "green", "blue"]
TINY = ["--model", "ueo-tiny", "--pretrained", "none"]


def digests(folder):
    """sha256 of every file in a folder (names included: a file added or removed shows too)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def folders(tmp_path):
    """A training folder of 24 images (18 known) and a new folder of 10 (6 known): different counts."""
    train = make_folder(tmp_path / "train", classes=("red", "green", "blue", "yellow"), per_class=6, seed=1)
    new = make_folder(tmp_path / "new", classes=("red", "green", "blue", "yellow", "purple"), per_class=2, seed=2)
    return train, new


def train_run(train, out, *extra):
    rc = main(["train", str(train), "--prior", ",".join(PRIOR), *TINY, "--batch-size", "8", "--out", str(out),
               *extra])
    assert rc == 0
    return out


def zero_shot_on(new, **kw):
    """The zero-shot of the run's base model (ueo-tiny, random init of the run's seed) and prior on ``new``,
    computed apart from the CLI: a plain zero_shot run of the engine (or of the method in ``kw``)."""
    cfg = RunConfig(**{"data": str(new), "prior": PRIOR, "model": "ueo-tiny", "pretrained": None,
                       "method": "zero_shot", "batch_size": 8, "run_dir": None, **kw})
    return Trainer(cfg).run()


def rows(stdout):
    """The printed result lines by name ("before", "after")."""
    return {ln.split(" ")[0].rstrip(":"): ln for ln in stdout.splitlines() if ln.startswith(("before", "after"))}


def test_eval_compares_on_the_same_new_images_and_leaves_the_run_alone(folders, tmp_path, capsys):
    """Every aspect is checked and every failure listed, so one run shows all that is wrong."""
    train, new = folders
    run = train_run(train, tmp_path / "run", "--epochs", "1", "--lr-prompt", "0.05", "--lr-visual", "0.05")
    kept = digests(run)
    capsys.readouterr()

    assert main(["eval", str(new), "--run", str(run), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    zs = zero_shot_on(new)  # the zero-shot on NEW, apart from the CLI
    report = (tmp_path / "ev" / "report.md").read_text()
    shown = rows(out)
    problems = []

    def expect(ok, what):
        if not ok:
            problems.append(what)

    expect(m["before"].get("n") == 10, f"metrics.json's before covers {m['before'].get('n')} images, not NEW's 10")
    expect(m["after"].get("n") == 10, f"metrics.json's after covers {m['after'].get('n')} images, not NEW's 10")
    try:
        assert_close_tree(m["before"], json.loads(json.dumps(zs.metrics_before)), nan_ok=True)
    except AssertionError as err:
        problems.append(f"metrics.json's before is not the zero-shot on NEW ({str(err).splitlines()[0]})")
    for name in ("before", "after"):  # each row printed says it covers NEW's 10 images, none the training run's 24
        expect("10 images" in shown.get(name, "") and "24 images" not in shown.get(name, ""),
               f"the printed {name} row does not say it covers 10 images: {shown.get(name)!r}")
    expect(f"auroc={zs.metrics['auroc']:.4f}" in shown.get("before", "")
           and f"gacc={zs.metrics['gacc']:.4f}" in shown.get("before", ""),
           f"the printed before row is not the zero-shot on NEW (AUROC {zs.metrics['auroc']:.4f}): "
           f"{shown.get('before')!r}")
    expect("ueo" in shown.get("after", "") and str(run) in shown.get("after", ""),
           f"the printed after row names neither the method nor the run: {shown.get('after')!r}")
    expect((m.get("evaluates") or {}).get("method") == "ueo" and m["evaluates"].get("run") == str(run)
           and m["evaluates"].get("epoch") == 1, f"metrics.json does not name the run evaluated: {m.get('evaluates')}")
    expect("**ueo**" in report and str(run) in report and "zero_shot" not in report,
           "report.md does not name the run's method (ueo) and the run: " + report.splitlines()[2])
    expect(re.search(r"\| metric \| zero-shot \(10 images\) \| ueo \(10 images\) \|", report) is not None,
           "report.md's columns do not count NEW's 10 images: " + next(ln for ln in report.splitlines()
                                                                    if ln.startswith("| metric")))
    expect(digests(run) == kept, "eval changed the run's folder")

    # the run's own folder as --out: refused in words, nothing written
    capsys.readouterr()
    rc = main(["eval", str(new), "--run", str(run), "--out", str(run)])
    err = capsys.readouterr().err
    expect(rc == 2 and "folder of the run being evaluated" in err and "Traceback" not in err,
           f"eval --out <the run's own folder> was not refused (exit {rc})")
    changed = sorted(k for k in set(kept) | set(digests(run)) if kept.get(k) != digests(run).get(k))
    expect(not changed, f"eval --out <the run's own folder> changed the run's files: {', '.join(changed)}")
    assert not problems, "\n".join(problems)


def test_eval_bad_run_in_words(folders, tmp_path, capsys):
    _, new = folders
    for bad in (tmp_path / "nowhere", new):
        assert main(["eval", str(new), "--run", str(bad), "--out", str(tmp_path / "ev")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "run folder" in err and "Traceback" not in err
    assert not (tmp_path / "ev").exists()


def test_eval_of_tda_run_applies_tda_to_the_new_images(folders, tmp_path):
    """A test-time method's "adapted model" is its procedure: TDA runs on NEW's own stream, as a TDA run on NEW
    would; the before is NEW's zero-shot."""
    train, new = folders
    run = train_run(train, tmp_path / "tda", "--method", "tda")
    kept = digests(run)
    assert main(["eval", str(new), "--run", str(run), "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    direct = zero_shot_on(new, method="tda", epochs=1)  # a TDA run on NEW itself
    assert_close_tree(m["before"], json.loads(json.dumps(direct.metrics_before)), nan_ok=True)
    assert_close_tree(m["after"], json.loads(json.dumps(direct.metrics)), nan_ok=True)
    assert "**tda**" in (tmp_path / "ev" / "report.md").read_text()
    assert digests(run) == kept


def test_eval_of_clipood_run_loads_its_tower(folders, tmp_path):
    """CLIPood's checkpoint (the whole moving-average tower) still loads: its eval on its own target repeats the
    run's result (as before this fix)."""
    train, new = folders
    run = train_run(new, tmp_path / "clipood", "--method", "clipood", "--source", str(train), "--epochs", "1",
                    "--iters-per-epoch", "2", "--lr-visual", "0.01")
    kept = digests(run)
    assert main(["eval", str(new), "--run", str(run), "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["before"]["n"] == m["after"]["n"] == 10
    before = json.loads((run / "metrics.json").read_text())
    assert m["after"]["gacc"] == pytest.approx(before["after"]["gacc"])  # the moving-average tower was loaded
    assert m["after"]["mean_confidence"] == pytest.approx(before["after"]["mean_confidence"])
    assert digests(run) == kept
