"""FlowEnsemble: the equally weighted mixture of K flows (tfcflow/models/ensemble.py)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow.models import ConditionalRealNVP, FlowEnsemble
from tfcflow.models.ensemble import bootstrap_counts
from tests.helpers import copy_model, perturb


def _data(n=512, seed=0):
    """x | c ~ N(A c, 0.3^2 I) in 2-D with a 3-D condition."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 3)).astype(np.float32)
    x = (c @ np.array([[1.0, -0.5], [0.3, 0.8], [0.0, 0.4]], np.float32) + 0.3 * rng.normal(size=(n, 2)))
    return x.astype(np.float32), c


@pytest.fixture(scope="module")
def ensemble():
    keras.utils.set_random_seed(0)  # the members' init must not depend on which tests ran before in the worker
    m = FlowEnsemble.of(ConditionalRealNVP, 3, 2, 3, depth=2, width=16, seed=5)
    x, c = _data()
    m.initialize(x, c)
    for k, member in enumerate(m.members):  # distinct members: a mixture of equal flows tests nothing
        perturb(member.flow, seed=k, scale=0.2)
    return m


def test_log_prob_is_the_log_mean_of_the_members_densities(ensemble):
    x, c = _data(8, seed=1)
    member_lp = np.stack([m.log_prob(x, c).numpy() for m in ensemble.members])
    assert np.ptp(member_lp, axis=0).min() > 1e-2  # the members differ
    expected = np.log(np.mean(np.exp(member_lp.astype(np.float64)), axis=0))
    np.testing.assert_allclose(ensemble.log_prob(x, c).numpy(), expected, rtol=1e-5)


def test_the_density_integrates_to_one(ensemble):
    # +-12 holds the perturbed members' tails (+-7 missed up to 2% of the mass for some inits)
    g = np.linspace(-12.0, 12.0, 481, dtype=np.float32)
    xx = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    c = np.tile(np.array([[0.3, -0.2, 0.5]], np.float32), (len(xx), 1))
    mass = np.exp(ensemble.log_prob(xx, c).numpy()).sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1.0) < 0.005, mass


def test_samples_come_from_every_member_equally(ensemble):
    # for draws of the mixture, each member's responsibility p_k(x) / sum_j p_j(x) averages 1/K
    c = np.tile(np.array([[0.3, -0.2, 0.5]], np.float32), (6000, 1))
    x = ensemble.sample(c, seed=3).numpy()
    lp = np.stack([m.log_prob(x, c).numpy() for m in ensemble.members]).astype(np.float64)
    resp = np.exp(lp - np.logaddexp.reduce(lp, axis=0))
    np.testing.assert_allclose(resp.mean(axis=1), [1 / 3] * 3, atol=0.02)
    # and the mixture's mean is the mean of the members' means
    draws = [m.sample(c, seed=4).numpy() for m in ensemble.members]
    se = np.sqrt(x.var(0) / len(x) + np.mean([d.var(0) for d in draws], 0) / (3 * len(x)))
    assert np.all(np.abs(x.mean(0) - np.mean([d.mean(0) for d in draws], 0)) < 4 * se)


def test_sampling_is_seeded_and_num_samples_has_its_shape(ensemble):
    c = _data(4, seed=2)[1]
    a = ensemble.sample(c, seed=7, num_samples=5).numpy()
    assert a.shape == (4, 5, 2)
    np.testing.assert_array_equal(a, ensemble.sample(c, seed=7, num_samples=5).numpy())
    assert not np.allclose(a, ensemble.sample(c, seed=8, num_samples=5).numpy())


def test_draws_do_not_depend_on_chunks_sub_batches_or_xla(ensemble):
    from tfcflow.execution import Execution
    c = _data(3, seed=4)[1]
    plain = ensemble.sample(c, seed=11, num_samples=50).numpy()
    other = copy_model(ensemble)
    # every execution and every chunking once (each pair is a new trace, an XLA compile with jit)
    for execution, batch_size in ((Execution(), 7), (Execution(sub_batches=2), 16),
                                  (Execution(jit_sampling=True), None),
                                  (Execution(jit_sampling=True, sub_batches=2), 7)):
        other.execution = execution
        np.testing.assert_allclose(other.sample(c, seed=11, num_samples=50, batch_size=batch_size).numpy(),
                                   plain, atol=1e-4, err_msg=f"{execution}, batch_size={batch_size}")
    # one-per-row draws are rows of the same call
    np.testing.assert_allclose(ensemble.sample(np.repeat(c, 50, 0), seed=11).numpy().reshape(3, 50, 2), plain,
                               atol=1e-5)


