"""A method is one file, its options included (issue 33, part 1): a throwaway method, written into a file of its own
outside the repository, declares a new option; with no other file touched, the option is in the CLI's help, is
validated, is a widget on the Adapt page and reaches the loss. Beside it: each declaration's own checks, and the
docs' table made from the declarations."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ueo_core.methods as methods
from helpers import make_folder
from ueo_core.cli import main
from ueo_core.cli_parser import build_parser
from ueo_core.config import RunConfig
from ueo_core.methods.options import Option

ROOT = Path(__file__).resolve().parents[1]

THROWAWAY = '''
"""A throwaway method: entropy minimisation of the predictions raised to a power (its one option)."""
import torch

from . import register
from .base import Context, Method, Step, entropy
from .options import Option


@register
class Sharpened(Method):
    name = "sharpened"
    label = "Sharpened entropy (a test's)"
    plain = "sharpened entropy"
    description = "Entropy of the renormalised predictions p**power."
    options = (Option("power", 2.0, "the power the predictions are raised to", lo=0.5, hi=8.0,
                      label="Power (sharpened)", official=2.0, source="tests/test_method_options.py"),)

    def loss(self, step: Step, ctx: Context):
        p = step.probs ** ctx.options.power
        cond = entropy(p / p.sum(dim=1, keepdim=True)).mean()
        return cond, {"loss_cond": cond.detach(), "power_seen": torch.tensor(float(ctx.options.power))}
'''


@pytest.fixture()
def throwaway(tmp_path, monkeypatch):
    """The method's one file, in a folder of its own added to the methods package's search path; the registry
    discovers it as it discovers the package's own files. The repository is not written."""
    folder = tmp_path / "more_methods"
    folder.mkdir()
    (folder / "sharpened.py").write_text(textwrap.dedent(THROWAWAY))
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, "ueo_core.methods.sharpened", raising=False)
    methods._discover()
    yield methods.METHODS["sharpened"]
    methods.METHODS.pop("sharpened")  # registered only for this test
    sys.modules.pop("ueo_core.methods.sharpened", None)


def test_a_new_method_with_a_new_option_is_one_file(throwaway, tmp_path, monkeypatch, capsys):
    # the CLI's help: the flag, its method, its help, its default and official value, its range
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    text = " ".join(train.format_help().split())
    assert "--power POWER sharpened: the power the predictions are raised to (default 2.0; official 2.0, " in text
    assert "sharpened" in [c for c in next(a for a in train._actions if a.dest == "method").choices]
    # validated, in words, from the CLI and from a config
    folder = make_folder(tmp_path / "imgs", classes=("red", "green", "blue"), per_class=4, seed=0)
    base = ["train", str(folder), "--method", "sharpened", "--model", "ueo-tiny", "--pretrained", "none"]
    assert main(base + ["--power", "9"]) == 2
    assert ("'Power (sharpened)' of sharpened entropy must be a finite number at least 0.5 and at most 8 (got 9.0; "
            "option power, --power)") in capsys.readouterr().err
    assert main(base + ["--trade", "1"]) == 2  # another method's option is refused, not ignored
    assert "--trade is an option of im, ueo, oracle, not of sharpened" in capsys.readouterr().err
    with pytest.raises(ValueError, match="power"):
        RunConfig(method="sharpened", options={"power": 0.1}).validate()
    assert RunConfig(method="sharpened").options == {"power": 2.0}  # the declared default
    # it reaches the loss: each step's statistics carry the value the loss read
    for power in (1.5, 3.0):
        out = tmp_path / f"run{power}"
        assert main(base + ["--power", str(power), "--epochs", "1", "--batch-size", "4", "--out", str(out)]) == 0
        steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
        assert steps and {s["power_seen"] for s in steps} == {power}
        assert json.loads((out / "config.json").read_text())["options"] == {"power": power}


