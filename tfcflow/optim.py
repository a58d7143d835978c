"""The CAFLOW training recipe (Batzolis et al. 2021, Appendix B): warmup, step decay, one plateau
reduction, EMA of the weights, and the optimizer / mixed-precision setup.

    lr(t) = peak * t / warmup                                   t <  warmup
    lr(t) = peak * gamma^floor((t - warmup) / interval) * r(t)   t >= warmup
    r(t)  = plateau_factor after the plateau reduction (at most one), else 1

The paper uses PyTorch's StepLR with gamma = 0.999 without giving its step size; applied every
iteration over ~70K iterations that would shrink the rate by e^-70, so the step interval is a
parameter here (default 100 iterations: x0.5 after ~70K).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfcflow import _checks, _compat

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@keras.saving.register_keras_serializable(package="tfcflow")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then exponential step decay, times an optional one-off plateau reduction.

    Args:
      peak: learning rate reached at the end of the warmup.
      warmup_steps: linear warmup from 0 (paper: 500).
      gamma: decay factor per ``interval`` steps after the warmup (paper: 0.999).
      interval: steps per decay factor.
      plateau_factor: multiplier applied from ``plateau_step`` on (paper: 0.1).
      plateau_step: step of the plateau reduction, -1 for none; ``reduce_on_plateau(step)`` sets it.
    """

    def __init__(self, peak: float, warmup_steps: int = 500, gamma: float = 0.999, interval: int = 100,
                 plateau_factor: float = 0.1, plateau_step: int = -1):
        self.peak = _checks.check_positive(peak, "learning_rate")
        self.warmup_steps = int(warmup_steps)
        self.gamma = float(gamma)
        self.interval = _checks.check_positive_int(interval, "decay interval")
        self.plateau_factor = float(plateau_factor)
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        # A variable so that a checkpoint (and a callback in graph or eager) can hold / change it.
        self.plateau_step = tf.Variable(int(plateau_step), dtype=tf.int64, trainable=False,
                                        name="plateau_step")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        warmup_lr = self.peak * tf.minimum(step / warm, 1.0)
        decays = tf.floor(tf.maximum(step - self.warmup_steps, 0.0) / self.interval)
        lr = warmup_lr * tf.pow(self.gamma, decays)
        plateau = tf.cast(self.plateau_step, tf.float32)
        reduced = (self.plateau_step >= 0) & (step >= plateau)
        return tf.where(reduced, lr * self.plateau_factor, lr)

    def reduce_on_plateau(self, step: int) -> bool:
        """Applies the (single) plateau reduction from ``step`` on; False if already applied."""
        if int(self.plateau_step.numpy()) >= 0:
            return False
        self.plateau_step.assign(int(step))
        return True

    def get_config(self):
        return dict(peak=self.peak, warmup_steps=self.warmup_steps, gamma=self.gamma, interval=self.interval,
                    plateau_factor=self.plateau_factor, plateau_step=int(self.plateau_step.numpy()))


@keras.saving.register_keras_serializable(package="tfcflow")
class FusedAdam(keras.optimizers.Adam):
    """Keras Adam whose per-variable update is TensorFlow's one fused kernel (``ResourceApplyAdam``)
    instead of ~15 small ops (same formula: Keras' Adam, epsilon outside the bias correction).

    Why: a flow has hundreds of small variables (e.g. 268 in the benchmark Glow), and on CPU each
    small op costs more to dispatch than to compute. ``amsgrad=True`` uses Keras' update.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        # the backing tf.Variables; under tf.distribute their `.handle` is this replica's copy
        # (update() calls this once per device)
        m, v = _compat.adam_slots(self, variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


def set_precision(precision: str) -> None:
    """Sets Keras's global dtype policy. Call it BEFORE building a model: the networks then run in
    the mixed policy while tfcflow keeps flows, log-dets and priors in float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    keras.mixed_precision.set_global_policy(precision)


def make_optimizer(schedule, ema: float | None = 0.999, precision: str = "float32",
                   beta_1: float = 0.9, beta_2: float = 0.999, fused: bool = False) -> keras.optimizers.Optimizer:
    """Adam (``fused``: ``FusedAdam``, the same update in one kernel per variable) on ``schedule``
    with EMA of the weights (``ema`` momentum, None to disable), wrapped in a LossScaleOptimizer for
    float16. Clip with ``model.compile(clipnorm=...)``, not here."""
    if ema is not None and not 0.0 < ema < 1.0:
        raise ValueError(f"ema must be in (0, 1) or None, got {ema}")
    adam = FusedAdam if fused else keras.optimizers.Adam
    opt = adam(learning_rate=schedule, beta_1=beta_1, beta_2=beta_2,
               use_ema=ema is not None, ema_momentum=ema if ema is not None else 0.99)
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt
