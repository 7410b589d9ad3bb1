"""Config dataclasses that round-trip through JSON (a checkpoint's or a manifest's ``config``),
checked field by field before anything is built from them."""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Self

from fbinfer.errors import FbinferError

TYPES = {"int": (int,), "float": (float, int), "str": (str,), "bool": (bool,), "str | None": (str, type(None))}  # by annotation


class DictConfig:
    """Mixin for a frozen dataclass with a ``validate() -> Self`` method."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Any, where: str = "config") -> Self:
        """Names and types checked before the dataclass is made; ``where`` starts each error line."""
        if not isinstance(d, dict):
            raise FbinferError(f"{where}: expected an object of fields, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - set(known)
        if unknown:
            raise FbinferError(f"{where}: unknown field(s) {sorted(unknown)}")
        for name, value in d.items():
            kinds = TYPES[known[name].type]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise FbinferError(f"{where}: field '{name}' is {value!r}, expected {known[name].type}")
        return cls(**d).validate()  # type: ignore[attr-defined]
