"""select_front: one front per source — candidates with |yaw| <= max_abs_yaw, then the one whose
identity embedding is most similar to the original photo (BalanceHead §3.1; the paper's wording says
"smallest cosine similarity", the intent per A.6.7 is the best identity match, which we implement)."""
from __future__ import annotations

import json

import numpy as np

from .. import fileio
from ..runner import StageContext, assemble_dir

SOURCES, CANDIDATES = "sources", "candidates"          # input names: see pipeline.py


def make_embedder(ctx: StageContext):
    from ..backends.identity import make_identity_embedder

    p = ctx.params.select_front
    return make_identity_embedder(p.backend, p.arcface)


def main(ctx: StageContext) -> None:
    p = ctx.params.select_front
    sources = {r["id"]: r for r in ctx.read_items(SOURCES) if r["status"] == "kept"}
    by_source: dict[str, list[dict]] = {}
    for c in ctx.read_items(CANDIDATES):
        by_source.setdefault(c["source_id"], []).append(c)
    embedder = make_embedder(ctx)
    selected, decisions = [], []
    for src_id in sorted(sources):
        cands = sorted(by_source.get(src_id, []), key=lambda c: c["id"])
        ok = [c for c in cands if c.get("pose_detected", True) and abs(c["yaw"]) <= p.max_abs_yaw]
        for c in cands:
            if not c.get("pose_detected", True):
                decisions.append({"id": c["id"], "source_id": src_id, "status": "rejected", "reason": "no head detected"})
            elif abs(c["yaw"]) > p.max_abs_yaw:
                decisions.append({"id": c["id"], "source_id": src_id, "status": "rejected",
                                  "reason": f"|yaw| > {p.max_abs_yaw:g}°", "yaw": c["yaw"]})
        if not ok:
            decisions.append({"id": None, "source_id": src_id, "status": "rejected",
                              "reason": f"no candidate with |yaw| <= {p.max_abs_yaw}"})
            continue
        original = fileio.read_png(ctx.item_file(SOURCES, src_id, "png"))
        imgs = [fileio.read_png(ctx.item_file(CANDIDATES, c["id"], "png")) for c in ok]
        masks = [fileio.read_png(ctx.item_file(CANDIDATES, c["id"], "mask.png")) for c in ok]
        ref = embedder.embed([original])[0]
        emb = embedder.embed(imgs, masks)
        sims = emb @ ref
        best = int(np.argmax(sims))
        for j, c in enumerate(ok):
            decisions.append({"id": c["id"], "source_id": src_id, "status": "selected" if j == best else "rejected",
                              "reason": None if j == best else "lower identity similarity than the selected candidate",
                              "identity_similarity": round(float(sims[j]), 5)})
        chosen = dict(ok[best])
        chosen.update(role="front", identity_similarity=round(float(sims[best]), 5),
                      identity_backend=embedder.provenance() if hasattr(embedder, "provenance") else {"backend": embedder.name})
        selected.append(chosen)
    ctx.log.info("select_front: %d sources, %d fronts selected", len(sources), len(selected))
    fileio.write_json(ctx.output("metrics"), _metrics(ctx, sources, selected))
    _assemble(ctx, selected, decisions)


def _assemble(ctx: StageContext, selected, decisions) -> None:
    """Fronts are copies of their candidate's files; decisions.jsonl keeps every candidate's fate."""
    class _FromCandidates:
        def file(self, item_id, name):
            return ctx.item_file(CANDIDATES, item_id, name)

        def prune_others(self):
            pass

    extra = {"decisions.jsonl": "".join(json.dumps(d, sort_keys=True) + "\n" for d in decisions).encode()}
    assemble_dir(ctx.output("fronts"), selected, _FromCandidates(), extra_files=extra)


def _metrics(ctx: StageContext, sources, selected) -> dict:
    m = {"n_sources": len(sources), "n_selected": len(selected)}
    clean = []
    for r in selected:
        t = ctx.item_file(CANDIDATES, r["id"], "truth.json")
        if t.exists():
            truth = json.loads(t.read_text())
            clean.append(not truth.get("identity_drift") and not truth.get("artifact"))
    if clean:
        m["frac_selected_clean"] = float(np.mean(clean))
    return m
