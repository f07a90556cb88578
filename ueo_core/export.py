"""A run's labels for the tools people label and curate with: Label Studio, FiftyOne, a plain CSV.

Every format comes from one table, ``labels_of(run, score, threshold)``: the run's predictions judged by one
known/unknown score at one threshold (``Predictions.by(score).at_threshold(t)``, as on Inspect). An image below the
threshold gets the label ``unknown`` (the rejected ones go somewhere a person can see and correct them); every
image keeps its nearest known class. ``confidence`` is always the max softmax (a probability: Label Studio refuses a
prediction score outside [0, 1]); the score that decided, and its value, travel beside it.

- Label Studio (``labelstudio``): ``tasks.json``, a list of tasks ``{"data": {"image": URL, "path": ...},
  "predictions": [{"model_version", "score", "result": [{"from_name": "choice", "to_name": "image",
  "type": "choices", "value": {"choices": [label]}}]}]}`` (https://labelstud.io/guide/predictions, "JSON format for
  pre-annotations", image classification example) and ``label_config.xml`` (one ``<Choice>`` per prior class and
  one for unknown) whose ``Choices name``/``toName`` match the results. Image URLs follow Label Studio's local
  storage (https://labelstud.io/guide/storage_local, "Tasks with local storage file references"):
  ``/data/local-files/?d=<path below LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT>``. Label Studio refuses a local storage
  whose path *is* the document root ("cannot be the same as LOCAL_FILES_DOCUMENT_ROOT ... add a subdirectory"), so
  the default URL names the data folder too (``?d=my_photos/dogs/1.jpg``): the document root is the data folder's
  parent, the storage the data folder itself. ``image_prefix`` replaces ``/data/local-files/?d=my_photos/``.
- FiftyOne (``fiftyone``): ``fo.types.FiftyOneImageClassificationDataset`` (https://docs.voxel51.com/user_guide/
  import_datasets.html, "FiftyOneImageClassificationDataset"; checked against fiftyone 1.22's importer):
  ``labels.json`` ``{"classes": [...], "labels": {uuid: {"label", "confidence", "attributes"}}}``, read by FiftyOne's
  own importer, and ``data.json``, its documented data manifest (uuid -> image), instead of a copied ``data/``
  folder (``data_path="data.json"``: FiftyOne 1.22's default ``data/`` does not fall back to it). The uuid is the
  image's path inside the data folder without its extension: the key FiftyOne's importer gives each file when
  ``data_path`` is the data folder itself (``_load_data_map(..., ignore_exts=True)``), so a download, which carries
  no server path, is read with ``data_path="/path/to/my_photos"``. ``ImageClassificationDirectoryTree`` would need
  the images copied or linked into class folders, and has no confidence.
- CSV (``csv``): one row per image (path inside the data folder, label, nearest class, confidence, score, its value,
  threshold, known, true class when there is one).

``write_export`` writes a format to a folder (a file for CSV) for the CLI; ``export_bytes(run, fmt, score,
threshold) -> (file name, MIME type, bytes)`` gives the app's download (a zip for the formats with several files),
with no server path or workspace token (``privacy.scrub``); ``export_downloads`` lists the three as
``privacy.Download`` entries, made only when asked.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from .analysis.predictions import read_predictions
from .data import DataError, normalize_name
from .privacy import data_name, data_root, public_path, scrub
from .runs import RunFolder
from .scores import DEFAULT, SCORES

FORMATS = {"labelstudio": "Label Studio tasks with pre-filled choices", "fiftyone": "FiftyOne image classification",
           "csv": "plain CSV"}
UNKNOWN = "unknown"
LOCAL_FILES = "/data/local-files/?d="   # Label Studio's URL of a file below LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
FROM_NAME, TO_NAME = "choice", "image"  # the label config's <Choices name> and <Image name>: results must match them
MARKER = ".ueo-export.json"             # in a folder that export wrote: export may write it again
CSV_HEADER = ["path", "label", "predicted_class", "confidence", "score", "score_value", "threshold", "predicted_known"]


@dataclass(frozen=True)
class Row:
    path: str          # as the run read it (a server path)
    public: str        # inside the data folder (``privacy.public_path``)
    label: str         # the known class, or the unknown label when rejected
    nearest: str       # the nearest known class, also for a rejected image
    confidence: float  # max softmax
    value: float       # the deciding score's value
    known: bool
    true_class: str    # the class folder ('' without ground truth)
    inside: bool       # the image lies inside the data folder (else ``public`` is its file name only)
    by: str = "model"  # who gave ``label``: "model", or "person" (a person's label, ``ueo_core.labels``)


@dataclass(frozen=True)
class Labels:
    """A run's labels at one score and threshold: the one source every format is written from."""
    run_id: str
    method: str
    score: str
    threshold: float
    classes: list          # the prior
    unknown: str           # the label of rejected images
    rows: list             # [Row]
    root: Optional[Path]   # the data folder (None when unknown)
    data: str              # the data in words (``privacy.data_name``)
    has_truth: bool
    people: bool = False   # a person's labels were given: the formats say who labelled each image

    @property
    def choices(self) -> list:
        return list(self.classes) + [self.unknown]

    @property
    def model_version(self) -> str:
        return f"{self.run_id} {self.method} {self.score}>={self.threshold:.6g}"

    @property
    def outside(self) -> int:
        """Images outside the data folder: named by file name only, so their URLs and keys cannot find them."""
        return sum(not r.inside for r in self.rows)


