"""PriorSpace: the support read from TFP, flat vectors, the JSON spec and the fingerprint."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow.inference import PriorSpace, prior_from_spec, prior_spec


def _box():
    return tfd.Independent(tfd.Uniform(low=[-1.0, -2.0], high=[1.0, 3.0]), reinterpreted_batch_ndims=1)


def _joint():
    return tfd.JointDistributionNamed(dict(a=tfd.Independent(tfd.Uniform([0.0, 0.0], [1.0, 2.0]), 1),
                                           b=tfd.LogNormal(0.0, 1.0)))


def test_the_support_is_read_from_the_priors_event_space_bijector():
    assert PriorSpace(_box()).bounds == [[-1.0, 1.0], [-2.0, 3.0]]
    assert PriorSpace(tfd.MultivariateNormalDiag([0.0, 0.0], [1.0, 2.0])).bounds is None
    half = tfd.Independent(tfd.HalfNormal([1.0, 1.0]), 1)
    assert PriorSpace(half).bounds == [[0.0, None], [0.0, None]]
    assert PriorSpace(_joint()).bounds == [[0.0, 1.0], [0.0, 2.0], [0.0, None]]


def test_a_joint_prior_flattens_and_unflattens_and_keeps_its_density():
    space = PriorSpace(_joint())
    assert space.dim == 3 and space.structured
    theta = space.sample(50, seed=3)
    assert theta.shape == (50, 3)
    parts = space.unflatten(theta)
    assert parts["a"].shape == (50, 2) and parts["b"].shape == (50,)
    np.testing.assert_array_equal(space.flatten(parts), theta)
    # the flat log-density is the joint's own, on its structure
    np.testing.assert_allclose(space.log_prob(theta), _joint().log_prob(
        {"a": tf.constant(parts["a"]), "b": tf.constant(parts["b"])}).numpy(), rtol=1e-6)
    # seeded draws
    np.testing.assert_array_equal(space.sample(5, seed=1), space.sample(5, seed=1))


def test_outside_names_rows_beyond_the_box_or_of_zero_density():
    space = PriorSpace(_box())
    theta = np.array([[0.0, 0.0], [1.5, 0.0], [0.0, -2.5], [0.99, 2.99]], np.float32)
    np.testing.assert_array_equal(space.outside(theta), [False, True, True, False])
    free = PriorSpace(tfd.MultivariateNormalDiag([0.0, 0.0], [1.0, 1.0]))
    assert not free.outside(np.full((3, 2), 50.0, np.float32)).any()


@pytest.mark.parametrize("make", [_box, _joint, lambda: tfd.MultivariateNormalTriL([0.0, 1.0], [[1.0, 0.0],
                                                                                              [0.5, 2.0]])])
def test_a_prior_built_from_numbers_round_trips_through_its_json_spec(make):
    import json
    prior = make()
    spec = json.loads(json.dumps(prior_spec(prior)))
    again = prior_from_spec(spec)
    space, space2 = PriorSpace(prior), PriorSpace(again)
    theta = space.sample(20, seed=0)
    np.testing.assert_allclose(space2.log_prob(theta), space.log_prob(theta), rtol=1e-6)
    assert space2.bounds == space.bounds


def test_a_prior_with_python_functions_has_no_spec_and_its_fingerprint_checks_a_prior_given_again():
    seq = tfd.JointDistributionSequential([tfd.Normal(0.0, 1.0), lambda a: tfd.Normal(a, 1.0)])
    assert prior_spec(seq) is None
    space = PriorSpace(seq)
    fingerprint = space.fingerprint()
    PriorSpace(tfd.JointDistributionSequential([tfd.Normal(0.0, 1.0), lambda a: tfd.Normal(a, 1.0)])
               ).check_fingerprint(fingerprint)
    other = PriorSpace(tfd.JointDistributionSequential([tfd.Normal(0.0, 1.0), lambda a: tfd.Normal(a, 2.0)]))
    with pytest.raises(ValueError, match="not the one the estimator was trained with"):
        other.check_fingerprint(fingerprint)


@pytest.mark.parametrize("prior, message", [
    ("uniform", "must be a TensorFlow Probability distribution"),
    (tfd.Uniform([-1.0, -1.0], [1.0, 1.0]), r"batch shape \[\]"),
    (tfd.Independent(tfd.Bernoulli(probs=[0.5, 0.5]), 1), "discrete parameters"),
    (tfd.Independent(tfd.Poisson(rate=[1.0, 2.0]), 1), "support is unknown|discrete"),
])
def test_bad_priors_are_refused_by_name(prior, message):
    with pytest.raises(ValueError, match=message):
        PriorSpace(prior)


def test_a_support_that_is_not_a_box_is_refused():
    lkj = tfd.CholeskyLKJ(dimension=3, concentration=1.0)
    with pytest.raises(ValueError, match="not a box|support is unknown"):
        PriorSpace(lkj)


def test_a_spec_names_an_unknown_class():
    with pytest.raises(ValueError, match="not a tfp.distributions class"):
        prior_from_spec({"class": "NoSuchDistribution", "parameters": {}})
    with pytest.raises(ValueError, match="prior spec"):
        prior_from_spec([1, 2])
