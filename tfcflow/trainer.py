"""Runs a training job from a validated config (``tfcflow train CONFIG``): data, model, the CAFLOW
recipe, strategy, checkpoints with resume, TensorBoard, final evaluation and a sample grid.

Resume: the job writes ``config.json`` and ``checkpoints/`` into its output folder. Started again
with the same command, it restores the latest checkpoint (weights, optimizer moments, EMA,
iteration counter, plateau state), skips the batches already consumed (the data order is fixed by
the seed) and continues; a config that differs in anything but ``config.RESUMABLE`` keys is
refused. Checkpoints are taken every ``train.steps_per_epoch`` steps. A learned base trained alone
first (``train.base_steps``) checkpoints itself in ``base_checkpoints/`` at the same interval, so a
kill during base training loses at most that many base steps.

Per-task evaluation: if the config file's folder holds ``evaluate.py`` with
``evaluate(model, config, context) -> dict``, its results are added to ``results.json``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Optional

import numpy as np

from tfcflow import config as config_lib

#: the run folder's subfolder where base training (train.base_steps) saves itself
BASE_CHECKPOINTS = "base_checkpoints"


def _tf():
    import tensorflow as tf
    return tf


class Job:
    """One training run; ``run()`` returns the results dict (also written to results.json)."""

    def __init__(self, cfg: dict, out_dir: str, config_path: Optional[str] = None):
        self.cfg = cfg
        self.out_dir = out_dir
        self.config_path = config_path
        self.data_cfg, self.train_cfg, self.eval_cfg = cfg["data"], cfg["train"], cfg["eval"]
        self.base_training = None  # what train.base_steps did in this process (results.json)

    # ---- setup ------------------------------------------------------------------------------------
    def _setup_runtime(self):
        import keras
        from tfcflow import distribute, optim

        tf = _tf()
        t = self.train_cfg
        if t["sub_batches"] > 1:  # thread pools: before TensorFlow runs anything
            from tfcflow import execution
            execution.configure_cpu_threads(t["sub_batches"])
        # The strategy first: MultiWorkerMirroredStrategy must exist before other TF ops.
        self.strategy = distribute.make_strategy(t["strategy"], tpu=t["tpu"])
        self.chief = distribute.is_chief() if t["strategy"] == "multi_worker" else True
        optim.set_precision(t["precision"])
        if t["deterministic"]:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(self.cfg["seed"])

    def data_dir(self) -> str:
        """The TFDS data_dir of a tfds-source run: data.data_dir (relative to the config file),
        else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
        from tfcflow.data.sources import tfds_data_dir
        return tfds_data_dir(config_lib.resolve_path(self.data_cfg["data_dir"], self.config_path))

    def saved_model_shapes(self) -> dict:
        """``{event_shape, condition_shape}`` of a run's model without its data pipelines: for runs
        saved before model.json recorded them (only the Gaussian-mixture and TFDS sources existed
        then). Reads the TFDS dataset's metadata, never its examples."""
        d = self.data_cfg
        if d["source"] == "gaussian_mixture":
            return dict(event_shape=[2], condition_shape=[8])
        if d["source"] != "tfds":
            raise ValueError(f"a {d['source']} run without model.json: runs of that source always write it, so "
                             f"this run folder is incomplete")
        from tfcflow.data import tasks
        try:
            info = tasks.dataset_info(d["dataset"], self.data_dir())
            condition = tasks.condition_shape(d["task"], info["image_shape"], d["factor"], info["num_classes"])
        except ValueError as e:
            raise config_lib.ConfigError(f"data: {e}") from None
        return dict(event_shape=list(info["image_shape"]), condition_shape=list(condition))

    def _setup_data(self):
        """Builds the run's data source (tfcflow.data.sources); its problems are ConfigErrors."""
        image_folder = self.data_cfg["source"] == "image_folder"
        self.data = build_source(self.cfg, self.config_path, size_multiple=self._size_multiple() if image_folder else 1,
                                 functions=self.simulator_functions)

    def _size_multiple(self) -> int:
        """Whole test images are cropped to a multiple of ``2**levels`` of the configured model."""
        import inspect

        m = self.cfg["model"]
        levels = m.get("levels", inspect.signature(config_lib.model_class(m["class"])).parameters["levels"].default)
        return 2 ** int(levels)

    def simulator_functions(self):
        """The run's ``(prior, simulator)`` functions (data.prior, data.simulator)."""
        from tfcflow.data import simulator as sim

        base = os.path.dirname(os.path.abspath(self.config_path)) if self.config_path else None
        functions = []
        space = self.prior_space()
        if space is not None:  # a TFP prior's spec
            functions.append(space.prior_function())
        for key in ("prior", "simulator") if space is None else ("simulator",):
            try:
                functions.append(sim.load_callable(self.data_cfg[key], base_dir=base))
            except ValueError as e:
                raise config_lib.ConfigError(f"data.{key}: {e}") from None
        return functions

    def prior_space(self):
        """The ``PriorSpace`` of a TFP prior given as a spec in data.prior, else None."""
        if not isinstance(self.data_cfg.get("prior"), dict):
            return None
        from tfcflow.inference.prior import PriorSpace, prior_from_spec
        return PriorSpace(prior_from_spec(self.data_cfg["prior"]))

    def context(self):
        """The ``RunContext`` that evaluation and the task's hook see (after the data is set up)."""
        from tfcflow.evaluation import RunContext
        return RunContext(self.cfg, self.out_dir, self.data, self.data_dir() if self.data_cfg["source"] == "tfds"
                          else None, chief=self.chief)

    @property
    def image_task(self) -> bool:
        return self.data_cfg["source"] in ("tfds", "image_folder")

    def execution(self):
        """The job's CPU execution choices (train.sub_batches, train.fused_steps, train.jit_sampling)."""
        return execution_of(self.train_cfg)

    def _build_model(self):
        """Builds the model; a constructor's ValueError becomes a ConfigError naming the
        ``model.<key>``. Writes nothing."""
        m = dict(self.cfg["model"])
        cls = config_lib.model_class(m.pop("class"))
        for key, value in self.data.shapes.items():
            m.setdefault(key, value)
        space = self.prior_space() if self.data_cfg.get("source") == "simulator" else None
        if space is not None and space.bounds is not None:
            m.setdefault("bounds", space.bounds)  # the prior's support, as NPE takes it
        with self.strategy.scope():
            try:
                self.model = cls(**m)
            except (ValueError, TypeError) as e:
                error = config_lib.model_error(e, m)
                if self.data_cfg["source"] == "tfds":
                    error = config_lib.ConfigError(f"{error} (dataset {self.data_cfg['dataset']!r})")
                elif self.data_cfg["source"] == "image_folder":
                    error = config_lib.ConfigError(f"{error} (data.patch_size {self.data_cfg['patch_size']})")
                raise error from None

    def _compile_model(self):
        """Trains the learned base first if asked (train.base_steps; it saves itself in the run
        folder), then compiles the model with the job's optimizer."""
        from tfcflow import optim

        t = self.train_cfg
        if t["base_steps"]:
            self._train_base()
        with self.strategy.scope():
            self.model.execution = self.execution()
            self.schedule = optim.WarmupStepDecay(t["learning_rate"], t["warmup_steps"], t["decay_gamma"],
                                                  t["decay_interval"], t["plateau_factor"])
            opt = optim.make_optimizer(self.schedule, ema=t["ema"], precision=t["precision"],
                                       fused=t["optimizer"] == "fused_adam")
            self.model.compile(optimizer=opt, clipnorm=t["clipnorm"], skip_nonfinite=t["nan_policy"] == "skip",
                               seed=self.cfg["seed"], jit_compile=t["jit_compile"])
            opt.build(self.model.trainable_variables)

    def _train_base(self):
        """train.base_steps: g trained alone (its own patch stream, seed + 1), then frozen, before
        the optimizer is built. A run that holds a checkpoint has g in it: only the freezing is redone.
        Before that, base training saves itself in ``base_checkpoints/`` every
        ``train.steps_per_epoch`` steps and a rerun continues it from there."""
        from tfcflow import base_training

        t = self.train_cfg
        if self._latest_checkpoint() is None:
            batch = t["base_batch_size"] or t["batch_size"]
            if self.data.patches is not None:
                data = self.data.patches(t["base_patch_size"] or self.data_cfg["patch_size"], batch,
                                         self.cfg["seed"] + 1)
            else:
                data = self.data.train.unbatch().batch(batch, drop_remainder=True)
            saved = self._latest_checkpoint(BASE_CHECKPOINTS)
            t0 = time.time()
            history = base_training.fit_base(self.model, data, t["base_steps"],
                                             t["base_learning_rate"] or t["learning_rate"],
                                             log_every=t["steps_per_epoch"], log=print if self.chief else None,
                                             checkpoint_dir=os.path.join(self.out_dir, BASE_CHECKPOINTS))
            # resumed_at: the base step this process started from (its checkpoint; 0 = from scratch)
            self.base_training = dict(steps=t["base_steps"], seconds=time.time() - t0, l1=history,
                                      resumed_at=int(saved.rsplit("-", 1)[1]) if saved else 0)
        base_training.freeze_base(self.model)

    def _latest_checkpoint(self, folder: str = "checkpoints") -> Optional[str]:
        """The latest checkpoint path in the run folder's ``folder`` (the flow's by default), or None
        before the first one."""
        return _tf().train.latest_checkpoint(os.path.join(self.out_dir, folder))

    def _check_out_dir(self):
        """Read-only checks of the output folder before anything is built: it is not a file, and a
        run already trained there (it holds a checkpoint) has a readable config that this one may
        resume. A folder without a checkpoint was never trained and may take another config."""
        if os.path.isfile(self.out_dir):
            raise config_lib.ConfigError(f"--out {self.out_dir} is a file, not a folder")
        path = os.path.join(self.out_dir, "config.json")
        if not os.path.exists(path):
            return
        try:
            with open(path) as f:
                saved = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise config_lib.ConfigError(f"{path} is not valid JSON ({e}); refusing to touch that run folder: "
                                         f"repair the file or use another --out folder") from None
        if self._latest_checkpoint() is None and self._latest_checkpoint(BASE_CHECKPOINTS) is None:
            return
        diffs = config_lib.resume_conflicts(saved, self.cfg)
        if diffs:
            raise config_lib.ConfigError(
                f"{self.out_dir} holds a run with a different config; refusing to resume it with: "
                + "; ".join(diffs) + ". Use another --out folder or the original config.")

    def _claim_out_dir(self):
        """Writes config.json and model.json (what `tfcflow export` needs to rebuild the model without
        the dataset), each atomically, once the model is built."""
        if not self.chief:
            return
        os.makedirs(self.out_dir, exist_ok=True)
        for name, content in (("config.json", self.cfg),
                              ("model.json", {"class": type(self.model).__name__, "config": self.model.get_config()})):
            path = os.path.join(self.out_dir, name)
            with open(path + ".tmp", "w") as f:
                json.dump(content, f, indent=1)
            os.replace(path + ".tmp", path)

    def _restore(self):
        from tfcflow.callbacks import restore_training_checkpoint, training_checkpoint

        tf = _tf()
        ckpt = training_checkpoint(self.model, self.schedule)
        ckpt_dir = os.path.join(self.out_dir, "checkpoints")
        if not self.chief:  # every worker saves (collective reads); non-chief ones into a scratch folder
            ckpt_dir = os.path.join(self.out_dir, f".worker_scratch_{os.getpid()}")
        self.manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=self.train_cfg["keep_checkpoints"])
        latest = self._latest_checkpoint()
        self.resumed_from = latest
        if latest:
            restore_training_checkpoint(ckpt, self.model, latest)
        return int(self.model.optimizer.iterations.numpy())

    # ---- training ---------------------------------------------------------------------------------
    def _callbacks(self):
        import functools

        import keras
        from tfcflow import evaluation
        from tfcflow.callbacks import Checkpointing, PlateauReduction, SampleGrid

        t = self.train_cfg
        self.checkpointing = Checkpointing(self.manager, every=t["steps_per_epoch"])
        callbacks = [self.checkpointing]
        if t["plateau_patience"]:
            callbacks.append(PlateauReduction(self.schedule, patience=t["plateau_patience"]))
        if self.chief:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(self.out_dir, "logs"), update_freq="epoch"))
        if t["sample_every"] and self.image_task:
            callbacks.append(SampleGrid(functools.partial(evaluation.sample_grid, context=self.context()),
                                        t["sample_every"], os.path.join(self.out_dir, "logs"),
                                        write=self.chief))
        return callbacks

    def _fit(self, start_step: int):
        t = self.train_cfg
        spe = t["steps_per_epoch"]
        epochs = -(-t["steps"] // spe)
        if start_step >= epochs * spe:
            return None
        return self.model.fit(self.data.train.skip(start_step), epochs=epochs, initial_epoch=start_step // spe,
                              steps_per_epoch=spe, callbacks=self._callbacks(), shuffle=False,
                              verbose=t["verbose"] if self.chief else 0)

    # ---- entry point --------------------------------------------------------------------------------
    def run(self) -> dict:
        from tfcflow.callbacks import TrainingDiverged

        t0 = time.time()
        self._check_out_dir()
        self._setup_runtime()
        self._setup_data()
        self._build_model()
        self._claim_out_dir()  # before base training writes into the folder
        self._compile_model()
        start = self._restore()
        history = self._fit(start)
        if self.checkpointing_diverged():
            raise TrainingDiverged(
                f"training diverged at step {self.checkpointing.diverged_at}: the loss is NaN or inf. The last good "
                f"checkpoint is {self.checkpointing.last_good!r} (kept; not overwritten). Lower train.learning_rate, "
                f"keep train.clipnorm, or set train.nan_policy='skip'.")
        train_seconds = time.time() - t0
        tf = _tf()
        results = dict(name=self.cfg["name"], steps=int(self.model.optimizer.iterations.numpy()),
                       resumed_from=self.resumed_from, parameters=int(self.model.count_params()),
                       weights_sha256=weights_fingerprint(self.model),
                       train_seconds=train_seconds, execution=dataclasses.asdict(self.model.execution),
                       threads=dict(intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
                                    inter_op=tf.config.threading.get_inter_op_parallelism_threads()),
                       history={k: [float(np.asarray(x).ravel()[0]) for x in v] for k, v in history.history.items()}
                       if history is not None else None, base_training=self.base_training)
        from tfcflow import evaluation
        hook = (os.path.join(os.path.dirname(os.path.abspath(self.config_path)), "evaluate.py")
                if self.config_path else None)
        results.update(evaluation.evaluate(self.model, self.context(),
                                           hook=hook if hook and os.path.exists(hook) else None))
        results["total_seconds"] = time.time() - t0
        if self.chief:
            with open(os.path.join(self.out_dir, "results.json"), "w") as f:
                json.dump(results, f, indent=1, default=str)
        else:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
        return results

    def checkpointing_diverged(self) -> bool:
        return getattr(self, "checkpointing", None) is not None and self.checkpointing.diverged_at is not None


def build_source(cfg: dict, config_path: Optional[str], size_multiple: int = 1, functions=None):
    """The config's data source built (tfcflow.data.sources): its paths resolved relative to the
    config file, its problems ConfigErrors naming the key."""
    from tfcflow.data import sources

    d = dict(cfg["data"])
    for key in ("data_dir", "folder", "prepare_mnist_from"):
        if key in d:
            d[key] = config_lib.resolve_path(d[key], config_path)
    request = sources.SourceRequest(d, seed=cfg["seed"], batch_size=cfg["train"]["batch_size"],
                                    eval_batch_size=cfg["eval"]["batch_size"], max_examples=cfg["eval"]["max_examples"],
                                    size_multiple=size_multiple, functions=functions)
    try:
        return sources.build(request)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None


def weights_fingerprint(model) -> str:
    """SHA-256 of all weights' bytes: equal fingerprints = bit-identical models."""
    import hashlib

    h = hashlib.sha256()
    for v in model.weights:
        h.update(np.ascontiguousarray(np.asarray(v.numpy())).tobytes())
    return h.hexdigest()


def run_config(run_dir: str) -> dict:
    """The config saved in a training run folder."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is not a tfcflow run folder: config.json is missing")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None


def saved_run_context(run_dir: str, max_examples=None, config_path: Optional[str] = None):
    """The ``RunContext`` of a finished run with its held-out data built (the first
    ``max_examples`` of a TFDS test split), for evaluation outside training; it never writes into
    the run folder (``chief=False``). Relative paths in the run's config are relative to
    ``config_path``'s folder (the task folder, where its evaluate.py lives)."""
    cfg = run_config(run_dir)
    if max_examples is not None:
        cfg["eval"]["max_examples"] = int(max_examples)
    job = Job(cfg, run_dir, config_path=config_path)
    job.chief = False  # never overwrite the run's own figures
    job._setup_data()
    return job.context()


def execution_of(train_cfg: dict):
    """The ``Execution`` a config's ``train`` section asks for; keys a run's saved config lacks
    (older runs) take their defaults, and runs older than train.sub_batches used
    train.parallel_chains."""
    from tfcflow.execution import Execution
    t = train_cfg
    return Execution(sub_batches=t.get("sub_batches", t.get("parallel_chains", 1)),
                     fused_steps=t.get("fused_steps", False), jit_sampling=t.get("jit_sampling", False))


def load_run(run_dir: str, use_ema: bool = True):
    """Rebuilds the model of a training run folder and restores its latest checkpoint (weights and,
    with ``use_ema``, the EMA weights swapped in). Returns the model."""
    from tfcflow import optim
    from tfcflow.callbacks import ema_swapped, restore_training_checkpoint, training_checkpoint

    tf = _tf()
    cfg = run_config(run_dir)
    if os.path.exists(os.path.join(run_dir, "model.json")):
        with open(os.path.join(run_dir, "model.json")) as f:
            spec = json.load(f)
    else:  # runs older than model.json: the shapes come from the config and the dataset's metadata
        m = dict(cfg["model"])
        spec = {"class": m.pop("class"), "config": {**Job(cfg, run_dir).saved_model_shapes(), **m}}
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no checkpoint")
    model = config_lib.model_class(spec["class"]).from_config(spec["config"])
    t = cfg["train"]
    if t.get("base_steps"):  # g was frozen before the optimizer was built: it has no EMA to swap in
        from tfcflow.base_training import freeze_base
        freeze_base(model)
    model.execution = execution_of(t)
    opt = optim.make_optimizer(optim.WarmupStepDecay(t["learning_rate"]), ema=t["ema"], precision="float32")
    model.compile(optimizer=opt)
    opt.build(model.trainable_variables)
    restore_training_checkpoint(training_checkpoint(model), model, latest, partial=True)
    if use_ema and t["ema"] is not None:
        with ema_swapped(model):
            ema_values = [v.numpy() for v in model.trainable_variables]
        for v, value in zip(model.trainable_variables, ema_values):
            v.assign(value)
    model.restored_from = latest
    return model


def train(config_path: str, out_dir: Optional[str] = None, overrides=()) -> dict:
    """Loads, validates and runs the config at ``config_path`` (output: ``out_dir`` or
    ``runs/<name>``)."""
    cfg = config_lib.load(config_path, overrides)
    out_dir = out_dir or os.path.join("runs", cfg["name"])
    return Job(cfg, out_dir, config_path).run()
