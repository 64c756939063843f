"""The whole data DAG through the PRODUCTION backends (issue 4 "Done means"): every model-driven
stage switched to its production backend, each pointing at a tiny local model of the real
architecture/tensor contract (tests/production_models.py), then `dvc repro pack_dataset` with the
real tool in a throw-away copy of the repository.

Random tiny models produce garbage, so the two ONNX models that gate the flow are fixtures of the
contract with plausible outputs (one confident centred head at yaw 0; person = non-white pixels),
the IQA scorer's affine output map puts every source in the keep/enhance bands, and the judge's
unparseable answers are kept (`filter_views.unparseable: keep`). Everything else is random."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from balancehead.backends.production import weights as W
from conftest import BIN, SMALL, copy_repo, deep_update, dump_params, run, set_params
from production_models import (CentredHeadPose, NonWhiteSeg, build_random_open_clip, build_tiny_flux,
                               build_tiny_qwen, build_tiny_swin2sr, export, export_iqa, tiny_arcface)

SIZE = 64        # image, crop and FLUX output size
POSE_IN = 64     # head-pose / segmentation model input size
TINY = {"ingest": {"num_sources": 4}, "synth_front": {"candidates": 2}, "synth_views": {"views_per_front": 2},
        "workflow": {"threads": 2}, "mlflow": {"enabled": False}}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Every tiny model, built once."""
    d = tmp_path_factory.mktemp("production_models")
    (d / "qwen").mkdir()
    return {
        "flux": build_tiny_flux(d / "flux"),
        "qwen": build_tiny_qwen(d / "qwen"),
        "arcface": Path(export(tiny_arcface(), d / "arcface.onnx", 112, ["embedding"])),
        "head_pose": Path(export(CentredHeadPose(POSE_IN), d / "head_pose.onnx", POSE_IN, ["boxes", "pose"])),
        "person_seg": Path(export(NonWhiteSeg(), d / "person_seg.onnx", POSE_IN, ["mask"])),
        "hyper_iqa": Path(export_iqa(d / "hyper_iqa.onnx", size=32)),
        "swin2sr": build_tiny_swin2sr(d / "swin2sr"),
        "open_clip": build_random_open_clip(d / "vit_b_32.safetensors"),
    }


def production_params(m: dict[str, Path]) -> dict:
    """The production preset, pointed at the tiny models, CPU/fp32 and tiny sizes."""
    onnx = {"providers": ["CPUExecutionProvider"], "batch_size": 4, "progress": False}
    hf = {"device": "cpu", "dtype": "fp32", "progress": False}
    return {
        "assess_quality": {
            "backend": "production",
            # Raw edge energy of the 4 tiny sources is ~19-40: +30 puts all above drop_below (35),
            # the sharpest above keep_above (60) and the rest in the enhance band (Swin2SR runs).
            "hyper_iqa": {**onnx, "model": str(m["hyper_iqa"]), "input_size": 32, "n_crops": 1,
                          "score_scale": 1.0, "score_offset": 30.0},
            "swin2sr": {**hf, "model": str(m["swin2sr"]), "batch_size": 2},
        },
        "synthesizer": {"backend": "flux_kontext",
                        "flux_kontext": {**hf, "model": str(m["flux"]), "steps": 2, "width": SIZE, "height": SIZE,
                                         "batch_size": 2, "max_sequence_length": 32}},
        "preprocess": {"backend": "onnx",
                       "head_pose": {**onnx, "model": str(m["head_pose"]), "input_size": POSE_IN},
                       "person_seg": {**onnx, "model": str(m["person_seg"]), "input_size": POSE_IN}},
        "select_front": {"backend": "arcface", "arcface": {**onnx, "model": str(m["arcface"])}},
        "filter_views": {"backend": "qwen_vl", "unparseable": "keep",
                         "qwen_vl": {**hf, "model": str(m["qwen"]), "batch_size": 2, "max_new_tokens": 6,
                                     "attribute_max_new_tokens": 6, "min_pixels": 56 * 56, "max_pixels": 56 * 56}},
        "label_clip": {"backend": "open_clip", "model": "ViT-B-32", "pretrained": str(m["open_clip"]),
                       "batch_size": 8},
    }


@pytest.fixture(scope="module")
def prod_run(tmp_path_factory, models):
    """A repository copy (conftest's workspace recipe: SMALL params) with every stage on its production
    backend, after `dvc repro pack_dataset`."""
    root = copy_repo(tmp_path_factory.mktemp("prod") / "repo")
    set_params(root, deep_update(deep_update(json.loads(json.dumps(SMALL)), TINY), production_params(models)))
    proc = run([str(BIN / "dvc"), "repro", "pack_dataset"], cwd=root, timeout=900)
    return root, proc


