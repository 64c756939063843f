"""pack_dataset: the training set as tar shards + manifest.parquet + condition tables, the dataset card,
the EG3D/PanoHead export, DVC metrics/plots, and an MLflow run for the data engine (DESIGN.md §2).

Packed images are each subject's selected front and its kept views; every other image of the run
(quarantined or dropped sources, unselected candidates, rejected views) is still a manifest row with
the stage that rejected it and why."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from .. import fileio, integrity
from ..runner import StageContext

def _read(ctx, name):
    return {r["id"]: r for r in ctx.read_items(name)}


def _feature(ctx, item_id) -> np.ndarray:
    return np.frombuffer(ctx.item_file("clip", item_id, "f32").read_bytes(), dtype="<f4")


def main(ctx: StageContext) -> None:
    from ..data.card import build_card, write_card
    from ..data.conditions import save_conditions
    from ..data.manifest import write_manifest, yaw_bin
    from ..data.shards import ShardWriter

    p = ctx.params.pack_dataset
    ingest, quality, fronts_pre = _read(ctx, "ingest"), _read(ctx, "quality"), _read(ctx, "fronts_pre")
    fronts, views_pre, views, clip = _read(ctx, "fronts"), _read(ctx, "views_pre"), _read(ctx, "views"), _read(ctx, "clip")
    decisions = {d["id"]: d for d in fileio.read_jsonl(ctx.input("fronts") / "decisions.jsonl") if d["id"]}

    rows: list[dict] = []
    for sid, r in sorted(ingest.items()):
        q = quality.get(sid, {})
        rejected_by, reason = None, None
        if r["status"] != "kept":
            rejected_by, reason = "ingest", r.get("reason")
        elif q.get("iqa_action") == "drop":
            rejected_by, reason = "assess_quality", q.get("reason")
        rows.append(dict(image_id=sid, subject_id=r["subject_id"], role="source", iqa_score=q.get("iqa_score"),
                         iqa_action=q.get("iqa_action"), rejected_by=rejected_by, reasons=reason,
                         backend=q.get("iqa_backend"), seed=r["provenance"].get("seed"), provenance=r["provenance"]))
    selected = {r["id"] for r in fronts.values()}
    for cid, r in sorted(fronts_pre.items()):
        if cid in selected:
            continue
        d = decisions.get(cid, {})
        rows.append(_image_row(r, role="front-candidate", rejected_by="select_front", reasons=d.get("reason")))

    subjects = sorted(f["subject_id"] for f in fronts.values())
    subject_index = {s: i for i, s in enumerate(subjects)}
    packed_ids: list[str] = []
    out_dir = ctx.output("dataset")
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    front_by_subject = {f["subject_id"]: f for f in fronts.values()}
    views_by_subject: dict[str, list[dict]] = {}
    for vid in sorted(views):                           # grouped once: linear in the number of views
        views_by_subject.setdefault(views[vid]["subject_id"], []).append(views[vid])
    identity = IdentityTables(ctx) if p.identity_tables else None
    with ShardWriter(tmp / "shards", p.shard_size, max_bytes=p.max_shard_bytes) as writer:
        for subject in subjects:
            members = [(front_by_subject[subject], "fronts", "front", None)]
            members += [(v, "views", "view", v) for v in views_by_subject.get(subject, [])]
            for rec, dep, role, verdict in members:
                if verdict is not None and verdict["status"] != "kept":
                    rows.append(_image_row(rec, role="view", rejected_by="filter_views", reasons=verdict.get("reason"),
                                           verdicts=verdict))
                    continue
                rgb = fileio.read_png(ctx.item_file(dep, rec["id"], "png"))
                mask = fileio.read_png(ctx.item_file(dep, rec["id"], "mask.png"))
                label = {"camera": rec["camera"], "subject_index": subject_index[subject], "subject_id": subject,
                         "yaw": rec["yaw"], "pitch": rec["pitch"], "role": role}
                shard, key = writer.add(rec["id"], rgb, label, mask)
                rows.append(_image_row(rec, role=role, shard=shard, key=key, verdicts=verdict))
                packed_ids.append(rec["id"])
                if identity is not None:
                    identity.add(rec["id"], subject if role == "front" else None, rgb, mask)

    clip_meta = next(iter(clip.values()), {})     # label_clip records its model and feature width
    dim = int(clip_meta.get("dim", 0))
    backends = sorted({clip[i]["backend"] for i in packed_ids if i in clip}) or [clip_meta.get("backend", "none")]
    sources = Counter(clip[i].get("semantic_source", "image") for i in packed_ids if i in clip)
    meta = {"backend": "+".join(backends), "model_id": clip_meta.get("model"),
            "offline": bool(clip_meta.get("offline", True)), "semantic_sources": dict(sorted(sources.items()))}
    front_feats = np.stack([_feature(ctx, front_by_subject[s]["id"]) for s in subjects]) if subjects else np.zeros((0, dim), np.float32)
    save_conditions(tmp / "conditions.safetensors", subjects, front_feats, {**meta, "kind": "subject"})
    view_feats = np.stack([_feature(ctx, i) for i in packed_ids]) if packed_ids else np.zeros((0, dim), np.float32)
    save_conditions(tmp / "view_conditions.safetensors", packed_ids, view_feats, {**meta, "kind": "image"})
    id_meta = identity.save(tmp, subjects, packed_ids) if identity is not None else None
    write_manifest(rows, tmp / "manifest.parquet")
    fileio.write_json(tmp / "dataset.json", {"subjects": len(subjects), "images": len(packed_ids),
                                         "condition_backend": meta, "identity_backend": id_meta,
                                         "shard_size": p.shard_size})
    integrity.write_digests(tmp, ctx.stage.name)     # shards, manifest, condition tables: checked on load
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)

    counts = _stage_counts(ingest, quality, fronts_pre, fronts, views_pre, views)
    card = build_card(rows, counts)
    card_dir = ctx.output("card")
    write_card(card, card_dir)
    bins = np.bincount([yaw_bin(r["yaw"]) for r in views_pre.values()], minlength=8)
    bins_after = np.bincount([yaw_bin(r["yaw"]) for r in rows if r.get("shard") and r.get("yaw") is not None], minlength=8)
    from ..data.manifest import YAW_BIN_LABELS
    fileio.write_text(ctx.output("yaw_hist"), yaw_hist_tsv(YAW_BIN_LABELS, bins, bins_after))
    metrics = {"subjects": len(subjects), "packed_images": len(packed_ids), "manifest_rows": len(rows),
               "packed_per_yaw_bin": {lab: int(a) for lab, a in zip(YAW_BIN_LABELS, bins_after)},
               "min_packed_per_yaw_bin": int(bins_after.min()) if len(bins_after) else 0,
               "condition_backend": meta["backend"], "conditions_offline": meta["offline"], **counts}
    fileio.write_json(ctx.output("metrics"), metrics)
    ctx.log.info("pack_dataset: %d subjects, %d images packed in %d shard(s); per yaw bin %s",
                 len(subjects), len(packed_ids), len(list((out_dir / "shards").glob("*.tar"))), metrics["packed_per_yaw_bin"])
    if p.export_eg3d:
        from ..data.export import export_eg3d
        export_eg3d(out_dir, out_dir / "export_eg3d")
    _log_mlflow(ctx, metrics, card_dir)


class IdentityTables:
    """The identity condition tables of BalanceHead A.6.10, from select_front's identity backend (offline
    appearance embedder, or ArcFace ONNX): `identity_conditions.safetensors` holds each subject's
    selected-front feature (shared by all its views: the 'identity' baseline), and
    `view_identity_conditions.safetensors` every packed image's own feature ('view_identity'). As the
    paper does for back and profile views, no face alignment is attempted: each image goes in as packed,
    with its person mask (ArcFace takes its head-box crop, `select_front.arcface.fallback_crop`)."""

    def __init__(self, ctx: StageContext):
        from ..backends.identity import make_identity_embedder

        sf = ctx.params.select_front
        self.embedder = make_identity_embedder(sf.backend, sf.arcface)
        self.offline = sf.backend == "offline"
        self.by_image: dict[str, np.ndarray] = {}
        self.by_subject: dict[str, np.ndarray] = {}

    def add(self, image_id: str, front_of: str | None, rgb: np.ndarray, mask: np.ndarray) -> None:
        """One packed image; `front_of` names the subject when it is that subject's selected front."""
        f = np.asarray(self.embedder.embed([rgb], [mask])[0], np.float32)
        self.by_image[image_id] = f
        if front_of is not None:
            self.by_subject[front_of] = f

    def save(self, out_dir: Path, subjects: list[str], image_ids: list[str]) -> dict:
        from ..data.conditions import save_conditions
        from ..data.manifest import IDENTITY_CONDITIONS_FILE, VIEW_IDENTITY_CONDITIONS_FILE

        prov = self.embedder.provenance() if hasattr(self.embedder, "provenance") else {}
        meta = {"backend": self.embedder.name, "model_id": prov.get("model_id", self.embedder.name),
                "offline": self.offline, "alignment": "none (person-mask head crop)"}
        dim = len(next(iter(self.by_image.values()))) if self.by_image else 0
        rows = [self.by_subject[s] for s in subjects]
        save_conditions(out_dir / IDENTITY_CONDITIONS_FILE, subjects,
                        np.stack(rows) if rows else np.zeros((0, dim), np.float32), {**meta, "kind": "subject"})
        rows = [self.by_image[i] for i in image_ids]
        save_conditions(out_dir / VIEW_IDENTITY_CONDITIONS_FILE, image_ids,
                        np.stack(rows) if rows else np.zeros((0, dim), np.float32), {**meta, "kind": "image"})
        return meta