def test_the_new_option_is_a_widget_on_adapt(throwaway, tmp_path, monkeypatch):
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    monkeypatch.setenv("UEO_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(ROOT / "pages/3_Adapt.py"), default_timeout=120)
    at.run()
    assert not at.exception
    at.selectbox[0].set_value("sharpened").run()
    assert not at.exception, [e.value for e in at.exception]
    widget = next(n for n in at.number_input if n.label == "Power (sharpened)")
    assert widget.value == 2.0 and "official 2.0" in widget.help
    assert "λ (marginal entropy weight)" not in [n.label for n in at.number_input]  # UEO's option is UEO's


@pytest.mark.parametrize("option, good, bad", [
    (Option("n", 4, "n", kind=int, lo=4, hi=512), [4, 512, 10.0], [3, 513, 4.5, "4", True, None, float("nan")]),
    (Option("x", 1.0, "x", lo=0.0, hi=1.0, lo_open=True), [1e-9, 1.0], [0.0, 1.1, float("inf"), None]),
    (Option("t", None, "t", lo=0.0, lo_open=True, unset="the protocol's"), [None, 0.5], [0.0, -1.0]),
    (Option("mode", "a", "m", kind=str, choices=("a", "b")), ["a", "b"], ["c", None, 1]),
    (Option("flag", False, "f", kind=bool), [True, False], [1, "yes", None]),
])
def test_an_option_checks_its_declared_range(option, good, bad):
    for v in good:
        assert option.check(v, "m") == v
    for v in bad:
        with pytest.raises(ValueError, match=f"'{option.name}' of m must be .*option {option.name}, --{option.name}"):
            option.check(v, "m")


def test_every_declared_default_passes_its_own_check_and_flags_do_not_clash():
    """A method's defaults are valid (a RunConfig of each method validates as it is), one name means one option
    across methods, and no option hides a RunConfig field."""
    import dataclasses
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    seen = {}
    for name, m in methods.METHODS.items():
        RunConfig(method=name).validate()
        for o in m.options:
            assert o.name not in fields, (name, o.name)
            assert seen.setdefault(o.name, o) == o, f"'{o.name}' is declared differently by two methods"


def test_an_older_runs_config_keeps_its_options():
    """config.json written when the options were RunConfig fields: the method's own move into options, the
    others' are dropped, and CLIPood's old 'one pass' (None) stays what it meant."""
    old = {k: v for k, v in RunConfig().to_dict().items() if k != "options"}
    old.update(trade=0.5, weight_temperature=1.0, margin=0.3, bma_beta=0.5, weight_decay=0.1, iters_per_epoch=None,
               zero_views=64)
    assert RunConfig.from_dict(old).options == {"trade": 0.5, "weight_temperature": 1.0}
    assert RunConfig.from_dict({**old, "method": "zero"}).options == {"zero_views": 64}
    assert RunConfig.from_dict({**old, "method": "clipood"}).options["iters_per_epoch"] == 0


def test_replace_keeps_the_options_both_methods_declare():
    cfg = RunConfig(method="ueo", options={"trade": 0.4, "weight_temperature": 1.0})
    assert cfg.replace(method="im").options == {"trade": 0.4}
    assert cfg.replace(method="clipood").options == RunConfig(method="clipood").options
    assert cfg.replace(trade=0.7).options["trade"] == 0.7
    with pytest.raises(ValueError, match="'nope' is not one of ueo's options"):
        cfg.replace(nope=1).validate()


def test_hooks_see_a_run_view_not_the_trainer(tmp_path, monkeypatch):
    """Every hook is handed the run's ``Run`` view: the names it lists, read-only; the trainer's feature source,
    folder and state are out of reach (before, hooks got the trainer itself)."""
    from ueo_core.methods import METHODS
    from ueo_core.methods.base import Run
    from ueo_core.train import Trainer
    got = {}
    ueo = type(METHODS["ueo"])
    for hook in ("params", "prepare", "batches", "describe", "end_epoch", "end_run"):
        real = getattr(ueo, hook)
        monkeypatch.setattr(ueo, hook, lambda self, run, *a, real=real, hook=hook: got.setdefault(hook, run) and
                            real(self, run, *a))
    folder = make_folder(tmp_path / "imgs", classes=("red", "green", "blue"), per_class=4, seed=0)
    cfg = RunConfig(data=str(folder), model="ueo-tiny", pretrained=None, epochs=1, batch_size=4)
    assert Trainer(cfg).run().status == "done"
    assert set(got) == {"params", "prepare", "batches", "describe", "end_epoch", "end_run"}
    for hook, run in got.items():
        assert type(run) is Run, hook
    run = got["end_run"]
    assert run.config is cfg and len(run.image_set) == 12 and run.total_steps == 3
    for name in ("features", "folder", "method", "ctx", "checkpoint_epoch"):  # the trainer's own
        with pytest.raises(AttributeError, match="hooks see only"):
            getattr(run, name)
    with pytest.raises(AttributeError, match="read the run"):
        run.outcome = {}
