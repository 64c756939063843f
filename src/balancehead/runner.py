"""Running a stage: logging, seeding, the per-item cache that makes reruns resumable, sharding, and
assembling the stage's output directory.

Output directory of an item stage (`data/<stage>/`):
  items.jsonl          one JSON record per item, in item order (sorted ids), with `files` = {name: sha256}
  files/<id>.<name>    the item's files (PNG images, masks, ...)
  digests.json         sha256 of every file above, checked when a later stage reads them (`integrity`)

Per-item cache (`data/.items/<stage>/<key>/`): every finished item is written atomically (files first,
then `<id>.json` as the commit mark), so a rerun after kill -9 skips finished items and never reads a
half-written file. The key hashes the stage's params, code and input fingerprints, so a change of any
of them starts a fresh cache. Work is grouped in fixed chunks of the global item list; a shard takes
every n-th chunk, so an item's bytes never depend on how the work was split.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import integrity, io
from .params import Params
from .pipeline import SRC, STAGES, Stage, resolve_dep
from .progress import Progress

ItemResult = tuple[dict, dict[str, bytes]]   # (record, {file name: bytes})


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def derive_seed(*parts) -> int:
    """A 63-bit seed from (global seed, stage, item id, ...): independent of order and sharding."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class StageContext:
    params: Params
    stage: Stage
    root: Path
    shard: Optional[tuple[int, int]] = None
    params_path: Path = Path("params.yaml")
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("balancehead"))

    def path(self, rel: str) -> Path:
        return self.root / rel

    def rng(self, *parts) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.params.seed, self.stage.name, *parts))

    def seed(self, *parts) -> int:
        return derive_seed(self.params.seed, self.stage.name, *parts)

    @property
    def out_dir(self) -> Path:
        return self.path(self.stage.outs[0])

    def section(self, key: str):
        return self.params.section(key)

    # ----- inputs ------------------------------------------------------------------------------
    def read_items(self, dep: str) -> list[dict]:
        path = self.path(dep) / "items.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{self.stage.name}: input {path} is missing; run the upstream stage first")
        integrity.verify_in(self.path(dep), "items.jsonl")
        return io.read_jsonl(path)

    def item_file(self, dep: str, item_id: str, name: str) -> Path:
        """Path of an upstream item's file, checked against its recorded digest (once per run)."""
        integrity.verify_in(self.path(dep), f"files/{item_id}.{name}", item=item_id)
        return self.path(dep) / "files" / f"{item_id}.{name}"

    # ----- cache -------------------------------------------------------------------------------
    def cache_key(self) -> str:
        h = hashlib.sha256()
        h.update(self.stage.name.encode())
        for key in self.stage.params:
            value = self.params.section(key)
            dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            h.update(json.dumps([key, dumped], sort_keys=True).encode())
        code_root = SRC.parent.parent     # the source actually imported, wherever the run happens
        for rel in self.stage.code_files():
            h.update(rel.encode() + sha256_file(code_root / rel).encode())
        for dep in (resolve_dep(d, self.params) for d in self.stage.deps):
            p = self.path(dep)
            fp = p if not p.is_dir() else p / (integrity.DIGESTS_FILE if (p / integrity.DIGESTS_FILE).exists()
                                              else "items.jsonl")    # digests of every upstream file
            h.update(dep.encode() + (sha256_file(fp).encode() if fp.exists() else b"missing"))
        return h.hexdigest()[:16]


class ItemCache:
    def __init__(self, ctx: StageContext):
        self.stage, self.log = ctx.stage.name, ctx.log
        self.base = ctx.path(f"data/.items/{ctx.stage.name}")
        self.dir = self.base / ctx.cache_key()
        self.dir.mkdir(parents=True, exist_ok=True)
        integrity.clean_leftovers(self.dir)

    def done(self, item_id: str) -> bool:
        """Cached and intact: a damaged entry (garbled JSON, a file not matching its digest) is
        dropped with a warning naming the file, and the item is computed again."""
        problem = integrity.cached_item_problem(self.dir, item_id)
        if problem == "absent":
            return False
        if problem:
            self.log.warning("%s: cache entry of item %s is damaged (%s); recomputing it", self.stage, item_id, problem)
            (self.dir / f"{item_id}.json").unlink(missing_ok=True)
            return False
        return True

    def put(self, item_id: str, record: dict, files: dict[str, bytes]) -> None:
        record = dict(record)
        record["files"] = {}
        for name, data in sorted(files.items()):
            io.write_bytes(self.dir / f"{item_id}.{name}", data)
            record["files"][name] = sha256_bytes(data)
        io.write_bytes(self.dir / f"{item_id}.json", (json.dumps(record, sort_keys=True, default=io._json_default) + "\n").encode())

    def get(self, item_id: str) -> dict:
        return io.read_json(self.dir / f"{item_id}.json")

    def file(self, item_id: str, name: str) -> Path:
        return self.dir / f"{item_id}.{name}"

    def prune_others(self) -> None:
        """Drop caches of older keys of this stage (older params/code/inputs)."""
        for p in self.base.iterdir():
            if p.is_dir() and p != self.dir:
                shutil.rmtree(p, ignore_errors=True)


