"""`python -m ueo_core export` (issue 30, part 3): Label Studio tasks, a FiftyOne dataset and a CSV from one run,
each read back here with the standard library (json, csv, xml, zipfile) and compared, image by image, with the
run's predictions.csv judged at the threshold; downloads carry no server path or token; an export never writes over
what it did not write, nor into the run. The tools' own libraries read the formats in bench/export_readback.py."""
import csv
import hashlib
import io
import json
import math
import os
import zipfile
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from helpers import make_folder
from ueo_core.analysis import read_predictions
from ueo_core.cli import main
from ueo_core.export import (LOCAL_FILES, export_bytes, export_downloads, how_to_import, label_config, labels_of,
                             unknown_label, write_export)

TOKEN = "0123456789abcdef0123456789abcdef"  # a workspace's folder name, as studio.workspace makes them
ODD = "sky blue #1 & more.png"              # a file name a URL must quote
TINY = ["--model", "ueo-tiny", "--pretrained", "none", "--batch-size", "8"]


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A zero-shot run of the random-init ueo-tiny model on an upload inside a workspace (red, green, blue known;
    yellow unknown), with a file name that needs quoting and two images that differ only by extension."""
    ws = tmp_path_factory.mktemp("workspaces") / TOKEN
    data = make_folder(ws / "uploads" / "20261206-035612" / "my_photos", classes=("red", "green", "blue", "yellow"))
    (data / "red" / "img_0.png").rename(data / "red" / ODD)
    (data / "green" / "img_1.png").rename(data / "green" / "img_0.jpg")  # beside green/img_0.png
    out = ws / "runs" / "20261206-040000-zero_shot-a1b2c3"
    assert main(["train", str(data), "--prior", "red,green,blue", "--method", "zero_shot", *TINY,
                 "--out", str(out)]) == 0
    return out


def expected(run, score="msp", threshold=None):
    """{path inside the data folder: (label, max softmax)} straight from predictions.csv, judged as Inspect does."""
    preds = read_predictions(run)
    msp, p = preds.confidence, preds.by(score)
    if threshold is None:
        threshold = json.loads((Path(run) / "metrics.json").read_text())["after"]["threshold"]
    rejected = set(p.at_threshold(threshold)["rejected"].tolist())
    root = Path(json.loads((Path(run) / "config.json").read_text())["data"])
    return {Path(p.paths[i]).relative_to(root).as_posix(): ("unknown" if i in rejected else p.classes[p.pred[i]],
                                                           float(msp[i])) for i in range(len(p))}


def unzip(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {Path(n).name: z.read(n).decode("utf-8") for n in z.namelist()}


def read_labelstudio(files) -> dict:
    """{path: (label, score)} from tasks.json, after checking each result against label_config.xml."""
    view = ET.fromstring(files["label_config.xml"])
    image, choices = view.find("Image"), view.find("Choices")
    names = [c.get("value") for c in choices.findall("Choice")]
    out = {}
    for task in json.loads(files["tasks.json"]):
        assert task["data"]["image"] == LOCAL_FILES + "my_photos/" + task["data"]["image"].split("my_photos/", 1)[1]
        assert unquote(task["data"]["image"].split("?d=my_photos/", 1)[1]) == task["data"]["path"]
        (pred,) = task["predictions"]
        (res,) = pred["result"]
        assert (res["from_name"], res["to_name"], res["type"]) == (choices.get("name"), image.get("name"), "choices")
        assert choices.get("toName") == image.get("name") and image.get("value") == "$image"
        assert res["value"]["choices"][0] in names and 0 <= pred["score"] <= 1
        assert "20261206-040000-zero_shot-a1b2c3" in pred["model_version"] and "zero_shot" in pred["model_version"]
        out[task["data"]["path"]] = (res["value"]["choices"][0], pred["score"])
    return out, names


def read_fiftyone(files, root) -> dict:
    """{path: (label, confidence)} as FiftyOne's importer pairs labels.json with data.json."""
    labels, data = json.loads(files["labels.json"]), json.loads(files["data.json"])
    assert set(labels["labels"]) == set(data)
    for key, rel in data.items():
        assert (Path(root) / rel).is_file() and not os.path.isabs(rel)
        if sum(os.path.splitext(r)[0] == os.path.splitext(rel)[0] for r in data.values()) == 1:
            assert key == os.path.splitext(rel)[0]  # the key FiftyOne gives the file when data_path is the folder
    return {data[k]: (v["label"], v["confidence"]) for k, v in labels["labels"].items()}, labels["classes"]


def read_csv(text) -> dict:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {r["path"]: (r["label"], float(r["confidence"])) for r in rows}, rows


