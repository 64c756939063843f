"""synth_front: n front-view candidates per kept source (seed 000 §3.1: FLUX.1 Kontext with the front
prompt; offline: a procedural re-render of the subject with the paper's failure modes)."""
from __future__ import annotations

import json

from .. import io
from ..runner import StageContext, assemble_dir, run_items
from .synth_common import SUBJECT_SEED_KEY, backend_label, make_synthesizer, prompt_for, subject_seed_for_source

DEP = "data/quality"


def main(ctx: StageContext) -> None:
    from ..world.subject import sample_subject

    n = ctx.params.synth_front.candidates
    sources = {r["id"]: r for r in ctx.read_items(DEP) if r["status"] == "kept"}
    prompt = prompt_for(ctx.params, ctx.params.synth_front.prompt_id)
    synth = make_synthesizer(ctx.params)
    ids = [f"{sid}-f{c}" for sid in sorted(sources) for c in range(n)]

    def compute(chunk):
        out = []
        for item_id in chunk:
            src_id = item_id.rsplit("-f", 1)[0]
            src = sources[src_id]
            subject_seed = subject_seed_for_source(src)
            subject = sample_subject(subject_seed, subject_id=src["subject_id"])
            seed = ctx.seed(item_id) % (2**31)
            result = synth.front(subject, seed)
            record = {"id": item_id, "source_id": src_id, "subject_id": src["subject_id"],
                      "role": "front-candidate", **prompt,
                      "provenance": {"backend": backend_label(ctx.params, SUBJECT_SEED_KEY in src["provenance"]),
                                     SUBJECT_SEED_KEY: subject_seed, "seed": seed}}
            truth = json.dumps(result.truth, sort_keys=True, default=io._json_default).encode()
            out.append((record, {"png": io.png_bytes(result.rgb), "truth.json": truth}))
        return out

    done = run_items(ctx, ids, compute, desc="candidates")
    if done is not None:
        assemble_dir(ctx.out_dir, *done)