def test_a_calls_draws_are_split_evenly_and_a_single_draws_member_is_uniform(ensemble):
    c = _data(1, seed=5)[1]

    def member_of(x):  # the member whose density is far above the others' at its own draw
        lp = np.stack([m.log_prob(x, np.repeat(c, len(x), 0)).numpy() for m in ensemble.members])
        return lp.argmax(0)

    # the members' draws are mostly distinguishable: row r is member (r + o) mod 3
    x = ensemble.sample(c, seed=1, num_samples=300).numpy()[0]
    rows = np.arange(300)
    offsets = [np.mean(member_of(x) == (rows + o) % 3) for o in range(3)]
    assert max(offsets) > 0.6, offsets
    # a single draw's member over seeds: each member about a third
    firsts = np.concatenate([ensemble.sample(c, seed=s).numpy() for s in range(90)])
    counts = np.bincount(member_of(firsts), minlength=3)
    assert counts.min() >= 15, counts


def test_chunked_sampling_never_repeats_draws(ensemble):
    c = _data(2, seed=3)[1]
    a = ensemble.sample(c, seed=7, num_samples=60, batch_size=8).numpy().reshape(-1, 2)
    assert len(np.unique(a.round(6), axis=0)) == len(a)
    # and many draws of one condition spread like one-per-row draws of the repeated condition
    b = ensemble.sample(np.repeat(c[:1], 600, 0), seed=9).numpy()
    many = ensemble.sample(c[:1], seed=9, num_samples=600, batch_size=64).numpy()[0]
    se = np.sqrt(b.var(0) / 600 + many.var(0) / 600)
    assert np.all(np.abs(b.mean(0) - many.mean(0)) < 4 * se)
    np.testing.assert_allclose(many.std(0), b.std(0), rtol=0.2)


def test_distribution_view_is_the_mixture(ensemble):
    x, c = _data(6, seed=3)
    np.testing.assert_allclose(ensemble.distribution(c).log_prob(tf.constant(x)).numpy(),
                               ensemble.log_prob(x, c).numpy(), rtol=1e-4)


def test_config_round_trip(ensemble):
    clone = copy_model(ensemble)
    assert [m.get_config()["seed"] for m in clone.members] == [5, 6, 7]
    x, c = _data(8, seed=4)
    np.testing.assert_allclose(clone.log_prob(x, c).numpy(), ensemble.log_prob(x, c).numpy(), rtol=1e-6)
    np.testing.assert_allclose(clone.sample(c, seed=1).numpy(), ensemble.sample(c, seed=1).numpy(), atol=1e-5)


def test_fit_standardizes_every_member_and_trains_all_of_them():
    x, c = _data(1024, seed=5)
    m = FlowEnsemble.of(ConditionalRealNVP, 2, 2, 3, depth=2, width=16, seed=0)
    assert m.needs_adapting()
    m.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = [mm.get_weights() for mm in m.members]
    m.fit(x, c, batch_size=128, epochs=1, verbose=0)
    assert not m.needs_adapting()
    for mm, w0 in zip(m.members, before):
        np.testing.assert_allclose(mm.x_standardizer.get_weights()[0], x.mean(0), atol=1e-4)
        changed = [not np.allclose(a, b) for a, b in zip(w0, mm.get_weights())]
        assert sum(changed) >= len(changed) // 2
    with tf.GradientTape() as tape:
        objective, _ = m._training_losses(*m._check_pair(x[:64], c[:64]), tf.constant([1, 2]))
        loss = tf.reduce_mean(objective)
    grads = tape.gradient(loss, m.trainable_variables)
    assert not [v.path for v, g in zip(m.trainable_variables, grads) if g is None or not np.any(g.numpy())]


