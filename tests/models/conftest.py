import pytest

from tfcflow.data import gaussian_mixture as gm


@pytest.fixture(scope="module")
def gmm_data():
    x, labels, one_hot = gm.sample(512, seed=0)
    return x, labels, one_hot
