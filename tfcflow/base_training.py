"""Training a learned residual base alone, before the flow (``train.base_steps`` in a job config).

An image model with ``residual="learned"`` models ``x - (up(c) + g(c))``; g is an ordinary
regression network trained by the L1 loss ``model.base_loss``. Trained jointly with the flow
(the default) g gets one update per flow step, on the flow's patches. ``fit_base`` trains g alone
first: its steps cost a fraction of a flow step (g runs at the condition's resolution, with no
flow), and it may use larger patches than the flow (more context for g at the same cost per
pixel). ``freeze_base`` then fixes g, so the flow learns the residual of one fixed base and the
objective loses the L1 term (SRFlow likewise starts from a pretrained RRDB encoder).

The order in a job: build the model, ``fit_base`` (only when the flow has no checkpoint yet),
``freeze_base``, then compile and fit the flow. Freezing before ``compile`` matters: an optimizer
built with g's variables would also keep an EMA of them and write that EMA over g at the end of
``fit``.

With a ``checkpoint_dir``, base training survives a kill: g, its optimizer and the step are saved
at the end of every block of ``log_every`` steps (and the L1 history beside them), and a later call
with the same folder restores them, skips the batches already used and trains only the rest.
"""
from __future__ import annotations

import json
import os
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


def _history_path(folder: str, step: int) -> str:
    return os.path.join(folder, f"l1_history-{step}.json")


def fit_base(model, dataset: tf.data.Dataset, steps: int, learning_rate: float = 1e-3, *,
             log_every: int = 500, log: Optional[Callable[[str], None]] = print,
             checkpoint_dir: Optional[str] = None) -> list[float]:
    """Trains the learned base g of ``model`` alone for ``steps`` batches of ``dataset``.

    Adam with a cosine decay from ``learning_rate`` to 0 over ``steps``; the loss is the mean
    absolute error of the base per pixel (``model.base_loss`` / pixels, images in [0, 1] units).
    Only g's variables change.

    Args:
      model: a ``ConditionalGlow`` / ``CAFlow`` with ``residual="learned"``.
      dataset: ``(x [b, H, W, C], condition)`` batches, as ``fit`` takes them (at least ``steps``).
      steps: number of updates (>= 1).
      log_every: report the mean loss every this many steps through ``log`` (None: silent).
      checkpoint_dir: if given, where base training saves itself after every block and resumes
        from (see the module docstring); the dataset must be the same seeded stream each time, so
        that skipping the used batches continues it exactly.

    Returns:
      The mean L1 of each block of ``log_every`` steps (the last block may be shorter), including
      the blocks of an earlier, interrupted call.
    """
    g = _upsampler(model)
    if int(steps) < 1:
        raise ValueError(f"fit_base needs steps >= 1, got {steps}")
    if not g.trainable:
        raise ValueError("the learned base is frozen (upsampler.trainable is False); nothing to train")
    steps = int(steps)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))
    variables = g.trainable_variables
    optimizer.build(variables)
    history, done = [], 0
    save = None
    if checkpoint_dir is not None:
        ckpt = tf.train.Checkpoint(g=g, optimizer=optimizer)
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=1)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            done = int(optimizer.iterations.numpy())
            if done > steps:
                raise ValueError(f"{checkpoint_dir} holds base training at step {done}, past the {steps} asked for")
            with open(_history_path(checkpoint_dir, done)) as f:
                history = json.load(f)
            if log:
                log(f"base training resumed at step {done}/{steps} from {manager.latest_checkpoint}")
            dataset = dataset.skip(done)

        def save():
            # the history of step n first, then checkpoint n, then older histories go: a kill at
            # any point leaves the latest checkpoint with its own history
            n = int(optimizer.iterations.numpy())
            path = _history_path(checkpoint_dir, n)
            os.makedirs(checkpoint_dir, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                json.dump(history, f)
            os.replace(path + ".tmp", path)
            manager.save(checkpoint_number=n)
            for name in os.listdir(checkpoint_dir):
                if name.startswith("l1_history-") and name.endswith(".json") and name != os.path.basename(path):
                    os.remove(os.path.join(checkpoint_dir, name))

    @tf.function
    def step(x, condition):
        with tf.GradientTape() as tape:
            per_image = model.base_loss(x, condition)
            pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
            loss = tf.reduce_mean(per_image) / pixels
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    block, t0 = [], time.time()
    for x, condition in dataset.take(steps - done):
        block.append(float(step(x, condition)))
        done += 1
        if len(block) == (log_every or steps) or done == steps:
            history.append(sum(block) / len(block))
            block = []
            if save is not None:
                save()
            if log and log_every:
                log(f"base step {done}/{steps}: L1 {history[-1]:.5f} ({time.time() - t0:.0f} s)")
    if done < steps:
        raise ValueError(f"the dataset ended after {done} of the {steps} base steps")
    return history


def freeze_base(model) -> None:
    """Fixes the learned base g: it is no longer trainable, and the objective drops its L1 term."""
    _upsampler(model).trainable = False
