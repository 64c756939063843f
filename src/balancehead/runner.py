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

from . import fileio, integrity
from .params import Params
from .hashing import derive_seed, sha256_bytes, sha256_file
from .pipeline import ROOT, STAGES, Stage, resolve_dep
from .progress import Progress

ItemResult = tuple[dict, dict[str, bytes]]   # (record, {file name: bytes})


class UndeclaredParamsError(LookupError):
    """A stage read a params section it does not declare in pipeline.py."""


# Sections every stage may read: they never change an output byte (job spreading, experiment tracking),
# so no stage declares them and changing them reruns nothing.
BOOKKEEPING_SECTIONS = ("workflow", "mlflow")


class DeclaredParams:
    """The params a stage declared in `pipeline.py` and nothing else: reading another section raises,
    naming the stage and where to declare it. A dotted declaration (`synth_front.prompt_id`) exposes
    only that key of the section."""

    def __init__(self, params: Params, stage: Stage):
        self._params, self._stage = params, stage
        self._keys = stage.params + BOOKKEEPING_SECTIONS

    def _refuse(self, key: str):
        raise UndeclaredParamsError(
            f"stage {self._stage.name} reads params '{key}', which it does not declare; add it to the "
            f"stage's params in src/balancehead/pipeline.py (declared: {', '.join(self._keys) or 'none'})")

    def __getattr__(self, name: str):
        if name.startswith("_"):          # private and dunder lookups (copy, pickle) are not params
            raise AttributeError(name)
        return self._view(name)

    def _view(self, dotted: str):
        if dotted in self._keys or any(dotted.startswith(k + ".") for k in self._keys):
            return self._params.section(dotted)
        inner = [k for k in self._keys if k.startswith(dotted + ".")]
        if not inner:
            self._refuse(dotted)
        return _PartialSection(self, dotted)

    def section(self, dotted: str):
        return self._view(dotted)

    def model_dump(self, **kw) -> dict:
        """The declared values only (for provenance and experiment tracking)."""
        out: dict = {}
        for key in self._stage.params:
            value = self._params.section(key)
            value = value.model_dump(**kw) if hasattr(value, "model_dump") else value
            *head, leaf = key.split(".")
            node = out
            for part in head:
                node = node.setdefault(part, {})
            node[leaf] = value
        return out


class _PartialSection:
    """A params section of which the stage declared only some keys."""

    def __init__(self, owner: DeclaredParams, prefix: str):
        self._owner, self._prefix = owner, prefix

    def __getattr__(self, name: str):
        if name.startswith("_"):          # private and dunder lookups (copy, pickle) are not params
            raise AttributeError(name)
        return self._owner._view(f"{self._prefix}.{name}")


