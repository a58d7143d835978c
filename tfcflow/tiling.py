"""Images larger than memory allows, by tiles: sampling with blended seams, and a tiled log-prob.

An image model conditioned on an image (super-resolution, inpainting, colorization) is fully
convolutional, so any size divisible by ``2^levels`` can be sampled at once; its memory grows with
the pixels (several GB for a 12-megapixel output). ``sample_tiled`` bounds it by the tile: the
output is covered by overlapping square tiles of ``tile`` target pixels, each sampled from the
matching crop of the condition, and the tiles are blended::

    out(p) = sum_t w_t(p) s_t(p) / sum_t w_t(p)

``s_t`` the sample of tile t, ``w_t`` a separable weight rising linearly across the ``overlap``
pixels a tile shares with a neighbour (1 inside, and at the image's own borders). One tile is in
memory at a time besides the output; tiles have one size (the last of a row or column is moved
back to end at the border, overlapping more), so the model is traced once.

Each tile's noise comes from ``(seed, top, left)`` (``numpy.random.SeedSequence``): the result is
deterministic given the seed and does not depend on the order the tiles run in. An image that fits
in one tile is sampled as ``model.sample`` samples it, with ``seed`` itself: the very same draw.

What is lost: inside an overlap the output averages two independent samples, which is smoother
than either (the band is ``overlap`` pixels wide), and a tile's network sees only its crop of the
condition (the overlap gives the seams context).

A tiled log-prob (``log_prob_tiled``) partitions the image into tiles without overlap and sums
their log-densities: the exact log-density of a different model, the one that draws the tiles
independently (a normalized density on the whole image), not the whole-image model's. It equals
``model.log_prob`` when the image fits in one tile. Whole-image evaluation (docs/results.md) uses
untiled, exact log-probs.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np

from tfcflow import _checks


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Tiles of ``tile`` x ``tile`` target pixels sharing ``overlap`` pixels with each neighbour
    (both rounded to the model's size multiple: ``lcm(2^levels, factor)``)."""

    tile: int = 1024
    overlap: int = 32

    def __post_init__(self):
        _checks.check_positive_int(self.tile, "tile")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0:
            raise ValueError(f"overlap must be an integer >= 0, got {self.overlap!r}")
        if self.overlap >= self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than the tile ({self.tile})")


