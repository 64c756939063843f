"""The stage list: the single source of truth for the DAG.

Each `Stage` names its module (under `balancehead.stages`), its named inputs and outputs, the params
sections it reads, its metrics, plots and cluster resources. Its code dependencies are not written by
hand: they are computed from the stage module's import graph inside the package (see `code_files`).
`rules/stages.smk` builds every Snakemake rule from this list in one loop, and `dvc.yaml` is generated
from it (`balancehead dvc-yaml`); tests/test_pipeline_contract.py parses both real tools' views of the
DAG and fails on any disagreement.

Data-parallel stages are `sharded`: under Snakemake they fan out into `workflow.shards` scatter jobs
(`balancehead run STAGE --shard i/n`) that fill the per-item cache `data/.items/STAGE/`, then the stage
rule runs the very command DVC runs (`balancehead run STAGE`), which finds every item done and
assembles the stage output. Under `dvc repro` the same command simply computes all items itself.

This module imports nothing from the package: every layer may read it.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

SRC = Path(__file__).resolve().parent          # src/balancehead
ROOT = SRC.parent.parent                        # the repository
PACKAGE = SRC.name

# Non-Python sources of an op package (compiled by build_ops, or JIT-loaded): a dependency of every
# stage that reaches a module in a directory holding them (directly or under its `csrc/`).
NATIVE_SUFFIXES = (".cpp", ".cu", ".h", ".cuh")

# Modules that provably never change a stage's outputs; the import walk neither lists nor enters them.
EXCLUDED_MODULES = {
    # The stage list itself: what it declares (commands, data paths, params, outputs) is written into
    # dvc.yaml and the rules, which both tools compare on their own; its helpers compute nothing that
    # reaches an output byte.
    f"{PACKAGE}.pipeline": "the stage list (its content is dvc.yaml and the rules)",
    # MLflow bookkeeping: writes mlflow.db / mlruns/, never a declared output.
    f"{PACKAGE}.tracking": "MLflow logging only",
    # Progress lines (count, rate, ETA) in the logs.
    f"{PACKAGE}.progress": "log lines only",
    # Refuses to start while the other orchestrator runs in this checkout; computes nothing.
    f"{PACKAGE}.locking": "a start-up check only",
}

# A data input may be a params value, written as DVC's template "${section.key}": dvc.yaml keeps the
# template (DVC substitutes params.yaml's value); the rules and the runner substitute the validated params.
PARAM_DEP = re.compile(r"^\$\{([a-z_][a-z0-9_.]*)\}$")


def resolve_dep(dep: str, params=None) -> str:
    """`dep` with a "${key}" template replaced by the params value (the schema default when `params` is None)."""
    m = PARAM_DEP.match(dep)
    if not m:
        return dep
    if params is not None:
        return str(params.section(m.group(1)))
    from .params import default_value      # lazy: this module imports nothing from the package at load
    return str(default_value(m.group(1)))


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str                                      # data / synthesis / ... (grouping for `data` targets)
    inputs: dict[str, str] = field(default_factory=dict)    # name -> upstream output path
    outputs: dict[str, str] = field(default_factory=dict)   # name -> directory/file (cached by DVC)
    params: tuple[str, ...] = ()                    # params.yaml sections (or dotted keys) it reads
    module: str = ""                                # module under balancehead.stages (default: name)
    sharded: bool = False
    metrics: dict[str, str] = field(default_factory=dict)   # name -> small JSON (DVC metrics, not cached)
    plots: dict[str, str] = field(default_factory=dict)     # name -> TSV (DVC plots, not cached)
    mem_mb: int = 2000
    runtime: int = 30                               # minutes
    gpu: int = 0

    @property
    def module_name(self) -> str:
        return f"{PACKAGE}.stages.{self.module or self.name}"

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(self.inputs.values())

    @property
    def outs(self) -> tuple[str, ...]:
        return tuple(self.outputs.values())

    @property
    def metric_files(self) -> tuple[str, ...]:
        return tuple(self.metrics.values())

    @property
    def plot_files(self) -> tuple[str, ...]:
        return tuple(self.plots.values())

    def named_outputs(self) -> dict[str, str]:
        """Every path the stage writes, by name (cached outputs, metrics and plots)."""
        return {**self.outputs, **self.metrics, **self.plots}

    @property
    def log(self) -> str:
        return f"logs/{self.name}.log"

    @property
    def scratch(self) -> str:
        """Per-item cache / resumable work of this stage (outside the outputs DVC deletes on rerun)."""
        return f"data/.items/{self.name}"

    @property
    def cmd(self) -> str:
        """The command DVC runs (the rules run the same arguments through Snakemake's own interpreter)."""
        return f"{PACKAGE} run {self.name}"

    def shard_marker(self, i: int | str, n: int | str, stage: str | None = None) -> str:
        return f"data/.items/{stage or self.name}/shard-{i}-of-{n}.done"

    def shard_log(self, i: int | str, n: int | str, stage: str | None = None) -> str:
        return f"logs/{stage or self.name}/shard-{i}-of-{n}.log"

    def code_files(self) -> list[str]:
        return code_files(self.module_name)

    def all_deps(self, params=None) -> list[str]:
        """Data deps then code files: what both Snakemake and DVC see as this stage's inputs. Without
        `params` a params-valued dep stays a "${key}" template (for dvc.yaml)."""
        deps = list(self.deps) if params is None else [resolve_dep(d, params) for d in self.deps]
        return deps + self.code_files()

    def all_outs(self) -> list[str]:
        return list(self.outs) + list(self.metric_files) + list(self.plot_files)


# ----- code dependencies from the import graph -----------------------------------------------------

def _module_file(mod: str) -> Path | None:
    """The source file of a dotted module of this package (a package's __init__.py), or None."""
    if mod != PACKAGE and not mod.startswith(PACKAGE + "."):
        return None
    rel = Path(*mod.split(".")[1:]) if "." in mod else Path()
    base = SRC / rel
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def _imports(mod: str) -> tuple[str, ...]:
    """Package modules `mod` imports anywhere in its source (function-local imports included), read with
    `ast`, never by importing. `from X import name` counts X and, when it is a submodule, X.name."""
    path = _module_file(mod)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return tuple(sorted(m for m in found if _module_file(m) is not None))


def _with_parents(mod: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = mod.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def module_closure(root: str) -> frozenset[str]:
    """Every package module `root` reaches through imports, transitively, minus EXCLUDED_MODULES."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        mod = todo.pop()
        for m in _with_parents(mod):
            if m in seen or m in EXCLUDED_MODULES or _module_file(m) is None:
                continue
            seen.add(m)
            todo.extend(_imports(m))
    return frozenset(seen)


def _native_sources(directory: Path) -> list[Path]:
    found = [p for p in directory.iterdir() if p.is_file() and p.suffix in NATIVE_SUFFIXES]
    if (directory / "csrc").is_dir():
        found += [p for p in (directory / "csrc").rglob("*") if p.is_file() and p.suffix in NATIVE_SUFFIXES]
    return found


def code_files(root_module: str) -> list[str]:
    """Repository-relative source files `root_module` depends on: the Python files of its import closure,
    plus the C++/CUDA sources of every op package it reaches."""
    return list(_code_files(root_module))


@lru_cache(maxsize=None)
def _code_files(root_module: str) -> tuple[str, ...]:
    files: set[Path] = set()
    for mod in module_closure(root_module):
        path = _module_file(mod)
        files.add(path)
        files.update(_native_sources(path.parent))
    return tuple(sorted(str(p.relative_to(ROOT)) for p in files))


def source_files() -> list[str]:
    """Every source file of the package (what the touch-every-file contract test walks)."""
    return sorted(str(p.relative_to(ROOT)) for p in SRC.rglob("*")
                  if p.is_file() and (p.suffix == ".py" or p.suffix in NATIVE_SUFFIXES)
                  and "__pycache__" not in p.parts)


# ----- the stages ----------------------------------------------------------------------------------

_CHECKPOINT = "data/train"
_DATASET = "data/dataset"
_OPS = "data/build_ops"                  # compiled ops: used by the model stages where they pay (ops.use_built)
GENERATOR = "${generator.checkpoint}"   # the generator sample_prior/invert/evaluate use (data/train or imported)

STAGES: tuple[Stage, ...] = (
    Stage("ingest", "data", outputs={"sources": "data/ingest"},
          params=("seed", "ingest", "camera"), sharded=True),
    Stage("assess_quality", "data", inputs={"sources": "data/ingest"}, outputs={"quality": "data/quality"},
          params=("assess_quality",), sharded=True, metrics={"metrics": "results/assess_quality.json"}),
    Stage("synth_front", "synthesis", inputs={"sources": "data/quality"},
          outputs={"candidates": "data/front_candidates"},
          params=("seed", "camera", "synthesizer", "synth_front"), sharded=True),
    Stage("preprocess_fronts", "preprocess", module="preprocess", inputs={"raw": "data/front_candidates"},
          outputs={"processed": "data/fronts_pre"}, params=("camera", "preprocess"), sharded=True),
    Stage("select_front", "preprocess", inputs={"sources": "data/quality", "candidates": "data/fronts_pre"},
          outputs={"fronts": "data/fronts"}, params=("select_front",),
          metrics={"metrics": "results/select_front.json"}),
    Stage("synth_views", "synthesis", inputs={"fronts": "data/fronts"}, outputs={"views": "data/views_raw"},
          params=("seed", "camera", "synthesizer", "synth_views", "synth_front.prompt_id"), sharded=True),
    Stage("preprocess_views", "preprocess", module="preprocess", inputs={"raw": "data/views_raw"},
          outputs={"processed": "data/views_pre"}, params=("camera", "preprocess"), sharded=True,
          metrics={"metrics": "results/preprocess_views.json"}),
    Stage("filter_views", "filtering", inputs={"fronts": "data/fronts", "views": "data/views_pre"},
          outputs={"views": "data/views"}, params=("filter_views",), sharded=True,
          metrics={"metrics": "results/filter_views.json"}),
    Stage("label_clip", "labelling", inputs={"fronts": "data/fronts", "views": "data/views"},
          outputs={"clip": "data/clip"}, params=("label_clip",), sharded=True, mem_mb=4000),
    Stage("pack_dataset", "packing",
          inputs={"ingest": "data/ingest", "quality": "data/quality", "fronts_pre": "data/fronts_pre",
                  "fronts": "data/fronts", "views_pre": "data/views_pre", "views": "data/views",
                  "clip": "data/clip", "assess_quality_metrics": "results/assess_quality.json",
                  "select_front_metrics": "results/select_front.json",
                  "preprocess_views_metrics": "results/preprocess_views.json",
                  "filter_views_metrics": "results/filter_views.json"},
          outputs={"dataset": _DATASET, "card": "results/dataset_card"},
          params=("pack_dataset", "select_front.backend", "select_front.arcface"),
          metrics={"metrics": "results/dataset.json"}, plots={"yaw_hist": "results/yaw_hist.tsv"}),
    Stage("build_ops", "ops", outputs={"ops": "data/build_ops"}, params=("build_ops",),
          mem_mb=8000, runtime=60),
    Stage("train", "train", inputs={"dataset": _DATASET, "ops": _OPS}, outputs={"checkpoint": _CHECKPOINT},
          params=("seed", "train"), metrics={"metrics": "results/train.json"},
          plots={"stats": "results/train_stats.tsv"}, mem_mb=8000, runtime=240),
    Stage("sample_prior", "evaluation", inputs={"checkpoint": GENERATOR, "dataset": _DATASET, "ops": _OPS},
          outputs={"prior": "data/prior"}, params=("seed", "generator", "sample_prior"),
          metrics={"metrics": "results/sample_prior.json"}, mem_mb=8000, runtime=120),
    Stage("train_recon", "train", inputs={"prior": "data/prior", "dataset": _DATASET},
          outputs={"recon": "data/recon"}, params=("seed", "train_recon"),
          metrics={"metrics": "results/train_recon.json"}, plots={"stats": "results/train_recon_stats.tsv"},
          mem_mb=8000, runtime=240),
    Stage("invert", "evaluation",
          inputs={"checkpoint": GENERATOR, "prior": "data/prior", "dataset": _DATASET, "ops": _OPS},
          outputs={"invert": "data/invert"}, params=("seed", "camera", "generator", "invert"),
          metrics={"metrics": "results/invert.json"}, mem_mb=8000, runtime=240),
    Stage("eval_recon", "evaluation",
          inputs={"recon": "data/recon", "prior": "data/prior", "invert": "data/invert"},
          outputs={"eval_recon": "data/eval_recon"}, params=("seed", "eval_recon"),
          metrics={"metrics": "results/eval_recon.json"}, mem_mb=4000, runtime=60),
    Stage("evaluate", "evaluation",
          inputs={"checkpoint": GENERATOR, "dataset": _DATASET, "invert_metrics": "results/invert.json",
                  "recon_metrics": "results/eval_recon.json", "ops": _OPS},
          outputs={"eval": "results/eval"}, params=("seed", "generator", "evaluate", "label_clip"),
          metrics={"metrics": "results/metrics.json"}, plots={"fid_by_yaw": "results/fid_by_yaw.tsv"},
          mem_mb=8000, runtime=240),
    Stage("report", "evaluation",
          inputs={"card": "results/dataset_card", "yaw_hist": "results/yaw_hist.tsv",
                  "dataset_metrics": "results/dataset.json",
                  "assess_quality_metrics": "results/assess_quality.json",
                  "select_front_metrics": "results/select_front.json",
                  "preprocess_views_metrics": "results/preprocess_views.json",
                  "filter_views_metrics": "results/filter_views.json",
                  "train_metrics": "results/train.json", "train_stats": "results/train_stats.tsv",
                  "sample_prior_metrics": "results/sample_prior.json", "invert": "data/invert",
                  "invert_metrics": "results/invert.json", "eval_recon": "data/eval_recon",
                  "eval_recon_metrics": "results/eval_recon.json", "eval": "results/eval",
                  "metrics": "results/metrics.json", "fid_by_yaw": "results/fid_by_yaw.tsv",
                  "dataset": _DATASET},
          outputs={"report": "results/report"}, params=("report",)),
)

# `dvc plots show` / `dvc plots diff`: which columns to draw (declared once here; see dvc_yaml()).
PLOTS = {
    "results/fid_by_yaw.tsv": {"x": "yaw_bin", "y": "fid", "template": "linear",
                               "title": "Directional bias: FID per 45 degree yaw bin",
                               "x_label": "yaw bin centre (deg)", "y_label": "FID"},
    "results/train_stats.tsv": {"x": "kimg", "y": ["loss_g", "loss_d"], "template": "linear",
                                "title": "Training losses", "x_label": "kimg", "y_label": "loss"},
    "results/train_recon_stats.tsv": {"x": "step", "y": ["loss", "psnr"], "template": "linear",
                                      "title": "Reconstructor training: loss and PSNR of the supervision renders",
                                      "x_label": "step", "y_label": "loss / PSNR (dB)"},
    "results/yaw_hist.tsv": {"x": "yaw_bin", "y": ["generated_views", "packed"], "template": "linear",
                             "title": "Views per yaw bin: generated vs packed",
                             "x_label": "yaw bin centre (deg)", "y_label": "views"},
}

BY_NAME = {s.name: s for s in STAGES}
DATA_STAGES = tuple(s.name for s in STAGES if s.topic not in ("ops", "train", "evaluation"))


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(BY_NAME)}") from None


def upstream(name: str) -> list[str]:
    """Stages whose outputs `name` reads directly (params-valued inputs at their defaults)."""
    producers = {o: s.name for s in STAGES for o in s.all_outs()}
    deps = (resolve_dep(d) for d in stage(name).deps)
    return sorted({producers[d] for d in deps if d in producers})


def downstream_closure(names) -> set[str]:
    """`names` and every stage that (transitively) reads their outputs."""
    result = set(names)
    changed = True
    while changed:
        changed = False
        for s in STAGES:
            if s.name not in result and any(u in result for u in upstream(s.name)):
                result.add(s.name)
                changed = True
    return result


def stages_reading(param_key: str) -> set[str]:
    """Stages that declare `param_key` (or a section containing it, or a key inside it)."""
    out = set()
    for s in STAGES:
        for p in s.params:
            if p == param_key or param_key.startswith(p + ".") or p.startswith(param_key + "."):
                out.add(s.name)
    return out


def stages_importing(path: str) -> set[str]:
    """Stages whose computed code dependencies include the repository-relative `path`."""
    return {s.name for s in STAGES if path in s.code_files()}


def dvc_yaml() -> dict:
    """The dvc.yaml content generated from STAGES."""
    stages = {}
    for s in STAGES:
        entry = {"cmd": s.cmd, "deps": s.all_deps(), "params": list(s.params), "outs": list(s.outs)}
        if not entry["deps"]:
            del entry["deps"]
        if s.metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in s.metric_files]
        if s.plots:
            entry["plots"] = [{p: {"cache": False}} for p in s.plot_files]
        stages[s.name] = entry
    return {"stages": stages, "plots": [{path: dict(spec)} for path, spec in PLOTS.items()]}
