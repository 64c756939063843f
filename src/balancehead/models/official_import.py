"""Official EG3D / PanoHead / SphereHead network pickle -> this project's checkpoint (safetensors + JSON).

The pickle is read by `official_pickle` (no code in it runs); G_ema, and D where the file has one, are
converted by `convert.generator_from_official` / `convert.discriminator_from_official` and written with
`save_checkpoint`. The checkpoint's meta records where the weights came from (file name, SHA-256, kind,
official class names) and that the generator is camera-conditioned (EG3D's 25-float pose label), so
`sample_prior`, `invert` and `evaluate` draw its labels like those of a view-conditioned run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .checkpoint import CheckpointError, save_checkpoint
from .official_pickle import OfficialNetwork, PersistentObject, load_network_pickle, official_network

KINDS = ("eg3d", "panohead", "spherehead")


class OfficialImportError(CheckpointError):
    """The file is safe to read but is not an official network pickle this project can convert."""


def read_official_networks(path) -> dict[str, OfficialNetwork]:
    """{"G_ema": ..., "D": ... (when present)} of an official network pickle, as plain data."""
    data = load_network_pickle(path)
    if isinstance(data, PersistentObject):        # a bare pickled generator (pickle.dump(G_ema, f))
        data = {"G_ema": data}
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentObject):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise OfficialImportError(f"{path}: no persistent G_ema network (found {keys}); is this an official network pickle?")
    nets = {"G_ema": official_network(data["G_ema"])}
    if isinstance(data.get("D"), PersistentObject):
        nets["D"] = official_network(data["D"])
    return nets


def generator_rendering_kwargs(g: OfficialNetwork) -> dict:
    """The generator's rendering_kwargs plus its `neural_rendering_resolution` attribute (set by the
    official training loop outside the kwargs; the official loaders copy it across the same way)."""
    out = dict(g.rendering_kwargs)
    if "neural_rendering_resolution" in g.attributes:
        out.setdefault("neural_rendering_resolution", int(g.attributes["neural_rendering_resolution"]))
    return out


def import_checkpoint(pkl, kind: str, out) -> Path:
    """Convert `pkl` (an official network pickle of `kind`) into the checkpoint directory `out`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    pkl = Path(pkl)
    nets = read_official_networks(pkl)
    from .convert import discriminator_from_official, generator_from_official

    g = nets["G_ema"]
    modules = {"G_ema": generator_from_official(g.state_dict, g.init_kwargs, generator_rendering_kwargs(g), kind)}
    if "D" in nets:
        modules["D"] = discriminator_from_official(nets["D"].state_dict, nets["D"].init_kwargs, kind)
    digest = hashlib.sha256()
    with pkl.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    meta = {"conditioning": "view", "source": "import",
            "imported_from": {"file": pkl.name, "sha256": digest.hexdigest(), "kind": kind,
                              "classes": {name: net.class_name for name, net in nets.items()}}}
    return save_checkpoint(out, modules, meta)
