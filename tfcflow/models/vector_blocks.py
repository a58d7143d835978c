"""Coupling blocks for vector flows (cINN / INN style), and the vector shape argument."""
from __future__ import annotations

import dataclasses
from typing import Optional, Union

from tfcflow import _checks
from tfcflow.bijectors import (ActNormLayer, AffineCouplingLayer, FlowSequence, RandomPermutationLayer,
                               SplineCouplingLayer)
from tfcflow.bijectors.affine_scale import check_scale_kind
from tfcflow.bijectors.invertible_conv1x1 import InvertibleConv1x1Layer
from tfcflow.bijectors.conditional_spline_coupling import check_spline_args, params_per_feature
from tfcflow.models.specs import spec_config, spec_of
from tfcflow.networks import MLPNetwork, ResidualNetwork


def vector_size(shape, name: str) -> int:
    """A vector shape given as ``D`` or ``(D,)`` -> ``D`` (>= 1)."""
    if isinstance(shape, (tuple, list)):
        if len(shape) != 1:
            raise ValueError(f"{name} of a vector model must be (D,), got {tuple(shape)}")
        shape = shape[0]
    return _checks.check_positive_int(shape, name)


COUPLINGS = ("affine", "spline", "hybrid")
#: the fields of ``Coupling`` each kind uses, and their defaults
AFFINE_FIELDS = {"scale": "exp_tanh", "clamp": 2.0}
SPLINE_FIELDS = {"bins": 8, "bound": 3.0}
#: the vector models' constructor arguments before ``Coupling`` grouped them (read from saved configs)
LEGACY_FIELDS = {"spline_bins": "bins", "spline_bound": "bound", "scale": "scale", "clamp": "clamp"}


@dataclasses.dataclass(frozen=True)
class Coupling:
    """The coupling transform of a vector model's blocks, and its own settings.

    ``kind``: ``"affine"`` (scale and shift; ``scale`` parametrization ``"exp_tanh"`` or
    ``"sigmoid"``, per-coupling factor bounded by ``clamp``: bijectors/affine_scale.py),
    ``"spline"`` (rational-quadratic splines of ``bins`` bins on ``[-bound, bound]``, identity
    outside; Durkan et al. 2019) or ``"hybrid"`` (the blocks alternate, affine first at the data
    end, then spline; both sets of settings). A setting the kind does not use is refused, so no
    argument is silently ignored; one left as None takes its default (``AFFINE_FIELDS``,
    ``SPLINE_FIELDS``).

    In a model's config (and a job config) a coupling is its kind alone (``"spline"``) or a dict
    (``{"kind": "spline", "bins": 12}``).
    """

    kind: str = "affine"
    bins: Optional[int] = None
    bound: Optional[float] = None
    scale: Optional[str] = None
    clamp: Optional[float] = None

    def __post_init__(self):
        if self.kind not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.kind!r}")
        used = self.fields()
        for name, default in {**AFFINE_FIELDS, **SPLINE_FIELDS}.items():
            value = getattr(self, name)
            if name not in used:
                if value is not None:
                    kinds = [k for k in COUPLINGS if name in Coupling._fields_of(k)]
                    raise ValueError(f"coupling {name}={value!r} applies to {' and '.join(map(repr, kinds))} "
                                     f"couplings, not {self.kind!r}")
            elif value is None:
                object.__setattr__(self, name, default)
        try:  # the messages name the setting; "coupling ..." says whose (a config error names model.coupling)
            if "bins" in used:
                bins, bound = check_spline_args(self.bins, self.bound)
                object.__setattr__(self, "bins", bins)
                object.__setattr__(self, "bound", bound)
            if "scale" in used:
                check_scale_kind(self.scale)
                object.__setattr__(self, "clamp", _checks.check_positive(self.clamp, "clamp"))
        except ValueError as e:
            raise ValueError(f"coupling {e}") from None

    @staticmethod
    def _fields_of(kind: str) -> dict:
        return {"affine": AFFINE_FIELDS, "spline": SPLINE_FIELDS, "hybrid": {**AFFINE_FIELDS, **SPLINE_FIELDS}}[kind]

    def fields(self) -> dict:
        """The settings this kind uses, with their defaults."""
        return self._fields_of(self.kind)

    @classmethod
    def of(cls, value: Union[str, dict, "Coupling"]) -> "Coupling":
        """A ``Coupling`` from its kind, a dict of its fields, or itself."""
        return spec_of(cls, value, "coupling",
                       f"one of {COUPLINGS}, a dict with a 'kind' or a tfcflow.models.Coupling")

    def to_config(self) -> Union[str, dict]:
        """The kind alone when every setting is its default, else a dict of the kind and the
        settings that differ (what ``of`` reads back)."""
        return spec_config(self, self.fields())


