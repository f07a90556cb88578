import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from ueo_core.archive import safe_extract_zip
from ueo_core.data import NO_TRUTH, UNKNOWN, DataError, load_folder, load_preset, parse_prior
from helpers import make_folder


def _add_bad_files(d):
    (d / "red" / "empty.png").write_bytes(b"")
    (d / "red" / "text.jpg").write_text("this is not an image")
    (d / "green" / "notes.txt").write_text("notes")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(buf, "JPEG")
    (d / "green" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new("RGB", (200, 200)).save(d / "blue" / "huge.png")
    (d / "blue" / ".DS_Store").write_bytes(b"\0\0")


def test_bad_files_are_skipped_and_reported(tmp_path):
    d = make_folder(tmp_path / "d", classes=("red", "green", "blue"), per_class=3)
    _add_bad_files(d)
    ims = load_folder(d, max_pixels=150 * 150)
    reasons = {p.split("/")[-1]: r for p, r in ims.skipped}
    assert set(reasons) == {"empty.png", "text.jpg", "notes.txt", "truncated.jpg", "huge.png"}
    assert "0 bytes" in reasons["empty.png"]
    assert "not an image" in reasons["text.jpg"]
    assert "file type" in reasons["notes.txt"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    assert "too large" in reasons["huge.png"]
    assert len(ims) == 9 and ims.has_truth and "5 files skipped" in ims.summary()


def test_decompression_bomb_refused_with_default_limit(tmp_path):
    d = tmp_path / "bomb" / "a"
    d.mkdir(parents=True)
    Image.new("1", (12000, 12000)).save(d / "bomb.png")  # 144 Mpx, a few KB on disk
    Image.new("RGB", (8, 8), "red").save(d / "ok.png")
    (tmp_path / "bomb" / "b").mkdir()
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "bomb" / "b" / "ok.png")
    ims = load_folder(tmp_path / "bomb")
    assert len(ims) == 2 and "too large" in ims.skipped[0][1]


def test_prior_subset_makes_other_folders_unknown(folder):
    ims = load_folder(folder, prior=["Red", "green", "purple"])
    assert ims.classes == ["Red", "green", "purple"]
    by_folder = {f: l for f, l in zip(ims.folder_names, ims.labels)}
    assert by_folder["red"] == 0 and by_folder["green"] == 1
    assert by_folder["blue"] == UNKNOWN and by_folder["yellow"] == UNKNOWN
    assert ims.has_unknown and ims.known_mask.sum() == 12
    assert ims.counts() == {"blue": 6, "green": 6, "red": 6, "yellow": 6}


def test_no_prior_means_closed_set_of_folders(folder):
    ims = load_folder(folder)
    assert ims.classes == ["blue", "green", "red", "yellow"] and not ims.has_unknown


def test_flat_folder_has_no_truth(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    ims = load_folder(tmp_path, prior="cat, dog")
    assert ims.classes == ["cat", "dog"] and not ims.has_truth and (ims.labels == NO_TRUTH).all()
    with pytest.raises(DataError, match="give the class names"):
        load_folder(tmp_path)


@pytest.mark.parametrize("prior,msg", [(["cat", "cat"], "twice"), (["cat", "Cat "], "twice"),
                                       (["cat", ""], "empty name"), (["cat"], "at least 2"),
                                       ("cat,\n", "at least 2"), (["tennis_racket", "tennis racket"], "twice")])
def test_bad_priors_refused(prior, msg):
    with pytest.raises(DataError, match=msg):
        parse_prior(prior)


def test_prior_from_text():
    assert parse_prior("cat, dog\nhorse,") == ["cat", "dog", "horse"]


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no files"):
        load_folder(tmp_path / "empty")
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "x.jpg").write_text("junk")
    with pytest.raises(DataError, match="no readable images"):
        load_folder(tmp_path / "junk")


def test_preset_split_filters_target_classes(tmp_path):
    make_folder(tmp_path / "t", classes=("dog", "elephant", "giraffe", "guitar", "horse", "house", "person"),
                per_class=1)
    oda = load_preset(tmp_path / "t", "pacs", "ODA")
    assert oda.classes == ["dog", "elephant", "giraffe", "guitar", "horse"] and len(oda) == 7
    assert (oda.labels == UNKNOWN).sum() == 2
    pda = load_preset(tmp_path / "t", "pacs", "PDA")
    assert len(pda) == 3 and len(pda.classes) == 5 and not pda.has_unknown
    opda = load_preset(tmp_path / "t", "pacs", "OPDA")
    assert sorted(set(opda.folder_names)) == ["dog", "elephant", "giraffe", "house", "person"]


def test_paper_presets_match_official_splits():
    from ueo_core.presets import get_preset
    prior, target = get_preset("officehome").split("OPDA")
    assert len(prior) == 50 and len(target) == 45 and target[35] == "scissors"  # classes 0-34 + 50-59
    prior, target = get_preset("domainnet").split("ODA")
    assert len(prior) == 300 and len(target) == 330
    prior, target = get_preset("office31").split("PDA")
    assert len(prior) == 25 and len(target) == 20


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_safe_zip_refuses_escaping_paths(tmp_path):
    z = _zip(tmp_path / "u.zip", {"ok/a.txt": b"a", "../evil.txt": b"x", "/abs.txt": b"x", "a/../../b.txt": b"x",
                                  "__MACOSX/._a": b"x"})
    out, skipped = safe_extract_zip(z, tmp_path / "dest")
    assert [p.split("dest/")[1] for p in out] == ["ok/a.txt"]
    assert len(skipped) == 3 and all("unsafe" in r for _, r in skipped)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "b.txt").exists()


