"""Evaluation hook of the Gaussian-mixture jobs (called by `tfcflow train` after training).

Per label: the fraction of posterior samples whose nearest mode is the label's mode, and the sample
mean / std vs the true centre and sigma; for RelaxedConditionFlow, the label accuracy of
infer_condition vs the Bayes-optimal classifier's on the same test points, and an importance-
weighted NLL bound. Saves the samples for report.py.
"""
import os

import numpy as np

SAMPLES_PER_LABEL = {True: 500, False: 10_000}  # fast runs (small test sets) / full runs


def evaluate(model, config, context):
    from tfcflow.data import gaussian_mixture as gm

    xt, labels_t, onehot_t = context.test_arrays
    fast = len(xt) < 10_000
    n = SAMPLES_PER_LABEL[fast]
    sample_labels = np.repeat(np.arange(gm.NUM_MODES, dtype=np.int32), n)
    cond = np.eye(gm.NUM_MODES, dtype=np.float32)[sample_labels]
    samples = np.concatenate([model.sample(cond[i:i + 20_000], seed=[config["seed"] + 1, i]).numpy()
                              for i in range(0, len(cond), 20_000)])
    per_label = gm.posterior_report(samples, sample_labels)
    out = dict(per_label=per_label,
               mode_accuracy_min=min(r["mode_accuracy"] for r in per_label),
               mode_accuracy_mean=float(np.mean([r["mode_accuracy"] for r in per_label])),
               reference_test_nll=float(-gm.ground_truth_log_prob(xt, labels_t, config["data"]["sigma"]).mean()))
    extra = {}
    if hasattr(model, "infer_condition"):
        predicted = model.infer_condition(xt).numpy().argmax(1)
        out["infer_condition_accuracy"] = float((predicted == labels_t).mean())
        out["bayes_optimal_accuracy"] = float((gm.bayes_optimal_labels(xt) == labels_t).mean())
        k = 4 if fast else 64
        out[f"test_nll_importance_k{k}"] = float(-np.mean(model.importance_log_prob(
            xt, onehot_t, num_samples=k, seed=config["seed"]).numpy()))
        extra["predicted"] = predicted
    if context.chief:
        np.savez_compressed(os.path.join(context.out_dir, "posterior_samples.npz"), samples=samples,
                            labels=sample_labels, test_x=xt, test_labels=labels_t, **extra)
    return out
