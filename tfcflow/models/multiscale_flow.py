"""The Glow / SRFlow multi-scale flow as a Keras layer (owns every level's variables).

Level l of L (normalizing direction; CAFLOW Appendix A.1, SRFlow)::

    squeeze -> `transition_steps` x (ActNorm, 1x1 conv) -> K x flow step -> split (l < L-1)

flow step = ActNorm -> 1x1 conv -> [affine injector] -> (conditional) affine coupling. At each split
the half that leaves the flow gets a learned Gaussian prior conditioned on the kept half (and on the
level's condition features when conditional), or N(0, I) with ``learned_prior=False``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from tfcflow.bijectors import FlowLayer, FlowSequence, SqueezeLayer
from tfcflow.bijectors.multiscale import MultiScale, spatial_size
from tfcflow.bijectors.split_prior import SplitPriorLayer
from tfcflow.models.image_blocks import check_image_shape, flow_step, transition_step
from tfcflow.networks import ConvNetwork


@keras.saving.register_keras_serializable(package="tfcflow")
class MultiScaleFlow(FlowLayer):
    """Multi-scale (conditional) Glow on NHWC images; see module docstring.

    Args:
      levels: number of scales L (H and W must be divisible by 2^L).
      depth: flow steps K per level.
      width: hidden channels of the coupling / injector networks.
      transition_steps: (ActNorm, 1x1) pairs after each squeeze (CAFLOW/SRFlow: 2; Glow: 0).
      injector: add an affine injector to each flow step when conditional.
      learned_prior: learned split priors (else N(0, I) for the split-off halves).
      prior_width: hidden channels of the prior network (0: a single 3x3 conv, as Glow).
      scale, clamp: coupling / injector scale parametrization (affine_scale.py).
      prior_clamp: bound of the prior's log-std.
      lu: LU-parametrized 1x1 convolutions.
      seed: seed of the 1x1 convolutions' initial rotations.

    Build with ``input_shape`` ``(batch, H, W, C)`` -- H, W may be None: the weights depend only on
    C, and the flow runs at any size divisible by 2^L -- and ``condition_shape=None``
    (unconditional) or a list of L shapes, one per level, each ``(batch, H / 2^(l+1), W / 2^(l+1),
    channels)``: the condition features that level's steps see. Calling the layer / its bijector
    maps images ``[batch, H, W, C]`` to flat latents ``[batch, H*W*C]`` (see ``MultiScale`` for the
    piece layout).
    """

    def __init__(self, levels: int = 3, depth: int = 8, width: int = 64,
                 transition_steps: int = 2, injector: bool = True, learned_prior: bool = True,
                 prior_width: int = 32, scale: str = "exp_tanh", clamp: float = 2.0,
                 prior_clamp: float = 3.0, lu: bool = True, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.levels = int(levels)
        self.depth = int(depth)
        self.width = int(width)
        self.transition_steps = int(transition_steps)
        self.injector = bool(injector)
        self.learned_prior = bool(learned_prior)
        self.prior_width = int(prior_width)
        self.scale = scale
        self.clamp = float(clamp)
        self.prior_clamp = float(prior_clamp)
        self.lu = bool(lu)
        self.seed = int(seed)
        if self.levels < 1 or self.depth < 0:
            raise ValueError(f"levels must be >= 1 and depth >= 0, got {levels}, {depth}")
        self._conditional = False
        self._image_shape = None
        self._piece_layout = []

    @property
    def conditional(self) -> bool:
        return self._conditional

    @property
    def piece_layout(self) -> list:
        """``(f, c)`` per latent piece (split-off halves, then the rest): ``[H / f, W / f, c]``."""
        return list(self._piece_layout)

    @property
    def piece_shapes(self) -> list:
        """Shapes ``(h, w, c)`` of the latent pieces at the built size (None where it is unknown)."""
        return [tuple(None if d is None else d // f for d in self._image_shape[:2]) + (c,)
                for f, c in self._piece_layout]

    def level_shapes(self, image_shape: Sequence[Optional[int]]) -> list:
        """``(h, w, c)`` of the activations inside each level (after its squeeze; None: any size)."""
        h, w, c = image_shape
        shapes = []
        for l in range(self.levels):
            h, w, c = (None if h is None else h // 2), (None if w is None else w // 2), 4 * c
            shapes.append((h, w, c))
            c = c // 2
        return shapes

    def build(self, input_shape, condition_shape: Optional[Sequence] = None):
        super().build(input_shape)
        image_shape = tuple(None if d is None else int(d) for d in input_shape[1:])
        check_image_shape(image_shape, self.levels, name=f"{self.name}: image")
        self._image_shape = image_shape
        self._conditional = condition_shape is not None
        level_shapes = self.level_shapes(image_shape)
        if self._conditional:
            if len(condition_shape) != self.levels:
                raise ValueError(f"{self.name}: need one condition feature shape per level "
                                 f"({self.levels}), got {len(condition_shape)}")
            for l, (cs, ls) in enumerate(zip(condition_shape, level_shapes)):
                if any(a is not None and b is not None and a != b for a, b in zip(cs[1:3], ls[:2])):
                    raise ValueError(f"{self.name}: level {l} condition features must be {ls[0]}x{ls[1]}, "
                                     f"got shape {list(cs)}")
        self.level_flows, self.priors, self._piece_layout = [], [], []
        shape = (None,) + image_shape
        for l, (h, w, c) in enumerate(level_shapes):
            prefix = f"{self.name}_l{l}"
            cond = condition_shape[l] if self._conditional else None
            steps = [SqueezeLayer(name=f"{prefix}_squeeze")]
            for t in range(self.transition_steps):
                steps += transition_step(f"{prefix}_t{t}", self.lu, self.seed + 1000 * l + t)
            for k in range(self.depth):
                steps += flow_step(f"{prefix}_k{k}", c, self.width, self._conditional,
                                   self.injector, self.scale, self.clamp, self.lu,
                                   self.seed + 1000 * l + 100 + k)
            seq = FlowSequence(steps, name=f"{prefix}_steps")
            seq.build(shape, cond)
            self.level_flows.append(seq)
            if l < self.levels - 1:
                if self.learned_prior:
                    prior = SplitPriorLayer(ConvNetwork(2 * (c - c // 2), self.prior_width,
                                                        name=f"{prefix}_prior_net"),
                                            clamp=self.prior_clamp, name=f"{prefix}_prior")
                    prior.build((None, h, w, c), cond)
                    self.priors.append(prior)
                self._piece_layout.append((2 ** (l + 1), c - c // 2))
                shape = (None, h, w, c // 2)
            else:
                self._piece_layout.append((2 ** (l + 1), c))

    def _level_conditions(self, condition):
        if not self._conditional:
            if condition is not None:
                raise ValueError(f"{self.name}: this flow is unconditional; got a condition")
            return [None] * self.levels
        if condition is None or len(condition) != self.levels:
            raise ValueError(f"{self.name}: needs a list of {self.levels} condition feature maps, "
                             f"got {None if condition is None else len(condition)}")
        return list(condition)

    def bijector(self, condition=None, size=None) -> MultiScale:
        """The view for images of ``size`` ``(H, W)``: by default the size the level-0 condition
        features imply (they are at ``H/2 x W/2``), else the built size (None if built without
        one: then only the normalizing direction works)."""
        conds = self._level_conditions(condition)
        levels = [f.bijector(c) for f, c in zip(self.level_flows, conds)]
        priors = [None] * (self.levels - 1)
        if self.learned_prior:
            priors = [p.bijector(c) for p, c in zip(self.priors, conds)]
        if size is None:
            size = ([2 * d for d in spatial_size(conds[0])] if self._conditional
                    else None if None in self._image_shape[:2] else self._image_shape[:2])
        return MultiScale(levels, priors, self._piece_layout, size, name=self.name)

    def data_init(self, x, condition=None, force: bool = False):
        priors = self.priors if self.learned_prior else [None] * (self.levels - 1)
        initialize_levels(self.level_flows, priors, self._level_conditions(condition), x, force)

    def output_shape_for(self, input_shape):
        h, w = input_shape[1:3]
        return (input_shape[0], None if h is None or w is None else h * w * int(input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "levels": self.levels, "depth": self.depth,
                "width": self.width, "transition_steps": self.transition_steps,
                "injector": self.injector, "learned_prior": self.learned_prior,
                "prior_width": self.prior_width, "scale": self.scale,
                "clamp": self.clamp, "prior_clamp": self.prior_clamp, "lu": self.lu, "seed": self.seed}


def initialize_levels(levels: Sequence[FlowLayer], priors: Sequence, conditions: Sequence, x, force: bool) -> None:
    """The data-dependent initialization walk of a multi-scale flow (normalizing order): level l is
    initialized on the activations reaching it, then mapped; at each split (all but the last
    level) the split prior, if any, maps them and the first half of the channels goes on."""
    h = tf.convert_to_tensor(x)
    for l, (flow, c) in enumerate(zip(levels, conditions)):
        flow.data_init(h, c, force=force)
        h, _ = flow.bijector(c).inverse_and_log_det(h)
        if l < len(levels) - 1:
            if priors[l] is not None:
                h, _ = priors[l].bijector(c).inverse_and_log_det(h)
            h = h[..., :h.shape[-1] // 2]
