import numpy as np
import tensorflow as tf

from tfcflow import _random


def test_same_numbers_eagerly_in_graphs_and_under_xla():
    seed = tf.constant([3, 7])
    for fn in (_random.normal, _random.uniform):
        eager = fn([1000], seed).numpy()
        graph = tf.function(lambda s: fn([1000], s))(seed).numpy()
        xla = tf.function(lambda s: fn([1000], s), jit_compile=True)(seed).numpy()
        np.testing.assert_array_equal(eager, graph)
        np.testing.assert_allclose(eager, xla, atol=2e-6)


def test_extreme_bits_give_finite_draws(monkeypatch):
    extremes = tf.constant([0, 1, 2**31, 2**32 - 512, 2**32 - 1], dtype=tf.uint32)
    monkeypatch.setattr(_random, "_bits", lambda shape, seed, offset=None: extremes)
    u = _random.uniform([5], [0, 0]).numpy()
    z = _random.normal([5], [0, 0]).numpy()
    assert np.all((u > 0) & (u < 1)) and np.all(np.isfinite(z)) and np.abs(z).max() < 6


def test_distribution_and_split():
    z = _random.normal([200_000], tf.constant([1, 2])).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    seeds = _random.split(tf.constant([1, 2]), 3).numpy()
    assert seeds.shape == (3, 2) and len({tuple(s) for s in seeds}) == 3
    np.testing.assert_array_equal(_random.fold_in(tf.constant([1, 2]), 2).numpy(), seeds[2])


def test_an_offset_draw_is_the_slice_of_the_whole_draw_eagerly_and_under_xla():
    seed = tf.constant([5, 9])
    whole_n = _random.normal([40, 3], seed).numpy()
    whole_u = _random.uniform([40, 3], seed).numpy()
    xla = tf.function(lambda s, o: _random.normal([7, 3], s, offset=o), jit_compile=True)
    for row in (0, 1, 2, 3, 5, 33):  # element offsets 3 * row: every lane remainder mod 4
        np.testing.assert_array_equal(_random.normal([7, 3], seed, offset=3 * row).numpy(), whole_n[row:row + 7])
        np.testing.assert_array_equal(_random.uniform([7, 3], seed, offset=3 * row).numpy(), whole_u[row:row + 7])
        # the same bits under XLA (its erfinv differs in the last bits, as for whole draws above)
        np.testing.assert_allclose(xla(seed, tf.constant(3 * row, tf.int64)).numpy(), whole_n[row:row + 7], atol=2e-6)
    assert not np.array_equal(_random.normal([7, 3], seed, offset=3).numpy(), whole_n[:7])


def test_draws_at_chosen_positions_are_those_elements_of_the_whole_draw():
    # the Philox rounds run in TF ops here: bit for bit TF's kernel, eagerly, in graphs and under XLA
    seed = tf.constant([7, 3])
    whole = _random._bits([5000], seed).numpy()
    at = np.random.default_rng(0).integers(0, 5000, (37, 3))  # every lane, repeats, any order
    np.testing.assert_array_equal(_random._bits([37, 3], seed, offset=tf.constant(at)).numpy(), whole[at])
    bits = tf.function(lambda s, o: _random._bits([37, 3], s, offset=o), jit_compile=True)
    np.testing.assert_array_equal(bits(seed, tf.constant(at)).numpy(), whole[at])
    np.testing.assert_array_equal(_random.uniform([37, 3], seed, offset=at).numpy(),
                                  _random.uniform([5000], seed).numpy()[at])
    normal = tf.function(lambda s, o: _random.normal([37, 3], s, offset=o), jit_compile=True)
    np.testing.assert_allclose(normal(seed, tf.constant(at)).numpy(), _random.normal([5000], seed).numpy()[at],
                               atol=2e-6)
    # positions around 2^34: the counter passes 2^32 (its first 32-bit word wraps into the second)
    far = np.arange(2**34 - 5, 2**34 + 15)
    np.testing.assert_array_equal(_random._bits([20], seed, offset=tf.constant(far)).numpy(),
                                  _random._bits([20], seed, offset=int(far[0])).numpy())
    assert not np.array_equal(_random._bits([20], tf.constant([7, 4]), offset=tf.constant(far)).numpy(),
                              _random._bits([20], seed, offset=tf.constant(far)).numpy())
