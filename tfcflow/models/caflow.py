"""CAFLOW: conditional autoregressive flows (Batzolis et al. 2021), Sections 4.1-4.3.

Two unconditional multi-scale flows encode the condition image y and the target image w into n
hierarchical latents (index 0 = coarsest)::

    R(y) = [D_{n-1}, ..., D_0],   T(w) = [L_{n-1}, ..., L_0],   L_i, D_i at resolution H / 2^(n-i)

and n conditional multi-scale flows G_i model the autoregressive factors (eq. 8)::

    P(L | D) = prod_i P(L_i | L_{i-1..0}, D_{i..0})

G_i's inverse F_i is a chain of levels f_i^i, f_{i-1}^i, ..., f_0^i (normalizing order):

    f_i^i: L_i -> [Z'_{i-1}, Z_i^i]        conditioned on D_i
    f_j^i: Z'_j -> [Z'_{j-1}, Z_j^i]       conditioned on (D_j, L_j),  0 < j < i
    f_0^i: Z'_0 -> Z_0^i                   conditioned on (D_0, L_0)

each level = M conditional flow steps (ActNorm, 1x1 conv, affine injector, conditional affine
coupling) at the level's input resolution, then (j > 0) squeeze, 2 transition steps (ActNorm,
1x1 conv) and a split; every Z has a N(0, I) prior. The log-likelihood is eq. 9::

    log p(w | y) = log|det dT/dw| + sum_i [ log N(Z^i; 0, I) + log|det dF_i/dL_i| ]

plus the dequantization term, and training maximizes ``log p(w | y) + lambda log p(y)`` with
``log p(y) = log N(R(y); 0, I) + log|det dR/dy|``.

Layout note: the paper lists "squeeze, 2 transition steps, M conditional flow steps, split" per
level. Here the M steps come first, at the resolution where D_j and L_j live, so the conditions
enter at their native resolution and no level needs H divisible by 2^(n+1) (MNIST 28x28 with
n = 2 would not allow the extra squeeze of f_0). Transitions still mix the squeezed channels before
every split.

Option:
- ``dual_glow``: DUAL-GLOW's assumption, P(L | D) = prod_i P(L_i | D_i): G_i is one level of
  M conditional steps on L_i conditioned on D_i only, no cross-scale terms.

The condition image is resized (bicubic) by ``factor`` to the target's spatial size before R, so D_i
and L_i share resolutions (x4 super-resolution feeds the upsampled low-resolution image, as in the
paper's setup); R models that continuous image (values in [-0.5, 0.5], plus 1/256-wide uniform
noise in training). All three flows are fully convolutional: one set of weights serves every
target size divisible by 2^n (latent shapes are computed from the condition's size x factor).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import keras
import tensorflow as tf

from tfcflow import _checks, _random
from tfcflow.bijectors import FlowBijector, FlowSequence, SqueezeLayer
from tfcflow.bijectors.dequantize import BINS, add_uniform_noise
from tfcflow.bijectors.multiscale import MultiScale, flatten_pieces, spatial_size, unflatten_pieces
from tfcflow.models.gaussian import standard_normal_log_prob
from tfcflow.models.image_blocks import flow_step, transition_step
from tfcflow.models.rows import WHOLE, Rows
from tfcflow.models.image_flow import ImageFlowModel, Residual, image_coupling, mixing_is_lu
from tfcflow.models.vector_blocks import Coupling
from tfcflow.models.multiscale_flow import MultiScaleFlow, initialize_levels


def _sum_normal(pieces) -> tf.Tensor:
    return tf.add_n([standard_normal_log_prob(p, event_ndims=3) for p in pieces])


class AutoregressiveLatents(FlowBijector):
    """For a fixed condition, CAFLOW's map from the (dequantized) target to all latents is one
    block-triangular bijection::

        inverse:  y -> T -> [L_0 .. L_{n-1}] -> z = [F_0(L_0), F_1(L_1; L_0), ..., F_{n-1}(L_{n-1}; L_<n-1)]
        forward:  L_i = G_i(z^i; L_<i) for i = 0 .. n-1, then y = T^{-1}([L_{n-1} .. L_0])
        log|det dz/dy| = log|det dT| + sum_i log|det dF_i|    (block-triangular Jacobian)

    z is the flat concatenation of every G_i's pieces (G_0's first).

    Args:
      target: the MultiScale view of T.
      g_view: ``g_view(i, latents) -> MultiScale`` view of G_i, its conditions bound (latents
        ``[L_0, ..]`` coarsest first; only ``L_<i`` are read).
      g_piece_layout: per G_i, ``(f, c)`` per piece: ``[H / f, W / f, c]`` for targets ``[H, W, C]``.
      size: ``(H, W)`` of the targets (ints or scalar tensors).
    """

    def __init__(self, target: MultiScale, g_view, g_piece_layout, size,
                 validate_args: bool = False, name: str = "caflow_latents"):
        self._target = target
        self._g_view = g_view
        self._g_layout = [list(p) for p in g_piece_layout]
        self._size = list(size)
        self._channels = target.channels
        super().__init__(event_ndims=3, latent_event_ndims=1, name=name, validate_args=validate_args)

    @property
    def piece_shapes(self) -> list:
        h, w = self._size
        return [(h // f, w // f, c) for layout in self._g_layout for f, c in layout]

    @property
    def piece_sizes(self) -> list:
        return [h * w * c for h, w, c in self.piece_shapes]

    def _inverse_and_log_det(self, y):
        pieces, total = self._target.encode(y)
        latents = pieces[::-1]
        zs = []
        for i in range(len(self._g_layout)):
            z, ld = self._g_view(i, latents).encode(latents[i])
            zs += z
            total += ld
        return flatten_pieces(zs), total

    def _forward_and_log_det(self, z):
        flat = unflatten_pieces(z, self.piece_shapes)
        latents, total, k = [], tf.zeros(tf.shape(z)[:1], z.dtype), 0
        for i, layout in enumerate(self._g_layout):
            pieces = flat[k:k + len(layout)]
            k += len(layout)
            l_i, ld = self._g_view(i, latents).decode(pieces)
            latents.append(l_i)
            total += ld
        y, ld = self._target.decode(latents[::-1])
        return y, total + ld

    def _forward_event_shape(self, input_shape):
        h, w = (d if isinstance(d, int) else None for d in self._size)
        return tf.TensorShape([h, w, self._channels])

    def _inverse_event_shape(self, output_shape):
        h, w = output_shape[0], output_shape[1]
        return tf.TensorShape([h * w * self._channels if h is not None and w is not None else None])

    def _forward_event_shape_tensor(self, input_shape):
        return tf.stack([*self._size, self._channels])

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.reshape(tf.reduce_prod(output_shape), [1])


FLOWS = ("condition", "target", "latent")
DEFAULT_DEPTH = {"condition": 16, "target": 32, "latent": 12}
DEFAULT_WIDTH = {"condition": 64, "target": 64, "latent": 32}
#: the arguments ``depth`` and ``width`` replaced (2026-12-07), and their defaults then
OLD_PER_FLOW = ("condition_depth", "target_depth", "conditional_width")
OLD_DEFAULTS = {"condition_depth": 16, "target_depth": 32, "depth": 12, "width": 64, "conditional_width": 32}


def per_flow(value: Union[None, int, dict], name: str, defaults: dict) -> dict:
    """``{"condition", "target", "latent"}`` -> positive int, from one int for all three flows or
    a dict of some of them (the rest from ``defaults``; None: all from ``defaults``)."""
    if value is None:
        return dict(defaults)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(FLOWS))
        if unknown:
            raise ValueError(f"{name} is per flow, keys {FLOWS}; got unknown key(s) {unknown}")
        value = {**defaults, **value}
    elif isinstance(value, int) and not isinstance(value, bool):
        value = dict.fromkeys(FLOWS, value)
    else:
        raise ValueError(f"{name} must be an int (every flow) or a dict with keys {FLOWS}, got {value!r}")
    return {flow: _checks.check_positive_int(value[flow], f"{name}[{flow!r}]") for flow in FLOWS}


@keras.saving.register_keras_serializable(package="tfcflow")
class CAFlow(ImageFlowModel):
    """Conditional autoregressive flow (see module docstring).

    Args (the shared vocabulary: docs/architecture.md; ``depth`` and ``width`` are per flow, the
    paper's three flows having their own):
      event_shape: ``(H, W, C)`` of the target w -- H, W a default size (None, None: none); targets
        may have any H, W divisible by ``2^levels`` (see ``ImageFlowModel``).
      condition_shape: ``(h, w, c)`` of the condition image y (h, w may be None), resized by
        ``factor`` to the target's size.
      factor: target size = condition size x factor (default: from the two shapes, else 1).
      levels: number of scales n.
      depth: flow steps per level of each flow: one int for all three, or a dict of
        ``"condition"`` (R), ``"target"`` (T) and ``"latent"`` (M, the conditional steps of every
        G_i); keys left out keep their defaults ``{"condition": 16, "target": 32, "latent": 12}``.
      width: coupling-network hidden channels, the same way (defaults ``{"condition": 64,
        "target": 64, "latent": 32}``, the paper's).
      regularization: lambda of ``log p(w|y) + lambda log p(y)`` (paper: 0.01 - 0.05).
      dual_glow: the DUAL-GLOW dependency structure instead of CAFLOW's.
      transition_steps, seed: as in ``MultiScaleFlow``.
      coupling: the flow steps' affine couplings: ``"affine"`` or ``{"kind": "affine", "scale":
        "exp_tanh" | "sigmoid", "clamp": 2.0}`` (a ``Coupling``; the vector models' spec).
      mixing: the 1x1 convolutions' form, ``"lu"`` (LU-parametrized, Glow) or ``"matrix"``.
      residual: T models the target minus a base computed from the condition: None, "bicubic"
        or "learned", or a ``Residual`` with the learned base's width and depth (``ImageFlowModel``).
    """

    @classmethod
    def migrate_config(cls, config: dict) -> dict:
        """Configs written before ``weight_sharing`` (Appendix D; no job or recipe used it) was
        removed: ``false`` is dropped, ``true`` refused with the reason."""
        config = super().migrate_config(config)
        if "weight_sharing" in config:
            if config["weight_sharing"]:
                raise ValueError("weight_sharing (CAFLOW's Appendix D) was removed: no job or recipe used it; "
                                 "this config needs a tfcflow from before 2026-12-07")
            config = {k: v for k, v in config.items() if k != "weight_sharing"}
        if any(k in config for k in OLD_PER_FLOW):
            # three depths and two widths: "depth" was then the latent flows' alone
            get = {**OLD_DEFAULTS, **config}.get
            config = {k: v for k, v in config.items() if k not in OLD_PER_FLOW}
            config["depth"] = {"condition": get("condition_depth"), "target": get("target_depth"),
                               "latent": get("depth")}
            config["width"] = {"condition": get("width"), "target": get("width"), "latent": get("conditional_width")}
        return config

    def __init__(self, event_shape: Sequence[Optional[int]], condition_shape: Sequence[Optional[int]],
                 levels: int = 3, depth: Union[int, dict] = None, width: Union[int, dict] = None,
                 regularization: float = 0.01, dual_glow: bool = False,
                 transition_steps: int = 2, coupling: Union[str, dict, Coupling] = "affine", mixing: str = "lu",
                 seed: int = 0, factor: Optional[int] = None,
                 residual: Union[None, bool, str, dict, Residual] = None, **kwargs):
        if len(condition_shape) != 3:
            raise ValueError(f"CAFlow conditions are images (h, w, c); got condition_shape {tuple(condition_shape)}")
        if regularization < 0:
            raise ValueError(f"regularization must be >= 0, got {regularization}")
        old = sorted(set(kwargs) & set(OLD_PER_FLOW))
        if old:
            raise ValueError(f"{', '.join(old)}: CAFlow takes depth= and width= per flow now, e.g. "
                             f"depth={DEFAULT_DEPTH}, width={DEFAULT_WIDTH}")
        depth, width = per_flow(depth, "depth", DEFAULT_DEPTH), per_flow(width, "width", DEFAULT_WIDTH)
        spec = Residual.of(residual)
        residual = None if spec is None else spec.to_config()  # the config holds its normal form
        steps = image_coupling(coupling, kwargs)
        coupling = steps.to_config()
        scale, clamp = steps.scale, steps.clamp
        super().__init__(event_shape, condition_shape, levels, factor=factor, residual=residual, **kwargs)
        self._record_config(locals())
        lu = mixing_is_lu(mixing)
        self.regularization = float(regularization)
        self.dual_glow = bool(dual_glow)
        self.n = int(levels)
        h, w, _ = self.event_shape
        common = dict(transition_steps=transition_steps, learned_prior=False, scale=scale, clamp=clamp, lu=lu)
        self.condition_flow = MultiScaleFlow(levels, depth["condition"], width=width["condition"], seed=seed,
                                             name="R", **common)
        self.condition_flow.build((None, h, w, self.condition_shape[-1]))  # the condition resized to the target's size
        self.target_flow = MultiScaleFlow(levels, depth["target"], width=width["target"], seed=seed + 1, name="T",
                                          **common)
        self.target_flow.build((None,) + self.event_shape)
        # paper index i: 0 = coarsest; the multi-scale pieces come finest first. Layouts (f, c):
        # [H / f, W / f, c] for targets [H, W, C]
        self._l_layout = self.target_flow.piece_layout[::-1]
        self._d_layout = self.condition_flow.piece_layout[::-1]
        self._g_args = dict(hidden=width["latent"], steps=depth["latent"],
                            transitions=transition_steps, scale=scale, clamp=clamp, lu=lu, seed=seed + 2)
        self.autoregressive = [self._build_g(i) for i in range(self.n)]
        self.built = True

    # ---- structure -------------------------------------------------------------------------------
    def _shape(self, layout):
        """``(h, w, c)`` of an activation of ``layout`` ``(f, c)`` at the default size (None: any)."""
        f, c = layout
        return tuple(None if d is None else d // f for d in self.event_shape[:2]) + (c,)

    def _level_layer(self, name, in_layout, cond_channels, squeeze):
        """M conditional steps at ``in_layout``, then (squeeze) squeeze + transitions."""
        a = self._g_args
        h, w, c = self._shape(in_layout)
        steps = []
        for k in range(a["steps"]):
            steps += flow_step(f"{name}_k{k}", c, a["hidden"], True, True, a["scale"], a["clamp"], a["lu"],
                               a["seed"] + 10 * k)
        if squeeze:
            steps.append(SqueezeLayer(name=f"{name}_squeeze"))
            for t in range(a["transitions"]):
                steps += transition_step(f"{name}_t{t}", a["lu"], a["seed"] + 7 * t)
        layer = FlowSequence(steps, name=name)
        layer.build((None, h, w, c), (None, h, w, cond_channels))
        return layer

    def _build_g(self, i):
        """The level layers of G_i (normalizing order) and the layouts ``(f, c)`` of its pieces,
        relative to the targets (``pieces``) and to L_i (``layout``)."""
        l_layout, d_layout = self._l_layout[i], self._d_layout[i]
        if self.dual_glow:
            layer = self._level_layer(f"G{i}_f{i}", l_layout, d_layout[-1], squeeze=False)
            return dict(levels=[layer], pieces=[l_layout], layout=[(1, l_layout[1])], conds=[("D", i)])
        levels, pieces, conds = [], [], []
        layout = l_layout
        for j in range(i, -1, -1):
            cond_channels = self._d_layout[j][-1] + (0 if j == i else self._l_layout[j][-1])
            squeeze = j > 0
            levels.append(self._level_layer(f"G{i}_f{j}", layout, cond_channels, squeeze))
            conds.append(("D", j) if j == i else ("DL", j))
            if squeeze:
                layout = (2 * layout[0], 2 * layout[1])
            pieces.append(layout)
        relative = [(f // l_layout[0], c) for f, c in pieces]
        return dict(levels=levels, pieces=pieces, layout=relative, conds=conds)

    @property
    def num_level_functions(self) -> int:
        """Distinct f_j^i functions: n(n+1)/2 (CAFLOW), n (DUAL-GLOW)."""
        return len({id(layer) for g in self.autoregressive for layer in g["levels"]})

    def _g_bijector(self, i, d, l):
        g = self.autoregressive[i]
        cond = [d[j] if kind == "D" else tf.concat([d[j], l[j]], axis=-1) for kind, j in g["conds"]]
        views = [layer.bijector(c) for layer, c in zip(g["levels"], cond)]
        # used through encode/decode only, which need no size
        return MultiScale(views, [None] * (len(views) - 1), g["layout"], name=f"G{i}")

    # ---- densities ---------------------------------------------------------------------------------
    def _encode_condition(self, condition, noise=None):
        """(D list, index 0 = coarsest; log p(y)); ``noise``: 1/256-wide uniform noise added to y."""
        y = self._resized_condition(condition)
        if noise is not None:
            y = y + noise / BINS
        pieces, ld = self.condition_flow.bijector().encode(y)
        return pieces[::-1], _sum_normal(pieces) + ld

    def _bijector(self, d) -> AutoregressiveLatents:
        """The latent bijection for condition latents ``d`` (coarsest first)."""
        size = [2 * s for s in spatial_size(d[-1])]  # the finest D is at H/2 x W/2
        return AutoregressiveLatents(self.target_flow.bijector(size=size),
                                     lambda i, latents: self._g_bijector(i, d, latents),
                                     [g["pieces"] for g in self.autoregressive], size)

    def _features(self, condition):
        return self._encode_condition(condition)[0]

    def _latent_bijector(self, d):
        return self._bijector(d)

    def _piece_levels(self):
        # G_i's pieces generate L_i, the target latent of level n-1-i (level 0 = finest)
        return [self.n - 1 - i for i, g in enumerate(self.autoregressive) for _ in g["pieces"]]

    def _training_losses(self, bins, condition, seed, rows: Rows = WHOLE):
        v = bins + self._training_noise("uniform", tf.shape(bins), seed, rows)
        y_shape = tf.concat([tf.shape(bins)[:3], [self.condition_shape[-1]]], 0)  # the resized condition's
        y_noise = self._training_noise("uniform", y_shape, _random.fold_in(seed, 1), rows)
        d, log_p_y = self._encode_condition(condition, noise=y_noise)
        nll = -self._log_prob_given(v, d, condition)
        return nll - self.regularization * log_p_y + self._base_loss(bins, condition), nll

    def condition_log_prob(self, condition) -> tf.Tensor:
        """log p(y) of the (resized, continuous) condition image under R, nats, ``[batch]``."""
        return self._encode_condition(self._check_condition(condition))[1]

    def _data_init_flow(self, y, condition, force):
        # the condition image as training shows it to R: with its 1/256-wide noise (a constant
        # background would otherwise give ActNorm zero-variance channels)
        y_c = self._resized_condition(condition)
        y_c = y_c + add_uniform_noise(tf.zeros_like(y_c), _random.seed_tensor(1)) / BINS
        self.condition_flow.data_init(y_c, force=force)
        self.target_flow.data_init(y, force=force)
        d = self.condition_flow.bijector().encode(y_c)[0][::-1]
        latents = self.target_flow.bijector().encode(y)[0][::-1]
        for i, g in enumerate(self.autoregressive):
            conds = [d[j] if kind == "D" else tf.concat([d[j], latents[j]], axis=-1) for kind, j in g["conds"]]
            initialize_levels(g["levels"], [None] * (len(g["levels"]) - 1), conds, latents[i], force)
