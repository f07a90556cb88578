"""The workspace token never leaves the server: every page and every download of a workspace with an upload and
a finished run is searched for it (rendered text, tables, charts, CSV, JSON, the report, the checkpoint)."""
import io
import json
import struct
import zipfile

from conftest import ROOT
from helpers import make_folder, rendered
from studio import workspace

from test_app import Upload, app, isolated  # noqa: F401  (the same isolated workspace, Ray and AppTest)

PAGES = ["home.py"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


def zipped(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*.png")):
            zf.write(p, f"my_photos/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


def test_the_token_is_on_no_page_and_in_no_download(tmp_path):
    from studio.uploads import save_upload
    from ueo_core import explore, jobs
    from ueo_core.analysis import read_predictions

    home = app("home.py")
    home.run()
    ws = home.session_state["ws"]
    token_dir = workspace.WORKSPACES / ws
    root, _ = save_upload([Upload("my_photos.zip", zipped(make_folder(tmp_path / "src", per_class=4)))],
                          token_dir / "uploads" / "20261206-035612")
    data = {"source": "upload", "spec": str(root), "label": "Upload · 1 file(s)", "prior": ["red", "green"],
            "preset": None, "setting": "ODA"}
    adapt = app("pages/3_Adapt.py", ws=ws, data=data)
    adapt.run()
    next(n for n in adapt.number_input if n.label == "Epochs").set_value(1)
    adapt.button[0].click().run()
    rid = adapt.session_state["active_run"]
    run_dir = token_dir / "runs" / rid
    assert jobs.wait(run_dir, timeout=300).outcome == "done"
    assert ws in json.loads((run_dir / "config.json").read_text())["data"]  # the run folder itself holds the path
    ex = app("pages/4_Explore.py", ws=ws, data=data, active_run=rid)
    ex.run()
    assert jobs.wait(explore.folder(run_dir), timeout=300).outcome == "done"

    seen = {}
    for page in PAGES:
        at = app(page, ws=ws, data=data, active_run=rid)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        seen[page] = rendered(at)
        if page.endswith("Inspect.py"):  # another score: the galleries, captions and download follow it
            next(b for b in at.selectbox if b.label == "Known/unknown score").set_value("energy").run()
            seen[page + " (energy)"] = rendered(at)
            labels, threshold = [b.label for b in at.get("download_button")], at.slider[0].value
    leaks = [page for page, text in seen.items() if ws in text or str(token_dir) in text]
    for page in leaks:
        i = seen[page].index(ws)
        print("LEAK", page, seen[page][max(0, i - 300):i + 100])
    assert not leaks, f"the workspace token is shown on {leaks}"
    assert "upload 20261206-035612" in seen["pages/6_Compare.py"]  # the data column names the upload, by its time

    from ueo_core.downloads import run_downloads
    downloads = run_downloads(run_dir, read_predictions(run_dir).by("energy"), threshold)
    assert labels == [d.label for d in downloads]  # the page offers exactly these files

    files = {d.file_name: d.make() for d in downloads}
    assert len(files) == 6  # predictions, Label Studio, FiftyOne, labels CSV, checkpoint, report
    for name, data_bytes in files.items():
        parts = {name: data_bytes}
        if name.endswith(".zip"):  # compressed bytes would hide the token: every member is searched as written
            with zipfile.ZipFile(io.BytesIO(data_bytes)) as zf:
                parts = {f"{name}:{m}": zf.read(m) for m in zf.namelist()}
                assert all(ws not in m for m in zf.namelist())
        for part, raw in parts.items():
            assert ws.encode() not in raw, f"the token is in the download {part}"
            assert str(tmp_path).encode() not in raw, f"a server path is in the download {part}"
    csv_text = next(v for k, v in files.items() if "-predictions-" in k).decode()
    paths = [line.split(",")[0] for line in csv_text.splitlines()[1:]]
    assert sorted(paths) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))  # red/img_0.png …
    report = next(v for k, v in files.items() if k.endswith(".md")).decode()
    assert "upload 20261206-035612" in report
    ckpt = next(v for k, v in files.items() if k.endswith(".safetensors"))
    (n,) = struct.unpack("<Q", ckpt[:8])
    meta = json.loads(ckpt[8:8 + n])["__metadata__"]
    assert json.loads(meta["config"])["data"] == "upload 20261206-035612/my_photos"
    # the scrubbed checkpoint is still a checkpoint: its tensors load, equal to the run's own
    from safetensors.torch import load, load_file
    mine, theirs = load(ckpt), load_file(str(run_dir / "checkpoint.safetensors"))
    assert mine.keys() == theirs.keys() and all((mine[k] == theirs[k]).all() for k in mine)
