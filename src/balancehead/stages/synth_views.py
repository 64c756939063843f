"""synth_views: m views per selected front from the view prompts of seed 000 Fig. 7."""
from __future__ import annotations

import json

from .. import io
from ..runner import StageContext, assemble_dir, run_items
from .synth_common import SUBJECT_SEED_KEY, make_synthesizer, prompt_for

DEP = "data/fronts"


def view_prompt_ids(params) -> list[str]:
    ids = list(params.synth_views.prompt_ids)
    if not ids:
        ids = [v.id for v in params.synthesizer.views if v.id != params.synth_front.prompt_id]
    return ids


def main(ctx: StageContext) -> None:
    from ..world.subject import sample_subject

    fronts = {r["subject_id"]: r for r in ctx.read_items(DEP)}
    prompt_ids = view_prompt_ids(ctx.params)
    m = ctx.params.synth_views.views_per_front
    synth = make_synthesizer(ctx.params)
    ids = [f"{sid}-v{k:03d}" for sid in sorted(fronts) for k in range(m)]

    def compute(chunk):
        out = []
        for item_id in chunk:
            subject_id, k = item_id.rsplit("-v", 1)
            front = fronts[subject_id]
            prompt = prompt_for(ctx.params, prompt_ids[int(k) % len(prompt_ids)])
            rng = ctx.rng(item_id)
            target = float(rng.choice(prompt["nominal_yaw"]))
            subject_seed = int(front["provenance"][SUBJECT_SEED_KEY])
            subject = sample_subject(subject_seed, subject_id=subject_id)
            seed = ctx.seed(item_id, "render") % (2**31)
            result = synth.view(subject, target, seed)
            record = {"id": item_id, "subject_id": subject_id, "front_id": front["id"], "role": "view",
                      **prompt, "requested_yaw": target,
                      "provenance": {"backend": front["provenance"]["backend"], SUBJECT_SEED_KEY: subject_seed,
                                     "seed": seed}}
            truth = json.dumps(result.truth, sort_keys=True, default=io._json_default).encode()
            out.append((record, {"png": io.png_bytes(result.rgb), "truth.json": truth}))
        return out

    done = run_items(ctx, ids, compute, desc="views")
    if done is not None:
        assemble_dir(ctx.out_dir, *done)