def yaw_hist_tsv(labels, generated, packed) -> str:
    """The `yaw_hist` plot: views per yaw bin before filtering and packed."""
    return "yaw_bin\tgenerated_views\tpacked\n" + "".join(
        f"{lab}\t{int(b)}\t{int(a)}\n" for lab, b, a in zip(labels, generated, packed))


def _image_row(rec: dict, role: str, shard=None, key=None, rejected_by=None, reasons=None, verdicts=None) -> dict:
    v = (verdicts or {}).get("verdicts", {})
    prov = rec.get("provenance", {})
    model = prov if "model_id" in prov else {}
    return dict(image_id=rec["id"], subject_id=rec["subject_id"], role=role, shard=shard, key=key,
                prompt_id=rec.get("prompt_id"), yaw=rec.get("yaw"), pitch=rec.get("pitch"), roll=rec.get("roll"),
                camera=rec.get("camera"), verdict_class=v.get("class"),
                verdict_artifact=None if not v else v.get("artifact") == "severe artifacts",
                verdict_match=None if not v else v.get("match") == "YES",
                reasons=reasons, rejected_by=rejected_by, backend=prov.get("backend"), seed=prov.get("seed"),
                model_id=model.get("model_id"), revision=model.get("revision"),
                provenance={**prov, "preprocess": rec.get("preprocess_backend"),
                            "judge": (verdicts or {}).get("judge_backend"),
                            "judge_reasons": (verdicts or {}).get("reasons")})


