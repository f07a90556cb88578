"""A shared server: a session reads only its own workspace and the configured data roots (issue 10).

Engine-level checks of ``ueo_core.roots`` and app-level checks (AppTest) of every input that takes a path, of the
``?run=`` parameter and of the image guards."""
import os

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from helpers import make_folder
from ueo_core.roots import PathRefused, Root, check_path


@pytest.fixture
def world(tmp_path):
    """Two workspaces under one workspaces root, a data root, and a secret outside every root."""
    ws_root = tmp_path / "workspaces"
    mine, other = ws_root / ("a" * 32), ws_root / ("b" * 32)
    for w in (mine, other):
        make_folder(w / "uploads" / "set", classes=("cat", "dog"), per_class=2)
    data = make_folder(tmp_path / "data" / "pets", classes=("cat", "dog"), per_class=2)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("s3cret")
    roots = [Root("your uploads", mine, show_path=False), Root("data", tmp_path / "data")]
    return dict(tmp=tmp_path, ws_root=ws_root, mine=mine, other=other, data=data, secret=secret, roots=roots)


def test_paths_inside_the_roots_are_resolved_and_allowed(world):
    assert check_path(str(world["data"]), world["roots"], [world["ws_root"]]) == world["data"].resolve()
    own = world["mine"] / "uploads" / "set"
    assert check_path(str(own), world["roots"], [world["ws_root"]]) == own.resolve()


@pytest.mark.parametrize("typed", ["/etc", "/", "{secret}", "{secret}/key.txt", "{secret}/missing",
                                   "{data}/../../secret", "relative/path", "~", "{other}", "{other}/uploads/set",
                                   "{ws_root}", "{data}/\x00x"])
def test_paths_outside_the_roots_are_refused_with_one_message(world, typed):
    """Refused whether the path exists or not, with the same words (nothing is revealed about what is there)."""
    text = typed.format(**{k: v for k, v in world.items() if k != "roots"})
    with pytest.raises(PathRefused) as err:
        check_path(text, world["roots"], [world["ws_root"]])
    msg = str(err.value)
    assert "a" * 32 not in msg  # the session's token is never shown
    if text.startswith("/") and "\x00" not in text:
        same = str(pytest.raises(PathRefused, check_path, "/no/such/place/at/all", world["roots"],
                                 [world["ws_root"]]).value)
        assert msg == same


def test_a_symlink_cannot_lead_out_of_a_root(world):
    link = world["data"] / "escape"
    link.symlink_to(world["secret"], target_is_directory=True)
    with pytest.raises(PathRefused):
        check_path(str(link), world["roots"], [world["ws_root"]])
    with pytest.raises(PathRefused):
        check_path(str(link / "key.txt"), world["roots"], [world["ws_root"]])


def test_an_operator_root_that_contains_the_workspaces_still_denies_them(world, monkeypatch):
    from ueo_core.roots import extra_roots
    monkeypatch.setenv("UEO_DATA_ROOTS", f"{world['tmp']}{os.pathsep}")
    roots = [Root("your uploads", world["mine"], show_path=False)] + extra_roots()
    assert check_path(str(world["secret"]), roots, [world["ws_root"]]) == world["secret"].resolve()  # opened
    assert check_path(str(world["mine"] / "uploads"), roots, [world["ws_root"]])                     # own: yes
    for p in (world["other"], world["other"] / "uploads" / "set", world["ws_root"]):                  # others: no
        with pytest.raises(PathRefused):
            check_path(str(p), roots, [world["ws_root"]])