def _inside(path: str, root: Optional[Path]) -> bool:
    if root is None:
        return False
    return any(Path(path).is_relative_to(r) for r in {Path(root), Path(os.path.realpath(root))})


def _plain(path: str) -> bool:
    """``path`` is as pathlib would write it (no empty or "." part, no trailing slash): then a string prefix
    decides ``Path.relative_to`` and its ``.name`` is after the last slash."""
    return not ("//" in path or "/./" in path or path.endswith(("/", "/.")) or path.startswith("./")
                or path in ("", "."))


def _publics(paths: Sequence[str], root: Optional[Path]) -> tuple[list, list]:
    """(``privacy.public_path``, ``_inside``) of each path, by string prefixes on plain paths (100,000 rows: the
    per-row pathlib and realpath took ~5 s, an Explore selection's downloads); any other path the slow way."""
    roots = [] if root is None else sorted({str(Path(root)), str(Path(os.path.realpath(root)))})
    if any(not _plain(r) or r == "/" for r in roots):
        return [public_path(q, root) for q in paths], [_inside(q, root) for q in paths]
    publics, insides = [], []
    for q in paths:
        hit = [q[len(r) + 1:] for r in roots if q.startswith(r) and q[len(r):len(r) + 1] == "/"]
        if not _plain(q) or len(set(hit)) > 1 or q in roots:
            publics.append(public_path(q, root))
            insides.append(_inside(q, root))
        else:
            publics.append(hit[0] if hit else q.rsplit("/", 1)[-1])
            insides.append(bool(hit))
    return publics, insides


def unknown_label(classes) -> str:
    """``unknown``, unless the prior has a class of that name (as the prior compares names: case, outer and
    runs of spaces and underscores aside): then ``unknown (rejected)``, numbered if that is taken too."""
    taken = {normalize_name(c) for c in classes}
    name, k = UNKNOWN, 1
    while normalize_name(name) in taken:
        name = f"{UNKNOWN} (rejected{f' {k}' if k > 1 else ''})"
        k += 1
    return name


def _read_run(run_dir: Path) -> dict:
    if not run_dir.is_dir():
        what = "is a file" if run_dir.exists() else "does not exist"
        raise DataError(f"--run {run_dir} {what}: give a run folder (made by `python -m ueo_core train`).")
    try:
        cfg = RunFolder(run_dir).config
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{run_dir / 'config.json'} is damaged (not JSON): this run cannot be exported.") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{run_dir} holds no config.json: it is not a run folder (made by `python -m ueo_core "
                        f"train`).")
    if not (run_dir / "predictions.csv").is_file():
        raise DataError(f"{run_dir} holds no predictions.csv: the run has not finished (or failed), so it has no "
                        f"labels to export yet.")
    return cfg


def default_threshold(run_dir, preds, score: str, cfg: dict) -> float:
    """The threshold Inspect starts at: the run's own for MSP (metrics.json), else the label-free split of this
    score's values (the run's --split)."""
    split = cfg.get("split", "2means")
    if score == DEFAULT:
        try:
            t = ((RunFolder(run_dir).read_json("metrics.json") or {}).get("after") or {}).get("threshold")
        except (json.JSONDecodeError, UnicodeDecodeError):
            t = None
        if isinstance(t, (int, float)) and math.isfinite(t):
            return float(t)
    return float(preds.default_threshold(split))


def labels_of(run_dir, score: Optional[str] = None, threshold: Optional[float] = None,
              only: Optional[Sequence[str]] = None, labels: Optional[dict] = None) -> Labels:
    """The run's labels at ``score`` (default MSP) and ``threshold`` (default: the run's own, see
    ``default_threshold``); ``only``: these images (paths as predictions.csv names them: Explore's selection). The
    threshold is decided on all the run's images either way. ``labels``: a person's labels (``{server path: class
    or "unknown"}``, ``ueo_core.labels``): where there is one it is the image's label, marked as a person's (a
    class outside the prior counts as unknown)."""
    run_dir = Path(run_dir)
    cfg = _read_run(run_dir)
    score = score or DEFAULT
    if score not in SCORES:
        raise DataError(f"Unknown score '{score}'. Choose one of: {', '.join(SCORES)}.")
    try:
        preds = read_predictions(run_dir)
    except (KeyError, ValueError, csv.Error) as err:
        raise DataError(f"{run_dir / 'predictions.csv'} is damaged ({err}): this run cannot be exported.") from None
    if not len(preds):
        raise DataError(f"{run_dir / 'predictions.csv'} lists no image: nothing to export.")
    msp = preds.confidence
    p = preds.by(score)  # a ValueError in words when the run has no such score
    t = default_threshold(run_dir, p, score, cfg) if threshold is None else float(threshold)
    if not math.isfinite(t):
        raise DataError(f"The threshold must be a number, not {threshold}.")
    known = np.ones(len(p), dtype=bool)
    known[p.at_threshold(t)["rejected"]] = False
    classes = list(p.classes)
    unknown = unknown_label(classes)
    root = data_root(cfg.get("data"))
    from .labels import person_labels
    given = person_labels(p.paths, labels)
    keep = (np.arange(len(p)) if only is None else
            np.flatnonzero(np.fromiter(map(set(only).__contains__, p.paths), dtype=bool, count=len(p))))
    paths = [p.paths[i] for i in keep]
    publics, insides = _publics(paths, root)
    nearest = np.array(classes + [""], dtype=object)[np.where((p.pred >= 0) & (p.pred < len(classes)), p.pred,
                                                              len(classes))]
    rows = []
    for j, i in enumerate(keep.tolist()):
        label, by = nearest[i] if known[i] else unknown, "model"
        if i in given:  # a person's label (``known`` stays the run's verdict): a prior class, else unknown
            label, by = given[i] if given[i] in classes else unknown, "person"
        rows.append(Row(path=paths[j], public=publics[j], label=label, nearest=nearest[i],
                        confidence=float(msp[i]), value=float(p.confidence[i]), known=bool(known[i]),
                        true_class=p.true_class[i], inside=insides[j], by=by))
    return Labels(run_id=run_dir.resolve().name, method=str(cfg.get("method", "")), score=score, threshold=t,
                  classes=classes, unknown=unknown, rows=rows, root=root, data=data_name(cfg.get("data")),
                  has_truth=any(r.true_class for r in rows), people=labels is not None)


# ------------------------------------------------------------------------------------------------- Label Studio
def default_image_prefix(labels: Labels) -> str:
    """``/data/local-files/?d=<data folder's name>/``: the document root is the data folder's parent."""
    name = labels.root.name if labels.root is not None else ""
    return LOCAL_FILES + (quote(name, errors="surrogateescape") + "/" if name else "")


