"""Tar shards of PNG images: the on-disk unit of a packed dataset.

Tens of millions of loose files break filesystems and DVC; a few thousand images per uncompressed tar
don't, and a tar can be streamed member by member without unpacking. Each sample is up to three
consecutive members sharing a key:

    <key>.png        RGB image (uint8)
    <key>.mask.png   person/head mask (uint8, L), optional
    <key>.json       label: camera (25 floats), subject_index, yaw, pitch, ... (free-form JSON object)

Shards are byte-deterministic: fixed mtime/uid/gid/uname/mode, members in insertion order, canonical
JSON, deterministic PNG encoding. So packing the same input twice gives identical files, which keeps DVC
caches and `dvc repro` honest. Each shard is written to a temporary file and renamed when complete, so a
killed job never leaves a truncated shard behind under its final name.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from balancehead.fileio import _json_default, atomic_path, png_bytes

IMAGE_SUFFIX = ".png"
MASK_SUFFIX = ".mask.png"
LABEL_SUFFIX = ".json"
_SUFFIXES = (MASK_SUFFIX, IMAGE_SUFFIX, LABEL_SUFFIX)  # mask before image: ".mask.png" ends in ".png"


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}.tar"


def label_bytes(label: dict) -> bytes:
    """Canonical JSON for a label: sorted keys, no whitespace variation, numpy values converted."""
    try:
        text = json.dumps(label, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)
    except ValueError:
        raise ValueError(f"label holds a non-finite number (NaN/inf): {label!r}") from None
    return (text + "\n").encode("utf-8")


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def check_key(key: str) -> None:
    """Keys become member names: no path separators, no suffix that would confuse member parsing."""
    if not key or "/" in key or "\\" in key or key.startswith(".") or key.endswith(".mask"):
        raise ValueError(f"invalid shard key {key!r}: must be non-empty, no '/', not start with '.', not end in '.mask'")
    if any(key.endswith(s) for s in _SUFFIXES):
        raise ValueError(f"invalid shard key {key!r}: must not end in a member suffix {_SUFFIXES}")


@dataclass
class ShardWriter:
    """Append samples to `prefix-00000.tar`, `prefix-00001.tar`, ... with at most `shard_size` each.

    `max_bytes` (optional) also closes a shard once its members reach that size (DESIGN §2: <= 1 GiB),
    so shards of large images stay manageable; a shard always holds at least one sample.

    Use as a context manager (or call `close()`): the shard in progress is only renamed into place when
    it is full or the writer closes cleanly; on an exception it is discarded.
    """
    out_dir: Path
    shard_size: int
    prefix: str = "shard"
    max_bytes: int | None = None
    shards: list[str] = field(default_factory=list, init=False)
    _stack: ExitStack | None = field(default=None, init=False, repr=False)
    _tar: tarfile.TarFile | None = field(default=None, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)
    _bytes: int = field(default=0, init=False, repr=False)
    _keys: set = field(default_factory=set, init=False, repr=False)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if int(self.shard_size) < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not self.prefix or "/" in self.prefix:
            raise ValueError(f"invalid shard prefix {self.prefix!r}")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1 or None, got {self.max_bytes}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def add(self, key: str, image: np.ndarray, label: dict, mask: np.ndarray | None = None) -> tuple[str, str]:
        """Append one sample; returns (shard file name, key) for the manifest row."""
        check_key(key)
        if key in self._keys:
            raise ValueError(f"duplicate shard key {key!r}")
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{key}: image must be HxWx3 uint8, got {image.dtype} {image.shape}")
        members = [(key + IMAGE_SUFFIX, png_bytes(image))]
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.uint8 or mask.shape != image.shape[:2]:
                raise ValueError(f"{key}: mask must be uint8 of shape {image.shape[:2]}, got {mask.dtype} {mask.shape}")
            members.append((key + MASK_SUFFIX, png_bytes(mask)))
        try:
            members.append((key + LABEL_SUFFIX, label_bytes(label)))
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
        if self._tar is None:
            self._open_next()
        for name, data in members:
            self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
            self._bytes += tarfile.BLOCKSIZE + -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        self._keys.add(key)
        self._count += 1
        name = self.shards[-1]
        if self._count >= self.shard_size or (self.max_bytes is not None and self._bytes >= self.max_bytes):
            self._finish()
        return name, key

    def close(self) -> list[str]:
        """Finish the shard in progress; returns all shard names written, in order."""
        if self._tar is not None:
            self._finish()
        return list(self.shards)

    def abort(self) -> None:
        """Drop the shard in progress (its temp file is removed; finished shards stay)."""
        if self._stack is not None:
            self._tar.close()
            stack, self._stack, self._tar = self._stack, None, None
            self.shards.pop()
            err = RuntimeError("shard writer aborted")
            stack.__exit__(type(err), err, None)  # atomic_path removes the temp file

    def _open_next(self):
        name = shard_name(self.prefix, len(self.shards))
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.out_dir / name))
        self._tar = tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT)
        self.shards.append(name)
        self._count = self._bytes = 0

    def _finish(self):
        self._tar.close()
        # fsync before the rename so a crash can't leave a renamed-but-empty shard.
        tmp = Path(self._tar.name)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        stack, self._stack, self._tar = self._stack, None, None
        stack.close()  # renames temp -> final name


@dataclass(frozen=True)
class RawSample:
    """One sample's undecoded member bytes (decode lazily so skipped samples cost no PNG decoding)."""
    key: str
    image: bytes
    label: bytes
    mask: bytes | None = None

    def decode(self) -> "Sample":
        return Sample(self.key, decode_png(self.image, "RGB"), json.loads(self.label),
                      decode_png(self.mask, "L") if self.mask is not None else None)


