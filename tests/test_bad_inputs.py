"""Bad input gets a clear message, never a traceback, writes nothing outside its run folder and leaves earlier
results intact (issue 10). One table of cases through the command line (the same checks the app calls), plus
bad image files through the folder reader."""
import hashlib
import os

import pytest
from PIL import Image

from helpers import make_folder
from ueo_core.cli import main

TINY = ["--model", "ueo-tiny", "--pretrained", "none", "--epochs", "1", "--batch-size", "8"]

# (id, extra CLI arguments, words the message must contain). {data}, {run}, {tmp} are filled in per test.
CASES = [
    ("batch-size 0", ["--batch-size", "0"], "batch_size"),
    ("batch-size negative", ["--batch-size", "-3"], "batch_size"),
    ("eval-every 0", ["--eval-every", "0"], "eval_every"),
    ("fast-views 0", ["--fast-views", "0"], "fast_views"),
    ("fast-blocks 9", ["--fast-blocks", "9"], "fast_blocks"),
    ("device banana", ["--device", "banana"], "device"),
    ("epochs negative", ["--epochs", "-1"], "epochs"),
    ("lr-prompt nan", ["--lr-prompt", "nan"], "lr_prompt"),
    ("lr-prompt negative", ["--lr-prompt", "-0.1"], "lr_prompt"),
    ("lr-visual inf", ["--lr-visual", "inf"], "lr_visual"),
    ("weight-temperature inf", ["--weight-temperature", "inf"], "weight_temperature"),
    ("weight-temperature 0", ["--weight-temperature", "0"], "weight_temperature"),
    ("threshold nan", ["--threshold", "nan"], "threshold"),
    ("threshold 2", ["--threshold", "2"], "threshold"),
    ("trade negative", ["--trade", "-1"], "trade"),
    ("trade nan", ["--trade", "nan"], "trade"),
    ("seed negative", ["--seed", "-5"], "seed"),
    ("template with a second placeholder", ["--template", "a photo of {x} a {}"], "braces"),
    ("template with a lone brace", ["--template", "a { photo of a {}"], "braces"),
    ("template without placeholder", ["--template", "a photo"], "exactly once"),
    ("template with nothing before {}", ["--template", "{} photo"], "at least one word"),
    ("prior with one class", ["--prior", "red"], "at least 2"),
    ("prior with a duplicate", ["--prior", "red,green,Red"], "twice"),
    ("unknown preset", ["--preset", "nope"], "invalid choice"),
    ("resume from garbage", ["--resume", "{tmp}/garbage.safetensors"], "not a checkpoint"),
    ("resume from a pickle", ["--resume", "{tmp}/pickle.pt"], "not a checkpoint"),
    ("resume from a foreign safetensors", ["--resume", "{tmp}/foreign.safetensors"], "no prompt context"),
    ("resume from a missing file", ["--resume", "{tmp}/missing.safetensors"], "No checkpoint"),
    ("data folder missing", ["DATA={tmp}/nowhere"], "not found"),
    ("data folder empty", ["DATA={tmp}/empty"], ""),
]


@pytest.fixture
def setup(tmp_path):
    data = make_folder(tmp_path / "data", classes=("red", "green", "blue"), per_class=3, size=24)
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.safetensors").write_bytes(b"garbage" * 10)
    import pickle
    (tmp_path / "pickle.pt").write_bytes(pickle.dumps({"prompt.ctx": [1, 2, 3]}))
    import torch
    from safetensors.torch import save_file
    save_file({"something.else": torch.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    # an earlier finished run whose files must stay as they were
    earlier = tmp_path / "earlier"
    assert main(["train", str(data), "--prior", "red,green", *TINY, "--out", str(earlier)]) == 0
    return tmp_path, data, earlier


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_option_or_input_gets_a_clear_message(case, setup, capsys, monkeypatch):
    tmp, data, earlier = setup
    name, extra, words = case
    before = digest(earlier)
    monkeypatch.chdir(tmp)
    extra = [a.replace("{tmp}", str(tmp)) for a in extra]
    target = str(data)
    if extra and extra[0].startswith("DATA="):
        target, extra = extra[0][5:], extra[1:]
    prior = [] if any(a in ("--prior", "--preset") for a in extra) else ["--prior", "red,green"]
    out = tmp / "new-run"
    listing = set(os.listdir(tmp))
    try:
        rc = main(["train", target, *prior, *TINY, *extra, "--out", str(out)])
    except SystemExit as exc:  # argparse's own refusal: a usage line and a message, exit 2
        rc = exc.code
    err = capsys.readouterr()
    text = err.out + err.err
    assert rc == 2, (name, text)
    assert "error" in text and words.lower() in text.lower(), (name, text)
    assert "Traceback" not in text
    assert set(os.listdir(tmp)) - listing <= {"new-run"}  # nothing written beside the run folder
    assert digest(earlier) == before  # earlier results intact


def test_bad_image_files_are_skipped_with_a_reason(tmp_path):
    from ueo_core.data import load_folder
    root = make_folder(tmp_path / "d", classes=("red", "green"), per_class=2, size=24)
    bad = {
        "empty.png": b"",
        "text.jpg": b"this is not a jpeg",
        "truncated.png": (root / "red" / "img_0.png").read_bytes()[:60],
        "notes.txt": b"hello",
    }
    for n, b in bad.items():
        (root / "red" / n).write_bytes(b)
    Image.new("L", (1, 50_000)).save(root / "red" / "strip.png")
    ims = load_folder(root, prior=["red", "green"])
    reasons = dict((os.path.basename(p), r) for p, r in ims.skipped)
    assert set(reasons) >= set(bad) | {"strip.png"}
    assert "empty" in reasons["empty.png"] and "not an image" in reasons["text.jpg"]
    assert "corrupt or truncated" in reasons["truncated.png"] and "elongated" in reasons["strip.png"]
    assert len(ims) == 4


def test_a_file_name_that_is_not_utf8_works_end_to_end(tmp_path):
    """Linux allows any bytes in a name: the run's predictions.csv and report.md are complete, and the name read
    back from predictions.csv still opens the file."""
    from ueo_core.analysis import read_predictions
    root = make_folder(tmp_path / "d", classes=("red", "green"), per_class=3, size=24)
    os.rename(bytes(root / "red" / "img_0.png"), bytes(root / "red") + b"/caf\xe9.png")
    assert main(["train", str(root), "--prior", "red,green", *TINY, "--out", str(tmp_path / "run")]) == 0
    preds = read_predictions(tmp_path / "run")
    odd = [p for p in preds.paths if "caf" in p]
    assert len(preds) == 6 and len(odd) == 1 and os.path.exists(odd[0])
    assert (tmp_path / "run" / "report.md").exists()
