"""Input checks shared by the diagnostics: every problem is a ``ValueError`` that names the
argument and the shape it should have, raised before any computation."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def float_array(value, name: str, ndim: int, expected: str) -> np.ndarray:
    """``value`` as a finite float64 array of rank ``ndim``; ``expected`` describes the shape
    (e.g. ``"[n_sims, n_draws, D]"``) for the error messages."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array of shape {expected}: {error}") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must have shape {expected}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty (shape {expected}), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"{name} (shape {expected}) contains {bad} NaN/inf value(s)")
    return array


def same(actual: int, wanted: int, name: str, axis: str, expected: str, other: str) -> None:
    """Raises unless a dimension of ``name`` matches the one of ``other``."""
    if actual != wanted:
        raise ValueError(f"{name} must have shape {expected}: its {axis} is {actual}, but {other} has {wanted}")


def positive_int(value, name: str, minimum: int = 1) -> int:
    """An int >= ``minimum`` (bools rejected: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def probability(value, name: str) -> float:
    """A float strictly inside (0, 1)."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}") from None
    if not 0.0 < p < 1.0:
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    return p


def levels_array(levels, name: str = "levels") -> np.ndarray:
    """Credible levels: a non-empty 1-D array of floats in (0, 1)."""
    array = float_array(levels, name, 1, "[L] with values in (0, 1)")
    if np.any(array <= 0.0) or np.any(array >= 1.0):
        raise ValueError(f"{name} must have shape [L] with values in (0, 1), got {array.tolist()}")
    return array


def ranks_array(ranks, n_draws: int, name: str = "ranks") -> np.ndarray:
    """SBC ranks ``[n_sims, D]``: integers in 0..n_draws, at least 2 simulations."""
    expected = f"[n_sims, D] with integer values in 0..n_draws={n_draws}"
    array = float_array(ranks, name, 2, expected)
    if array.shape[0] < 2:
        raise ValueError(f"{name} must have shape {expected} with n_sims >= 2, got shape {array.shape}")
    if np.any(array != np.round(array)):
        raise ValueError(f"{name} must have shape {expected}: found non-integer values")
    if np.any(array < 0) or np.any(array > n_draws):
        raise ValueError(f"{name} must have shape {expected}: found values in "
                         f"[{array.min():g}, {array.max():g}]; were the ranks computed with n_draws={n_draws}?")
    return array.astype(np.int64)


def names_list(names: Optional[Sequence[str]], dims: int, name: str = "names") -> list:
    """One label per dimension (default ``theta[i]``)."""
    if names is None:
        return [f"theta[{i}]" for i in range(dims)]
    names = [str(n) for n in names]
    if len(names) != dims:
        raise ValueError(f"{name} must have one entry per dimension ([D] with D={dims}), got {len(names)}")
    return names
