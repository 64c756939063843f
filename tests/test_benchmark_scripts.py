"""The benchmark scripts are run by hand or on a rented GPU, never by the suite's other tests: at least
every one of them must compile, and the shell scripts must parse (a syntax error there costs a GPU run)."""
import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_benchmark_script_compiles(script):
    path = BENCH / script
    compile(path.read_text(), str(path), "exec")  # raises SyntaxError (a misplaced __future__ import too)


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.sh")))
def test_benchmark_shell_script_parses(script):
    r = subprocess.run(["bash", "-n", str(BENCH / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_scripts_are_found():
    assert {"bench_ops.py", "bench_vs_eg3d.py"} <= {p.name for p in BENCH.glob("*.py")}
    assert (BENCH / "gpu_check.sh").exists()


def test_mixed_step_count_books_only_the_fp16_blocks_as_float16(monkeypatch):
    """bench_flops --step --precision mixed: the same network FLOPs as fp32, part by part; float16 FLOPs
    only where EG3D's fp16 blocks run (SR's, and D's high-resolution ones: most of D), and the CUDA-only
    gate of layers.block_dtype is restored afterwards."""
    from balancehead.models import discriminator, synthesis

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_flops

    gate = synthesis.block_dtype
    mixed = bench_flops.step_parts("ours", "tiny", None, "meta", None, "mixed")
    fp32 = bench_flops.step_parts("ours", "tiny", None, "meta", None, "fp32")
    assert synthesis.block_dtype is gate and discriminator.block_dtype is gate
    net = lambda c, part: c.flops[(part, "net")]  # noqa: E731
    parts = [part for part, kind in fp32.flops if kind == "net"]
    assert set(parts) == {"G fwd", "D fwd (fake)", "G-main bwd", "D fwd (fake+real)", "D bwd"}
    for part in parts:
        assert net(mixed, part) == net(fp32, part)
        assert 0 < mixed.half[part] < net(mixed, part)      # SR's fp16 blocks; D's epilogue stays float32
    assert not fp32.half
    for key in ("D fwd (fake)", "D fwd (fake+real)", "D bwd"):
        assert mixed.half[key] / net(mixed, key) > 0.5
    m32, m16, mem = bench_flops.floor_ms(mixed, bench_flops.GPUS["h200"])
    assert m16 > 0 and m32 > 0 and mem > 0
    assert bench_flops.floor_ms(fp32, bench_flops.GPUS["h200"])[1] == 0
    with pytest.raises(ValueError, match="meta"):
        bench_flops.step_parts("ours", "tiny", None, "cpu", None, "mixed")


def test_cpu_peak_follows_the_allocators_events(monkeypatch):
    """bench_vs_eg3d's CPU peak: the highest sum of allocations minus frees, in time order."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_vs_eg3d

    mb = 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        a = torch.empty(4 * mb, dtype=torch.uint8)
        b = torch.empty(8 * mb, dtype=torch.uint8)
        del a
        c = torch.empty(2 * mb, dtype=torch.uint8)      # 10 MiB live: under the peak of a and b together
        del b, c
        d = torch.empty(10 * mb, dtype=torch.uint8)    # the largest single block, still under it
        del d
    assert bench_vs_eg3d.allocation_peak(prof.profiler.kineto_results.events()) == 12 * mb
