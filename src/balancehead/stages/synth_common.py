"""What synth_front and synth_views share: the subject behind a record, the synthesiser, the prompts."""
from __future__ import annotations

import hashlib

from ..params import Params

SUBJECT_SEED_KEY = "subject_seed"


def subject_seed_for_source(record: dict) -> int:
    """The procedural subject seed of a source record.

    Procedural sources carry their subject seed. A real photo has none: the offline synthesiser then
    stands in with a proxy procedural subject seeded by the photo's pixel hash (labelled
    `offline-procedural-proxy` in provenance): it keeps the chain runnable, it is not a re-render
    of that person. Real photos want a production synthesiser backend.
    """
    prov = record.get("provenance", {})
    if SUBJECT_SEED_KEY in prov:
        return int(prov[SUBJECT_SEED_KEY])
    digest = hashlib.sha256(str(record.get("sha256") or record["id"]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_synthesizer(params: Params):
    from ..world.synth import ProceduralSynthesizer, SynthRates

    s = params.synthesizer
    if s.backend != "offline":  # pragma: no cover - schema allows only offline for now
        raise NotImplementedError(f"synthesizer.backend {s.backend}")
    rates = SynthRates(**s.offline.model_dump())
    return ProceduralSynthesizer(rates, size=s.image_size)


def prompt_for(params: Params, prompt_id: str) -> dict:
    """The full positive/negative prompt of one view keyword (seed 000 Fig. 7)."""
    view = next(v for v in params.synthesizer.views if v.id == prompt_id)
    return {
        "prompt_id": view.id,
        "prompt": params.synthesizer.positive_prompt.replace("[view]", view.text),
        "negative_prompt": params.synthesizer.negative_prompt,
        "nominal_yaw": list(view.yaw),
    }


def backend_label(params: Params, real_subject: bool) -> str:
    if params.synthesizer.backend == "offline":
        return "offline-procedural" if real_subject else "offline-procedural-proxy"
    return params.synthesizer.backend