NETWORKS = ("mlp", "residual")
#: the fields of ``Network`` and their defaults
NETWORK_FIELDS = {"hidden_layers": 2, "activation": "relu", "dropout": 0.0}


@dataclasses.dataclass(frozen=True)
class Network:
    """The networks of a vector model's couplings (their width is the model's ``width``).

    ``kind``: ``"mlp"`` (``hidden_layers`` Dense layers) or ``"residual"`` (``hidden_layers``
    residual blocks whose outputs the condition gates: neural spline flows' conditioner,
    tfcflow.networks.ResidualNetwork); ``activation``: a Keras activation name; ``dropout``: the
    rate of dropout after the hidden layers while training (seeded by the step; off in
    ``log_prob`` / ``sample``), a regularizer for small simulation budgets.

    In a model's config (and a job config) a network is its kind alone (``"mlp"``) or a dict
    (``{"kind": "mlp", "dropout": 0.1}``).
    """

    kind: str = "mlp"
    hidden_layers: int = 2
    activation: str = "relu"
    dropout: float = 0.0

    def __post_init__(self):
        if self.kind not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {self.kind!r}")
        try:
            object.__setattr__(self, "hidden_layers", _checks.check_positive_int(self.hidden_layers, "hidden_layers"))
            object.__setattr__(self, "dropout", _checks.check_fraction(self.dropout, "dropout"))
            if not isinstance(self.activation, str):
                raise ValueError(f"activation must be the name of a Keras activation, got {self.activation!r}")
        except ValueError as e:
            raise ValueError(f"network {e}") from None

    @classmethod
    def of(cls, value: Union[str, dict, "Network"]) -> "Network":
        """A ``Network`` from its kind, a dict of its fields, or itself."""
        return spec_of(cls, value, "network",
                       f"one of {NETWORKS}, a dict of its settings or a tfcflow.models.Network")

    def to_config(self) -> Union[str, dict]:
        """The kind alone when every setting is its default, else a dict of the kind and the
        settings that differ (what ``of`` reads back)."""
        return spec_config(self, NETWORK_FIELDS)


def refuse_legacy_coupling_args(kwargs: dict) -> None:
    """A clear error for a constructor call with the arguments ``Coupling`` and ``Network``
    replaced."""
    old = sorted(set(kwargs) & set(LEGACY_FIELDS))
    if old:
        moved = ", ".join(f"{k} -> {LEGACY_FIELDS[k]!r}" for k in old)
        raise ValueError(f"{', '.join(old)}: settings of the coupling now ({moved}): pass "
                         f"coupling={{'kind': ..., {LEGACY_FIELDS[old[0]]!r}: ...}} or tfcflow.models.Coupling(...)")
    old = sorted(set(kwargs) & set(NETWORK_FIELDS))
    if old:
        raise ValueError(f"{', '.join(old)}: settings of the coupling networks now: pass network={{'kind': 'mlp', "
                         f"{old[0]!r}: ...}} or tfcflow.models.Network(...)")


def migrate_coupling_config(config: dict) -> dict:
    """A vector model's config with the arguments that ``Coupling`` replaced (``spline_bins``,
    ``spline_bound``, ``scale``, ``clamp``; configs, runs and saves written before) folded into
    ``coupling``. Those the kind never used (a spline model's recorded ``scale``) had no effect
    and are dropped. A config without them is returned as it is."""
    old = {k: config[k] for k in LEGACY_FIELDS if k in config}
    if not old:
        return config
    config = {k: v for k, v in config.items() if k not in LEGACY_FIELDS}
    coupling = Coupling.of(config.get("coupling", "affine"))
    used = coupling.fields()
    settings = {name: getattr(coupling, name) for name in used}
    settings.update({LEGACY_FIELDS[k]: v for k, v in old.items() if LEGACY_FIELDS[k] in used})
    config["coupling"] = Coupling(kind=coupling.kind, **settings).to_config()
    return config


