import numpy as np
import pytest

from tfcflow.data import gaussian_mixture as gm
from tfcflow.models import ConditionalRealNVP, RelaxedConditionFlow

TINY = dict(num_blocks=2, hidden_units=(32, 32))


def tiny_model(kind: str, **overrides):
    cls = {"cinn": ConditionalRealNVP, "rcf": RelaxedConditionFlow}[kind]
    return cls(2, 8, **{**TINY, **overrides})


@pytest.fixture(scope="module")
def gmm_data():
    x, labels, one_hot = gm.sample(512, seed=0)
    return x, labels, one_hot


def perturb_model(model, seed=0, scale=0.05):
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(np.float32))
