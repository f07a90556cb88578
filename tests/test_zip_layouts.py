"""The zip layouts people make, each read the way its maker means (issue 29, item 3).

Each zip is built entry by entry as the tool that makes it writes it (directory entries, macOS' ``__MACOSX/`` and
``.DS_Store``, Windows' ``Thumbs.db`` / ``desktop.ini``, names in UTF-8 or the OEM code page without the UTF-8
flag), uploaded through ``save_upload`` and read with ``load_folder``: the root the app ends on, the class folders
found (none: flat) and whether there is ground truth.

| layout (tool)                                        | the app now                          | before              |
|------------------------------------------------------|--------------------------------------|---------------------|
| ``my_photos/IMG…`` (Linux ``zip -r``)                | root my_photos, flat, no truth       | one class my_photos |
| same, macOS Compress (``__MACOSX/``, ``.DS_Store``)  | root my_photos, flat, no truth       | one class my_photos |
| same, Windows Send to (dir entries, Thumbs.db, …)    | root my_photos, flat, no truth       | one class my_photos |
| ``Archive/my_photos/IMG…`` (a folder in a folder)    | root my_photos, flat, no truth       | one class my_photos |
| ``my_photos/IMG…`` + ``notes.txt`` beside it         | root my_photos, flat; notes refused  | one class my_photos |
| Windows Send to, several photos selected (``IMG…``)  | root = the upload, flat              | same                |
| ``Vacation 2024/dogs/…, cats/…``                     | root Vacation 2024, dogs + cats      | same                |
| ``dogs/…, cats/…`` at the root                       | root = the upload, dogs + cats       | same                |
| macOS Compress of dogs + cats (``Archive.zip``)      | root = the upload, dogs + cats       | same                |
| Windows Send to ``Pets/dogs, cats`` + Thumbs.db, …   | root Pets, dogs + cats, none skipped | 3 files skipped     |
| ``Tiere/Hündin, Kätzchen``: UTF-8, no flag (macOS)   | classes Hündin, Kätzchen             | H├╝ndin, K├ñtzchen  |
| ``Fotos/Hündin, Kätzchen`` in cp437 (old Windows)    | classes Hündin, Kätzchen             | same                |

And a folder whose sub-folders match no prior class is not ground truth, from the Data page to Inspect's ✓/✗.
"""
from __future__ import annotations

import io
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_folder

FLAT_PRIOR = ["dog", "cat"]


def _jpg(seed: int) -> bytes:
    """A real small JPEG (noise), as a phone's IMG_0001.jpg but 24 x 24."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _photos(folder: str, n: int = 3, seed: int = 0) -> list[tuple[str, bytes]]:
    return [(f"{folder}IMG_{k + 1:04d}.jpg", _jpg(seed + k)) for k in range(n)]


def _zip(entries, windows: bool = False) -> bytes:
    """Entries (name, bytes or None for a directory entry) in this order; ``windows``: as Explorer writes them
    (made on MS-DOS, attributes 0x10 for a folder and 0x20 for a file)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, (2024, 5, 1, 12, 0, 0))
            if windows:
                info.create_system, info.external_attr = 0, 0x10 if data is None else 0x20
            elif data is None:
                info.external_attr = (0o40755 << 16) | 0x10
            else:
                info.external_attr = 0o100644 << 16
            zf.writestr(info, b"" if data is None else data)
    return buf.getvalue()


def _raw_names(data: bytes, names: dict[str, bytes]) -> bytes:
    """Put raw name bytes into a zip written with ASCII stand-ins of the same length, so that the UTF-8 flag stays
    off (zipfile sets it for any non-ASCII name): how macOS, Info-ZIP and old Windows wrote non-ASCII names."""
    for stand_in, raw in names.items():
        assert len(stand_in.encode()) == len(raw), stand_in
        data = data.replace(stand_in.encode(), raw)
    return data


def _appledouble() -> bytes:
    return b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\0" * 40


