import keras
import numpy as np
import pytest

from tfcflow.holdout import fit_with_holdout, fresh_optimizer, holdout_split


def test_split_is_a_seeded_partition_of_the_rows():
    train, val = holdout_split(100, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    again = holdout_split(100, 0.1, seed=3)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(holdout_split(100, 0.1, seed=4)[1], val)


def test_bootstrap_resamples_only_the_training_rows():
    train, val = holdout_split(200, 0.25, seed=0, bootstrap=True)
    plain_train, plain_val = holdout_split(200, 0.25, seed=0)
    np.testing.assert_array_equal(val, plain_val)  # the held-out rows do not move
    assert len(train) == len(plain_train)
    assert set(train) <= set(plain_train)
    assert len(set(train)) < len(train)  # with replacement: repeats (P(no repeat) ~ 0)


def test_no_validation_keeps_every_row_for_training():
    train, val = holdout_split(7, 0.0, seed=1)
    assert len(val) == 0 and sorted(train) == list(range(7))


@pytest.mark.parametrize("fraction, pattern", [(1.0, r"must be in \[0, 1\)"), (-0.1, r"must be in \[0, 1\)"),
                                               (0.9, "leaves no training rows of 1")])
def test_bad_fractions_are_refused(fraction, pattern):
    with pytest.raises(ValueError, match=pattern):
        holdout_split(1 if fraction == 0.9 else 10, fraction, seed=0)


def test_fresh_optimizer_copies_settings_not_state():
    adam = keras.optimizers.Adam(1e-3, clipnorm=2.0)
    copy = fresh_optimizer(adam)
    assert copy is not adam and copy.get_config()["clipnorm"] == 2.0
    assert float(copy.learning_rate) == pytest.approx(1e-3)
    assert isinstance(fresh_optimizer("adam"), keras.optimizers.Adam)


def test_fit_reduces_the_learning_rate_on_a_plateau_and_restores_the_best_weights():
    from tests.helpers import tiny_model
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    c = rng.standard_normal((64, 8)).astype(np.float32)
    m = tiny_model("cinn", depth=1, width=8)
    # a learning rate so small that the held-out loss cannot improve: every epoch is a plateau
    history, val = fit_with_holdout(m, x, c, epochs=3, batch_size=32, validation_fraction=0.25, patience=10,
                                    optimizer=keras.optimizers.Adam(1e-9), lr_patience=0, seed=1, verbose=0)
    np.testing.assert_array_equal(val, holdout_split(64, 0.25, seed=1)[1])
    assert float(m.optimizer.learning_rate) == pytest.approx(1e-9 * 0.5 ** 2, rel=1e-3)
    assert len(history.history["val_loss"]) == 3


def test_lr_patience_needs_held_out_rows():
    from tests.helpers import tiny_model
    x, c = np.zeros((8, 2), np.float32), np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="lr_patience reads the held-out loss"):
        fit_with_holdout(tiny_model("cinn", depth=1, width=8), x, c, validation_fraction=0.0, lr_patience=3)
