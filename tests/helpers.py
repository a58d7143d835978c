"""Checks shared by the bijector and model tests."""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def checksums(folder) -> dict:
    """``{relative path: sha256}`` of every file under ``folder``: equal dicts = nothing written."""
    import hashlib
    import os

    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def perturb(layer, seed: int, scale: float = 0.1) -> None:
    """Adds Gaussian noise to every trainable float weight, so zero-initialized networks and
    identity-initialized parameters become generic (a test on an identity map proves nothing)."""
    rng = np.random.default_rng(seed)
    for v in layer.trainable_variables:
        v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(np.float32))


def fresh(t) -> tf.Tensor:
    """A new tensor object with the same values: defeats TFP's identity-keyed cache."""
    return tf.constant(np.array(t))


def autodiff_log_abs_det(fn, x: tf.Tensor) -> float:
    """log|det J| of ``fn`` at a single example ``x`` (``[1, ...]``), from the full Jacobian."""
    x = fresh(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = tf.reshape(fn(x), [-1])
    jac = tape.jacobian(y, x, experimental_use_pfor=False)
    jac = tf.reshape(jac, [y.shape[0], -1])
    sign, logdet = np.linalg.slogdet(jac.numpy().astype(np.float64))
    assert sign != 0, "singular Jacobian"
    return float(logdet)


def check_bijector(make, x, rt_tol=1e-5, ld_tol=1e-4, ld_examples=2):
    """The standard checks of one bijector view ``make()`` on data-side ``x`` ``[batch, ...]``:

    - round trip x -> z -> x on fresh tensors, max abs error < rt_tol;
    - inverse log-det == -forward log-det at the matching points;
    - fused (output, log-det) == TFP's separate inverse / inverse_log_det_jacobian;
    - inverse log-det == log|det| of the autodiff Jacobian for the first examples.
    Returns the latent z.
    """
    b = make()
    z, ildj = b.inverse_and_log_det(fresh(x))
    x_back, fldj = make().forward_and_log_det(fresh(z))
    np.testing.assert_array_less(np.max(np.abs(x_back.numpy() - np.asarray(x))), rt_tol)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-5, atol=1e-5)
    tfp_z = make().inverse(fresh(x))
    tfp_ildj = make().inverse_log_det_jacobian(fresh(x))
    np.testing.assert_allclose(tfp_z.numpy(), z.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tfp_ildj.numpy(), ildj.numpy(), rtol=1e-6, atol=1e-5)
    for i in range(ld_examples):
        expected = autodiff_log_abs_det(lambda t: make(i).inverse(t), np.asarray(x)[i:i + 1])
        assert abs(expected - float(ildj[i])) < ld_tol, (expected, float(ildj[i]))
    return z


def assert_every_variable_gets_a_gradient(layer, x, condition=None, count=None):
    """A loss through the layer (normalizing direction) reaches every trainable variable with a
    non-None, non-zero gradient."""
    with tf.GradientTape() as tape:
        z, ld = layer(x, condition=condition) if condition is not None else layer(x)
        loss = tf.reduce_sum(z ** 2) - tf.reduce_sum(ld)
    grads = tape.gradient(loss, layer.trainable_variables)
    if count is not None:
        assert len(grads) == count
    assert grads and all(g is not None and np.any(g.numpy() != 0) for g in grads)


# ---- tiny models shared by the model, execution, distribution, export and optimizer tests -------
def tiny_model(kind: str, **overrides):
    """A tiny vector model: ``"cinn"`` (ConditionalRealNVP) or ``"rcf"`` (RelaxedConditionFlow), x [b, 2], c [b, 8]."""
    from tfcflow.models import ConditionalRealNVP, RelaxedConditionFlow
    cls = {"cinn": ConditionalRealNVP, "rcf": RelaxedConditionFlow}[kind]
    return cls(2, 8, **{"depth": 2, "width": 32, **overrides})


def tiny_glow(condition: str = "image", **overrides):
    """A tiny ConditionalGlow on 8x8x1 images; ``condition``: ``"image"`` (4x4x1) or ``"label"`` (3 classes)."""
    from tfcflow.models import ConditionalGlow
    shape = (4, 4, 1) if condition == "image" else (3,)
    defaults = dict(levels=2, depth=1, width=8,
                    conditioning={"encoder_width": 4, "prior_width": 4 if condition == "image" else 0})
    return ConditionalGlow((8, 8, 1), shape, **{**defaults, **overrides})


def tiny_caflow(**overrides):
    """A tiny CAFlow on 8x8x1 targets with 4x4x1 condition images."""
    from tfcflow.models import CAFlow
    defaults = dict(levels=2, depth=1, width={"condition": 8, "target": 8, "latent": 4})
    return CAFlow((8, 8, 1), (4, 4, 1), **{**defaults, **overrides})


def copy_model(model):
    """A new model with ``model``'s config and weights: tests that compile or train start from it,
    so a shared (module-scoped) model is never changed by one test for the next."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone
