"""Every file the app offers for a run, in one list (Inspect's buttons and the privacy test read the same): the
predictions at the page's score and threshold, the labels for other tools (``ueo_core.export``), the checkpoint
and the report, each made only when asked and scrubbed of server paths and the token (``ueo_core.privacy``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .export import export_downloads
from .privacy import Download, data_root, scrub, scrub_checkpoint
from .runs import RunFolder
from .scores import LABELS


def run_downloads(run_dir: str | Path, predictions=None, threshold: Optional[float] = None,
                  labels: Optional[dict] = None) -> list[Download]:
    """Every file the app offers for a run, scrubbed of server paths and the token. ``predictions`` (a
    ``Predictions`` judged by the chosen score) and ``threshold`` give the CSV at the page's slider; ``labels``
    (a person's, ``{server path: label}``) go into the exports, marked as a person's."""
    folder = RunFolder(run_dir)
    rid, cfg = folder.path.name, folder.config or {}
    root = data_root(cfg.get("data"))
    out = []
    if predictions is not None and threshold is not None:
        p, t = predictions, float(threshold)
        out.append(Download(f"predictions.csv at threshold {t:.3f} ({LABELS.get(p.score, p.score)})",
                            f"{rid}-predictions-{p.score}-t{t:.3f}.csv", "text/csv",
                            lambda: scrub(p.csv_at_threshold(t, root=root), run_dir).encode("utf-8", "surrogateescape"),
                            "images named by their path inside the data folder"))
        out += export_downloads(run_dir, p.score, t, labels=labels)
    if folder.checkpoint_path.exists():
        what = ("the moving-average image tower" if cfg.get("method") == "clipood"
                else "prompt context + norm affine parameters only")
        out.append(Download("adapted checkpoint (.safetensors)", f"{rid}.safetensors", "application/octet-stream",
                            lambda: scrub_checkpoint(folder.checkpoint_path.read_bytes(), run_dir),
                            what + " (safetensors: no pickle)"))
    if (folder.path / "report.md").exists():
        out.append(Download("run report (.md)", f"{rid}-report.md", "text/markdown",
                            lambda: scrub((folder.path / "report.md").read_text(errors="surrogateescape"),
                                          run_dir).encode("utf-8", "surrogateescape")))
    return out