def size_multiple(model) -> int:
    """What a tile's side and position must be a multiple of: ``2^levels`` (the flow's squeezes)
    and the condition's ``factor`` (a tile's condition crop starts on a condition pixel)."""
    f = int(getattr(model, "factor", 1) or 1)
    return math.lcm(2 ** int(model.levels), f)


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along an axis of ``length`` pixels: steps of ``tile - overlap``, the last one
    ``length - tile`` (ending at the border); ``[0]`` when the axis fits in one tile."""
    if length <= tile:
        return [0]
    step = tile - overlap
    count = math.ceil((length - overlap) / step)
    return sorted({min(k * step, length - tile) for k in range(count)})


def _ramp(start: int, size: int, length: int, overlap: int) -> np.ndarray:
    """A tile's blending weight along one axis ``[size]``: rising over ``overlap`` pixels on a
    side that has a neighbour, 1 elsewhere (and at the image's borders)."""
    w = np.ones(size, np.float64)
    if overlap == 0:
        return w
    t = (np.arange(size) + 0.5) / overlap
    if start > 0:
        w = np.minimum(w, t)
    if start + size < length:
        w = np.minimum(w, t[::-1])
    return w


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one output lie: ``rows`` x ``cols`` starts (target pixels), the tile's
    ``height`` x ``width`` (the output's where it fits), the ``overlap``, the condition's
    ``factor``."""

    height: int
    width: int
    overlap: int
    factor: int
    rows: tuple
    cols: tuple
    output: tuple

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def describe(self) -> str:
        h, w = self.output
        return (f"{w}x{h} output in {self.count} tiles of {self.width}x{self.height} px "
                f"(overlap {self.overlap} px)")


def plan(model, condition_size: tuple, tiling: Tiling = Tiling()) -> TilePlan:
    """The tiles of the output of a condition of ``condition_size`` ``(h, w)``."""
    if not getattr(model, "_image_condition", False):
        raise ValueError("tiling needs a model conditioned on an image (super-resolution, inpainting, "
                         "colorization); a vector condition has no crop per tile")
    m = size_multiple(model)
    f = int(model.factor)
    out_h, out_w = int(condition_size[0]) * f, int(condition_size[1]) * f
    if out_h % m or out_w % m:
        raise ValueError(f"the output {out_w}x{out_h} is not divisible by {m} (2^levels and the factor {f}): "
                         f"pad or crop the condition")
    tile = max(m, tiling.tile // m * m)
    overlap = -(-tiling.overlap // m) * m
    if overlap >= tile:
        raise ValueError(f"overlap {tiling.overlap} px rounds to {overlap}, not smaller than the tile {tile} px "
                         f"(multiples of {m} for this model)")
    th, tw = min(tile, out_h), min(tile, out_w)
    return TilePlan(th, tw, overlap, f, tuple(starts(out_h, tile, overlap)), tuple(starts(out_w, tile, overlap)),
                    (out_h, out_w))


def tile_seed(seed: int, top: int, left: int) -> int:
    """The seed of the tile at ``(top, left)``: from the call's seed and the tile's position only."""
    return int(np.random.SeedSequence([int(seed), int(top), int(left)]).generate_state(1)[0] >> 1)


def sample_tiled(model, condition, tiling: Tiling = Tiling(), temperature=1.0, seed: Optional[int] = None,
                 best_of: int = 1, on_tile: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """One sample of ``model`` given ONE image condition (``[h, w, c]`` or ``[1, h, w, c]``), by
    tiles (module docstring): ``[H, W, C]`` float in [0, 1] on the 8-bit grid, ``H x W`` the
    condition's size x factor. ``best_of > 1``: each tile is the best of that many draws by its own
    log-likelihood (``model.best_of_n``). ``on_tile(done, total)`` reports progress."""
    c = np.asarray(condition)  # uint8 or float in [0, 1], as the model takes it
    if c.ndim == 4:
        if c.shape[0] != 1:
            raise ValueError(f"sample_tiled takes one condition; got a batch of {c.shape[0]}")
        c = c[0]
    if c.ndim != 3:
        raise ValueError(f"condition must be one image [h, w, c], got shape {list(c.shape)}")
    best_of = _checks.check_count(best_of, "best_of")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    p = plan(model, c.shape[:2], tiling)

    def draw(crop, s):
        if best_of > 1:
            x, _ = model.best_of_n(crop[None], best_of, temperature=temperature, seed=s)
        else:
            x = model.sample(crop[None], temperature=temperature, seed=s)
        return np.asarray(x)[0]

    if p.count == 1:  # the untiled draw itself
        return draw(c, seed)
    out_h, out_w = p.output
    # float32 accumulators, finished in place: the output's own size is the memory beyond a tile
    total, weight = None, np.zeros((out_h, out_w, 1), np.float32)
    f, done = p.factor, 0
    for top in p.rows:
        wy = _ramp(top, p.height, out_h, p.overlap)
        for left in p.cols:
            crop = c[top // f:(top + p.height) // f, left // f:(left + p.width) // f]
            x = draw(crop, tile_seed(seed, top, left))
            if total is None:
                total = np.zeros((out_h, out_w, x.shape[-1]), np.float32)
            w = (wy[:, None] * _ramp(left, p.width, out_w, p.overlap)[None, :])[..., None].astype(np.float32)
            total[top:top + p.height, left:left + p.width] += w * x
            weight[top:top + p.height, left:left + p.width] += w
            done += 1
            if on_tile is not None:
                on_tile(done, p.count)
    np.divide(total, weight, out=total)
    total *= 255.0
    np.round(total, out=total)
    total /= 255.0
    return total


def log_prob_tiled(model, x, condition, tile: int = 512) -> float:
    """The tiled log-density (module docstring) of ONE image ``x`` (``[H, W, C]`` in [0, 1], or
    with a batch axis of 1) given its condition: the sum over tiles without overlap (``tile``
    rounded to the model's size multiple; the last of a row or column smaller) of
    ``model.log_prob``. Equal to ``model.log_prob`` when the image fits in one tile."""
    x, c = np.asarray(x), np.asarray(condition)
    x, c = (x[0] if x.ndim == 4 else x), (c[0] if c.ndim == 4 else c)
    p = plan(model, c.shape[:2], Tiling(tile=tile, overlap=0))
    if tuple(x.shape[:2]) != p.output:
        raise ValueError(f"x is {x.shape[1]}x{x.shape[0]}; the condition's size x factor {p.factor} is "
                         f"{p.output[1]}x{p.output[0]}")
    f, step_h, step_w = p.factor, p.height, p.width
    total = 0.0
    for top in range(0, p.output[0], step_h):
        for left in range(0, p.output[1], step_w):
            xt = x[top:top + step_h, left:left + step_w]
            ct = c[top // f:(top + xt.shape[0]) // f, left // f:(left + xt.shape[1]) // f]
            total += float(np.asarray(model.log_prob(xt[None], ct[None]))[0])
    return total
