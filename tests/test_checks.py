"""tfcflow/_checks.py and the data-error helpers of train_step.py: one mechanism for value checks
(``enforce``, eager and in-graph) and one for locating a bad row."""
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import _checks
from tfcflow.train_step import dataset_position, nonfinite_in_batch


def test_enforce_raises_value_error_eagerly_with_the_detail_or_the_data():
    t = tf.constant([1.0, 2.0])
    assert _checks.enforce(t, t > 0, "must be positive") is t
    with pytest.raises(ValueError, match=r"^must be positive; got 2$"):
        _checks.enforce(t, t < 0, "must be positive", lambda: "got 2")
    with pytest.raises(ValueError, match=r"^size must be even; \[3, 5\]$"):
        _checks.enforce(t, tf.constant(False), "size must be even", data=[tf.constant([3, 5])])


def test_enforce_in_a_graph_names_the_message_and_the_data_before_the_value_is_used():
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def f(x):
        size = tf.shape(x)
        x = _checks.enforce(x, tf.equal(size % 2, 0), "height and width must be even; got", data=[size])
        return tf.reshape(x, [-1, 2])  # would fail on an odd size if the assertion did not come first

    assert f(tf.zeros([2, 4])).shape == (4, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"height and width must be even; got\] \[3 5\]"):
        f(tf.zeros([3, 5]))
    # a nest of values passes through the one assertion
    pair = tf.function(lambda a, b: _checks.enforce((a, b), a > b, "a must exceed b"))
    a, b = pair(tf.constant(2.0), tf.constant(1.0))
    assert float(a) == 2.0 and float(b) == 1.0
    with pytest.raises(tf.errors.InvalidArgumentError, match="a must exceed b"):
        pair(tf.constant(0.0), tf.constant(1.0))


def test_first_nonfinite_row_of_arrays_and_tensors():
    x = np.zeros((5, 2, 3), np.float32)
    assert _checks.first_nonfinite_row(x) == -1
    x[3, 1, 2] = np.inf
    x[4, 0, 0] = np.nan
    assert _checks.first_nonfinite_row(x) == 3
    assert _checks.first_nonfinite_row(tf.constant(x)) == 3
    assert _checks.first_nonfinite_row(np.array([0.0, np.nan])) == 1
    assert _checks.first_nonfinite_row(np.arange(4)) == -1
    assert _checks.first_nonfinite_row(np.zeros((0, 2))) == -1


def test_nonfinite_in_batch_names_the_input_and_the_row():
    x, c = np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32)
    assert nonfinite_in_batch((x, c)) is None
    assert nonfinite_in_batch({"x": x, "condition": None}) is None
    bad_c = c.copy()
    bad_c[2, 1] = np.nan
    assert nonfinite_in_batch((x, bad_c)) == ("condition", 2)
    bad_x = x.copy()
    bad_x[3, 0] = -np.inf
    assert nonfinite_in_batch({"x": bad_x, "condition": bad_c}) == ("x", 3)  # x first
    assert nonfinite_in_batch((np.arange(4), c)) is None  # integer data holds no NaN
    assert dataset_position("x", 1, 36) == " (in x: batch 1, row 36 of the dataset, counted from 0)"
