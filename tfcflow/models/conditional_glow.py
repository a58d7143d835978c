"""SRFlow-style conditional Glow: a multi-scale flow whose every step sees condition features.

    features_l = encoder(c)_l                          one map per level (ConditionEncoder)
    y = dequantize(x)                                  (dequantize.py)
    z = MultiScaleFlow(y; features)                    injectors, couplings and split priors see features_l
    log p(x | c) = log N(z; 0, I) + log|det dz/dy| - D log 256
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf
from tensorflow_probability import bijectors as tfb, distributions as tfd

from tfcflow.bijectors.dequantize import UniformDequantization
from tfcflow.models.gaussian import standard_normal_log_prob
from tfcflow.models.image_blocks import check_image_shape
from tfcflow.models.image_flow import ImageFlowModel, piece_temperatures
from tfcflow.models.multiscale_flow import MultiScaleFlow
from tfcflow.networks import ConditionEncoder


@keras.saving.register_keras_serializable(package="tfcflow")
class ConditionalGlow(ImageFlowModel):
    """Conditional multi-scale Glow (SRFlow design).

    Args:
      image_shape: ``(H, W, C)`` of x; H and W divisible by ``2^levels``.
      condition_shape: an image ``(h, w, c)`` (any size: resized to H x W by the encoder; e.g. a
        low-resolution image, a masked image + mask, a grayscale image) or a vector ``(d,)``
        (e.g. a one-hot class).
      levels, steps_per_level, hidden_channels, transition_steps, injector, learned_prior,
      prior_hidden_channels, scale, clamp, lu, seed: see ``MultiScaleFlow``.
      encoder_channels: width of the condition encoder.
    """

    def __init__(self, image_shape: Sequence[int], condition_shape: Sequence[int], levels: int = 3,
                 steps_per_level: int = 8, hidden_channels: int = 64, transition_steps: int = 2,
                 encoder_channels: int = 32, injector: bool = True, learned_prior: bool = True,
                 prior_hidden_channels: int = 32, scale: str = "exp_tanh", clamp: float = 2.0,
                 lu: bool = True, seed: int = 0, **kwargs):
        image_shape = tuple(int(d) for d in image_shape)
        check_image_shape(image_shape, levels, name="image")
        if len(condition_shape) not in (1, 3):
            raise ValueError(f"condition_shape must be an image (h, w, c) or a vector (d,), got "
                             f"{tuple(condition_shape)}")
        super().__init__(image_shape, condition_shape, levels, **kwargs)
        self._config = dict(image_shape=list(image_shape), condition_shape=list(condition_shape),
                            levels=levels, steps_per_level=steps_per_level, hidden_channels=hidden_channels,
                            transition_steps=transition_steps, encoder_channels=encoder_channels,
                            injector=injector, learned_prior=learned_prior,
                            prior_hidden_channels=prior_hidden_channels, scale=scale, clamp=clamp, lu=lu,
                            seed=seed)
        self.encoder = ConditionEncoder(image_shape[:2], levels, encoder_channels, name="encoder")
        self.encoder.build((None,) + tuple(condition_shape))
        self.flow = MultiScaleFlow(levels, steps_per_level, hidden_channels, transition_steps, injector,
                                   learned_prior, prior_hidden_channels, scale, clamp, lu=lu, seed=seed,
                                   name="flow")
        self.flow.build((None,) + image_shape, self.encoder.feature_shapes())
        self.built = True

    def _bijector(self, condition):
        return self.flow.bijector(self.encoder(condition))

    def _log_prob_dequantized(self, v, condition):
        y, ld_dequant = UniformDequantization().inverse_and_log_det(v)
        z, ld = self._bijector(condition).inverse_and_log_det(y)
        return standard_normal_log_prob(z) + ld + ld_dequant

    def _sample_dequantized(self, condition, temperatures, seed):
        bijector = self._bijector(condition)
        scale = piece_temperatures(temperatures, bijector.piece_shapes, range(self.num_levels))
        z = scale * self._batch_noise("normal", tf.stack([tf.shape(condition)[0], self.event_size]), seed)
        y, _ = bijector.forward_and_log_det(z)
        v, _ = UniformDequantization().forward_and_log_det(y)
        return v

    def _data_init_dequantized(self, v, condition, force):
        y, _ = UniformDequantization().inverse_and_log_det(v)
        self.flow.data_init(y, self.encoder(condition), force=force)

    def distribution(self, condition) -> tfd.Distribution:
        """p(v | condition) over dequantized pixel values ``v = x_uint8 + u`` in [0, 256), as a
        ``TransformedDistribution``: batch ``[batch]``, event ``image_shape``."""
        c = self._check_condition(condition)
        base = tfd.MultivariateNormalDiag(loc=tf.zeros([tf.shape(c)[0], self.event_size]))
        return tfd.TransformedDistribution(base, tfb.Chain([UniformDequantization(), self._bijector(c)]))

    def get_config(self):
        return {**super().get_config(), **self._config}
