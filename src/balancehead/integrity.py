"""Integrity as a property of the data format: every file a stage writes is recorded with its sha256,
and readers check it before trusting the bytes (issue 14).

The record: a directory that a stage assembles (an item stage's `data/<stage>/`, the packed dataset,
a training checkpoint) holds `digests.json` = {"format", "stage", "files": {relative path: sha256}},
written last, just before the directory is renamed into place. Item records (`items.jsonl`) and the
per-item cache carry the same digests per file.

The check: `verify_in(directory, relpath)` hashes the file (streaming, 1 MiB blocks) and compares it
with the record. Hashes are memoised on (device, inode, size, mtime), so each file is read once per
process however often (and under however many hard-linked names) it is asked for; a rewritten file
has a new mtime/inode and is hashed again.
A mismatch raises `IntegrityError`, naming the file, the item where known, and the stage to rerun.
A directory without `digests.json` (written before this format) is not checked.

Leftovers: temporary files of killed writers carry the writer's host and PID in their names
(`fileio.atomic_path`, checkpoint/assembly temp dirs); `clean_leftovers` removes those whose process is
gone, on the next run.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterable, Optional

from .hashing import sha256_file

DIGESTS_FILE = "digests.json"
FORMAT = "balancehead-digests/1"


class IntegrityError(RuntimeError):
    """A file does not match its recorded digest (or its record is unreadable)."""


def rerun_hint(stage: Optional[str]) -> str:
    if not stage:
        return "rerun the stage that wrote it"
    return (f"rerun stage '{stage}' (balancehead run {stage}; or dvc repro -f {stage}; "
            f"or snakemake --forcerun {stage})")


# ------------------------------------------------------------------------------------------ hashing
_MEMO: dict[tuple[int, int, int, int], str] = {}     # (device, inode, size, mtime) -> sha256, this process


def file_digest(path) -> str:
    """sha256 of `path`, memoised on the file's identity (device, inode, size, mtime): once per file per
    run, also across hard links and renames (a cache file linked into a stage directory is one file)."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _MEMO.get(key)
    if digest is None:
        if len(_MEMO) >= 1 << 18:
            _MEMO.clear()
        digest = _MEMO[key] = sha256_file(path)
    return digest


def verify_file(path, expected: str, *, item: Optional[str] = None, stage: Optional[str] = None) -> None:
    """Raise `IntegrityError` unless `path` exists and hashes to `expected`."""
    what = f"{path}" + (f" (item {item})" if item else "")
    try:
        actual = file_digest(path)
    except FileNotFoundError:
        raise IntegrityError(f"{what} is missing although it is recorded; {rerun_hint(stage)}") from None
    if actual != expected:
        raise IntegrityError(f"{what} is corrupt: sha256 {actual[:16]}... does not match the recorded "
                             f"{expected[:16]}...; {rerun_hint(stage)}")


# ----------------------------------------------------------------------------------- digests.json
def write_digests(directory, stage: str, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Record every file under `directory` (except `exclude` and the record itself); returns the map."""
    from . import fileio

    directory = Path(directory)
    skip = {DIGESTS_FILE, *exclude}
    files = {}
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).as_posix()
        if p.is_file() and rel not in skip:
            files[rel] = file_digest(p)
    fileio.write_json(directory / DIGESTS_FILE, {"format": FORMAT, "stage": stage, "files": files})
    return files


def read_digests(directory) -> Optional[dict]:
    """The directory's record ({"stage", "files"}), None when it has none; IntegrityError when garbled."""
    path = Path(directory) / DIGESTS_FILE
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return _read_digests(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=1024)
def _read_digests(path: str, size: int, mtime_ns: int, inode: int) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("format") != FORMAT or not isinstance(record.get("files"), dict):
            raise ValueError(f"not a {FORMAT} record")
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{path} is unreadable ({e}); the directory cannot be trusted: "
                             "rerun the stage that wrote it") from None
    return record


