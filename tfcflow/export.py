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
    ``sample_at_size``, ``best_of_n_at_size``,      the inputs above plus   as above
    ``sample_many_at_size`` (class-conditional      ``size``
    image models only)
    ==================  ==========================================  =============================================

Dtypes: image models take and return raw 8-bit images (``uint8 [batch, H, W, C]``; image
conditions ``uint8`` too) -- dequantization and scaling run inside the graph; vector models take
``float32 [batch, D]``. ``condition`` of a class-conditional image model is ``float32 [batch, K]``.

Image sizes: image models are fully convolutional, so their signatures take any size: ``x`` is
``[batch, None, None, C]`` (H, W divisible by ``2^levels``) and an image ``condition``
``[batch, None, None, c]`` (x's size / the model's ``factor``); samples of a condition have its
size x factor; a class-conditional model's ``sample``, ``best_of_n`` and ``sample_many`` draw at
its default size (``event_shape``'s H, W), and its ``*_at_size`` signatures at the request's
``size`` (``int32 [2]``: height, width, positive and divisible by 2^levels); a model without a
default size has only the ``*_at_size`` ones (``serving_default`` is then ``sample_at_size``).
``bits_per_dim`` divides by each request's
H * W * C. One image may have at most ``max_pixels`` pixels (H * W of x, or of the samples a
condition asks for; default ``MAX_PIXELS`` = 1024 * 1024, a few GB of activations per image for a
mid-sized Glow), checked in the graph before any flow op: a larger request fails with
InvalidArgumentError "... at most max_pixels = ... pixels ...". The batch is not bounded here (the
server's batching limits it).
``temperature`` is a ``float32`` scalar (>= 0), ``seed`` an ``int64`` scalar, ``n`` an ``int32``
scalar (1 <= n <= ``max_n``, default 64), ``num_samples`` an ``int32`` scalar (1 <= num_samples <=
``max_samples``, default 100,000; drawn ``sample_rows`` rows at a time, so memory stays bounded).
``sample_many`` gives the library's ``model.sample(condition, num_samples=N, seed=s)``.
Same seed, same samples, in any process: the random draws
are stateless Philox (tfcflow._random), and no signature is XLA-compiled (XLA would change them).

Bad requests fail inside the graph with ``InvalidArgumentError`` naming the problem (batch
mismatch between x and condition, temperature < 0, n out of range, NaN inputs, image sizes not
divisible by 2^levels, x not the condition's size x factor, more than max_pixels); wrong ranks,
channel counts or dtypes are rejected by the signature's input spec.
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
MAX_PIXELS = 1024 * 1024


def _specs(model):
    from tfcflow.models.image_flow import ImageFlowModel

    image = isinstance(model, ImageFlowModel)
    cond_image = image and len(model.condition_shape) == 3
    if not image:
        x_shape, c_shape = tuple(model.event_shape), tuple(model.condition_shape)
    else:  # any size: only the channels are fixed
        x_shape = (None, None, model.event_shape[-1])
        c_shape = (None, None, model.condition_shape[-1]) if cond_image else tuple(model.condition_shape)
    x = tf.TensorSpec((None,) + x_shape, tf.uint8 if image else tf.float32, name="x")
    c = tf.TensorSpec((None,) + c_shape, tf.uint8 if cond_image else tf.float32, name="condition")
    return image, x, c


def _checked_num_samples(num_samples, max_samples: int):
    """``num_samples`` (an int32 scalar) once 1 <= num_samples <= max_samples (an in-graph check)."""
    from tfcflow import _checks

    return _checks.enforce(num_samples, (num_samples >= 1) & (num_samples <= max_samples),
                           f"num_samples must be in [1, {max_samples}]")


def _at_most_pixels(t, pixels, max_pixels: int, what: str):
    """``t`` once ``pixels`` (int64: H * W of one image) <= max_pixels (an in-graph check)."""
    from tfcflow import _checks

    return _checks.enforce(t, pixels <= max_pixels, f"{what} may have at most max_pixels = {max_pixels} pixels "
                                                    f"(height x width) per image; got", data=[pixels])


def serving_module(model, max_n: int = MAX_N, max_samples: int = MAX_SAMPLES,
                   max_pixels: int = MAX_PIXELS) -> tuple[tf.Module, dict]:
    """A ``tf.Module`` holding the model's variables and its signature functions."""
    image, x_spec, c_spec = _specs(model)
    temperature = tf.TensorSpec([], tf.float32, name="temperature")
    seed = tf.TensorSpec([], tf.int64, name="seed")
    n_spec = tf.TensorSpec([], tf.int32, name="n")

    def per_dim(x):
        if not image:
            return float(np.prod(model.event_shape)) * math.log(2.0)
        return tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32) * math.log(2.0)  # this request's H*W*C

    def check_x(x):
        if not image:
            return x
        hw = tf.cast(tf.shape(x)[1:3], tf.int64)
        return _at_most_pixels(x, hw[0] * hw[1], max_pixels, "x")

    def check_condition(c):
        """Image conditions: the samples' size (condition size x factor) within max_pixels."""
        if not (image and len(model.condition_shape) == 3):
            return c
        hw = tf.cast(tf.shape(c)[1:3], tf.int64) * model.factor
        return _at_most_pixels(c, hw[0] * hw[1], max_pixels, "samples (condition size x factor)")

    def to_output(samples):
        return tf.cast(tf.round(samples * 255.0), tf.uint8) if image else samples

    module = tf.Module()
    # The TF1 session loader that TF Serving (and saved_model_cli run) uses needs the variables
    # tracked by the exported object itself (Keras 3 variables wrap tf.Variables: track those).
    module.model_variables = [v.value for v in model.variables]

    @tf.function(input_signature=[x_spec, c_spec])
    def log_prob(x, condition):
        x = check_x(x)
        lp = model.log_prob(x, condition)
        return {"log_prob": lp, "bits_per_dim": -lp / per_dim(x)}

    @tf.function(input_signature=[c_spec, temperature, seed])
    def sample(condition, temperature, seed):
        condition = check_condition(condition)
        return {"samples": to_output(model.sample(condition, temperature=temperature, seed=seed))}

    @tf.function(input_signature=[c_spec, n_spec, temperature, seed])
    def best_of_n(condition, n, temperature, seed):
        condition = check_condition(condition)
        best, lp = model.best_of_n(condition, n, temperature=temperature, seed=seed, max_n=max_n)
        return {"samples": to_output(best), "log_prob": lp}

    @tf.function(input_signature=[c_spec, tf.TensorSpec([], tf.int32, name="num_samples"), temperature, seed])
    def sample_many(condition, num_samples, temperature, seed):
        num_samples = _checked_num_samples(num_samples, max_samples)
        condition = check_condition(condition)
        return {"samples": to_output(model.sample(condition, temperature=temperature, seed=seed,
                                                  num_samples=num_samples))}

    signatures = {"log_prob": log_prob}
    sized = image and len(model.condition_shape) == 1  # a class condition: the size is the request's choice
    if not sized or model.default_size is not None:
        signatures.update(serving_default=sample, sample=sample, best_of_n=best_of_n, sample_many=sample_many)
    if sized:
        signatures.update(_sized_signatures(model, c_spec, temperature, seed, n_spec, to_output, max_n, max_samples,
                                            max_pixels))
        signatures.setdefault("serving_default", signatures["sample_at_size"])
    for name, fn in signatures.items():
        if name != "serving_default":
            setattr(module, name, fn)
    if hasattr(model, "infer_condition"):
        @tf.function(input_signature=[x_spec])
        def infer_condition(x):
            c = model.infer_condition(x)
            k = c.shape[-1]
            # p(class k | x) under the relaxed-condition likelihood N(c~; e_k, diag(eps^2)) (eps: a
            # number, or one per dimension when learned)
            weight = 0.5 / tf.square(tf.cast(model.relaxation, c.dtype))
            dist = tf.reduce_sum(tf.square(c[:, None, :] - tf.eye(k)[None]) * weight, axis=-1)
            probs = tf.nn.softmax(-dist, axis=-1)
            return {"condition": c, "class_probabilities": probs, "label": tf.argmax(probs, axis=-1)}

        module.infer_condition = infer_condition
        signatures["infer_condition"] = infer_condition
    return module, signatures


def _sized_signatures(model, c_spec, temperature, seed, n_spec, to_output, max_n, max_samples, max_pixels) -> dict:
    """``sample``, ``best_of_n``, ``sample_many`` of a class-conditional image model with a ``size``
    input: ``int32 [2]`` (height, width) of the samples, checked in the graph (positive, divisible
    by 2^levels, at most ``max_pixels``) before any flow op."""
    from tfcflow import _checks

    size_spec = tf.TensorSpec([2], tf.int32, name="size")

    def checked(size):
        size = _checks.enforce(size, size > 0, "size (height, width) must be positive")
        pixels = tf.cast(size[0], tf.int64) * tf.cast(size[1], tf.int64)
        size = _at_most_pixels(size, pixels, max_pixels, "samples (size)")
        return size[0], size[1]

    @tf.function(input_signature=[c_spec, size_spec, temperature, seed])
    def sample_at_size(condition, size, temperature, seed):
        return {"samples": to_output(model.sample(condition, temperature=temperature, seed=seed, size=checked(size)))}

    @tf.function(input_signature=[c_spec, size_spec, n_spec, temperature, seed])
    def best_of_n_at_size(condition, size, n, temperature, seed):
        best, lp = model.best_of_n(condition, n, temperature=temperature, seed=seed, max_n=max_n, size=checked(size))
        return {"samples": to_output(best), "log_prob": lp}

    @tf.function(input_signature=[c_spec, size_spec, tf.TensorSpec([], tf.int32, name="num_samples"), temperature,
                                  seed])
    def sample_many_at_size(condition, size, num_samples, temperature, seed):
        return {"samples": to_output(model.sample(condition, temperature=temperature, seed=seed,
                                                  num_samples=_checked_num_samples(num_samples, max_samples),
                                                  size=checked(size)))}

    return dict(sample_at_size=sample_at_size, best_of_n_at_size=best_of_n_at_size,
                sample_many_at_size=sample_many_at_size)


def save(model, export_dir: str, version: Optional[int] = None, model_name: Optional[str] = None,
         max_n: int = MAX_N, use_ema: bool = True, max_samples: int = MAX_SAMPLES, max_pixels: int = MAX_PIXELS) -> str:
    """Exports ``model`` to ``export_dir/<model_name>/<version>/`` (TF Serving's layout) and returns
    that path. ``model_name`` defaults to the model's name; ``version`` to one more than the highest
    version already there. With ``use_ema`` (default) the optimizer's EMA weights are exported when
    the model has them. Existing versions are never overwritten. ``max_pixels``: the largest image
    (H * W) an image model's signatures accept (module docstring)."""
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
        module, signatures = serving_module(model, max_n, max_samples, max_pixels)
        tmp = path + ".tmp"
        tf.saved_model.save(module, tmp, signatures=signatures)
    os.replace(tmp, path)  # a half-written export never appears under a version number
    return path
