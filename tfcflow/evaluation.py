"""Evaluation of a training run: test metrics, the sample grid, posterior diagnostics and the
task's own ``evaluate.py`` hook, at the end of training (``tfcflow train``) or later on a saved run
(``tfcflow evaluate RUN``).

A task hook is a file ``evaluate.py`` next to the job's config with
``evaluate(model, config, context) -> dict``; ``context`` is a ``RunContext``: the run's config,
its folder, its held-out data and whether this process writes files. The results are added to
``results.json``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from typing import Optional

import numpy as np

from tfcflow.data.sources import DataSource


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What evaluation and task hooks see of a run.

    ``cfg``: the run's validated config; ``out_dir``: the run folder; ``data``: its built data
    source (held-out batches ``test_ds``, ``test_arrays`` of vector sources); ``data_dir``: the
    TFDS data_dir of a tfds run (else None); ``chief``: whether this process writes files (False
    for the non-chief workers of a multi-worker run, and when a saved run is evaluated: its own
    figures are kept).
    """

    cfg: dict
    out_dir: str
    data: DataSource
    data_dir: Optional[str] = None
    chief: bool = True

    @property
    def test_ds(self):
        return self.data.test

    @property
    def test_arrays(self):
        return self.data.test_arrays

    @property
    def shapes(self) -> dict:
        return self.data.shapes

    @property
    def image_task(self) -> bool:
        return self.cfg["data"]["source"] in ("tfds", "image_folder")

    def first_test_examples(self, n: int):
        """The first ``n`` held-out examples as numpy ``(targets, conditions)``."""
        xs, cs = [], []
        for x, c in self.test_ds:
            xs.append(x.numpy())
            cs.append(c.numpy())
            if sum(len(v) for v in xs) >= n:
                break
        return np.concatenate(xs)[:n], np.concatenate(cs)[:n]


def central_patches(context: RunContext, n: int):
    """Up to ``n`` ``(targets, conditions)`` of patch size: the central patch of each held-out
    image of an image folder (whole test images differ in size, the grid needs one)."""
    from tfcflow.data import tasks

    d = context.cfg["data"]
    p = d["patch_size"]
    xs, cs = [], []
    for index, (x, _) in enumerate(context.test_ds.take(n)):
        x = x[0]
        top, left = (x.shape[0] - p) // 2, (x.shape[1] - p) // 2
        patch = x[top:top + p, left:left + p]
        c = tasks.make_condition(d["task"], patch, factor=d["factor"], downsample_method=d["downsample"],
                                 mask=d["mask"], mask_seed=np.array([context.cfg["seed"], index], np.int32))
        xs.append(patch.numpy())
        cs.append(c.numpy())
    return np.stack(xs), np.stack(cs)


def fixed_conditions(context: RunContext):
    """The sample grid's ``(targets or None, conditions)``: one per class of a class-conditional
    task, else the first held-out examples (central patches of an image folder)."""
    d, n = context.cfg["data"], context.cfg["eval"]["num_conditions"]
    if d["task"] == "class_conditional":
        k = context.shapes["condition_shape"][0]
        return None, np.eye(k, dtype=np.float32)[np.arange(n) % k]
    if d["source"] == "image_folder":
        return central_patches(context, n)
    return context.first_test_examples(n)


def sample_grid(model, context: RunContext) -> np.ndarray:
    """Rows: [condition, ground truth, samples...] for fixed test conditions (images in [0, 1])."""
    from tfcflow.callbacks import image_grid
    from tfcflow.data.tasks import condition_preview

    e = context.cfg["eval"]
    targets, conds = fixed_conditions(context)
    k = e["samples_per_condition"]
    samples = model.sample(np.repeat(conds, k, axis=0), temperature=e["temperature"],
                           seed=context.cfg["seed"]).numpy()
    n, shape = len(conds), tuple(context.shapes["event_shape"])
    samples = samples.reshape((n, k) + shape)
    preview = condition_preview(context.cfg["data"]["task"], conds, shape)
    rows = []
    for i in range(n):
        row = [] if preview is None else [preview[i], targets[i].astype(np.float32) / 255.0]
        rows.extend(row + list(samples[i]))
    cols = k + (0 if preview is None else 2)
    return image_grid(np.stack(rows), cols)


