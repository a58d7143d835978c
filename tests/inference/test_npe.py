"""NPE: a TFP prior in, a trained posterior out; the mathematics checked against known answers."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from tfcflow.inference import NPE, Training

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {"depth": 2, "width": 32}
#: the tests of one flow's mathematics train one flow (NPE's default mixes two, and chooses their
#: flow among DEFAULT_CANDIDATES: the ensemble and candidate tests)
ONE = 1
ONE_FLOW = ({},)
NOISE = 0.5


def gaussian_prior():
    return tfd.MultivariateNormalDiag(loc=[0.0, 0.0], scale_diag=[1.0, 1.0])


def box_prior():
    return tfd.Independent(tfd.Uniform(low=[-1.0, -1.0], high=[1.0, 1.0]), reinterpreted_batch_ndims=1)


def noisy_identity(theta, rng):
    """x = theta + N(0, NOISE^2 I): with a N(0, I) prior the posterior is
    N(x / (1 + NOISE^2), NOISE^2 / (1 + NOISE^2) I)."""
    return theta + NOISE * rng.standard_normal(theta.shape).astype(np.float32)


@pytest.fixture(scope="module")
def gaussian_npe():
    npe = NPE(gaussian_prior(), flow=TINY, ensemble=ONE, candidates=ONE_FLOW,
              training=Training(epochs=200, batch_size=128, learning_rate=2e-3), seed=0)
    npe.fit(simulator=noisy_identity, num_simulations=4000, verbose=0)
    return npe


@pytest.fixture(scope="module")
def box_npe():
    npe = NPE(box_prior(), flow=TINY, ensemble=ONE, candidates=ONE_FLOW, training=Training(epochs=3), seed=1)
    npe.fit(simulator=noisy_identity, num_simulations=1000, verbose=0)
    return npe


def test_the_posterior_of_a_conjugate_gaussian_is_learned(gaussian_npe):
    x_o = np.array([1.0, -0.5], np.float32)
    draws = gaussian_npe.sample(x_o, num_samples=4000, seed=0)
    assert draws.shape == (4000, 2)
    mean, std = x_o / (1 + NOISE ** 2), np.sqrt(NOISE ** 2 / (1 + NOISE ** 2))
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.08)
    np.testing.assert_allclose(draws.std(0), std, rtol=0.15)
    # a trained posterior beats the prior on held-out simulations (expected log density)
    rng = np.random.default_rng(7)
    theta = rng.standard_normal((500, 2)).astype(np.float32)
    x = noisy_identity(theta, rng)
    gain = gaussian_npe.log_prob(theta, x).mean() - gaussian_prior().log_prob(theta).numpy().mean()
    exact = tfd.MultivariateNormalDiag(x / (1 + NOISE ** 2), np.float32([std, std])).log_prob(theta).numpy().mean() \
        - gaussian_prior().log_prob(theta).numpy().mean()
    assert gain > 0.7 * exact > 0


def test_samples_are_seeded_and_batched_observations_get_their_own_axis(gaussian_npe):
    x_o = np.array([0.3, 0.1], np.float32)
    a = gaussian_npe.sample(x_o, num_samples=50, seed=3)
    np.testing.assert_array_equal(a, gaussian_npe.sample(x_o, num_samples=50, seed=3))
    assert not np.array_equal(a, gaussian_npe.sample(x_o, num_samples=50, seed=4))
    both = gaussian_npe.sample(np.stack([x_o, -x_o]), num_samples=50, seed=3)
    assert both.shape == (2, 50, 2)
    np.testing.assert_allclose(both[0], a, atol=1e-5)  # observation 0's draws do not depend on the batch


def test_draws_stay_in_the_priors_box_and_the_density_integrates_to_one_on_it(box_npe):
    x_o = np.array([0.2, -0.4], np.float32)
    draws = box_npe.sample(x_o, num_samples=3000, seed=0)
    assert (np.abs(draws) < 1).all()
    # the truncated flow's density on the box integrates to 1 (midpoint rule, 120 x 120)
    g = (np.arange(120) + 0.5) / 120 * 2 - 1
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2).astype(np.float32)
    integral = np.exp(box_npe.log_prob(grid, x_o)).sum() * (2 / 120) ** 2
    assert abs(integral - 1) < 0.03
    assert np.isneginf(box_npe.log_prob(np.array([[1.5, 0.0]], np.float32), x_o)).all()


def test_draws_follow_log_prob(gaussian_npe):
    """A histogram of the draws agrees with the density's mass per cell."""
    x_o = np.array([0.5, 0.5], np.float32)
    draws = gaussian_npe.sample(x_o, num_samples=20000, seed=1)
    edges = np.linspace(-1.2, 2.0, 9)
    centers = (edges[:-1] + edges[1:]) / 2
    cells = np.stack(np.meshgrid(centers, centers, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    mass = np.exp(gaussian_npe.log_prob(cells, x_o)) * (edges[1] - edges[0]) ** 2
    counts, _, _ = np.histogram2d(draws[:, 0], draws[:, 1], bins=[edges, edges])
    share = counts.reshape(-1) / len(draws)
    big = mass > 0.02
    np.testing.assert_allclose(share[big], mass[big], rtol=0.2, atol=0.005)


def test_fit_on_arrays_on_a_dataset_and_on_a_simulator_trains_the_same_model():
    rng = np.random.default_rng(5)
    from tfcflow.data.simulator import simulate
    npe_sim = NPE(box_prior(), flow=TINY, ensemble=ONE, candidates=ONE_FLOW, training=Training(epochs=2), seed=2)
    npe_sim.fit(simulator=noisy_identity, num_simulations=300, verbose=0)
    # the same simulations the estimator drew: its prior draws, then the simulator, from seed 2
    theta, x = simulate(npe_sim.space.prior_function(), noisy_identity, 300, 2)
    npe_arr = NPE(box_prior(), flow=TINY, ensemble=ONE, candidates=ONE_FLOW, training=Training(epochs=2), seed=2)
    npe_arr.fit(theta, x, verbose=0)
    npe_ds = NPE(box_prior(), flow=TINY, ensemble=ONE, candidates=ONE_FLOW, training=Training(epochs=2), seed=2)
    npe_ds.fit(tf.data.Dataset.from_tensor_slices((theta, x)).batch(100), verbose=0)
    x_o = x[0]
    ref = npe_arr.sample(x_o, num_samples=200, seed=0)
    np.testing.assert_allclose(npe_sim.sample(x_o, num_samples=200, seed=0), ref, atol=1e-5)
    np.testing.assert_allclose(npe_ds.sample(x_o, num_samples=200, seed=0), ref, atol=1e-5)
    del rng


def test_an_ensemble_is_the_mixture_of_flows_trained_one_after_another(tmp_path):
    npe = NPE(box_prior(), flow=TINY, training=Training(epochs=2), seed=3)  # the default: two flows
    npe.fit(simulator=noisy_identity, num_simulations=300, verbose=0)
    members = npe.flow.members
    assert len(members) == 2 and len(npe.history.history["members_epochs"]) == 2
    x_o = np.array([0.3, -0.1], np.float32)
    theta = np.array([[0.1, 0.2], [-0.6, 0.4], [0.9, -0.9]], np.float32)
    c = np.repeat(x_o[None], 3, axis=0)
    each = np.stack([m.log_prob(theta, c).numpy() for m in members])
    np.testing.assert_allclose(npe.log_prob(theta, x_o), np.logaddexp(each[0], each[1]) - np.log(2), rtol=1e-5)
    assert not np.allclose(each[0], each[1])  # two initializations, two splits
    draws = npe.sample(x_o, num_samples=500, seed=0)
    assert (np.abs(draws) < 1).all()
    # a mixture of vector flows samples XLA-compiled (each member a static block: models/ensemble.py)
    assert npe.execution.jit_sampling
    npe.save(str(tmp_path / "ens"))
    again = NPE.load(str(tmp_path / "ens"))
    assert again.ensemble == 2
    np.testing.assert_array_equal(again.sample(x_o, num_samples=500, seed=0), draws)
    # and in a fresh process, which has imported no flow class before the load
    code = ("import sys, numpy as np\nfrom tfcflow.inference import NPE\n"
            "print(NPE.load(sys.argv[1]).log_prob(np.array([[0.1, 0.2]], np.float32), np.array([0.3, -0.1], "
            "np.float32))[0])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ens")], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) == pytest.approx(float(npe.log_prob(theta[:1], x_o)[0]), rel=1e-5)
    with pytest.raises(ValueError, match="ensemble= builds K default flows"):
        NPE(box_prior(), flow=npe.flow, ensemble=2)
    assert NPE(box_prior(), flow=npe.flow).ensemble == 1  # a flow of your own is used as it is


