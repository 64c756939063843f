"""The procedural 360-degree head world: subjects, renderer, wild sources, offline synthesiser."""
from balancehead.world.render import RenderResult, build_scene, render, render_label
from balancehead.world.subject import (HAIR_COLOURS, HAIR_STYLES, SKIN_TONES, Subject, perturb_identity,
                                       sample_subject)
from balancehead.world.synth import ProceduralSynthesizer, SynthRates, SynthResult
from balancehead.world.wild import WildRates, make_wild_source

__all__ = [
    "HAIR_COLOURS", "HAIR_STYLES", "SKIN_TONES", "Subject", "sample_subject", "perturb_identity",
    "RenderResult", "build_scene", "render", "render_label",
    "ProceduralSynthesizer", "SynthRates", "SynthResult", "WildRates", "make_wild_source",
]
