"""What every production backend does before it touches an item: find its weights, refuse to
download unless allowed, and fingerprint what it loaded.

Rules (issue 4, house rules):

* weights are named by a local path (file or directory) or, only when `allow_download` is true and
  `local_files_only` is false, by a hub id + revision. Anything else fails at construction, before
  any item is processed, with one message naming the param to set and the offline backend to use;
* while loading, `HF_HUB_OFFLINE`/`TRANSFORMERS_OFFLINE` are set unless downloads are allowed, so a
  library that would quietly reach for the hub fails instead;
* only safetensors / ONNX weight files count; a directory with pickle-only weights (`*.bin`, `*.pt`,
  `*.ckpt`) is refused rather than unpickled;
* the sha256 of every weight file (and a digest over all of them) goes into `provenance()`, and an
  `expected_sha256` pin, when given, must match.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

from ...hashing import sha256_file

WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx.data", ".onnx_data")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class MissingWeightsError(FileNotFoundError):
    """Weights are not available locally (and downloading is not allowed)."""


def missing_message(what: str, where, param: str, offline: str) -> str:
    return (f"{what} weights not found at {where!r}: set `{param}` in params.yaml to a local path "
            f"(downloads are off: allow_download=false), or use the offline backend ({offline}).")


def resolve(model: str | None, *, param: str, offline: str, what: str, kind: str = "dir",
            local_files_only: bool = True, allow_download: bool = False,
            revision: str | None = None) -> Path:
    """Local path of a model's weights; `kind` is 'dir' (a save_pretrained folder) or 'file' (.onnx).

    A hub id is resolved through huggingface_hub only when downloads are allowed; the snapshot
    folder it returns is then treated like any local folder (checksummed, loaded offline).
    """
    if model and Path(model).expanduser().exists():
        path = Path(model).expanduser().resolve()
        if kind == "file" and not path.is_file():
            raise MissingWeightsError(missing_message(what, model, param, offline) + " (expected a file)")
        if kind == "dir" and not path.is_dir():
            raise MissingWeightsError(missing_message(what, model, param, offline) + " (expected a folder)")
        return path
    if not model or local_files_only or not allow_download:
        raise MissingWeightsError(missing_message(what, model, param, offline))
    from huggingface_hub import hf_hub_download, snapshot_download  # only reached when downloads are allowed

    if kind == "file":
        repo, _, filename = model.partition("::")
        if not filename:
            raise MissingWeightsError(f"`{param}`: a hub file is written 'owner/repo::path/in/repo.onnx', got {model!r}")
        return Path(hf_hub_download(repo, filename, revision=revision))
    return Path(snapshot_download(model, revision=revision))


def weight_files(path: Path) -> list[Path]:
    """The safetensors/ONNX files under a model folder (or the file itself), sorted."""
    path = Path(path)
    if path.is_file():
        files = [path] + [p for p in path.parent.glob(path.name + "*") if p != path and p.name.endswith(WEIGHT_SUFFIXES)]
    else:
        files = [p for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
    return sorted(files)


def refuse_pickle_only(path: Path, param: str, offline: str, what: str) -> None:
    """A folder whose weights exist only as pickle files is not loaded (no unpickling, ever)."""
    files = weight_files(path)
    if files:
        return
    pickles = [p.name for p in Path(path).rglob("*") if p.name.endswith(PICKLE_SUFFIXES)] if Path(path).is_dir() else []
    extra = f" (found only pickle weights {pickles[:3]}; convert them to safetensors)" if pickles else ""
    raise MissingWeightsError(missing_message(what, str(path), param, offline) + extra)


def checksum(path: Path) -> dict:
    """{'sha256': digest over (relative name, file sha256) pairs, 'files': {name: sha256}}."""
    path = Path(path)
    root = path.parent if path.is_file() else path
    files = {str(p.relative_to(root)): sha256_file(p) for p in weight_files(path)}
    h = hashlib.sha256()
    for name, digest in sorted(files.items()):
        h.update(f"{name}\0{digest}\n".encode())
    return {"sha256": h.hexdigest(), "files": files}


def verify(sums: dict, expected: str | None, param: str) -> None:
    if expected and expected.lower() != sums["sha256"]:
        raise ValueError(f"weights checksum {sums['sha256']} does not match `{param}` = {expected}")


@contextmanager
def hub_offline(allow_download: bool):
    """Set the hub libraries' offline switches for the duration of a load (restored afterwards)."""
    if allow_download:
        yield
        return
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def check_device(device: str, param: str) -> None:
    """Fail early (not on the first item) when a CUDA device is asked for and none is there."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"`{param}` is {device!r} but CUDA is not available on this machine")
