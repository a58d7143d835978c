"""tfcflow's contestants (tfcflow environment): train on a task's cached simulations, sample posteriors.

The headline contestants ``tfcflow_npe`` / ``tfcflow_npe_seed<k>``: ``tfcflow.inference.NPE`` with
the task's TFP prior (priors.py) and nothing else: the library's defaults, one configuration for
every task, seed 0 / k (``--seed`` and the model and training options below do not apply to them).
``NPE.fit(theta, x)`` then ``NPE.sample(x_o, num_samples, seed)``, timed like the others.
``tfcflow_nle``: ``tfcflow.inference.NLE`` the same way (seed 0), each observation one trial
``[1, M]``, sampled by its default MCMC (R-hat and ESS per observation in ``settings["mcmc"]``;
no warm-up call: the pass that gives the samples is the one timed, compilation included).

Explorations: ``tfcflow_cinn_affine`` / ``tfcflow_cinn_spline`` (``ConditionalRealNVP`` with
``coupling="affine" | "spline"``), ``tfcflow_rcf`` (``RelaxedConditionFlow``, coupling from
``--rcf-coupling``), ``tfcflow_cinn_ensemble`` / ``tfcflow_cinn_spline_ensemble`` (``FlowEnsemble``
of ``--ensemble`` affine / spline cINNs of the same settings, seeds ``seed .. seed + K - 1``,
trained one after another by ``FlowEnsemble.fit_members``, each with its own held-out split and
early stopping; ``epochs`` is their sum). Each models p(theta | x): event = theta [D], condition =
x [M], with ``standardize=True`` (fit learns the statistics of theta and x from the arrays).

Training: Adam (``--lr``; AdamW with ``--weight-decay``), global gradient norm clipped at
``--clipnorm``, batch ``--batch-size``, up to ``--epochs`` epochs with early stopping on a
held-out ``--validation-fraction`` of the simulations (``val_loss``, patience ``--patience``, best
weights restored), the learning rate halved after ``--lr-patience`` epochs without a better
``val_loss`` (or ``--schedule cosine``: BayesFlow's warm-up and cosine decay over ``--epochs``).
The coupling networks use ``--activation`` and, while training, ``--dropout``. Every coupling block ends in
a learned LU matrix (``--mixing lu``). Each table entry's options are in its result's
``settings`` (run.py's ``--timing`` replays them); where an entry departs from these defaults
(e.g. the spline cINNs' depth, batch and learning rate since 2026-12-04), docs/history.md
(2026-12-03 to 2026-12-05) says why. The smoke test shrinks the defaults.

``best_val_loss``: the held-out NLL early stopping kept (per ensemble member), the quick proxy
used to choose settings before spending a C2ST run (docs/history.md, 2026-12-04).

Timing: ``train_seconds`` from building the model to the end of ``fit`` (wall clock, tracing
included); ``samples_per_second`` = observations x samples / wall time of one pass of sampling
calls over the observations, after one untimed warm-up call on the first observation and one
untimed pass (the samples kept): the median of ``--sample-repeats`` timed passes, those during
which the machine was busy with other work retried (``common.timed_sampling``, the same rule as
peers.py). The warm-up call's own time (tracing, and XLA's compilation with ``--jit-sampling``) is
``first_sample_seconds``.

Writes ``PREFIX.npz`` (``samples`` [K, N, D]) and ``PREFIX.json``; ``--dest`` gives ``PREFIX``
(default: ``OUT/samples/<task>__<contestant>``).

    .venv/bin/python bench/sbi_benchmark/ours.py --task two_moons --contestant tfcflow_cinn_affine
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VERSIONS = ("tfcflow", "tensorflow", "keras", "tensorflow-probability", "numpy")

#: the support of each task's prior where it is a box (sbibm's priors: uniform boxes; the others
#: are Gaussian, hence unbounded): given to the models as ``bounds`` unless ``--no-bounds``
PRIOR_BOXES = {"two_moons": (-1.0, 1.0, 2), "slcp": (-3.0, 3.0, 5), "gaussian_mixture": (-10.0, 10.0, 2)}


def _model_classes():
    """``{contestant: model class}``, or exit with what the installed tfcflow lacks."""
    try:
        from tfcflow.models import ConditionalRealNVP, RelaxedConditionFlow
    except ImportError as e:
        raise SystemExit(f"ours.py: tfcflow.models lacks the benchmark's models ({e})")
    missing = []
    for cls in (ConditionalRealNVP, RelaxedConditionFlow):
        params = inspect.signature(cls.__init__).parameters
        missing += [f"{cls.__name__}(..., {k}=...)" for k in ("coupling", "standardize") if k not in params]
        if "num_samples" not in inspect.signature(cls.sample).parameters:
            missing.append(f"{cls.__name__}.sample(condition, num_samples=...)")
    if missing:
        raise SystemExit("ours.py needs a tfcflow with " + ", ".join(missing) + "; the installed one has not")
    return {"tfcflow_cinn_affine": ConditionalRealNVP, "tfcflow_cinn_spline": ConditionalRealNVP,
            "tfcflow_rcf": RelaxedConditionFlow, "tfcflow_cinn_ensemble": ConditionalRealNVP,
            "tfcflow_cinn_spline_ensemble": ConditionalRealNVP}


def _optimizer(a, num_simulations: int):
    """Adam (AdamW with ``--weight-decay``) at ``--lr``, or on ``--schedule cosine``'s decay (its
    step count from the training rows of one member's split)."""
    import keras
    rate = a.lr
    if a.schedule == "cosine":
        if a.lr_patience:
            raise SystemExit("ours.py: --schedule cosine sets the learning rate; give --lr-patience 0")
        steps = a.epochs * -(-(num_simulations - int(round(a.validation_fraction * num_simulations))) // a.batch_size)
        warmup = int(0.05 * steps)
        rate = keras.optimizers.schedules.CosineDecay(0.1 * a.lr, decay_steps=steps - warmup, alpha=0.0,
                                                      warmup_target=a.lr, warmup_steps=warmup)
    if a.weight_decay:
        return keras.optimizers.AdamW(rate, weight_decay=a.weight_decay)
    return keras.optimizers.Adam(rate)


def _epsilon(text: str):
    """--rcf-epsilon: a number, or 'learned'."""
    return text if text == "learned" else float(text)


def parser() -> argparse.ArgumentParser:
    """ours.py's command line (run.py's ``settings_args`` writes its options)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, help="a task of the cache (common.TASKS)")
    p.add_argument("--contestant", required=True, choices=common.OURS)
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--dest", help="output prefix (default OUT/samples/<task>__<contestant>)")
    p.add_argument("--num-samples", type=int, default=common.NUM_POSTERIOR_SAMPLES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, default=6, help="coupling blocks")
    p.add_argument("--width", type=int, default=128, help="units per hidden layer of each coupling network")
    p.add_argument("--network", default="mlp", choices=("mlp", "residual"),
                   help="the coupling networks (the models' network argument)")
    p.add_argument("--hidden-layers", type=int, default=2,
                   help="hidden layers (mlp) or residual blocks (residual) per coupling network")
    p.add_argument("--spline-bins", type=int, default=8, help="bins of the spline couplings")
    p.add_argument("--spline-bound", type=float, default=3.0,
                   help="the spline couplings' interval [-B, B] (standardized units; identity outside)")
    p.add_argument("--rcf-coupling", default="affine", choices=("affine", "spline"))
    p.add_argument("--rcf-padding-noise", type=float, default=0.05,
                   help="tfcflow_rcf: std of the training noise on the padding (the model's padding_noise; "
                        "paper: 0.05)")
    p.add_argument("--rcf-epsilon", type=_epsilon, default=0.1,
                   help="tfcflow_rcf: std of the relaxed condition, or 'learned' (the model's epsilon; paper: 0.1)")
    p.add_argument("--mixing", default="lu", choices=("permutation", "lu"),
                   help="what follows each coupling block (the models' mixing argument)")
    p.add_argument("--ensemble", type=int, default=4, help="members of the *_ensemble contestants")
    p.add_argument("--epochs", type=int, default=200, help="upper bound; early stopping ends sooner")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"),
                   help="learning rate: constant (with --lr-patience's plateaus), or a cosine decay to 0 over "
                        "--epochs after a linear warm-up from 0.1 lr over their first 5%% (BayesFlow's schedule)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="> 0: AdamW with this decoupled weight decay")
    p.add_argument("--activation", default="relu", help="activation of the coupling networks")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout rate in the coupling networks while training")
    p.add_argument("--clipnorm", type=float, default=5.0)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--lr-patience", type=int, default=5,
                   help="halve the learning rate after this many epochs without a better val_loss (0: never)")
    p.add_argument("--verbose", type=int, default=2, help="keras fit verbosity")
    p.add_argument("--no-bounds", action="store_true", help="ignore the prior's box support")
    p.add_argument("--bounds-method", default="map", choices=("map", "reject"),
                   help="how the prior's box is enforced (the models' bounds_method argument)")
    p.add_argument("--jit-sampling", action="store_true",
                   help="sample with Execution(jit_sampling=True): XLA-compiled flow passes (an execution "
                        "choice, not the model's config)")
    p.add_argument("--sample-sub-batches", type=int, default=1,
                   help="sample with Execution(sub_batches=N): each chunk as N sub-batches in one graph, "
                        "which TensorFlow runs side by side (one per core; the same draws)")
    p.add_argument("--smoke", action="store_true", help="tfcflow_npe*: a tiny flow for 2 epochs (run.py --smoke)")
    common.add_sampling_args(p)
    p.add_argument("--sample-batch-size", type=int,
                   help="rows per sampling chunk (sample's batch_size; default the library's)")
    return p


def npe_main(a) -> dict:
    """``tfcflow_npe*`` and ``tfcflow_nle``: the estimator with its defaults (module docstring)."""
    import dataclasses

    import numpy as np
    import priors
    from tfcflow.inference import DEFAULT_FLOW, NLE, NPE

    from tfcflow.inference import Training

    likelihood = a.contestant in common.NLE
    seed = 0 if likelihood else common.npe_seed(a.contestant)
    data = np.load(common.cache_file(a.out, a.task))
    theta, x, observations = data["theta"], data["x"], data["observations"]
    dest = a.dest or common.samples_prefix(a.out, a.task, a.contestant)
    # smoke mode (run.py --smoke): the plumbing only, a tiny flow for 2 epochs
    tiny = dict(flow={"depth": 2, "width": 16}, training=Training(epochs=2)) if a.smoke else {}
    t0 = time.perf_counter()
    npe = (NLE if likelihood else NPE)(priors.prior(a.task), seed=seed, **tiny)
    history = npe.fit(theta, x, verbose=a.verbose)
    train_seconds = time.perf_counter() - t0
    name = "NLE" if likelihood else "NPE"
    settings = {"estimator": f"{name} (smoke: tiny)" if a.smoke else f"{name} (defaults)",
                "flow": npe.flow_arguments(x.shape[1:]), "support": npe.support, "ensemble": npe.ensemble,
                "training": dataclasses.asdict(npe.training), "execution": dataclasses.asdict(npe.execution),
                "dropout_selection": npe.selection}
    settings["flow"] = {k: v for k, v in settings["flow"].items() if k in DEFAULT_FLOW or k == "bounds"}

    reports = []

    def sample(x_obs, s):
        if not likelihood:
            return npe.sample(x_obs, num_samples=a.num_samples, seed=s)
        # one observation = one trial [1, M]; R-hat and ESS kept per observation
        draws, report = npe.sample(x_obs[None], num_samples=a.num_samples, seed=s, report=True)
        reports.append({k: report[k] for k in ("r_hat", "ess", "chains", "draws_per_chain", "warmup")})
        return draws

    samples, timing = _draw_posteriors(a, sample, observations, seed, mcmc=likelihood)
    if likelihood:
        settings["mcmc"] = reports
    record = {"task": a.task, "contestant": a.contestant, "num_simulations": int(len(theta)),
              "train_seconds": train_seconds, **timing,
              "epochs": len(history.history["loss"]), "seed": seed, "settings": settings,
              "best_val_loss": [float(min(history.history["val_loss"]))]}
    return _write(a, dest, samples, record)


def _draw_posteriors(a, sample, observations, seed: int, mcmc: bool = False):
    """``(samples [K, N, D], timing fields)``: one untimed warm-up call on the first observation
    (tracing, XLA's compilation), then ``common.timed_sampling`` over every observation, observation
    i drawn with ``seed + 1 + i``. ``mcmc``: no warm-up call; the one pass that gives the samples
    is timed, the sampler's compilation in it (MCMC speed counts from receiving x_o)."""
    import numpy as np

    first_sample_seconds = None
    if not mcmc:
        t0 = time.perf_counter()
        sample(observations[0], seed)
        first_sample_seconds = time.perf_counter() - t0
    samples, sampling = common.timed_sampling(
        lambda: np.stack([sample(o, seed + 1 + i) for i, o in enumerate(observations)]).astype(np.float32),
        0 if mcmc else a.sample_repeats, a.sampling_patience)
    if not np.all(np.isfinite(samples)):
        raise SystemExit(f"ours.py: {a.contestant} drew non-finite samples on {a.task}")
    return samples, {**sampling, "first_sample_seconds": first_sample_seconds}


def _write(a, dest: str, samples, record: dict) -> dict:
    """Writes ``dest.npz`` (the samples) and ``dest.json`` (``record`` with versions and provenance)."""
    record = {**record, "versions": common.versions(*VERSIONS), "git_revision": common.git_revision(),
              **common.provenance()}
    common.save_npz(dest + ".npz", samples=samples)
    common.write_json(dest + ".json", record)
    print(f"ours: {a.task} {a.contestant}: trained {record['train_seconds']:.1f} s ({record['epochs']} epochs), "
          f"{record['samples_per_second']:.0f} samples/s -> {dest}.npz", flush=True)
    return record


def main(argv=None) -> dict:
    a = parser().parse_args(argv)
    if a.contestant in common.NPE + common.NLE:
        return npe_main(a)
    classes = _model_classes()

    import keras
    import numpy as np

    data = np.load(common.cache_file(a.out, a.task))
    theta, x, observations = data["theta"], data["x"], data["observations"]
    dest = a.dest or common.samples_prefix(a.out, a.task, a.contestant)
    coupling = {"tfcflow_cinn_affine": "affine", "tfcflow_cinn_spline": "spline", "tfcflow_rcf": a.rcf_coupling,
                "tfcflow_cinn_ensemble": "affine", "tfcflow_cinn_spline_ensemble": "spline"}[a.contestant]
    settings = {k: getattr(a, k) for k in ("depth", "width", "hidden_layers", "network", "activation", "dropout",
                                            "epochs", "batch_size", "lr", "schedule", "weight_decay", "clipnorm",
                                            "validation_fraction", "patience", "lr_patience", "jit_sampling",
                                            "sample_batch_size", "sample_sub_batches")}
    box = None if a.no_bounds else PRIOR_BOXES.get(a.task)
    bounds = None if box is None else [[box[0], box[1]]] * box[2]
    settings.update(model=classes[a.contestant].__name__, coupling=coupling, mixing=a.mixing, standardize=True,
                    bounds=bounds, bounds_method=a.bounds_method)
    spec = coupling
    if coupling == "spline":
        settings.update(spline_bins=a.spline_bins, spline_bound=a.spline_bound)
        spec = {"kind": "spline", "bins": a.spline_bins, "bound": a.spline_bound}
    relaxed = {}
    if a.contestant == "tfcflow_rcf":
        relaxed = dict(padding_noise=a.rcf_padding_noise, epsilon=a.rcf_epsilon)
        settings.update(rcf_padding_noise=a.rcf_padding_noise, rcf_epsilon=a.rcf_epsilon)
    ensemble = a.ensemble if a.contestant.endswith("_ensemble") else None
    if ensemble:
        settings.update(model=f"FlowEnsemble of {ensemble} {settings['model']}", ensemble=ensemble)

    kwargs = dict(event_shape=theta.shape[1], condition_shape=x.shape[1], depth=a.depth, width=a.width,
                  network=dict(kind=a.network, hidden_layers=a.hidden_layers, activation=a.activation,
                               dropout=a.dropout), coupling=spec, mixing=a.mixing, standardize=True, bounds=bounds,
                  bounds_method=a.bounds_method, **relaxed)

    from tfcflow.holdout import fit_with_holdout, holdout_split
    fit_args = dict(epochs=a.epochs, batch_size=a.batch_size, validation_fraction=a.validation_fraction,
                    patience=a.patience, optimizer=_optimizer(a, len(theta)), seed=a.seed, verbose=a.verbose,
                    lr_patience=a.lr_patience or None, clipnorm=a.clipnorm)
    t0 = time.perf_counter()
    if ensemble:
        # members trained one after another, each on its own 90/10 split with its own early stopping,
        # then mixed (trained together on one split, their errors stayed correlated: docs/history.md, 2026-12-03)
        from tfcflow.models import FlowEnsemble
        model = FlowEnsemble.of(classes[a.contestant], ensemble, seed=a.seed, **kwargs)
        histories = model.fit_members(theta, x, **fit_args)
        epochs = sum(len(h.history["loss"]) for h in histories)
        best_val = [float(min(h.history["val_loss"])) for h in histories]
        val = holdout_split(len(theta), a.validation_fraction, a.seed)[1]  # member 0's held-out rows
    else:
        keras.utils.set_random_seed(a.seed)  # the initial weights
        model = classes[a.contestant](seed=a.seed, **kwargs)
        history, val = fit_with_holdout(model, theta, x, **fit_args)
        epochs = len(history.history["loss"])
        best_val = [float(min(history.history["val_loss"]))]
    train_seconds = time.perf_counter() - t0

    if a.jit_sampling or a.sample_sub_batches != 1:
        from tfcflow.execution import Execution
        # set after training: the execution choices of sampling only
        model.execution = Execution(jit_sampling=a.jit_sampling, sub_batches=a.sample_sub_batches)

    def sample(x_obs, seed):
        return np.asarray(model.sample(x_obs[None], num_samples=a.num_samples, seed=seed,
                                       batch_size=a.sample_batch_size))[0]

    samples, timing = _draw_posteriors(a, sample, observations, a.seed)

    forward = {}
    if hasattr(model, "infer_condition") and len(val):
        # the relaxed-condition flow also predicts the observation from the parameters (its forward
        # process): RMSE per dimension of x over the held-out simulations, relative to x's std (1 =
        # no better than predicting the mean), and the share of variance explained
        pred = np.asarray(model.infer_condition(theta[val]))
        err = pred - x[val]
        std = np.maximum(x[val].std(axis=0), 1e-12)
        forward = {"forward_nrmse": float(np.mean(np.sqrt((err ** 2).mean(axis=0)) / std)),
                   "forward_r2": float(np.mean(1.0 - (err ** 2).mean(axis=0) / std ** 2))}

    record = {"task": a.task, **forward, "contestant": a.contestant, "num_simulations": int(len(theta)),
              "train_seconds": train_seconds, **timing,
              "epochs": epochs, "seed": a.seed, "settings": settings,
              # the held-out NLL that early stopping kept, per member: a quick proxy of C2ST for
              # comparing settings (--dest to a scratch prefix, no scoring)
              "best_val_loss": best_val}
    return _write(a, dest, samples, record)


if __name__ == "__main__":
    main()
