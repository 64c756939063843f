"""The stage list: the single source of truth for the DAG.

Each `Stage` names its command, data dependencies, outputs, params keys, code dependencies, metrics,
plots and cluster resources. `rules/*.smk` build every Snakemake rule from it, and `dvc.yaml` is
generated from it (`balancehead dvc-yaml`); tests/test_pipeline_contract.py parses both real tools'
views of the DAG and fails on any disagreement.

Data-parallel stages are `sharded`: under Snakemake they fan out into `workflow.shards` scatter jobs
(`balancehead run STAGE --shard i/n`) that fill the per-item cache `data/.items/STAGE/`, then the stage
rule runs the very command DVC runs (`balancehead run STAGE`), which finds every item done and
assembles the stage output. Under `dvc repro` the same command simply computes all items itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parent

# A data dep may be a params value, written as DVC's template "${section.key}": dvc.yaml keeps the template
# (DVC substitutes params.yaml's value), Snakemake's rules and the runner substitute the validated params.
PARAM_DEP = re.compile(r"^\$\{([a-z_][a-z0-9_.]*)\}$")
GENERATOR = "${generator.checkpoint}"     # the generator sample_prior/invert/evaluate use (data/train or imported)


def resolve_dep(dep: str, params=None) -> str:
    """`dep` with a "${key}" template replaced by the params value (by the schema default when `params` is None)."""
    m = PARAM_DEP.match(dep)
    if not m:
        return dep
    if params is not None:
        return str(params.section(m.group(1)))
    from .params import default_value
    return str(default_value(m.group(1)))


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str                      # rules/<topic>.smk holds the rule
    deps: tuple[str, ...]           # data inputs (outputs of upstream stages)
    outs: tuple[str, ...]           # directories or files this stage writes (cached by DVC)
    params: tuple[str, ...]         # params.yaml keys (sections or dotted keys)
    code: tuple[str, ...]           # python modules/packages whose source is a dependency
    sharded: bool = False
    metrics: tuple[str, ...] = ()   # small JSON files (DVC metrics, not cached)
    plots: tuple[str, ...] = ()     # TSV/JSON plot data (DVC plots, not cached)
    mem_mb: int = 2000
    runtime: int = 30               # minutes
    gpus: int = 0
    extra_outs: tuple[str, ...] = field(default=())

    @property
    def cmd(self) -> str:
        return f"balancehead run {self.name}"

    @property
    def log(self) -> str:
        return f"logs/{self.name}.log"

    def shard_cmd(self, i: int | str, n: int | str) -> str:
        return f"balancehead run {self.name} --shard {i}/{n}"

    def shard_marker(self, i: int | str, n: int | str) -> str:
        return f"data/.items/{self.name}/shard-{i}-of-{n}.done"

    def shard_log(self, i: int | str, n: int | str) -> str:
        return f"logs/{self.name}/shard-{i}-of-{n}.log"

    def code_files(self) -> list[str]:
        return code_files(self.code)

    def all_deps(self, params=None) -> list[str]:
        """Data deps then code files: what both Snakemake and DVC see as this stage's inputs. Without
        `params` a params-valued dep stays a "${key}" template (for dvc.yaml)."""
        deps = list(self.deps) if params is None else [resolve_dep(d, params) for d in self.deps]
        return deps + self.code_files()

    def all_outs(self) -> list[str]:
        return list(self.outs) + list(self.metrics) + list(self.plots)


CODE_SUFFIXES = (".py", ".cpp", ".cu", ".h", ".cuh")


def code_files(modules) -> list[str]:
    """Repository-relative source paths of dotted module or package names (a package expands to all its
    source files, C++/CUDA included)."""
    root = SRC.parent.parent
    files: set[str] = set()
    for mod in modules:
        rel = Path(*mod.split(".")[1:])
        base = SRC / rel
        if base.is_dir():
            files.update(str(p.relative_to(root)) for p in sorted(base.rglob("*"))
                         if p.suffix in CODE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts)
        elif base.with_suffix(".py").exists():
            files.add(str(base.with_suffix(".py").relative_to(root)))
        else:
            raise FileNotFoundError(f"pipeline: code dependency {mod} not found under {SRC}")
    return sorted(files)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "data", deps=(), outs=("data/ingest",),
          params=("seed", "ingest", "camera"),
          code=("balancehead.stages.ingest", "balancehead.imageload", "balancehead.world"),
          sharded=True),
    Stage("assess_quality", "data", deps=("data/ingest",), outs=("data/quality",),
          params=("assess_quality",),
          code=("balancehead.stages.assess_quality", "balancehead.backends.iqa",
                "balancehead.backends.production.iqa_sr", "balancehead.backends.production.onnx_session", "balancehead.backends.production.weights", "balancehead.backends.production.params"),
          sharded=True, metrics=("results/assess_quality.json",)),
    Stage("synth_front", "synthesis", deps=("data/quality",), outs=("data/front_candidates",),
          params=("seed", "camera", "synthesizer", "synth_front"),
          code=("balancehead.stages.synth_front", "balancehead.stages.synth_common", "balancehead.world",
                "balancehead.backends.production.flux_kontext", "balancehead.backends.production.weights", "balancehead.backends.production.params"),
          sharded=True),
    Stage("preprocess_fronts", "preprocess", deps=("data/front_candidates",), outs=("data/fronts_pre",),
          params=("camera", "preprocess"),
          code=("balancehead.stages.preprocess", "balancehead.backends.segment",
                "balancehead.backends.offline_pose", "balancehead.camera",
                "balancehead.backends.production.head_pose_mask", "balancehead.backends.production.onnx_session",
                "balancehead.backends.production.weights", "balancehead.backends.production.params"),
          sharded=True),
    Stage("select_front", "preprocess", deps=("data/quality", "data/fronts_pre"), outs=("data/fronts",),
          params=("select_front",),
          code=("balancehead.stages.select_front", "balancehead.backends.identity",
                "balancehead.backends.production.arcface", "balancehead.backends.production.onnx_session", "balancehead.backends.production.weights", "balancehead.backends.production.params"),
          metrics=("results/select_front.json",)),
    Stage("synth_views", "synthesis", deps=("data/fronts",), outs=("data/views_raw",),
          params=("seed", "camera", "synthesizer", "synth_views"),
          code=("balancehead.stages.synth_views", "balancehead.stages.synth_common", "balancehead.world",
                "balancehead.backends.production.flux_kontext", "balancehead.backends.production.weights", "balancehead.backends.production.params"),
          sharded=True),
    Stage("preprocess_views", "preprocess", deps=("data/views_raw",), outs=("data/views_pre",),
          params=("camera", "preprocess"),
          code=("balancehead.stages.preprocess", "balancehead.backends.segment",
                "balancehead.backends.offline_pose", "balancehead.camera",
                "balancehead.backends.production.head_pose_mask", "balancehead.backends.production.onnx_session",
                "balancehead.backends.production.weights", "balancehead.backends.production.params"),
          sharded=True, metrics=("results/preprocess_views.json",)),
    Stage("filter_views", "filtering", deps=("data/fronts", "data/views_pre"), outs=("data/views",),
          params=("filter_views",),
          code=("balancehead.stages.filter_views", "balancehead.backends.judge", "balancehead.backends.identity",
                "balancehead.backends.production.qwen_vl_judge", "balancehead.backends.production.weights", "balancehead.backends.production.params"),
          sharded=True, metrics=("results/filter_views.json",)),
    Stage("label_clip", "labelling", deps=("data/fronts", "data/views"), outs=("data/clip",),
          params=("label_clip",),
          code=("balancehead.stages.label_clip", "balancehead.backends.clip_embed",
                "balancehead.backends.production.weights"),
          sharded=True, mem_mb=4000),
    Stage("pack_dataset", "packing",
          deps=("data/ingest", "data/quality", "data/fronts_pre", "data/fronts", "data/views_pre",
                "data/views", "data/clip"),
          outs=("data/dataset", "results/dataset_card"),
          params=("pack_dataset",),
          code=("balancehead.stages.pack_dataset", "balancehead.data"),
          metrics=("results/dataset.json",), plots=("results/yaw_hist.tsv",)),
    Stage("build_ops", "ops", deps=(), outs=("data/build_ops",),
          params=("build_ops",),
          code=("balancehead.stages.build_ops", "balancehead.ops"),
          mem_mb=8000, runtime=60),
    Stage("train", "train", deps=("data/dataset", "data/build_ops"), outs=("data/train",),
          params=("seed", "train"),
          code=("balancehead.stages.train", "balancehead.train", "balancehead.models", "balancehead.data.reader"),
          metrics=("results/train.json",), plots=("results/train_stats.tsv",),
          mem_mb=8000, runtime=240),
    Stage("sample_prior", "evaluation", deps=(GENERATOR, "data/dataset", "data/build_ops"), outs=("data/prior",),
          params=("seed", "generator", "sample_prior"),
          code=("balancehead.stages.sample_prior", "balancehead.evaluation", "balancehead.models",
                "balancehead.data", "balancehead.backends.judge"),
          metrics=("results/sample_prior.json",), mem_mb=8000, runtime=120),
    Stage("invert", "evaluation", deps=(GENERATOR, "data/prior", "data/dataset", "data/build_ops"), outs=("data/invert",),
          params=("seed", "camera", "generator", "invert"),
          code=("balancehead.stages.invert", "balancehead.evaluation", "balancehead.models", "balancehead.data",
                "balancehead.backends.identity", "balancehead.backends.offline_pose"),
          metrics=("results/invert.json",), mem_mb=8000, runtime=240),
    Stage("evaluate", "evaluation", deps=(GENERATOR, "data/dataset", "results/invert.json", "data/build_ops"),
          outs=("results/eval",),
          params=("seed", "generator", "evaluate"),
          code=("balancehead.stages.evaluate", "balancehead.evaluation", "balancehead.models", "balancehead.data",
                "balancehead.backends.identity"),
          metrics=("results/metrics.json",), plots=("results/fid_by_yaw.tsv",), mem_mb=8000, runtime=240),
    Stage("report", "evaluation",
          deps=("results/dataset_card", "results/yaw_hist.tsv", "results/dataset.json", "results/assess_quality.json",
                "results/select_front.json", "results/preprocess_views.json", "results/filter_views.json",
                "results/train.json", "results/train_stats.tsv", "results/sample_prior.json",
                "data/invert", "results/invert.json", "results/eval", "results/metrics.json",
                "results/fid_by_yaw.tsv", "data/dataset"),
          outs=("results/report",),
          params=("report",),
          code=("balancehead.stages.report", "balancehead.evaluation.report_html", "balancehead.evaluation.turntable",
                "balancehead.data.manifest", "balancehead.data.shards")),
)

BY_NAME = {s.name: s for s in STAGES}
DATA_STAGES = tuple(s.name for s in STAGES if s.topic not in ("ops", "train", "evaluation"))


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(BY_NAME)}") from None


def upstream(name: str) -> list[str]:
    """Stages whose outputs `name` reads directly (params-valued deps at their defaults)."""
    producers = {o: s.name for s in STAGES for o in s.outs}
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


def dvc_yaml() -> dict:
    """The dvc.yaml content generated from STAGES."""
    stages = {}
    for s in STAGES:
        entry = {"cmd": s.cmd, "deps": s.all_deps(), "params": list(s.params), "outs": list(s.outs)}
        if not entry["deps"]:
            del entry["deps"]
        if s.metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in s.metrics]
        if s.plots:
            entry["plots"] = [{p: {"cache": False}} for p in s.plots]
        stages[s.name] = entry
    return {"stages": stages}
