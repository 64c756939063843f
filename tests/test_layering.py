"""The package layering reads one way (read with `ast`, never by importing): workflow (cli, runner,
stages) on top, then train/evaluation, then models/data/backends/world, then the leaves (ops, camera,
file io, hashing, params schemas, the stage list); no import points up."""
from __future__ import annotations

from balancehead import pipeline

LAYERS = {                     # top-level name under balancehead -> layer (higher = closer to the user)
    "__main__": 3, "cli": 3, "runner": 3, "stages": 3, "sweep": 3,
    "train": 2, "evaluation": 2,
    "models": 1, "data": 1, "backends": 1, "world": 1, "recon": 1,
}
# Known exceptions, each with its reason (keep this list short and shrinking).
ALLOWED = {
    # params validation checks the offline judge's threshold names against JudgeConfig before any work
    ("balancehead.params", "balancehead.backends.judge"),
}


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[-1] in ("params", "params_base"):       # config schemas are leaves, whatever their package
        return 0
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_no_import_points_up():
    upward = []
    for rel in pipeline.source_files():
        if not rel.endswith(".py"):
            continue
        mod = pipeline._module_of(pipeline.ROOT / rel)
        for imported in pipeline._imports(mod):
            if layer(imported) > layer(mod) and (mod, imported) not in ALLOWED:
                upward.append(f"{mod} -> {imported}")
    assert not upward, "imports pointing up the layering:\n" + "\n".join(upward)


def test_the_layer_map_is_not_vacuous():
    """The rule is checked on real imports: each layer imports the one below somewhere."""
    pairs = {(layer(m), layer(i)) for rel in pipeline.source_files() if rel.endswith(".py")
             for m in [pipeline._module_of(pipeline.ROOT / rel)] for i in pipeline._imports(m)}
    assert {(3, 2), (2, 1), (1, 0), (3, 0)} <= pairs
    assert layer("balancehead.stages.train") == 3 and layer("balancehead.train.loop") == 2
    assert layer("balancehead.ops.upfirdn2d") == 0 and layer("balancehead.train.params") == 0
