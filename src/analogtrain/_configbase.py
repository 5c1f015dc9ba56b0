"""Typed, validated, serialisable configuration objects.

Each physical parameter is a field of a frozen dataclass declared with :func:`param`,
which records its unit, its documentation and its allowed range.  Instances validate
themselves on construction and raise :class:`~analogtrain.errors.ConfigError` with one
line naming the field, the bad value and what is allowed.  ``to_dict``/``from_dict`` give
a JSON/TOML round trip; unknown keys are rejected with a did-you-mean suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, ClassVar, Self

from .errors import ConfigError

_MISSING = dataclasses.MISSING


def param(
    default: Any = _MISSING,
    *,
    unit: str = "",
    doc: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
    source: str = "",
    default_factory: Any = _MISSING,
) -> Any:
    """Declare a config field with its unit, docs, allowed range and source tag.

    ``source`` is one of ``"paper"``, ``"group"``, ``"assumed"`` (see docs/physics.md) or free text.
    """
    meta = {
        "unit": unit,
        "doc": doc,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "choices": choices,
        "source": source,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _r(value: Any, limit: int = 200) -> str:
    """repr for error messages: bounded length, and never fails (ints over 4300 digits do)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


class ConfigBase:
    """Mixin for frozen dataclass configs: validation, dict round trip, replace."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            tp = hints[f.name]
            value = self._coerce(f.name, value, tp)
            object.__setattr__(self, f.name, value)
            self._check_range(f, value)
        self.validate()

    # -- hooks -----------------------------------------------------------------------
    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise ConfigError."""

    # -- helpers ---------------------------------------------------------------------
    def _where(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name

    def _coerce(self, name: str, value: Any, tp: Any) -> Any:
        where = self._where(name)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, ConfigBase):
            if isinstance(value, tp):
                return value
            if isinstance(value, dict):
                return tp.from_dict(value)
            raise ConfigError(f"{where} must be a table of {tp.__name__} settings, got {_r(value)}")
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self._coerce(name, value, inner[0])
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where} must be a list, got {_r(value)}")
            (elem,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
            return tuple(self._coerce(name, v, elem) for v in value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise ConfigError(f"{where} must be true or false, got {_r(value)}")
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    return int(value)
                raise ConfigError(f"{where} must be an integer, got {_r(value)}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where} must be a number, got {_r(value)}")
            try:
                value = float(value)
            except OverflowError:  # an int beyond the float range
                raise ConfigError(f"{where} must be a finite number, got an integer of {value.bit_length()} bits") from None
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, got {_r(value)}")
            return value
        if tp is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {_r(value)}")
            return value
        return value

    def _check_range(self, f: dataclasses.Field, value: Any) -> None:
        m = f.metadata
        where = self._where(f.name)
        unit = f" {m['unit']}" if m.get("unit") else ""
        choices = m.get("choices")
        if callable(choices):  # a registry that can grow (e.g. the cell kinds)
            choices = choices()
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where} must be one of {', '.join(map(repr, choices))}, got {_r(value)}{hint}"
            )
        vals = value if isinstance(value, tuple) else (value,)
        for v in vals:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if m.get("ge") is not None and not v >= m["ge"]:
                raise ConfigError(f"{where} must be >= {m['ge']}{unit}, got {_r(v)}")
            if m.get("gt") is not None and not v > m["gt"]:
                raise ConfigError(f"{where} must be > {m['gt']}{unit}, got {_r(v)}")
            if m.get("le") is not None and not v <= m["le"]:
                raise ConfigError(f"{where} must be <= {m['le']}{unit}, got {_r(v)}")
            if m.get("lt") is not None and not v < m["lt"]:
                raise ConfigError(f"{where} must be < {m['lt']}{unit}, got {_r(v)}")

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, ConfigBase):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.section or cls.__name__} must be a table, got {_r(data)}")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        for key in data:
            if not isinstance(key, str):
                where = cls.section or "the config"
                raise ConfigError(f"{where} has a key that is not a string: {_r(key)}")
            if key not in names:
                close = suggest_key(key, cls)
                hint = f"; did you mean {close!r}?" if close else f"; known keys: {', '.join(names)}"
                where = f"{cls.section}.{key}" if cls.section else key
                raise ConfigError(f"unknown config key {where!r}{hint}")
        return cls(**data)  # type: ignore[call-arg]

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(name, unit, source, doc) for each field, for docs and ``--help``."""
        return [
            (f.name, f.metadata.get("unit", ""), f.metadata.get("source", ""), f.metadata.get("doc", ""))
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        ]


#: what people write for a field's words: tau for a time constant, lr for the learning rate, ...
_SYNONYMS = {"tau": "time_constant", "lr": "learning_rate", "eta": "learning_rate", "f": "gain_f",
             "len": "length", "num": "", "n": "", "width": "width_ns", "v": "v", "us": "us"}


def _words(name: str) -> list[str]:
    out: list[str] = []
    for w in name.lower().replace("-", "_").split("_"):
        out += [x for x in _SYNONYMS.get(w, w).split("_") if x]
    return out


def _closeness(typed: str, field: str) -> float:
    a, b = _words(typed), _words(field)
    if not a or not b:
        return 0.0
    shared = sum(1.0 if w in b else max((difflib.SequenceMatcher(None, w, x).ratio() for x in b), default=0) > 0.8
                 for w in a)
    return shared / len(a) + 0.3 * difflib.SequenceMatcher(None, "_".join(a), "_".join(b)).ratio()


def _leaves(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = typing.get_type_hints(cls).get(f.name)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += _leaves(tp, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def suggest_key(typed: str, cls: type) -> str | None:
    """The field of ``cls`` (searched through its nested sections, dotted) a mistyped ``typed``
    most likely means: word by word, with synonyms (``leak_tau`` -> ``leak_time_constant_s``)."""
    direct = difflib.get_close_matches(typed, [f.name for f in dataclasses.fields(cls)], n=1, cutoff=0.8)
    if direct:  # a typo of this section's own key (a field or a sub-section)
        return direct[0]
    best, score = None, 0.0
    for leaf in _leaves(cls):
        sc = _closeness(typed.split(".")[-1], leaf.split(".")[-1])
        if sc > score:
            best, score = leaf, sc
    return best if score >= 0.8 else None


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first dotted key path where two nested dicts of plain values differ (a key on one
    side only counts as a difference), ``path`` itself ('' at the top) when two values differ,
    or None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return sub
            d = first_difference(a[k], b[k], sub)
            if d is not None:
                return d
        return None
    return None if a == b else path
