"""Coupling blocks for vector flows (cINN / INN style), and the vector shape argument."""
from __future__ import annotations

from typing import Sequence

from tfcflow import _checks
from tfcflow.bijectors import (ActNormLayer, AffineCouplingLayer, AffineInjectorLayer, FlowSequence,
                               RandomPermutationLayer, SplineCouplingLayer)
from tfcflow.bijectors.invertible_conv1x1 import InvertibleConv1x1Layer
from tfcflow.bijectors.conditional_spline_coupling import check_spline_args, params_per_feature
from tfcflow.networks import MLPNetwork, ResidualNetwork


def vector_size(shape, name: str) -> int:
    """A vector shape given as ``D`` or ``(D,)`` -> ``D`` (>= 1)."""
    if isinstance(shape, (tuple, list)):
        if len(shape) != 1:
            raise ValueError(f"{name} of a vector model must be (D,), got {tuple(shape)}")
        shape = shape[0]
    return _checks.check_positive_int(shape, name)


COUPLINGS = ("affine", "spline", "hybrid")
#: bound of the injector's ``exp_tanh`` scale: ``(e^-3, e^3)``, so that one layer can narrow a
#: standardized parameter to a posterior ~20 times tighter than its prior (a coupling's ``clamp``
#: bounds each of many steps; the injector is one)
INJECTOR_CLAMP = 3.0
MIXINGS = ("permutation", "lu")
NETWORKS = ("mlp", "residual")


def coupling_network(output_units: int, hidden_units: Sequence[int], activation: str, network: str, name: str,
                     dropout: float = 0.0):
    """The network of one coupling: ``"mlp"`` (``MLPNetwork``, one Dense per entry of
    ``hidden_units``) or ``"residual"`` (``ResidualNetwork``: ``len(hidden_units)`` condition-gated
    residual blocks of ``hidden_units[0]`` units); ``dropout`` while training."""
    if network == "residual":
        return ResidualNetwork(output_units, hidden_units[0], len(hidden_units), activation, dropout=dropout,
                               name=name)
    return MLPNetwork(output_units, hidden_units, activation, dropout=dropout, name=name)


def coupling_flow(dim: int, depth: int, width: int, hidden_layers: int, activation: str,
                  scale: str, clamp: float, actnorm: bool, seed: int, *, coupling: str = "affine",
                  bins: int = 8, bound: float = 3.0, mixing: str = "permutation",
                  network: str = "mlp", dropout: float = 0.0, injector: bool = False) -> FlowSequence:
    """The ``FlowSequence`` "flow" of a vector model on ``dim`` features: ``depth`` x [ActNorm?,
    coupling (2nd half | 1st), coupling (1st half | 2nd), mixing].

    Each block transforms every feature once (the two couplings of Ardizzone et al.'s INN block)
    and ends in a mixing of the features, seeded ``seed + block``: ``"permutation"`` (fixed,
    random) or ``"lu"`` (a learned invertible D x D matrix in LU form, initialized to a random
    rotation: Glow's 1x1 convolution on a vector, nflows' LULinear). With a permutation every
    coupling acts along the coordinate axes; a learned matrix lets the couplings act along any
    directions, which matters most in low dimension (in 2-D a permutation is at best a swap).
    ``coupling``: ``"affine"`` (``scale``, ``clamp``), ``"spline"`` (rational-quadratic splines
    with ``bins`` bins on ``[-bound, bound]``; ``scale`` and ``clamp`` unused) or ``"hybrid"``
    (blocks alternate, affine first at the data end, then spline). ``network``: the
    coupling networks (``coupling_network``: ``hidden_layers`` layers of ``width`` units), with
    ``dropout`` while training. ``injector``: first (at the data end) an affine map of all
    features whose shift and scale come from the condition alone (``AffineInjector``, SRFlow's
    conditional affine; an MLP like the couplings', zero-initialized so the flow starts without
    it): normalizing, ``x -> x * s(c) + t(c)``, a learned per-condition standardization that
    moves a posterior's location and width in one step and leaves the couplings its shape.
    """
    _checks.check_positive_int(depth, "depth")
    hidden_units = (_checks.check_positive_int(width, "width"),) * _checks.check_positive_int(hidden_layers,
                                                                                               "hidden_layers")
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
    if coupling in ("spline", "hybrid"):
        bins, bound = check_spline_args(bins, bound)
    if dim < 2:
        raise ValueError(f"a coupling flow needs at least 2 dimensions, got {dim}")
    k = dim // 2
    steps = []
    if injector:
        net = coupling_network(2 * dim, hidden_units, activation, network, "injector_net", dropout)
        steps.append(AffineInjectorLayer(net, scale="exp_tanh", clamp=INJECTOR_CLAMP, name="injector"))
    for i in range(depth):
        if actnorm:
            steps.append(ActNormLayer(name=f"block{i}_actnorm"))
        for flip, transformed in ((False, dim - k), (True, k)):
            name = f"block{i}_coupling{int(flip)}"
            if coupling == "spline" or (coupling == "hybrid" and i % 2 == 1):
                net = coupling_network(params_per_feature(bins) * transformed, hidden_units, activation, network,
                                       f"block{i}_net{int(flip)}", dropout)
                steps.append(SplineCouplingLayer(net, flip=flip, bins=bins, bound=bound, name=name))
            else:
                net = coupling_network(2 * transformed, hidden_units, activation, network, f"block{i}_net{int(flip)}",
                                       dropout)
                steps.append(AffineCouplingLayer(net, flip=flip, scale=scale, clamp=clamp, name=name))
        if mixing == "lu":
            steps.append(InvertibleConv1x1Layer(lu=True, seed=seed + i, name=f"block{i}_mix"))
        else:
            steps.append(RandomPermutationLayer(seed=seed + i, name=f"block{i}_permute"))
    return FlowSequence(steps, name="flow")
