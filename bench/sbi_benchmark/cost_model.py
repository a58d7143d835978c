"""The model and data that the cost scripts (profile_posterior.py, sampling_speed.py) time: the
table's ``tfcflow_cinn_spline`` (spline couplings, LU mixing, standardization, the prior's box
mapped) trained for one epoch on a task's cached simulations; the weights barely matter for the
cost. ``smoke``: random data shaped like two_moons', for CI."""
from __future__ import annotations

import common
from ours import PRIOR_BOXES


def task_data(out: str, task: str, smoke: bool):
    """``(theta [n, D], x [n, M], observations [k, M], box or None)`` as float32 arrays: the
    task's cache under ``out``, or with ``smoke`` 512 random rows and 2 observations."""
    import numpy as np

    if smoke:
        rng = np.random.default_rng(0)
        theta, x = rng.uniform(-1, 1, (512, 2)).astype(np.float32), rng.normal(size=(512, 2)).astype(np.float32)
        return theta, x, x[:2], (-1.0, 1.0, 2)
    data = np.load(common.cache_file(out, task))
    theta, x, observations = (data[k].astype(np.float32) for k in ("theta", "x", "observations"))
    return theta, x, observations, PRIOR_BOXES.get(task)


def one_epoch_model(theta, x, box, width: int, depth: int, hidden_layers: int = 2, batch: int = 256):
    """The spline cINN of ``width`` x ``depth`` (``hidden_layers`` per coupling network), seeded,
    trained for one epoch at ``batch`` with Adam 5e-4."""
    import keras
    from tfcflow.models import ConditionalRealNVP

    keras.utils.set_random_seed(0)
    model = ConditionalRealNVP(theta.shape[1], x.shape[1], depth=depth, width=width,
                               network={"hidden_layers": hidden_layers}, coupling="spline", mixing="lu",
                               standardize=True,
                               bounds=None if box is None else [[box[0], box[1]]] * box[2])
    model.compile(optimizer=keras.optimizers.Adam(5e-4), clipnorm=5.0)
    model.fit(theta, x, batch_size=batch, epochs=1, verbose=0)
    return model
