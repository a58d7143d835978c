import math

import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models import RelaxedConditionFlow
from tfcflow.models.gaussian import normal_log_prob, standard_normal_log_prob
from tests.helpers import autodiff_log_abs_det, perturb, tiny_model


@pytest.fixture(scope="module")
def model():
    m = tiny_model("rcf")  # [x (2), x0 (8)] <-> [z (2), c~ (8)], as in the paper
    perturb(m, seed=3)
    return m


def test_dimensions():
    m = tiny_model("rcf")
    assert (m.padding_dim, m.latent_dim) == (8, 2)
    assert (RelaxedConditionFlow(2, 8, padding_dim=7, depth=1, width=4, network={"hidden_layers": 1}).latent_dim) == 1


def test_joint_log_prob_is_equation_6(model, gmm_data):
    x, _, c = gmm_data
    padded = np.concatenate([x[:3], 0.05 * np.random.default_rng(0).standard_normal((3, 8))], 1)
    padded = padded.astype(np.float32)
    lp = model.joint_log_prob(padded, c[:3]).numpy()
    k = model.latent_dim
    for i in range(3):
        latent = model.flow.bijector().inverse(tf.constant(padded[i:i + 1]))
        z, c_tilde = latent[:, :k], latent[:, k:]
        logdet = autodiff_log_abs_det(lambda t: model.flow.bijector().inverse(t), padded[i:i + 1])
        expected = (float(standard_normal_log_prob(z)[0])
                    + float(normal_log_prob(c_tilde, c[i:i + 1], 0.1)[0]) + logdet)
        # lp is float32: its spacing is ~3e-5 at |lp| ~ 300, so the bound grows with |lp| (the weights,
        # hence |lp|, depend on which tests ran before in the process)
        assert abs(lp[i] - expected) < 1e-4 + 1e-6 * abs(expected)


def test_log_prob_is_the_joint_at_zero_padding_minus_the_padding_density(model, gmm_data):
    x, _, c = gmm_data
    padded = np.concatenate([x[:5], np.zeros((5, 8), np.float32)], 1)
    log_q0 = 8 * (-0.5 * math.log(2 * math.pi) - math.log(0.05))
    np.testing.assert_allclose(model.log_prob(x[:5], c[:5]).numpy(),
                               model.joint_log_prob(padded, c[:5]).numpy() - log_q0, rtol=1e-5)


def test_distribution_is_over_the_padded_vector(model, gmm_data):
    x, _, c = gmm_data
    padded = np.concatenate([x[:4], 0.01 * np.ones((4, 8), np.float32)], 1)
    dist = model.distribution(c[:4])
    assert dist.event_shape == [10] and dist.batch_shape == [4]
    np.testing.assert_allclose(dist.log_prob(padded).numpy(), model.joint_log_prob(padded, c[:4]).numpy(),
                               rtol=1e-5)


def test_infer_condition_is_the_forward_pass(model, gmm_data):
    x, _, _ = gmm_data
    latent = model.flow.bijector().inverse(tf.constant(np.concatenate([x[:4], np.zeros((4, 8), np.float32)], 1)))
    np.testing.assert_allclose(model.infer_condition(x[:4]).numpy(), latent[:, model.latent_dim:].numpy(),
                               atol=1e-6)
    assert model.infer_condition(x[:4], padding_seed=1).shape == (4, 8)


def test_sampling_inverts_z_and_the_relaxed_condition(model, gmm_data):
    _, _, c = gmm_data
    x = model.sample(c[:6], temperature=0.0, seed=0).numpy()
    # at temperature 0: z = 0 and c~ = c, so the forward pass of the padded sample returns them
    padded = model.flow.bijector().forward(
        tf.concat([tf.zeros([6, model.latent_dim]), tf.constant(c[:6])], axis=1))
    np.testing.assert_allclose(x, padded[:, :2].numpy(), atol=1e-6)


def test_importance_bound_tightens_with_more_samples(model, gmm_data):
    x, _, c = gmm_data
    one = model.importance_log_prob(x[:256], c[:256], num_samples=1, seed=1).numpy().mean()
    many = model.importance_log_prob(x[:256], c[:256], num_samples=64, seed=1).numpy().mean()
    assert many >= one


def test_hyper_parameter_errors():
    with pytest.raises(ValueError, match="epsilon must be > 0, got 0"):
        RelaxedConditionFlow(2, 8, epsilon=0)
    with pytest.raises(ValueError, match="epsilon must be a number > 0 or 'learned', got 'fitted'"):
        RelaxedConditionFlow(2, 8, epsilon="fitted")
    with pytest.raises(ValueError, match="padding_noise must be > 0, got -0.1"):
        RelaxedConditionFlow(2, 8, padding_noise=-0.1)
    with pytest.raises(ValueError, match="z has at least one dimension"):
        RelaxedConditionFlow(2, 8, padding_dim=6)
    with pytest.raises(ValueError, match="padding_dim must be an integer >= 0"):
        RelaxedConditionFlow(2, 8, padding_dim=-1)


def test_training_noise_is_seeded(model):
    x = tf.zeros([4, 2])
    c = tf.one_hot([0, 1, 2, 3], 8)
    first = model._training_losses(x, c, tf.constant([5, 0]))[0].numpy()
    np.testing.assert_array_equal(model._training_losses(x, c, tf.constant([5, 0]))[0].numpy(), first)
    assert np.all(model._training_losses(x, c, tf.constant([5, 1]))[0].numpy() != first)


def test_a_learned_epsilon_fits_the_forward_noise_and_the_posterior():
    # x ~ N(0, 1), c = x + N(0, 0.5^2): the forward process is noisy. Standardized, c's noise std is
    # 0.5 / sqrt(1.25) = 0.447, and the posterior p(x | c) has std sqrt(0.2) = 0.447. The paper's
    # fixed epsilon (0.1) cannot express that noise: its posterior is over-confident; a learned
    # epsilon fits it (a trainable weight, in the config, receiving gradients)
    import keras

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 1)).astype(np.float32)
    c = (x + 0.5 * rng.standard_normal((4000, 1))).astype(np.float32)
    stds = {}
    for eps in (0.1, "learned"):
        keras.utils.set_random_seed(0)
        m = RelaxedConditionFlow(1, 1, epsilon=eps, depth=2, width=32, network={"hidden_layers": 1})
        if eps == "learned":
            assert m.get_config()["epsilon"] == "learned" and m.log_epsilon in m.trainable_variables
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(m.log_prob(x[:64], c[:64]))
            assert tape.gradient(loss, m.log_epsilon) is not None
            again = RelaxedConditionFlow.from_config(m.get_config())
            assert again.log_epsilon is not None and again.log_epsilon.shape == (1,)
        m.compile(optimizer=keras.optimizers.Adam(1e-2))
        m.fit(x, c, batch_size=256, epochs=40, verbose=0)
        s = m.sample(np.array([[1.0]], np.float32), num_samples=4000, seed=1).numpy()[0, :, 0]
        stds[eps] = float(s.std())
        if eps == "learned":
            assert 0.3 < float(m.relaxation[0]) < 0.6, float(m.relaxation[0])
    # true posterior std at c = 1: 0.447 (mean 0.8)
    assert abs(stds["learned"] - 0.447) < 0.1, stds
    assert stds[0.1] < 0.3, stds
