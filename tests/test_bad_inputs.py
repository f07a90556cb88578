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
    ("resume from another model's run", ["--resume", "{tmp}/earlier", "--model", "ueo-tiny-rn"], "another model"),
    ("workers negative", ["--workers", "-1"], "--workers"),
    ("fast-mode unknown", ["--fast-mode", "turbo"], "invalid choice"),
    ("method unknown", ["--method", "magic"], "invalid choice"),
    ("setting unknown", ["--setting", "XYZ"], "invalid choice"),
    ("margin negative", ["--method", "clipood", "--margin", "-1"], "'Margin λ (CLIPood)' of CLIPood must be"),
    ("weight-decay nan", ["--method", "clipood", "--weight-decay", "nan"], "option weight_decay, --weight-decay"),
    ("iters-per-epoch -1", ["--method", "clipood", "--iters-per-epoch", "-1"], "option iters_per_epoch"),
    ("another method's option", ["--margin", "0.2"], "--margin is an option of clipood, not of ueo"),
    ("epochs not a number", ["--epochs", "five"], "invalid int"),
    ("oracle without ground truth", ["DATA={tmp}/flat", "--method", "oracle"], "ground truth"),
    ("clipood without sources", ["--method", "clipood"], "source"),
    ("checkpoint file missing", ["--checkpoint", "{tmp}/none.safetensors"], "not found"),
    ("checkpoint is garbage", ["--checkpoint", "{tmp}/garbage.safetensors"], "checkpoint"),
    ("data folder missing", ["DATA={tmp}/nowhere"], "not found"),
    ("data folder empty", ["DATA={tmp}/empty"], ""),
]


@pytest.fixture
def setup(tmp_path):
    data = make_folder(tmp_path / "data", classes=("red", "green", "blue"), per_class=3, size=24)
    (tmp_path / "empty").mkdir()
    flat = tmp_path / "flat"
    flat.mkdir()
    for k, f in enumerate(sorted((data / "red").iterdir())):
        (flat / f"{k}.png").write_bytes(f.read_bytes())
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


# ---------------------------------------------------------------------------------------------------- zips
def _png() -> bytes:
    import io
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return buf.getvalue()


def _zip(entries, compression=None) -> bytes:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression or zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _patch(data: bytes, entry: bytes, local_off: int, central_off: int, value: bytes) -> bytes:
    """Overwrite a field of one entry in its local header and its central-directory record."""
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", local_off), (b"PK\x01\x02", central_off)):
        i = 0
        while (i := b.find(sig, i)) >= 0:
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if bytes(b[name_at:name_at + len(entry)]) == entry:
                b[i + off:i + off + len(value)] = value
            i += 4
    return bytes(b)


def _zip_cases():
    import struct
    import zipfile
    good = ("set/cat/a.png", _png())
    ok = _zip([good, ("set/dog/b.png", _png())])
    enc = _patch(_zip([good, ("set/dog/secret.png", _png())]), b"set/dog/secret.png", 6, 8, struct.pack("<H", 1))
    stored = _zip([good, ("set/dog/crc.png", _png())])
    i = stored.find(b"set/dog/crc.png") + len("set/dog/crc.png") + 20
    crc = stored[:i] + bytes([stored[i] ^ 0xFF]) + stored[i + 1:]
    deflated = _zip([good, ("set/dog/z.png", _png() * 5)], zipfile.ZIP_DEFLATED)
    j = deflated.find(b"set/dog/z.png") + len("set/dog/z.png") + 5
    corrupt = deflated[:j] + b"\xff" * 40 + deflated[j + 40:]
    liar = _patch(_zip([good, ("set/dog/liar.png", _png())]), b"set/dog/liar.png", 22, 24, struct.pack("<I", 10))
    clash = _zip([good, ("set/dog/x.png", _png()), ("set/dog/x.png/y.png", _png())])
    deep = _zip([good, ("set/" + "d/" * 2100 + "deep.png", _png())])
    longname = _zip([good, ("set/dog/" + "n" * 300 + ".png", _png())])
    return [("encrypted entry", enc, "secret.png", "encrypted"),
            ("CRC error", crc, "crc.png", "damaged"),
            ("corrupt deflate data", corrupt, "z.png", "damaged"),
            ("entry lying about its size", liar, "liar.png", "larger than|damaged"),  # zipfile's CRC check or ours
            ("x.png beside x.png/y.png", clash, "y.png", "cannot be written"),
            ("2,100 levels deep", deep, "deep.png", "too deep"),
            ("300-character entry name", longname, "nnnn", "too long"),
            ("a good zip", ok, None, None)]


@pytest.mark.parametrize("case", _zip_cases(), ids=lambda c: c[0])
def test_damaged_zip_entries_are_refused_with_a_reason_and_the_rest_kept(case, tmp_path):
    from studio.uploads import save_upload
    name, data, bad_entry, reason = case

    class Up:
        def __init__(self, n, d):
            self.name, self._d = n, d

        def getbuffer(self):
            return memoryview(self._d)
    root, refused = save_upload([Up("photos.zip", data)], tmp_path / "u")
    files = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert "a.png" in files, (name, files)
    if bad_entry:
        import re
        assert [r for n, r in refused if bad_entry in n and re.search(reason, r)], (name, refused)
        assert not any(bad_entry in f for f in files), (name, files)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]  # no staging left


