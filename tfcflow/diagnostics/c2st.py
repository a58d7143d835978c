"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab 2017), in the setup common in
simulation-based inference benchmarks.

A classifier learns to tell samples_a (label 0) from samples_b (label 1); its held-out accuracy is
the statistic: 0.5 when the two distributions are the same (with equal sample sizes), 1.0 when
they do not overlap. Setup: both sets are z-scored with the mean and std of samples_a (so the
scale of the parameters does not matter), the classifier is an MLP with two hidden layers of
10 * D ReLU units trained with Adam, and the accuracy is the mean over stratified k-fold
cross-validation.
"""
from __future__ import annotations

import numpy as np

from tfcflow.diagnostics import _validation as v


def c2st(samples_a, samples_b, seed: int = 0, folds: int = 5, max_iter: int = 1000) -> float:
    """Cross-validated accuracy of a classifier separating two sample sets.

    Args:
      samples_a: ``[n, D]`` e.g. reference posterior draws.
      samples_b: ``[m, D]`` e.g. the model's posterior draws for the same observation.
      seed: seeds the fold split and the network's initialization and batches (deterministic).
      folds: k of the stratified k-fold cross-validation (each set needs >= k samples).
      max_iter: cap on training epochs per fold (early stopping is off; training stops when the
        training loss stops improving).

    Returns:
      mean held-out accuracy in [0, 1]. Chance level is max(n, m) / (n + m): use equal sizes for
      the usual 0.5.
    """
    # imported here: scikit-learn is only needed by this function
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    a = v.float_array(samples_a, "samples_a", 2, "[n, D]")
    b = v.float_array(samples_b, "samples_b", 2, "[m, D]")
    v.same(b.shape[1], a.shape[1], "samples_b", "D", "[m, D]", "samples_a")
    folds = v.positive_int(folds, "folds", 2)
    max_iter = v.positive_int(max_iter, "max_iter", 1)
    for array, name, shape in ((a, "samples_a", "[n, D]"), (b, "samples_b", "[m, D]")):
        if array.shape[0] < folds:
            raise ValueError(f"{name} must have shape {shape} with at least folds={folds} rows, got {array.shape}")
    mean, std = a.mean(axis=0), a.std(axis=0)
    # a constant dimension of samples_a carries no scale: leave it unscaled rather than divide by 0
    std = np.where(std > 0, std, 1.0)
    x = (np.concatenate([a, b]) - mean) / std
    y = np.concatenate([np.zeros(len(a), np.int64), np.ones(len(b), np.int64)])
    width = 10 * a.shape[1]
    classifier = MLPClassifier(hidden_layer_sizes=(width, width), activation="relu", solver="adam",
                               max_iter=max_iter, early_stopping=False, random_state=seed)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(classifier, x, y, cv=split, scoring="accuracy")
    return float(np.mean(scores))
