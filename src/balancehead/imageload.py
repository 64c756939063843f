"""Robust ingestion of user image collections: a folder or a zip / tar / tar.gz archive, any nesting.

Two steps, kept apart so a stage can shard the work:

1. `scan_source(path)` lists every file in a stable order and gives each a stable id derived from
   its relative path (``"src-" + sha1(relpath)[:12]``), so ids do not depend on where the collection
   lives or whether it is a folder or an archive of that folder.
2. `load_image(entry_or_bytes, max_side, min_side)` decodes one file into a normalised RGB uint8
   array, or returns a *quarantine* result carrying a reason code. It never raises on bad input:
   a broken file in a collection of millions must cost one manifest row, not the run.

`load_source` chains both over a whole source and marks content duplicates.

Policy (documented here because the manifest relies on it):

* Every file found appears in the output, kept or quarantined; nothing disappears silently.
  Files whose suffix is not an image suffix (``IMAGE_SUFFIXES``) are quarantined as
  ``unsupported_type`` without being decoded (this includes archives nested inside the source:
  they are not expanded). Directories, and in folders anything `os.walk` would need to follow a
  directory symlink for, are not entries.
* Colour: CMYK / YCbCr / 1-bit / palette / grayscale become RGB. Anything with an alpha channel
  (RGBA, LA, PA, palette with a transparency entry) is composited onto white, matching the white
  background that the data engine synthesises. 16-bit grayscale is mapped to 8 bits by dividing
  by 257 (full range kept, no clipping). Embedded ICC profiles are ignored.
* Orientation: the EXIF orientation tag is applied (`exif_transposed` says whether it changed
  anything), so people are upright as the photographer saw them.
* Multi-frame files (GIF, TIFF): the first frame.
* Size: images over ``max_pixels`` (decompression-bomb guard, checked from the header before any
  pixel is decoded) are quarantined; the longest side is then brought down to ``max_side`` with
  Lanczos (JPEGs are first decoded at a reduced DCT scale when they are much larger, which saves
  memory); images whose *final* shortest side is below ``min_side`` are quarantined ``too_small``.
  Images are never upscaled here: that is the IQA stage's decision.
* Duplicates: ``sha256`` is taken over the final pixels plus their shape; in `load_source` the
  second and later copies are quarantined ``duplicate`` with ``duplicate_of`` = the first id.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm


class Reason:
    """Quarantine reason codes (plain strings, so they go straight into JSON / parquet)."""

    EMPTY_FILE = "empty_file"  # zero bytes
    UNREADABLE = "unreadable"  # permission denied, broken symlink, not a regular file, I/O error
    FILE_TOO_LARGE = "file_too_large"  # more bytes than max_bytes (also guards zip bombs)
    UNSUPPORTED_TYPE = "unsupported_type"  # suffix is not an image suffix; not decoded
    NOT_AN_IMAGE = "not_an_image"  # image suffix, but no decoder recognises the bytes
    TRUNCATED = "truncated"  # header fine, pixel data ends early
    CORRUPT = "corrupt"  # header fine, pixel data fails to decode for another reason
    TOO_MANY_PIXELS = "too_many_pixels"  # width*height over max_pixels (decompression bomb guard)
    TOO_SMALL = "too_small"  # shortest side below min_side after normalisation
    DUPLICATE = "duplicate"  # same pixels as an earlier entry (see duplicate_of)

    ALL = frozenset(
        {
            EMPTY_FILE,
            UNREADABLE,
            FILE_TOO_LARGE,
            UNSUPPORTED_TYPE,
            NOT_AN_IMAGE,
            TRUNCATED,
            CORRUPT,
            TOO_MANY_PIXELS,
            TOO_SMALL,
            DUPLICATE,
        }
    )


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Pillow decoders we let see user bytes, whatever the file is called. Everything else — notably EPS/PS,
# which Pillow hands to Ghostscript (an external interpreter) — is `not_an_image` without being parsed.
# (Multi-picture JPEGs from phones open through the JPEG decoder.)
DECODER_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


@dataclass(frozen=True)
class LoadConfig:
    """Limits for `load_image`; the ingest stage takes them from params.yaml."""

    max_side: int = 512  # longest side after normalisation (Lanczos down, never up)
    min_side: int = 32  # shortest side below this -> too_small
    max_pixels: int = 64_000_000  # width*height above this -> too_many_pixels, nothing decoded
    max_bytes: int = 128 * 1024 * 1024  # file size above this -> file_too_large


@dataclass(frozen=True)
class SourceEntry:
    """One file of a source. `relpath` is POSIX, relative to the folder or archive root, normalised
    (no leading '/' or './', backslashes become '/') and printable (undecodable bytes shown as U+FFFD);
    `member` is the name exactly as stored, used to read it."""

    item_id: str
    relpath: str
    source: str  # the folder or archive path given to scan_source
    container: str  # "dir", "zip" or "tar"
    index: int  # position in scan order = position among the archive's non-directory members
    size: int | None = None  # bytes, where known without reading
    member: str = ""  # the stored name (may hold surrogate escapes); relpath when empty
    error: str | None = None  # set for the row that stands for an unreadable rest of an archive

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.relpath).suffix.lower()

    def read_bytes(self, max_bytes: int = LoadConfig.max_bytes) -> bytes:
        """Read the file's bytes; raises `SourceReadError` with a reason code on failure.

        Opens the source for this one read; to read many entries use one `SourceReader`."""
        with SourceReader(self.source, self.container) as reader:
            return reader.read(self, max_bytes)


class SourceReadError(Exception):
    """Reading an entry's bytes failed; `reason` is one of `Reason`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SourceArchiveError(ValueError):
    """The archive itself cannot be listed (0 bytes, not an archive, damaged before its first member)."""


