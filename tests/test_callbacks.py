import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow.callbacks import Checkpointing, ema_swapped, image_grid, training_checkpoint
from tfcflow.data import gaussian_mixture as gm
from tfcflow.models import ConditionalRealNVP


def _model(**compile_kw):
    keras.utils.set_random_seed(0)
    # standardize=False: the poisoned row must overflow the loss (standardized, it would not)
    m = ConditionalRealNVP(2, 8, depth=2, width=16, network={"hidden_layers": 1}, standardize=False)
    m.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.9), **compile_kw)
    return m


def _poisoned_data(bad_batch=3, batch=32):
    x, _, c = gm.sample(batch * 6, seed=0)
    x[bad_batch * batch - 1] = 1e30  # finite, but its log-likelihood overflows
    return tf.data.Dataset.from_tensor_slices((x, c)).batch(batch)


def test_checkpointing_stops_at_the_bad_step_and_keeps_the_last_good_checkpoint(tmp_path):
    m = _model()
    manager = tf.train.CheckpointManager(training_checkpoint(m), str(tmp_path), max_to_keep=10)
    cb = Checkpointing(manager, every=1)
    m.fit(_poisoned_data(), epochs=1, callbacks=[cb], verbose=0)
    assert cb.diverged_at == 3
    assert manager.latest_checkpoint.endswith("ckpt-2") and cb.last_good == manager.latest_checkpoint
    restored = _model()
    restored.optimizer.build(restored.trainable_variables)
    training_checkpoint(restored).restore(manager.latest_checkpoint).assert_existing_objects_matched()
    assert all(np.all(np.isfinite(v.numpy())) for v in restored.trainable_variables)
    assert int(restored.optimizer.iterations.numpy()) == 2


def test_skip_policy_skips_the_bad_step_and_keeps_training():
    m = _model(skip_nonfinite=True)
    hist = m.fit(_poisoned_data(), epochs=1, verbose=0)
    assert hist.history["skipped_steps"] == [1.0]
    assert np.isfinite(hist.history["loss"][0]) and np.isfinite(hist.history["grad_norm"][0])
    assert all(np.all(np.isfinite(v.numpy())) for v in m.trainable_variables)
    assert int(m.optimizer.iterations.numpy()) == 5  # 6 batches, one skipped


def test_ema_swap_puts_the_average_in_and_restores_the_raw_weights():
    m = _model()
    x, _, c = gm.sample(256, seed=1)
    m.fit(x, c, batch_size=32, epochs=1, verbose=0)  # Keras leaves the EMA weights in after fit
    opt = m.optimizer
    raw = [v.numpy() + 0.5 for v in opt._trainable_variables]
    for v, r in zip(opt._trainable_variables, raw):
        v.assign(r)
    with ema_swapped(m):
        inside = [v.numpy() for v in opt._trainable_variables]
    for a, avg in zip(inside, opt._model_variables_moving_average):
        np.testing.assert_array_equal(a, avg.numpy())
    for v, r in zip(opt._trainable_variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)


def test_image_grid_layout():
    imgs = np.stack([np.full((2, 3, 1), k / 5.0, np.float32) for k in range(5)])
    grid = image_grid(imgs, columns=2)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 1)
    assert grid[1, 1, 0] == 0.0 and grid[1, 5, 0] == pytest.approx(0.2) and grid[7, 1, 0] == pytest.approx(0.8)


def test_training_checkpoint_restores_every_model_variable(tmp_path):
    """Trainable and non-trainable state (ActNorm's data init flag, permutations) come back: a
    restored model equals the saved one and is not re-initialized by fit."""
    from tfcflow.callbacks import training_checkpoint
    from tfcflow.models import ConditionalGlow

    def model():
        m = ConditionalGlow(event_shape=[8, 8, 1], condition_shape=[4, 4, 1], levels=2, depth=1, width=8)
        m.compile(optimizer=keras.optimizers.Adam(1e-3))
        m.optimizer.build(m.trainable_variables)
        return m

    rng = np.random.default_rng(0)
    x, c = rng.integers(0, 256, (64, 8, 8, 1)).astype(np.uint8), rng.integers(0, 256, (64, 4, 4, 1)).astype(np.uint8)
    saved = model()
    saved.initialize(x, c)
    for v in saved.trainable_variables:
        v.assign(v + 0.01)
    path = training_checkpoint(saved).save(str(tmp_path / "ckpt"))
    restored = model()
    assert restored.needs_initialization()
    training_checkpoint(restored).restore(path).assert_existing_objects_matched()
    assert not restored.needs_initialization()
    for a, b in zip(saved.variables, restored.variables):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()), err_msg=a.path)
