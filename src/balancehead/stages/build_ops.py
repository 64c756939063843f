"""build_ops stage: compile the op extensions with ninja and write a build report.

    main(BuildOpsConfig(), out_dir) -> report dict, also written to out_dir/report.json

* The C++ (CPU) extension is always attempted, imported and checked against the references.
* The CUDA extension is compiled when `build_cuda` is "yes", or "auto" and nvcc, a CUDA build of
  torch AND a usable GPU exist at run time (compiling it takes minutes and is wasted where no GPU
  runs it). "yes" compiles it whenever a toolkit exists (e.g. on a GPU-less login node for later use)
  and fails without one; "auto" records the reason it was skipped.
* Long compiles log a heartbeat line every 30 s (visible in SLURM / Snakemake logs).

The stages that run the generator (train, sample_prior, invert, evaluate) declare this stage's output as
an input and call `balancehead.ops.use_built(...)` on it: no environment variable to set. They use the
compiled ops where a GPU runs them (on CPU the PyTorch references are as fast or faster).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from balancehead import fileio
from balancehead.ops import build as ops_build
from balancehead.ops.check import compare_with_reference
from balancehead.ops.loader import CPU_NAME, CUDA_NAME, REPORT, find_shared_object
from balancehead.progress import heartbeat

TOLERANCE = 1e-6  # float64 max abs error allowed between compiled and reference
USED_BY = ("train", "sample_prior", "invert", "evaluate")   # stages with this output as their `ops` input
log = logging.getLogger("balancehead")


@dataclass(frozen=True)
class BuildOpsConfig:
    build_cuda: str = "auto"          # "auto" | "yes" | "no"
    cuda_arch_list: str = "8.0;9.0"   # TORCH_CUDA_ARCH_LIST for nvcc, e.g. "8.0;8.6;9.0"
    cuda_home: str = ""               # toolkit root; "" = $CUDA_HOME or found from nvcc
    verbose: bool = False
    check_seed: int = 0

    def __post_init__(self):
        if self.build_cuda not in ("auto", "yes", "no"):
            raise ValueError(f"build_cuda must be auto|yes|no, got {self.build_cuda!r}")


def _first_line(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.splitlines()
    return (lines[-1] if cmd[0].endswith("nvcc") else lines[0]) if lines else None


def find_cuda_home(cfg: BuildOpsConfig) -> str | None:
    """A toolkit root holding bin/nvcc and include/cuda_runtime.h (nvcc on PATH may be a wrapper)."""
    candidates = [cfg.cuda_home, os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", "")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    candidates.append("/usr/local/cuda")
    for root in candidates:
        if root and (Path(root) / "bin" / "nvcc").exists() and (Path(root) / "include" / "cuda_runtime.h").exists():
            return root
    return None


def _ensure_ninja_on_path() -> None:
    """cpp_extension runs `ninja`; inside a non-activated virtualenv it sits next to python."""
    if shutil.which("ninja") is None:
        os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


def _check(module, device: str, seed: int) -> dict:
    errors = compare_with_reference(module, device=device, seed=seed)
    worst = max(max(e.values()) for e in errors.values())
    return {"device": device, "max_abs_error": worst, "passed": worst <= TOLERANCE, "cases": errors}


def _build_cpu(cfg: BuildOpsConfig, out_dir: Path) -> dict:
    entry = {"name": CPU_NAME, "devices": ["cpu"]}
    try:
        with heartbeat(log, f"build_ops: compiling {CPU_NAME}"):
            module = ops_build.build_cpu_extension(out_dir, cfg.verbose)
    except Exception as exc:  # report, don't crash: the models fall back to the references
        return {**entry, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[-4000:]}
    entry.update(status="ok", path=str(find_shared_object(out_dir, CPU_NAME).relative_to(out_dir)))
    entry["check"] = _check(module, "cpu", cfg.check_seed)
    return entry


def _build_cuda(cfg: BuildOpsConfig, out_dir: Path) -> dict:
    entry = {"name": CUDA_NAME, "devices": ["cpu", "cuda"], "arch_list": cfg.cuda_arch_list}
    if cfg.build_cuda == "no":
        return {**entry, "status": "skipped", "reason": "build_cuda=no"}
    cuda_home = find_cuda_home(cfg)
    reason = None
    if cuda_home is None:
        reason = "no CUDA toolkit (nvcc + headers) found"
    elif torch.version.cuda is None:
        reason = f"torch {torch.__version__} is not a CUDA build"
    elif cfg.build_cuda == "auto" and not torch.cuda.is_available():
        reason = "no usable CUDA device at run time (torch.cuda.is_available() is False); build_cuda=yes compiles anyway"
    if reason:
        if cfg.build_cuda == "yes":
            raise RuntimeError(f"build_cuda=yes but {reason}")
        return {**entry, "status": "skipped", "reason": reason}
    os.environ["CUDA_HOME"] = cuda_home
    import torch.utils.cpp_extension as cpp_extension

    cpp_extension.CUDA_HOME = cuda_home  # it is computed at import time, possibly from a wrapper nvcc
    entry["cuda_home"] = cuda_home
    try:
        with heartbeat(log, f"build_ops: compiling {CUDA_NAME} for {cfg.cuda_arch_list} (several minutes)"):
            module = ops_build.build_cuda_extension(out_dir, cfg.cuda_arch_list, cfg.verbose)
    except Exception as exc:
        so = find_shared_object(out_dir, CUDA_NAME)
        if so is None:
            if cfg.build_cuda == "yes":
                raise
            return {**entry, "status": "failed", "reason": traceback.format_exception_only(exc)[-1].strip()[-4000:]}
        return {**entry, "status": "compiled", "path": str(so.relative_to(out_dir)),
                "reason": f"compiled but not importable here: {exc}"}
    entry.update(status="ok", path=str(find_shared_object(out_dir, CUDA_NAME).relative_to(out_dir)))
    entry["check"] = _check(module, "cpu", cfg.check_seed)  # the CPU path of the combined build
    if torch.cuda.is_available():
        entry["check_cuda"] = _check(module, "cuda", cfg.check_seed)
    else:
        entry["check_cuda"] = {"skipped": "no CUDA device on this machine; compiled only"}
    return entry


def build(cfg: BuildOpsConfig, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _ensure_ninja_on_path()
    cuda_home = find_cuda_home(cfg)
    report = {
        "config": asdict(cfg),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "gcc": _first_line(["c++", "--version"]),
            "nvcc": _first_line([str(Path(cuda_home) / "bin" / "nvcc"), "--version"]) if cuda_home else None,
            "ninja": _first_line(["ninja", "--version"]),
        },
        "extensions": [_build_cpu(cfg, out_dir), _build_cuda(cfg, out_dir)],
        "used_by": list(USED_BY),
    }
    report["ok"] = report["extensions"][0]["status"] == "ok" and report["extensions"][0]["check"]["passed"]
    fileio.write_json(out_dir / REPORT, report)
    return report


def main(ctx) -> None:
    """The `build_ops` stage: build into a fresh directory beside the `ops` output, then rename it into
    place, so a crash never leaves a half-built output behind."""
    import shutil

    p = ctx.params.build_ops
    cfg = BuildOpsConfig(build_cuda=p.build_cuda, cuda_arch_list=p.cuda_arch_list, cuda_home=p.cuda_home,
                         verbose=p.verbose, check_seed=p.check_seed)
    out_dir = ctx.output("ops")
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    report = build(cfg, tmp)
    for ext in report["extensions"]:
        ctx.log.info("build_ops: %s: %s%s", ext["name"], ext["status"],
                     f" ({ext.get('reason')})" if ext.get("reason") else "")
        for key in ("check", "check_cuda"):
            check = ext.get(key) or {}
            if check.get("passed") is False:
                worst = max(check["cases"], key=lambda c: max(check["cases"][c].values()))
                ctx.log.warning("build_ops: %s FAILED its %s check against the references (max abs error %.3g, "
                                "worst case %s): the ops loader will not use it", ext["name"], check["device"],
                                check["max_abs_error"], worst)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    if not report["ok"]:
        raise SystemExit(f"build_ops: the C++ extension did not build or failed its check; see {out_dir / REPORT}")
    ctx.log.info("build_ops: %s use the compiled ops in %s (their declared input)", ", ".join(USED_BY), out_dir)