def label_config(labels: Labels) -> str:
    """Label Studio's labeling config: the image and one single choice among the prior's classes and unknown."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in labels.choices)
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def labelstudio_tasks(labels: Labels, image_prefix: Optional[str] = None) -> list:
    """One Label Studio task per image, its label pre-filled as a prediction a person accepts or corrects."""
    prefix = default_image_prefix(labels) if image_prefix is None else image_prefix
    tasks = [{"data": {"image": prefix + quote(r.public, safe="/", errors="surrogateescape"), "path": r.public},
              "predictions": [{"model_version": labels.model_version, "score": r.confidence,
                               "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                                           "value": {"choices": [r.label if r.by == "model" else
                                                                 (r.nearest if r.known else labels.unknown)]}}]}]}
             for r in labels.rows]
    for task, r in zip(tasks, labels.rows):  # a person's label: a completed annotation beside the run's prediction
        if r.by == "person":
            task["data"]["labelled_by"] = "person"
            task["annotations"] = [{"result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                                                "value": {"choices": [r.label]}}], "was_cancelled": False}]
    return tasks


# ------------------------------------------------------------------------------------------------------ FiftyOne
def fiftyone_keys(labels: Labels) -> list:
    """Each image's uuid: its path inside the data folder without extension (FiftyOne's own key for a file of a
    ``data_path`` folder). Two files that differ only by extension get distinct keys (``a/img_jpg``), which only
    ``data.json`` resolves."""
    stems = [os.path.splitext(r.public)[0] for r in labels.rows]
    counts = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    keys, used = [], set()
    for s, r in zip(stems, labels.rows):
        k = s if counts[s] == 1 else s + "_" + os.path.splitext(r.public)[1].lstrip(".")
        while k in used:
            k += "_"
        used.add(k)
        keys.append(k)
    return keys


def fiftyone_labels(labels: Labels) -> dict:
    """``labels.json`` of a FiftyOneImageClassificationDataset: label and confidence (max softmax) per image; the
    nearest known class and the deciding score as the label's attributes."""
    return {"classes": labels.choices,
            "labels": {k: {"label": r.label, "confidence": r.confidence if r.by == "model" else None,
                           "attributes": {"nearest_class": r.nearest, "score_name": labels.score,
                                          "score_value": r.value, "threshold": labels.threshold,
                                          **({"labelled_by": r.by} if labels.people else {})}}
                       for k, r in zip(fiftyone_keys(labels), labels.rows)}}


def fiftyone_data(labels: Labels, absolute: bool) -> dict:
    """``data.json``, FiftyOne's data manifest (uuid -> image): absolute paths for the CLI, paths inside the data
    folder for a download."""
    return {k: (r.path if absolute else r.public) for k, r in zip(fiftyone_keys(labels), labels.rows)}


def _clashes(labels: Labels) -> bool:
    return any(k != os.path.splitext(r.public)[0] for k, r in zip(fiftyone_keys(labels), labels.rows))


