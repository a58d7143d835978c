"""cINN: a RealNVP-style flow whose every coupling network also sees the condition.

    log p(x | c) = log N(z; 0, I) + log|det dz/dx|,   z = f(x; c)
    sampling:     x = f^{-1}(z; c),  z ~ N(0, temperature^2 I)
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import keras
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow.models.gaussian import standard_normal_log_prob
from tfcflow.models.rows import WHOLE, Rows, batch_noise
from tfcflow.models.vector_blocks import (Coupling, Network, coupling_flow, migrate_coupling_config,
                                          migrate_network_config, refuse_legacy_coupling_args)
from tfcflow.models.vector_flow import VectorFlowModel


@keras.saving.register_keras_serializable(package="tfcflow")
class ConditionalRealNVP(VectorFlowModel):
    """Conditional coupling flow on vectors (cINN, Ardizzone et al. 2019).

    Args (the shared vocabulary: docs/architecture.md):
      event_shape: ``D`` or ``(D,)``, the size of x.
      condition_shape: ``M`` or ``(M,)``, the size of the condition vector (e.g. a one-hot label,
        or an observation); with a ``summary_network``, the raw observation's shape.
      depth: coupling blocks; each = two conditional couplings (one per half) + a mixing of the
        features (+ ActNorm first if ``actnorm``).
      width: the units of every hidden layer of the coupling networks.
      network: ``"mlp"`` or ``"residual"``, or a ``Network`` (a dict in a config) with its
        settings: ``hidden_layers`` (2), ``activation`` (``"relu"``) and ``dropout`` (0; the rate
        after the hidden layers while training, seeded by the step, off in ``log_prob`` /
        ``sample``: a regularizer for small simulation budgets). ``"residual"``: hidden layers
        are residual blocks whose outputs the condition gates (neural spline flows' conditioner:
        tfcflow.networks.ResidualNetwork). vector_blocks.Network.
      coupling: ``"affine"``, ``"spline"`` or ``"hybrid"``, or a ``Coupling`` (a dict in a config)
        with its settings: the spline's ``bins`` and ``bound``, the affine ``scale`` (``"exp_tanh"``,
        can expand and contract; or ``"sigmoid"``, Glow) and ``clamp`` (per-coupling scale in
        ``(e^-clamp, e^clamp)``); a setting the kind does not use is refused (vector_blocks.Coupling).
      mixing: ``"permutation"`` (fixed, random; default) or ``"lu"`` (a learned invertible matrix
        in LU form, initialized to a random rotation; better for low-dimensional, curved
        posteriors: docs/history.md, 2026-12-03).
      actnorm: an ActNorm at the start of every block (data-dependent initialization).
      standardize, bounds, bounds_method, summary_network: vector_flow.py (standardization on by default).
      seed: seed of the permutations / initial rotations.

    Shapes: x ``[batch, D]``, condition ``[batch, M]`` (or ``[batch, *condition_shape]``).
    ``distribution(c)`` is over x.
    """

    def __init__(self, event_shape: Union[int, Sequence[int]], condition_shape: Union[int, Sequence[int]],
                 depth: int = 8, width: int = 512, network: Union[str, dict, Network] = "mlp",
                 coupling: Union[str, dict, Coupling] = "affine", mixing: str = "permutation", actnorm: bool = False,
                 standardize: bool = True, bounds: Optional[Sequence[Sequence[Optional[float]]]] = None,
                 bounds_method: str = "map", summary_network=None, seed: int = 0, **kwargs):
        refuse_legacy_coupling_args(kwargs)
        super().__init__(event_shape, condition_shape, standardize=standardize, bounds=bounds,
                         summary_network=summary_network, bounds_method=bounds_method, **kwargs)
        event_shape, condition_shape = self.event_shape, self.condition_shape
        spec, network_spec = Coupling.of(coupling), Network.of(network)
        coupling, network = spec.to_config(), network_spec.to_config()
        self._record_config(locals())
        self.flow = coupling_flow(self.event_size, depth, width, actnorm, seed, network=network_spec, coupling=spec,
                                  mixing=mixing)
        self.flow.build((None, self.event_size), (None, self.feature_dim))
        self.built = True

    @classmethod
    def migrate_config(cls, config: dict) -> dict:
        return migrate_network_config(migrate_coupling_config(super().migrate_config(config)))

    def _flow_log_prob(self, v, features):
        z, log_det = self.flow.bijector(features).inverse_and_log_det(v)
        return standard_normal_log_prob(z) + log_det

    def _flow_sample(self, features, temperature, seed, rows: Rows = WHOLE):
        shape = tf.stack([tf.shape(features)[0], self.event_size])
        z = temperature * batch_noise("normal", shape, seed, rows)
        v, _ = self.flow.bijector(features).forward_and_log_det(z)
        return v

    def _flow_data_init(self, v, features, force):
        self.flow.data_init(v, features, force=force)

    def distribution(self, condition) -> tfd.Distribution:
        """p(. | condition) as a ``TransformedDistribution``: batch ``[batch]``, event ``[D]``, over x
        in original units (the standardization and the support map included)."""
        f = self._features(self._check_condition(condition))
        base = tfd.MultivariateNormalDiag(loc=tf.zeros([tf.shape(f)[0], self.event_size]))
        return tfd.TransformedDistribution(base, self._distribution_bijector(self.flow.bijector(f)))
