"""Invertible 1x1 convolution (Glow): a learned C x C channel-mixing matrix applied at every position.

Math (``v`` = the C channel values at one position, a row vector)::

    inverse  (normalizing):  z = v W
    forward  (generative):   v = z W^{-1}
    log|det dz/dv| over one event = P * log|det W|,   P = H*W for images, 1 for vectors

LU form (Kingma & Dhariwal 2018, Sec. 3.2): ``W = Perm @ L @ (U + diag(sign * exp(log_s)))`` with
``L`` unit lower-triangular, ``U`` strictly upper-triangular, ``Perm`` and ``sign`` fixed. Then
``log|det W| = sum(log_s)`` (no determinant to compute) and ``W^{-1} = U'^{-1} L^{-1} Perm^T``
comes from two C x C triangular solves per call, never a per-position solve.

The plain form learns ``W`` directly: ``log|det W|`` from ``slogdet`` and ``W^{-1}`` from ``inv``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf

from tfcflow import execution
from tfcflow._channels import channel_matmul
from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_layer import FlowLayer


class LUFactors(NamedTuple):
    """LU parameters of W. ``lower``/``upper`` may hold arbitrary values outside their triangles:
    only the strict lower / strict upper parts are used."""
    permutation: tf.Tensor  # [C, C] permutation matrix
    lower: tf.Tensor        # [C, C]
    upper: tf.Tensor        # [C, C]
    sign: tf.Tensor         # [C] +-1
    log_abs_diag: tf.Tensor  # [C]


class InvertibleConv1x1(FlowBijector):
    """Channel mixing by an invertible matrix (see module docstring). Give exactly one of
    ``matrix`` (plain ``[C, C]``) or ``lu`` (``LUFactors``)."""

    def __init__(self, matrix=None, lu: Optional[LUFactors] = None, event_ndims: int = 3,
                 validate_args: bool = False, name: str = "invertible_conv1x1"):
        if (matrix is None) == (lu is None):
            raise ValueError("InvertibleConv1x1 takes exactly one of `matrix` or `lu`")
        self._matrix = matrix
        self._lu = lu
        super().__init__(event_ndims=event_ndims, name=name, validate_args=validate_args)

    def _lu_parts(self):
        lu = self._lu
        # a triangle with its diagonal replaced: two ops each (band_part, set_diag), and the
        # gradient of the replaced diagonal is zero as it should be
        diag = tf.cast(lu.sign, tf.float32) * tf.exp(tf.convert_to_tensor(lu.log_abs_diag))
        lower = tf.linalg.set_diag(tf.linalg.band_part(tf.convert_to_tensor(lu.lower), -1, 0),
                                   tf.ones_like(diag))
        upper = tf.linalg.set_diag(tf.linalg.band_part(tf.convert_to_tensor(lu.upper), 0, -1), diag)
        return tf.cast(lu.permutation, tf.float32), lower, upper

    def parameter_variables(self) -> tuple:
        """The variables this view reads (the owning layer's), for ``execution.shared``."""
        if self._lu is None:
            return (self._matrix,)
        return (self._lu.lower, self._lu.upper, self._lu.log_abs_diag)

    def weight(self) -> tf.Tensor:
        """W, ``[C, C]``."""
        return execution.shared("conv1x1_weight", self.parameter_variables(), self._weight)

    def inverse_weight(self) -> tf.Tensor:
        """W^{-1}, ``[C, C]``."""
        return execution.shared("conv1x1_inverse_weight", self.parameter_variables(), self._inverse_weight)

    def _weight(self):
        if self._lu is None:
            return tf.convert_to_tensor(self._matrix)
        perm, lower, upper = self._lu_parts()
        return tf.matmul(perm, tf.matmul(lower, upper))

    def _inverse_weight(self):
        if self._lu is None:
            return tf.linalg.inv(tf.convert_to_tensor(self._matrix))
        perm, lower, upper = self._lu_parts()
        # L^{-1} P^T as a solve against I and a matmul with transpose_b: a Transpose op of the
        # C x C permutation cost more on CPU (oneDNN's transpose, ~30 us) than the matmul (~3 us)
        eye = tf.eye(int(lower.shape[0]), dtype=lower.dtype)
        l_inv_pt = tf.matmul(tf.linalg.triangular_solve(lower, eye, lower=True), perm, transpose_b=True)
        return tf.linalg.triangular_solve(upper, l_inv_pt, lower=False)

    def log_abs_det_weight(self) -> tf.Tensor:
        """log|det W|, a scalar."""
        if self._lu is None:
            return tf.linalg.slogdet(tf.convert_to_tensor(self._matrix))[1]
        return tf.reduce_sum(tf.convert_to_tensor(self._lu.log_abs_diag))

    def _log_det(self, t):
        per_event = self._num_positions(t) * self.log_abs_det_weight()
        return tf.fill(tf.shape(t)[:-self.event_ndims], per_event)

    def _forward_and_log_det(self, x):
        return channel_matmul(x, self.inverse_weight()), -self._log_det(x)

    def _inverse_and_log_det(self, y):
        return channel_matmul(y, self.weight()), self._log_det(y)


def random_rotation(channels: int, seed: int) -> np.ndarray:
    """A random orthogonal matrix (QR of a Gaussian matrix, sign-corrected), float64."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((channels, channels)))
    return q * np.sign(np.diag(r))[None, :]


def lu_decompose(w: np.ndarray):
    """Partial-pivoting LU of a square matrix: returns (P, L, U) with ``w = P @ L @ U``."""
    n = w.shape[0]
    u = w.astype(np.float64).copy()
    lower = np.eye(n)
    perm = np.arange(n)
    for k in range(n - 1):
        p = k + int(np.argmax(np.abs(u[k:, k])))
        if p != k:
            u[[k, p], :] = u[[p, k], :]
            lower[[k, p], :k] = lower[[p, k], :k]
            perm[[k, p]] = perm[[p, k]]
        for i in range(k + 1, n):
            lower[i, k] = u[i, k] / u[k, k]
            u[i, k:] -= lower[i, k] * u[k, k:]
    pmat = np.eye(n)[perm].T  # rows of w were permuted by perm: w[perm] = L U  =>  w = P L U
    return pmat, lower, np.triu(u)


@keras.saving.register_keras_serializable(package="tfcflow")
class InvertibleConv1x1Layer(FlowLayer):
    """Owns W, initialized to a random rotation (deterministic given ``seed``).

    Args:
      lu: learn W in LU form (default, O(C) log-det) or as a plain matrix.
      seed: seed of the initial rotation.
    """

    def __init__(self, lu: bool = True, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.lu = bool(lu)
        self.seed = int(seed)

    def build(self, input_shape, condition_shape=None):
        super().build(input_shape)
        c = int(input_shape[-1])
        w0 = random_rotation(c, self.seed)
        const = keras.initializers.Constant
        if not self.lu:
            self.kernel = self.add_weight(shape=(c, c), initializer=const(w0.astype(np.float32)),
                                          name="kernel")
            return
        pmat, lower, upper = lu_decompose(w0)
        diag = np.diag(upper)
        f32 = np.float32
        self.permutation = self.add_weight(shape=(c, c), initializer=const(pmat.astype(f32)),
                                           trainable=False, name="permutation")
        self.sign = self.add_weight(shape=(c,), initializer=const(np.sign(diag).astype(f32)),
                                    trainable=False, name="sign")
        self.lower = self.add_weight(shape=(c, c), initializer=const(np.tril(lower, -1).astype(f32)),
                                     name="lower")
        self.upper = self.add_weight(shape=(c, c), initializer=const(np.triu(upper, 1).astype(f32)),
                                     name="upper")
        self.log_abs_diag = self.add_weight(shape=(c,), initializer=const(np.log(np.abs(diag)).astype(f32)),
                                            name="log_abs_diag")

    def bijector(self, condition=None) -> InvertibleConv1x1:
        if not self.lu:
            return InvertibleConv1x1(matrix=self.kernel, event_ndims=self.event_ndims, name=self.name)
        factors = LUFactors(self.permutation, self.lower, self.upper, self.sign, self.log_abs_diag)
        return InvertibleConv1x1(lu=factors, event_ndims=self.event_ndims, name=self.name)

    def get_config(self):
        return {**super().get_config(), "lu": self.lu, "seed": self.seed}