def run_items(ctx: StageContext, item_ids: list[str],
              compute: Callable[[list[str]], list[ItemResult]],
              chunk_size: int = 1, desc: str = "items") -> Optional[tuple[list[dict], ItemCache]]:
    """Compute every item not yet cached (this shard's chunks only when sharded).

    Returns (records in item order, cache) for an unsharded run, None for a shard run (which writes
    its marker file instead).
    """
    if len(set(item_ids)) != len(item_ids):
        raise ValueError(f"{ctx.stage.name}: duplicate item ids")
    cache = ItemCache(ctx)
    chunks = [item_ids[i:i + chunk_size] for i in range(0, len(item_ids), chunk_size)]
    mine = chunks if ctx.shard is None else [c for k, c in enumerate(chunks) if k % ctx.shard[1] == ctx.shard[0]]
    todo = [c for c in mine if not all(cache.done(i) for i in c)]
    n_mine = sum(len(c) for c in mine)
    n_todo = sum(len(c) for c in todo)
    where = "" if ctx.shard is None else f" (shard {ctx.shard[0]}/{ctx.shard[1]})"
    ctx.log.info("%s%s: %d items, %d already cached, %d to compute", ctx.stage.name, where, n_mine, n_mine - n_todo, n_todo)
    t0 = time.time()
    with Progress(ctx.log, f"{ctx.stage.name}{where} {desc}", n_todo, "item") as bar:   # log lines: SLURM/Snakemake logs
        for chunk in todo:
            results = compute(chunk)
            if len(results) != len(chunk):
                raise RuntimeError(f"{ctx.stage.name}: compute returned {len(results)} results for {len(chunk)} items")
            for item_id, (record, files) in zip(chunk, results):
                cache.put(item_id, record, files)
            bar.update(len(chunk))
    if n_todo:
        ctx.log.info("%s%s: computed %d items in %.1f s", ctx.stage.name, where, n_todo, time.time() - t0)
    if ctx.shard is not None:
        io.write_text(ctx.path(ctx.stage.shard_marker(*ctx.shard)), f"{n_mine} items\n")
        return None
    return [cache.get(i) for i in item_ids], cache


def assemble_dir(out_dir: Path, records: list[dict], cache: Optional[ItemCache],
                 extra_files: Optional[dict[str, bytes]] = None) -> None:
    """Write `out_dir` (items.jsonl + files/ + digests.json) as a whole: built beside it, then renamed
    into place."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    integrity.clean_leftovers(out_dir.parent)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{integrity.temp_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "files").mkdir(parents=True)
    for rec in records:
        for name in rec.get("files", {}):
            src = cache.file(rec["id"], name)
            dst = tmp / "files" / f"{rec['id']}.{name}"
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    io.write_jsonl(tmp / "items.jsonl", records)
    for name, data in (extra_files or {}).items():
        io.write_bytes(tmp / name, data)
    integrity.write_digests(tmp, _producer(out_dir))
    old = out_dir.parent / f".{out_dir.name}.tmp-{integrity.temp_tag()}.old"
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    if cache is not None:
        cache.prune_others()


def _producer(out_dir: Path) -> str:
    """Name of the stage whose output `out_dir` is (for 'rerun stage X' messages)."""
    posix = Path(out_dir).as_posix()
    return next((s.name for s in STAGES for o in s.outs if posix.endswith("/" + o) or posix == o), Path(out_dir).name)


def finish(ctx: StageContext, done, metrics: Optional[Callable[[list[dict], ItemCache], dict]] = None) -> None:
    """After `run_items`: an unsharded run writes the stage's metrics file (`metrics(records, cache)`)
    and assembles its output directory; a shard run has nothing more to do."""
    if done is None:
        return
    records, cache = done
    if metrics is not None:
        io.write_json(ctx.path(ctx.stage.metrics[0]), metrics(records, cache))
    assemble_dir(ctx.out_dir, records, cache)


def setup_logging(log_path: Optional[Path]) -> logging.Logger:
    log = logging.getLogger("balancehead")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(fmt)
    log.addHandler(h)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_path, mode="a", encoding="utf-8")
        fh.setFormatter(fmt)
        log.addHandler(fh)
    log.propagate = False
    return log
