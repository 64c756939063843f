"""params.yaml: the one home of every parameter, validated before any work starts.

Each stage reads only its own section(s) (see `balancehead.pipeline`); the schema below is the single
definition of what is allowed. `load_params` raises `ParamsError` naming the offending key, what was
given and what is allowed; nothing is written before validation passes.
`workflow/schemas/params.schema.json` is generated from these models (`balancehead schema`).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .backends.production.params import (ArcFaceParams, FluxKontextParams, HeadPoseParams, HyperIQAParams,
                                         PersonSegParams, QwenVLJudgeParams, Swin2SRParams)
from .params_base import Section
from .evaluation.params import (EvalReconParams, EvaluateParams, GeneratorParams, InvertParams, ReportParams,
                                SamplePriorParams)
from .recon.params import TrainReconParams
from .train.params import TrainParams


class ParamsError(ValueError):
    """A params.yaml problem; the message names the key."""


_Section = Section


class StageResources(_Section):
    """Cluster resources of one stage's jobs (Snakemake `resources:`, mapped to sbatch by the profile)."""
    mem_mb: Optional[int] = Field(None, ge=100, le=4_000_000)
    runtime: Optional[int] = Field(None, ge=1, le=100_000, description="minutes")
    gpu: Optional[int] = Field(None, ge=0, le=64, description="GPUs per job (Snakemake `gpu`, sbatch --gpus)")


class WorkflowParams(_Section):
    """How work is spread; changing these never changes any output byte (no stage declares them)."""
    shards: int = Field(2, ge=1, le=4096, description="Snakemake fan-out: jobs per data-parallel stage")
    threads: int = Field(1, ge=1, le=512, description="threads per job (torch/numpy)")
    resources: dict[str, StageResources] = Field(default_factory=dict, description="per-stage overrides")

    @field_validator("resources")
    @classmethod
    def _stage_names(cls, v):
        from .pipeline import BY_NAME

        unknown = sorted(set(v) - set(BY_NAME))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(BY_NAME)}")
        return v


class CameraParams(_Section):
    radius: float = Field(2.7, gt=0.0, le=100.0)
    fov_deg: float = Field(18.837, gt=0.0, lt=179.0)
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)


class WildParams(_Section):
    """The 'in-the-wild' look of procedural source photos (balancehead.world.wild.WildRates)."""
    max_abs_yaw_deg: float = Field(30.0, ge=0.0, le=60.0)
    pitch_std_deg: float = Field(5.0, ge=0.0, le=30.0)
    mild_rate: float = Field(0.60, ge=0.0, le=1.0, description="share of mildly degraded photos")
    moderate_rate: float = Field(0.25, ge=0.0, le=1.0, description="moderately degraded; the rest are severe")
    second_person_rate: float = Field(0.10, ge=0.0, le=1.0)
    occluder_rate: float = Field(0.10, ge=0.0, le=1.0)
    scale_range: tuple[float, float] = (0.7, 1.15)
    max_offset: float = Field(0.15, ge=0.0, le=0.3)

    @model_validator(mode="after")
    def _check(self):
        if self.mild_rate + self.moderate_rate > 1.0:
            raise ValueError(f"mild_rate + moderate_rate must be <= 1 (got {self.mild_rate + self.moderate_rate})")
        lo, hi = self.scale_range
        if not 0.1 <= lo <= hi <= 3.0:
            raise ValueError(f"scale_range must satisfy 0.1 <= low <= high <= 3 (got {list(self.scale_range)})")
        return self


class IngestParams(_Section):
    source: str = Field("procedural", description="'procedural' or a path to a folder/zip/tar of images")
    num_sources: int = Field(240, ge=1, le=10_000_000, description="procedural subjects to draw")
    image_size: int = Field(128, ge=32, le=2048, description="procedural render size (px)")
    max_side: int = Field(1024, ge=16, le=16384)
    min_side: int = Field(32, ge=2, le=4096)
    max_pixels: int = Field(64_000_000, ge=1_000_000, le=500_000_000, description="decompression-bomb guard")
    max_bytes: int = Field(128 * 2**20, ge=2**20, le=2 * 2**30, description="larger files are quarantined")
    wild: WildParams = WildParams()

    @model_validator(mode="after")
    def _sides(self):
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be <= max_side ({self.max_side})")
        return self


