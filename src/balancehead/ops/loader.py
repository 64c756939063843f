"""Finding the compiled op extensions that the `build_ops` stage produced.

The build directory is given explicitly, by ``use_built(dir)`` (what the stages do with their declared
``data/build_ops`` input) or through the environment variable ``BALANCEHEAD_OPS_DIR``; each value of the
variable is resolved and imported once (cached), so an op call costs a dictionary lookup. Inside it, the
stage builds two
extensions with fixed names:

* ``balancehead_ops_cpu/balancehead_ops_cpu*.so``   C++ kernels (always attempted);
* ``balancehead_ops_cuda/balancehead_ops_cuda*.so`` C++ + CUDA kernels (where nvcc exists).

When nothing usable is found the ops fall back to their pure-PyTorch references and one log
line says so; results are the same either way (tests check it), only speed differs.

The stage's ``report.json`` records each extension's numerical check against the references (on the
CPU, and on the GPU where one was present). An extension whose check failed is never imported: its
kernels would train on wrong numbers. A build directory without a report (built by hand) is trusted;
an unreadable report trusts nothing.
"""
from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType

import torch

from balancehead import fileio

log = logging.getLogger("balancehead.ops")

ENV_VAR = "BALANCEHEAD_OPS_DIR"
CPU_NAME = "balancehead_ops_cpu"
CUDA_NAME = "balancehead_ops_cuda"


def _import_shared_object(name: str, so_path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, str(so_path))
    spec = importlib.util.spec_from_file_location(name, str(so_path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def find_shared_object(build_dir: Path, name: str) -> Path | None:
    candidates = sorted((Path(build_dir) / name).glob(f"{name}*.so")) + sorted((Path(build_dir) / name).glob(f"{name}*.pyd"))
    return candidates[0] if candidates else None


REPORT = "report.json"


def refused_extensions(build_dir: Path) -> dict[str, str]:
    """Extension name -> why it must not be used, from the build's report.json (empty without one)."""
    path = Path(build_dir) / REPORT
    if not path.exists():
        return {}
    try:
        extensions = {e["name"]: e for e in fileio.read_json(path)["extensions"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"{path} is unreadable ({type(exc).__name__}: {exc}); rerun the build_ops stage"
        return {CPU_NAME: why, CUDA_NAME: why}
    refused = {}
    for name, entry in extensions.items():
        for key in ("check", "check_cuda"):
            check = entry.get(key)
            if isinstance(check, dict) and check.get("passed") is False:
                refused[name] = (f"its {check.get('device', key)} kernels failed the numerical check against the "
                                 f"references in {path} (max abs error {check.get('max_abs_error')})")
    return refused


@functools.lru_cache(maxsize=None)
def _load_cached(build_dir: str, want_cuda: bool) -> ModuleType | None:
    names = [CUDA_NAME, CPU_NAME] if want_cuda else [CPU_NAME]
    refused = refused_extensions(Path(build_dir))
    for name in names:
        so = find_shared_object(Path(build_dir), name)
        if so is None:
            continue
        if name in refused:
            log.warning("ops: not using %s: %s", so, refused[name])
            continue
        try:
            module = _import_shared_object(name, so)
        except (ImportError, OSError) as exc:  # e.g. a CUDA build on a machine without the driver
            log.info("ops: could not import %s (%s); trying the next build", so, exc)
            continue
        log.info("ops: using compiled extension %s", so)
        return module
    log.info("ops: no compiled extension in %s; using the PyTorch reference ops", build_dir)
    return None


def load_built_ops(build_dir: str | os.PathLike | None = None) -> ModuleType | None:
    """The compiled op module from `build_dir` (or $BALANCEHEAD_OPS_DIR), or None for the reference.

    Prefers the CUDA build when CUDA is available at run time, else the C++ (CPU) build.
    """
    if build_dir is None:
        return _load_from_env(os.environ.get(ENV_VAR) or "")
    return _load_cached(str(Path(build_dir).resolve()), torch.cuda.is_available())


@functools.lru_cache(maxsize=None)
def _load_from_env(value: str) -> ModuleType | None:
    """Resolved once per value of the variable: an op call costs one dict lookup, no path work."""
    if not value:
        # debug only: use_built() already said which ops a stage uses; users never set this variable
        log.debug("ops: %s is not set; using the PyTorch reference ops", ENV_VAR)
        return None
    return _load_cached(str(Path(value).resolve()), torch.cuda.is_available())


@functools.lru_cache(maxsize=None)
def _has_cuda_kernels(module: ModuleType) -> bool:
    return bool(module.has_cuda_kernels())


COMPILED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def use_built(build_dir: str | os.PathLike, cpu: bool = False) -> ModuleType | None:
    """Use the ops compiled in `build_dir` (a stage's declared `data/build_ops` input) in this process and
    the processes it starts (torchrun / data-loader workers inherit it through $BALANCEHEAD_OPS_DIR).

    Only where they pay off: with a usable GPU; on a CPU-only machine only when `cpu` is true (the C++
    CPU kernels are slower than the PyTorch references for bias_act and upfirdn2d on CPU, see
    benchmarks/bench_ops.py). Returns the module the ops will use, or None (the reference ops)."""
    if not (cpu or torch.cuda.is_available()):
        log.info("ops: no usable GPU; the PyTorch reference ops are used (faster than the C++ CPU build)")
        return None
    path = Path(build_dir).resolve()
    os.environ[ENV_VAR] = str(path)
    return load_built_ops(path)


def compiled_for(x: torch.Tensor) -> ModuleType | None:
    """The compiled module able to run on `x`'s device, or None (use the reference).

    All four floating dtypes run compiled (16-bit ones accumulate in float32), so mixed precision
    does not silently fall back to the references.
    """
    module = _load_from_env(os.environ.get(ENV_VAR) or "")
    if module is None:
        return None
    if x.is_cuda and not _has_cuda_kernels(module):
        return None
    if x.dtype not in COMPILED_DTYPES:
        return None
    return module
