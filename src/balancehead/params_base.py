"""Base class of every params.yaml section: unknown keys are refused, values are frozen, numbers are
finite and integers are written as integers.

Section models live next to the code they configure (e.g. `balancehead.train.params`) and are
assembled into the whole file's schema by `balancehead.params.Params`.

Numbers are checked strictly on every section (one validator here, so no section can forget it):
a float key refuses NaN/inf, booleans and strings ("1.5"; only `1e-3`, which PyYAML reads as a string,
is taken as the number it means); an integer key refuses `16.0`, `"16"` and
`true` — pydantic's lax mode would silently coerce all of these. Lists, tuples and dicts of numbers
are checked element by element. A NaN that got through here would travel into camera labels and
hang a matrix square root much later (issue 14)."""
from __future__ import annotations

import math
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name)
        if field is not None:
            check_numbers(value, field.annotation)
        return value


def check_numbers(value: Any, ann: Any, where: str = "") -> None:
    """Raise ValueError when `value` is not a strict, finite instance of the numbers in `ann`."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return check_numbers(value, args[0], where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return check_numbers(value, arm, where)
            except ValueError as e:
                errors.append(e)
        if errors:
            raise errors[0]
        return
    if ann is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}must be a whole number written without quotes or decimal point"
                             + (f" (got {_show(value)})" if where else ""))
        return
    if ann is float:
        if isinstance(value, str) and _YAML11_EXPONENT.match(value):
            value = float(value)                 # PyYAML reads `1e-3` (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}must be a number written without quotes"
                             + (f" (got {_show(value)})" if where else ""))
        try:
            finite = math.isfinite(value)
        except OverflowError:                    # an integer too large for a float
            finite = False
        if not finite:
            raise ValueError(f"{where}must be a finite number" + (f" (got {value})" if where else ""))
        return
    if origin in (list, tuple, set, frozenset) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            arms = list(args) + [None] * max(0, len(value) - len(args))
        else:
            arms = [args[0] if args else Any] * len(value)
        for i, (v, a) in enumerate(zip(value, arms)):
            if a is not None:
                check_numbers(v, a, f"{where}[{i}] ")
        return
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        for k, v in value.items():
            check_numbers(v, args[1], f"{where}[{k!r}] ")


_YAML11_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