def _require_models(section: str, backend: str, offline: str, models: dict) -> None:
    """A production backend needs its weights named; say which key to set (checked before any work)."""
    missing = [k for k, v in models.items() if not v]
    if missing:
        keys = ", ".join(f"{section}.{k}" for k in missing)
        raise ValueError(f"backend '{backend}' needs {keys} (a local model path); "
                         f"or set {section}.backend: {offline}")


class AssessQualityParams(_Section):
    backend: Literal["offline", "production"] = "offline"
    keep_above: float = Field(60.0, ge=0.0, le=100.0)
    drop_below: float = Field(35.0, ge=0.0, le=100.0)
    hyper_iqa: HyperIQAParams = HyperIQAParams()
    swin2sr: Swin2SRParams = Swin2SRParams()

    @model_validator(mode="after")
    def _order(self):
        if self.drop_below > self.keep_above:
            raise ValueError(f"drop_below ({self.drop_below}) must be <= keep_above ({self.keep_above})")
        if self.backend == "production":
            _require_models("assess_quality", self.backend, "offline",
                            {"hyper_iqa.model": self.hyper_iqa.model, "swin2sr.model": self.swin2sr.model})
        return self


class ViewPrompt(_Section):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    text: str = Field(min_length=1)
    yaw: list[float] = Field(min_length=1, description="nominal yaw(s) in degrees; one is drawn per item")

    @field_validator("yaw")
    @classmethod
    def _yaw_range(cls, v):
        for y in v:
            if not -180.0 <= y <= 180.0:
                raise ValueError(f"yaw {y} outside [-180, 180]")
        return v


class OfflineSynthParams(_Section):
    """Failure modes of the offline procedural synthesiser (rates per generated image)."""
    yaw_error_std_deg: float = Field(12.0, ge=0.0, le=90.0)
    gross_yaw_error_rate: float = Field(0.10, ge=0.0, le=1.0)
    wrong_view_rate: float = Field(0.05, ge=0.0, le=1.0)
    artifact_rate: float = Field(0.08, ge=0.0, le=1.0)
    identity_drift_rate: float = Field(0.08, ge=0.0, le=1.0)
    pitch_std_deg: float = Field(5.0, ge=0.0, le=45.0)


class SynthesizerParams(_Section):
    """Shared by synth_front and synth_views: the image-to-image model and its prompts (BalanceHead, Fig. 7)."""
    backend: Literal["offline", "flux_kontext"] = "offline"
    image_size: int = Field(128, ge=32, le=2048, description="offline synthesiser output size (flux_kontext: width/height)")
    positive_prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    views: list[ViewPrompt] = Field(min_length=1)
    offline: OfflineSynthParams = OfflineSynthParams()
    flux_kontext: FluxKontextParams = FluxKontextParams()

    @model_validator(mode="after")
    def _unique(self):
        if self.backend == "flux_kontext":
            _require_models("synthesizer", self.backend, "offline", {"flux_kontext.model": self.flux_kontext.model})
        ids = [v.id for v in self.views]
        if len(set(ids)) != len(ids):
            raise ValueError(f"views: duplicate prompt id(s) {sorted({i for i in ids if ids.count(i) > 1})}")
        if "[view]" not in self.positive_prompt:
            raise ValueError("positive_prompt must contain the placeholder '[view]'")
        return self


class SynthFrontParams(_Section):
    candidates: int = Field(3, ge=1, le=64, description="front candidates per kept source")
    prompt_id: str = "front"


class OfflinePoseParams(_Section):
    """The offline template pose estimator's bank of procedural renders."""
    n_subjects: int = Field(48, ge=8, le=200)
    views_per_subject: int = Field(48, ge=12, le=96)
    max_abs_pitch_deg: float = Field(20.0, ge=0.0, le=60.0)
    feature_size: int = Field(24, ge=8, le=64)
    k: int = Field(7, ge=1, le=15)
    seed: int = Field(0, ge=0)


class PreprocessParams(_Section):
    backend: Literal["offline", "onnx"] = "offline"
    crop_size: int = Field(128, ge=16, le=2048)
    crop_margin: float = Field(0.1, ge=0.0, le=1.0)
    offline_pose: OfflinePoseParams = OfflinePoseParams()
    head_pose: HeadPoseParams = HeadPoseParams()
    person_seg: PersonSegParams = PersonSegParams()

    @model_validator(mode="after")
    def _models(self):
        if self.backend == "onnx":
            _require_models("preprocess", self.backend, "offline",
                            {"head_pose.model": self.head_pose.model, "person_seg.model": self.person_seg.model})
        return self


