import numpy as np
import pytest
import tensorflow as tf

from tfcflow.bijectors import (ActNormLayer, AffineCouplingLayer, AffineInjectorLayer, FlowChain, FlowSequence,
                               FusedStep, InvertibleConv1x1Layer, SqueezeLayer)
from tfcflow.bijectors.fused_step import fuse_steps
from tfcflow.networks import ConvNetwork, MLPNetwork
from tests.helpers import check_bijector, fresh, perturb


def _layers(shape, flip=False, cond_shape=None, coupling=True, lu=True):
    """ActNorm, 1x1 conv [, coupling] layers built on ``shape`` (with batch) and perturbed away from
    their identity / zero initializations."""
    channels = shape[-1]
    layers = [ActNormLayer(), InvertibleConv1x1Layer(lu=lu, seed=1)]
    if coupling:
        transformed = channels // 2 if flip else channels - channels // 2
        net = (ConvNetwork(2 * transformed, hidden_channels=8) if len(shape) == 4
               else MLPNetwork(2 * transformed, (16,)))
        layers.append(AffineCouplingLayer(net, flip=flip, scale="sigmoid"))
    for i, layer in enumerate(layers):
        layer.build(shape, cond_shape if layer.conditional or isinstance(layer, AffineCouplingLayer) else None)
        perturb(layer, seed=10 + i, scale=0.2)
    return layers


def _views(layers, c):
    return [layer.bijector(c if layer.conditional else None) for layer in layers]


CASES = [((3, 4, 4, 4), False, None, True), ((3, 4, 4, 5), True, (None, 4, 4, 2), True),
         ((4, 5), False, (None, 3), True), ((4, 5), True, None, True), ((3, 4, 4, 6), False, None, False)]


@pytest.mark.parametrize("shape,flip,cond_shape,coupling", CASES)
def test_fused_step_is_the_chain_of_its_parts(shape, flip, cond_shape, coupling):
    layers = _layers((None,) + shape[1:], flip, cond_shape, coupling)
    x = tf.random.stateless_normal(shape, [1, 2])
    c = None if cond_shape is None else tf.random.stateless_normal((shape[0],) + cond_shape[1:], [3, 4])
    fused, chain = FusedStep(*_views(layers, c)), FlowChain(_views(layers, c))
    z, ld = fused.inverse_and_log_det(fresh(x))
    z_ref, ld_ref = chain.inverse_and_log_det(fresh(x))
    np.testing.assert_allclose(z.numpy(), z_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ld.numpy(), ld_ref.numpy(), rtol=1e-5, atol=1e-4)
    x_back, fld = fused.forward_and_log_det(fresh(z))
    x_ref, fld_ref = chain.forward_and_log_det(fresh(z))
    np.testing.assert_allclose(x_back.numpy(), x_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fld.numpy(), fld_ref.numpy(), rtol=1e-5, atol=1e-4)
    # round trip on fresh tensors, inverse log-det = -forward, log-det = autodiff Jacobian's
    make = lambda i=None: FusedStep(*_views(layers, None if c is None else (c if i is None else c[i:i + 1])))  # noqa: E731
    check_bijector(make, x)


def test_fused_step_gradients_equal_the_chain_gradients():
    layers = _layers((None, 4, 4, 4), cond_shape=(None, 4, 4, 2))
    variables = [v for layer in layers for v in layer.trainable_variables]
    x = tf.random.stateless_normal([2, 4, 4, 4], [5, 6])
    c = tf.random.stateless_normal([2, 4, 4, 2], [7, 8])
    grads = []
    for make in (FusedStep, lambda *views: FlowChain(views)):
        with tf.GradientTape() as tape:
            z, ld = make(*_views(layers, c)).inverse_and_log_det(fresh(x))
            loss = tf.reduce_sum(z ** 2) - tf.reduce_sum(ld)
        grads.append(tape.gradient(loss, variables))
    assert len(variables) == 2 + 3 + 6
    for g_fused, g_chain in zip(*grads):
        assert g_fused is not None and np.any(g_fused.numpy() != 0)
        np.testing.assert_allclose(g_fused.numpy(), g_chain.numpy(), rtol=1e-4, atol=1e-4)


def test_fuse_steps_groups_actnorm_conv_and_a_following_coupling_only():
    shape = (None, 4, 4, 4)
    squeeze = SqueezeLayer()
    squeeze.build((None, 8, 8, 1))
    an1, cv1, cp1 = _layers(shape)
    an2, cv2 = _layers(shape, coupling=False)
    injector = AffineInjectorLayer(ConvNetwork(8, hidden_channels=4))
    injector.build(shape, (None, 4, 4, 2))
    _, _, cp2 = _layers(shape)
    c = tf.zeros([1, 4, 4, 2])
    parts = fuse_steps(_views([squeeze, an1, cv1, cp1, an2, cv2, injector, cp2], c))
    kinds = [type(p).__name__ for p in parts]
    assert kinds == ["Squeeze", "FusedStep", "FusedStep", "AffineInjector", "ConditionalAffineCoupling"]
    assert parts[1]._coupling is not None and parts[2]._coupling is None


def test_flow_sequence_runs_fused_steps_with_the_unfused_result():
    steps = [ActNormLayer(), InvertibleConv1x1Layer(seed=2),
             AffineCouplingLayer(ConvNetwork(4, hidden_channels=8), scale="sigmoid"),
             ActNormLayer(), InvertibleConv1x1Layer(seed=3)]
    seq = FlowSequence(steps)
    seq.build((None, 4, 4, 4))
    perturb(seq, seed=4, scale=0.2)
    # plain by default: the chain of the layers' own views; fused only when asked for
    assert [type(p).__name__ for p in seq.bijector().parts] == ["ActNorm", "InvertibleConv1x1",
                                                                "ConditionalAffineCoupling", "ActNorm",
                                                                "InvertibleConv1x1"]
    seq.fused_steps = True
    chain = seq.bijector()
    assert [type(p).__name__ for p in chain.parts] == ["FusedStep", "FusedStep"]
    x = tf.random.stateless_normal([2, 4, 4, 4], [9, 9])
    z, ld = chain.inverse_and_log_det(fresh(x))
    z_ref, ld_ref = FlowChain(_views(steps, None)).inverse_and_log_det(fresh(x))
    np.testing.assert_allclose(z.numpy(), z_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ld.numpy(), ld_ref.numpy(), rtol=1e-5, atol=1e-4)