def posterior_diagnostics(model, context: RunContext, folder: str) -> dict:
    """Calibration of the posterior on the first ``eval.diagnostics_simulations`` held-out
    simulations (SBC ranks and their ECDF band, coverage, z-scores; tfcflow.diagnostics), with
    figures (rank ECDF, coverage, a pair plot of the first simulation's posterior) in ``folder``."""
    from tfcflow import diagnostics

    e, seed = context.cfg["eval"], context.cfg["seed"]
    x, y = context.test_arrays
    n = min(e["diagnostics_simulations"], len(x))
    prior_var = np.var(x, axis=0)
    res = diagnostics.diagnose(model, y[:n], x[:n], num_samples=e["posterior_samples"], seed=seed,
                               prior_variance=prior_var)
    os.makedirs(folder, exist_ok=True)
    ranks = np.asarray(res["ranks"])
    draws = model.sample(y[:1], num_samples=max(e["posterior_samples"], 1000), seed=seed).numpy()[0]
    res["figures"] = [
        diagnostics.plot_rank_ecdf(ranks, e["posterior_samples"], os.path.join(folder, "rank_ecdf.png")),
        diagnostics.plot_coverage(np.asarray(res["coverage"]), np.asarray(res["levels"]),
                                  os.path.join(folder, "coverage.png"), n_sims=n),
        diagnostics.plot_pair(draws, x[0], os.path.join(folder, "posterior_pairs.png")),
    ]
    res.pop("ranks")  # per-simulation values: in the figure, not in results.json
    with open(os.path.join(folder, "diagnostics.json"), "w") as f:
        json.dump(res, f, indent=1)
    return {k: v for k, v in res.items() if k in ("calibration_error", "mean_z_score", "mean_contraction",
                                                    "figures", "n_sims", "num_samples")} | {
        "sbc_passed": res["sbc"].get("passed")}


def _held_out_images(context: RunContext, n: int):
    """Up to ``n`` held-out ``(target, condition)`` pairs, one image each (whole images of an
    image folder, whatever their sizes)."""
    pairs = []
    for x, c in context.test_ds:
        for i in range(len(x)):
            pairs.append((x[i].numpy(), c[i].numpy()))
            if len(pairs) >= n:
                return pairs
    return pairs


def consistency(task: str, samples: np.ndarray, target: np.ndarray, condition: np.ndarray, *, factor: int = 1,
                downsample_method: str = "area") -> np.ndarray:
    """``[N]`` PSNR (dB) of each sample against what the condition says about it: its low-resolution
    input (super-resolution), its known pixels (inpainting), its luminance (colorization)."""
    from tfcflow import diagnostics

    if task == "super_resolution":
        return diagnostics.lr_consistency(samples, condition, factor, downsample_method)
    if task == "inpainting":
        return diagnostics.known_consistency(samples, target, 1.0 - (condition[..., -1:] == 255))
    if task == "colorization":
        return diagnostics.luma_consistency(samples, condition)
    raise ValueError(f"consistency: the {task!r} task's condition is not an image")


