"""label_clip: CLIP image features (BalanceHead A.6.7). The subject's front feature is its condition,
shared by all its views; per-view features are kept for the view-semantic ablation.

Backends: `open_clip` (real weights from a local file) and `offline`. The offline backend with
`offline_semantics: world_attributes` (default) embeds what the offline world rendered — the shown
subject's attributes and the true view, read from the image's provenance and `truth.json` sidecar
(backends.attribute_clip) — so "semantic" means something on the embedded default; an image without
world ground truth (a photo, a FLUX output) gets the seeded random-init ViT-B-32 feature instead, and
every record names its `semantic_source`. `random_init` uses the random-init ViT-B-32 for all images.

Batches are fixed chunks of the global item list, so a feature never depends on sharding."""
from __future__ import annotations

import json
from collections import Counter
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


def make_world_embedder(ctx: StageContext):
    """The world-attribute CLIP stand-in, or None when label_clip does not use it."""
    p = ctx.params.label_clip
    if p.backend != "offline" or p.offline_semantics != "world_attributes":
        return None
    import open_clip

    from ..backends.attribute_clip import AttributeClipEmbedder

    return AttributeClipEmbedder(seed=p.seed, dim=int(open_clip.get_model_config(p.model)["embed_dim"]),
                                 noise=p.attribute_noise, view_weight=p.attribute_view_weight, model_name=p.model)


def _world_view(ctx: StageContext, dep: str, record: dict):
    from ..backends.attribute_clip import world_view_of

    truth = None
    if "truth.json" in record.get("files", {}):
        truth = json.loads(ctx.item_file(dep, record["id"], "truth.json").read_text())
    return world_view_of(record, truth)


def main(ctx: StageContext) -> None:
    p = ctx.params.label_clip
    items = {r["id"]: (FRONTS, r) for r in ctx.read_items(FRONTS)}
    items.update({r["id"]: (VIEWS, r) for r in ctx.read_items(VIEWS) if r["status"] == "kept"})
    world = make_world_embedder(ctx)
    embedder = None
    image_source = "open_clip" if p.backend == "open_clip" else "random-init-clip"

    def compute(chunk):
        nonlocal embedder
        shown = {i: _world_view(ctx, *items[i]) for i in chunk} if world is not None else {}
        feats, names, sources = {}, {}, {}
        for i, view in shown.items():
            if view is not None:
                feats[i], names[i], sources[i] = world.view(*view), world.name, "world-attributes"
        rest = [i for i in chunk if i not in feats]
        if rest:
            if embedder is None:
                embedder = make_embedder(ctx)
                compute.provenance = model_provenance(ctx, embedder)   # weights hashed once, not per item
            rgbs = np.stack([fileio.read_png(ctx.item_file(items[i][0], i, "png")) for i in rest])
            for i, f in zip(rest, embedder.embed(rgbs, batch_size=len(rest))):
                feats[i], names[i], sources[i] = f, embedder.name, image_source
        out = []
        for item_id in chunk:
            dep, r = items[item_id]
            f = np.asarray(feats[item_id], "<f4")
            prov = world.provenance() if sources[item_id] == "world-attributes" else compute.provenance
            record = {"id": item_id, "subject_id": r["subject_id"], "role": "front" if dep == FRONTS else "view",
                      "dim": int(f.shape[0]), "backend": names[item_id], "model": p.model,
                      "offline": p.backend == "offline", "semantic_source": sources[item_id],
                      "model_provenance": prov}
            out.append((record, {"f32": f.tobytes()}))
        return out

    compute.provenance = None
    done = run_items(ctx, sorted(items), compute, chunk_size=p.batch_size, desc="images")
    if done is None:
        return
    records, cache = done
    counts = Counter(r["semantic_source"] for r in records)
    ctx.log.info("label_clip: %d features (%s)%s", len(records),
                 ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "-",
                 "  [OFFLINE: random-init weights, not semantic]" if counts.get("random-init-clip") else "")
    assemble_dir(ctx.output("clip"), records, cache)
