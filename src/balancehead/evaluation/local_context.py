"""A minimal stage context for running the closing stages outside the runner (tests, benchmarks,
notebooks): same `path`, `seed`, `rng`, `log`, `stage.outs` and `params.<section>` surface as
`balancehead.runner.StageContext`, without the full params file."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from balancehead.runner import derive_seed


@dataclass
class LocalContext:
    root: Path
    stage_name: str
    outs: tuple[str, ...]
    sections: dict = field(default_factory=dict)    # e.g. {"sample_prior": SamplePriorParams(...)}
    global_seed: int = 0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("balancehead"))

    def __post_init__(self):
        self.root = Path(self.root)
        from .params import GeneratorParams    # sections with a default, as in a params file that omits them

        defaults = {"seed": self.global_seed, "mlflow": SimpleNamespace(enabled=False), "generator": GeneratorParams()}
        self.params = SimpleNamespace(**{**defaults, **self.sections})
        self.stage = SimpleNamespace(name=self.stage_name, outs=self.outs)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def seed(self, *parts) -> int:
        return derive_seed(self.global_seed, self.stage_name, *parts)

    def rng(self, *parts) -> np.random.Generator:
        return np.random.default_rng(self.seed(*parts))
