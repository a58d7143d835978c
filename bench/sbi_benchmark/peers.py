"""The peer contestants (peer environment): train on a task's cached simulations, sample posteriors.

Contestants, each with its library's defaults:

- ``sbi_maf`` / ``sbi_nsf``: sbi's ``SNPE(prior, density_estimator="maf" | "nsf")``, ``prior``
  sbibm's prior distribution of the task; ``.append_simulations(theta, x).train()`` with every
  training setting at its default (sbi 0.21: batch 50, Adam 5e-4, gradient norm clipped at 5,
  10% validation, stop after 20 epochs without improvement, z-scoring of theta and x);
  ``build_posterior()`` and its default ``sample`` (rejection of the samples outside the prior's
  support). sbibm's own NPE runner additionally maps bounded priors to unbounded space; that is
  a choice of sbibm's runner, not an sbi default, and is not used here.
- ``sbi_nle``: sbi's ``SNLE(prior)`` (its default MAF likelihood) trained the same way, its
  posterior ``build_posterior(mcmc_method="slice_np_vectorized", mcmc_parameters={"num_chains":
  100})`` (``NLE_MCMC``): sbi's MCMC defaults except the vectorized sampler and its chains. Being
  MCMC, it has no warm-up call: the pass that gives the samples is the one timed.
- ``bayesflow_coupling``: BayesFlow 2's ``BasicWorkflow`` with ``inference_network=
  bayesflow.networks.CouplingFlow()`` (its defaults: 6 affine couplings of MLPs, random
  permutations, ActNorm), ``inference_variables="theta"``, ``inference_conditions="x"``,
  ``fit_offline(data)`` with the default epochs (100), batch size (32), optimizer and schedule
  (the workflow's Adam from 5e-4 with its decay) and no validation data; ``sample`` with defaults.
  One choice that is not a default: ``standardize="all"`` (a documented value of the argument)
  standardizes the conditions x as well as theta; the package default standardizes theta only,
  and several tasks' x have scales far from 1. Keras runs on the JAX backend (set below before
  importing Keras, unless ``KERAS_BACKEND`` says otherwise), so this environment needs no
  TensorFlow. JAX is BayesFlow's recommended backend, and on this CPU the torch backend was 70x
  slower per step (141 s against 2 s per epoch of two_moons, both on a shared machine), which
  would make its 100 default epochs hours per task.

Timing: ``train_seconds`` from building the estimator to the end of training (wall clock);
``samples_per_second`` = observations x samples / wall time of one pass of sampling calls over
the observations, after one untimed warm-up call on the first observation and one untimed pass
(the samples kept): the median of ``--sample-repeats`` timed passes, those during which the
machine was busy with other work retried (``common.timed_sampling``, the same rule as ours.py).

Writes ``PREFIX.npz`` (``samples`` [K, N, D]) and ``PREFIX.json``; ``--dest`` gives ``PREFIX``
(default: ``OUT/samples/<task>__<contestant>``).

    /work/peervenv/bin/python bench/sbi_benchmark/peers.py --task two_moons --contestant sbi_nsf
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

#: sbi NLE's sampler: sbi's default MCMC settings (thin 10, 10 warm-up steps, initialization by
#: resampling prior draws) but the vectorized slice sampler with 100 chains (its default, one chain
#: of ``slice_np``, would take hours for 10,000 draws; sbibm's own NLE runner vectorizes too)
NLE_MCMC = {"mcmc_method": "slice_np_vectorized", "mcmc_parameters": {"num_chains": 100}}

VERSIONS = {"sbi": ("sbi", "sbibm", "torch", "numpy", "pyro-ppl", "nflows", "pyknos"),
            "bayesflow": ("bayesflow", "keras", "jax", "jaxlib", "numpy")}


def train_sbi(task: str, estimator: str, theta, x, seed: int):
    """sbi NPE with defaults; returns ``(sample(x_obs, n) -> [n, D], info)``."""
    import sbibm
    import torch
    from sbi.inference import SNPE

    torch.manual_seed(seed)
    prior = sbibm.get_task(task).get_prior_dist()
    inference = SNPE(prior=prior, density_estimator=estimator)
    estimator_net = inference.append_simulations(torch.as_tensor(theta), torch.as_tensor(x)).train()
    posterior = inference.build_posterior(estimator_net)
    summary = inference.summary

    def sample(x_obs, n):
        s = posterior.sample((n,), x=torch.as_tensor(x_obs[None]), show_progress_bars=False)
        return s.detach().cpu().numpy()

    return sample, {"epochs": int(summary["epochs_trained"][-1]),
                    "settings": {"density_estimator": estimator, "training": "sbi defaults"}}


def train_sbi_nle(task: str, theta, x, seed: int):
    """sbi NLE (``SNLE``, its default MAF likelihood, default training); the posterior sampled by
    ``slice_np_vectorized`` with 100 chains (module docstring); returns ``(sample, info)``."""
    import sbibm
    import torch
    from sbi.inference import SNLE

    torch.manual_seed(seed)
    prior = sbibm.get_task(task).get_prior_dist()
    inference = SNLE(prior=prior)
    estimator_net = inference.append_simulations(torch.as_tensor(theta), torch.as_tensor(x)).train()
    posterior = inference.build_posterior(estimator_net, mcmc_method=NLE_MCMC["mcmc_method"],
                                          mcmc_parameters=NLE_MCMC["mcmc_parameters"])
    summary = inference.summary

    def sample(x_obs, n):
        s = posterior.sample((n,), x=torch.as_tensor(x_obs[None]), show_progress_bars=False)
        return s.detach().cpu().numpy()

    return sample, {"epochs": int(summary["epochs_trained"][-1]),
                    "settings": {"estimator": "SNLE (density_estimator maf)", "training": "sbi defaults",
                                 **NLE_MCMC}}


def train_bayesflow(theta, x, seed: int, standardize: str):
    """BayesFlow 2 BasicWorkflow with a default CouplingFlow; returns ``(sample, info)``."""
    import bayesflow as bf
    import keras

    keras.utils.set_random_seed(seed)
    workflow = bf.BasicWorkflow(inference_network=bf.networks.CouplingFlow(), inference_variables="theta",
                                inference_conditions="x", standardize=standardize)
    history = workflow.fit_offline({"theta": theta, "x": x}, verbose=2)

    def sample(x_obs, n):
        return workflow.sample(num_samples=n, conditions={"x": x_obs[None]})["theta"][0]

    return sample, {"epochs": len(history.history["loss"]),
                    "settings": {"inference_network": "CouplingFlow()", "standardize": standardize,
                                 "training": "fit_offline defaults", "backend": keras.backend.backend()}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=common.TASKS)
    p.add_argument("--contestant", required=True, choices=common.PEERS)
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--dest", help="output prefix (default OUT/samples/<task>__<contestant>)")
    p.add_argument("--num-samples", type=int, default=common.NUM_POSTERIOR_SAMPLES)
    p.add_argument("--seed", type=int, default=0)
    common.add_sampling_args(p)
    p.add_argument("--bf-standardize", default="all", help="BayesFlow's standardize argument (docstring)")
    a = p.parse_args(argv)
    import numpy as np

    data = np.load(common.cache_file(a.out, a.task))
    theta, x, observations = data["theta"], data["x"], data["observations"]
    dest = a.dest or common.samples_prefix(a.out, a.task, a.contestant)

    workdir = tempfile.mkdtemp(prefix="sbi_bench_")  # sbi writes tensorboard logs to ./sbi-logs
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        t0 = time.perf_counter()
        mcmc = a.contestant in common.MCMC
        if a.contestant == "sbi_nle":
            sample, info = train_sbi_nle(a.task, theta, x, a.seed)
        elif a.contestant.startswith("sbi_"):
            sample, info = train_sbi(a.task, a.contestant.removeprefix("sbi_"), theta, x, a.seed)
        else:
            sample, info = train_bayesflow(theta, x, a.seed, a.bf_standardize)
        train_seconds = time.perf_counter() - t0
        if not mcmc:  # MCMC: no warm-up call (the timed pass counts from receiving x_o)
            sample(observations[0], a.num_samples)  # warm-up, untimed
        samples, sampling = common.timed_sampling(
            lambda: np.stack([np.asarray(sample(o, a.num_samples), np.float32) for o in observations]),
            0 if mcmc else a.sample_repeats, a.sampling_patience)
    finally:
        os.chdir(cwd)
        shutil.rmtree(workdir, ignore_errors=True)

    record = {"task": a.task, "contestant": a.contestant, "num_simulations": int(len(theta)),
              "train_seconds": train_seconds, **sampling,
              "seed": a.seed, "versions": common.versions(*VERSIONS[a.contestant.split("_")[0]]),
              **info, **common.provenance()}
    common.save_npz(dest + ".npz", samples=samples)
    common.write_json(dest + ".json", record)
    print(f"peers: {a.task} {a.contestant}: trained {train_seconds:.1f} s ({info['epochs']} epochs), "
          f"{record['samples_per_second']:.0f} samples/s -> {dest}.npz", flush=True)
    return record


if __name__ == "__main__":
    main()
