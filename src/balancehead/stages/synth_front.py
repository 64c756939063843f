"""synth_front: n front-view candidates per kept source (BalanceHead §3.1: FLUX.1 Kontext with the front
prompt; offline: a procedural re-render of the subject with the paper's failure modes)."""
from __future__ import annotations

from ..runner import StageContext, finish, run_items
from .synth_common import (SUBJECT_SEED_KEY, chunk_size, make_synthesizer, prompt_for, provenance,
                           subject_seed_for_source, synthesize)

DEP = "sources"          # input name: see pipeline.py


def main(ctx: StageContext) -> None:
    n = ctx.params.synth_front.candidates
    sources = {r["id"]: r for r in ctx.read_items(DEP) if r["status"] == "kept"}
    prompt = prompt_for(ctx.params, ctx.params.synth_front.prompt_id)
    ids = [f"{sid}-f{c}" for sid in sorted(sources) for c in range(n)]
    synth = None

    def compute(chunk):
        nonlocal synth
        synth = synth or make_synthesizer(ctx.params)
        jobs, records = [], []
        for item_id in chunk:
            src_id = item_id.rsplit("-f", 1)[0]
            src = sources[src_id]
            subject_seed = subject_seed_for_source(src)
            seed = ctx.seed(item_id) % (2**31)
            jobs.append({"subject_seed": subject_seed, "subject_id": src["subject_id"], "seed": seed,
                         "image_path": ctx.item_file(DEP, src_id, "png"), "prompt": prompt["prompt"],
                         "target_yaw": None})
            records.append({"id": item_id, "source_id": src_id, "subject_id": src["subject_id"],
                            "role": "front-candidate", **prompt,
                            "provenance": provenance(ctx.params, synth, subject_seed,
                                                     SUBJECT_SEED_KEY in src["provenance"], seed)})
        return list(zip(records, synthesize(ctx.params, synth, jobs)))

    done = run_items(ctx, ids, compute, chunk_size=chunk_size(ctx.params), desc="candidates")
    finish(ctx, done)
