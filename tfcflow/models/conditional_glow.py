"""SRFlow-style conditional Glow: a multi-scale flow whose every step sees condition features.

    features_l = encoder(c)_l                          one map per level (ConditionEncoder)
    y = dequantize(x)                                  (dequantize.py)
    z = MultiScaleFlow(y; features)                    injectors, couplings and split priors see features_l
    log p(x | c) = log N(z; 0, I) + log|det dz/dy| - D log 256
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import keras

from tfcflow.bijectors.multiscale import spatial_size
from tfcflow.models.image_flow import ImageFlowModel, Residual, image_coupling, mixing_is_lu
from tfcflow.models.multiscale_flow import MultiScaleFlow
from tfcflow.models.specs import spec_config, spec_of
from tfcflow.models.vector_blocks import Coupling
from tfcflow.networks import ConditionEncoder

#: the fields of ``Conditioning`` and their defaults
CONDITIONING_FIELDS = {"encoder_width": 32, "injector": True, "learned_prior": True, "prior_width": 32}


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """How ``ConditionalGlow``'s flow sees the condition, SRFlow's design (the one ``kind``,
    ``"srflow"``): a condition encoder of ``encoder_width`` feature channels per level; an affine
    ``injector`` in every flow step (a scale and shift of the activations from the features);
    ``learned_prior``: each split-off half's prior predicted from the kept half and the features,
    by a network of ``prior_width`` hidden channels (0: one 3x3 conv, as Glow), else N(0, I).
    Fields left None take ``CONDITIONING_FIELDS``.

    In a model's config: ``"srflow"`` or a dict, e.g. ``{"kind": "srflow", "encoder_width": 24,
    "prior_width": 16}``.
    """

    kind: str = "srflow"
    encoder_width: Optional[int] = None
    injector: Optional[bool] = None
    learned_prior: Optional[bool] = None
    prior_width: Optional[int] = None

    def __post_init__(self):
        if self.kind != "srflow":
            raise ValueError(f"conditioning kind must be 'srflow', got {self.kind!r}")
        for name, default in CONDITIONING_FIELDS.items():
            value = getattr(self, name)
            least = 1 if name == "encoder_width" else 0
            if value is None:
                object.__setattr__(self, name, default)
            elif isinstance(default, bool) and not isinstance(value, bool):
                raise ValueError(f"conditioning {name} must be true or false, got {value!r}")
            elif not isinstance(default, bool) and (isinstance(value, bool) or not isinstance(value, int)
                                                    or value < least):
                raise ValueError(f"conditioning {name} must be an integer >= {least}, got {value!r}")

    @classmethod
    def of(cls, value: Union[str, dict, "Conditioning"]) -> "Conditioning":
        """A ``Conditioning`` from its kind, a dict of its fields, or itself."""
        return spec_of(cls, value, "conditioning", "'srflow', a dict of its fields or a tfcflow.models.Conditioning")

    def to_config(self) -> Union[str, dict]:
        """The kind alone when every field is its default, else a dict (what ``of`` reads)."""
        return spec_config(self, CONDITIONING_FIELDS)


def migrate_conditioning_config(config: dict) -> dict:
    """A ``ConditionalGlow`` config with ``encoder_width``, ``injector``, ``learned_prior`` and
    ``prior_width`` (configs, runs and saves written before ``Conditioning`` grouped them) folded
    into ``conditioning``. A config without them is returned as it is."""
    old = {k: config[k] for k in CONDITIONING_FIELDS if k in config}
    if not old:
        return config
    config = {k: v for k, v in config.items() if k not in CONDITIONING_FIELDS}
    spec = Conditioning.of(config.get("conditioning", "srflow"))
    fields = {name: getattr(spec, name) for name in CONDITIONING_FIELDS}
    config["conditioning"] = Conditioning(**{**fields, **old}).to_config()
    return config


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
      levels, depth, width, transition_steps, seed: see ``MultiScaleFlow`` (depth = flow steps
        per level).
      conditioning: how the flow sees the condition: the encoder's width, injectors, learned
        split priors (a ``Conditioning``; ``"srflow"``, the default, or a dict of its fields).
      coupling: the flow steps' affine couplings: ``"affine"`` or ``{"kind": "affine", "scale":
        "exp_tanh" | "sigmoid", "clamp": 2.0}`` (a ``Coupling``; the vector models' spec).
      mixing: the 1x1 convolutions' form, ``"lu"`` (LU-parametrized, Glow) or ``"matrix"``.
    """

    @classmethod
    def migrate_config(cls, config: dict) -> dict:
        """Configs written before ``conditioning`` grouped the encoder width, injectors and priors."""
        return migrate_conditioning_config(super().migrate_config(config))

    def __init__(self, event_shape: Sequence[Optional[int]], condition_shape: Sequence[Optional[int]],
                 levels: int = 3, depth: int = 8, width: int = 64, transition_steps: int = 2,
                 conditioning: Union[str, dict, Conditioning] = "srflow",
                 coupling: Union[str, dict, Coupling] = "affine", mixing: str = "lu", seed: int = 0,
                 factor: Optional[int] = None, residual: Union[None, bool, str, dict, Residual] = None, **kwargs):
        if len(condition_shape) not in (1, 3):
            raise ValueError(f"condition_shape must be an image (h, w, c) or a vector (d,), got "
                             f"{tuple(condition_shape)}")
        spec = Residual.of(residual)
        residual = None if spec is None else spec.to_config()  # the config holds its normal form
        steps = image_coupling(coupling, kwargs)
        coupling = steps.to_config()
        old = sorted(set(kwargs) & set(CONDITIONING_FIELDS))
        if old:
            raise ValueError(f"{', '.join(old)}: settings of the conditioning now: pass conditioning={{'kind': "
                             f"'srflow', {old[0]!r}: ...}} or tfcflow.models.Conditioning(...)")
        cond = Conditioning.of(conditioning)
        conditioning = cond.to_config()
        super().__init__(event_shape, condition_shape, levels, factor=factor, residual=residual, **kwargs)
        self._record_config(locals())
        self.encoder = ConditionEncoder(levels, cond.encoder_width, factor=self.factor, name="encoder")
        self.encoder.build((None,) + tuple(self.condition_shape))
        self.flow = MultiScaleFlow(levels, depth, width, transition_steps, cond.injector, cond.learned_prior,
                                   cond.prior_width, steps.scale, steps.clamp, lu=mixing_is_lu(mixing), seed=seed,
                                   name="flow")
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