class SelectFrontParams(_Section):
    backend: Literal["offline", "arcface"] = "offline"
    max_abs_yaw: float = Field(10.0, ge=0.0, le=180.0)
    arcface: ArcFaceParams = ArcFaceParams()

    @model_validator(mode="after")
    def _models(self):
        if self.backend == "arcface":
            _require_models("select_front", self.backend, "offline", {"arcface.model": self.arcface.model})
        return self


class SynthViewsParams(_Section):
    views_per_front: int = Field(10, ge=1, le=256)
    prompt_ids: list[str] = Field(default_factory=list, description="empty = every prompt except the front one")


class VlmPrompts(_Section):
    classification: str = Field(min_length=1)
    artifact: str = Field(min_length=1)
    match_standard: str = Field(min_length=1)
    match_nonstandard: str = Field(min_length=1)

    @model_validator(mode="after")
    def _placeholders(self):
        for name in ("match_standard", "match_nonstandard"):
            text = getattr(self, name)
            for ph in ("{attrs1}", "{attrs2}"):
                if ph not in text:
                    raise ValueError(f"{name} must contain the placeholder {ph}")
        return self


class FilterViewsParams(_Section):
    backend: Literal["offline", "qwen_vl"] = "offline"
    unparseable: Literal["reject", "keep"] = "reject"
    qwen_vl: QwenVLJudgeParams = QwenVLJudgeParams()
    judge: dict[str, float] = Field(default_factory=dict, description="offline heuristic judge thresholds")
    prompts: VlmPrompts

    @model_validator(mode="after")
    def _models(self):
        if self.backend == "qwen_vl":
            _require_models("filter_views", self.backend, "offline", {"qwen_vl.model": self.qwen_vl.model})
        return self

    @field_validator("judge")
    @classmethod
    def _judge_keys(cls, v):
        import dataclasses

        from .backends.judge import JudgeConfig

        allowed = {f.name: f.type for f in dataclasses.fields(JudgeConfig)}
        unknown = sorted(set(v) - set(allowed))
        if unknown:
            raise ValueError(f"unknown threshold(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        for k, val in v.items():
            if allowed[k] in (int, "int") and float(val) != int(val):
                raise ValueError(f"{k} must be a whole number (got {val})")
        return v


class LabelClipParams(_Section):
    backend: Literal["offline", "open_clip"] = "offline"
    model: str = "ViT-B-32"
    pretrained: Optional[str] = Field(None, description="local weights path for backend open_clip")
    batch_size: int = Field(32, ge=1, le=4096)
    device: str = "cpu"
    seed: int = Field(0, ge=0)
    offline_semantics: Literal["world_attributes", "random_init"] = Field("world_attributes", description=(
        "backend offline: world_attributes = embed the rendered subject's attributes and view "
        "(backends.attribute_clip; images without world ground truth fall back to random_init); "
        "random_init = a seeded random-init CLIP for every image (features without semantics)"))
    attribute_noise: float = Field(0.15, ge=0.0, le=10.0, description=(
        "world_attributes: weight of the per-subject, view-independent noise term"))
    attribute_view_weight: float = Field(0.5, ge=0.0, le=10.0, description=(
        "world_attributes: weight of the view term in per-view features (0 = per-view = view-invariant)"))

    @model_validator(mode="after")
    def _weights(self):
        if self.backend == "open_clip" and not self.pretrained:
            raise ValueError("backend 'open_clip' needs label_clip.pretrained (a local weights path); "
                             "or use backend 'offline'")
        return self


class PackDatasetParams(_Section):
    shard_size: int = Field(1000, ge=1, le=1_000_000, description="images per tar shard")
    max_shard_bytes: Optional[int] = Field(2**30, ge=2**20, description="also close a shard at this size; null = no limit")
    export_eg3d: bool = True
    identity_tables: bool = Field(True, description=(
        "also pack identity_conditions / view_identity_conditions.safetensors (select_front's identity backend) "
        "for the identity / view_identity conditioning baselines (BalanceHead A.6.10)"))


class MlflowParams(_Section):
    allow_outside_repo: bool = Field(False, description="allow a store outside the repository (a path elsewhere, or an http(s) server)")
    tracking_uri: str = Field("sqlite:///mlflow.db", description=(
        "sqlite:///<path>.db (relative to the repository; sqlite:////<absolute path>); "
        "http(s):// only with allow_outside_repo"))
    experiment: str = "balancehead"
    enabled: bool = True

    @field_validator("tracking_uri")
    @classmethod
    def _scheme(cls, uri: str, info: ValidationInfo) -> str:
        scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
        if scheme == "sqlite":
            if not uri.startswith("sqlite:///") or len(uri) <= len("sqlite:///"):
                raise ValueError("write sqlite:///relative/path.db or sqlite:////absolute/path.db")
        elif scheme in ("http", "https"):
            if not info.data.get("allow_outside_repo"):
                raise ValueError(f"a remote server ({scheme}://) needs mlflow.allow_outside_repo: true")
        elif scheme in ("", "file"):
            raise ValueError("MLflow 3 refuses the file store (file:// or a plain path); use sqlite:///mlflow.db")
        else:
            raise ValueError(f"unsupported scheme {scheme!r}; use sqlite:/// (or http(s):// with "
                             "allow_outside_repo: true)")
        return uri

    def sqlite_path(self, root: Path) -> Optional[Path]:
        """The database file a sqlite tracking URI names, resolved against the repository root."""
        if not self.tracking_uri.lower().startswith("sqlite:///"):
            return None
        return (Path(root) / self.tracking_uri[len("sqlite:///"):]).resolve()


SweepValue = Optional[Union[bool, int, float, str]]
SWEEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"     # part of DVC experiment names and MLflow filters


class SweepParams(_Section):
    """BalanceHead Table 1 as one command (`balancehead sweep`): one DVC experiment per arm, all on the
    same packed dataset. No stage declares this section: it changes which experiments run and how their
    MLflow runs are grouped, never an output byte."""
    id: Optional[str] = Field(None, pattern=SWEEP_ID_PATTERN, description=(
        "set per experiment by `balancehead sweep` (-S sweep.id=...): the arm's MLflow parent run nests under "
        "the sweep's run; null outside a sweep"))
    target: str = Field("evaluate", description="the stage each arm reproduces (with what it needs)")
    jobs: int = Field(1, ge=1, le=64, description="experiments run at once (dvc exp run --run-all -j)")
    arms: dict[str, dict[str, SweepValue]] = Field(default_factory=dict, description=(
        "arm name -> params overrides as dotted keys (what `dvc exp run -S key=value` sets)"))

    @field_validator("target")
    @classmethod
    def _stage(cls, v):
        from .pipeline import BY_NAME

        if v not in BY_NAME:
            raise ValueError(f"unknown stage {v!r}; stages: {', '.join(BY_NAME)}")
        return v

    @field_validator("arms")
    @classmethod
    def _names(cls, v):
        import re

        for name, overrides in v.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,63}", name):
                raise ValueError(f"arm name {name!r}: use lower-case letters, digits and _ (it becomes part of "
                                 "a DVC experiment name)")
            if not overrides:
                raise ValueError(f"arm {name!r} overrides nothing")
            bad = [k for k in overrides if k == "sweep" or k.startswith("sweep.")]
            if bad:
                raise ValueError(f"arm {name!r}: cannot override {bad} (the sweep sets them)")
        return v


