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