def verify_in(directory, relpath: str, *, item: Optional[str] = None) -> None:
    """Check `directory/relpath` against the directory's record (no record: nothing to check).
    A present file that the record does not list is an error too: the stage did not write it."""
    record = read_digests(directory)
    if record is None:
        return
    expected = record["files"].get(relpath)
    if expected is None:
        if not (Path(directory) / relpath).exists():
            return                       # an optional file that this directory does not have
        raise IntegrityError(f"{Path(directory) / relpath} is not recorded in {Path(directory) / DIGESTS_FILE}; "
                             f"{rerun_hint(record.get('stage'))}")
    verify_file(Path(directory) / relpath, expected, item=item, stage=record.get("stage"))


def verify_tree(directory) -> list[str]:
    """Every problem of one recorded directory, as messages (empty: intact or unrecorded)."""
    try:
        record = read_digests(directory)
    except IntegrityError as e:
        return [str(e)]
    if record is None:
        return []
    problems = []
    for rel, expected in sorted(record["files"].items()):
        try:
            verify_file(Path(directory) / rel, expected, stage=record.get("stage"))
        except IntegrityError as e:
            problems.append(str(e))
    return problems


# -------------------------------------------------------------------------------------- leftovers
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
_LEFTOVER = re.compile(r"^\..*\.tmp-(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)(?:\..*)?$")


def temp_tag() -> str:
    """`<host>-<pid>`: put into temporary names so a later run can tell a dead writer's leftovers."""
    return f"{_HOST}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(directory) -> list[Path]:
    """Remove `.*.tmp-<host>-<pid>[...]` files/dirs directly in `directory` whose writer, on this host,
    is gone; returns what was removed. Another host's temp files are left alone (its writer may be
    alive on a shared filesystem)."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        m = _LEFTOVER.match(p.name)
        if not m:
            continue
        host, pid = m.group("host"), int(m.group("pid"))
        if host != _HOST or _alive(pid):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


# -------------------------------------------------------------------------------- per-item cache
def cached_item_problem(cache_dir, item_id: str) -> Optional[str]:
    """None when `<item_id>.json` and every file it records are intact; "absent" when the item is not
    cached; otherwise what is wrong, naming the file."""
    path = Path(cache_dir) / f"{item_id}.json"
    if not path.exists():
        return "absent"
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        files = record["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return f"{path} is unreadable: {type(e).__name__}: {e}"
    for name, digest in files.items():
        try:
            verify_file(Path(cache_dir) / f"{item_id}.{name}", digest, item=item_id)
        except IntegrityError as e:
            return str(e).split(";")[0]
    return None


# ----------------------------------------------------------------------------- balancehead verify
def verify_outputs(stage_outs: Iterable[tuple[str, Iterable[str]]], root) -> tuple[list[str], list[str]]:
    """Check every recorded output directory of the given (stage, outs) pairs under `root`.
    -> (report lines, names of the stages to rerun)."""
    lines, rerun = [], []
    for stage, outs in stage_outs:
        for out in outs:
            path = Path(root) / out
            if not path.exists():
                lines.append(f"missing  {out}  (stage {stage} has not run)")
                continue
            if not path.is_dir() or read_digests_safe(path) is None:
                lines.append(f"unrecorded  {out}  (no {DIGESTS_FILE}: written before digests, not checked)")
                continue
            problems = verify_tree(path)
            if problems:
                lines += [f"DAMAGED  {out}: {p}" for p in problems]
                if stage not in rerun:
                    rerun.append(stage)
            else:
                lines.append(f"ok  {out}  ({len(read_digests(path)['files'])} files match their digests)")
    return lines, rerun


def read_digests_safe(directory) -> Optional[dict]:
    """Like `read_digests`, but a garbled record counts as present (verify_tree reports it)."""
    try:
        return read_digests(directory)
    except IntegrityError:
        return {"files": {}}
