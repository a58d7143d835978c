"""The relaxed-condition flow of Xiao, Yan & Amit (2019), Sections 3-4.

One UNCONDITIONAL invertible network f maps the padded data ``[x, x0]`` to ``[z, c~]``; the
condition enters only through the density of ``c~``, relaxed around the true condition::

    [z, c~] = f([x, x0]),   x0 = zero padding (+ noise of std sigma0 in training)
    log p([x, x0] | c) = log N(z; 0, I) + log N(c~; c, eps^2 I) + log|det df/d[x, x0]|   (eq. 6)

Training maximizes eq. 6 with freshly drawn ``x0 ~ N(0, sigma0^2 I)`` every step: one loss, no
weighting. Sampling draws ``z ~ N(0, I)``, ``c~ ~ N(c, eps^2 I)`` and inverts. Because c is not
an input of f, the forward pass also infers it: ``infer_condition(x)`` returns c~ (for a one-hot
label, approximately the one-hot vector; its argmax is a class prediction).

Density of x alone: ``p(x | c) = integral p([x, x0] | c) dx0`` (eq. 7). With ``q = N(0, sigma0^2 I)``
the padding density, ``log p([x, x0] | c) - log q(x0)`` with ``x0 ~ q`` is an unbiased estimate of
a lower bound of ``log p(x | c)`` (exact when f keeps x0 independent of x). Its gradient equals the
paper's loss gradient (``q`` has no parameters), so the training loss reported here is this bound
and is comparable with other models' exact NLL of x.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import keras
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow import _checks, _random
from tfcflow.models.gaussian import normal_log_prob, standard_normal_log_prob
from tfcflow.models.rows import WHOLE, Rows, batch_noise
from tfcflow.models.vector_blocks import (Coupling, Network, coupling_flow, migrate_coupling_config,
                                          migrate_network_config, refuse_legacy_coupling_args)
from tfcflow.models.vector_flow import VectorFlowModel


@keras.saving.register_keras_serializable(package="tfcflow")
class RelaxedConditionFlow(VectorFlowModel):
    """Relaxed-condition conditional flow on vectors (see module docstring).

    Args:
      event_shape: ``D`` or ``(D,)``, the size of x.
      condition_shape: ``M`` or ``(M,)``, the size of the condition c (and of c~); with a
        ``summary_network``, the raw observation's shape (c is then the network's output).
      padding_dim: size of the zero padding x0 (default M, so that z has the size of x). The
        latent z has ``D + padding_dim - M >= 1`` dims.
      epsilon: std of the relaxed condition, ``c~ ~ N(c, epsilon^2)`` (paper: 0.1), in the units
        the flow sees (standardized units when ``standardize``); or ``"learned"``: one std per
        condition dimension, a trainable weight (``log_epsilon``, starting at 0.1) fitted with the
        flow. epsilon is the forward process's noise in this model: p(c~ | x) is a Gaussian of std
        epsilon around the flow's prediction, and the padding cannot carry the simulator's noise
        (it is drawn independently of c). A fixed small epsilon suits a (nearly) deterministic
        forward process, as in the paper; for a noisy simulator a small fixed epsilon gives an
        over-confident posterior centred on the inverse of the mean forward map
        (measured on sbibm's tasks: docs/history.md, 2026-12-05), and ``"learned"`` fits the noise.
      padding_noise: std sigma0 of the training noise on the padding (paper: 0.05).
      depth, width, network, coupling, mixing: the coupling blocks, as in ``ConditionalRealNVP``
        (the networks here see no condition); so are actnorm and seed.
      standardize, bounds, bounds_method, summary_network: vector_flow.py.

    The training padding noise is drawn from the seed given to ``compile``.

    Shapes: x ``[batch, D]``, condition ``[batch, M]``. ``distribution(c)`` is over the PADDED
    vector ``[v, x0]`` (the paper's eq. 6: the flow is a bijection of that space only), with ``v``
    the standardized x (x itself when ``standardize=False`` and there are no ``bounds``).
    """

    def __init__(self, event_shape: Union[int, Sequence[int]], condition_shape: Union[int, Sequence[int]],
                 padding_dim: Optional[int] = None, epsilon: Union[float, str] = 0.1, padding_noise: float = 0.05,
                 depth: int = 8, width: int = 512, network: Union[str, dict, Network] = "mlp",
                 coupling: Union[str, dict, Coupling] = "affine", mixing: str = "permutation", actnorm: bool = False,
                 standardize: bool = True, bounds: Optional[Sequence[Sequence[Optional[float]]]] = None,
                 bounds_method: str = "map", summary_network=None, seed: int = 0, **kwargs):
        refuse_legacy_coupling_args(kwargs)
        learned = isinstance(epsilon, str)
        if learned and epsilon != "learned":
            raise ValueError(f"epsilon must be a number > 0 or 'learned', got {epsilon!r}")
        if not learned:
            epsilon = _checks.check_positive(epsilon, "epsilon")
        padding_noise = _checks.check_positive(padding_noise, "padding_noise")
        super().__init__(event_shape, condition_shape, standardize=standardize, bounds=bounds,
                         summary_network=summary_network, bounds_method=bounds_method, **kwargs)
        event_dim, condition_dim = self.event_size, self.feature_dim
        padding_dim = condition_dim if padding_dim is None else padding_dim
        if isinstance(padding_dim, bool) or not isinstance(padding_dim, int) or padding_dim < 0:
            raise ValueError(f"padding_dim must be an integer >= 0, got {padding_dim!r}")
        total = event_dim + padding_dim
        if total - condition_dim < 1:
            raise ValueError(f"event size + padding_dim ({event_dim} + {padding_dim}) must exceed the condition "
                             f"size ({condition_dim}) so that z has at least one dimension")
        event_shape, condition_shape = self.event_shape, self.condition_shape
        spec, network_spec = Coupling.of(coupling), Network.of(network)
        coupling, network = spec.to_config(), network_spec.to_config()
        self._record_config(locals())
        self.epsilon, self.padding_noise = epsilon, padding_noise
        self.padding_dim = padding_dim
        self.latent_dim = total - condition_dim
        self.flow = coupling_flow(total, depth, width, actnorm, seed, network=network_spec, coupling=spec,
                                  mixing=mixing)
        self.flow.build((None, total))
        self.log_epsilon = None
        if learned:
            self.log_epsilon = self.add_weight(shape=(condition_dim,), name="log_epsilon", trainable=True,
                                               initializer=keras.initializers.Constant(math.log(0.1)))
        self.built = True

    @classmethod
    def migrate_config(cls, config: dict) -> dict:
        return migrate_network_config(migrate_coupling_config(super().migrate_config(config)))

    @property
    def relaxation(self):
        """The std of c~ around c: epsilon, or ``exp(log_epsilon)`` ``[M]`` when learned."""
        return self.epsilon if self.log_epsilon is None else tf.exp(self.log_epsilon)

    # ---- the paper's quantities (on v, the flow's space, and the condition features f) ------------
    def _pad(self, v, x0=None):
        if x0 is None:
            x0 = tf.zeros([tf.shape(v)[0], self.padding_dim], v.dtype)
        return tf.concat([v, x0], axis=-1)

    def _split_latent(self, latent):
        return latent[:, :self.latent_dim], latent[:, self.latent_dim:]

    def _joint_log_prob(self, padded, features):
        latent, log_det = self.flow.bijector().inverse_and_log_det(padded)
        z, c_tilde = self._split_latent(latent)
        return (standard_normal_log_prob(z) + normal_log_prob(c_tilde, features, self.relaxation)
                + log_det)

    def _padding_log_prob(self, x0):
        return normal_log_prob(x0, 0.0, self.padding_noise)

    def joint_log_prob(self, padded_x, condition) -> tf.Tensor:
        """Eq. 6: log p([v, x0] | c), on the flow's space (see class docstring).
        Shapes: padded_x ``[batch, D + padding_dim]`` -> ``[batch]``."""
        padded = _checks.as_tensor(padded_x, "padded_x")
        _checks.check_shape(padded, "padded_x", (None, self.event_size + self.padding_dim))
        padded = _checks.check_finite(padded, "padded_x")
        c = self._check_condition(condition)
        return self._joint_log_prob(_checks.check_same_batch(padded, "padded_x", c, "condition"), self._features(c))

    def _flow_log_prob(self, v, features):
        # Plug-in estimate of log p(v | c) at x0 = 0 (deterministic): exact when f keeps the
        # padding independent of v, as training drives it to.
        x0 = tf.zeros([tf.shape(v)[0], self.padding_dim], v.dtype)
        return self._joint_log_prob(self._pad(v, x0), features) - self._padding_log_prob(x0)

    def _flow_training_log_prob(self, v, features, seed, rows):
        x0 = self.padding_noise * self._training_noise("normal", tf.stack([tf.shape(v)[0], self.padding_dim]), seed,
                                                       rows)
        return self._joint_log_prob(self._pad(v, x0), features) - self._padding_log_prob(x0)

    def importance_log_prob(self, x, condition, num_samples: int = 1, seed=0) -> tf.Tensor:
        """``log (1/K) sum_k p([x, x0_k] | c) / q(x0_k)``, ``x0_k ~ q = N(0, sigma0^2)``: a stochastic
        lower bound of log p(x | c) (in expectation) that tightens as K grows. ``[batch]``."""
        k = _checks.check_positive_int(num_samples, "num_samples")
        x, c = self._check_pair(x, condition)
        v, ld, outside = self._to_flow_space(x)
        f = self._features(c)
        batch = tf.shape(v)[0]
        x0 = self.padding_noise * _random.normal(
            tf.stack([k * batch, self.padding_dim]), _random.seed_tensor(seed))
        vs, fs = tf.tile(v, [k, 1]), tf.tile(f, [k, 1])
        w = self._joint_log_prob(self._pad(vs, x0), fs) - self._padding_log_prob(x0)
        w = tf.reshape(w, [k, batch])
        lp = tf.reduce_logsumexp(w, axis=0) - math.log(k) + ld
        return lp if outside is None else tf.where(outside, tf.constant(-math.inf), lp)

    def infer_condition(self, x, padding_seed=None) -> tf.Tensor:
        """c~ of the forward pass (``x0 = 0``, or padding noise drawn with ``padding_seed``), in the
        condition's units (the summary network's output space when there is one): the model's
        prediction of the condition (the forward process, y from x). For one-hot conditions its
        argmax is the predicted class. ``[batch, D]`` -> ``[batch, M]``."""
        v, _, _ = self._to_flow_space(self._check_x(x))
        x0 = None
        if padding_seed is not None:
            x0 = self.padding_noise * _random.normal(
                tf.stack([tf.shape(v)[0], self.padding_dim]), _random.seed_tensor(padding_seed))
        latent, _ = self.flow.bijector().inverse_and_log_det(self._pad(v, x0))
        return self._condition_from_features(self._split_latent(latent)[1])

    def _flow_sample(self, features, temperature, seed, rows: Rows = WHOLE):
        batch = tf.shape(features)[0]
        noise = batch_noise("normal", tf.stack([batch, self.latent_dim + self.feature_dim]), seed, rows)
        z = temperature * noise[:, :self.latent_dim]
        c_tilde = features + temperature * self.relaxation * noise[:, self.latent_dim:]
        padded, _ = self.flow.bijector().forward_and_log_det(tf.concat([z, c_tilde], axis=-1))
        return padded[:, :self.event_size]

    def _flow_data_init(self, v, features, force):
        # the padding as training sees it (noisy): zeros would give ActNorm a zero variance
        x0 = self.padding_noise * _random.normal(tf.stack([tf.shape(v)[0], self.padding_dim]), [0, 0])
        self.flow.data_init(self._pad(v, x0), force=force)

    def distribution(self, condition) -> tfd.Distribution:
        """p([v, x0] | condition) (eq. 6) as a ``TransformedDistribution`` over the PADDED vector:
        batch ``[batch]``, event ``[D + padding_dim]``; samples are ``[v, x0]``."""
        f = self._features(self._check_condition(condition))
        batch = tf.shape(f)[0]
        loc = tf.concat([tf.zeros([batch, self.latent_dim]), f], axis=-1)
        scale = tf.concat([tf.ones([self.latent_dim]),
                           self.relaxation * tf.ones([self.feature_dim])], axis=0)
        base = tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
        return tfd.TransformedDistribution(base, self.flow.bijector())