def _with_dirs(files, dirs=()):
    return [(d, None) for d in dirs] + list(files)


def _layouts():
    """(id, zip bytes, root inside the upload, class folders found, has truth with the prior, prior)."""
    dogs_cats = _photos("dogs/") + _photos("cats/", seed=10)
    classes = (["cats", "dogs"], True, ["dogs", "cats"])
    macos_flat = ([("my_photos/", None)] + _photos("my_photos/") + [("my_photos/.DS_Store", b"\0\0\0\1Bud1")]
                  + [("__MACOSX/", None), ("__MACOSX/my_photos/", None)]
                  + [(f"__MACOSX/my_photos/._IMG_{k + 1:04d}.jpg", _appledouble()) for k in range(3)])
    windows_flat = ([("my_photos/", None)] + _photos("my_photos/")
                    + [("my_photos/Thumbs.db", b"\xd0\xcf\x11\xe0" + b"\0" * 60),
                       ("my_photos/desktop.ini", b"[.ShellClassInfo]\r\nIconResource=x\r\n")])
    windows_pets = (_with_dirs(_photos("Pets/dogs/") + _photos("Pets/cats/", seed=10), ["Pets/", "Pets/dogs/",
                                                                                       "Pets/cats/"])
                    + [("Pets/Thumbs.db", b"\xd0\xcf\x11\xe0" + b"\0" * 60), ("Pets/desktop.ini", b"[x]\r\n"),
                       ("Pets/dogs/Thumbs.db", b"\xd0\xcf\x11\xe0" + b"\0" * 60)])
    macos_classes = (dogs_cats + [(".DS_Store", b"\0\0\0\1Bud1"), ("dogs/.DS_Store", b"\0\0\0\1Bud1")]
                     + [("__MACOSX/dogs/._IMG_0001.jpg", _appledouble()), ("__MACOSX/._dogs", _appledouble())])
    # macOS writes decomposed UTF-8 (u + U+0308) without the UTF-8 flag
    hundin_nfd = unicodedata.normalize("NFD", "Hündin").encode()     # 8 bytes
    katzchen_nfd = unicodedata.normalize("NFD", "Kätzchen").encode()  # 10 bytes
    utf8 = _raw_names(_zip(_photos("Tiere/Hu__ndin/") + _photos("Tiere/Ka__tzchen/", seed=10)),
                      {"Hu__ndin": hundin_nfd, "Ka__tzchen": katzchen_nfd})
    cp437 = _raw_names(_zip(_photos("Fotos/H_ndin/") + _photos("Fotos/K_tzchen/", seed=10), windows=True),
                       {"H_ndin": "Hündin".encode("cp437"), "K_tzchen": "Kätzchen".encode("cp437")})
    return [
        ("linux zip -r my_photos", _zip(_with_dirs(_photos("my_photos/"), ["my_photos/"])),
         "my_photos", [], False, FLAT_PRIOR),
        ("macOS Compress my_photos", _zip(macos_flat), "my_photos", [], False, FLAT_PRIOR),
        ("Windows Send to my_photos", _zip(windows_flat, windows=True), "my_photos", [], False, FLAT_PRIOR),
        ("a folder in a folder", _zip(_with_dirs(_photos("Archive/my_photos/"), ["Archive/", "Archive/my_photos/"])),
         "Archive/my_photos", [], False, FLAT_PRIOR),
        ("a note beside the folder", _zip(_photos("my_photos/") + [("notes.txt", b"from the beach")]),
         "my_photos", [], False, FLAT_PRIOR),
        ("Windows Send to several photos", _zip(_photos(""), windows=True), ".", [], False, FLAT_PRIOR),
        ("a top folder with class folders",
         _zip(_photos("Vacation 2024/dogs/") + _photos("Vacation 2024/cats/", seed=10)), "Vacation 2024", *classes),
        ("class folders at the root", _zip(dogs_cats), ".", *classes),
        ("macOS Compress dogs and cats", _zip(macos_classes), ".", *classes),
        ("Windows Send to Pets", _zip(windows_pets, windows=True), "Pets", *classes),
        ("UTF-8 names without the flag", utf8, "Tiere", ["Hündin", "Kätzchen"], True, ["Hündin", "Kätzchen"]),
        ("cp437 names (old Windows)", cp437, "Fotos", ["Hündin", "Kätzchen"], True, ["Hündin", "Kätzchen"]),
    ]


