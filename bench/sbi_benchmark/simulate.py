"""The simulations every contestant trains on: ``OUT/cache/<task>.npz`` per task.

Full mode (the peer environment, which has sbibm): for each task, ``--num-simulations`` pairs
(theta, x) from sbibm's prior and simulator under a fixed seed (``--seed`` + the task's index in
common.TASKS), plus sbibm's observations 1..5, their true parameters and their reference
posterior samples (10,000 each, shipped inside sbibm).

Smoke mode (``--smoke``, any environment with tfcflow; no torch, no sbibm): two_moons only, from
NumPy's prior/simulator in tfcflow.data.sbi_tasks; one observation simulated from a prior draw;
its "reference posterior" is a rejection-ABC sample (the prior draws whose simulations land
nearest to the observation). That only exercises the plumbing: the numbers mean nothing.

``--heldout N``: also OUT/cache/<task>.heldout.npz, N further pairs (theta, x) from another seed
(``--seed`` + 1000 + the task's index), never trained on and never scored: the held-out NLL on
them is what the estimator's defaults are chosen by (docs/benchmarks/sbi.md, "How the defaults were
chosen"), so no choice sees the scored observations.

Arrays in the npz: theta [n, D], x [n, M], observations [K, M], true_parameters [K, D],
reference [K, R, D] (float32), observation_ids [K] (int), meta (a JSON string).
An existing cache file is kept (delete it to redraw).

    /work/peervenv/bin/python bench/sbi_benchmark/simulate.py --out docs/benchmarks/sbi
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def simulate_sbibm(task_name: str, num_simulations: int, seed: int, num_observations: int) -> dict:
    """One task's arrays from sbibm (module docstring)."""
    import numpy as np
    import sbibm
    import torch

    torch.manual_seed(seed)
    task = sbibm.get_task(task_name)
    theta = task.get_prior()(num_samples=num_simulations)
    x = task.get_simulator()(theta)
    ids = list(range(1, num_observations + 1))
    obs = torch.cat([task.get_observation(num_observation=i) for i in ids])
    true = torch.cat([task.get_true_parameters(num_observation=i) for i in ids])
    ref = torch.stack([task.get_reference_posterior_samples(num_observation=i) for i in ids])
    f32 = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    meta = {"task": task_name, "source": "sbibm", "num_simulations": num_simulations, "seed": seed,
            "reference": "sbibm reference posterior samples",
            "versions": common.versions("sbibm", "torch", "numpy"), **common.provenance()}
    return dict(theta=f32(theta), x=f32(x), observations=f32(obs), true_parameters=f32(true), reference=f32(ref),
                observation_ids=np.asarray(ids), meta=json.dumps(meta))


def simulate_heldout(task_name: str, num_simulations: int, seed: int) -> dict:
    """``num_simulations`` pairs (theta, x) of a task from ``seed``: selection data (module docstring)."""
    import numpy as np
    import sbibm
    import torch

    torch.manual_seed(seed)
    task = sbibm.get_task(task_name)
    theta = task.get_prior()(num_samples=num_simulations)
    x = task.get_simulator()(theta)
    f32 = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    meta = {"task": task_name, "source": "sbibm", "num_simulations": num_simulations, "seed": seed,
            "role": "held-out simulations for choosing settings (never scored)",
            "versions": common.versions("sbibm", "torch", "numpy"), **common.provenance()}
    return dict(theta=f32(theta), x=f32(x), meta=json.dumps(meta))


def simulate_smoke(num_simulations: int, seed: int, num_reference: int, abc_draws: int) -> dict:
    """two_moons from tfcflow's NumPy simulator with a rejection-ABC 'reference' (module docstring)."""
    import numpy as np

    try:
        from tfcflow.data.sbi_tasks import two_moons_prior, two_moons_simulator
    except ImportError as e:
        raise SystemExit(f"smoke mode needs tfcflow.data.sbi_tasks.two_moons_prior/two_moons_simulator: {e}")
    rng = np.random.default_rng(seed)
    theta = two_moons_prior(num_simulations, rng)
    x = two_moons_simulator(theta, rng)
    true = two_moons_prior(1, rng)
    obs = two_moons_simulator(true, rng)
    pool = two_moons_prior(abc_draws, rng)
    dist = np.linalg.norm(two_moons_simulator(pool, rng) - obs, axis=1)
    ref = pool[np.argsort(dist)[:num_reference]]
    meta = {"task": "two_moons", "source": "tfcflow.data.sbi_tasks (smoke)", "num_simulations": num_simulations,
            "seed": seed, "reference": f"SMOKE: rejection ABC, the {num_reference} nearest of {abc_draws} prior "
                                       "simulations; not a posterior reference, the plumbing only",
            "versions": common.versions("tfcflow", "numpy"), **common.provenance()}
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return dict(theta=f32(theta), x=f32(x), observations=f32(obs), true_parameters=f32(true), reference=f32(ref[None]),
                observation_ids=np.asarray([1]), meta=json.dumps(meta))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--tasks", default=",".join(common.TASKS), help="comma-separated sbibm task names")
    p.add_argument("--num-simulations", type=int, default=common.NUM_SIMULATIONS)
    p.add_argument("--num-observations", type=int, default=common.NUM_OBSERVATIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="two_moons from NumPy, ABC reference (module docstring)")
    p.add_argument("--num-reference", type=int, default=500, help="smoke: reference sample size")
    p.add_argument("--abc-draws", type=int, default=100_000, help="smoke: prior simulations the ABC picks from")
    p.add_argument("--heldout", type=int, default=0,
                   help="also write OUT/cache/<task>.heldout.npz with this many selection simulations")
    a = p.parse_args(argv)
    tasks = ["two_moons"] if a.smoke else a.tasks.split(",")
    for task in tasks:
        path = common.cache_file(a.out, task)
        heldout = path.replace(".npz", ".heldout.npz")
        if a.heldout and not a.smoke and not os.path.exists(heldout):
            arrays = simulate_heldout(task, a.heldout, a.seed + 1000 + common.TASKS.index(task))
            common.save_npz(heldout, **arrays)
            print(f"simulate: {task}: {a.heldout} held-out simulations -> {heldout}", flush=True)
        if os.path.exists(path):
            print(f"simulate: {path} exists, kept", flush=True)
            continue
        if a.smoke:
            arrays = simulate_smoke(a.num_simulations, a.seed, a.num_reference, a.abc_draws)
        else:
            if task not in common.TASKS:
                raise SystemExit(f"unknown task {task!r}; one of {', '.join(common.TASKS)}")
            arrays = simulate_sbibm(task, a.num_simulations, a.seed + common.TASKS.index(task), a.num_observations)
        common.save_npz(path, **arrays)
        print(f"simulate: {task}: theta {arrays['theta'].shape}, x {arrays['x'].shape}, reference "
              f"{arrays['reference'].shape} -> {path}", flush=True)


if __name__ == "__main__":
    main()
