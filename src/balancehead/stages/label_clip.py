"""label_clip: CLIP image features (BalanceHead A.6.7). The subject's front feature is its condition,
shared by all its views; per-view features are kept for the view-semantic ablation.

Batches are fixed chunks of the global item list, so a feature never depends on sharding."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import fileio
from ..runner import StageContext, assemble_dir, run_items

FRONTS, VIEWS = "fronts", "views"          # input names: see pipeline.py


def make_embedder(ctx: StageContext):
    from ..backends.clip_embed import OfflineClipEmbedder, OpenClipEmbedder

    p = ctx.params.label_clip
    if p.backend == "offline":
        return OfflineClipEmbedder(seed=p.seed, model_name=p.model, device=p.device,
                                   threads=ctx.threads, progress=False)
    return OpenClipEmbedder(model_name=p.model, pretrained=p.pretrained, device=p.device,
                            threads=ctx.threads, progress=False)


def model_provenance(ctx: StageContext, embedder) -> dict | None:
    """The embedder's provenance; for production weights also the resolved path and their sha256."""
    prov = embedder.provenance() if hasattr(embedder, "provenance") else None
    if ctx.params.label_clip.backend != "offline" and prov is not None:
        from ..hashing import sha256_file

        path = Path(prov["weights"])
        prov = {**prov, "resolved_path": str(path.resolve()), "weights_sha256": sha256_file(path)}
    return prov


def main(ctx: StageContext) -> None:
    p = ctx.params.label_clip
    items = {r["id"]: (FRONTS, r) for r in ctx.read_items(FRONTS)}
    items.update({r["id"]: (VIEWS, r) for r in ctx.read_items(VIEWS) if r["status"] == "kept"})
    embedder = None

    def compute(chunk):
        nonlocal embedder
        if embedder is None:
            embedder = make_embedder(ctx)
            compute.provenance = model_provenance(ctx, embedder)   # weights hashed once, not per item
        rgbs = np.stack([fileio.read_png(ctx.item_file(items[i][0], i, "png")) for i in chunk])
        feats = embedder.embed(rgbs, batch_size=len(chunk)).astype("<f4")
        out = []
        for item_id, f in zip(chunk, feats):
            dep, r = items[item_id]
            record = {"id": item_id, "subject_id": r["subject_id"], "role": "front" if dep == FRONTS else "view",
                      "dim": int(f.shape[0]), "backend": embedder.name, "model": p.model,
                      "offline": p.backend == "offline",
                      "model_provenance": compute.provenance}
            out.append((record, {"f32": f.tobytes()}))
        return out

    done = run_items(ctx, sorted(items), compute, chunk_size=p.batch_size, desc="images")
    if done is None:
        return
    records, cache = done
    ctx.log.info("label_clip: %d features (%s)%s", len(records), records[0]["backend"] if records else "-",
                 "  [OFFLINE: random-init weights, not semantic]" if p.backend == "offline" else "")
    assemble_dir(ctx.output("clip"), records, cache)
