"""Safe unpacking of an uploaded zip: no path outside the destination (``../``, absolute, drive letters), no links,
a cap on files, bytes and compression ratio (zip bombs), and nothing half-written left behind; then which folder of
it holds the data (``data_root``: the wrapper folder that 'Compress folder' adds is stepped into)."""
from __future__ import annotations

import re
import shutil
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path

from .data import DataError, _has_image_ext, is_os_junk

MAX_ZIP_FILES = 20_000
MAX_ZIP_BYTES = 2 * 1024 ** 3        # uncompressed total
MAX_ZIP_RATIO = 200                  # uncompressed / compressed, per entry (zip-bomb guard)


def safe_extract_zip(zip_path: str | Path, dest: str | Path, max_files: int = MAX_ZIP_FILES,
                     max_bytes: int = MAX_ZIP_BYTES) -> tuple[list[str], list[tuple[str, str]]]:
    """Extract a user's zip into ``dest``, refusing what could escape or explode.

    Raises DataError for an archive that must be refused as a whole (not a zip, too many files, too large in
    total); entries with absolute or ``..`` paths, links and oversized ratios are skipped and reported.
    Returns (extracted paths, skipped (name, reason)).
    """
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"Will not unpack into a folder that is not empty: {dest.name}")
    # unpack into a hidden staging folder; it becomes ``dest`` only when the archive was read to its end, and is
    # removed on any failure, so a refused or broken zip never leaves a half-extracted folder behind
    staging = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        extracted, skipped = _extract(zip_path, staging, max_files, max_bytes)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if dest.exists():
        dest.rmdir()
    staging.rename(dest)
    return [str(dest / Path(p).relative_to(staging)) for p in extracted], skipped


MAX_ZIP_DEPTH = 32          # folder levels inside a zip
MAX_NAME_BYTES = 200        # one file or folder name (most file systems allow 255)


def _extract(zip_path, dest: Path, max_files: int, max_bytes: int):
    try:
        zf = zipfile.ZipFile(zip_path)
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise DataError(f"Not a readable zip file: {err}") from None
    with zf:
        if len(infos) > max_files:
            raise DataError(f"The zip holds {len(infos):,} files; the limit is {max_files:,}.")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise DataError(f"The zip unpacks to {total / 1e6:,.0f} MB; the limit is {max_bytes / 1e6:,.0f} MB.")
        extracted, skipped, written = [], [], 0
        for info in infos:
            name = _entry_name(info)
            parts = Path(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                skipped.append((name, "unsafe path (absolute or '..')"))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                skipped.append((name, "symbolic link"))
                continue
            if any(is_os_junk(p) for p in parts):  # __MACOSX/, .DS_Store, ._x.jpg, Thumbs.db, desktop.ini
                continue
            if len(parts) > MAX_ZIP_DEPTH or any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES
                                                 for p in parts):
                short = name if len(name) <= 90 else name[:50] + "…" + name[-39:]
                skipped.append((short, "path too deep or name too long"))
                continue
            if info.flag_bits & 0x1:
                skipped.append((name, "encrypted (password-protected zips are not supported)"))
                continue
            if info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO:
                skipped.append((name, "compression ratio too high (zip bomb guard)"))
                continue
            target = (dest / Path(*parts)).resolve()
            if dest not in target.parents:
                skipped.append((name, "unsafe path"))
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                n = _copy_entry(zf, info, target, limit=info.file_size)
            except _EntryTooLarge:
                target.unlink(missing_ok=True)
                skipped.append((name, "larger than the zip says (refused)"))
                continue
            except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as err:
                target.unlink(missing_ok=True)
                skipped.append((name, f"damaged in the zip ({str(err)[:60]})"))
                continue
            except OSError as err:  # a name clash (x.png beside x.png/y.png), a name the disk refuses
                if target.is_file() and str(target) not in extracted:
                    target.unlink(missing_ok=True)
                skipped.append((name, f"cannot be written here ({err.strerror or err})"))
                continue
            written += n
            if written > max_bytes:
                raise DataError(f"The zip unpacks to more than {max_bytes / 1e6:,.0f} MB (its directory said "
                                f"less); refused.")
            extracted.append(str(target))
    return extracted, skipped


def _entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as the user's disk spells it. Without the UTF-8 flag zipfile decodes it as cp437, yet macOS
    'Compress' and Info-ZIP ``zip`` write UTF-8 there (``Hündin`` would read ``H├╝ndin``, a class no prior names);
    what is not valid UTF-8 stays cp437 (old Windows' OEM code page). NFC: macOS writes ``ü`` as u + ¨, a prior
    typed on a keyboard has one ``ü``."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except UnicodeError:
            pass
    return unicodedata.normalize("NFC", name)


def data_root(root: str | Path) -> tuple[Path, list[Path]]:
    """The folder of an unpacked upload to read, and the files beside the wrappers that are left out.

    A wrapper holds one folder and no image (OS junk aside): what 'Compress folder' makes on every OS
    (``my_photos/IMG_0001.jpg``) and what zipping a folder's parent adds (``Archive/my_photos/…``). It is stepped
    into, repeatedly: a lone folder looks the same whether it is ``my_photos`` or ``dogs``, and read as a class it
    makes every image that one class; so the same photos read the same however many folders wrap them:
    ``my_photos/…`` and ``Archive/my_photos/…`` flat, ``Vacation 2024/dogs/…, cats/…`` as the classes dogs and
    cats.
    """
    root, left_out = Path(root), []
    for _ in range(MAX_ZIP_DEPTH):
        entries = [p for p in root.iterdir() if not is_os_junk(p.name)]
        dirs = [p for p in entries if p.is_dir() and not p.is_symlink()]
        if len(dirs) != 1 or any(p.is_file() and _has_image_ext(p.name) for p in entries):
            break
        left_out += sorted(p for p in entries if p is not dirs[0])
        root = dirs[0]
    return root, left_out


class _EntryTooLarge(Exception):
    pass


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> int:
    """Copy one entry, reading at most ``limit`` + 1 bytes: an entry that lies about its size is refused."""
    n = 0
    with zf.open(info) as src, open(target, "wb") as out:
        while True:
            chunk = src.read(min(1 << 20, limit + 1 - n))
            if not chunk:
                break
            n += len(chunk)
            if n > limit:
                raise _EntryTooLarge()
            out.write(chunk)
    return n
