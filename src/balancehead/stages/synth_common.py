"""What synth_front and synth_views share: the synthesiser (offline procedural or FLUX.1 Kontext),
the subject behind a record, the prompts, and one batched `synthesize` call for both backends.

The offline synthesiser re-renders a procedural *subject* and returns ground truth (a `truth.json`
sidecar that only metrics and tests read). FLUX.1 Kontext edits the *image* (the source photo for a
front, the selected front for a view) with the Fig. 7 prompt; it has no ground truth."""
from __future__ import annotations

import hashlib
import json

from .. import fileio
from ..params import Params
from ..world.subject import SUBJECT_SEED_KEY


def is_offline(params: Params) -> bool:
    return params.synthesizer.backend == "offline"


def subject_seed_for_source(record: dict) -> int:
    """The procedural subject seed of a source record.

    Procedural sources carry their subject seed. A real photo has none: the offline synthesiser then
    stands in with a proxy procedural subject seeded by the photo's pixel hash (labelled
    `offline-procedural-proxy` in provenance): it keeps the chain runnable, it is not a re-render
    of that person. Real photos want the flux_kontext backend.
    """
    prov = record.get("provenance", {})
    if SUBJECT_SEED_KEY in prov:
        return int(prov[SUBJECT_SEED_KEY])
    digest = hashlib.sha256(str(record.get("sha256") or record["id"]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_synthesizer(params: Params):
    s = params.synthesizer
    if s.backend == "offline":
        from ..world.synth import ProceduralSynthesizer, SynthRates

        return ProceduralSynthesizer(SynthRates(**s.offline.model_dump()), size=s.image_size)
    from ..backends.production.flux_kontext import FluxKontextSynthesizer

    front_text = next(v.text for v in s.views if v.id == params.synth_front.prompt_id)
    return FluxKontextSynthesizer(s.flux_kontext, s.positive_prompt, s.negative_prompt, front_view_text=front_text)


def chunk_size(params: Params) -> int:
    """Items per compute call: FLUX batches; the procedural renderer goes one by one."""
    return 1 if is_offline(params) else params.synthesizer.flux_kontext.batch_size


def prompt_for(params: Params, prompt_id: str) -> dict:
    """The full positive/negative prompt of one view keyword (BalanceHead Fig. 7)."""
    view = next(v for v in params.synthesizer.views if v.id == prompt_id)
    return {
        "prompt_id": view.id,
        "prompt": params.synthesizer.positive_prompt.replace("[view]", view.text),
        "negative_prompt": params.synthesizer.negative_prompt,
        "nominal_yaw": list(view.yaw),
    }


def provenance(params: Params, synth, subject_seed: int, real_subject: bool, seed: int) -> dict:
    if is_offline(params):
        return {"backend": "offline-procedural" if real_subject else "offline-procedural-proxy",
                SUBJECT_SEED_KEY: subject_seed, "seed": seed}
    return {**synth.provenance(), SUBJECT_SEED_KEY: subject_seed, "seed": seed}


def synthesize(params: Params, synth, jobs: list[dict]) -> list[dict[str, bytes]]:
    """Run a chunk of jobs, each {subject_seed, subject_id, image_path, prompt, target_yaw, seed};
    returns each job's files ({"png"} plus "truth.json" for the offline backend)."""
    if is_offline(params):
        from ..world.subject import sample_subject

        out = []
        for j in jobs:
            subject = sample_subject(j["subject_seed"], subject_id=j["subject_id"])
            res = synth.front(subject, j["seed"]) if j["target_yaw"] is None else synth.view(subject, j["target_yaw"], j["seed"])
            truth = json.dumps(res.truth, sort_keys=True, default=fileio._json_default).encode()
            out.append({"png": fileio.png_bytes(res.rgb), "truth.json": truth})
        return out
    images = [fileio.read_png(j["image_path"]) for j in jobs]
    rgbs = synth.edit(images, [j["prompt"] for j in jobs], [j["seed"] for j in jobs],
                      negative_prompts=[params.synthesizer.negative_prompt] * len(jobs))
    return [{"png": fileio.png_bytes(rgb)} for rgb in rgbs]