@dataclass
class StageContext:
    """What a stage's `main(ctx)` sees: its declared params, inputs and outputs by name, seeds, a log."""
    all_params: Params
    stage: Stage
    root: Path
    shard: Optional[tuple[int, int]] = None
    params_path: Path = Path("params.yaml")
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("balancehead"))

    @property
    def params(self) -> DeclaredParams:
        return DeclaredParams(self.all_params, self.stage)

    @property
    def threads(self) -> int:
        """Threads per job (`workflow.threads`: spreads work, never changes outputs)."""
        return self.all_params.workflow.threads

    def path(self, rel: str) -> Path:
        return self.root / rel

    def input(self, name: str) -> Path:
        """The path of the declared input `name` (a params-valued input, "${section.key}", resolved)."""
        try:
            return self.path(resolve_dep(self.stage.inputs[name], self.all_params))
        except KeyError:
            raise KeyError(f"stage {self.stage.name} has no input '{name}' (declared: "
                           f"{', '.join(self.stage.inputs) or 'none'}; see src/balancehead/pipeline.py)") from None

    def output(self, name: str) -> Path:
        """The path of the declared output, metrics or plots file `name`."""
        outs = self.stage.named_outputs()
        try:
            return self.path(outs[name])
        except KeyError:
            raise KeyError(f"stage {self.stage.name} has no output '{name}' (declared: "
                           f"{', '.join(outs)}; see src/balancehead/pipeline.py)") from None

    @property
    def scratch(self) -> Path:
        """This stage's work directory outside its outputs (per-item cache, resumable state)."""
        return self.path(self.stage.scratch)

    def seed(self, *parts) -> int:
        if "seed" not in self.stage.params:
            raise UndeclaredParamsError(f"stage {self.stage.name} draws random numbers but does not declare "
                                        "params 'seed' in src/balancehead/pipeline.py")
        return derive_seed(self.all_params.seed, self.stage.name, *parts)

    def rng(self, *parts) -> np.random.Generator:
        return np.random.default_rng(self.seed(*parts))

    @property
    def out_dir(self) -> Path:
        return self.path(self.stage.outs[0])

    def clean_leftovers(self) -> list[Path]:
        """Remove what a killed run of this stage left in and beside its outputs: the temporary files of
        dead writers (`integrity.clean_leftovers`). Stages that write files straight into an output
        directory (evaluate's `results/eval`, ...) would otherwise keep a killed write's temp file next to
        the rerun's complete one. Live writers (another shard of this stage) are left alone."""
        removed = []
        for rel in self.stage.all_outs():
            p = self.path(rel)
            removed += integrity.clean_leftovers(p.parent)
            if p.is_dir():
                removed += integrity.clean_leftovers(p)
        for q in removed:
            self.log.info("%s: removed %s, left by a killed run", self.stage.name, q.relative_to(self.root))
        return removed

    # ----- inputs ------------------------------------------------------------------------------
    def read_items(self, name: str) -> list[dict]:
        path = self.input(name) / "items.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{self.stage.name}: input {path} is missing; run the upstream stage first")
        integrity.verify_in(self.input(name), "items.jsonl")
        return fileio.read_jsonl(path)

    def item_file(self, name: str, item_id: str, file: str) -> Path:
        """Path of an upstream item's file, checked against its recorded digest (once per run)."""
        integrity.verify_in(self.input(name), f"files/{item_id}.{file}", item=item_id)
        return self.input(name) / "files" / f"{item_id}.{file}"

    # ----- cache -------------------------------------------------------------------------------
    def cache_key(self) -> str:
        h = hashlib.sha256()
        h.update(self.stage.name.encode())
        for key in self.stage.params:
            value = self.all_params.section(key)
            dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            h.update(json.dumps([key, dumped], sort_keys=True).encode())
        for rel in self.stage.code_files():   # the source actually imported, wherever the run happens
            h.update(rel.encode() + sha256_file(ROOT / rel).encode())
        for dep in (resolve_dep(d, self.all_params) for d in self.stage.deps):
            p = self.path(dep)
            fp = p if not p.is_dir() else p / (integrity.DIGESTS_FILE if (p / integrity.DIGESTS_FILE).exists()
                                              else "items.jsonl")    # digests of every upstream file
            h.update(dep.encode() + (sha256_file(fp).encode() if fp.exists() else b"missing"))
        return h.hexdigest()[:16]


class ItemCache:
    def __init__(self, ctx: StageContext):
        self.base = ctx.scratch
        self.dir = self.base / ctx.cache_key()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stage, self.log = ctx.stage.name, ctx.log
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
            fileio.write_bytes(self.dir / f"{item_id}.{name}", data)
            record["files"][name] = sha256_bytes(data)
        fileio.write_bytes(self.dir / f"{item_id}.json", (json.dumps(record, sort_keys=True, default=fileio._json_default) + "\n").encode())

    def get(self, item_id: str) -> dict:
        return fileio.read_json(self.dir / f"{item_id}.json")

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
        fileio.write_text(ctx.path(ctx.stage.shard_marker(*ctx.shard)), f"{n_mine} items\n")
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
    fileio.write_jsonl(tmp / "items.jsonl", records)
    for name, data in (extra_files or {}).items():
        fileio.write_bytes(tmp / name, data)
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
        fileio.write_json(ctx.output("metrics"), metrics(records, cache))
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
