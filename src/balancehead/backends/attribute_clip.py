"""The offline semantic embedder: a stand-in for CLIP that knows what the embedded world rendered.

A random-init CLIP (`clip_embed.OfflineClipEmbedder`) gives features without meaning, so on the
embedded default BalanceHead's "semantic" condition would be a label of nothing. Every image of the
offline world, though, is a render of a procedural `Subject` whose attributes are known (hair style and
colour, skin tone, iris, glasses, hat, earrings, clothing colour, head and face proportions). This
embedder turns them into a CLIP-sized feature:

    semantic(subject)  = normalise(W_attr @ a(subject) + noise * n(subject))
    view(subject, yaw, pitch) = normalise(W_attr @ (vis(yaw) * a(subject)) + noise * n(subject)
                                          + view_weight * W_view @ v(yaw, pitch))

* `a(subject)`: the attribute vector — one-hots of the categorical attributes, their RGB colours and the
  proportions (each scaled to unit spread), grouped in blocks of comparable weight (`attribute_vector`);
* `W_attr`, `W_view`: fixed Gaussian projections (seeded by `label_clip.seed`), so distances between
  attribute vectors are kept (Johnson-Lindenstrauss): similar subjects get nearby features;
* `n(subject)`: a small view-independent Gaussian term seeded by the subject's seed (what CLIP sees
  beyond the listed attributes);
* `v(yaw, pitch)`: Fourier features of the view that vanish at the canonical front (yaw = pitch = 0),
  and `vis(yaw)` dims the face block (eyes, glasses, nose, mouth) as the face turns away.

So `semantic` is view-invariant by construction (one feature per subject, whatever the view), and the
per-view feature carries the attributes *and* the view, as a real CLIP image feature does, with
`view(subject, 0, 0) == semantic(subject)`. It is a model of CLIP's behaviour, not CLIP: features from it
are not comparable to real CLIP features, and images without world ground truth (photos, FLUX outputs)
cannot go through it (label_clip falls back to the random-init CLIP for those and labels each row).
"""
from __future__ import annotations

import hashlib

import numpy as np

from balancehead.world.subject import (ACCESSORY_COLOURS, CLOTHING_COLOURS, HAIR_COLOURS, HAIR_STYLES,
                                       IRIS_COLOURS, METAL_COLOURS, SKIN_TONES, Subject)

SCALES = ("head_width", "head_height", "head_depth", "jaw_width", "chin_length", "hair_volume", "ear_size")
FACE_SCALES = ("eye_size", "eye_spacing", "nose_length", "nose_width", "mouth_width", "brow_thickness")
VIEW_FEATURES = 8
# per-block factors that bring the typical distance between two subjects in each block to about 1
# (measured over 500 sampled subjects), so that no block dominates the projection
BLOCK_SCALE = {"hair": 0.5, "skin": 0.7, "clothing": 0.6, "accessories": 1.0, "face": 0.45, "shape": 0.5}


def _onehot(value, options) -> np.ndarray:
    v = np.zeros(len(options))
    v[list(options).index(value)] = 1.0
    return v


def _rgb(colour) -> np.ndarray:
    return (np.asarray(colour, np.float64) - 128.0) / 128.0


def attribute_blocks(subject: Subject) -> dict[str, np.ndarray]:
    """The subject's attributes in named blocks, each of norm about 1 (so no block dominates)."""
    hair = np.concatenate([_onehot(subject.hair_style, HAIR_STYLES), _onehot(subject.hair_colour, list(HAIR_COLOURS)),
                           _rgb(subject.hair_rgb)])
    skin = np.concatenate([_onehot(subject.skin_tone, list(SKIN_TONES)), _rgb(subject.skin_rgb)])
    clothing = np.concatenate([_onehot(tuple(subject.clothing_colour), CLOTHING_COLOURS),
                               _rgb(subject.clothing_colour)])
    hat_colours = ACCESSORY_COLOURS + CLOTHING_COLOURS[:6]
    accessories = np.concatenate([
        [float(subject.hat)], float(subject.hat) * _onehot(tuple(subject.hat_colour), hat_colours),
        [float(subject.earrings)], float(subject.earrings) * _onehot(tuple(subject.earring_colour), METAL_COLOURS)])
    face = np.concatenate([
        _onehot(subject.iris_colour, list(IRIS_COLOURS)), [float(subject.glasses)],
        float(subject.glasses) * _onehot(tuple(subject.glasses_colour), ACCESSORY_COLOURS),
        [(subject.lip_redness - 0.55) / 0.35], [(getattr(subject, k) - 1.0) / 0.2 for k in FACE_SCALES]])
    shape = np.array([(getattr(subject, k) - 1.0) / 0.1 for k in SCALES])
    blocks = {"hair": hair, "skin": skin, "clothing": clothing, "accessories": accessories, "face": face,
              "shape": shape}
    return {k: v * BLOCK_SCALE[k] for k, v in blocks.items()}


