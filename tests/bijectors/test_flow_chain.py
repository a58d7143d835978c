import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb, distributions as tfd

from tfcflow.bijectors import (ActNormLayer, AffineCouplingLayer, AffineInjectorLayer, FlowSequence,
                               InvertibleConv1x1Layer, SqueezeLayer)
from tfcflow.networks import ConvNetwork
from tests.helpers import check_bijector, fresh, perturb


def _sequence():
    seq = FlowSequence([
        SqueezeLayer(),
        ActNormLayer(),
        InvertibleConv1x1Layer(seed=1),
        AffineInjectorLayer(ConvNetwork(8, 8)),
        AffineCouplingLayer(ConvNetwork(4, 8)),
    ])
    seq.build((None, 4, 4, 1), (None, 2, 2, 3))
    perturb(seq, seed=2, scale=0.05)
    return seq


def test_round_trip_and_log_det_of_a_whole_step():
    seq = _sequence()
    x = tf.random.stateless_normal([3, 4, 4, 1], [1, 2])
    c = tf.random.stateless_normal([3, 2, 2, 3], [3, 4])
    z = check_bijector(lambda i=None: seq.bijector(c if i is None else c[i:i + 1]), x)
    assert z.shape == (3, 2, 2, 4)


def test_equals_tfp_chain_and_works_in_transformed_distribution():
    seq = _sequence()
    x = tf.random.stateless_normal([3, 4, 4, 1], [1, 2])
    c = tf.random.stateless_normal([3, 2, 2, 3], [3, 4])
    ours = seq.bijector(c)
    chain = tfb.Chain(ours.parts)
    np.testing.assert_allclose(chain.inverse(fresh(x)).numpy(), ours.inverse(fresh(x)).numpy(), atol=1e-6)
    np.testing.assert_allclose(chain.inverse_log_det_jacobian(fresh(x), 3).numpy(),
                               ours.inverse_log_det_jacobian(fresh(x)).numpy(), atol=1e-4)
    base = tfd.Sample(tfd.Normal(tf.zeros([3]), 1.0), [2, 2, 4])  # batch [3] like the condition
    dist = tfd.TransformedDistribution(base, seq.bijector(c))
    z, ld = seq.bijector(c).inverse_and_log_det(fresh(x))
    expected = base.log_prob(z) + ld
    np.testing.assert_allclose(dist.log_prob(fresh(x)).numpy(), expected.numpy(), rtol=1e-5)
    assert dist.event_shape == [4, 4, 1]
    assert dist.sample(seed=[1, 2]).shape == (3, 4, 4, 1)


def test_gradients_survive_a_pass_outside_the_tape():
    """The TFP cache pitfall: the same tensor passed before and inside a tape."""
    seq = _sequence()
    x = tf.random.stateless_normal([2, 4, 4, 1], [1, 2])
    c = tf.random.stateless_normal([2, 2, 2, 3], [3, 4])
    seq.bijector(c).inverse_log_det_jacobian(x)
    with tf.GradientTape() as tape:
        ld = seq.bijector(c).inverse_log_det_jacobian(x)
        loss = -tf.reduce_sum(ld) + tf.reduce_sum(seq.bijector(c).inverse(x) ** 2)
    grads = tape.gradient(loss, seq.trainable_variables)
    assert all(g is not None for g in grads)


def test_data_init_initializes_every_actnorm_on_its_own_input():
    seq = FlowSequence([ActNormLayer(), InvertibleConv1x1Layer(seed=0), ActNormLayer()])
    seq.build((None, 3))
    x = 4.0 + 3.0 * tf.random.stateless_normal([512, 3], [0, 1])
    seq.data_init(x)
    z, _ = seq(fresh(x))
    np.testing.assert_allclose(z.numpy().mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.numpy().std(0), 1.0, atol=1e-4)