def test_every_format_says_what_predictions_csv_says_at_the_threshold(run):
    """Per image: the label (unknown where rejected) and the max softmax; per label: the count; for MSP at the
    run's own threshold and for energy at a threshold given."""
    energy = read_predictions(run).scores["energy"]
    for score, threshold in ((None, None), ("energy", float(np.median(energy)))):
        want = expected(run, score or "msp", threshold)
        assert 0 < sum(v[0] == "unknown" for v in want.values()) < len(want)  # both kinds present: a real check
        root = json.loads((run / "config.json").read_text())["data"]
        got = {}
        got["labelstudio"], ls_names = read_labelstudio(unzip(export_bytes(run, "labelstudio", score, threshold)[2]))
        got["fiftyone"], fo_classes = read_fiftyone(unzip(export_bytes(run, "fiftyone", score, threshold)[2]), root)
        got["csv"], rows = read_csv(export_bytes(run, "csv", score, threshold)[2].decode())
        assert ls_names == fo_classes == ["red", "green", "blue", "unknown"]
        for fmt, g in got.items():
            assert set(g) == set(want), fmt
            assert {k: v[0] for k, v in g.items()} == {k: v[0] for k, v in want.items()}, fmt
            assert all(math.isclose(g[k][1], want[k][1], abs_tol=1e-12) for k in want), fmt
        t = float(rows[0]["threshold"])
        assert {r["score"] for r in rows} == {score or "msp"} and all(float(r["threshold"]) == t for r in rows)
        assert all((r["predicted_known"] == "True") == (float(r["score_value"]) >= t) for r in rows)
        assert all(r["label"] in (r["predicted_class"], "unknown") and r["true_class"] for r in rows)


def test_downloads_carry_no_server_path_or_token(run):
    """What the app's buttons hand out (``export_downloads``, the same bytes as ``export_bytes``)."""
    data_dir = json.loads((run / "config.json").read_text())["data"]
    downloads = export_downloads(run)
    assert [d.file_name.rsplit(".", 1)[1] for d in downloads] == ["zip", "zip", "csv"]
    for fmt, d in zip(("labelstudio", "fiftyone", "csv"), downloads):
        name, mime, data = export_bytes(run, fmt)
        assert (name, mime, data) == (d.file_name, d.mime, d.make())
        texts = unzip(data) if mime == "application/zip" else {name: data.decode()}
        assert TOKEN not in name and name.startswith("20261206-040000-zero_shot-a1b2c3-" + fmt)
        for fname, text in texts.items():
            for secret in (TOKEN, str(run.parents[2]), data_dir, str(Path(data_dir).parent), str(run)):
                assert secret not in text, f"{fmt} {fname} carries {secret}"


def test_export_never_writes_over_what_it_did_not_write(run, tmp_path, capsys):
    kept = digests(run)
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "tasks.json").write_text("[]")
    for fmt, out in (("csv", mine), ("labelstudio", full), ("fiftyone", run / "export"), ("csv", run / "x.csv"),
                     ("csv", full), ("fiftyone", mine)):
        assert main(["export", "--run", str(run), "--format", fmt, "--out", str(out)]) == 2, (fmt, out)
        err = capsys.readouterr().err
        assert err.startswith("error: --out") and "Nothing was changed" in err and "Traceback" not in err
    assert mine.read_text() == "my,own\n1,2\n" and (full / "tasks.json").read_text() == "[]"
    assert digests(run) == kept and not (run / "export").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    for _ in range(2):  # an empty folder, then the same folder again: export wrote it
        write_export(run, "labelstudio", empty)
        write_export(run, "csv", tmp_path / "again.csv")