# ----------------------------------------------------------------------------------------------------------- CSV
def csv_text(labels: Labels) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER + (["true_class"] if labels.has_truth else []) + (["labelled_by"] if labels.people else []))
    for r in labels.rows:
        w.writerow([r.public, r.label, r.nearest, repr(r.confidence), labels.score, repr(r.value),
                    repr(labels.threshold), r.known] + ([r.true_class] if labels.has_truth else [])
                   + ([r.by] if labels.people else []))
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ how to import
def how_to_import(fmt: str, labels: Labels, where: Optional[Path] = None, image_prefix: Optional[str] = None) -> str:
    """Plain steps to get the export into its tool. ``where`` (the CLI's output folder) fills in real paths; without
    it (a download) the data folder is named in words."""
    folder = str(labels.root) if where is not None and labels.root is not None else f"/path/to/{_folder_word(labels)}"
    parent = str(Path(folder).parent)
    n_unknown = sum(r.label == labels.unknown for r in labels.rows)
    head = (f"{len(labels.rows)} images of {labels.data}: {len(labels.rows) - n_unknown} labelled with a known class, "
            f"{n_unknown} '{labels.unknown}' (score {labels.score} below {labels.threshold:.6g}).\n")
    if labels.people:
        n_person = sum(r.by == "person" for r in labels.rows)
        head += (f"{n_person} of these label{'s are' if n_person != 1 else ' is'} a person's (the rest are the "
                 f"run's: '{labels.unknown}' where the score is below the threshold).\n")
    if fmt == "labelstudio":
        if image_prefix is not None and image_prefix != default_image_prefix(labels):
            serve = f"Images are addressed as {image_prefix}<path inside the data folder>: serve them there.\n"
        else:
            serve = (f"Start Label Studio with local files served from the data folder's parent:\n"
                     f"  LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \\\n"
                     f"  LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={parent} label-studio\n"
                     f"Create a project; Settings > Labeling Interface > Code: paste label_config.xml.\n"
                     f"Settings > Cloud Storage > Add Source Storage > Local files, absolute local path {folder};\n"
                     f"click Save (not Save & Sync: that would add every image a second time, unlabelled).\n")
        return (head + serve + "Import tasks.json (Data Manager > Import). Each image's label is a pre-filled "
                "prediction: accept it, or pick another choice.\n" + _outside_note(labels))
    if fmt == "fiftyone":
        here = str(where) if where is not None else "/path/to/this/unzipped/folder"
        if where is not None:
            load = (f"import fiftyone as fo\n"
                    f"ds = fo.Dataset.from_dir(dataset_dir={here!r}, data_path='data.json',\n"
                    f"                         dataset_type=fo.types.FiftyOneImageClassificationDataset)\n")
        elif not _clashes(labels):
            load = (f"import fiftyone as fo\n"
                    f"ds = fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneImageClassificationDataset,\n"
                    f"                         data_path={folder!r},  # your data folder\n"
                    f"                         labels_path={here + '/labels.json'!r})\n")
        else:  # two images differ only by extension: the folder alone cannot tell them apart, data.json can
            load = (f"import json, os, fiftyone as fo\n"
                    f"root, here = {folder!r}, {here!r}  # your data folder, this folder\n"
                    f"data = {{k: os.path.join(root, v) for k, v in json.load(open(os.path.join(here, "
                    f"'data.json'))).items()}}\n"
                    f"ds = fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneImageClassificationDataset,\n"
                    f"                         data_path=data, labels_path=os.path.join(here, 'labels.json'))\n")
        return (head + "In Python, with fiftyone installed:\n" + load +
                "Each sample's 'ground_truth' holds the label, its confidence (max softmax) and, as attributes, the "
                "nearest known class and the deciding score's value.\n" + _outside_note(labels))
    return head + "Columns: " + ", ".join(CSV_HEADER + (["true_class"] if labels.has_truth else [])) + ".\n"


def _outside_note(labels: Labels) -> str:
    n = labels.outside
    return (f"Note: {n} image{'s lie' if n != 1 else ' lies'} outside the data folder and {'are' if n != 1 else 'is'} "
            f"named by file name only: point the tool at {'them' if n != 1 else 'it'} yourself.\n") if n else ""


def _folder_word(labels: Labels) -> str:
    return labels.root.name if labels.root is not None and labels.root.name else "your-data-folder"


# --------------------------------------------------------------------------------------------- files and bytes
def files_of(fmt: str, labels: Labels, image_prefix: Optional[str] = None, absolute: bool = False,
             where: Optional[Path] = None) -> dict:
    """{file name: text} of a format. ``absolute``: FiftyOne's data.json names the images by server path (the CLI);
    a download never does."""
    if fmt not in FORMATS:
        raise DataError(f"Unknown format '{fmt}'. Choose one of: {', '.join(FORMATS)}.")
    if fmt == "csv":
        return {"labels.csv": csv_text(labels)}
    guide = how_to_import(fmt, labels, where, image_prefix)
    if fmt == "labelstudio":
        return {"tasks.json": json.dumps(labelstudio_tasks(labels, image_prefix), indent=1) + "\n",
                "label_config.xml": label_config(labels), "IMPORT.txt": guide}
    return {"labels.json": json.dumps(fiftyone_labels(labels), indent=1) + "\n",
            "data.json": json.dumps(fiftyone_data(labels, absolute), indent=1) + "\n", "IMPORT.txt": guide}


