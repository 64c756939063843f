"""Ingestion of messy image folders and archives: every case quarantined with a reason, none crashes."""
import hashlib
import io
import json
import os
import struct
import tarfile
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from balancehead import imageload as L
from balancehead.imageload import LoadConfig, Reason, load_image, load_source, scan_source

CFG = LoadConfig(max_side=64, min_side=8, max_pixels=1_000_000, max_bytes=2_000_000)


def _enc(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _noise_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _halves(w: int = 40, h: int = 20) -> Image.Image:
    """Left half red, right half blue: orientation is readable from the colours."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries (almost) no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _build_collection(root) -> None:
    """Every awkward case in one folder, with nesting."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "docs").mkdir()
    clean = _enc(Image.fromarray(_noise_rgb(48, 40)), "PNG")
    (root / "a" / "clean.png").write_bytes(clean)
    (root / "a" / "b" / "c" / "deep.jpg").write_bytes(_enc(Image.fromarray(_noise_rgb(30, 50, 1)), "JPEG"))
    (root / "z_dup_of_clean.png").write_bytes(_enc(Image.fromarray(_noise_rgb(48, 40)), "PNG", compress_level=1))
    (root / "empty.jpg").write_bytes(b"")
    jpg = _enc(Image.fromarray(_noise_rgb(60, 60, 2)), "JPEG")
    (root / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "fake.png").write_bytes(b"this is plain text, not a picture\n" * 4)
    (root / "cmyk.jpg").write_bytes(_enc(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95))
    (root / "gray16.png").write_bytes(_enc(Image.fromarray(np.full((20, 24), 40000, np.uint16)), "PNG"))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (255, 0, 0, 255)  # opaque red left, fully transparent right
    rgba[:, 8:] = (0, 255, 0, 0)
    (root / "rgba.png").write_bytes(_enc(Image.fromarray(rgba, "RGBA"), "PNG"))
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black (transparent), 1 blue
    pal.paste(1, (0, 0, 16, 8))
    (root / "palette.png").write_bytes(_enc(pal, "PNG", transparency=0))
    (root / "gray.png").write_bytes(_enc(Image.new("L", (16, 16), 100), "PNG"))
    la = Image.merge("LA", (Image.new("L", (16, 16), 0), Image.new("L", (16, 16), 0)))
    (root / "gray_alpha.png").write_bytes(_enc(la, "PNG"))
    (root / "tiny.png").write_bytes(_enc(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"))
    (root / "large.png").write_bytes(_enc(Image.fromarray(_noise_rgb(200, 300, 3)), "PNG"))
    (root / "bomb.png").write_bytes(_png_header_only(2000, 2000))  # over CFG.max_pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display needs a 90 degree clockwise turn
    (root / "rotated.jpg").write_bytes(_enc(_halves(), "JPEG", quality=95, exif=exif.tobytes()))
    (root / "docs" / "README.txt").write_text("notes about the photos\n")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    _build_collection(root)
    return root


@pytest.fixture(scope="module")
def results(collection):
    rows = list(load_source(collection, CFG, progress=False))
    return {r.relpath: r for r in rows}


def test_every_file_appears_once_with_stable_ids(collection, results):
    entries = scan_source(collection)
    assert [e.relpath for e in entries] == sorted(e.relpath for e in entries)
    assert scan_source(collection) == entries
    assert set(results) == {e.relpath for e in entries}
    assert len(entries) == 17
    for e in entries:
        assert e.item_id == "src-" + hashlib.sha1(e.relpath.encode()).hexdigest()[:12]
    assert len({e.item_id for e in entries}) == len(entries)


def test_all_reasons_are_documented_codes_and_records_are_json(results):
    for r in results.values():
        assert r.reason is None or r.reason in Reason.ALL
        assert r.ok == (r.image is not None)
        json.dumps(r.record())


@pytest.mark.parametrize(
    "relpath, reason",
    [
        ("empty.jpg", Reason.EMPTY_FILE),
        ("truncated.jpg", Reason.TRUNCATED),
        ("fake.png", Reason.NOT_AN_IMAGE),
        ("tiny.png", Reason.TOO_SMALL),
        ("bomb.png", Reason.TOO_MANY_PIXELS),
        ("docs/README.txt", Reason.UNSUPPORTED_TYPE),
        ("z_dup_of_clean.png", Reason.DUPLICATE),
    ],
)
def test_quarantine_reasons(results, relpath, reason):
    r = results[relpath]
    assert not r.ok and r.reason == reason and r.detail


def test_duplicate_points_at_first_copy(results):
    assert results["z_dup_of_clean.png"].duplicate_of == results["a/clean.png"].item_id
    assert results["a/clean.png"].ok


def test_nested_files_load(results):
    deep = results["a/b/c/deep.jpg"]
    assert deep.ok and deep.image.shape == (30, 50, 3) and deep.image.dtype == np.uint8


def test_cmyk_becomes_rgb(results):
    r = results["cmyk.jpg"]
    assert r.ok and r.orig_mode == "CMYK"
    assert np.abs(r.image[16, 16].astype(int) - [255, 0, 0]).max() < 12


def test_16bit_gray_keeps_range(results):
    r = results["gray16.png"]
    assert r.ok and r.orig_mode.startswith("I")
    np.testing.assert_array_equal(r.image[0, 0], [156, 156, 156])  # 40000 / 257


def test_alpha_composited_onto_white(results):
    r = results["rgba.png"].image
    np.testing.assert_array_equal(r[4, 2], [255, 0, 0])
    np.testing.assert_array_equal(r[4, 12], [255, 255, 255])
    p = results["palette.png"].image
    np.testing.assert_array_equal(p[2, 2], [0, 0, 255])
    np.testing.assert_array_equal(p[12, 2], [255, 255, 255])
    np.testing.assert_array_equal(results["gray_alpha.png"].image[3, 3], [255, 255, 255])


def test_grayscale_becomes_three_equal_channels(results):
    np.testing.assert_array_equal(results["gray.png"].image[5, 5], [100, 100, 100])


def test_large_image_downscaled_to_max_side(results):
    r = results["large.png"]
    assert r.ok and r.resized and r.orig_size == (300, 200)
    assert r.size == (64, 43)


def test_large_jpeg_decoded_at_reduced_scale_then_fitted():
    arr = np.zeros((400, 600, 3), np.uint8)
    arr[:, :300] = (200, 30, 30)
    r = load_image(_enc(Image.fromarray(arr), "JPEG", quality=95), 64, 8)
    assert r.ok and r.resized and r.orig_size == (600, 400) and r.size == (64, 43)
    assert r.image[20, 10, 0] > 170 and r.image[20, 55, 0] < 30


def test_exif_orientation_applied(results):
    r = results["rotated.jpg"]
    assert r.ok and r.exif_transposed and r.orig_size == (40, 20)
    assert r.image.shape[:2] == (40, 20)  # now portrait
    top, bottom = r.image[5, 10].astype(int), r.image[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # red on top: the stored left half
    assert bottom[2] > 200 and bottom[0] < 60


def test_header_claiming_huge_size_is_refused_without_allocating(tmp_path):
    data = _png_header_only(30000, 30000)
    tracemalloc.start()
    r = load_image(data, 512, 32)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.reason == Reason.TOO_MANY_PIXELS
    assert peak < 20 * 1024 * 1024


def test_unreadable_paths(tmp_path, monkeypatch):
    good = _enc(Image.fromarray(_noise_rgb(20, 20)), "PNG")
    (tmp_path / "ok.png").write_bytes(good)
    (tmp_path / "locked.png").write_bytes(good)
    os.chmod(tmp_path / "locked.png", 0)
    os.symlink(tmp_path / "nowhere.png", tmp_path / "broken.png")
    os.mkfifo(tmp_path / "pipe.png")
    real_open = L._open_binary

    def deny_locked(path):  # root ignores permission bits, so deny it the way the OS would
        if path.name == "locked.png":
            raise PermissionError(13, "Permission denied")
        return real_open(path)

    monkeypatch.setattr(L, "_open_binary", deny_locked)
    got = {r.relpath: r for r in load_source(tmp_path, CFG, progress=False)}
    assert got["ok.png"].ok
    assert got["locked.png"].reason == Reason.UNREADABLE and "permission" in got["locked.png"].detail
    assert got["broken.png"].reason == Reason.UNREADABLE
    assert got["pipe.png"].reason == Reason.UNREADABLE and "regular" in got["pipe.png"].detail


def test_file_over_byte_limit(tmp_path):
    (tmp_path / "big.png").write_bytes(_enc(Image.fromarray(_noise_rgb(64, 64)), "PNG"))
    small = LoadConfig(max_side=64, min_side=8, max_bytes=1000)
    (r,) = load_source(tmp_path, small, progress=False)
    assert r.reason == Reason.FILE_TOO_LARGE


def _archive(collection, dest, kind):
    files = sorted(p for p in collection.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(dest, "w") as zf:
            for d in sorted({p.parent for p in files}):
                if d != collection:
                    zf.writestr(d.relative_to(collection).as_posix() + "/", b"")
            for p in files:
                zf.write(p, p.relative_to(collection).as_posix())
    else:
        with tarfile.open(dest, "w:gz" if kind == "tar.gz" else "w") as tf:
            for p in files:
                tf.add(p, arcname="./" + p.relative_to(collection).as_posix())


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_archives_match_the_folder(collection, results, tmp_path, kind):
    dest = tmp_path / f"photos.{kind}"
    _archive(collection, dest, kind)
    got = {r.relpath: r for r in load_source(dest, CFG, progress=False)}
    assert set(got) == set(results)
    for rel, r in got.items():
        ref = results[rel]
        assert (r.item_id, r.reason, r.sha256) == (ref.item_id, ref.reason, ref.sha256), rel
    # random access to one entry gives the same pixels as the one-pass stream
    entry = next(e for e in scan_source(dest) if e.relpath == "a/b/c/deep.jpg")
    assert load_image(entry, CFG.max_side, CFG.min_side).sha256 == results["a/b/c/deep.jpg"].sha256


def test_load_image_from_bytes_and_source_errors(tmp_path):
    arr = _noise_rgb(12, 10)
    r = load_image(_enc(Image.fromarray(arr), "PNG"), 64, 4)
    assert r.ok and r.item_id is None
    np.testing.assert_array_equal(r.image, arr)
    with pytest.raises(ValueError):
        scan_source(tmp_path / "not_there.rar")
