"""SavedModel export for TF Serving: ``<base>/<model_name>/<version>/`` with named signatures.

Signatures (input and output keys are stable API):

==================  ==========================================  =============================================
signature           inputs                                      outputs
==================  ==========================================  =============================================
``log_prob``        ``x``, ``condition``                        ``log_prob`` (nats), ``bits_per_dim``
``sample``          ``condition``, ``temperature``, ``seed``    ``samples``
(also ``serving_default``)
``best_of_n``       ``condition``, ``n``, ``temperature``,      ``samples``, ``log_prob``
                    ``seed``
``sample_many``     ``condition``, ``num_samples``,             ``samples`` ``[batch, num_samples, ...]``
                    ``temperature``, ``seed``                   (e.g. posterior draws per observation)
``infer_condition`` ``x``                                       ``condition`` (c~), ``class_probabilities``,
(relaxed-condition                                              ``label``
models only)
==================  ==========================================  =============================================

Dtypes: image models take and return raw 8-bit images (``uint8 [batch, H, W, C]``; image
conditions ``uint8`` too) -- dequantization and scaling run inside the graph; vector models take
``float32 [batch, D]``. ``condition`` of a class-conditional image model is ``float32 [batch, K]``.
``temperature`` is a ``float32`` scalar (>= 0), ``seed`` an ``int64`` scalar, ``n`` an ``int32``
scalar (1 <= n <= ``max_n``, default 64), ``num_samples`` an ``int32`` scalar (1 <= num_samples <=
``max_samples``, default 100,000; drawn ``sample_rows`` rows at a time, so memory stays bounded).
``sample_many`` gives the library's ``model.sample(condition, num_samples=N, seed=s)``.
Same seed, same samples, in any process: the random draws
are stateless Philox (tfcflow._random), and no signature is XLA-compiled (XLA would change them).

Bad requests fail inside the graph with ``InvalidArgumentError`` naming the problem (batch
mismatch between x and condition, temperature < 0, n out of range, NaN inputs); wrong shapes or
dtypes are rejected by the signature's input spec.
"""
from __future__ import annotations

import math
import os
from contextlib import nullcontext
from typing import Optional

import numpy as np
import tensorflow as tf

from tfcflow.callbacks import ema_swapped

MAX_N = 64
MAX_SAMPLES = 100_000


def _specs(model):
    from tfcflow.models.image_flow import ImageFlowModel

    image = isinstance(model, ImageFlowModel)
    x = tf.TensorSpec((None,) + tuple(model.event_shape), tf.uint8 if image else tf.float32, name="x")
    cond_image = image and len(model.condition_shape) == 3
    c = tf.TensorSpec((None,) + tuple(model.condition_shape), tf.uint8 if cond_image else tf.float32,
                      name="condition")
    return image, x, c


def serving_module(model, max_n: int = MAX_N, max_samples: int = MAX_SAMPLES) -> tuple[tf.Module, dict]:
    """A ``tf.Module`` holding the model's variables and its signature functions."""
    image, x_spec, c_spec = _specs(model)
    temperature = tf.TensorSpec([], tf.float32, name="temperature")
    seed = tf.TensorSpec([], tf.int64, name="seed")
    n_spec = tf.TensorSpec([], tf.int32, name="n")
    per_dim = float(np.prod(model.event_shape)) * math.log(2.0)

    def to_output(samples):
        return tf.cast(tf.round(samples * 255.0), tf.uint8) if image else samples

    module = tf.Module()
    # The TF1 session loader that TF Serving (and saved_model_cli run) uses needs the variables
    # tracked by the exported object itself (Keras 3 variables wrap tf.Variables: track those).
    module.model_variables = [v.value for v in model.variables]

    @tf.function(input_signature=[x_spec, c_spec])
    def log_prob(x, condition):
        lp = model.log_prob(x, condition)
        return {"log_prob": lp, "bits_per_dim": -lp / per_dim}

    @tf.function(input_signature=[c_spec, temperature, seed])
    def sample(condition, temperature, seed):
        return {"samples": to_output(model.sample(condition, temperature=temperature, seed=seed))}

    @tf.function(input_signature=[c_spec, n_spec, temperature, seed])
    def best_of_n(condition, n, temperature, seed):
        best, lp = model.best_of_n(condition, n, temperature=temperature, seed=seed, max_n=max_n)
        return {"samples": to_output(best), "log_prob": lp}

    @tf.function(input_signature=[c_spec, tf.TensorSpec([], tf.int32, name="num_samples"), temperature, seed])
    def sample_many(condition, num_samples, temperature, seed):
        from tfcflow import _checks
        num_samples = _checks.enforce(num_samples, (num_samples >= 1) & (num_samples <= max_samples),
                                      f"num_samples must be in [1, {max_samples}]")
        return {"samples": to_output(model.sample(condition, temperature=temperature, seed=seed,
                                                  num_samples=num_samples))}

    module.log_prob, module.sample, module.best_of_n, module.sample_many = log_prob, sample, best_of_n, sample_many
    signatures = {"serving_default": sample, "sample": sample, "log_prob": log_prob, "best_of_n": best_of_n,
                  "sample_many": sample_many}
    if hasattr(model, "infer_condition"):
        eps2 = 2.0 * float(model.epsilon) ** 2

        @tf.function(input_signature=[x_spec])
        def infer_condition(x):
            c = model.infer_condition(x)
            k = c.shape[-1]
            # p(class k | x) under the relaxed-condition likelihood N(c~; e_k, eps^2 I)
            dist = tf.reduce_sum(tf.square(c[:, None, :] - tf.eye(k)[None]), axis=-1)
            probs = tf.nn.softmax(-dist / eps2, axis=-1)
            return {"condition": c, "class_probabilities": probs, "label": tf.argmax(probs, axis=-1)}

        module.infer_condition = infer_condition
        signatures["infer_condition"] = infer_condition
    return module, signatures


def save(model, export_dir: str, version: Optional[int] = None, model_name: Optional[str] = None,
         max_n: int = MAX_N, use_ema: bool = True, max_samples: int = MAX_SAMPLES) -> str:
    """Exports ``model`` to ``export_dir/<model_name>/<version>/`` (TF Serving's layout) and returns
    that path. ``model_name`` defaults to the model's name; ``version`` to one more than the highest
    version already there. With ``use_ema`` (default) the optimizer's EMA weights are exported when
    the model has them. Existing versions are never overwritten."""
    name = model_name or model.name
    base = os.path.join(export_dir, name)
    if version is None:
        existing = [int(d) for d in os.listdir(base) if d.isdigit()] if os.path.isdir(base) else []
        version = max(existing, default=0) + 1
    if int(version) < 1:
        raise ValueError(f"version must be an integer >= 1, got {version}")
    path = os.path.join(base, str(int(version)))
    if os.path.exists(path):
        raise ValueError(f"{path} already exists; TF Serving versions are immutable: pick another version")
    context = ema_swapped(model) if (use_ema and getattr(model, "optimizer", None) is not None) else nullcontext()
    with context:
        module, signatures = serving_module(model, max_n, max_samples)
        tmp = path + ".tmp"
        tf.saved_model.save(module, tmp, signatures=signatures)
    os.replace(tmp, path)  # a half-written export never appears under a version number
    return path