def export_bytes(run_dir, fmt: str, score: Optional[str] = None, threshold: Optional[float] = None,
                 image_prefix: Optional[str] = None, only: Optional[Sequence[str]] = None,
                 labels: Optional[dict] = None) -> tuple[str, str, bytes]:
    """(file name, MIME type, bytes) of a download: the CSV itself, or a zip of one folder for Label Studio and
    FiftyOne. Images are named by their path inside the data folder; every text is scrubbed of server paths and
    the workspace token. Raises ``DataError`` (a ValueError) in words. ``labels``: a person's (``labels_of``)."""
    labels = labels_of(run_dir, score, threshold, only, labels)
    name, mime = _name(labels, fmt, only is not None)
    stem = name.rsplit(".", 1)[0]
    texts = {n: scrub(t, run_dir).encode("utf-8", "surrogateescape")
             for n, t in files_of(fmt, labels, image_prefix).items()}
    if fmt == "csv":
        return name, mime, texts["labels.csv"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for fname, data in texts.items():  # a fixed date: the same run gives the same bytes
            z.writestr(zipfile.ZipInfo(f"{stem}/{fname}", date_time=(2020, 1, 1, 0, 0, 0)), data,
                       compress_type=zipfile.ZIP_DEFLATED)
    return name, mime, buf.getvalue()


def export_downloads(run_dir, score: Optional[str] = None, threshold: Optional[float] = None,
                     only: Optional[Sequence[str]] = None, labels: Optional[dict] = None) -> list:
    """The three formats as ``privacy.Download`` entries (label, file name, MIME, ``make``: the bytes, made only
    when asked), for the app's download buttons at the page's score and threshold (``only``: a selection)."""
    from .privacy import Download
    given = labels  # a person's labels (``labels_of``)
    labels = labels_of(run_dir, score, threshold, only, given)  # (raises DataError in words before any button is drawn)
    some = only is not None

    def one(fmt):
        return Download(f"labels for {FORMATS[fmt]}", *_name(labels, fmt, some),
                        lambda: export_bytes(run_dir, fmt, labels.score, labels.threshold, only=only,
                                             labels=given)[2], _HELP[fmt])
    return [one(f) for f in FORMATS]


_HELP = {"labelstudio": "a zip: tasks.json + label_config.xml + IMPORT.txt (images served from your data folder)",
         "fiftyone": "a zip: labels.json + data.json + IMPORT.txt (fo.Dataset.from_dir with data_path = your data "
                     "folder)",
         "csv": "one row per image, images named by their path inside the data folder"}


def _name(labels: Labels, fmt: str, selection: bool = False) -> tuple:
    """(file name, MIME type) of a download (a selection's says how many images it holds)."""
    stem = (f"{labels.run_id}-{fmt}-{labels.score}-t{labels.threshold:.3f}"
            + (f"-selection-{len(labels.rows)}" if selection else ""))
    return (stem + ".csv", "text/csv") if fmt == "csv" else (stem + ".zip", "application/zip")


def _written_by_export(out: Path, fmt: str) -> bool:
    if fmt == "csv":
        try:
            with open(out, encoding="utf-8", errors="replace") as fh:
                return fh.readline().rstrip("\n").split(",")[:len(CSV_HEADER)] == CSV_HEADER
        except OSError:
            return False
    return (out / MARKER).is_file() or not any(out.iterdir())


def check_out(run_dir, fmt: str, out) -> Path:
    """``out`` if export may write there: never inside the run folder, never over something export did not write
    (an empty folder is fine). Raises DataError in words; nothing is changed."""
    out, run = Path(out), Path(run_dir).resolve()
    real = out.resolve()
    if real == run or run in real.parents:
        raise DataError(f"--out {out} is inside the run folder {run_dir}: an export never writes into a run. Give "
                        f"another --out. Nothing was changed.")
    kind = "file" if fmt == "csv" else "folder"
    if out.exists() or out.is_symlink():
        if (fmt == "csv") != out.is_file() or out.is_symlink():
            raise DataError(f"--out {out} exists and is not a {kind}: --format {fmt} writes a {kind}. Give a new "
                            f"path. Nothing was changed.")
        if not _written_by_export(out, fmt):
            raise DataError(f"--out {out} already exists and was not written by `export`: it is left as it is. "
                            f"Give a new path (or delete it yourself). Nothing was changed.")
    return out


def write_export(run_dir, fmt: str, out, score: Optional[str] = None, threshold: Optional[float] = None,
                 image_prefix: Optional[str] = None, labels: Optional[dict] = None) -> tuple[list, str]:
    """Write a format to ``out`` (a file for CSV, a folder otherwise). Returns (paths written, how to import).
    ``labels``: a person's (``labels_of``)."""
    labels = labels_of(run_dir, score, threshold, labels=labels)
    out = check_out(run_dir, fmt, out)
    texts = files_of(fmt, labels, image_prefix, absolute=True, where=None if fmt == "csv" else out.resolve())
    if fmt == "csv":
        targets = {out: texts["labels.csv"]}
    else:
        out.mkdir(parents=True, exist_ok=True)
        targets = {out / n: t for n, t in texts.items()}
        targets[out / MARKER] = json.dumps({"format": fmt, "run": str(Path(run_dir).resolve()),
                                            "score": labels.score, "threshold": labels.threshold,
                                            "files": sorted(texts)}, indent=1) + "\n"
    for path, text in targets.items():  # written beside, then renamed: never half a file
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        tmp.replace(path)
    written = [p for p in targets if p.name != MARKER]
    return written, how_to_import(fmt, labels, None if fmt == "csv" else out.resolve(), image_prefix)


# ------------------------------------------------------------------------------------------- the command line
EXPORT_HELP = """Labels of a finished run for the tools people label and curate with, from its predictions at one
known/unknown score and threshold (default: MSP at the run's own threshold, as Inspect starts). Rejected images get
the label 'unknown'; every image keeps its nearest known class.

  labelstudio  OUT/ holds tasks.json (each image's label as a pre-filled prediction) and label_config.xml (one
               choice per prior class + unknown). Images are addressed as Label Studio serves local files,
               /data/local-files/?d=<data folder name>/<path inside it>. To import: start Label Studio with
               LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<the data
               folder's parent>; create a project with label_config.xml; add a Local files source storage whose
               path is the data folder (Save, not Save & Sync); import tasks.json. OUT/IMPORT.txt says it with
               your paths.
  fiftyone     OUT/ is a FiftyOneImageClassificationDataset (labels.json: label + confidence per image; data.json:
               where each image is, so nothing is copied): fo.Dataset.from_dir(dataset_dir=OUT,
               data_path="data.json", dataset_type=fo.types.FiftyOneImageClassificationDataset).
  csv          OUT is one CSV file: path inside the data folder, label, nearest class, confidence, score, score
               value, threshold, known, true class (when the folder has class folders).

OUT must be new, or something `export` wrote before (an empty folder is fine too); the run folder is only read."""


def add_export_parser(sub) -> None:
    """``export``'s options (called by ``cli_parser.build_parser``)."""
    import argparse
    x = sub.add_parser("export", help="a run's labels for Label Studio, FiftyOne or a CSV (rejected images: "
                                      "'unknown')", description=EXPORT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("--run", required=True, help="run folder (made by `train` or `eval`); only read")
    x.add_argument("--format", required=True, choices=list(FORMATS),
                   help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    x.add_argument("--out", required=True, help="a new folder (labelstudio, fiftyone) or file (csv) to write")
    x.add_argument("--score", choices=list(SCORES), help=f"known/unknown score that decides (default {DEFAULT})")
    x.add_argument("--threshold", type=float,
                   help="images scoring below it are 'unknown' (default: the run's own threshold for msp, else the "
                        "run's label-free split of that score)")
    x.add_argument("--image-prefix",
                   help="labelstudio: what goes before each image's path inside the data folder in its URL "
                        "(default /data/local-files/?d=<data folder name>/ ; e.g. /data/local-files/?d=photos/2024/ "
                        "when the document root is higher up, or https://my.server/images/)")


def cmd_export(args) -> int:
    """``python -m ueo_core export``: write, then say what was written and how to import it."""
    written, guide = write_export(args.run, args.format, args.out, score=args.score, threshold=args.threshold,
                                  image_prefix=args.image_prefix)
    for p in written:
        print(f"wrote {p}")
    print(guide, end="")
    return 0


__all__ = ["FORMATS", "LOCAL_FILES", "Labels", "Row", "UNKNOWN", "add_export_parser", "check_out", "cmd_export",
           "csv_text", "export_bytes", "export_downloads", "fiftyone_data", "fiftyone_labels", "how_to_import",
           "label_config", "labels_of", "labelstudio_tasks", "unknown_label", "write_export"]
