"""SRFlow-style conditional Glow: a multi-scale flow whose every step sees condition features.

    features_l = encoder(c)_l                          one map per level (ConditionEncoder)
    y = dequantize(x)                                  (dequantize.py)
    z = MultiScaleFlow(y; features)                    injectors, couplings and split priors see features_l
    log p(x | c) = log N(z; 0, I) + log|det dz/dy| - D log 256
"""
from __future__ import annotations

from typing import Sequence

import keras

from tfcflow.bijectors.dequantize import UniformDequantization
from tfcflow.models.image_blocks import check_image_shape
from tfcflow.models.image_flow import ImageFlowModel
from tfcflow.models.multiscale_flow import MultiScaleFlow
from tfcflow.networks import ConditionEncoder


@keras.saving.register_keras_serializable(package="tfcflow")
class ConditionalGlow(ImageFlowModel):
    """Conditional multi-scale Glow (SRFlow design).

    Args (the shared vocabulary: docs/architecture.md):
      event_shape: ``(H, W, C)`` of x; H and W divisible by ``2^levels``.
      condition_shape: an image ``(h, w, c)`` (any size: resized to H x W by the encoder; e.g. a
        low-resolution image, a masked image + mask, a grayscale image) or a vector ``(d,)``
        (e.g. a one-hot class).
      levels, depth, width, transition_steps, injector, learned_prior, prior_width, scale, clamp,
        lu, seed: see ``MultiScaleFlow`` (depth = flow steps per level).
      encoder_width: channels of the condition encoder's features.
    """

    def __init__(self, event_shape: Sequence[int], condition_shape: Sequence[int], levels: int = 3,
                 depth: int = 8, width: int = 64, transition_steps: int = 2, encoder_width: int = 32,
                 injector: bool = True, learned_prior: bool = True, prior_width: int = 32,
                 scale: str = "exp_tanh", clamp: float = 2.0, lu: bool = True, seed: int = 0, **kwargs):
        event_shape = tuple(int(d) for d in event_shape)
        check_image_shape(event_shape, levels, name="image")
        if len(condition_shape) not in (1, 3):
            raise ValueError(f"condition_shape must be an image (h, w, c) or a vector (d,), got "
                             f"{tuple(condition_shape)}")
        super().__init__(event_shape, condition_shape, levels, **kwargs)
        self._record_config(locals())
        self.encoder = ConditionEncoder(event_shape[:2], levels, encoder_width, name="encoder")
        self.encoder.build((None,) + tuple(condition_shape))
        self.flow = MultiScaleFlow(levels, depth, width, transition_steps, injector, learned_prior, prior_width,
                                   scale, clamp, lu=lu, seed=seed, name="flow")
        self.flow.build((None,) + event_shape, self.encoder.feature_shapes())
        self.built = True

    def _features(self, condition):
        return self.encoder(condition)

    def _latent_bijector(self, features):
        return self.flow.bijector(features)

    def _piece_levels(self):
        return range(self.num_levels)

    def _data_init_dequantized(self, v, condition, force):
        y, _ = UniformDequantization().inverse_and_log_det(v)
        self.flow.data_init(y, self.encoder(condition), force=force)