def test_cli_writes_each_format_says_how_to_import_and_only_reads_the_run(run, tmp_path, capsys):
    kept = digests(run)
    root = Path(json.loads((run / "config.json").read_text())["data"])
    for fmt, out, files in (("labelstudio", "ls", ["tasks.json", "label_config.xml", "IMPORT.txt"]),
                            ("fiftyone", "fo", ["labels.json", "data.json", "IMPORT.txt"]),
                            ("csv", "labels.csv", [])):
        capsys.readouterr()
        assert main(["export", "--run", str(run), "--format", fmt, "--out", str(tmp_path / out)]) == 0
        said = capsys.readouterr().out
        written = [tmp_path / out / f for f in files] or [tmp_path / out]
        assert all(f"wrote {p}" in said and p.is_file() for p in written), said
        assert "unknown" in said
    guide = (tmp_path / "ls" / "IMPORT.txt").read_text()  # Label Studio refuses a storage that is the root itself
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root.parent} label-studio" in guide
    assert f"absolute local path {root};" in guide
    data = json.loads((tmp_path / "fo" / "data.json").read_text())
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in data.values())  # the CLI's copy finds every image
    assert "data_path='data.json'" in (tmp_path / "fo" / "IMPORT.txt").read_text()
    assert digests(run) == kept
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text((run / "config.json").read_text())
    for argv, words in ((["--run", str(tmp_path / "nope")], "does not exist"),
                        (["--run", str(tmp_path / "ls")], "not a run folder"),
                        (["--run", str(tmp_path / "unfinished")], "has not finished"),
                        (["--run", str(run), "--threshold", "nan"], "must be a number")):
        assert main(["export", *argv, "--format", "csv", "--out", str(tmp_path / "n.csv")]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_names_that_need_care(run):
    """A file name with spaces, '#' and '&' is quoted in its URL; two images differing only by extension keep two
    FiftyOne keys (and the download's recipe then reads data.json); a prior class called 'unknown' keeps its name."""
    labels = labels_of(run)
    tasks = json.loads(unzip(export_bytes(run, "labelstudio")[2])["tasks.json"])
    odd = [t["data"]["image"] for t in tasks if t["data"]["path"] == "red/" + ODD]
    assert odd == [LOCAL_FILES + "my_photos/red/sky%20blue%20%231%20%26%20more.png"]
    fo = json.loads(unzip(export_bytes(run, "fiftyone")[2])["data.json"])
    assert len(fo) == len(labels.rows) and {"green/img_0.png", "green/img_0.jpg"} <= set(fo.values())
    assert "data.json" in how_to_import("fiftyone", labels)
    assert unknown_label(["cat"]) == "unknown" and unknown_label(["cat", " Unknown"]) == "unknown (rejected)"
    assert unknown_label(["unknown", "unknown (rejected)"]) == "unknown (rejected 2)"
    config = ET.fromstring(label_config(labels.__class__(**{**labels.__dict__, "classes": ["a&b", "unknown"],
                                                           "unknown": unknown_label(["a&b", "unknown"])})))
    assert [c.get("value") for c in config.iter("Choice")] == ["a&b", "unknown", "unknown (rejected)"]


def test_a_persons_label_in_every_format(run):
    """A person's labels (issue 31): the CSV's label and labelled_by, FiftyOne's label with a labelled_by
    attribute, Label Studio's completed annotation beside the run's own prediction; the rest as the run says, and
    without labels nothing changes. (Caught: labels ignored; the annotation missing; a server path in the CSV.)"""
    from ueo_core.downloads import run_downloads
    want = expected(run)
    preds = read_predictions(run)
    root = Path(json.loads((run / "config.json").read_text())["data"])
    by_rel = {Path(p).relative_to(root).as_posix(): p for p in preds.paths}
    a = next(r for r, (lab, _) in sorted(want.items()) if lab != "unknown")
    b = next(r for r, (lab, _) in sorted(want.items()) if r != a)
    other = next(c for c in ("red", "green", "blue") if c != want[a][0])
    labels = {os.path.realpath(by_rel[a]): other, by_rel[b]: "unknown"}
    person = {a: other, b: "unknown"}
    rows = list(csv.DictReader(io.StringIO(export_bytes(run, "csv", labels=labels)[2].decode())))
    assert {r["path"]: (r["label"], r["labelled_by"]) for r in rows} == {
        p: ((person[p], "person") if p in person else (lab, "model")) for p, (lab, _) in want.items()}
    tasks = json.loads(unzip(export_bytes(run, "labelstudio", labels=labels)[2])["tasks.json"])
    for t in tasks:
        p = t["data"]["path"]
        assert t["predictions"][0]["result"][0]["value"]["choices"] == [want[p][0]]  # the run's, always
        if p in person:
            (ann,) = t["annotations"]
            assert ann["result"][0]["value"]["choices"] == [person[p]] and ann["was_cancelled"] is False
            assert ann["result"][0]["from_name"] == t["predictions"][0]["result"][0]["from_name"]
        else:
            assert "annotations" not in t
    fo = unzip(export_bytes(run, "fiftyone", labels=labels)[2])
    data, labs = json.loads(fo["data.json"]), json.loads(fo["labels.json"])["labels"]
    for k, rel in data.items():
        assert labs[k]["label"] == person.get(rel, want[rel][0])
        assert labs[k]["attributes"]["labelled_by"] == ("person" if rel in person else "model")
    assert "2 of these labels are a person's" in fo["IMPORT.txt"]
    # the app's downloads pass them on; without labels, the same bytes as before
    thr = json.loads((run / "metrics.json").read_text())["after"]["threshold"]
    dl = {d.label: d for d in run_downloads(run, preds, thr, labels=labels)}
    text = dl["labels for plain CSV"].make().decode()
    assert "labelled_by" in text and str(root) not in text
    assert export_bytes(run, "csv", labels=None) == export_bytes(run, "csv")
    assert "labelled_by" not in export_bytes(run, "csv")[2].decode()