def items(root: Path, out: str) -> list[dict]:
    return [json.loads(line) for line in (root / out / "items.jsonl").read_text().splitlines() if line]


def assert_weights(prov: dict, path: Path) -> None:
    """A production backend's provenance: the resolved path and the digest of what was loaded."""
    assert prov["resolved_path"] == str(path.resolve())
    assert prov["weights_sha256"] == W.checksum(path)["sha256"]


def test_dvc_repro_runs_every_stage_through_production_backends(prod_run):
    root, proc = prod_run
    for stage in ("ingest", "assess_quality", "synth_front", "preprocess_fronts", "select_front", "synth_views",
                  "preprocess_views", "filter_views", "label_clip", "pack_dataset"):
        assert f"Running stage '{stage}'" in proc.stdout, stage
    from balancehead.data.manifest import read_manifest

    rows = read_manifest(root / "data/dataset/manifest.parquet")
    roles = {r["role"] for r in rows}
    assert {"source", "front-candidate", "front", "view"} <= roles
    packed = [r for r in rows if r["shard"] is not None]
    assert {"front", "view"} <= {r["role"] for r in packed}
    fronts = [r for r in packed if r["role"] == "front"]
    assert fronts and all(r["yaw"] == 0.0 and len(r["camera"]) == 25 for r in fronts)
    # Every packed image has its CLIP condition from the open_clip backend (512-d ViT-B-32).
    clip = items(root, "data/clip")
    assert {c["id"] for c in clip} >= {r["image_id"] for r in packed}
    assert {c["dim"] for c in clip} == {512} and all(not c["offline"] for c in clip)


def test_provenance_names_model_path_and_weights_digest(prod_run, models):
    root, _ = prod_run
    quality = items(root, "data/quality")
    assert {q["iqa_action"] for q in quality} == {"keep", "enhance"}  # Swin2SR ran, nothing dropped
    assert all("iqa_score_after" in q for q in quality if q["iqa_action"] == "enhance")
    for q in quality:
        assert_weights(q["iqa_model"]["iqa"], models["hyper_iqa"])
        assert_weights(q["iqa_model"]["sr"], models["swin2sr"])
    for out in ("data/front_candidates", "data/views_raw"):
        recs = items(root, out)
        assert recs
        for r in recs:
            assert r["provenance"]["backend"] == "flux.1-kontext"
            assert_weights(r["provenance"], models["flux"])
    for out in ("data/fronts_pre", "data/views_pre"):
        for r in items(root, out):
            assert_weights(r["preprocess_backend"]["pose"], models["head_pose"])
            assert_weights(r["preprocess_backend"]["mask"], models["person_seg"])
            assert r["pose_detected"] and r["mask_fraction"] > 0.05
    fronts = items(root, "data/fronts")
    assert fronts
    for r in fronts:
        assert_weights(r["identity_backend"], models["arcface"])
    views = items(root, "data/views")
    assert views and any(v["status"] == "kept" for v in views)
    for v in views:
        assert_weights(v["judge_backend"], models["qwen"])
        assert v["judge_backend"]["decoding"] == "greedy"
    for c in items(root, "data/clip"):
        prov = c["model_provenance"]
        assert prov["weights"] == str(models["open_clip"])
        assert prov["resolved_path"] == str(models["open_clip"].resolve())
        assert prov["weights_sha256"] == W.sha256_file(models["open_clip"])


def test_missing_weights_fail_before_any_item_naming_the_param(prod_run, tmp_path):
    root, _ = prod_run
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["filter_views"]["qwen_vl"]["model"] = str(tmp_path / "no-such-qwen")
    wrong = root / "params.wrong.yaml"
    wrong.write_text(dump_params(params))
    cache = root / "data/.items/filter_views"
    item_files = lambda: sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())  # noqa: E731
    before = item_files()
    views_before = (root / "data/views/items.jsonl").read_bytes()
    proc = run([str(BIN / "balancehead"), "--params", wrong.name, "run", "filter_views"], cwd=root, check=False)
    assert proc.returncode != 0
    assert "filter_views.qwen_vl.model" in proc.stderr and "offline" in proc.stderr
    assert item_files() == before, "an item was written before the missing weights were noticed"
    assert (root / "data/views/items.jsonl").read_bytes() == views_before
    # No model path at all is caught earlier still, by params validation, naming the key.
    params["filter_views"]["qwen_vl"]["model"] = None
    wrong.write_text(dump_params(params))
    proc = run([str(BIN / "balancehead"), "--params", wrong.name, "run", "filter_views"], cwd=root, check=False)
    assert proc.returncode != 0 and "filter_views.qwen_vl.model" in proc.stderr