def test_an_ensemble_of_trained_flows_beats_its_average_member_on_held_out_data():
    # small data, a network that overfits: the mixture's held-out NLL is below the members' mean
    # by more than the log K it could lose (a mixture of identical flows gains exactly nothing)
    x, c = _data(200, seed=6)
    xv, cv = _data(2000, seed=7)
    m = FlowEnsemble.of(ConditionalRealNVP, 4, 2, 3, depth=3, width=64, seed=0)
    m.compile(optimizer=keras.optimizers.Adam(3e-3))
    m.fit(x, c, batch_size=100, epochs=30, verbose=0)  # measured: the mixture is 0.35 nats better
    members = np.mean([-mm.log_prob(xv, cv).numpy().mean() for mm in m.members])
    mixture = -m.log_prob(xv, cv).numpy().mean()
    assert mixture < members - 0.05, (mixture, members)


def test_an_ensemble_of_image_models_reports_bits_per_dim():
    # the per-dim metric is the members' (bits/dim for images), under its own name: the metric is
    # created with the model, so naming it afterwards would report bits/dim as "nats_per_dim"
    from tests.helpers import tiny_glow
    keras.utils.set_random_seed(0)
    m = FlowEnsemble([tiny_glow(seed=0), tiny_glow(seed=1)])
    assert FlowEnsemble.of(ConditionalRealNVP, 2, 2, 3, depth=1, width=4).PER_DIM_METRIC == "nats_per_dim"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 8, 8, 1)).astype(np.uint8)
    c = rng.integers(0, 256, (8, 4, 4, 1)).astype(np.uint8)
    m.initialize(x, c)
    m.compile(optimizer=keras.optimizers.Adam(1e-4))
    history = m.fit(x, c, batch_size=8, epochs=1, verbose=0).history
    assert "bits_per_dim" in history and "nats_per_dim" not in history
    logs = m.evaluate(x, c, batch_size=8, verbose=0, return_dict=True)
    assert sorted(logs) == ["bits_per_dim", "loss"]
    np.testing.assert_allclose(logs["bits_per_dim"], float(np.mean(m.members[0].per_dim(-m.log_prob(x, c)))),
                               rtol=1e-5)


@pytest.mark.parametrize("members, match", [
    (lambda: [ConditionalRealNVP(2, 3, depth=1, width=4)], "two or more"),
    (lambda: [ConditionalRealNVP(2, 3, depth=1, width=4), ConditionalRealNVP(2, 4, depth=1, width=4)],
     "share x and condition shapes"),
])
def test_bad_members_are_refused(members, match):
    with pytest.raises(ValueError, match=match):
        FlowEnsemble(members())


def test_a_mixture_of_identical_members_is_that_member():
    # the log K of the weights cancels the K equal terms exactly
    same = FlowEnsemble.of(ConditionalRealNVP, 2, 2, 3, depth=2, width=16, seed=5)
    same.members[1].set_weights(same.members[0].get_weights())
    x, c = _data(8, seed=8)
    same.initialize(x, c)
    same.members[1].set_weights(same.members[0].get_weights())
    np.testing.assert_allclose(same.log_prob(x, c).numpy(), same.members[0].log_prob(x, c).numpy(), rtol=1e-5)


def test_bootstrap_counts_are_poisson_one_fixed_per_example_and_independent_across_members():
    x, c = _data(20000, seed=9)
    counts = bootstrap_counts(tf.constant(x), tf.constant(c), 4).numpy()
    assert counts.shape == (20000, 4) and set(np.unique(counts)) <= set(range(8))
    # Poisson(1): mean 1, P(0) = P(1) = e^-1, P(2) = e^-1 / 2
    np.testing.assert_allclose(counts.mean(0), 1.0, atol=0.03)
    for n, p in ((0, np.exp(-1)), (1, np.exp(-1)), (2, np.exp(-1) / 2)):
        np.testing.assert_allclose((counts == n).mean(0), p, atol=0.015)
    assert np.abs(np.corrcoef(counts.T)[np.triu_indices(4, 1)]).max() < 0.04
    # a function of the example: the same counts in another batch, in another order
    order = np.random.default_rng(0).permutation(300)
    again = bootstrap_counts(tf.constant(x[:300][order]), tf.constant(c[:300][order]), 4).numpy()
    np.testing.assert_array_equal(again, counts[:300][order])
    # and of its values: a changed condition changes the counts
    moved = bootstrap_counts(tf.constant(x[:300]), tf.constant(c[:300] + 1e-3), 4).numpy()
    assert (moved != counts[:300]).mean() > 0.4