# ------------------------------------------------------------------------------------------------- the app
@pytest.fixture
def server_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("UEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("studio.workspace.WORKSPACES", tmp_path / "ws")
    monkeypatch.delenv("UEO_DATA_ROOTS", raising=False)
    other = tmp_path / "ws" / ("c" * 32)
    make_folder(other / "uploads" / "private", classes=("cat", "dog"), per_class=2)
    (other / "runs" / "20260101-000000-ueo-abcdef").mkdir(parents=True)
    return dict(tmp=tmp_path, other=other)


def page(path: str, **session) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    for k, v in session.items():
        at.session_state[k] = v
    return at


def texts(at) -> str:
    return " ".join(str(e.value) for e in list(at.error) + list(at.markdown) + list(at.caption) +
                    list(at.subheader) + list(at.warning) + list(at.info))


@pytest.mark.parametrize("typed", ["/etc", "/", "{ws}", "{other}", "{other}/uploads/private"])
def test_data_page_refuses_folders_outside_the_roots(server_dirs, typed):
    at = page("pages/1_Data.py")
    at.run()
    at.radio[0].set_value("Folder on this machine").run()
    text = typed.format(ws=server_dirs["tmp"] / "ws", other=server_dirs["other"])
    at.text_input[0].set_value(text).run()
    assert not at.exception
    assert any("Not allowed" in e.value for e in at.error), [e.value for e in at.error]
    assert "c" * 32 not in texts(at).replace(text, "")  # no listing of other sessions
    assert not at.get("image") or all("private" not in str(i) for i in at.get("image"))
    assert not any(b.label == "Apply data and prior" for b in at.button)  # nothing to apply


def test_data_page_allows_a_folder_under_an_operator_root(server_dirs, monkeypatch):
    mine = make_folder(server_dirs["tmp"] / "photos", classes=("cat", "dog"), per_class=2)
    monkeypatch.setenv("UEO_DATA_ROOTS", str(server_dirs["tmp"] / "photos"))
    at = page("pages/1_Data.py")
    at.run()
    at.radio[0].set_value("Folder on this machine").run()
    at.text_input[0].set_value(str(mine)).run()
    assert not at.exception and not at.error
    assert any(b.label == "Apply data and prior" for b in at.button)


def test_checkpoint_path_outside_the_roots_answers_the_same_for_any_file(server_dirs):
    answers = []
    for path in ("/etc/shadow", "/etc/passwd", "/no/such/file.safetensors"):
        at = page("pages/2_Model.py")
        at.run()
        at.radio[0].set_value("Local checkpoint file").run()
        at.text_input[0].set_value(path).run()
        at.button[0].click().run()
        assert not at.exception
        answers.append([e.value for e in at.error if "Not allowed" in e.value or "not found" in e.value.lower()])
    assert answers[0] and answers[0] == answers[1] == answers[2], answers


def test_a_checkpoint_can_be_uploaded_into_the_workspace(server_dirs, monkeypatch):
    from studio import state, workspace
    monkeypatch.setattr(workspace, "workspace", lambda: server_dirs["tmp"] / "ws" / ("d" * 32))
    out = state.save_checkpoint_upload("../../my model?.safetensors", b"abc")
    assert out.parent == server_dirs["tmp"] / "ws" / ("d" * 32) / "checkpoints"
    assert out.name == "my_model.safetensors" and out.read_bytes() == b"abc"
    with pytest.raises(ValueError, match="safetensors"):
        state.save_checkpoint_upload("evil.sh", b"x")


def test_source_folders_outside_the_roots_are_refused_on_adapt(server_dirs):
    at = page("pages/3_Adapt.py")
    at.run()
    at.selectbox[0].set_value("clipood").run()
    at.text_input[0].set_value(f"/etc, {server_dirs['other']}/uploads/private").run()
    assert not at.exception
    assert sum("Not allowed" in e.value for e in at.error) == 2


@pytest.mark.parametrize("run", ["../../{tok}/runs/20260101-000000-ueo-abcdef", "{other}/runs/20260101-000000-ueo-abcdef",
                                 "../../../../etc", "/etc", "20260101-000000-ueo-abcdef"])
def test_run_parameter_cannot_reach_another_workspace(server_dirs, run):
    """?run= is a run id of *this* workspace, never a path: traversal, absolute paths and another session's id
    (which does not exist here) all leave the page with no run."""
    from studio import state
    at = page("pages/5_Inspect.py")
    at.query_params["run"] = run.format(tok="c" * 32, other=server_dirs["other"])
    at.run()
    assert not at.exception
    assert "active_run" not in at.session_state
    assert any("No finished run" in i.value for i in at.info)
    if "/" in run:
        assert not state.RUN_ID.match(run.format(tok="x", other="y"))  # refused before any file is touched


def test_a_one_pixel_wide_strip_is_refused_before_it_is_resized(tmp_path):
    from ueo_core.data import check_image, load_folder
    root = make_folder(tmp_path / "d", classes=("cat", "dog"), per_class=2)
    Image.new("L", (1, 1_000_000)).save(root / "cat" / "strip.png")
    assert (root / "cat" / "strip.png").stat().st_size < 10_000
    assert "elongated" in check_image(root / "cat" / "strip.png")
    ims = load_folder(root)
    assert all(os.path.basename(f) != "strip.png" for f in ims.files) and any("elongated" in r for _, r in ims.skipped)


def test_16_bit_float_and_rotated_images_arrive_as_a_viewer_shows_them(tmp_path):
    from ueo_core.data import load_rgb
    ramp = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(ramp.astype(np.float32), mode="F").save(tmp_path / "f.tif")
    for name in ("g16.png", "f.tif"):
        arr = np.asarray(load_rgb(tmp_path / name), dtype=float)
        assert arr.min() < 5 and arr.max() > 250 and 100 < arr.mean() < 155, name  # not all white / all black
    img = Image.new("RGB", (40, 20), "red")
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    img.save(tmp_path / "e.jpg", exif=exif)
    assert load_rgb(tmp_path / "e.jpg").size == (20, 40)


def test_the_workspace_token_is_not_shown_on_the_data_page(server_dirs):
    """An upload's paths (the summary, skipped files) show "[your workspace]", never the secret token."""
    token = "e" * 32
    up = make_folder(server_dirs["tmp"] / "ws" / token / "uploads" / "x", classes=("cat", "dog"), per_class=2)
    (up / "cat" / "broken.png").write_bytes(b"nope")
    at = page("pages/1_Data.py", ws=token,
              data={"source": "upload", "spec": str(up), "label": "Upload · 5 file(s)", "prior": ["cat", "dog"],
                    "preset": None, "setting": "ODA"})
    at.run()
    assert not at.exception and any("Skipped files (1)" in s.value for s in at.subheader)
    shown = texts(at) + " ".join(str(d.value) for d in at.dataframe)
    assert token not in shown and "[your workspace]" in shown