def test_safe_zip_limits(tmp_path):
    z = _zip(tmp_path / "many.zip", {f"{i}.txt": b"x" for i in range(5)})
    with pytest.raises(DataError, match="5 files"):
        safe_extract_zip(z, tmp_path / "d1", max_files=4)
    with pytest.raises(DataError, match="unpacks to"):
        safe_extract_zip(z, tmp_path / "d2", max_bytes=3)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * 5_000_000)
    out, skipped = safe_extract_zip(tmp_path / "bomb.zip", tmp_path / "d3")
    assert not out and "ratio" in skipped[0][1]
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(DataError, match="Not a readable zip"):
        safe_extract_zip(tmp_path / "not.zip", tmp_path / "d4")


def test_safe_zip_skips_symlinks(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "l.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
        zf.writestr("x/ok.txt", "ok")
    out, skipped = safe_extract_zip(tmp_path / "l.zip", tmp_path / "d")
    assert len(out) == 1 and skipped == [("link", "symbolic link")]


def test_a_big_jpeg_decodes_only_as_large_as_needed_upright_and_alike(tmp_path):
    """``load_rgb(min_side=…)``: a JPEG decodes at the smallest DCT scale whose shorter side is still at least
    ``min_side`` (issue 32), turned upright by EXIF as a full decode is, and looks the same once both are resized;
    a PNG, or a JPEG not twice as large as needed, decodes in full."""
    import numpy as np
    from PIL import Image
    from ueo_core.data import load_rgb
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 255, (12, 16, 3)), np.ones((100, 100, 1))).astype(np.uint8)  # 1600x1200 blocks
    img = Image.fromarray(base)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view": a portrait phone photo
    img.save(tmp_path / "p.jpg", "JPEG", quality=95, exif=exif)
    full = load_rgb(tmp_path / "p.jpg")
    assert full.size == (1200, 1600)
    for need, got in ((300, (300, 400)), (500, (600, 800)), (700, (1200, 1600)), (None, (1200, 1600))):
        small = load_rgb(tmp_path / "p.jpg", min_side=need)
        assert small.size == got, (need, small.size)
    small = load_rgb(tmp_path / "p.jpg", min_side=300)
    a = np.asarray(full.resize((300, 400), Image.BICUBIC), dtype=float)
    b = np.asarray(small, dtype=float)
    assert np.abs(a - b).mean() < 4  # the same picture (blocks of 100 px: only their edges differ)
    img.save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png", min_side=100).size == (1600, 1200)
