"""kill -9 in the middle of a real stage run: the rerun skips finished items, never reads a half-written
file, and ends with the same output as an uninterrupted run."""
from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from conftest import run, set_params, tool_env


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + f.read_bytes())
    return h.hexdigest()


def test_kill_minus_nine_then_rerun_resumes(workspace):
    set_params(workspace, {"ingest": {"num_sources": 400}})
    cmd = [sys.executable, "-m", "balancehead", "run", "ingest"]
    proc = subprocess.Popen(cmd, cwd=workspace, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache_root = workspace / "data/.items/ingest"
    deadline = time.time() + 120
    done = []
    while time.time() < deadline and proc.poll() is None:
        done = list(cache_root.glob("*/src-??????.json")) if cache_root.exists() else []
        if len(done) >= 40:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the stage finished before it could be killed; raise num_sources"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workspace / "data/ingest").exists()          # nothing assembled from a partial run

    cache = next(cache_root.iterdir())
    finished = sorted(p.stem for p in cache.glob("src-??????.json"))      # the per-item commit marks
    assert 40 <= len(finished) < 400
    for item in finished:                                      # every committed item is whole
        with Image.open(cache / f"{item}.png") as im:
            im.load()

    rerun = run(cmd, cwd=workspace)
    m = re.search(r"400 items, (\d+) already cached, (\d+) to compute", rerun.stderr)
    assert m, rerun.stderr[-2000:]
    assert int(m.group(1)) >= len(finished) and int(m.group(1)) + int(m.group(2)) == 400
    resumed = tree_digest(workspace / "data/ingest")

    import shutil
    shutil.rmtree(workspace / "data")
    run(cmd, cwd=workspace)
    assert tree_digest(workspace / "data/ingest") == resumed
