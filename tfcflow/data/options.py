"""Option values of the data sources that the job config validates too (no TensorFlow here, so the
config module can import them without loading it)."""
from __future__ import annotations

from typing import Optional

#: random flips of an image folder's patches (image_folder.py); ``"dihedral"`` adds transposes
FLIPS = ("none", "horizontal", "both", "dihedral")


def check_scales(scales) -> Optional[tuple]:
    """An image folder's ``scales``: ``(lo, hi)`` with ``0 < lo <= hi <= 1`` (or None) -> a float
    pair (or None); ValueError otherwise."""
    if scales is None:
        return None
    try:
        lo, hi = (float(v) for v in scales)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a pair (min, max) of factors in (0, 1], got {scales!r}") from None
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"scales must satisfy 0 < min <= max <= 1, got {scales!r}")
    return lo, hi