@dataclass
class LoadedImage:
    """Result of `load_image`: either `image` is set (ok) or `reason` says why it was quarantined."""

    item_id: str | None
    relpath: str | None
    image: np.ndarray | None = None  # HxWx3 uint8 RGB
    reason: str | None = None
    detail: str = ""
    orig_size: tuple[int, int] | None = None  # (width, height) as stored, before EXIF transpose
    orig_mode: str | None = None
    orig_format: str | None = None
    exif_transposed: bool = False
    resized: bool = False
    sha256: str | None = None
    duplicate_of: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the normalised image."""
        return None if self.image is None else (self.image.shape[1], self.image.shape[0])

    def record(self) -> dict:
        """JSON-able manifest fields (no pixels)."""
        return {
            "item_id": self.item_id,
            "relpath": self.relpath,
            "ok": self.ok,
            "reason": self.reason,
            "detail": self.detail,
            "orig_size": list(self.orig_size) if self.orig_size else None,
            "orig_mode": self.orig_mode,
            "orig_format": self.orig_format,
            "size": list(self.size) if self.size else None,
            "exif_transposed": self.exif_transposed,
            "resized": self.resized,
            "sha256": self.sha256,
            "duplicate_of": self.duplicate_of,
        }


# ----------------------------------------------------------------------------------------- scan


def item_id_for(relpath: str) -> str:
    """Stable id of a file from its relative path inside the source."""
    return "src-" + hashlib.sha1(relpath.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def is_archive(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return Path(path).is_file() and name.endswith(ARCHIVE_SUFFIXES)


def _norm_member(name: str) -> str:
    """Archive member name -> printable POSIX relpath: './a.png', '/photos/a.png', 'photos\\a.png' (a
    Windows zip) all become 'a.png' / 'photos/a.png'; undecodable bytes become U+FFFD."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", ".", "")]
    return "/".join(parts)


def _make_entries(source: str, container: str, items: list[tuple[str, int | None, str]],
                  error: str | None = None) -> list[SourceEntry]:
    """Entries in the given order; a repeated relpath (possible in archives) gets a '#n' id suffix.
    `error` (an archive that breaks off) adds one more entry standing for the unreadable rest."""
    seen: dict[str, int] = {}
    entries = []
    for index, (relpath, size, member) in enumerate(items):
        n = seen.get(relpath, 0)
        seen[relpath] = n + 1
        key = relpath if n == 0 else f"{relpath}#{n + 1}"
        entries.append(SourceEntry(item_id_for(key), relpath, source, container, index, size, member))
    if error is not None:
        key = f"(rest of archive after member {len(items)})"
        entries.append(SourceEntry(item_id_for(key), key, source, container, len(items), None, "", error))
    return entries


