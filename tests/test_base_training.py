"""Training the learned residual base alone, then freezing it (tfcflow/base_training.py)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import base_training
from tests.helpers import tiny_caflow, tiny_glow


def _nearest_x2(n, seed=0):
    """Targets that are the nearest-neighbour x2 of a binary condition: bicubic is wrong at every
    edge and a small CNN can learn the difference."""
    rng = np.random.default_rng(seed)
    c = (rng.integers(0, 2, (n, 4, 4, 1)) * 255).astype(np.uint8)
    return np.repeat(np.repeat(c, 2, axis=1), 2, axis=2), c


def _dataset(x, c, batch, seed=0):
    return tf.data.Dataset.from_tensor_slices((x, c)).shuffle(len(x), seed=seed).repeat().batch(batch)


@pytest.mark.parametrize("make", [tiny_glow, tiny_caflow], ids=["glow", "caflow"])
def test_fit_base_trains_g_alone_and_beats_bicubic(make):
    x, c = _nearest_x2(256)
    xv, cv = _nearest_x2(64, seed=1)
    keras.utils.set_random_seed(0)
    m = make(residual={"kind": "learned", "width": 16, "depth": 1})
    g_ids = {id(v) for v in m.upsampler.weights}
    others = [v.numpy() for v in m.weights if id(v) not in g_ids]
    before = float(tf.reduce_mean(m.base_loss(xv, cv)))
    history = base_training.fit_base(m, _dataset(x, c, 32), steps=120, learning_rate=3e-3, log_every=40, log=None)
    after = float(tf.reduce_mean(m.base_loss(xv, cv)))
    assert len(history) == 3 and history[-1] < history[0]
    assert after < 0.5 * before, (before, after)  # held-out L1 of the base: well below bicubic's
    for v, old in zip([v for v in m.weights if id(v) not in g_ids], others):  # the flow is untouched
        np.testing.assert_array_equal(v.numpy(), old)


def test_base_loss_is_the_l1_of_x_minus_the_base():
    x, c = _nearest_x2(4)
    m = tiny_glow(residual={"kind": "learned", "width": 4, "depth": 1})
    base = m._base(m._check_condition(c), [8, 8], trainable=True).numpy()
    expected = np.abs(x / 255.0 - 0.5 - base).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(m.base_loss(x, c).numpy(), expected, rtol=1e-5)


def test_a_frozen_base_leaves_the_objective_and_is_not_changed_by_fit_with_ema():
    x, c = _nearest_x2(64)
    keras.utils.set_random_seed(1)
    m = tiny_glow(residual={"kind": "learned", "width": 8, "depth": 1})
    base_training.fit_base(m, _dataset(x, c, 16), steps=20, log=None)
    base_training.freeze_base(m)
    g = [v.numpy() for v in m.upsampler.weights]
    assert np.abs(g[-2]).max() > 0  # trained: conv_out starts at zero
    assert not any(v is w for v in m.trainable_variables for w in m.upsampler.weights)
    bins, cc = m._check_pair(x[:8], c[:8])
    objective, nll = m._training_losses(bins, cc, tf.constant([1, 2]))
    np.testing.assert_array_equal(objective.numpy(), nll.numpy())  # no L1 term once frozen
    # compiled after freezing: the optimizer (and its EMA, swapped in at the end of fit) never holds g
    m.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.9))
    m.fit(x, c, batch_size=16, epochs=1, verbose=0)
    for v, old in zip(m.upsampler.weights, g):
        np.testing.assert_array_equal(v.numpy(), old)


def test_bad_uses_are_refused():
    x, c = _nearest_x2(8)
    with pytest.raises(ValueError, match="residual='learned'"):
        base_training.fit_base(tiny_glow(residual=True), _dataset(x, c, 4), steps=2)
    with pytest.raises(ValueError, match="residual='learned'"):
        tiny_glow().base_loss(x, c)
    m = tiny_glow(residual={"kind": "learned", "width": 4, "depth": 1})
    with pytest.raises(ValueError, match="steps >= 1"):
        base_training.fit_base(m, _dataset(x, c, 4), steps=0)
    with pytest.raises(ValueError, match="ended after 2 of the 5"):
        base_training.fit_base(m, tf.data.Dataset.from_tensor_slices((x, c)).batch(4), steps=5, log=None)
    base_training.freeze_base(m)
    with pytest.raises(ValueError, match="frozen"):
        base_training.fit_base(m, _dataset(x, c, 4), steps=2)


def test_base_training_resumes_from_its_checkpoint_exactly(tmp_path):
    x, c = _nearest_x2(64)

    def model():
        keras.utils.set_random_seed(2)
        return tiny_glow(residual={"kind": "learned", "width": 8, "depth": 1})

    straight = model()
    history = base_training.fit_base(straight, _dataset(x, c, 8), steps=6, log_every=2, log=None,
                                     checkpoint_dir=str(tmp_path / "straight"))
    # a run killed after 5 steps: the checkpoint of step 4 survives (step 5 was in an unfinished block)
    killed = model()
    with pytest.raises(ValueError, match="ended after 5 of the 6"):
        base_training.fit_base(killed, _dataset(x, c, 8).take(5), steps=6, log_every=2, log=None,
                               checkpoint_dir=str(tmp_path / "resumed"))
    assert sorted(p.name for p in (tmp_path / "resumed").glob("l1_history-*.json")) == ["l1_history-4.json"]
    resumed = model()  # a new process: fresh weights, restored from the folder
    lines = []
    again = base_training.fit_base(resumed, _dataset(x, c, 8), steps=6, log_every=2, log=lines.append,
                                   checkpoint_dir=str(tmp_path / "resumed"))
    assert lines[0].startswith("base training resumed at step 4/6") and len(lines) == 2  # one block trained
    np.testing.assert_allclose(again, history, rtol=1e-6)
    for v, w in zip(resumed.upsampler.weights, straight.upsampler.weights):
        np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-6, atol=1e-7)
    # finished: a further call trains nothing and returns the same history
    done = model()
    assert base_training.fit_base(done, _dataset(x, c, 8), steps=6, log_every=2, log=None,
                                  checkpoint_dir=str(tmp_path / "resumed")) == again
    with pytest.raises(ValueError, match="past the 4 asked for"):
        base_training.fit_base(model(), _dataset(x, c, 8), steps=4, log=None, checkpoint_dir=str(tmp_path / "resumed"))
