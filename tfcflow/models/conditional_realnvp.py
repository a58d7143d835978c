"""cINN: a RealNVP-style flow whose every coupling network also sees the condition.

    log p(x | c) = log N(z; 0, I) + log|det dz/dx|,   z = f(x; c)
    sampling:     x = f^{-1}(z; c),  z ~ N(0, temperature^2 I)
"""
from __future__ import annotations

from typing import Sequence, Union

import keras
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow import _checks
from tfcflow.bijectors import FlowSequence
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.gaussian import standard_normal_log_prob
from tfcflow.models.vector_blocks import coupling_blocks, vector_size


@keras.saving.register_keras_serializable(package="tfcflow")
class ConditionalRealNVP(ConditionalFlowModel):
    """Conditional coupling flow on vectors (cINN, Ardizzone et al. 2019).

    Args (the shared vocabulary: docs/architecture.md):
      event_shape: ``D`` or ``(D,)``, the size of x.
      condition_shape: ``M`` or ``(M,)``, the size of the condition vector (e.g. a one-hot label).
      depth: coupling blocks; each = two conditional couplings (one per half) + a fixed random
        permutation (+ ActNorm first if ``actnorm``).
      width, hidden_layers: every coupling network is an MLP of ``hidden_layers`` layers of
        ``width`` units.
      scale: ``"exp_tanh"`` (default; can expand and contract) or ``"sigmoid"`` (Glow).
      clamp: bound of ``exp_tanh``: per-coupling scale in ``(e^-clamp, e^clamp)``.
      actnorm: an ActNorm at the start of every block (data-dependent initialization).
      seed: seed of the permutations.

    Shapes: x ``[batch, D]``, condition ``[batch, M]``. ``distribution(c)`` is over x.
    """

    def __init__(self, event_shape: Union[int, Sequence[int]], condition_shape: Union[int, Sequence[int]],
                 depth: int = 8, width: int = 512, hidden_layers: int = 2, activation: str = "relu",
                 scale: str = "exp_tanh", clamp: float = 2.0, actnorm: bool = False, seed: int = 0,
                 **kwargs):
        event_dim, condition_dim = vector_size(event_shape, "event_shape"), vector_size(condition_shape,
                                                                                         "condition_shape")
        _checks.check_positive_int(depth, "depth")
        hidden = (_checks.check_positive_int(width, "width"),) * _checks.check_positive_int(hidden_layers,
                                                                                              "hidden_layers")
        super().__init__((event_dim,), (condition_dim,), **kwargs)
        event_shape, condition_shape = self.event_shape, self.condition_shape
        self._record_config(locals())
        self.flow = FlowSequence(coupling_blocks(event_dim, depth, hidden, activation, scale, clamp, actnorm, seed),
                                 name="flow")
        self.flow.build((None, event_dim), (None, condition_dim))
        self.built = True

    def _log_prob(self, x, condition):
        z, log_det = self.flow.bijector(condition).inverse_and_log_det(x)
        return standard_normal_log_prob(z) + log_det

    def _sample(self, condition, temperature, seed):
        shape = tf.stack([tf.shape(condition)[0], self.event_size])
        z = temperature * self._batch_noise("normal", shape, seed)
        x, _ = self.flow.bijector(condition).forward_and_log_det(z)
        return x

    def _data_init(self, x, condition, force):
        self.flow.data_init(x, condition, force=force)

    def distribution(self, condition) -> tfd.Distribution:
        """p(. | condition) as a ``TransformedDistribution``: batch ``[batch]``, event ``[D]``."""
        c = self._check_condition(condition)
        base = tfd.MultivariateNormalDiag(loc=tf.zeros([tf.shape(c)[0], self.event_size]))
        return tfd.TransformedDistribution(base, self.flow.bijector(c))