@dataclass(frozen=True)
class Sample:
    key: str
    image: np.ndarray          # HxWx3 uint8
    label: dict
    mask: np.ndarray | None    # HxW uint8 or None


def decode_png(data: bytes, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
        return np.asarray(im.convert(mode) if im.mode != mode else im).copy()


def split_member(name: str) -> tuple[str, str]:
    """'abc.mask.png' -> ('abc', '.mask.png'). Raises on a member that is not part of the format."""
    for s in _SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)], s
    raise ValueError(f"unexpected shard member {name!r}")


def iter_shard_raw(path, keys=None) -> Iterator[RawSample]:
    """Stream a shard's samples as raw bytes, in member order, without unpacking to disk.

    With `keys` (a set), members of other samples are skipped without reading their data, which lets
    several readers split one shard cheaply.
    """
    from balancehead.integrity import verify_in

    if Path(path).parent.name == "shards":       # inside a packed dataset: check the recorded digest
        verify_in(Path(path).parent.parent, f"shards/{Path(path).name}")
    current: dict[str, bytes] = {}
    current_key = None
    seen: set[str] = set()
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, suffix = split_member(info.name)
            if keys is not None and key not in keys:
                continue
            if key != current_key:
                if key in seen:
                    raise ValueError(f"{path}: members of sample {key!r} are not contiguous")
                seen.add(key)
                if current_key is not None:
                    yield _raw(path, current_key, current)
                current_key, current = key, {}
            if suffix in current:
                raise ValueError(f"{path}: member {info.name} appears twice")
            current[suffix] = tar.extractfile(info).read()
        if current_key is not None:
            yield _raw(path, current_key, current)


def iter_shard(path, keys=None) -> Iterator[Sample]:
    """Stream decoded samples (uint8 arrays + label dict) of one shard."""
    for raw in iter_shard_raw(path, keys):
        yield raw.decode()


def _raw(path, key: str, members: dict) -> RawSample:
    if IMAGE_SUFFIX not in members or LABEL_SUFFIX not in members:
        raise ValueError(f"{path}: sample {key!r} lacks its image or label member (has {sorted(members)})")
    return RawSample(key, members[IMAGE_SUFFIX], members[LABEL_SUFFIX], members.get(MASK_SUFFIX))

