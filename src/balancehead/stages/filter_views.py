"""filter_views: the filtering agent of BalanceHead A.2 (Figs. 8–10). For each view: classify it as a
standard or non-standard image, look for severe artifacts, and decide whether it shows the same person
as its front (with the stricter standard-image criteria when it is standard). Kept views are those
with no severe artifacts and a YES match. Every verdict keeps its reason text.

The judge's precision/recall against the synthesiser's ground truth (evaluation only, never an input
to a decision) is written to the `metrics` output."""
from __future__ import annotations

import dataclasses
import json
from functools import lru_cache

import numpy as np

from .. import fileio
from ..runner import StageContext, finish, run_items

FRONTS, VIEWS = "fronts", "views"          # input names: see pipeline.py


def make_judge(ctx: StageContext):
    from ..backends.judge import HeuristicJudge, JudgeConfig

    p = ctx.params.filter_views
    if p.backend == "offline":
        types = {f.name: f.type for f in dataclasses.fields(JudgeConfig)}
        cfg = {k: int(v) if types[k] in (int, "int") else float(v) for k, v in p.judge.items()}
        return HeuristicJudge(JudgeConfig(**cfg))
    from ..backends.production.qwen_vl_judge import QwenVLJudge

    return QwenVLJudge(p.qwen_vl, p.prompts)


def main(ctx: StageContext) -> None:
    fronts = {r["subject_id"]: r for r in ctx.read_items(FRONTS)}
    views = {r["id"]: r for r in ctx.read_items(VIEWS) if r["subject_id"] in fronts}
    judge = None
    policy = ctx.params.filter_views.unparseable

    @lru_cache(maxsize=64)
    def front_images(subject_id):
        fid = fronts[subject_id]["id"]
        return fileio.read_png(ctx.item_file(FRONTS, fid, "png")), fileio.read_png(ctx.item_file(FRONTS, fid, "mask.png"))

    def compute(chunk):
        nonlocal judge
        if judge is None:                        # built on first use: a fully cached rerun loads no model
            judge = make_judge(ctx)
            compute.provenance = judge.provenance() if hasattr(judge, "provenance") else {"backend": judge.name}
        judged = [i for i in chunk if views[i].get("pose_detected", True)]
        images = {i: (fileio.read_png(ctx.item_file(VIEWS, i, "png")), fileio.read_png(ctx.item_file(VIEWS, i, "mask.png")))
                  for i in judged}
        verdicts_of = dict(zip(judged, judge_chunk(judge, [views[i] for i in judged], [images[i] for i in judged],
                                                   front_images)))
        out = []
        for item_id in chunk:
            v = views[item_id]
            if item_id not in verdicts_of:
                record = dict(v, status="rejected", reason="no head detected", verdicts={}, reasons={},
                              judge_backend=compute.provenance, scores={})
                out.append((record, _truth_only(ctx, item_id)))
                continue
            cls, art, match = verdicts_of[item_id]
            verdicts = {"class": cls.label, "artifact": art.label, "match": match.label}
            reasons = {"class": cls.reason, "artifact": art.reason, "match": match.reason}
            status, reason = decide(verdicts, policy)
            record = dict(v)
            record.update(status=status, reason=reason, verdicts=verdicts, reasons=reasons,
                          judge_backend=compute.provenance,
                          scores={"class": cls.score, "artifact": art.score, "match": match.score})
            files = {}
            if status == "kept":
                files = {"png": ctx.item_file(VIEWS, item_id, "png").read_bytes(),
                         "mask.png": ctx.item_file(VIEWS, item_id, "mask.png").read_bytes()}
            files.update(_truth_only(ctx, item_id))
            out.append((record, files))
        return out

    batch = ctx.params.filter_views.qwen_vl.batch_size if ctx.params.filter_views.backend == "qwen_vl" else 1
    done = run_items(ctx, sorted(views), compute, chunk_size=batch, desc="views")
    finish(ctx, done, judge_metrics)


def judge_chunk(judge, views: list[dict], images: list[tuple], front_images) -> list[tuple]:
    """(class, artifact, match) verdicts for a chunk of views: one batched call for a VLM judge,
    item by item for the heuristic one (which uses the estimated yaw)."""
    fronts = [front_images(v["subject_id"]) for v in views]
    if hasattr(judge, "judge_views"):
        return judge.judge_views([f[0] for f in fronts], [im[0] for im in images],
                                 [f[1] for f in fronts], [im[1] for im in images])
    out = []
    for v, (rgb, mask), (f_rgb, f_mask) in zip(views, images, fronts):
        cls = judge.classify(rgb, mask, v["yaw"])
        art = judge.artifacts(rgb, mask)
        out.append((cls, art, judge.match(f_rgb, f_mask, rgb, mask, cls.label == "standard", v["yaw"])))
    return out


def _truth_only(ctx: StageContext, item_id: str) -> dict:
    truth = ctx.item_file(VIEWS, item_id, "truth.json")
    return {"truth.json": truth.read_bytes()} if truth.exists() else {}


def decide(verdicts: dict, policy: str) -> tuple[str, str | None]:
    """Keep a view only with no severe artifacts and a YES identity match; None = unparseable answer."""
    if verdicts["artifact"] is None or verdicts["match"] is None:
        return ("kept", None) if policy == "keep" else ("rejected", "unparseable judge answer")
    if verdicts["artifact"] == "severe artifacts":
        return "rejected", "severe artifacts"
    if verdicts["match"] != "YES":
        return "rejected", "not the same person as the front"
    return "kept", None


def judge_metrics(records, cache) -> dict:
    """Precision/recall of rejection vs ground truth (bad = artifact or identity drift)."""
    rows = []
    for r in records:
        path = cache.file(r["id"], "truth.json")
        if path.exists():
            t = json.loads(path.read_text())
            rows.append((r["status"] == "rejected", bool(t.get("artifact")), bool(t.get("identity_drift"))))
    m = {"n": len(records), "n_kept": sum(r["status"] == "kept" for r in records)}
    if not rows:
        return m
    a = np.array(rows, dtype=bool)
    rejected, bad = a[:, 0], a[:, 1] | a[:, 2]
    tp = int((rejected & bad).sum())
    m.update(n_with_truth=len(a), true_bad_rate=float(bad.mean()), reject_rate=float(rejected.mean()),
             reject_precision=tp / max(int(rejected.sum()), 1), reject_recall=tp / max(int(bad.sum()), 1),
             artifact_recall=float(rejected[a[:, 1]].mean()) if a[:, 1].any() else None,
             identity_drift_recall=float(rejected[a[:, 2]].mean()) if a[:, 2].any() else None)
    return m
