"""Base class of every params.yaml section: unknown keys are refused, values are frozen.

Section models live next to the code they configure (e.g. `balancehead.train.params`) and are
assembled into the whole file's schema by `balancehead.params.Params`."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
