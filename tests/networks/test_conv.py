import keras
import numpy as np
import tensorflow as tf

from tfcflow.networks import ConvNetwork


def test_conv_network_equals_its_keras_conv_layers():
    """The 1x1 hidden convolution runs as a matmul over positions: same map, same variables, same
    gradients as applying the Conv2D layers themselves."""
    keras.utils.set_random_seed(0)
    net = ConvNetwork(output_channels=4, hidden_channels=8)
    net.build([(None, 6, 5, 3), (None, 6, 5, 2)])
    net.conv_out.kernel.assign(tf.random.normal(net.conv_out.kernel.shape))  # zero-initialized otherwise
    a, b = tf.random.normal([2, 6, 5, 3]), tf.random.normal([2, 6, 5, 2])

    def reference():
        h = tf.concat([a, b], axis=-1)
        for layer in net.hidden + [net.conv_out]:
            h = layer(h)
        return h

    assert [layer.kernel_size for layer in net.hidden] == [(3, 3), (1, 1)]
    with tf.GradientTape(persistent=True) as tape:
        out, ref = net([a, b]), reference()
        loss_out, loss_ref = tf.reduce_sum(out ** 2), tf.reduce_sum(ref ** 2)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    for g_out, g_ref in zip(tape.gradient(loss_out, net.trainable_variables),
                            tape.gradient(loss_ref, net.trainable_variables)):
        assert g_out is not None
        np.testing.assert_allclose(g_out.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-4)
