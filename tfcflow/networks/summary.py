"""Summary networks for simulation-based inference: a raw observation -> a fixed-size condition.

A summary network is trained end to end with the flow; its output (``summary_dim`` floats) is the
condition vector the flow sees. Both layers run in their dtype policy (mixed precision allowed),
pool in float32 and return float32.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf

from tfcflow._checks import check_positive_int

POOLINGS = ("mean", "sum", "max")


def _check_shape(layer: keras.layers.Layer, name: str, shape, dims: Sequence[str],
                 sizes: Sequence[Optional[int]]) -> None:
    """ValueError naming the layer, the expected and the got shape when the rank or a known size
    differs; ``dims`` names each axis, ``sizes`` gives the known ones (None = any)."""
    if getattr(shape, "rank", 0) is None:  # unknown rank: the sublayers will tell
        return
    shape = [None if s is None else int(s) for s in shape]
    if len(shape) != len(dims) or any(e is not None and s is not None and s != e
                                      for s, e in zip(shape, sizes)):
        want = ", ".join(d if e is None else str(e) for d, e in zip(dims, sizes))
        raise ValueError(f"{layer.name} ({type(layer).__name__}): {name} must have shape [{want}] "
                         f"(rank {len(dims)}), got shape {shape}")


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    return depth


def _is_pair(inputs) -> bool:
    """True for ``(x, mask)`` / ``[x, mask]``, False for one tensor or one shape tuple."""
    return isinstance(inputs, (tuple, list)) and len(inputs) == 2 and not isinstance(
        inputs[0], (int, type(None)))


@keras.saving.register_keras_serializable(package="tfcflow")
class DeepSet(keras.layers.Layer):
    """Permutation-invariant summary of a set of i.i.d. observations (Zaheer et al.'s Deep Sets).

    ``rho(concat(pool_i phi(x_i), log1p(n)))``: phi = ``depth`` Dense(width)-act applied to every
    element, a pooling over the set axis (``"mean"``, ``"sum"`` or ``"max"``), then rho = ``depth``
    Dense(width)-act and a linear Dense(summary_dim) (not zero-initialized: it carries the signal).
    With ``include_count`` the pooled vector also gets ``log(1 + n)`` (n = present elements), so
    the posterior can tighten as n grows even under mean / max pooling.

    Inputs: ``x`` ``[batch, n_obs, d]`` or the pair ``(x, mask)`` (tuple or list) with ``mask``
    ``[batch, n_obs]``: nonzero / True = present, 0 / False = padding. ``n_obs`` (and batch) may be
    unknown and may differ from call to call. A padded element changes nothing, whatever its value
    (even inf/NaN), in the output and in the gradients: it is replaced before phi and after phi.
    An empty set (every element masked, or n_obs = 0) pools to zeros (n = 0; ``log1p(0) = 0``).

    ``mask_channel=True``: the mask travels inside ``x`` as its last feature (``[batch, n_obs,
    d + 1]``, 1 = present, 0 = padding) -- how a set of varying size is one condition tensor of a
    model (``fit``, ``sample``, a SavedModel input).

    Output: ``[batch, summary_dim]`` float32.
    """

    def __init__(self, summary_dim: int, width: int = 64, depth: int = 2, pooling: str = "mean",
                 activation: str = "relu", include_count: bool = True, mask_channel: bool = False, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"DeepSet: pooling must be one of {POOLINGS}, got {pooling!r}")
        self.summary_dim = check_positive_int(summary_dim, "summary_dim")
        self.width = check_positive_int(width, "width")
        self.depth = _check_depth(depth)
        self.pooling = pooling
        self.activation = activation
        self.include_count = bool(include_count)
        self.mask_channel = bool(mask_channel)
        self._d = None

        def dense(units, name, act=activation):
            return keras.layers.Dense(units, activation=act, dtype=self.dtype_policy, name=name)

        self.phi = [dense(self.width, f"phi_{i}") for i in range(self.depth)]
        self.rho = [dense(self.width, f"rho_{i}") for i in range(self.depth)]
        self.out = dense(self.summary_dim, "out", act=None)

    def _split(self, inputs) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
        x, mask = inputs if _is_pair(inputs) else (inputs, None)
        if self.mask_channel:
            if mask is not None:
                raise ValueError(f"{self.name} (DeepSet): mask_channel=True takes the mask as x's last feature, "
                                 f"not as a second input")
            x, mask = x[..., :-1], x[..., -1] > 0.5
        self._check(x.shape, None if mask is None else mask.shape)
        return x, mask

    def _check(self, x_shape, mask_shape) -> None:
        _check_shape(self, "x", x_shape, ("batch", "n_obs", "d"), (None, None, self._d))
        if mask_shape is not None:  # the same batch and n_obs as x where both are known
            _check_shape(self, "mask", mask_shape, ("batch", "n_obs"), tuple(x_shape)[:2])

    def build(self, input_shape):
        x_shape, mask_shape = input_shape if _is_pair(input_shape) else (input_shape, None)
        if self.mask_channel and x_shape[-1] is not None:
            if x_shape[-1] < 2:
                raise ValueError(f"{self.name} (DeepSet): with mask_channel=True x is [batch, n_obs, d + 1] with "
                                 f"d >= 1, got shape {list(x_shape)}")
            x_shape = tuple(x_shape[:-1]) + (x_shape[-1] - 1,)
        self._check(x_shape, mask_shape)
        if x_shape[-1] is None:
            raise ValueError(f"{self.name} (DeepSet): the feature size d of x [batch, n_obs, d] must be "
                             f"known, got shape {list(x_shape)}")
        self._d = int(x_shape[-1])
        shape = (None, None, self._d)
        for layer in self.phi:
            layer.build(shape)
            shape = (None, None, self.width)
        shape = (None, shape[-1] + int(self.include_count))
        for layer in self.rho:
            layer.build(shape)
            shape = (None, self.width)
        self.out.build(shape)
        self.built = True

    def call(self, inputs: Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]) -> tf.Tensor:
        x, mask = self._split(inputs)
        h = tf.cast(x, self.compute_dtype)
        present = None if mask is None else tf.cast(mask, tf.bool)[..., None]  # [batch, n_obs, 1]
        if present is not None:
            # tf.where, not a product (0 * inf = NaN); zeroing x too keeps NaN out of phi's gradients
            h = tf.where(present, h, tf.zeros_like(h))
        for layer in self.phi:
            h = layer(h)
        h = tf.cast(h, tf.float32)  # pool in float32: float16 sums over large sets overflow
        if present is None:  # one code path: no mask = every element present
            present = tf.ones_like(h[..., :1], tf.bool)
        n = tf.reduce_sum(tf.cast(present, tf.float32), axis=1)  # [batch, 1]
        if self.pooling == "max":
            pooled = tf.reduce_max(tf.where(present, h, tf.float32.min), axis=1)
            pooled = tf.where(n > 0, pooled, 0.0)  # an empty set has no max: zeros
        else:
            pooled = tf.reduce_sum(tf.where(present, h, 0.0), axis=1)
            if self.pooling == "mean":
                pooled = pooled / tf.maximum(n, 1.0)  # an empty set: 0 / 1 = zeros
        if self.include_count:
            pooled = tf.concat([pooled, tf.math.log1p(n)], axis=-1)
        h = pooled
        for layer in self.rho:
            h = layer(h)
        return tf.cast(self.out(h), tf.float32)

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0] if _is_pair(input_shape) else input_shape
        return (x_shape[0], self.summary_dim)

    def get_config(self):
        return {**super().get_config(), "summary_dim": self.summary_dim, "width": self.width,
                "depth": self.depth, "pooling": self.pooling, "activation": self.activation,
                "include_count": self.include_count, "mask_channel": self.mask_channel}


@keras.saving.register_keras_serializable(package="tfcflow")
class TimeSeriesNetwork(keras.layers.Layer):
    """1-D convolutional summary of a time series.

    ``depth`` Conv1D(filters, kernel_size, stride 2, "same")-act halve the time axis each (a
    receptive field that grows geometrically), a global average over the remaining time steps
    (any T >= 1 works, T may differ from call to call), then a linear Dense(summary_dim).

    Shapes: ``[batch, T, channels]`` -> ``[batch, summary_dim]`` float32.
    """

    def __init__(self, summary_dim: int, filters: int = 32, kernel_size: int = 5, depth: int = 3,
                 activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.summary_dim = check_positive_int(summary_dim, "summary_dim")
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.depth = _check_depth(depth)
        self.activation = activation
        self._channels = None
        self.convs = [keras.layers.Conv1D(self.filters, self.kernel_size, strides=2, padding="same",
                                          activation=activation, dtype=self.dtype_policy, name=f"conv_{i}")
                      for i in range(self.depth)]
        self.out = keras.layers.Dense(self.summary_dim, dtype=self.dtype_policy, name="out")

    def build(self, input_shape):
        _check_shape(self, "x", input_shape, ("batch", "T", "channels"), (None, None, None))
        if input_shape[-1] is None:
            raise ValueError(f"{self.name} (TimeSeriesNetwork): the channels of x [batch, T, channels] "
                             f"must be known, got shape {list(input_shape)}")
        self._channels = int(input_shape[-1])
        shape = (None, None, self._channels)
        for conv in self.convs:
            conv.build(shape)
            shape = (None, None, self.filters)
        self.out.build((None, shape[-1]))
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        _check_shape(self, "x", x.shape, ("batch", "T", "channels"), (None, None, self._channels))
        h = x
        for conv in self.convs:
            h = conv(h)
        h = tf.reduce_mean(tf.cast(h, tf.float32), axis=1)  # float32: the mean over long series
        return tf.cast(self.out(h), tf.float32)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.summary_dim)

    def get_config(self):
        return {**super().get_config(), "summary_dim": self.summary_dim, "filters": self.filters,
                "kernel_size": self.kernel_size, "depth": self.depth, "activation": self.activation}
