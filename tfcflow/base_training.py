"""Training a learned residual base alone, before the flow (``train.base_steps`` in a job config).

An image model with ``residual="learned"`` models ``x - (up(c) + g(c))``; g is an ordinary
regression network trained by the L1 loss ``model.base_loss``. Trained jointly with the flow
(the default) g gets one update per flow step, on the flow's patches. ``fit_base`` trains g alone
first: its steps cost a fraction of a flow step (g runs at the condition's resolution, with no
flow), and it may use larger patches than the flow (more context for g at the same cost per
pixel). ``freeze_base`` then fixes g, so the flow learns the residual of one fixed base and the
objective loses the L1 term (SRFlow likewise starts from a pretrained RRDB encoder).

The order in a job: build the model, ``fit_base`` (only when no checkpoint exists), ``freeze_base``,
then compile and fit the flow. Freezing before ``compile`` matters: an optimizer built with g's
variables would also keep an EMA of them and write that EMA over g at the end of ``fit``.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import keras
import tensorflow as tf


def _upsampler(model):
    g = getattr(model, "upsampler", None)
    if g is None:
        raise ValueError(f"training the base alone needs an image model with residual='learned', got "
                         f"{type(model).__name__} with residual={getattr(model, 'residual', None)!r}")
    return g


def fit_base(model, dataset: tf.data.Dataset, steps: int, learning_rate: float = 1e-3, *,
             log_every: int = 500, log: Optional[Callable[[str], None]] = print) -> list[float]:
    """Trains the learned base g of ``model`` alone for ``steps`` batches of ``dataset``.

    Adam with a cosine decay from ``learning_rate`` to 0 over ``steps``; the loss is the mean
    absolute error of the base per pixel (``model.base_loss`` / pixels, images in [0, 1] units).
    Only g's variables change.

    Args:
      model: a ``ConditionalGlow`` / ``CAFlow`` with ``residual="learned"``.
      dataset: ``(x [b, H, W, C], condition)`` batches, as ``fit`` takes them (at least ``steps``).
      steps: number of updates (>= 1).
      log_every: report the mean loss every this many steps through ``log`` (None: silent).

    Returns:
      The mean L1 of each block of ``log_every`` steps (the last block may be shorter).
    """
    g = _upsampler(model)
    if int(steps) < 1:
        raise ValueError(f"fit_base needs steps >= 1, got {steps}")
    if not g.trainable:
        raise ValueError("the learned base is frozen (upsampler.trainable is False); nothing to train")
    steps = int(steps)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))
    variables = g.trainable_variables

    @tf.function
    def step(x, condition):
        with tf.GradientTape() as tape:
            per_image = model.base_loss(x, condition)
            pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
            loss = tf.reduce_mean(per_image) / pixels
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    history, block, done, t0 = [], [], 0, time.time()
    for x, condition in dataset.take(steps):
        block.append(float(step(x, condition)))
        done += 1
        if len(block) == (log_every or steps) or done == steps:
            history.append(sum(block) / len(block))
            block = []
            if log and log_every:
                log(f"base step {done}/{steps}: L1 {history[-1]:.5f} ({time.time() - t0:.0f} s)")
    if done < steps:
        raise ValueError(f"the dataset ended after {done} of the {steps} base steps")
    return history


def freeze_base(model) -> None:
    """Fixes the learned base g: it is no longer trainable, and the objective drops its L1 term."""
    _upsampler(model).trainable = False
