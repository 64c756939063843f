"""Procedural subjects: the identity of one synthetic person, sampled deterministically per seed.

A `Subject` is a small frozen record of shape, colour and accessory parameters. The renderer turns it
into a 3D scene; the synthesiser perturbs it for the "identity drift" failure mode. Everything here is
JSON-able so that manifests and sidecars can carry the exact identity that produced an image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

# The provenance key under which a record carries the seed of its procedural subject.
SUBJECT_SEED_KEY = "subject_seed"

HAIR_STYLES = ("bald", "short", "bob", "long", "ponytail", "afro", "braids")
# Sampling weights for the styles above (bald and afro rarer, as in portrait collections).
HAIR_STYLE_WEIGHTS = (0.08, 0.22, 0.16, 0.18, 0.13, 0.10, 0.13)

HAIR_COLOURS = {
    "black": (28, 24, 22),
    "dark_brown": (62, 40, 28),
    "brown": (110, 72, 42),
    "auburn": (140, 58, 30),
    "blonde": (214, 180, 112),
    "red": (178, 70, 38),
    "grey": (150, 148, 146),
    "white": (226, 224, 218),
    "blue": (48, 84, 170),
    "pink": (222, 120, 168),
}
HAIR_COLOUR_WEIGHTS = (0.22, 0.2, 0.15, 0.08, 0.12, 0.06, 0.07, 0.04, 0.03, 0.03)

SKIN_TONES = {
    "porcelain": (245, 215, 195),
    "light": (232, 190, 160),
    "medium": (205, 155, 118),
    "olive": (180, 130, 90),
    "brown": (135, 88, 58),
    "dark": (88, 56, 38),
}

IRIS_COLOURS = {
    "brown": (92, 56, 30),
    "dark": (40, 26, 18),
    "blue": (70, 120, 180),
    "green": (70, 120, 70),
    "hazel": (130, 100, 50),
    "grey": (120, 130, 140),
}

CLOTHING_COLOURS = (
    (30, 60, 140), (180, 30, 40), (40, 120, 60), (240, 200, 60), (90, 90, 96), (20, 20, 24),
    (230, 230, 225), (120, 60, 140), (230, 120, 40), (60, 170, 180), (150, 110, 80), (200, 90, 140),
)
ACCESSORY_COLOURS = ((20, 20, 20), (120, 70, 30), (160, 160, 170), (150, 30, 40), (30, 50, 120))
METAL_COLOURS = ((212, 175, 55), (200, 200, 210))


@dataclass(frozen=True)
class Subject:
    """One synthetic identity. Scalars near 1.0 are relative scales of a canonical head."""

    subject_id: str
    seed: int
    # Head shape.
    head_width: float = 1.0
    head_height: float = 1.0
    head_depth: float = 1.0
    jaw_width: float = 1.0
    chin_length: float = 1.0
    # Skin.
    skin_tone: str = "light"
    # Face parts.
    eye_size: float = 1.0
    eye_spacing: float = 1.0
    iris_colour: str = "brown"
    nose_length: float = 1.0
    nose_width: float = 1.0
    mouth_width: float = 1.0
    lip_redness: float = 0.5
    ear_size: float = 1.0
    brow_thickness: float = 1.0
    # Hair.
    hair_style: str = "short"
    hair_colour: str = "brown"
    hair_volume: float = 1.0
    # Accessories and clothing.
    glasses: bool = False
    glasses_colour: tuple = (20, 20, 20)
    hat: bool = False
    hat_colour: tuple = (150, 30, 40)
    earrings: bool = False
    earring_colour: tuple = (212, 175, 55)
    clothing_colour: tuple = (30, 60, 140)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Subject":
        kwargs = {}
        for f in fields(cls):
            if f.name in d:
                v = d[f.name]
                kwargs[f.name] = tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else v
        return cls(**kwargs)

    @property
    def skin_rgb(self) -> tuple:
        return SKIN_TONES[self.skin_tone]

    @property
    def hair_rgb(self) -> tuple:
        return HAIR_COLOURS[self.hair_colour]

    @property
    def iris_rgb(self) -> tuple:
        return IRIS_COLOURS[self.iris_colour]


def _choice(rng: np.random.Generator, options, weights=None):
    options = list(options)
    p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    return options[int(rng.choice(len(options), p=p))]


def _scale(rng: np.random.Generator, spread: float) -> float:
    return float(np.round(1.0 + rng.uniform(-spread, spread), 4))


def sample_subject(seed: int, subject_id: str | None = None) -> Subject:
    """A diverse, deterministic identity for `seed` (same seed -> same subject, on any machine)."""
    rng = np.random.default_rng([int(seed), 0x5EAD])
    style = _choice(rng, HAIR_STYLES, HAIR_STYLE_WEIGHTS)
    skin = _choice(rng, SKIN_TONES.keys())
    hair_colour = _choice(rng, HAIR_COLOURS.keys(), HAIR_COLOUR_WEIGHTS)
    iris = _choice(rng, IRIS_COLOURS.keys())
    glasses = bool(rng.random() < 0.25)
    hat = bool(rng.random() < 0.12) and style not in ("afro", "ponytail")
    earrings = bool(rng.random() < 0.3)
    return Subject(
        subject_id=subject_id if subject_id is not None else f"proc{int(seed):08d}",
        seed=int(seed),
        head_width=_scale(rng, 0.08),
        head_height=_scale(rng, 0.06),
        head_depth=_scale(rng, 0.06),
        jaw_width=_scale(rng, 0.1),
        chin_length=_scale(rng, 0.1),
        skin_tone=skin,
        eye_size=_scale(rng, 0.15),
        eye_spacing=_scale(rng, 0.08),
        iris_colour=iris,
        nose_length=_scale(rng, 0.15),
        nose_width=_scale(rng, 0.2),
        mouth_width=_scale(rng, 0.15),
        lip_redness=float(np.round(rng.uniform(0.2, 0.9), 4)),
        ear_size=_scale(rng, 0.15),
        brow_thickness=_scale(rng, 0.3),
        hair_style=style,
        hair_colour=hair_colour,
        hair_volume=_scale(rng, 0.1),
        glasses=glasses,
        glasses_colour=tuple(_choice(rng, ACCESSORY_COLOURS)),
        hat=hat,
        hat_colour=tuple(_choice(rng, ACCESSORY_COLOURS + CLOTHING_COLOURS[:6])),
        earrings=earrings,
        earring_colour=tuple(_choice(rng, METAL_COLOURS)),
        clothing_colour=tuple(_choice(rng, CLOTHING_COLOURS)),
    )


IDENTITY_ATTRIBUTES = ("hair_colour", "hair_style", "glasses", "skin_tone", "clothing_colour")


def perturb_identity(subject: Subject, rng: np.random.Generator, n_changes: int = 2) -> Subject:
    """Change `n_changes` identity-visible attributes to a different value (the "identity drift" mode).

    The subject_id and seed stay the same: the drifted image still claims to show this subject, which is
    exactly what a same-person filter has to catch.
    """
    names = [IDENTITY_ATTRIBUTES[i] for i in rng.permutation(len(IDENTITY_ATTRIBUTES))[:n_changes]]
    changes = {}
    for name in names:
        if name == "glasses":
            changes["glasses"] = not subject.glasses
            continue
        current = getattr(subject, name)
        pool = {
            "hair_colour": list(HAIR_COLOURS),
            "hair_style": list(HAIR_STYLES),
            "skin_tone": list(SKIN_TONES),
            "clothing_colour": list(CLOTHING_COLOURS),
        }[name]
        if name == "skin_tone":
            # Jump at least two steps so that the change is visible, not a lighting nuance.
            i = pool.index(current)
            pool = [t for j, t in enumerate(pool) if abs(j - i) >= 2]
        else:
            pool = [v for v in pool if v != current]
        changes[name] = pool[int(rng.integers(len(pool)))]
    if changes.get("hair_style") == "afro" or subject.hair_style == "afro":
        changes["hat"] = False
    return replace(subject, **changes)
