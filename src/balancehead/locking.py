"""One workflow tool at a time per checkout: `snakemake` and `dvc repro` refuse to run together.

Both tools lock their own runs but not against each other, and the second one used to fail later with
a confusing missing-input error (issue 14). The checks use each tool's own lock records, so nothing
new can go stale:

* Snakemake holds `.snakemake/locks/*.lock` while it runs. A stage started by anything else (DVC, or
  by hand) while they exist stops with a message saying so (`refuse_if_snakemake_running`).
* DVC records the stages it is running, with their PIDs, in `.dvc/tmp/rwlock`. The Snakefile refuses to
  start while a live process holds such an entry (`refuse_if_dvc_running`).

The Snakefile marks its jobs with `ORCHESTRATOR_ENV=snakemake` so its own stages pass the first check.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

ORCHESTRATOR_ENV = "BALANCEHEAD_ORCHESTRATOR"


class WorkflowLocked(RuntimeError):
    """Another workflow tool is running in this checkout."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def dvc_holders(root) -> list[str]:
    """'PID: command' of live processes that hold DVC stage locks in this checkout."""
    path = Path(root) / ".dvc/tmp/rwlock"
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return []
    infos = list((lock.get("write") or {}).values())
    for readers in (lock.get("read") or {}).values():
        infos += readers
    out = []
    for info in infos:
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and pid != os.getpid() and _alive(pid) and f"{pid}" not in " ".join(out):
            out.append(f"{pid}: {info.get('cmd', '?')}")
    return out


def refuse_if_dvc_running(root) -> None:
    holders = dvc_holders(root)
    if holders:
        raise WorkflowLocked(f"DVC is running in this checkout ({'; '.join(holders)}); wait for it to finish "
                             "before starting Snakemake (both would write the same data/ directories)")


def refuse_if_snakemake_running(root) -> None:
    """For stages not started by Snakemake: stop while Snakemake holds this checkout."""
    if os.environ.get(ORCHESTRATOR_ENV) == "snakemake":
        return
    locks = sorted((Path(root) / ".snakemake/locks").glob("*.lock"))
    if locks:
        raise WorkflowLocked(f"Snakemake is running in this checkout ({locks[0]} exists); wait for it to finish "
                             "before `dvc repro` or `balancehead run`. If no Snakemake is running (it was "
                             "killed), remove the stale lock with `snakemake --unlock`.")