def test_save_load_keeps_the_prior_and_the_draws(box_npe, tmp_path):
    path = str(tmp_path / "npe")
    box_npe.save(path)
    box_npe.save(path)  # replacing an existing save
    record = json.load(open(os.path.join(path, "estimator.json")))
    assert record["prior"]["class"] == "Independent"
    loaded = NPE.load(path)
    x_o = np.array([0.1, 0.2], np.float32)
    np.testing.assert_array_equal(loaded.sample(x_o, 100, seed=5), box_npe.sample(x_o, 100, seed=5))
    theta = np.array([[0.1, 0.1], [-0.5, 0.3]], np.float32)
    np.testing.assert_allclose(loaded.log_prob(theta, x_o), box_npe.log_prob(theta, x_o), rtol=1e-6)
    with pytest.raises(ValueError, match="not the one the estimator was trained with"):
        NPE.load(path, prior=tfd.Independent(tfd.Uniform(low=[-2.0, -1.0], high=[1.0, 1.0]), 1))


def test_a_prior_of_python_functions_must_be_given_again_at_load(tmp_path):
    prior = tfd.JointDistributionSequential([tfd.Normal(0.0, 1.0), lambda a: tfd.Normal(a, 1.0)])
    npe = NPE(prior, flow=TINY, ensemble=ONE, candidates=ONE_FLOW, training=Training(epochs=1), seed=0)
    npe.fit(simulator=noisy_identity, num_simulations=300, verbose=0)
    draws = npe.sample(np.zeros(2, np.float32), 20, seed=1)
    assert draws.shape == (20, 2)
    npe.save(str(tmp_path / "seq"))
    with pytest.raises(ValueError, match="pass it again"):
        NPE.load(str(tmp_path / "seq"))
    again = NPE.load(str(tmp_path / "seq"), prior=prior)
    np.testing.assert_array_equal(again.sample(np.zeros(2, np.float32), 20, seed=1), draws)


