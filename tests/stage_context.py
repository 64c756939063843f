"""The real `StageContext` of one stage for tests that call a stage's `main(ctx)` directly: the
repository's params.yaml with some sections replaced, and the stage's declarations from pipeline.py."""
from __future__ import annotations

from pathlib import Path

from balancehead.params import load_params
from balancehead.pipeline import stage
from balancehead.runner import StageContext

REPO = Path(__file__).resolve().parent.parent


def stage_context(root, name: str, sections: dict | None = None, seed: int = 0) -> StageContext:
    params = load_params(REPO / "params.yaml")
    mlflow = params.mlflow.model_copy(update={"enabled": False})
    params = params.model_copy(update={**(sections or {}), "seed": seed, "mlflow": mlflow})
    return StageContext(all_params=params, stage=stage(name), root=Path(root))
