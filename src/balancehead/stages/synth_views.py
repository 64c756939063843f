"""synth_views: m views per selected front from the view prompts of BalanceHead Fig. 7."""
from __future__ import annotations

from ..runner import StageContext, finish, run_items
from .synth_common import SUBJECT_SEED_KEY, chunk_size, make_synthesizer, prompt_for, provenance, synthesize

DEP = "fronts"          # input name: see pipeline.py


def view_prompt_ids(params) -> list[str]:
    ids = list(params.synth_views.prompt_ids)
    if not ids:
        ids = [v.id for v in params.synthesizer.views if v.id != params.synth_front.prompt_id]
    return ids


def main(ctx: StageContext) -> None:
    fronts = {r["subject_id"]: r for r in ctx.read_items(DEP)}
    prompt_ids = view_prompt_ids(ctx.params)
    m = ctx.params.synth_views.views_per_front
    ids = [f"{sid}-v{k:03d}" for sid in sorted(fronts) for k in range(m)]
    synth = None

    def compute(chunk):
        nonlocal synth
        synth = synth or make_synthesizer(ctx.params)
        jobs, records = [], []
        for item_id in chunk:
            subject_id, k = item_id.rsplit("-v", 1)
            front = fronts[subject_id]
            prompt = prompt_for(ctx.params, prompt_ids[int(k) % len(prompt_ids)])
            target = float(ctx.rng(item_id).choice(prompt["nominal_yaw"]))
            subject_seed = int(front["provenance"][SUBJECT_SEED_KEY])
            seed = ctx.seed(item_id, "render") % (2**31)
            jobs.append({"subject_seed": subject_seed, "subject_id": subject_id, "seed": seed,
                         "image_path": ctx.item_file(DEP, front["id"], "png"), "prompt": prompt["prompt"],
                         "target_yaw": target})
            prov = provenance(ctx.params, synth, subject_seed, front["provenance"].get("backend") != "offline-procedural-proxy", seed)
            records.append({"id": item_id, "subject_id": subject_id, "front_id": front["id"], "role": "view",
                            **prompt, "requested_yaw": target, "provenance": prov})
        return list(zip(records, synthesize(ctx.params, synth, jobs)))

    done = run_items(ctx, ids, compute, chunk_size=chunk_size(ctx.params), desc="views")
    finish(ctx, done)