def test_bagged_objective_weights_each_member_by_its_counts():
    m = FlowEnsemble.of(ConditionalRealNVP, 2, 2, 3, depth=1, width=8, seed=0, bootstrap=True)
    x, c = _data(64, seed=10)
    m.initialize(x, c)
    xs, cs = m._check_pair(x, c)
    objective, _ = m._training_losses(xs, cs, tf.constant([1, 2]))
    counts = bootstrap_counts(xs, cs, 2).numpy()
    each = [mm._training_losses(xs, cs, None)[0].numpy() for mm in m.members]  # vector models: no noise
    np.testing.assert_allclose(objective.numpy(), counts[:, 0] * each[0] + counts[:, 1] * each[1], rtol=1e-5)
    assert copy_model(m).get_config()["bootstrap"] is True


def _member_rows(n, n_val, seed, bootstrap):
    """The training rows fit_members gives member ``seed`` (its documented split rule)."""
    rng = np.random.default_rng(seed)
    train = rng.permutation(n)[n_val:]
    return rng.choice(train, size=len(train), replace=True) if bootstrap else train


@pytest.mark.parametrize("bootstrap", [False, True])
def test_fit_members_trains_each_member_alone_on_its_own_split(bootstrap):
    x, c = _data(400, seed=8)
    m = FlowEnsemble.of(ConditionalRealNVP, 2, 2, 3, depth=1, width=8, seed=0, bootstrap=bootstrap)
    before = [mm.get_weights() for mm in m.members]
    histories = m.fit_members(x, c, epochs=3, batch_size=100, validation_fraction=0.25, patience=2,
                              optimizer=keras.optimizers.Adam(1e-2), seed=10, verbose=0, clipnorm=5.0)
    assert len(histories) == 2 and all(0 < len(h.history["val_loss"]) <= 3 for h in histories)
    means = []
    for k, (mm, w0) in enumerate(zip(m.members, before)):
        # each member's standardization is learned from its own training rows, not from all of x
        rows = _member_rows(len(x), 100, 10 + k, bootstrap)
        np.testing.assert_allclose(mm.x_standardizer.get_weights()[0], x[rows].mean(0), atol=1e-4)
        means.append(mm.x_standardizer.get_weights()[0])
        assert mm.optimizer is not m.members[1 - k].optimizer  # a fresh optimizer each
        changed = [not np.allclose(a, b) for a, b in zip(w0, mm.get_weights())]
        assert sum(changed) >= len(changed) // 2
    assert not np.allclose(means[0], means[1])


def test_fit_members_is_deterministic_given_the_seed():
    x, c = _data(300, seed=9)
    weights = []
    for run in range(2):
        keras.utils.set_random_seed(1)  # the same initial weights
        m = FlowEnsemble.of(ConditionalRealNVP, 2, 2, 3, depth=1, width=8, seed=0)
        keras.utils.set_random_seed(100 + run)  # a different global state: only fit_members' seed may count
        m.fit_members(x, c, epochs=2, batch_size=64, optimizer="adam", seed=3, verbose=0)
        weights.append([w for mm in m.members for w in mm.get_weights()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_fit_members_gives_a_mixture_better_than_its_average_member_on_held_out_data():
    # as the joint-fit test above, with members trained one after another on their own splits
    x, c = _data(200, seed=6)
    xv, cv = _data(2000, seed=7)
    m = FlowEnsemble.of(ConditionalRealNVP, 4, 2, 3, depth=3, width=64, seed=0)
    m.fit_members(x, c, epochs=30, batch_size=90, validation_fraction=0.1, patience=30,
                  optimizer=keras.optimizers.Adam(3e-3), seed=0, verbose=0)
    members = np.mean([-mm.log_prob(xv, cv).numpy().mean() for mm in m.members])
    mixture = -m.log_prob(xv, cv).numpy().mean()
    assert mixture < members - 0.05, (mixture, members)


def test_fit_members_refuses_what_it_cannot_split():
    x, c = _data(50)
    m = FlowEnsemble.of(ConditionalRealNVP, 2, 2, 3, depth=1, width=4)
    with pytest.raises(TypeError, match="splits arrays"):
        m.fit_members(tf.data.Dataset.from_tensor_slices((x, c)).batch(10), None)
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
        m.fit_members(x, c, validation_fraction=1.0)
    with pytest.raises(ValueError, match="same number of rows"):
        m.fit_members(x, c[:40])