def test_a_broken_zip_is_refused_whole_and_leaves_nothing(tmp_path):
    from studio.uploads import save_upload
    from ueo_core.data import DataError

    class Up:
        name = "photos.zip"

        def getbuffer(self):
            return memoryview(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataError, match="Not a readable zip"):
        save_upload([Up()], tmp_path / "u")
    assert list(tmp_path.iterdir()) == []


def test_a_300_character_upload_name_is_shortened_and_saved(tmp_path):
    from studio.uploads import save_upload

    class Up:
        name = "p" * 300 + ".png"

        def getbuffer(self):
            return memoryview(_png())
    root, refused = save_upload([Up()], tmp_path / "u")
    saved = [p for p in root.iterdir()]
    assert refused == [] and len(saved) == 1 and saved[0].suffix == ".png" and len(saved[0].name) <= 200


# ------------------------------------------------------------------------------------------------ run folders
def test_two_runs_cannot_write_into_one_folder(setup, capsys):
    from ueo_core.runs import RunFolder
    tmp, data, _ = setup
    holder = RunFolder(tmp / "busy").create()  # a run in progress holds the lock
    try:
        rc = main(["train", str(data), "--prior", "red,green", *TINY, "--out", str(tmp / "busy")])
        err = capsys.readouterr().err
        assert rc == 2 and "Another run is writing" in err and "Traceback" not in err
    finally:
        holder.close()
    assert not (tmp / "busy" / "config.json").exists()


def test_a_finished_folder_is_not_reused_without_resume(setup, capsys):
    tmp, data, earlier = setup
    before = digest(earlier)
    rc = main(["train", str(data), "--prior", "red,green", *TINY, "--out", str(earlier)])
    err = capsys.readouterr().err
    assert rc == 2 and "already holds a run" in err
    assert digest(earlier) == before
    # resuming it is allowed
    assert main(["train", str(data), "--prior", "red,green", *TINY[:-4], "--epochs", "2", "--batch-size", "8",
                 "--resume", str(earlier), "--out", str(earlier)]) == 0


def test_a_cut_off_last_log_line_does_not_block_resume(setup):
    from ueo_core.runs import RunFolder
    tmp, data, earlier = setup
    with open(earlier / "steps.jsonl", "a") as fh:
        fh.write('{"step": 99, "epoch": 1, "lo')  # a crash mid-write
    assert len(RunFolder(earlier).read_jsonl("steps.jsonl")) >= 1
    assert main(["train", str(data), "--prior", "red,green", "--model", "ueo-tiny", "--pretrained", "none",
                 "--epochs", "2", "--batch-size", "8", "--resume", str(earlier), "--out", str(earlier)]) == 0


def test_a_write_error_keeps_the_previous_checkpoint(setup, capsys, monkeypatch):
    import errno
    import ueo_core.runs as runs
    tmp, data, earlier = setup
    before = (earlier / "checkpoint.safetensors").read_bytes()
    real = runs.save_file

    def full_disk(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)  # a partial file appears, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runs, "save_file", full_disk)
    rc = main(["train", str(data), "--prior", "red,green", "--model", "ueo-tiny", "--pretrained", "none",
               "--epochs", "2", "--batch-size", "8", "--resume", str(earlier), "--out", str(earlier)])
    err = capsys.readouterr().err
    assert rc == 2 and "Could not write the checkpoint" in err and "previous checkpoint is kept" in err
    assert "Traceback" not in err
    assert (earlier / "checkpoint.safetensors").read_bytes() == before
    assert not [p for p in earlier.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------------- warnings
def test_a_prior_that_names_no_folder_is_warned_about(tmp_path, capsys):
    from ueo_core.data import load_folder
    root = make_folder(tmp_path / "d", classes=("red", "green"), per_class=2, size=24)
    ims = load_folder(root, prior=["cat", "dog"])
    assert ims.warnings and "None of the prior's names" in ims.warnings[0]
    assert main(["train", str(root), "--prior", "cat,dog", *TINY, "--out", str(tmp_path / "r1")]) == 0
    assert "warning: None of the prior's names" in capsys.readouterr().err
    assert not load_folder(root, prior=["red", "dog"]).warnings


def test_a_preset_that_does_not_fit_the_folder_says_so(tmp_path, capsys):
    root = make_folder(tmp_path / "d", classes=("red", "green"), per_class=2, size=24)
    assert main(["train", str(root), "--preset", "pacs", *TINY, "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "does not fit the preset 'pacs'" in err and "red" in err


def test_a_template_that_cuts_off_class_names_is_refused(tmp_path, capsys):
    root = make_folder(tmp_path / "d", classes=("red", "green"), per_class=2, size=24)
    long = "a " * 90 + "photo of a {}."
    assert main(["train", str(root), "--prior", "red,green", *TINY, "--template", long, "--out",
                 str(tmp_path / "r3")]) == 2
    err = capsys.readouterr().err
    assert "would be cut off" in err and "Traceback" not in err


def test_an_unreadable_folder_gets_a_message(tmp_path, monkeypatch):
    """(As root every folder is readable, so the refusal of the file system is simulated.)"""
    import errno
    from ueo_core.data import DataError, load_folder
    root = make_folder(tmp_path / "d", classes=("red", "green"), per_class=2, size=24)

    def denied(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr("ueo_core.data.os.scandir", denied)
    with pytest.raises(DataError, match="Cannot read the folder .*Permission denied"):
        load_folder(root, prior=["red", "green"])