def test_a_fresh_tensorflow_process_serves_the_estimators_draws(box_npe, tmp_path):
    path = box_npe.export(str(tmp_path / "export"))
    x_o = np.array([[0.1, -0.2]], np.float32)
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['sample_many'](condition=tf.constant([[0.1, -0.2]]), num_samples=tf.constant(300),"
        " temperature=tf.constant(1.0), seed=tf.constant(4, tf.int64))\n"
        "np.save(sys.argv[2], out['samples'].numpy())\n")
    out = str(tmp_path / "served.npy")
    subprocess.run([sys.executable, "-c", code, path, out], check=True, cwd=ROOT,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True)
    served = np.load(out)
    assert served.shape == (1, 300, 2)
    np.testing.assert_allclose(served[0], box_npe.sample(x_o[0], 300, seed=4), atol=1e-4)


def test_fit_under_a_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    npe = NPE(box_prior(), flow=TINY, ensemble=ONE, candidates=ONE_FLOW, training=Training(epochs=2, batch_size=64),
              seed=0)
    with strategy.scope():
        npe.fit(simulator=noisy_identity, num_simulations=400, verbose=0)
    assert all(isinstance(v.value, tf.distribute.DistributedValues) or hasattr(v, "values")
               for v in npe.flow.trainable_variables[:1])
    assert (np.abs(npe.sample(np.zeros(2, np.float32), 50, seed=0)) < 1).all()


def test_diagnose_reports_calibration_on_held_out_simulations(gaussian_npe):
    rng = np.random.default_rng(11)
    theta = rng.standard_normal((40, 2)).astype(np.float32)
    report = gaussian_npe.diagnose(theta=theta, x=noisy_identity(theta, rng), num_samples=100)
    assert report["n_sims"] == 40
    # a well-trained posterior covers its 90% credible region about 90% of the time
    levels = np.asarray(report["levels"])
    coverage = np.asarray(report["coverage"]).mean(axis=1)
    assert abs(coverage[np.argmin(np.abs(levels - 0.9))] - 0.9) < 0.15


