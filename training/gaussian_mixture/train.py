"""Training job: the 8-mode Gaussian-mixture inverse problem (Xiao et al. 2019, Sec. 5.1).

Trains ConditionalRealNVP (cINN) and RelaxedConditionFlow on (x, one-hot label) pairs and reports,
on held-out data: per-label posterior mode accuracy, sample mean/std vs the true centre and sigma,
the relaxed-condition flow's label accuracy vs the Bayes-optimal classifier's, test NLL and wall
time; writes results.json, results.md, figure.png (if matplotlib is installed), the config and the
weights into --out.

    python training/gaussian_mixture/train.py --config training/gaussian_mixture/config.json \
        --out runs/gaussian_mixture
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

DEFAULTS = dict(
    models=["ConditionalRealNVP", "RelaxedConditionFlow"],
    sigma=0.2,
    num_blocks=8,
    hidden_units=[512, 512],
    scale="exp_tanh",
    clamp=2.0,
    epsilon=0.1,
    padding_noise=0.05,
    padding_dim=8,
    batch_size=1600,
    learning_rate=1e-3,
    steps=1000,
    train_size=1_600_000,
    test_size=10_000,
    samples_per_label=10_000,
    importance_samples=64,
    jit_compile=False,
    seed=0,
)


def load_config(path: str | None, overrides: list[str] | None = None) -> dict:
    cfg = dict(DEFAULTS)
    if path:
        with open(path) as f:
            user = json.load(f)
        unknown = sorted(set(user) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"{path}: unknown config key(s) {unknown}; known keys: {sorted(DEFAULTS)}")
        cfg.update(user)
    for item in overrides or []:
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            raise ValueError(f"--set {item}: unknown key {key!r}; known keys: {sorted(DEFAULTS)}")
        cfg[key] = json.loads(value)
    bad = [m for m in cfg["models"] if m not in ("ConditionalRealNVP", "RelaxedConditionFlow")]
    if bad:
        raise ValueError(f"models: unknown model(s) {bad}; choose ConditionalRealNVP and/or RelaxedConditionFlow")
    return cfg


def build(kind: str, cfg: dict):
    from tfcflow.models import ConditionalRealNVP, RelaxedConditionFlow
    common = dict(num_blocks=cfg["num_blocks"], hidden_units=cfg["hidden_units"], scale=cfg["scale"],
                  clamp=cfg["clamp"], seed=cfg["seed"])
    if kind == "ConditionalRealNVP":
        return ConditionalRealNVP(2, 8, **common)
    return RelaxedConditionFlow(2, 8, padding_dim=cfg["padding_dim"], epsilon=cfg["epsilon"],
                                padding_noise=cfg["padding_noise"], noise_seed=cfg["seed"], **common)


def evaluate(kind, model, cfg, test):
    from tfcflow.data import gaussian_mixture as gm
    xt, labels_t, onehot_t = test
    n = cfg["samples_per_label"]
    sample_labels = np.repeat(np.arange(8, dtype=np.int32), n)
    cond = np.eye(8, dtype=np.float32)[sample_labels]
    samples = np.concatenate([model.sample(cond[i:i + 20000], seed=[cfg["seed"] + 1, i]).numpy()
                              for i in range(0, len(cond), 20000)])
    per_label = gm.posterior_report(samples, sample_labels)
    out = dict(per_label=per_label,
               mode_accuracy_min=min(r["mode_accuracy"] for r in per_label),
               mode_accuracy_mean=float(np.mean([r["mode_accuracy"] for r in per_label])),
               test_nll=float(-np.mean(model.log_prob(xt, onehot_t).numpy())))
    if kind == "RelaxedConditionFlow":
        out["test_nll_note"] = "plug-in estimate at x0 = 0 (log p([x,0]|c) - log q(0))"
        k = cfg["importance_samples"]
        out[f"test_nll_importance_k{k}"] = float(-np.mean(model.importance_log_prob(
            xt, onehot_t, num_samples=k, seed=cfg["seed"]).numpy()))
        out["test_nll_bound_k1"] = float(-np.mean(model.importance_log_prob(
            xt, onehot_t, num_samples=1, seed=cfg["seed"]).numpy()))
        predicted = model.infer_condition(xt).numpy().argmax(1)
        out["infer_condition_accuracy"] = float((predicted == labels_t).mean())
        out["bayes_optimal_accuracy"] = float((gm.bayes_optimal_labels(xt) == labels_t).mean())
        out["_predicted"] = predicted
    out["_samples"], out["_sample_labels"] = samples, sample_labels
    return out


def markdown(cfg, results, reference_nll) -> str:
    lines = [f"steps={cfg['steps']} batch={cfg['batch_size']} blocks={cfg['num_blocks']} "
             f"hidden={cfg['hidden_units']} eps={cfg['epsilon']} sigma0={cfg['padding_noise']}", "",
             "| model | min / mean mode accuracy | test NLL (nats) | label acc. (Bayes) | train wall s |",
             "|---|---|---|---|---|"]
    for kind, r in results.items():
        nll = f"{r['test_nll']:.4f}"
        if "infer_condition_accuracy" in r:
            k = cfg["importance_samples"]
            nll += f" (plug-in); {r[f'test_nll_importance_k{k}']:.4f} (IW bound K={k})"
            acc = f"{r['infer_condition_accuracy']:.4%} ({r['bayes_optimal_accuracy']:.4%})"
        else:
            acc = "n/a"
        lines.append(f"| {kind} | {r['mode_accuracy_min']:.4%} / {r['mode_accuracy_mean']:.4%} | {nll} | "
                     f"{acc} | {r['train_seconds']:.0f} |")
    lines += ["", f"Ground-truth test NLL (true posterior density): {reference_nll:.4f} nats", ""]
    for kind, r in results.items():
        lines += [f"Per label, {kind}:", "",
                  "| label | mode acc. | centre | sample mean | |mean - centre| | sample std (sigma = "
                  f"{cfg['sigma']}) |", "|---|---|---|---|---|---|"]
        for row in r["per_label"]:
            lines.append(f"| {row['label']} | {row['mode_accuracy']:.4%} | {row['centre']} | {row['mean']} | "
                         f"{row['mean_error']:.4f} | {row['std']} |")
        lines.append("")
    return "\n".join(lines)


def plot(path, test, results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'tfcflow[experiments]'): no figure", file=sys.stderr)
        return None
    xt = test[0]
    panels = []
    if "RelaxedConditionFlow" in results:
        r = results["RelaxedConditionFlow"]
        panels.append(("RelaxedConditionFlow: test data,\ncoloured by inferred label", xt, r["_predicted"]))
    for kind, r in results.items():
        s, lab = r["_samples"], r["_sample_labels"]
        keep = np.random.default_rng(0).permutation(len(s))[:8000]
        panels.append((f"{kind}: posterior samples,\ncoloured by conditioning label", s[keep], lab[keep]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (title, pts, col) in zip(np.atleast_1d(axes), panels):
        ax.scatter(pts[:, 0], pts[:, 1], c=col, cmap="tab10", vmin=0, vmax=9, s=1.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-3.6, 3.6)
        ax.set_ylim(-3.6, 3.6)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "config.json"))
    p.add_argument("--out", default="runs/gaussian_mixture")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a config key")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    import keras
    import tensorflow as tf
    from tfcflow.data import gaussian_mixture as gm

    t_start = time.time()
    keras.utils.set_random_seed(cfg["seed"])
    x, _, onehot = gm.sample(cfg["train_size"], seed=cfg["seed"], sigma=cfg["sigma"])
    test = gm.sample(cfg["test_size"], seed=cfg["seed"] + 10_000, sigma=cfg["sigma"])
    reference_nll = float(-gm.ground_truth_log_prob(test[0], test[1], cfg["sigma"]).mean())
    steps_per_epoch = max(1, cfg["train_size"] // cfg["batch_size"])
    epochs = max(1, -(-cfg["steps"] // steps_per_epoch))
    ds = (tf.data.Dataset.from_tensor_slices((x, onehot))
          .shuffle(min(cfg["train_size"], 200_000), seed=cfg["seed"], reshuffle_each_iteration=True)
          .batch(cfg["batch_size"], drop_remainder=True).repeat().prefetch(2))

    results = {}
    for kind in cfg["models"]:
        model = build(kind, cfg)
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), jit_compile=cfg["jit_compile"])
        t0 = time.time()
        hist = model.fit(ds, epochs=epochs, steps_per_epoch=-(-cfg["steps"] // epochs), verbose=2)
        train_seconds = time.time() - t0
        r = evaluate(kind, model, cfg, test)
        r.update(train_seconds=train_seconds, final_train_loss=float(hist.history["loss"][-1]),
                 parameters=int(model.count_params()))
        model.save_weights(os.path.join(args.out, f"{kind}.weights.h5"))
        results[kind] = r
        print(f"{kind}: min mode accuracy {r['mode_accuracy_min']:.4%}, test NLL {r['test_nll']:.4f}, "
              f"{train_seconds:.0f} s", flush=True)

    figure = plot(os.path.join(args.out, "figure.png"), test, results)
    public = {k: {kk: vv for kk, vv in r.items() if not kk.startswith("_")} for k, r in results.items()}
    summary = dict(config=cfg, reference_test_nll=reference_nll, results=public, figure=figure,
                   total_seconds=time.time() - t_start)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(cfg, results, reference_nll) + "\n")
    print(markdown(cfg, results, reference_nll))
    return summary


if __name__ == "__main__":
    main()
