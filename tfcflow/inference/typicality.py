"""Is an observation like the simulations an estimator was trained on? A misspecification check.

An estimator is only as good as its simulator is for the data: an observation ``x_o`` far from
every simulation (a misspecified simulator, a unit error, a corrupted measurement) gets a
posterior that is an extrapolation of the networks, often confident and wrong. ``Typicality``
scores an observation by its squared Mahalanobis distance to the training observations (their mean
and covariance: the standardized space the networks see, rotated to its principal axes), and sets
the threshold at the ``quantile`` of the same score over held-out simulations that were not
trained on: a simulator's own observation exceeds it with probability about ``1 - quantile``.

The score sees location and spread only: an observation inside the cloud of simulations but in a
hole of it (between the two moons of a two-moons task) passes. It flags what is far outside,
which is what the networks cannot be trusted on.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

#: the held-out simulations' quantile the threshold is set at
DEFAULT_QUANTILE = 0.999


@dataclasses.dataclass(frozen=True)
class Typicality:
    """Mean ``[M]``, whitening ``[M, M]`` (so that ``(x - mean) @ whitening`` has identity
    covariance on the training rows) and the score ``threshold``."""

    mean: np.ndarray
    whitening: np.ndarray
    threshold: float
    quantile: float = DEFAULT_QUANTILE

    @classmethod
    def fit(cls, train_x, heldout_x, quantile: float = DEFAULT_QUANTILE) -> "Typicality":
        """From training observations ``[n, ...]`` and held-out ones ``[m, ...]`` (flattened)."""
        train = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
        held = np.asarray(heldout_x, np.float64).reshape(len(heldout_x), -1)
        if len(held) == 0:
            raise ValueError("typicality needs held-out observations for its threshold")
        mean = train.mean(axis=0)
        cov = np.cov(train, rowvar=False).reshape(train.shape[1], train.shape[1])
        values, vectors = np.linalg.eigh(cov)
        # directions without spread (a constant summary statistic) are scored at a small floor
        floor = max(float(values.max()), 1e-12) * 1e-6
        whitening = vectors / np.sqrt(np.maximum(values, floor))
        base = cls(mean, whitening, float("inf"), quantile)
        threshold = float(np.quantile(base.score(held), quantile))
        return cls(mean, whitening, threshold, quantile)

    def score(self, x) -> np.ndarray:
        """``[b]`` squared Mahalanobis distances of observations ``[b, ...]``."""
        z = (np.asarray(x, np.float64).reshape(len(x), -1) - self.mean) @ self.whitening
        return np.sum(z ** 2, axis=1)

    def check(self, x) -> dict:
        """``{"score": [b], "threshold", "typical": [b] bool}`` of observations ``[b, ...]``."""
        scores = self.score(x)
        return {"score": scores.tolist(), "threshold": self.threshold,
                "typical": (scores <= self.threshold).tolist()}

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "whitening": self.whitening.tolist(), "threshold": self.threshold,
                "quantile": self.quantile}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> Optional["Typicality"]:
        if d is None:
            return None
        return cls(np.asarray(d["mean"]), np.asarray(d["whitening"]), float(d["threshold"]), float(d["quantile"]))
