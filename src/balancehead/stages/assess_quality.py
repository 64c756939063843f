"""assess_quality: the IQA gate of BalanceHead §3.1 — keep (> keep_above), drop (< drop_below), and
enhance in between with a super-resolution/restoration model, then re-score."""
from __future__ import annotations

import json

import numpy as np

from .. import fileio
from ..runner import StageContext, finish, run_items

DEP = "sources"          # input names: see pipeline.py


def make_backend(ctx: StageContext):
    from ..backends.iqa import ClassicalIQA

    p = ctx.params.assess_quality
    if p.backend == "offline":
        iqa = ClassicalIQA()
    else:
        from ..backends.production.iqa_sr import ProductionQuality

        iqa = ProductionQuality(p.hyper_iqa, p.swin2sr)
    return iqa, iqa.enhance, iqa.name, iqa.enhancer_name


def main(ctx: StageContext) -> None:
    p = ctx.params.assess_quality
    sources = {r["id"]: r for r in ctx.read_items(DEP) if r["status"] == "kept"}
    iqa, enhance, iqa_name, sr_name = make_backend(ctx)
    model_prov = iqa.provenance() if hasattr(iqa, "provenance") else None

    def compute(chunk):
        out = []
        for item_id in chunk:
            src = sources[item_id]
            rgb = fileio.read_png(ctx.item_file(DEP, item_id, "png"))
            score = float(iqa.score(rgb))
            record = {"id": item_id, "subject_id": src["subject_id"], "role": "source",
                      "provenance": src["provenance"], "sha256": src.get("sha256"),
                      "iqa_score": round(score, 4), "iqa_backend": iqa_name}
            if model_prov:
                record["iqa_model"] = model_prov
            if score > p.keep_above:
                record.update(iqa_action="keep", status="kept", reason=None)
                files = {"png": fileio.png_bytes(rgb)}
            elif score < p.drop_below:
                record.update(iqa_action="drop", status="rejected", reason=f"IQA score below {p.drop_below:g}")
                files = {}
            else:
                better = enhance(rgb)
                after = float(iqa.score(better))
                record.update(iqa_action="enhance", status="kept", reason=None, sr_backend=sr_name,
                              iqa_score_after=round(after, 4))
                files = {"png": fileio.png_bytes(better)}
            out.append((record, files))
        return out

    done = run_items(ctx, sorted(sources), compute, desc="images")
    finish(ctx, done, lambda records, _cache: _metrics(ctx, records))


def _metrics(ctx: StageContext, records: list[dict]) -> dict:
    actions = [r["iqa_action"] for r in records]
    scores = np.array([r["iqa_score"] for r in records], dtype=np.float64)
    m = {"n": len(records), **{f"n_{a}": actions.count(a) for a in ("keep", "enhance", "drop")},
         "score_mean": float(scores.mean()) if len(scores) else None}
    enhanced = [r for r in records if r["iqa_action"] == "enhance"]
    if enhanced:
        m["enhance_score_gain_mean"] = float(np.mean([r["iqa_score_after"] - r["iqa_score"] for r in enhanced]))
    # Ground truth (procedural sources only): does the score fall with the applied degradation severity?
    sev = []
    for r in records:
        truth = ctx.item_file(DEP, r["id"], "truth.json")
        if truth.exists():
            t = json.loads(truth.read_text())
            if "severity" in t:
                sev.append((float(t["severity"]), r["iqa_score"]))
    if len(sev) >= 3:
        a = np.array(sev)
        ranks = lambda x: np.argsort(np.argsort(x)).astype(np.float64)
        m["spearman_score_vs_true_severity"] = float(np.corrcoef(ranks(a[:, 0]), ranks(a[:, 1]))[0, 1])
    return m