def migrate_network_config(config: dict) -> dict:
    """A vector model's config with the arguments that ``Network`` replaced (``hidden_layers``,
    ``activation``, ``dropout``, next to ``network`` as a kind; configs, runs and saves written
    before) folded into ``network``. A config without them is returned as it is."""
    old = {k: config[k] for k in NETWORK_FIELDS if k in config}
    if not old:
        return config
    config = {k: v for k, v in config.items() if k not in NETWORK_FIELDS}
    network = Network.of(config.get("network", "mlp"))
    config["network"] = dataclasses.replace(network, **old).to_config()
    return config


MIXINGS = ("permutation", "lu")


def coupling_network(output_units: int, width: int, network: Network, name: str):
    """The network of one coupling: ``"mlp"`` (``MLPNetwork``, ``hidden_layers`` Dense layers of
    ``width``) or ``"residual"`` (``ResidualNetwork``: ``hidden_layers`` condition-gated residual
    blocks of ``width`` units); ``dropout`` while training."""
    if network.kind == "residual":
        return ResidualNetwork(output_units, width, network.hidden_layers, network.activation,
                               dropout=network.dropout, name=name)
    return MLPNetwork(output_units, (width,) * network.hidden_layers, network.activation, dropout=network.dropout,
                      name=name)


def coupling_flow(dim: int, depth: int, width: int, actnorm: bool, seed: int, *,
                  network: Union[str, dict, Network] = "mlp", coupling: Union[str, dict, Coupling] = "affine",
                  mixing: str = "permutation") -> FlowSequence:
    """The ``FlowSequence`` "flow" of a vector model on ``dim`` features: ``depth`` x [ActNorm?,
    coupling (2nd half | 1st), coupling (1st half | 2nd), mixing].

    Each block transforms every feature once (the two couplings of Ardizzone et al.'s INN block)
    and ends in a mixing of the features, seeded ``seed + block``: ``"permutation"`` (fixed,
    random) or ``"lu"`` (a learned invertible D x D matrix in LU form, initialized to a random
    rotation: Glow's 1x1 convolution on a vector, nflows' LULinear). With a permutation every
    coupling acts along the coordinate axes; a learned matrix lets the couplings act along any
    directions, which matters most in low dimension (in 2-D a permutation is at best a swap).
    ``coupling``: a ``Coupling`` (or its kind, or a dict of its fields): affine, spline or hybrid
    couplings with their settings. ``network``: a ``Network`` (or its kind, or a dict of its
    fields): the coupling networks, ``width`` units wide (``coupling_network``).
    """
    _checks.check_positive_int(depth, "depth")
    _checks.check_positive_int(width, "width")
    coupling, network = Coupling.of(coupling), Network.of(network)
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    if dim < 2:
        raise ValueError(f"a coupling flow needs at least 2 dimensions, got {dim}")
    k = dim // 2
    steps = []
    for i in range(depth):
        if actnorm:
            steps.append(ActNormLayer(name=f"block{i}_actnorm"))
        for flip, transformed in ((False, dim - k), (True, k)):
            name = f"block{i}_coupling{int(flip)}"
            if coupling.kind == "spline" or (coupling.kind == "hybrid" and i % 2 == 1):
                net = coupling_network(params_per_feature(coupling.bins) * transformed, width, network,
                                       f"block{i}_net{int(flip)}")
                steps.append(SplineCouplingLayer(net, flip=flip, bins=coupling.bins, bound=coupling.bound, name=name))
            else:
                net = coupling_network(2 * transformed, width, network, f"block{i}_net{int(flip)}")
                steps.append(AffineCouplingLayer(net, flip=flip, scale=coupling.scale, clamp=coupling.clamp, name=name))
        if mixing == "lu":
            steps.append(InvertibleConv1x1Layer(lu=True, seed=seed + i, name=f"block{i}_mix"))
        else:
            steps.append(RandomPermutationLayer(seed=seed + i, name=f"block{i}_permute"))
    return FlowSequence(steps, name="flow")