def attribute_vector(subject: Subject, face_visibility: float = 1.0) -> np.ndarray:
    blocks = attribute_blocks(subject)
    blocks["face"] = blocks["face"] * face_visibility
    return np.concatenate([blocks[k] for k in sorted(blocks)])


def view_features(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Fourier features of the view, zero at the canonical front (yaw = pitch = 0)."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    return np.array([np.sin(y), 1.0 - np.cos(y), np.sin(2 * y), 1.0 - np.cos(2 * y),
                     np.sin(3 * y), 1.0 - np.cos(3 * y), np.sin(p) * 2.0, (1.0 - np.cos(p)) * 2.0])


def face_visibility(yaw_deg: float) -> float:
    """1 at the front, 0 from profile to back (the face block fades as the face turns away)."""
    return float(max(np.cos(np.radians(yaw_deg)), 0.0))


class AttributeClipEmbedder:
    """Deterministic CLIP stand-in over world attributes (see the module docstring)."""

    def __init__(self, seed: int = 0, dim: int = 512, noise: float = 0.15, view_weight: float = 0.5,
                 model_name: str = "ViT-B-32"):
        self.seed, self.dim, self.noise, self.view_weight = int(seed), int(dim), float(noise), float(view_weight)
        self.model_name = model_name
        self.name = f"offline-world-attributes-{model_name}"
        rng = np.random.default_rng([self.seed, 0xA77B])
        n_attr = len(attribute_vector(Subject(subject_id="probe", seed=0)))
        self.w_attr = rng.standard_normal((self.dim, n_attr)) / np.sqrt(self.dim)
        self.w_view = rng.standard_normal((self.dim, VIEW_FEATURES)) / np.sqrt(self.dim)

    def _subject_noise(self, subject: Subject) -> np.ndarray:
        words = np.frombuffer(hashlib.sha256(f"{self.seed}:{subject.seed}".encode()).digest()[:16], dtype="<u4")
        return np.random.default_rng(words).standard_normal(self.dim) / np.sqrt(self.dim)

    def _unnormalised(self, subject: Subject, visibility: float) -> np.ndarray:
        return self.w_attr @ attribute_vector(subject, visibility) + self.noise * self._subject_noise(subject)

    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        return (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32)

    def semantic(self, subject: Subject) -> np.ndarray:
        """The view-invariant feature of a subject (float32, unit norm)."""
        return self._unit(self._unnormalised(subject, 1.0))

    def view(self, subject: Subject, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
        """The feature of one image of `subject` seen from (yaw, pitch): attributes + view (float32, unit)."""
        v = self._unnormalised(subject, face_visibility(yaw_deg))
        v = v + self.view_weight * (self.w_view @ view_features(yaw_deg, pitch_deg))
        return self._unit(v)

    def provenance(self) -> dict:
        return {"backend": self.name, "model_id": self.model_name, "weights": None, "seed": self.seed,
                "noise": self.noise, "view_weight": self.view_weight}


def world_view_of(record: dict, truth: dict | None) -> tuple[Subject, float, float] | None:
    """(subject shown, yaw, pitch) of an image rendered by the offline world, from its record (the
    subject seed in its provenance) and its `truth.json` sidecar (true view, identity drift); None
    for an image without world ground truth (a photo, a FLUX output)."""
    from balancehead.world.subject import SUBJECT_SEED_KEY, sample_subject

    seed = (record.get("provenance") or {}).get(SUBJECT_SEED_KEY)
    if truth is None or seed is None or "true_yaw" not in truth:
        return None
    if truth.get("shown_subject"):
        subject = Subject.from_dict(truth["shown_subject"])
    else:
        subject = sample_subject(int(seed), subject_id=record.get("subject_id"))
    return subject, float(truth["true_yaw"]), float(truth.get("true_pitch", 0.0))