def _stage_counts(ingest, quality, fronts_pre, fronts, views_pre, views) -> dict:
    return {
        "ingest_inputs": len(ingest), "ingest_kept": sum(r["status"] == "kept" for r in ingest.values()),
        "quality_kept": sum(r["status"] == "kept" for r in quality.values()),
        "quality_enhanced": sum(r.get("iqa_action") == "enhance" for r in quality.values()),
        "quality_dropped": sum(r.get("iqa_action") == "drop" for r in quality.values()),
        "front_candidates": len(fronts_pre), "fronts_selected": len(fronts),
        "views_generated": len(views_pre), "views_kept": sum(r["status"] == "kept" for r in views.values()),
    }


def _log_mlflow(ctx: StageContext, metrics: dict, card_dir: Path) -> None:
    from ..tracking import log_dataset, mlflow_run

    # the run records every data-engine section (bookkeeping for MLflow, not an input of this stage)
    params = ctx.all_params.model_dump(mode="json")
    data_params = {k: v for k, v in params.items() if k not in ("build_ops", "mlflow")}
    with mlflow_run(ctx, "data-engine", data_params) as mlflow:
        if mlflow is None:
            return
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for name in ("assess_quality", "select_front", "preprocess_views", "filter_views"):
            path = ctx.input(f"{name}_metrics")
            if path.exists():
                vals = json.loads(path.read_text())
                mlflow.log_metrics({f"{name}.{k}": float(v) for k, v in vals.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
        log_dataset(mlflow, ctx.output("dataset"), ctx.root, context="packed")
        mlflow.log_artifacts(str(card_dir), artifact_path="dataset_card")
        mlflow.log_artifact(str(ctx.output("yaw_hist")))
