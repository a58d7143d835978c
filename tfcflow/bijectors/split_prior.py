"""Learned prior of a multi-scale split (Glow, SRFlow), written as a bijection.

At a split, the activation ``h = [h_1, h_2]`` (channels) keeps ``h_1`` in the flow and factors
``h_2`` out with a Gaussian prior whose parameters come from ``h_1`` (and the condition)::

    (mu, r) = NN(h_1, c);   log sigma = bounded(r)          (affine_scale.py, exp_tanh)
    p(h_2 | h_1, c) = N(h_2; mu, sigma^2)

Standardizing ``h_2`` turns that prior into a bijection onto a standard-normal latent::

    inverse  (normalizing):  [h_1, h_2] -> [h_1, eps],   eps = (h_2 - mu) / sigma
    forward  (generative):   [h_1, eps] -> [h_1, h_2],   h_2 = mu + sigma * eps
    log|det d[h_1, eps]/d[h_1, h_2]| = -sum(log sigma)

so ``log N(eps; 0, I) - sum log sigma = log N(h_2; mu, sigma^2)``. It is an affine coupling with
shift ``-mu / sigma`` and scale ``1 / sigma``; sampling at temperature T draws ``eps ~ N(0, T^2)``,
and T = 0 gives ``h_2 = mu``.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfcflow.bijectors import affine_scale
from tfcflow.bijectors.conditional_affine_coupling import AffineCouplingLayer, ConditionalAffineCoupling


class GaussianSplitPrior(ConditionalAffineCoupling):
    """The split prior as a bijection (see module docstring). ``network([h_1, c])`` returns
    ``[..., 2 * C_2]``: (mu, r) for the split-off channels."""

    def __init__(self, network, condition=None, clamp: float = 3.0, event_ndims: int = 3,
                 validate_args: bool = False, name: str = "gaussian_split_prior"):
        super().__init__(network, condition, flip=False, scale="exp_tanh", clamp=clamp,
                         event_ndims=event_ndims, validate_args=validate_args, name=name)

    def _affine_params(self, untouched):
        mu, raw = tf.split(self._network_output(untouched), 2, axis=-1)
        sigma, log_sigma = affine_scale.scale_and_log_scale(raw, "exp_tanh", self._clamp)
        inv_sigma = 1.0 / sigma
        return -mu * inv_sigma, inv_sigma, -log_sigma


@keras.saving.register_keras_serializable(package="tfcflow")
class SplitPriorLayer(AffineCouplingLayer):
    """Owns the prior network (input ``[h_1, condition]``, output ``2 * C_2`` channels,
    zero-initialized so the prior starts as N(0, 1)). Conditional when built with a
    ``condition_shape``. Needs an even channel count (the split halves the channels)."""

    def __init__(self, network: keras.layers.Layer, clamp: float = 3.0, **kwargs):
        kwargs.pop("flip", None)
        kwargs.pop("scale", None)
        super().__init__(network, flip=False, scale="exp_tanh", clamp=clamp, **kwargs)

    def build(self, input_shape, condition_shape=None):
        if int(input_shape[-1]) % 2:
            raise ValueError(f"{self.name}: a split needs an even channel count, got input shape "
                             f"{list(input_shape)}")
        super().build(input_shape, condition_shape)

    def bijector(self, condition=None) -> GaussianSplitPrior:
        if self.conditional and condition is None:
            raise ValueError(f"{self.name}: this split prior was built with a condition; got condition=None")
        return GaussianSplitPrior(self.network, condition if self.conditional else None,
                                  clamp=self.clamp, event_ndims=self.event_ndims, name=self.name)

    def get_config(self):
        config = super().get_config()
        config.pop("flip")
        config.pop("scale")
        return config
