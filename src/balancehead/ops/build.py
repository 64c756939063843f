"""Compiling the op extensions with ninja through torch.utils.cpp_extension.

Deterministic names and locations: <out_dir>/balancehead_ops_cpu and <out_dir>/balancehead_ops_cuda,
so `loader.load_built_ops(out_dir)` finds them.
"""
from __future__ import annotations

import os
from pathlib import Path

from .loader import CPU_NAME, CUDA_NAME

CSRC = Path(__file__).resolve().parent / "csrc"


def cpu_sources() -> list[str]:
    return [str(CSRC / "ops_cpu.cpp")]


def cuda_sources() -> list[str]:
    return [str(CSRC / "ops_cpu.cpp"), str(CSRC / "ops_cuda.cu")]


def build_cpu_extension(out_dir: Path, verbose: bool = False):
    """Compile (or reuse, when sources are unchanged) and import the C++ extension."""
    from torch.utils.cpp_extension import load

    build_dir = Path(out_dir) / CPU_NAME
    build_dir.mkdir(parents=True, exist_ok=True)
    return load(name=CPU_NAME, sources=cpu_sources(), build_directory=str(build_dir),
                extra_cflags=["-O3"], extra_include_paths=[str(CSRC)], verbose=verbose)


def build_cuda_extension(out_dir: Path, arch_list: str, verbose: bool = False):
    """Compile the C++ + CUDA extension. Importing it may fail on a machine without a CUDA driver;
    the caller distinguishes 'compiled' (the .so exists) from 'loaded'."""
    from torch.utils.cpp_extension import load

    build_dir = Path(out_dir) / CUDA_NAME
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list  # read by cpp_extension when writing the ninja file
    return load(name=CUDA_NAME, sources=cuda_sources(), build_directory=str(build_dir),
                extra_cflags=["-O3", "-DBH_WITH_CUDA"], extra_cuda_cflags=["-O3", "-DBH_WITH_CUDA"],
                extra_include_paths=[str(CSRC)], with_cuda=True, verbose=verbose)
