"""ActNorm -> invertible 1x1 convolution [-> affine coupling] as one bijector (the Glow step),
the same map computed with fewer passes over the activations.

Math (``v`` = the C channels at one position, a row vector; ActNorm ``(b, s)``, 1x1 weight ``W``;
the parts in normalizing order, data -> latent)::

    inverse  (normalizing):  u = ((v - b) * e^{-s}) W = v W' + beta,
                             W' = diag(e^{-s}) W,  beta = -(b * e^{-s}) W
                             [u_1, u_2] = [v W'_1 + beta_1, v W'_2 + beta_2]   (W'_i: the columns
                             of the coupling's untouched / transformed channels)
                             z = coupling^{-1}(u_1, u_2)
    forward  (generative):   u = coupling(z);  v = u W^{-1} diag(e^{s}) + b
    log|det dz/dv| = P * (log|det W| - sum(s)) + log|det coupling^{-1}|,   P = H*W (1 for vectors)

Why: folding ActNorm into the C x C matrix removes its two elementwise passes (and their
gradients), and computing the coupling's two halves as two matmuls replaces a channel split of an
NHWC tensor, a strided copy that TF's CPU kernels run slowly (measured on the benchmark Glow: a
training step 1.03-1.04x, log-prob 1.01-1.08x faster; docs/history.md, 2026-11-23). ``fuse_steps`` builds these
views from the per-layer views; the layers and their variables are unchanged. It is an explicit
execution choice (``Execution(fused_steps=True)``, tfcflow/execution.py): by default a
``FlowSequence``'s bijector is the plain chain of its layers' views.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from tfcflow import execution
from tfcflow._channels import channel_matmul
from tfcflow.bijectors.actnorm import ActNorm
from tfcflow.bijectors.conditional_affine_coupling import ConditionalAffineCoupling
from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.invertible_conv1x1 import InvertibleConv1x1


class FusedStep(FlowBijector):
    """``[actnorm, conv]`` or ``[actnorm, conv, coupling]`` (views, normalizing order) as one
    bijector (see module docstring); same output and log-det as ``FlowChain`` of the parts."""

    def __init__(self, actnorm: ActNorm, conv: InvertibleConv1x1,
                 coupling: Optional[ConditionalAffineCoupling] = None, name: str = "fused_step"):
        parts = [actnorm, conv] + ([coupling] if coupling is not None else [])
        ndims = {p.event_ndims for p in parts}
        if len(ndims) != 1:
            raise ValueError(f"{name}: parts have different event_ndims {sorted(ndims)}")
        self._actnorm, self._conv, self._coupling = actnorm, conv, coupling
        super().__init__(event_ndims=ndims.pop(), name=name)

    def _shared(self, what, dtype, compute):
        # parameter-only tensors: computed once for all sub-batches (execution.shared)
        variables = (self._actnorm.loc, self._actnorm.log_scale) + self._conv.parameter_variables()
        return execution.shared(f"fused_{what}_{dtype.name}", variables, compute)

    def _params_log_det(self, t):
        """log|det dz/dv| of the ActNorm + 1x1 part, per event of ``t`` (its per-position value
        depends on parameters only, so sub-batches compute it once)."""
        per_position = self._shared("log_det", t.dtype, lambda: (
            self._conv.log_abs_det_weight() - tf.reduce_sum(tf.cast(self._actnorm.log_scale, t.dtype))))
        return tf.fill(tf.shape(t)[:-self.event_ndims], self._num_positions(t) * per_position)

    def _inverse_params(self, dtype, channels):
        """``(w, beta)`` of the folded map, or ((w_1, beta_1), (w_2, beta_2)) of the coupling's
        halves (parameters only)."""
        def compute():
            log_scale = tf.cast(self._actnorm.log_scale, dtype)
            w = tf.exp(-log_scale)[:, None] * self._conv.weight()
            beta = -tf.linalg.matvec(w, tf.cast(self._actnorm.loc, dtype), transpose_a=True)
            if self._coupling is None:
                return w, beta
            return tuple((w[:, a:b], beta[a:b]) for a, b in self._coupling.channel_ranges(channels))
        return self._shared("inverse", dtype, compute)

    def _inverse_and_log_det(self, y):
        ld = self._params_log_det(y)
        params = self._inverse_params(y.dtype, y.shape[-1])
        if self._coupling is None:
            return channel_matmul(y, *params), ld
        (w_u, beta_u), (w_t, beta_t) = params
        z, ld_coupling = self._coupling.inverse_from_halves(channel_matmul(y, w_u, beta_u),
                                                            channel_matmul(y, w_t, beta_t))
        return z, ld + ld_coupling

    def _forward_and_log_det(self, z):
        ld_coupling = 0.0
        if self._coupling is not None:
            z, ld_coupling = self._coupling.forward_and_log_det(z)
        w_inv = self._shared("forward", z.dtype, lambda: (
            self._conv.inverse_weight() * tf.exp(tf.cast(self._actnorm.log_scale, z.dtype))[None, :]))
        v = channel_matmul(z, w_inv, tf.cast(self._actnorm.loc, z.dtype))
        return v, ld_coupling - self._params_log_det(z)


def fuse_steps(parts: Sequence[FlowBijector]) -> list:
    """Replaces every ActNorm directly followed by an InvertibleConv1x1 (and, if next, an affine
    coupling) in ``parts`` (normalizing order) with one ``FusedStep``; other parts stay."""
    parts, out, i = list(parts), [], 0
    while i < len(parts):
        if (i + 1 < len(parts) and isinstance(parts[i], ActNorm)
                and isinstance(parts[i + 1], InvertibleConv1x1)):
            coupling = parts[i + 2] if i + 2 < len(parts) else None
            if not isinstance(coupling, ConditionalAffineCoupling):
                coupling = None
            out.append(FusedStep(parts[i], parts[i + 1], coupling, name=parts[i + 1].name + "_fused"))
            i += 2 if coupling is None else 3
        else:
            out.append(parts[i])
            i += 1
    return out