class BuildOpsParams(_Section):
    build_cuda: Literal["auto", "yes", "no"] = "auto"
    cuda_arch_list: str = Field("8.0;8.6;9.0", pattern=r"^[0-9]+\.[0-9]+(\+PTX)?(;[0-9]+\.[0-9]+(\+PTX)?)*$")
    cuda_home: str = Field("", description="CUDA toolkit root; empty = $CUDA_HOME or found from nvcc")
    verbose: bool = False
    check_seed: int = Field(0, ge=0)


class Params(_Section):
    seed: int = Field(0, ge=0, le=2**31 - 1, description="global seed; every draw derives from (seed, stage, item)")
    workflow: WorkflowParams = WorkflowParams()
    camera: CameraParams = CameraParams()
    ingest: IngestParams = IngestParams()
    assess_quality: AssessQualityParams = AssessQualityParams()
    synthesizer: SynthesizerParams
    synth_front: SynthFrontParams = SynthFrontParams()
    preprocess: PreprocessParams = PreprocessParams()
    select_front: SelectFrontParams = SelectFrontParams()
    synth_views: SynthViewsParams = SynthViewsParams()
    filter_views: FilterViewsParams
    label_clip: LabelClipParams = LabelClipParams()
    pack_dataset: PackDatasetParams = PackDatasetParams()
    mlflow: MlflowParams = MlflowParams()
    build_ops: BuildOpsParams = BuildOpsParams()
    train: TrainParams = TrainParams()
    generator: GeneratorParams = GeneratorParams()
    sample_prior: SamplePriorParams = SamplePriorParams()
    train_recon: TrainReconParams = TrainReconParams()
    invert: InvertParams = InvertParams()
    eval_recon: EvalReconParams = EvalReconParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()
    sweep: SweepParams = SweepParams()

    @model_validator(mode="after")
    def _cross(self):
        ids = {v.id for v in self.synthesizer.views}
        if self.synth_front.prompt_id not in ids:
            raise ValueError(f"synth_front.prompt_id '{self.synth_front.prompt_id}' is not one of synthesizer.views ids {sorted(ids)}")
        unknown = [p for p in self.synth_views.prompt_ids if p not in ids]
        if unknown:
            raise ValueError(f"synth_views.prompt_ids: unknown prompt id(s) {unknown}; allowed {sorted(ids)}")
        from .pipeline import STAGES

        ckpt = self.generator.checkpoint
        if any(ckpt == o or ckpt.startswith(o + "/") for s in STAGES for o in s.all_outs() if s.name != "train"):
            raise ValueError(f"generator.checkpoint: {ckpt!r} is another stage's output, not a generator checkpoint; "
                             "use data/train or a directory written by `balancehead import-checkpoint`")
        if self.sweep.arms:
            self._check_arms()
        return self

    def _check_arms(self) -> None:
        """Every arm's overrides name existing keys and give a valid whole (checked before any arm runs)."""
        base = self.model_dump(mode="json")
        base["sweep"] = {**base["sweep"], "arms": {}}
        for arm, overrides in self.sweep.arms.items():
            raw = json.loads(json.dumps(base))
            for key, value in overrides.items():
                node = raw
                *parents, leaf = key.split(".")
                for part in parents:
                    node = node.get(part) if isinstance(node, dict) else None
                if not isinstance(node, dict) or leaf not in node:
                    raise ValueError(f"sweep.arms.{arm}: {key!r} is not a params key")
                node[leaf] = value
            try:
                Params.model_validate(raw)
            except ValidationError as err:
                problems = [line.strip() for line in _format_error(err, "").splitlines()[1:]]
                raise ValueError(f"sweep.arms.{arm} gives invalid params: {'; '.join(problems)}") from None

    def section(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid parameter(s):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            allowed = _allowed_keys(parent)
            msg = f"unknown key; allowed keys here: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        given = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(given, dict) else f" (got {_short(given)})"
        lines.append(f"  {key}: {msg}{shown}")
    return "\n".join(lines)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _allowed_keys(loc) -> list[str]:
    model: Any = Params
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        model = getattr(ann, "__args__", [ann])[0] if not isinstance(ann, type) else ann
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif hasattr(ann, "__args__"):
            model = next((a for a in ann.__args__ if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


def validate(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the repository root, or pass --params)")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    params = validate(raw, str(path))
    _check_tracking_location(params, path.resolve().parent, str(path))
    return params


def _check_tracking_location(params: "Params", root: Path, source: str) -> None:
    """mlflow.tracking_uri must name a writable place inside the repository (unless allowed otherwise):
    checked before any stage runs, not after pack_dataset has spent an hour."""
    m = params.mlflow
    db = m.sqlite_path(root)
    if not m.enabled or db is None:
        return
    if not m.allow_outside_repo and not db.is_relative_to(root.resolve()):
        raise ParamsError(f"{source}: invalid parameter(s):\n  mlflow.tracking_uri: {db} is outside the repository "
                          f"{root}; use a path inside it, or set mlflow.allow_outside_repo: true")
    existing = next(p for p in (db, *db.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise ParamsError(f"{source}: invalid parameter(s):\n  mlflow.tracking_uri: {existing} is not writable")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (a 'billion laughs' file expands exponentially before any
    key could be checked) and keys written twice (YAML keeps the last one silently)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name / *name) are not allowed in params.yaml; "
                "write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 booleans only: PyYAML's YAML 1.1 default also reads yes / no / on / off / y / n as booleans, so
# `build_ops.build_cuda: no` written unquoted (as `dvc exp run -S` rewrites params.yaml) would become false.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def default_value(dotted: str) -> Any:
    """The schema default of a params key, e.g. default_value("generator.checkpoint") == "data/train"."""
    model: Any = Params
    value: Any = None
    for part in dotted.split("."):
        value = model.model_fields[part].get_default(call_default_factory=True)
        model = type(value)
    return value


def json_schema() -> dict:
    return Params.model_json_schema()
