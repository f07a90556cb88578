"""Photo formats people have: every format is written here by the libraries themselves (Pillow, pillow-heif; no
binary fixtures), then read upright, trained on, and listed in predictions.csv."""
import csv
import io
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from ueo_core.data import IMG_EXTENSIONS, load_folder, load_rgb

from conftest import ROOT

# extension -> Pillow format name. HEIC is written by pillow-heif's plugin (registered by ueo_core.data).
FORMATS = {".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".webp": "WEBP", ".gif": "GIF",
           ".heic": "HEIF", ".avif": "AVIF"}
WITH_EXIF = [".jpg", ".png", ".tif", ".webp", ".heic", ".avif"]  # BMP and GIF carry no EXIF
RED, BLUE = (220, 30, 30), (30, 40, 220)


def upright(w=32, h=64) -> Image.Image:
    """What a viewer should show: a tall image, red on top, blue below."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2], arr[h // 2:] = RED, BLUE
    return Image.fromarray(arr)


def save(img: Image.Image, path, ext: str, orientation: int = 1):
    kw = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation  # EXIF Orientation
        kw["exif"] = exif.tobytes()
    if ext == ".gif":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        frame2 = Image.new("P", img.size, 0)  # a second, different frame: only the first one is read
        img.save(path, FORMATS[ext], save_all=True, append_images=[frame2], duration=100)
        return
    if ext in (".jpg", ".webp", ".heic", ".avif"):
        kw["quality"] = 90
    img.save(path, FORMATS[ext], **kw)


def top_and_bottom(img: Image.Image):
    a = np.asarray(img, dtype=np.float64)
    h = a.shape[0]
    return a[: h // 4].mean((0, 1)), a[-h // 4:].mean((0, 1))


def is_upright(img: Image.Image) -> bool:
    top, bottom = top_and_bottom(img)
    return img.size == (32, 64) and np.abs(top - RED).max() < 30 and np.abs(bottom - BLUE).max() < 30


def test_every_format_is_listed_for_folders_uploads_and_the_cli():
    assert set(FORMATS) <= set(IMG_EXTENSIONS)
    assert {".heif", ".jpeg", ".tiff"} <= set(IMG_EXTENSIONS)


@pytest.mark.parametrize("ext", list(FORMATS))
def test_each_format_reads_as_written(tmp_path, ext):
    path = tmp_path / f"photo{ext}"
    save(upright(), path, ext)
    assert is_upright(load_rgb(path)), ext


@pytest.mark.parametrize("ext", WITH_EXIF)
def test_exif_orientation_is_applied_in_every_format(tmp_path, ext):
    """Stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view"), as a phone held upright saves it:
    read back upright. Without the orientation the same pixels are read sideways (so the check can fail)."""
    stored = upright().transpose(Image.Transpose.ROTATE_90)  # 64 wide, 32 tall
    save(stored, tmp_path / f"turned{ext}", ext, orientation=6)
    save(stored, tmp_path / f"plain{ext}", ext)
    assert is_upright(load_rgb(tmp_path / f"turned{ext}")), ext
    assert load_rgb(tmp_path / f"plain{ext}").size == (64, 32)


def test_gif_reads_its_first_frame(tmp_path):
    save(upright(), tmp_path / "a.gif", ".gif")
    with Image.open(tmp_path / "a.gif") as img:
        assert getattr(img, "n_frames", 1) == 2
    assert is_upright(load_rgb(tmp_path / "a.gif"))  # frame 2 is all black


def test_a_file_no_reader_opens_is_skipped_with_its_reason(tmp_path):
    d = tmp_path / "d" / "cat"
    d.mkdir(parents=True)
    save(upright(), d / "ok.heic", ".heic")
    (d / "broken.heic").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 40)  # a HEIC header, nothing behind it
    (d / "fake.avif").write_text("not an image")
    (tmp_path / "d" / "dog").mkdir()
    save(upright(), tmp_path / "d" / "dog" / "ok.avif", ".avif")
    ims = load_folder(tmp_path / "d")
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ims.skipped}
    assert set(reasons) == {"broken.heic", "fake.avif"}
    assert all(("not an image" in r) or ("corrupt" in r) for r in reasons.values()), reasons
    assert sorted(p.rsplit("/", 1)[-1] for p in ims.files) == ["ok.avif", "ok.heic"]


def make_format_folder(root, orientation=6):
    """cat/ and dog/, each with one image of every format (dog's colours swapped), EXIF-turned where possible."""
    for cls, img in (("cat", upright()), ("dog", upright().transpose(Image.Transpose.FLIP_TOP_BOTTOM))):
        (root / cls).mkdir(parents=True)
        for ext in FORMATS:
            o = orientation if ext in WITH_EXIF else 1
            stored = img.transpose(Image.Transpose.ROTATE_90) if o == 6 else img
            save(stored, root / cls / f"{cls}{ext}", ext, orientation=o)
    return root


def test_a_folder_of_every_format_trains_from_the_cli_and_appears_in_predictions(tmp_path):
    data = make_format_folder(tmp_path / "photos")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "ueo_core", "train", str(data), "--prior", "cat,dog",
                           "--model", "ueo-tiny", "--pretrained", "none", "--epochs", "1", "--batch-size", "8", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out / "predictions.csv") as fh:
        names = sorted(r["path"].rsplit("/", 1)[-1] for r in csv.DictReader(fh))
    assert names == sorted(f"{c}{e}" for c in ("cat", "dog") for e in FORMATS)
    assert (out / "skipped.txt").read_text() == ""  # nothing skipped
    assert (out / "metrics.json").exists() and (out / "checkpoint.safetensors").exists()


def test_a_zip_and_loose_photos_of_every_format_are_accepted_by_the_upload(tmp_path):
    from studio.uploads import save_upload

    class Upload:
        def __init__(self, name, data):
            self.name, self._data = name, data

        def getbuffer(self):  # as Streamlit's UploadedFile
            return memoryview(self._data)

    src = make_format_folder(tmp_path / "src")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(src.rglob("*.*")):
            zf.write(p, f"photos/{p.relative_to(src)}")
    root, refused = save_upload([Upload("photos.zip", buf.getvalue())], tmp_path / "u1")
    ims = load_folder(root, prior=["cat", "dog"])
    assert not refused and not ims.skipped and len(ims) == 2 * len(FORMATS)
    assert all(is_upright(load_rgb(p)) or is_upright(load_rgb(p).transpose(Image.Transpose.FLIP_TOP_BOTTOM))
               for p in ims.files)
    loose = [Upload(p.name.upper(), p.read_bytes()) for p in sorted((src / "cat").iterdir())]  # IMG_0001.HEIC
    root2, _ = save_upload(loose, tmp_path / "u2")
    ims2 = load_folder(root2, prior=["cat", "dog"])
    assert not ims2.skipped and len(ims2) == len(FORMATS)
