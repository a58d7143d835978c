"""Shared behaviour of the 8-bit image models (ConditionalGlow, CAFlow).

Images are 8-bit: ``uint8`` in [0, 255] or float in [0, 1] meaning ``uint8 / 255`` (other values
are rejected). The flow models dequantized values (dequantize.py):

- training adds uniform noise ``u ~ U[0, 1)`` to the 8-bit values (the bound of Theis et al.);
- ``evaluate`` / ``fit`` validation report that bound too (with a fixed noise seed): the
  bits/dim that papers report;
- ``log_prob(x, c)`` evaluates at the bin centres (``u = 0.5``), a deterministic midpoint-rule
  estimate of the discrete log-likelihood log P(x | c), in nats -- what best-of-n ranks by and
  what the SavedModel serves. It is not a bound and can sit well above it on images with many
  saturated pixels (MNIST);
- ``log_prob_bound(x, c, seed)``: the bound for given inputs;
- ``bits_per_dim(x, c) = -log_prob / (D log 2)``, D = H * W * C of each image;
- ``sample`` returns float images in [0, 1] on the 8-bit grid (samples are quantized).

Image-shaped conditions are given like images (uint8 or [0, 1] floats) and reach the networks in
[-0.5, 0.5]; vector conditions (e.g. one-hot labels) are used as they are.

Residual (``residual=True``, image conditions): the flow models the difference between the target
and the condition brought to the target's size (bicubic x factor; a 1-channel condition is
broadcast over the target's channels), ``y_flow = y - up(c)``: a shift by a function of c only,
so log|det| = 0 and the density of x is unchanged in kind; what changes is what the flow must
learn (a near-zero residual instead of the whole image; SRFlow and many SR networks add the
upsampled input back the same way).

Learned residual (``residual="learned"``): the base is ``up(c) + g(c)``, g a ``ResidualUpsampler``
(a residual CNN at the condition's resolution, zero at initialization, so it starts as bicubic),
still a shift by a function of c only (log-det 0, the density stays exact). g is a regression
network trained by its own loss, the L1 distance of its base to the target, summed over the image
(``_training_losses`` adds it to the objective; the flow sees the base through ``stop_gradient``, so
the flow's parameters get only the likelihood's gradient and g's only the L1's): SRFlow's lesson that
an L1-trained SR network is what carries the PSNR, with the flow modelling what it leaves. The
reported NLL is the likelihood alone.

Temperatures: a float, or one float per level (per-scale temperatures, finest level first); a
level's temperature scales the latents that generate the target's latent at that level.

Any size: the flows are fully convolutional, so what a model fixes is the channel count C, the
number of levels and the condition's resize ``factor`` -- not H x W. ``event_shape=(H, W, C)``
gives a default size (what sampling from a vector condition uses; the size checked by nothing
else), ``(None, None, C)`` none. x may be any ``H x W`` divisible by ``2^levels`` (else a ValueError
eagerly, an InvalidArgumentError in a graph, naming the size); an image condition is
``H / factor x W / factor`` (super-resolution: factor > 1; inpainting, colorization: 1), and
samples of a condition take its size x factor.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb, distributions as tfd

from tfcflow import _checks, _random
from tfcflow.bijectors.dequantize import BINS, UniformDequantization, add_uniform_noise, quantize
from tfcflow.bijectors.multiscale import spatial_size
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.gaussian import standard_normal_log_prob
from tfcflow.models.rows import WHOLE, Rows, batch_noise
from tfcflow.models.specs import spec_config, spec_of
from tfcflow.models.image_blocks import check_divisible_size, check_image_shape
from tfcflow.models.vector_blocks import Coupling, migrate_coupling_config, refuse_legacy_coupling_args
from tfcflow.networks.upsampler import ResidualUpsampler

#: the residual bases: the bicubic upsampling of the condition, or that plus a learned correction
RESIDUAL_KINDS = ("bicubic", "learned")
#: the learned base's settings and their defaults
LEARNED_FIELDS = {"width": 64, "depth": 4}


@dataclasses.dataclass(frozen=True)
class Residual:
    """What an image model's flow is relative to (module docstring): ``kind`` ``"bicubic"``
    (base = up(c)) or ``"learned"`` (base = up(c) + g(c), g a residual CNN of ``width`` channels and
    ``depth`` residual blocks, trained by L1: ``train.base_steps``). ``width`` and ``depth`` are
    refused for ``"bicubic"``; left None they take ``LEARNED_FIELDS``.

    An image model's ``residual`` is None (no base; False is read as None), a kind (True is
    ``"bicubic"``), a dict of these fields (in a config: ``{"kind": "learned", "width": 32}``) or a
    ``Residual``.
    """

    kind: str = "bicubic"
    width: Optional[int] = None
    depth: Optional[int] = None

    def __post_init__(self):
        if self.kind not in RESIDUAL_KINDS:
            raise ValueError(f"residual must be None, True or one of {RESIDUAL_KINDS}, got {self.kind!r}")
        for name, default in LEARNED_FIELDS.items():
            value = getattr(self, name)
            if self.kind != "learned":
                if value is not None:
                    raise ValueError(f"residual {name}={value!r} sets the learned base g; residual is {self.kind!r}")
            elif value is None:
                object.__setattr__(self, name, default)

    @classmethod
    def of(cls, value) -> Optional["Residual"]:
        if value is None or value is False:
            return None
        if value is True:
            return cls("bicubic")
        return spec_of(cls, value, "residual",
                       f"None, True or one of {RESIDUAL_KINDS}, a dict or a tfcflow.models.Residual")

    def to_config(self) -> Union[str, dict]:
        """The kind alone when the settings are the defaults, else a dict (what ``of`` reads)."""
        return spec_config(self, LEARNED_FIELDS if self.kind == "learned" else {})


def migrate_residual_config(config: dict) -> dict:
    """An image model's config with ``residual_width`` / ``residual_depth`` (configs, runs and saves
    written before ``Residual`` grouped them) folded into ``residual`` (dropped where the base is not
    learned: they had no effect there), and ``residual: false / true`` read as None / "bicubic"."""
    old = {k: config[k] for k in ("residual_width", "residual_depth") if k in config}
    if not old and not isinstance(config.get("residual"), bool):
        return config
    config = {k: v for k, v in config.items() if k not in old}
    spec = Residual.of(config.get("residual"))
    if spec is not None and spec.kind == "learned":
        fields = {"width": spec.width, "depth": spec.depth}
        fields.update({k.split("_")[1]: v for k, v in old.items()})
        spec = Residual("learned", **fields)
    config["residual"] = None if spec is None else spec.to_config()
    return config


def to_bins(x, name: str) -> tf.Tensor:
    """uint8 / integer [0, 255] or float [0, 1] -> float32 8-bit values (bins) in {0..255}."""
    if x is None:
        raise ValueError(f"{name} is required but got None")
    t = tf.convert_to_tensor(x)
    if t.dtype.is_floating:
        lo, hi, kind = 0.0, 1.0, "float"
        bins = tf.round(tf.cast(t, tf.float32) * (BINS - 1))
    elif t.dtype == tf.uint8:
        return tf.cast(t, tf.float32)  # always a valid 8-bit image: nothing to check
    elif t.dtype.is_integer:
        lo, hi, kind = 0, BINS - 1, "integer"
        bins = tf.cast(t, tf.float32)
    else:
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {t.dtype.name}")
    return _check_range(t, bins, name, lo, hi, kind)


def to_unit_interval(x, name: str) -> tf.Tensor:
    """Image-like condition: uint8 [0, 255] or float [0, 1] -> float32 in [-0.5, 0.5]."""
    t = tf.convert_to_tensor(x)
    if t.dtype == tf.uint8:
        return tf.cast(t, tf.float32) / (BINS - 1) - 0.5
    if t.dtype.is_integer:
        return _check_range(t, tf.cast(t, tf.float32) / (BINS - 1) - 0.5, name, 0, BINS - 1, "integer")
    if not t.dtype.is_floating:
        raise ValueError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {t.dtype.name}")
    return _check_range(t, tf.cast(t, tf.float32) - 0.5, name, 0.0, 1.0, "float")


def _check_range(raw, converted, name, lo, hi, kind):
    r = tf.cast(raw, tf.float32)
    converted = _checks.enforce(converted, tf.math.is_finite(r), f"{name} contains NaN or inf values",
                                lambda: f"first at row {_checks.first_nonfinite_row(r)}")
    return _checks.enforce(converted, (r >= lo) & (r <= hi), f"{name} must be uint8 in [0, 255] or float in [0, 1]",
                           lambda: f"got {kind} values in [{float(tf.reduce_min(r)):g}, {float(tf.reduce_max(r)):g}]")


#: how an image model's 1x1 convolutions mix the channels: a matrix in LU form (Glow's choice;
#: log-det from the diagonal) or a plain matrix (log-det by ``slogdet``)
MIXINGS = ("lu", "matrix")


def image_coupling(value: Union[str, dict, Coupling], kwargs: dict) -> Coupling:
    """The coupling of an image model's flow steps: affine (``Coupling("affine", scale=...,
    clamp=...)``, the vector models' spec; splines are not built for images). ``kwargs``: the
    constructor's other keyword arguments, where the ``scale`` / ``clamp`` this replaced are
    refused with a clear message."""
    refuse_legacy_coupling_args(kwargs)
    coupling = Coupling.of(value)
    if coupling.kind != "affine":
        raise ValueError(f"coupling: the image models' flow steps are affine couplings; got {coupling.kind!r}")
    return coupling


def mixing_is_lu(mixing: str) -> bool:
    """``mixing`` checked against ``MIXINGS``: True for ``"lu"``."""
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    return mixing == "lu"


class ImageFlowModel(ConditionalFlowModel):
    """Base of the image models (see module docstring): a flow ``z = F(y; features)`` of the
    dequantized image ``y = v / 256 - 0.5`` (``v`` = 8-bit values + noise in [0, 256)), with
    condition features computed once per condition. Subclasses implement::

        _features(condition)        -> what the latent bijector is conditioned on (any nest)
        _latent_bijector(features)  -> FlowBijector y [b, H, W, C] -> z [b, D], with ``piece_shapes``
                                       and ``piece_sizes`` at the size the features imply
        _piece_levels()             -> the level (0 = finest) whose temperature scales each piece
        _data_init_flow(y, condition, force)   y: the flow's input (dequantized, minus base(c) if residual)

    and, when the features depend on the target size beyond what the condition says (a vector
    condition broadcast over the image), ``_features_at(condition, size)``.

    Args:
      event_shape: ``(H, W, C)``: H, W a default size, or None (see module docstring).
      condition_shape: ``(h, w, c)`` image (h, w may be None) or ``(d,)`` vector.
      levels: scales of the flow (x's H and W divisible by 2^levels).
      factor: target size = image condition size x factor; None: ``H / h`` when both sizes are
        given (an integer, the same for H and W), else 1.
      residual: model ``y - base(c)`` instead of ``y`` (see module docstring): None; ``"bicubic"``
        (base = up(c); True too) or ``"learned"`` (base = up(c) + g(c), g trained by L1), or a
        ``Residual`` (a dict in a config) with g's ``width`` and ``depth``. Image conditions with C
        or 1 channels (any channel count for ``"learned"``).

    ``distribution(c)`` is over the dequantized values ``v`` in [0, 256) (a continuous density
    needs a continuous space); ``log_prob`` is the discrete one of 8-bit x (see module docstring)."""

    PER_DIM_METRIC = "bits_per_dim"

    @classmethod
    def migrate_config(cls, config: dict) -> dict:
        """Configs written before ``mixing`` named the 1x1 convolutions' form (``lu: bool``) and
        before ``coupling`` grouped ``scale`` and ``clamp``."""
        config = migrate_coupling_config(migrate_residual_config(super().migrate_config(config)))
        if "lu" in config:
            lu = config["lu"]
            if not isinstance(lu, bool):
                raise ValueError(f"lu must be true or false (now mixing='lu' or 'matrix'), got {lu!r}")
            config = {k: v for k, v in config.items() if k != "lu"}
            config.setdefault("mixing", "lu" if lu else "matrix")
        return config

    def __init__(self, event_shape: Sequence[Optional[int]], condition_shape: Sequence[Optional[int]], levels: int,
                 factor: Optional[int] = None, residual=None, **kwargs):
        old = sorted(set(kwargs) & {"residual_width", "residual_depth"})
        if old:
            raise ValueError(f"{', '.join(old)}: settings of the residual now: pass residual={{'kind': 'learned', "
                             f"'width': ..., 'depth': ...}} or tfcflow.models.Residual('learned', ...)")
        event_shape = tuple(None if d is None else int(d) for d in event_shape)
        condition_shape = tuple(None if d is None else int(d) for d in condition_shape)
        check_image_shape(event_shape, levels, name="image")
        # the base class knows static shapes only; here H and W are a default, C is what is fixed
        super().__init__(event_shape[-1:], condition_shape, **kwargs)
        self._image_shape = event_shape
        self.levels = int(levels)
        self._image_condition = len(self.condition_shape) == 3
        self.factor = condition_factor(event_shape, self.condition_shape, factor)
        spec = Residual.of(residual)
        #: None, "bicubic" or "learned" (the kind; ``residual_spec`` has the learned base's settings)
        self.residual = None if spec is None else spec.kind
        self.residual_spec = spec
        if self.residual and not self._image_condition:
            raise ValueError(f"residual={residual!r} subtracts a function of an image condition from the image; "
                             f"got the vector condition_shape {self.condition_shape}")
        if self.residual == "bicubic" and self.condition_shape[-1] not in (1, event_shape[-1]):
            raise ValueError(f"residual={residual!r} subtracts the upsampled condition from the image: it needs an "
                             f"image condition with {event_shape[-1]} or 1 channels, got condition_shape "
                             f"{self.condition_shape}; residual='learned' maps any channel count")
        self.upsampler = None
        if self.residual == "learned":
            self.upsampler = ResidualUpsampler(event_shape[-1], self.factor, spec.width, spec.depth,
                                               name="residual_upsampler")
            self.upsampler.build((None,) + tuple(self.condition_shape))

    # ---- shapes -------------------------------------------------------------------------------------
    @property
    def event_shape(self) -> tuple:
        """``(H, W, C)`` as constructed (H, W: the default size, or None); any size divisible by
        2^levels is accepted."""
        return self._image_shape

    @property
    def default_size(self) -> Optional[tuple]:
        """``(H, W)`` given to the constructor, or None."""
        return None if self._image_shape[0] is None else self._image_shape[:2]

    @property
    def event_size(self) -> int:
        """H * W * C at the default size (each image's own H * W * C is what bits/dim divides by)."""
        if self.default_size is None:
            raise ValueError(f"{type(self).__name__} built with event_shape {self._image_shape} has no fixed "
                             f"number of dimensions: it is H * W * C of each image")
        return int(np.prod(self._image_shape))

    # ---- conversions ------------------------------------------------------------------------------
    def _check_x(self, x, name: str = "x") -> tf.Tensor:
        bins = to_bins(x, name)
        _checks.check_shape(bins, name, (None, None, None, self._image_shape[-1]))
        bins = check_divisible_size(bins, self.levels, name)
        return bins

    def _check_condition(self, condition) -> tf.Tensor:
        if condition is None:
            raise self._missing_condition()
        if self._image_condition:
            c = to_unit_interval(condition, "condition")
            _checks.check_shape(c, "condition", (None, None, None, self.condition_shape[-1]))
        else:
            c = _checks.check_finite(_checks.as_tensor(condition, "condition"), "condition")
            _checks.check_shape(c, "condition", (None,) + self.condition_shape)
        return c

    def _check_pair(self, x, condition):
        x, c = super()._check_pair(x, condition)
        return self._check_sizes(x, c) if self._image_condition else (x, c)

    def _check_sizes(self, x, c):
        """(x, c), once x's size is the image condition's x factor."""
        f, xs, cs = self.factor, x.shape[1:3].as_list(), c.shape[1:3].as_list()
        if None in xs + cs:
            # c waits too: the condition's own flows (CAFlow's R) would otherwise fail first on a bad size.
            # (no apostrophes in assertion messages: they print escaped)
            return _checks.enforce((x, c), tf.equal(tf.shape(x)[1:3], tf.shape(c)[1:3] * f),
                                   f"x height and width must be the condition height and width x factor {f}; "
                                   f"got x and condition sizes", data=[tf.shape(x)[1:3], tf.shape(c)[1:3]])
        if xs == [d * f for d in cs]:
            return x, c
        reason = f"x's size is the condition's size x factor {f}; x shape {x.shape.as_list()}, condition shape " \
                 f"{c.shape.as_list()}"
        if tuple(cs) == self.condition_shape[:2]:  # the condition has its usual size: x is the odd one
            want = _checks.describe_shape((None, cs[0] * f, cs[1] * f, self._image_shape[-1]))
            raise ValueError(f"x must have shape {want}, got shape {x.shape.as_list()} ({reason})")
        want = (_checks.describe_shape((None, xs[0] // f, xs[1] // f, self.condition_shape[-1]))
                if xs[0] % f == 0 and xs[1] % f == 0 else f"[batch, H / {f}, W / {f}, {self.condition_shape[-1]}]")
        raise ValueError(f"condition must have shape {want}, got shape {c.shape.as_list()} ({reason})")

    def _target_size(self, condition, size: Optional[tuple] = None) -> list:
        """``[H, W]`` of the samples of ``condition`` (ints where static): an image condition's size
        x factor, else the requested ``size`` (``sample(size=...)``), else the default size."""
        if self._image_condition:
            return [d * self.factor for d in spatial_size(condition)]
        size = size or self.default_size
        if size is None:
            raise ValueError(f"{type(self).__name__} has no default size (event_shape {self._image_shape}): "
                             f"pass sample(..., size=(H, W)) to sample from a vector condition")
        return list(size)

    def _check_target(self, condition, size):
        """``condition``, once its samples' ``size`` is divisible by 2^levels."""
        f = 2 ** self.levels
        if all(isinstance(d, int) for d in size):
            if size[0] % f or size[1] % f:
                what = (f"the condition's size {condition.shape[1]}x{condition.shape[2]} x factor {self.factor} = "
                        if self._image_condition else "the sample size ")
                raise ValueError(f"{what}{size[0]}x{size[1]} is not divisible by 2^levels = {f} "
                                 f"(levels={self.levels})")
            return condition
        size = tf.stack(size)
        what = f"the condition size x factor {self.factor}" if self._image_condition else "size"
        # (a requested size is already >= 1: _requested_size)
        return _checks.enforce(condition, tf.equal(size % f, 0),
                               f"sample height and width ({what}) must be divisible by 2^levels = {f} "
                               f"(levels={self.levels}); got", data=[size])

    def per_dim(self, nll, x=None):
        """nll / (D log 2), D = H * W * C of the images ``x`` ``[b, H, W, C]`` (default: of the
        default size)."""
        if x is None:
            d = self.event_size
        else:
            h, w = spatial_size(x)
            d = h * w * self._image_shape[-1]
        if isinstance(d, int):
            return nll / (float(d) * math.log(2.0))
        return nll / (tf.cast(d, nll.dtype) * math.log(2.0))

    def _temperatures(self, temperature) -> tf.Tensor:
        t = tf.reshape(temperature, [-1])
        if t.shape[0] is not None and t.shape[0] not in (1, self.levels):
            raise ValueError(f"temperature must be a float or one value per level ({self.levels}), "
                             f"got {t.shape[0]} values")
        return tf.broadcast_to(t, [self.levels])

    # ---- ConditionalFlowModel hooks -----------------------------------------------------------------
    def _log_prob(self, bins, condition):
        return self._log_prob_dequantized(bins + 0.5, condition)

    def _training_losses(self, bins, condition, seed, rows: Rows = WHOLE):
        nll = -self._log_prob_dequantized(bins + self._training_noise("uniform", tf.shape(bins), seed, rows),
                                          condition)
        return nll + self._base_loss(bins, condition), nll

    def base_loss(self, x, condition) -> tf.Tensor:
        """The learned base's L1 loss ``[b]``: sum over each image of |x - base(c)| (x in [-0.5, 0.5]),
        what trains g (``residual="learned"`` only); x ``[b, H, W, C]``, condition as for ``log_prob``."""
        if self.residual != "learned":
            raise ValueError(f"base_loss needs residual='learned' (a base with weights), got "
                             f"residual={self.residual!r}")
        bins, condition = self._check_pair(x, condition)
        return self._base_l1(bins, condition)

    def _base_l1(self, bins, condition):
        error = bins / (BINS - 1) - 0.5 - self._base(condition, spatial_size(bins), trainable=True)
        return tf.reduce_sum(tf.abs(error), axis=[1, 2, 3])

    def _base_loss(self, bins, condition):
        """What the objective adds for the base ``[b]``: its L1 (``base_loss``) while g is trainable;
        0 without a learned base or once g is frozen (``upsampler.trainable = False``: trained
        beforehand, e.g. by ``tfcflow.base_training.fit_base``)."""
        if self.residual != "learned" or not self.upsampler.trainable:
            return tf.zeros([tf.shape(bins)[0]])
        return self._base_l1(bins, condition)

    def _validation_nll(self, bins, condition, rows: Rows = WHOLE):
        # the dequantization bound, as in training but with a fixed noise seed (deterministic)
        return -self._log_prob_bound(bins, condition, 0, rows)

    def _log_prob_bound(self, bins, condition, seed, rows):
        noise = batch_noise("uniform", tf.shape(bins), _random.seed_tensor(seed), rows)
        return self._log_prob_dequantized(bins + noise, condition)

    def _sample(self, condition, temperature, seed, rows):
        condition = self._check_target(condition, self._target_size(condition, rows.size))
        # the size again, from the checked condition: what depends on it waits for the check
        v = self._sample_dequantized(condition, self._target_size(condition, rows.size),
                                     self._temperatures(temperature), seed, rows)
        # quantize() clips overflowing values into range; its floor and clip propagate NaN, so a
        # diverged sample stays visible to the finiteness check (tested)
        return quantize(v) / (BINS - 1)

    def _data_init(self, bins, condition, force):
        y, _ = self._flow_input(add_uniform_noise(bins, _random.seed_tensor(0)), condition)
        self._data_init_flow(y, condition, force)

    # ---- public extras --------------------------------------------------------------------------------
    def log_prob_bound(self, x, condition, seed=0) -> tf.Tensor:
        """log p(x + u | c) - D log 256 with seeded uniform noise u: an unbiased estimate of a lower
        bound of log P(x | c) (nats, ``[batch]``)."""
        return self._in_sub_batches(lambda rows, bi, ci: self._log_prob_bound(bi, ci, seed, rows),
                                    *self._check_pair(x, condition))

    def bits_per_dim(self, x, condition) -> tf.Tensor:
        """``-log_prob(x, condition) / (D log 2)``, D = H * W * C of these images, ``[batch]``."""
        return self.per_dim(-self.log_prob(x, condition), self._check_x(x))

    def sample(self, condition, temperature=1.0, seed=None, num_samples=None, batch_size=None,
               size=None) -> tf.Tensor:
        """8-bit samples as float in [0, 1]: one per condition row, or ``num_samples`` per row
        (``[batch, N, H, W, C]``; see ``ConditionalFlowModel.sample``). ``temperature``: a float or
        one per level (finest first); 0 gives the mode path. The samples' ``H x W`` is an image
        condition's size x factor; for a vector condition ``size=(H, W)`` (ints, or scalar int
        tensors in a graph, e.g. a SavedModel signature's input), default the default size."""
        return self._sample_call(condition, temperature, seed, num_samples, batch_size,
                                 Rows(size=self._requested_size(size)))

    def best_of_n(self, condition, n, temperature=1.0, seed=None, max_n: Optional[int] = None, size=None):
        """``ConditionalFlowModel.best_of_n``; for a vector condition ``size=(H, W)`` as in ``sample``."""
        return self._best_of_n(condition, n, temperature, seed, max_n, Rows(size=self._requested_size(size)))

    def _requested_size(self, size) -> Optional[tuple]:
        if size is None:
            return None
        if self._image_condition:
            raise ValueError("size: samples of an image condition have its size x factor; resize the condition")
        if len(size) != 2:
            raise ValueError(f"size must be (height, width), got {size!r}")
        return tuple(_checks.check_count(d, "size") for d in size)  # ints, or int tensors checked in-graph

    def distribution(self, condition) -> tfd.Distribution:
        """p(v | condition) over dequantized pixel values ``v = x_uint8 + u`` in [0, 256), as a
        ``TransformedDistribution`` of N(0, I): batch ``[batch]``, event ``[H, W, C]`` at the
        condition's target size (``_target_size``)."""
        c = self._check_condition(condition)
        c = self._check_target(c, self._target_size(c))
        size = self._target_size(c)
        bijector = self._latent_bijector(self._features_at(c, size))
        base = tfd.MultivariateNormalDiag(loc=tf.zeros([tf.shape(c)[0], sum(bijector.piece_sizes)]))
        shift = [tfb.Shift(self._base(c, size))] if self.residual else []
        return tfd.TransformedDistribution(base, tfb.Chain([UniformDequantization()] + shift + [bijector]))

    # ---- the dequantized density, shared by every image model --------------------------------------------
    def _log_prob_dequantized(self, v, condition):
        return self._log_prob_given(v, self._features_at(condition, spatial_size(v)), condition)

    def _log_prob_given(self, v, features, condition):
        """log p(v | features): dequantization (and the residual shift), the latent bijector, the
        N(0, I) prior."""
        y, ld_dequant = self._flow_input(v, condition)
        z, ld = self._latent_bijector(features).inverse_and_log_det(y)
        return standard_normal_log_prob(z) + ld + ld_dequant

    def _sample_dequantized(self, condition, size, temperatures, seed, rows):
        bijector = self._latent_bijector(self._features_at(condition, size))
        scale = piece_temperatures(temperatures, bijector.piece_shapes, self._piece_levels())
        z = scale * batch_noise("normal", tf.stack([tf.shape(condition)[0], sum(bijector.piece_sizes)]), seed, rows)
        y, _ = bijector.forward_and_log_det(z)
        if self.residual:
            y = y + self._base(condition, size)
        v, _ = UniformDequantization().forward_and_log_det(y)
        return v

    def _flow_input(self, v, condition):
        """Dequantized values v -> (the latent bijector's input y, log|dy/dv|): y = v / 256 - 0.5,
        minus base(c) if residual (a shift: no log-det)."""
        y, ld = UniformDequantization().inverse_and_log_det(v)
        if self.residual:
            y = y - self._base(condition, spatial_size(v))
        return y, ld

    def _base(self, condition, size, trainable: bool = False):
        """What the flow's input is relative to: ``up(c)``, plus ``g(c)`` for a learned residual
        (``[b, H, W, C]``). g is trained by ``_base_loss`` alone: elsewhere its output is behind
        ``stop_gradient`` (``trainable=False``)."""
        base = self._upsampled(condition, size)
        if self.residual == "learned":
            correction = self.upsampler(condition)
            base = base + (correction if trainable else tf.stop_gradient(correction))
        return base

    def _resized_condition(self, condition, size=None):
        """An image condition ([-0.5, 0.5]) at the target's size (its size x factor, or ``size``),
        bicubic; factor 1: as it is."""
        if self.factor == 1:
            return condition
        return tf.image.resize(condition, size or [d * self.factor for d in spatial_size(condition)], method="bicubic")

    def _upsampled(self, condition, size):
        """``_resized_condition`` with the target's channels (a 1-channel condition broadcast)."""
        c = self._resized_condition(condition, size)
        if c.shape[-1] == self._image_shape[-1]:
            return c
        if c.shape[-1] == 1:
            return tf.repeat(c, self._image_shape[-1], axis=-1)
        # other channel counts (a learned residual of a masked image + mask): the correction is the base
        return tf.zeros(tf.concat([tf.shape(c)[:3], [self._image_shape[-1]]], 0))

    # ---- subclass hooks ---------------------------------------------------------------------------------
    def _features(self, condition):
        raise NotImplementedError

    def _features_at(self, condition, size):
        """The features for targets of ``size`` ``[H, W]``; by default they do not depend on it."""
        return self._features(condition)

    def _latent_bijector(self, features):
        raise NotImplementedError

    def _piece_levels(self) -> Sequence[int]:
        raise NotImplementedError

    def _data_init_flow(self, y, condition, force):
        """Data-dependent initialization (ActNorm) from a batch of the latent bijector's inputs y."""
        raise NotImplementedError


def piece_temperatures(temperatures: tf.Tensor, piece_shapes: Sequence[Sequence],
                       piece_levels: Sequence[int]) -> tf.Tensor:
    """Per-level temperatures -> a ``[D]`` vector scaling a flat latent made of pieces ``(h, w, c)``
    (ints, or scalar tensors at a size known at run time), piece k being scaled by the temperature
    of level ``piece_levels[k]`` (0 = finest)."""
    return tf.concat([tf.fill([h * w * c], temperatures[level])
                      for (h, w, c), level in zip(piece_shapes, piece_levels)], axis=0)


def condition_factor(event_shape, condition_shape, factor: Optional[int]) -> int:
    """The resize factor from an image condition to the target (see ``ImageFlowModel``)."""
    if len(condition_shape) != 3:
        if factor not in (None, 1):
            raise ValueError(f"factor relates an image condition's size to the target's; a vector condition "
                             f"{tuple(condition_shape)} has none, got factor={factor!r}")
        return 1
    (H, W), (h, w) = event_shape[:2], condition_shape[:2]
    known = None not in (H, W, h, w)
    if factor is not None:
        f = _checks.check_positive_int(factor, "factor")
        if known and (H, W) != (h * f, w * f):
            raise ValueError(f"the image size {H}x{W} is not the condition size {h}x{w} x factor {f}")
        return f
    if not known:
        return 1
    if H % h or W % w or H // h != W // w:
        raise ValueError(f"the image size {H}x{W} is not the condition size {h}x{w} times one integer factor "
                         f"(the same for height and width): resize the conditions, or give sizes that are")
    return H // h
