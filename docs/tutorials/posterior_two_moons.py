"""Tutorial: the posterior of the two-moons simulator with ``tfcflow.inference.NPE``.

    python docs/tutorials/posterior_two_moons.py --out runs/tutorial_two_moons

A TFP prior, a simulator, a tiny spline flow trained for 3 epochs, then the posterior of one
observation, its calibration on held-out simulations, save / load and a SavedModel export.
``TFCFLOW_TUTORIAL_SMALL=1`` shrinks the simulation budget and the draws (the test suite runs it so,
tests/test_tutorials.py); the steps are the same.
"""
import argparse
import os

import numpy as np
import tensorflow_probability as tfp

from tfcflow.data.sbi_tasks import two_moons_simulator  # simulator(theta [n, 2], rng) -> x [n, 2]
from tfcflow.data.simulator import simulate
from tfcflow.inference import NPE, Training

SMALL = os.environ.get("TFCFLOW_TUTORIAL_SMALL") == "1"
NUM_SIMULATIONS = 1_000 if SMALL else 10_000
NUM_DRAWS = 500 if SMALL else 10_000
NUM_TEST = 20 if SMALL else 200


def main(out: str) -> None:
    tfd = tfp.distributions

    # 1. The prior is a TFP distribution. NPE reads its support (the box [-1, 1]^2) from TFP's
    #    default event-space bijector: every posterior draw will lie inside it.
    prior = tfd.Independent(tfd.Uniform(low=[-1.0, -1.0], high=[1.0, 1.0]), reinterpreted_batch_ndims=1)

    # 2. The estimator. theta is the simulator's parameter, x its output (the observation).
    #    A tiny flow (2 spline coupling blocks of 32 units) and 3 epochs keep this fast; NPE(prior)
    #    alone takes the default flow and training, sized when fit sees the data.
    npe = NPE(prior, flow={"depth": 2, "width": 32}, training=Training(epochs=3), seed=0)
    print("support taken from the prior:", npe.space.bounds)

    # 3. Simulate and train: fit draws num_simulations parameters from the prior, runs the
    #    simulator on them (seeded by seed=), holds out 10% for early stopping and keeps the best
    #    weights. npe.fit(theta, x) takes simulations you already have.
    history = npe.fit(simulator=two_moons_simulator, num_simulations=NUM_SIMULATIONS, verbose=0)
    print(f"trained {len(history.history['loss'])} epochs, held-out NLL {history.history['val_loss'][-1]:.3f}")

    # 4. The posterior of one observation x_o: draws [N, 2], all inside the prior's support,
    #    deterministic given the seed; log_prob is a density of theta in the prior's units.
    x_o = np.array([0.0, 0.1], np.float32)
    draws = npe.sample(x_o, num_samples=NUM_DRAWS, seed=0)
    assert draws.shape == (NUM_DRAWS, 2) and np.all(np.abs(draws) < 1.0)
    log_p = npe.log_prob(draws[:5], x_o)
    print("posterior mean", draws.mean(axis=0).round(3), "log p(theta | x_o) of 5 draws", log_p.round(2))

    # 5. Calibration on held-out simulations (never the ones trained on): simulation-based
    #    calibration ranks, coverage of the credible intervals, z-scores.
    theta_test, x_test = simulate(npe.space.prior_function(), two_moons_simulator, n=NUM_TEST, seed=1)
    report = npe.diagnose(theta=theta_test, x=x_test, num_samples=100, seed=0)
    print("SBC uniformity test passed:", report["sbc"]["passed"],
          "| calibration error per parameter:", np.round(report["calibration_error"], 3))

    # 6. Save and load (the prior travels as JSON in estimator.json), and a SavedModel for
    #    TF Serving whose sample_many signature serves the same draws.
    npe.save(os.path.join(out, "posterior"))
    again = NPE.load(os.path.join(out, "posterior"))
    np.testing.assert_allclose(again.log_prob(draws[:5], x_o), log_p, rtol=1e-4, atol=1e-4)
    print("exported:", npe.export(os.path.join(out, "serving")))

    # 7. A picture of the posterior, if matplotlib is installed (the experiments extra).
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(draws[:, 0], draws[:, 1], s=1, alpha=0.3)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="theta 1", ylabel="theta 2", title="p(theta | x_o = (0, 0.1))")
    fig.savefig(os.path.join(out, "posterior.png"), dpi=100, bbox_inches="tight")
    print("figure:", os.path.join(out, "posterior.png"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tutorial_two_moons", help="folder for the save, export and figure")
    main(parser.parse_args().out)
