"""The sbibm tasks' priors as TFP distributions: what a user of ``tfcflow.inference.NPE`` writes.

Exactly sbibm's (tasks/<name>/task.py): two_moons U(-1, 1)^2, slcp U(-3, 3)^5, gaussian_mixture
U(-10, 10)^2, gaussian_linear N(0, 0.1 I_10), bernoulli_glm N(0, B) with B the inverse of its
smoothness precision matrix (offset precision 0.5, second differences on the 9 filter weights).
"""
from __future__ import annotations

import numpy as np


def _uniform(bound: float, dim: int):
    from tensorflow_probability import distributions as tfd
    return tfd.Independent(tfd.Uniform(low=[-bound] * dim, high=[bound] * dim), reinterpreted_batch_ndims=1)


def bernoulli_glm_precision() -> np.ndarray:
    """sbibm's prior precision of bernoulli_glm (10 x 10)."""
    m = 9
    d = np.eye(m) - np.eye(m, k=-1)
    f = d @ d + np.diag(np.arange(m) / m) ** 0.5
    b = np.zeros((m + 1, m + 1))
    b[0, 0] = 0.5
    b[1:, 1:] = f.T @ f
    return b


def prior(task: str):
    """The TFP prior of an sbibm task (module docstring)."""
    from tensorflow_probability import distributions as tfd
    if task == "two_moons":
        return _uniform(1.0, 2)
    if task == "slcp":
        return _uniform(3.0, 5)
    if task == "gaussian_mixture":
        return _uniform(10.0, 2)
    if task == "gaussian_linear":
        return tfd.MultivariateNormalDiag(loc=[0.0] * 10, scale_diag=[float(np.sqrt(0.1))] * 10)
    if task == "bernoulli_glm":
        cov = np.linalg.inv(bernoulli_glm_precision())
        return tfd.MultivariateNormalTriL(loc=[0.0] * 10, scale_tril=np.linalg.cholesky(cov).astype(np.float32))
    raise ValueError(f"no prior for task {task!r}")