# ---- bad input -------------------------------------------------------------------------------------------
def test_bad_input_gets_a_clear_early_error(box_npe):
    with pytest.raises(ValueError, match="TensorFlow Probability distribution"):
        NPE(lambda n, rng: rng.uniform(size=(n, 2)))
    with pytest.raises(ValueError, match="has not been fitted"):
        NPE(box_prior()).sample(np.zeros(2, np.float32))
    npe = NPE(box_prior(), flow=TINY, ensemble=ONE, candidates=ONE_FLOW, training=Training(epochs=1))
    theta = np.zeros((10, 2), np.float32)
    x = np.zeros((10, 2), np.float32)
    bad_theta = theta.copy()
    bad_theta[[3, 7], 0] = 1.5
    with pytest.raises(ValueError, match=r"2 of 10 rows of theta lie outside the prior's support \(e.g. rows \[3, 7\]"):
        npe.fit(bad_theta, x)
    with pytest.raises(ValueError, match="same number of rows"):
        npe.fit(theta, x[:9])
    nan_x = x.copy()
    nan_x[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"x has non-finite values .* rows \[4\]"):
        npe.fit(theta, nan_x)
    with pytest.raises(ValueError, match="needs num_simulations"):
        npe.fit(simulator=noisy_identity)
    with pytest.raises(ValueError, match="sets bounds itself"):
        NPE(box_prior(), flow={"bounds": [[0, 1], [0, 1]]})
    with pytest.raises(ValueError, match=r"x_o must be one observation of shape \[2\]"):
        box_npe.sample(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        box_npe.sample(np.zeros(2, np.float32), num_samples=0)
    with pytest.raises(ValueError, match="support must be one of"):
        NPE(box_prior(), support="clip")
    assert keras.backend.floatx() == "float32"


def test_flow_overrides_replace_arguments_and_refine_the_defaults_specs():
    from tfcflow.inference import DEFAULT_FLOW

    def args(flow):
        return NPE(box_prior(), flow=flow, candidates=[{}]).flow_arguments((3,))

    assert {k: args(None)[k] for k in DEFAULT_FLOW} == DEFAULT_FLOW
    assert args({"depth": 2})["depth"] == 2 and args({"depth": 2})["coupling"] == DEFAULT_FLOW["coupling"]
    # a spec without a kind refines the default's; with a kind it replaces it
    assert args({"network": {"dropout": 0.1}})["network"] == {"kind": "mlp", "dropout": 0.1}
    assert args({"coupling": {"bins": 12}})["coupling"] == {"kind": "hybrid", "bins": 12}
    assert args({"coupling": {"kind": "spline"}})["coupling"] == {"kind": "spline"}
    assert args(None)["bounds"] == [[-1.0, 1.0], [-1.0, 1.0]] and args(None)["condition_shape"] == 3


def _dropout_of(flow):
    members = getattr(flow, "members", [flow])
    return [m.get_config()["network"] for m in members]


def test_fit_chooses_the_flow_by_held_out_nll_and_trains_the_other_members_as_it(tmp_path):
    from tfcflow.holdout import fit_with_holdout

    training = Training(epochs=3, batch_size=64)
    candidates = ({"network": {"dropout": 0.0}}, {"network": {"dropout": 0.3}}, {"coupling": "affine"})
    npe = NPE(box_prior(), flow=TINY, candidates=candidates, training=training, seed=2)
    npe.fit(simulator=noisy_identity, num_simulations=400, verbose=0)
    tried = npe.selection["heldout_nll"]
    assert len(tried) == 3 and npe.selection["chosen"] == int(np.argmin(tried))
    chosen = npe.candidates[npe.selection["chosen"]]
    assert npe.selection["flow"] == chosen
    for member in npe.flow.members:  # both members of the default mixture are built as the chosen one
        config, coupling = member.get_config(), member.get_config()["coupling"]
        kind = coupling if isinstance(coupling, str) else coupling["kind"]
        assert kind == chosen.get("coupling", "hybrid") and config["depth"] == TINY["depth"]
    # each candidate's record is the held-out NLL its flow reaches alone (same split, same start)
    theta, x = npe._training_data(None, None, noisy_identity, 400)
    args = dict(epochs=3, batch_size=64, validation_fraction=0.1, patience=training.patience,
                lr_patience=training.lr_patience, verbose=0, clipnorm=training.clipnorm)
    for candidate, nll in zip(npe.candidates, tried):
        alone = npe._new_flows((2,), candidate)[0]
        history, _ = fit_with_holdout(alone, theta, x, seed=2, optimizer=keras.optimizers.Adam(training.learning_rate),
                                      **args)
        np.testing.assert_allclose(min(history.history["val_loss"]), nll, rtol=1e-4)
    npe.save(str(tmp_path / "npe"))
    again = NPE.load(str(tmp_path / "npe"))
    assert again.selection == npe.selection and again.candidates == npe.candidates
    assert again.flow_arguments((2,)) == npe.flow_arguments((2,))


def test_candidates_refine_the_default_flow_and_bad_ones_are_refused():
    from tfcflow.inference import DEFAULT_CANDIDATES, DEFAULT_FLOW

    assert len(NPE(box_prior()).candidates) == len(DEFAULT_CANDIDATES) >= 2
    # a flow dict applies on top of every candidate; candidates that become the same are tried once
    npe = NPE(box_prior(), flow={"coupling": "spline", "network": {"activation": "relu"}})
    assert [c["coupling"] for c in npe.candidates] == ["spline", "spline"]
    assert [c["network"]["dropout"] for c in npe.candidates] == [0.0, 0.1]
    # one dropout rate sets every candidate's; several make the candidates the default flow at each rate
    assert {c["network"]["dropout"] for c in NPE(box_prior(), dropout=0.2).candidates} == {0.2}
    assert [c["network"]["dropout"] for c in NPE(box_prior(), dropout=(0.0, 0.3)).candidates] == [0.0, 0.3]
    assert NPE(box_prior(), candidates=[{}]).flow_arguments((3,))["coupling"] == DEFAULT_FLOW["coupling"]
    npe = NPE(box_prior(), flow=TINY, dropout=0.2, candidates=[{}], ensemble=ONE, training=Training(epochs=1), seed=0)
    npe.fit(simulator=noisy_identity, num_simulations=200, verbose=0)
    assert npe.selection["heldout_nll"] and npe.flow.get_config()["network"] == {"kind": "mlp", "dropout": 0.2}
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        NPE(box_prior(), dropout=(0.0, 1.5))
    with pytest.raises(ValueError, match="at least one rate"):
        NPE(box_prior(), dropout=())
    with pytest.raises(ValueError, match="at least one flow"):
        NPE(box_prior(), candidates=[])
    with pytest.raises(ValueError, match="sequence of dicts"):
        NPE(box_prior(), candidates={"depth": 2})
    with pytest.raises(ValueError, match="NPE sets bounds itself"):
        NPE(box_prior(), candidates=[{"bounds": [[0, 1]]}])
    with pytest.raises(ValueError, match="not both"):
        NPE(box_prior(), flow={"network": {"dropout": 0.1}}, dropout=0.2)
    with pytest.raises(ValueError, match="not both"):
        NPE(box_prior(), candidates=[{}], dropout=(0.0, 0.1))
    with pytest.raises(ValueError, match="a flow of your own is used as it is"):
        NPE(box_prior(), flow=npe.flow, dropout=0.1)
    with pytest.raises(ValueError, match="a flow of your own is used as it is"):
        NPE(box_prior(), flow=npe.flow, candidates=[{}])
    # a summary network would be shared by the candidate flows: no choice by default, refused when asked
    from tfcflow.networks import DeepSet
    assert NPE(box_prior(), summary_network=DeepSet(summary_dim=4)).candidates == NPE(box_prior()).candidates[:1]
    with pytest.raises(ValueError, match="summary_network would be shared"):
        NPE(box_prior(), summary_network=DeepSet(summary_dim=4), dropout=(0.0, 0.1))


def test_an_observation_unlike_the_simulations_is_flagged(gaussian_npe, tmp_path):
    """x = theta + N(0, 0.25): over the N(0, I) prior x ~ N(0, 1.25 I), whose squared Mahalanobis
    distance is chi-square(2): the 99.9% threshold sits near its quantile, 13.8."""
    import warnings

    npe = gaussian_npe
    assert 8.0 < npe.typicality.threshold < 25.0
    rng = np.random.default_rng(7)
    theta = rng.standard_normal((200, 2)).astype(np.float32)
    good = noisy_identity(theta, rng)
    shifted = good + 6.0  # a simulator off by a constant
    assert np.mean(npe.check_observation(good)["typical"]) > 0.98
    assert not any(npe.check_observation(shifted[:5])["typical"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        npe.sample(np.array([0.2, -0.3], np.float32), num_samples=10, seed=0)  # typical: no warning
    with pytest.warns(RuntimeWarning, match=r"lies outside the simulations it was trained on \(typicality score"):
        npe.sample(shifted[0], num_samples=10, seed=0)
    report = npe.diagnose(theta=theta[:20], x=np.concatenate([good[:18], shifted[:2]]), num_samples=50)
    assert report["typicality"]["atypical_rows"] == [18, 19]
    npe.save(str(tmp_path / "npe"))
    again = NPE.load(str(tmp_path / "npe"))
    assert again.check_observation(shifted[:1]) == npe.check_observation(shifted[:1])
