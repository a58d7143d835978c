"""The grouped settings of a model's constructor (``Coupling``, ``Network``, ``Residual``): one way
to read them from a kind, a dict of fields or the spec itself, and one way to write them back to a
config (the kind alone when every setting is its default)."""
from __future__ import annotations

import dataclasses
from typing import Union


def spec_of(cls, value, name: str, expected: str):
    """A ``cls`` spec from itself, its kind (a str) or a dict of its fields; anything else, or an
    unknown field, is a ValueError naming ``name`` (``expected``: what the error says it takes)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls(kind=value)
    if isinstance(value, dict):
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(f"{name}: unknown setting(s) {unknown}; a {name} has {', '.join(fields[:-1])} and "
                             f"{fields[-1]}")
        return cls(**value)
    raise ValueError(f"{name} must be {expected}, got {value!r}")


def spec_config(spec, defaults: dict) -> Union[str, dict]:
    """The kind alone when every setting in ``defaults`` has its default value, else a dict of the
    kind and the settings that differ (what ``spec_of`` reads back)."""
    changed = {k: getattr(spec, k) for k, d in defaults.items() if getattr(spec, k) != d}
    return {"kind": spec.kind, **changed} if changed else spec.kind
