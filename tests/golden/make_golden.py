"""Golden values of every model class: fixed-seed ``log_prob`` and ``sample`` of tiny models, so a
refactoring that must not change behaviour can be checked against the code as it was.

    python -m tests.golden.make_golden      # rewrites tests/golden/golden.npz

tests/test_golden.py recomputes ``compute()`` and compares it with the stored file. Rewrite the
file only when a change of the numbers is intended (and say so in the commit).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.npz")
BOUNDS = [[-2.0, 2.0], [-1.5, None]]


def _vector_data(n, seed):
    """x | c in 2-D with a 3-D condition, inside BOUNDS."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 3)).astype(np.float32)
    x = c @ np.array([[1.0, -0.5], [0.3, 0.8], [0.0, 0.4]], np.float32) + 0.3 * rng.normal(size=(n, 2))
    x = np.clip(x, [-1.9, -1.4], [1.9, 10.0])
    return x.astype(np.float32), c


def _image_data(label, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    if label:
        c = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    else:
        c = rng.integers(0, 256, (n, 4, 4, 1)).astype(np.uint8)
    return x, c


def _vector(cls_name, **kwargs):
    from tfcflow.models import ConditionalRealNVP, RelaxedConditionFlow
    cls = {"cinn": ConditionalRealNVP, "rcf": RelaxedConditionFlow}[cls_name]
    return cls(2, 3, **{"depth": 2, "width": 16, "seed": 1, **kwargs})


def _glow(label=False, seed=0):
    from tfcflow.models import ConditionalGlow
    return ConditionalGlow((8, 8, 1), (3,) if label else (4, 4, 1), levels=2, depth=1, width=8,
                           conditioning={"encoder_width": 4, "prior_width": 0 if label else 4}, seed=seed)


def _caflow():
    from tfcflow.models import CAFlow
    return CAFlow((8, 8, 1), (4, 4, 1), levels=2, depth=1,
                  width={"condition": 8, "target": 8, "latent": 4})


#: name -> (builder, "vector" | "image" | "label")
CASES = {
    "cinn_affine": (lambda: _vector("cinn"), "vector"),
    "cinn_spline": (lambda: _vector("cinn", coupling={"kind": "spline", "bins": 4}), "vector"),
    "cinn_bounds_map": (lambda: _vector("cinn", bounds=BOUNDS), "vector"),
    "cinn_bounds_reject": (lambda: _vector("cinn", bounds=BOUNDS, bounds_method="reject"), "vector"),
    "rcf": (lambda: _vector("rcf", actnorm=True, epsilon=1.0), "vector"),
    "ensemble": (lambda: _ensemble_of(lambda k: _vector("cinn", depth=1, seed=3 + k)), "vector"),
    "glow": (lambda: _glow(), "image"),
    "glow_label": (lambda: _glow(label=True), "label"),
    "caflow": (_caflow, "image"),
    "ensemble_glow": (lambda: _ensemble_of(lambda k: _glow(seed=k)), "image"),
}


def _ensemble_of(make):
    from tfcflow.models import FlowEnsemble
    return FlowEnsemble([make(0), make(1)])


def build(name):
    """The model of case ``name``, initialized from fixed data and perturbed (fixed seeds), with the
    data it is evaluated on: ``(model, x, c)``."""
    import keras

    from tests.helpers import perturb

    make, kind = CASES[name]
    keras.utils.set_random_seed(1234)
    model = make()
    if kind == "vector":
        x, c = _vector_data(64, seed=0)
        model.initialize(x, c)
        perturb(model, seed=11, scale=0.1)
        x, c = _vector_data(6, seed=1)
    else:
        x, c = _image_data(kind == "label", 16, seed=0)
        model.initialize(x, c)
        perturb(model, seed=11, scale=0.02)
        x, c = _image_data(kind == "label", 4, seed=1)
    return model, x, c


def _fit_case(name, dataset: bool):
    """A model trained for one epoch (4 steps) from its constructor: ``fit`` learns the
    standardization and initializes first, from arrays or from a ``tf.data.Dataset``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1234)
    model = CASES[name][0]()
    x, c = _vector_data(64, seed=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), seed=3)
    if dataset:
        model.fit(tf.data.Dataset.from_tensor_slices((x, c)).batch(16), epochs=1, verbose=0, shuffle=False)
    else:
        model.fit(x, c, batch_size=16, epochs=1, verbose=0, shuffle=False)
    return model, *_vector_data(6, seed=1)


def compute() -> dict:
    """``{case/quantity: array}`` of every case."""
    out = {}
    for name, (_, kind) in CASES.items():
        model, x, c = build(name)
        out[f"{name}/log_prob"] = model.log_prob(x, c).numpy()
        out[f"{name}/sample"] = model.sample(c, temperature=0.8, seed=7).numpy()
        if kind == "vector":
            out[f"{name}/sample_many"] = model.sample(c[:2], seed=5, num_samples=3, batch_size=4).numpy()
    for name in ("cinn_affine", "ensemble"):
        for data in ("arrays", "dataset"):
            model, x, c = _fit_case(name, dataset=data == "dataset")
            out[f"{name}/fit_{data}/log_prob"] = model.log_prob(x, c).numpy()
    return out


def main() -> None:
    from tfcflow.distribute import use_logical_cpus
    use_logical_cpus(2)  # as tests/conftest.py does
    values = compute()
    np.savez(PATH, **values)
    print(f"wrote {PATH}: {len(values)} arrays")


if __name__ == "__main__":
    main()