class _Upload:
    def __init__(self, name, data):
        self.name, self._data = name, data

    def getbuffer(self):  # as Streamlit's UploadedFile
        return memoryview(self._data)


@pytest.mark.parametrize("layout", _layouts(), ids=lambda c: c[0])
def test_each_zip_layout_is_read_as_its_maker_means(layout, tmp_path):
    from studio.uploads import save_upload
    from ueo_core.data import load_folder
    name, data, expected_root, expected_folders, truth, prior = layout
    dest = tmp_path / "upload"
    root, refused = save_upload([_Upload("photos.zip", data)], dest)
    assert root.resolve() == (dest / expected_root).resolve(), (name, root)
    ims = load_folder(root, prior=prior)
    assert sorted(ims.folders) == sorted(expected_folders), name
    assert ims.has_truth is truth, name
    assert len(ims) == (6 if expected_folders else 3) and not ims.skipped, (name, ims.skipped)
    assert not ims.warnings, (name, ims.warnings)
    if name == "a note beside the folder":
        assert [n for n, _ in refused] == ["notes.txt"] and "not used" in refused[0][1]
    else:
        assert not refused, (name, refused)
    if not truth:
        assert set(ims.folder_names) == {None} and "no ground truth" in ims.summary()
    else:
        assert "known classes" in ims.summary()


def test_sub_folders_that_name_no_prior_class_are_not_ground_truth_from_data_to_inspect(tmp_path, capsys):
    """``my_photos``-like folders with a prior of other names: no truth, a plain warning, and predictions.csv
    without a true class, so Inspect draws no ✓/✗ (before: '52 of 52 rejections are right', ✓ on dogs)."""
    from ueo_core.analysis.predictions import read_predictions
    from ueo_core.cli import main
    from ueo_core.data import NO_TRUTH, load_folder
    root = make_folder(tmp_path / "photos", classes=("2023", "2024"), per_class=3, size=24)
    ims = load_folder(root, prior=["cat", "dog", "bird"])
    assert not ims.has_truth and (ims.labels == NO_TRUTH).all() and set(ims.folder_names) == {None}
    assert sorted(ims.folders) == ["2023", "2024"]
    assert "known classes" not in ims.summary() and "unknown" not in ims.summary()
    assert "not classes of the prior: no ground truth" in ims.summary()
    [warning] = ims.warnings
    assert "2023, 2024" in warning and "not used as ground truth" in warning and "name them in the prior" in warning
    assert "Check the spelling" not in warning
    # a preset's folders stay its classes, even when all of them are unknown
    assert load_folder(root, prior=["cat", "dog"], include=["2023", "2024"]).has_truth
    # one folder named in the prior: the others are truly unknown, and the truth stands
    assert load_folder(root, prior=["2023", "dog"]).has_truth and not load_folder(root, prior=["2023", "dog"]).warnings

    out = tmp_path / "run"
    assert main(["train", str(root), "--prior", "cat,dog,bird", "--method", "zero_shot", "--model", "ueo-tiny",
                 "--pretrained", "none", "--batch-size", "8", "--out", str(out)]) == 0
    assert "not used as ground truth" in capsys.readouterr().err
    preds = read_predictions(out)
    assert len(preds) == 6 and preds.truth is None and set(preds.true_class) == {""}
    assert preds.rejection_marks(range(len(preds))) == [None] * len(preds)
