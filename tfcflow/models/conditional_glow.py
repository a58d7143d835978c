"""SRFlow-style conditional Glow: a multi-scale flow whose every step sees condition features.

    features_l = encoder(c)_l                          one map per level (ConditionEncoder)
    y = dequantize(x)                                  (dequantize.py)
    z = MultiScaleFlow(y; features)                    injectors, couplings and split priors see features_l
    log p(x | c) = log N(z; 0, I) + log|det dz/dy| - D log 256
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import keras

from tfcflow.bijectors.multiscale import spatial_size
from tfcflow.models.image_flow import ImageFlowModel, Residual, image_coupling, mixing_is_lu
from tfcflow.models.vector_blocks import Coupling
from tfcflow.models.multiscale_flow import MultiScaleFlow
from tfcflow.networks import ConditionEncoder


@keras.saving.register_keras_serializable(package="tfcflow")
class ConditionalGlow(ImageFlowModel):
    """Conditional multi-scale Glow (SRFlow design), fully convolutional: one set of weights for
    every image size divisible by ``2^levels``.

    Args (the shared vocabulary: docs/architecture.md):
      event_shape: ``(H, W, C)`` of x -- H, W a default size (None, None: none); x may have any
        H, W divisible by ``2^levels`` (see ``ImageFlowModel``).
      condition_shape: an image ``(h, w, c)`` (h, w may be None; resized by ``factor`` to the
        target's size by the encoder; e.g. a low-resolution image, a masked image + mask, a
        grayscale image) or a vector ``(d,)`` (e.g. a one-hot class, broadcast over any size).
      factor: target size = image condition size x factor (default: from the two shapes, else 1).
      residual: model the image minus a base computed from the condition: None, "bicubic" or
        "learned", or a ``Residual`` with the learned base's width and depth (``ImageFlowModel``).
      levels, depth, width, transition_steps, injector, learned_prior, prior_width, seed: see
        ``MultiScaleFlow`` (depth = flow steps per level).
      coupling: the flow steps' affine couplings: ``"affine"`` or ``{"kind": "affine", "scale":
        "exp_tanh" | "sigmoid", "clamp": 2.0}`` (a ``Coupling``; the vector models' spec).
      mixing: the 1x1 convolutions' form, ``"lu"`` (LU-parametrized, Glow) or ``"matrix"``.
      encoder_width: channels of the condition encoder's features.
    """

    def __init__(self, event_shape: Sequence[Optional[int]], condition_shape: Sequence[Optional[int]],
                 levels: int = 3, depth: int = 8, width: int = 64, transition_steps: int = 2, encoder_width: int = 32,
                 injector: bool = True, learned_prior: bool = True, prior_width: int = 32,
                 coupling: Union[str, dict, Coupling] = "affine", mixing: str = "lu", seed: int = 0,
                 factor: Optional[int] = None, residual: Union[None, bool, str, dict, Residual] = None, **kwargs):
        if len(condition_shape) not in (1, 3):
            raise ValueError(f"condition_shape must be an image (h, w, c) or a vector (d,), got "
                             f"{tuple(condition_shape)}")
        spec = Residual.of(residual)
        residual = None if spec is None else spec.to_config()  # the config holds its normal form
        steps = image_coupling(coupling, kwargs)
        coupling = steps.to_config()
        super().__init__(event_shape, condition_shape, levels, factor=factor, residual=residual, **kwargs)
        self._record_config(locals())
        self.encoder = ConditionEncoder(levels, encoder_width, factor=self.factor, name="encoder")
        self.encoder.build((None,) + tuple(self.condition_shape))
        self.flow = MultiScaleFlow(levels, depth, width, transition_steps, injector, learned_prior, prior_width,
                                   steps.scale, steps.clamp, lu=mixing_is_lu(mixing), seed=seed, name="flow")
        self.flow.build((None,) + self.event_shape, self.encoder.feature_shapes(self.default_size))
        self.built = True

    def _features(self, condition):
        return self._features_at(condition, self._target_size(condition))

    def _features_at(self, condition, size):
        return self.encoder(condition, size=size)

    def _latent_bijector(self, features):
        # the size of the images comes with the features (level 0's are at H/2 x W/2)
        return self.flow.bijector(features)

    def _piece_levels(self):
        return range(self.levels)

    def _data_init_flow(self, y, condition, force):
        self.flow.data_init(y, self._features_at(condition, spatial_size(y)), force=force)