def scan_source(path: str | os.PathLike) -> list[SourceEntry]:
    """List every file of a folder (sorted by relative path) or archive (in archive order).

    Both orders are stable for unchanged input. Archive order is used for archives so that a
    compressed tar can be read in a single pass. An archive that cannot be listed at all raises
    `SourceArchiveError`; one that breaks off after some members keeps them and gets one more
    entry (quarantined `unreadable`) for the rest.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        items = []
        for root, dirs, files in os.walk(path, followlinks=False):
            dirs.sort()
            for name in files:
                rel = (Path(root) / name).relative_to(path).as_posix()
                items.append((_norm_member(rel), None, rel))
        items.sort(key=lambda t: t[0])
        return _make_entries(source, "dir", items)
    name = source.lower()
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                items = [(_norm_member(i.filename), i.file_size, i.filename) for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
            raise SourceArchiveError(f"{path}: not a readable zip archive ({type(e).__name__}: {e})") from None
        return _make_entries(source, "zip", items)
    if name.endswith(ARCHIVE_SUFFIXES):
        items, error = [], None
        try:
            with tarfile.open(path, "r|*") as tf:            # one streaming pass, also for .tar.gz
                for m in tf:
                    if not m.isdir():
                        items.append((_norm_member(m.name), m.size if m.isfile() else None, m.name))
        except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as e:
            if not items:
                raise SourceArchiveError(f"{path}: not a readable tar archive ({type(e).__name__}: {e})") from None
            error = f"archive breaks off: {type(e).__name__}: {e}"
        return _make_entries(source, "tar", items, error)
    raise SourceArchiveError(f"{path}: not a folder or a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")


# ----------------------------------------------------------------------------------------- read


class SourceReader:
    """Reads the entries of ONE source, keeping the folder/archive open between reads.

    Folders and zips are random access (the zip directory is parsed once). A tar — compressed or
    not — is streamed forward: reading entries in scan order (as the ingest stage and every shard of
    it do) costs one pass over the archive, i.e. time linear in the number of members; asking for an
    earlier member than the last one restarts the stream."""

    def __init__(self, source: str | os.PathLike, container: str):
        self.source, self.container = str(source), container
        self._zf: zipfile.ZipFile | None = None
        self._zinfos: list[zipfile.ZipInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._tar_iter: Iterator[tarfile.TarInfo] | None = None
        self._tar_pos = -1  # ordinal (among non-directory members) of the member last returned

    def __enter__(self) -> "SourceReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
            self._zf = None
        self._close_tar()

    def read(self, entry: SourceEntry, max_bytes: int = LoadConfig.max_bytes) -> bytes:
        if entry.error is not None:
            raise SourceReadError(Reason.UNREADABLE, entry.error)
        if entry.container == "dir":
            return _read_dir_file(Path(self.source) / (entry.member or entry.relpath), max_bytes)
        if entry.container == "zip":
            return _read_zip_member(self._zip_infos()[entry.index], self._zf, max_bytes)
        return self._read_tar(entry.index, max_bytes)

    def _zip_infos(self) -> list[zipfile.ZipInfo]:
        if self._zf is None:
            try:
                self._zf = zipfile.ZipFile(self.source)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise SourceReadError(Reason.UNREADABLE, f"zip archive: {e}") from None
            self._zinfos = [i for i in self._zf.infolist() if not i.is_dir()]
        return self._zinfos

    def _close_tar(self) -> None:
        if self._tar is not None:
            self._tar.close()
        self._tar, self._tar_iter, self._tar_pos = None, None, -1

    def _read_tar(self, index: int, max_bytes: int) -> bytes:
        if self._tar is None or index <= self._tar_pos:
            self._close_tar()
            try:
                self._tar = tarfile.open(self.source, "r|*")
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise SourceReadError(Reason.UNREADABLE, f"tar archive: {e}") from None
            self._tar_iter = iter(self._tar)
        try:
            while True:
                member = next(self._tar_iter, None)
                if member is None:
                    self._close_tar()
                    raise SourceReadError(Reason.UNREADABLE, "member vanished from archive")
                if member.isdir():
                    continue
                self._tar_pos += 1
                if self._tar_pos == index:
                    return _read_tar_member(self._tar, member, max_bytes)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            self._close_tar()
            raise SourceReadError(Reason.UNREADABLE, f"tar archive: {e}") from None


def _open_binary(path: Path):
    """Open for reading; a seam for tests (root ignores permission bits)."""
    return open(path, "rb")


def _read_dir_file(path: Path, max_bytes: int) -> bytes:
    try:
        st = os.stat(path)  # follows symlinks: a broken one raises FileNotFoundError
    except FileNotFoundError:
        raise SourceReadError(Reason.UNREADABLE, "missing or broken symlink") from None
    except OSError as e:
        raise SourceReadError(Reason.UNREADABLE, f"stat failed: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceReadError(Reason.UNREADABLE, "not a regular file")
    if st.st_size > max_bytes:
        raise SourceReadError(Reason.FILE_TOO_LARGE, f"{st.st_size} bytes > {max_bytes}")
    try:
        with _open_binary(path) as f:
            data = f.read(max_bytes + 1)
    except PermissionError:
        raise SourceReadError(Reason.UNREADABLE, "permission denied") from None
    except OSError as e:
        raise SourceReadError(Reason.UNREADABLE, f"read failed: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise SourceReadError(Reason.FILE_TOO_LARGE, f"more than {max_bytes} bytes")
    return data


def _read_zip_member(info: zipfile.ZipInfo, zf: zipfile.ZipFile, max_bytes: int) -> bytes:
    if info.file_size > max_bytes:
        raise SourceReadError(Reason.FILE_TOO_LARGE, f"{info.file_size} bytes > {max_bytes}")
    try:
        with zf.open(info) as f:
            data = f.read(max_bytes + 1)  # do not trust the header's size (zip bombs)
    except (RuntimeError, NotImplementedError, zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as e:
        raise SourceReadError(Reason.UNREADABLE, f"zip member: {e}") from None
    if len(data) > max_bytes:
        raise SourceReadError(Reason.FILE_TOO_LARGE, f"more than {max_bytes} bytes")
    return data


def _read_tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, max_bytes: int) -> bytes:
    if not member.isfile():
        raise SourceReadError(Reason.UNREADABLE, "archive member is a link or special file")
    if member.size > max_bytes:
        raise SourceReadError(Reason.FILE_TOO_LARGE, f"{member.size} bytes > {max_bytes}")
    try:
        f = tf.extractfile(member)
        if f is None:
            raise SourceReadError(Reason.UNREADABLE, "archive member has no data")
        return f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise SourceReadError(Reason.UNREADABLE, f"tar member: {e}") from None


def iter_source_bytes(
    entries: list[SourceEntry], max_bytes: int = LoadConfig.max_bytes
) -> Iterator[tuple[SourceEntry, bytes | SourceReadError]]:
    """Yield (entry, bytes or the read error) for entries of ONE source, in their order (one pass
    over a tar archive when the entries are in scan order)."""
    if not entries:
        return
    with SourceReader(entries[0].source, entries[0].container) as reader:
        for entry in entries:
            try:
                yield entry, reader.read(entry, max_bytes)
            except SourceReadError as e:
                yield entry, e


# --------------------------------------------------------------------------------------- decode


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha composited onto white; 16/32-bit gray scaled to 8 bits."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    elif mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        if mode == "I" and arr.max(initial=0) <= 255:
            scale = 1.0  # 8-bit data stored as 32-bit ints
        else:
            scale = 1.0 / 257.0  # 16-bit range -> 8 bits, 65535 -> 255
        g = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([g, g, g], axis=-1))
    if mode == "F":
        arr = np.asarray(im).astype(np.float64)
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        g = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([g, g, g], axis=-1))
    return im.convert("RGB")  # 1, L, CMYK, YCbCr, LAB, HSV


# EXIF orientation tag value -> the transpose that makes the image upright (tag 1 = already upright).
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _classify_decode_error(e: BaseException) -> str:
    msg = str(e).lower()
    if isinstance(e, EOFError) or "truncat" in msg or "premature end" in msg or "broken data stream" in msg:
        return Reason.TRUNCATED
    return Reason.CORRUPT


def _fit_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def load_image(
    source: SourceEntry | bytes,
    max_side: int = LoadConfig.max_side,
    min_side: int = LoadConfig.min_side,
    *,
    max_pixels: int = LoadConfig.max_pixels,
    max_bytes: int = LoadConfig.max_bytes,
    data: bytes | None = None,
) -> LoadedImage:
    """Decode one image into normalised RGB, or return a quarantine result; never raises on bad data.

    `source` is a `SourceEntry` (its bytes are read unless `data` is given, e.g. from
    `iter_source_bytes`) or raw bytes. For entries, a non-image suffix is quarantined
    ``unsupported_type`` before anything is read.
    """
    if isinstance(source, SourceEntry):
        out = LoadedImage(source.item_id, source.relpath)
        if source.error is not None:
            out.reason, out.detail = Reason.UNREADABLE, source.error
            return out
        if source.suffix not in IMAGE_SUFFIXES:
            out.reason, out.detail = Reason.UNSUPPORTED_TYPE, f"suffix {source.suffix or '(none)'!r}"
            return out
        if data is None:
            try:
                data = source.read_bytes(max_bytes)
            except SourceReadError as e:
                out.reason, out.detail = e.reason, e.detail
                return out
    else:
        out = LoadedImage(None, None)
        data = bytes(source)
    if len(data) == 0:
        out.reason, out.detail = Reason.EMPTY_FILE, "0 bytes"
        return out
    if len(data) > max_bytes:
        out.reason, out.detail = Reason.FILE_TOO_LARGE, f"{len(data)} bytes > {max_bytes}"
        return out
    return _decode(data, out, max_side, min_side, max_pixels)


def _decode(data: bytes, out: LoadedImage, max_side: int, min_side: int, max_pixels: int) -> LoadedImage:
    with warnings.catch_warnings():
        # Our own max_pixels check replaces PIL's warning; PIL's hard error (2x its limit) is kept.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=DECODER_FORMATS)
        except Image.DecompressionBombError as e:
            out.reason, out.detail = Reason.TOO_MANY_PIXELS, str(e)[:200]
            return out
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
            out.reason, out.detail = Reason.NOT_AN_IMAGE, str(e)[:200]
            return out
        with im:
            w, h = im.size
            out.orig_size, out.orig_mode, out.orig_format = (w, h), im.mode, im.format
            if w * h > max_pixels:
                out.reason, out.detail = Reason.TOO_MANY_PIXELS, f"{w}x{h} > {max_pixels} pixels"
                return out
            try:
                orientation = int(im.getexif().get(0x0112, 1))
            except Exception:  # malformed EXIF must not lose the image  # noqa: BLE001
                orientation = 1
            if im.format == "JPEG" and max(w, h) >= 2 * max_side:
                # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT: far less memory.
                im.draft(None, (max(1, w * max_side // max(w, h)), max(1, h * max_side // max(w, h))))
            try:
                im.load()
                rgb = _to_rgb(im)
                if orientation in _EXIF_TRANSPOSE:
                    rgb = rgb.transpose(_EXIF_TRANSPOSE[orientation])
                    out.exif_transposed = True
            except Image.DecompressionBombError as e:
                out.reason, out.detail = Reason.TOO_MANY_PIXELS, str(e)[:200]
                return out
            except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
                out.reason, out.detail = _classify_decode_error(e), str(e)[:200]
                return out
    return _normalise_size(rgb, out, max_side, min_side)


def _normalise_size(rgb: Image.Image, out: LoadedImage, max_side: int, min_side: int) -> LoadedImage:
    w, h = rgb.size
    if max(w, h) > max_side:
        rgb = rgb.resize(_fit_size(w, h, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        out.resized = True
    if min(rgb.size) < min_side:
        out.reason = Reason.TOO_SMALL
        out.detail = f"{rgb.size[0]}x{rgb.size[1]} after normalisation, shortest side < {min_side}"
        return out
    arr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    out.image = arr
    out.sha256 = pixel_sha256(arr)
    return out


def pixel_sha256(arr: np.ndarray) -> str:
    """Content hash of decoded pixels (shape included), for duplicate detection."""
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def load_source(
    path: str | os.PathLike,
    config: LoadConfig = LoadConfig(),
    entries: list[SourceEntry] | None = None,
    progress: bool = True,
) -> Iterator[LoadedImage]:
    """Load every entry of a source (or the given subset, e.g. a shard), marking duplicates.

    The first entry (in scan order) with given pixels is kept; later ones are quarantined
    ``duplicate`` with ``duplicate_of`` set. When sharding, duplicates across shards are only
    caught if the caller merges hashes afterwards.
    """
    if entries is None:
        entries = scan_source(path)
    first_by_hash: dict[str, str] = {}
    stream = iter_source_bytes([e for e in entries if e.suffix in IMAGE_SUFFIXES], config.max_bytes)
    pending = {}
    for entry in tqdm(entries, desc="load images", unit="img", disable=not progress):
        if entry.suffix not in IMAGE_SUFFIXES:
            yield load_image(entry, config.max_side, config.min_side)
            continue
        while entry.index not in pending:
            got_entry, got = next(stream, (entry, SourceReadError(Reason.UNREADABLE, "not found when reading")))
            pending[got_entry.index] = got
        got = pending.pop(entry.index)
        if isinstance(got, SourceReadError):
            result = LoadedImage(entry.item_id, entry.relpath, reason=got.reason, detail=got.detail)
        else:
            result = load_image(
                entry, config.max_side, config.min_side, max_pixels=config.max_pixels,
                max_bytes=config.max_bytes, data=got,
            )
        if result.ok:
            first = first_by_hash.setdefault(result.sha256, result.item_id)
            if first != result.item_id:
                result.reason, result.detail, result.duplicate_of = Reason.DUPLICATE, f"same pixels as {first}", first
                result.image = None
        yield result