def sample_diagnostics(model, context: RunContext, num_images: int, folder: Optional[str] = None) -> dict:
    """Consistency with the input, diversity and per-pixel calibration (tfcflow.diagnostics,
    image_samples.py) of 19 samples of each of the first ``num_images`` held-out images, at the
    config's ``eval.temperature``; one figure per image in ``folder`` if given. Returns the means
    over the images: ``consistency_db`` (each image's mean over its samples), ``diversity``,
    ``coverage_90`` and ``coverage_50`` (a calibrated model: 0.9 and 0.5)."""
    from tfcflow import diagnostics
    from tfcflow.diagnostics.image_samples import CALIBRATION_SAMPLES

    d, e = context.cfg["data"], context.cfg["eval"]
    rows = {"consistency_db": [], "diversity": [], "coverage_90": [], "coverage_50": []}
    figures = []
    for index, (target, condition) in enumerate(_held_out_images(context, num_images)):
        samples = model.sample(np.repeat(condition[None], CALIBRATION_SAMPLES, axis=0), temperature=e["temperature"],
                               seed=context.cfg["seed"] + index).numpy()
        rows["consistency_db"].append(float(np.mean(consistency(
            d["task"], samples, target, condition, factor=d["factor"], downsample_method=d["downsample"]))))
        rows["diversity"].append(diagnostics.diversity(samples)["mean"])
        cal = diagnostics.calibration(samples, target)
        rows["coverage_90"].append(cal[0.9]["coverage"])
        rows["coverage_50"].append(cal[0.5]["coverage"])
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
            figures.append(diagnostics.plot_image_diagnostics(
                samples, target, os.path.join(folder, f"image_{index}.png"),
                title=f"held-out image {index}: consistency {rows['consistency_db'][-1]:.1f} dB"))
    if not rows["diversity"]:
        raise ValueError("sample diagnostics: the run has no held-out images")
    out = {k: float(np.mean(v)) for k, v in rows.items()}
    out.update(images=len(rows["diversity"]), samples_per_image=CALIBRATION_SAMPLES)
    if figures:
        out["figures"] = figures
    return out


def test_metrics(model, context: RunContext) -> dict:
    """``{"test_<metric>": float}``: Keras ``evaluate`` of the model on the held-out batches."""
    res = model.evaluate(context.test_ds, verbose=0, return_dict=True)
    return {f"test_{k}": float(np.asarray(v).ravel()[0]) for k, v in res.items()}


def evaluate(model, context: RunContext, hook: Optional[str] = None) -> dict:
    """``test_<metric>`` of the held-out data, the sample grid (image tasks: ``samples.png``),
    the diagnostics of a simulator run (``diagnostics/``) and the hook's results. Files are written
    only by the chief."""
    from tfcflow.images import save_png

    results = test_metrics(model, context)
    if context.image_task and context.chief:
        results["sample_grid"] = save_png(sample_grid(model, context), os.path.join(context.out_dir, "samples.png"),
                                         overwrite=True)
    if context.cfg["data"]["source"] == "simulator" and context.chief:
        results["diagnostics"] = posterior_diagnostics(model, context, os.path.join(context.out_dir, "diagnostics"))
    if hook:
        results.update(load_hook(hook).evaluate(model, context.cfg, context))
    return results


def evaluate_run(run_dir: str, use_ema: bool = True, max_examples=None, hook: Optional[str] = None,
                 sample_images: int = 0) -> dict:
    """Test metrics of a saved run's latest checkpoint (``tfcflow evaluate``), with its EMA
    weights (default) or the raw ones; the diagnostics of a simulator run (written to
    ``RUN/diagnostics``), the sample diagnostics of ``sample_images`` held-out images of an image
    task (``sample_diagnostics``; figures in ``RUN/sample_diagnostics``) and a task's
    ``evaluate.py`` hook if given. The run's other files are kept."""
    from tfcflow.trainer import load_run, saved_run_context

    context = saved_run_context(run_dir, max_examples, config_path=hook)
    model = load_run(run_dir, use_ema=use_ema)
    out = test_metrics(model, context)
    out.update(run=run_dir, checkpoint=model.restored_from, ema=use_ema and context.cfg["train"]["ema"] is not None)
    if context.cfg["data"]["source"] == "simulator":  # vector posteriors: calibration figures in RUN/diagnostics
        out["diagnostics"] = posterior_diagnostics(model, context, os.path.join(run_dir, "diagnostics"))
    if sample_images:
        if not context.image_task or context.cfg["data"]["task"] == "class_conditional":
            raise ValueError("sample diagnostics compare samples with an image condition: this run's task has none")
        out["sample_diagnostics"] = sample_diagnostics(model, context, sample_images,
                                                       os.path.join(run_dir, "sample_diagnostics"))
    if hook:
        out.update(load_hook(hook).evaluate(model, context.cfg, context))
    return out


def load_hook(path: str):
    """The module of a task's ``evaluate.py``."""
    spec = importlib.util.spec_from_file_location("tfcflow_task_evaluate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
