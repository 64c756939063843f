"""Atomic file output: every file is written to a temporary sibling and renamed into place,
so a reader (or a rerun after kill -9) never sees a half-written file."""
from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .integrity import temp_tag

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; on success rename it onto `path`, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # host + PID in the name: the next run can remove what a killed writer left (integrity.clean_leftovers)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{temp_tag()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)          # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path, obj) -> None:
    write_text(path, dumps_json(obj))


def write_jsonl(path, rows) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows))


def read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (ValueError, UnicodeDecodeError) as e:      # name the file, not just "line 1 column 1"
            raise ValueError(f"{path}: not valid JSON ({e}); rerun the stage that wrote it") from None


def read_jsonl(path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}: line {n} is not valid JSON ({e}); rerun the stage that wrote it") from None
    return rows


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts as one level of dotted keys ('train.loss.r1_gamma'), keys sorted at every level."""
    out: dict[str, object] = {}
    for k in sorted(d):
        v = d[k]
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def safetensors_bytes(tensors: dict, meta: dict | None = None) -> bytes:
    """Encode torch tensors (or numpy arrays) as safetensors, byte-identical for equal input.

    The header's `__metadata__` is a Rust HashMap in safetensors: with two or more keys their order in
    the file changes from call to call (a per-process random hash seed), so equal tensors gave different
    bytes. All metadata therefore goes into ONE key, "balancehead", as sorted compact JSON."""
    header = None if meta is None else {"balancehead": json.dumps(meta, sort_keys=True, separators=(",", ":"))}
    if tensors and all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save
    else:
        from safetensors.torch import save
    return save(tensors, metadata=header)


def read_safetensors_meta(f) -> dict:
    """The metadata written by safetensors_bytes, from an open `safetensors.safe_open` handle ({} if none)."""
    text = (f.metadata() or {}).get("balancehead")
    return json.loads(text) if text else {}


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an HxW (L) or HxWx3 (RGB) uint8 array as PNG; deterministic bytes for equal input."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_png(path, image: np.ndarray) -> None:
    write_bytes(path, png_bytes(image))


def read_png(path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path, formats=("PNG",)) as im:            # our own outputs: PNG only, nothing else parsed
            return np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im).copy()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: not a readable PNG ({type(e).__name__}: {e}); rerun the stage that wrote it") from None


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
