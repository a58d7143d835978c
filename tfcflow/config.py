"""Training configurations: JSON (or YAML, if PyYAML is installed) files validated up front.

A config has four sections plus ``name`` and ``seed``; every key and its default is in
``DEFAULTS``. Unknown keys, wrong types and bad choices fail before anything is built, naming the
key. ``model`` holds the model ``class`` and its constructor arguments (checked against the
constructor); the data shapes (``event_shape`` and ``condition_shape``)
are filled in from the data unless given.
"""
from __future__ import annotations

import collections.abc
import copy
import difflib
import inspect
import json
import os
import re
import typing
from typing import Any, Iterable, Optional

from tfcflow.data.options import FLIPS, check_scales
from tfcflow.data.sources import SOURCES

DEFAULTS: dict = {
    "name": "run",
    "seed": 0,
    "data": {
        "source": "tfds",            # "tfds" | "image_folder" | "gaussian_mixture" | "simulator"
        # tfds
        "dataset": "mnist",
        "data_dir": None,            # default: $TFDS_DATA_DIR or ~/tensorflow_datasets
        "prepare_mnist_from": None,  # folder of MNIST IDX files: prepare the dataset offline if missing
        "prepare_skimage_patches": False,  # create `dataset` from scikit-image photos if missing
        "train_split": "train",
        "test_split": "test",
        "task": "super_resolution",  # tfcflow.data.tasks.TASKS
        "factor": 4,
        "downsample": "area",
        "mask": "central",
        "shuffle_buffer": 10000,
        # image_folder (tfcflow.data.image_folder): random patches of a folder of PNG/JPEG files for
        # training, the held-out files evaluated whole (folder/train + folder/test, or test_fraction)
        "folder": None,              # path (relative to the config file)
        "prepare_photos": None,      # "skimage" | "bundled": write that photo set into `folder` if it is missing
        "patch_size": 32,
        "flips": "horizontal",       # "none" | "horizontal" | "both" | "dihedral" (also transposed)
        "scales": None,              # [min, max] in (0, 1]: patches of the image downscaled by a random factor
        "min_patch_std": 0.0,        # image folders: patches flatter than this (8-bit std) are drawn again
        "test_fraction": 0.1,
        "split_seed": 0,
        # gaussian_mixture
        "train_size": 1600000,
        "test_size": 10000,
        "sigma": 0.2,
        # simulator (tfcflow.data.simulator): prior(n, rng) -> x [n, D], simulator(x, rng) -> y [n, ...]
        "prior": None,               # "package.module:function" or "file.py:function" (relative to the config),
                                     # or a TFP prior's spec {"class": "Independent", "parameters": {...}}
                                     # (tfcflow/inference/prior.py; its support becomes model.bounds)
        "simulator": None,
        "simulations": 10000,        # the simulation budget, simulated once; null = fresh simulations every batch
        "test_simulations": 1000,    # held-out simulations (another seed): test NLL and the diagnostics
        "on_nonfinite": "raise",     # a simulation with NaN/inf: "raise" (naming it) | "drop"
    },
    "model": {"class": "ConditionalGlow"},
    "train": {
        "steps": 1000,
        "batch_size": 64,
        "steps_per_epoch": 200,      # logging / checkpoint / resume interval
        "learning_rate": 1e-3,
        "warmup_steps": 500,
        "decay_gamma": 0.999,
        "decay_interval": 100,
        "plateau_patience": None,    # epochs without improvement before the one x0.1 reduction
        "plateau_factor": 0.1,
        "ema": 0.999,                # None disables EMA
        "clipnorm": 1.0,             # None disables clipping
        "precision": "float32",
        "strategy": "default",
        "tpu": "",
        "jit_compile": False,
        "optimizer": "adam",         # "adam" (Keras) | "fused_adam" (the same update, one kernel per variable)
        # CPU execution (tfcflow/execution.py): not part of the model, may change on resume
        "sub_batches": 1,            # >1: the batch as that many sub-batches, one per CPU core
        "fused_steps": False,        # run ActNorm -> 1x1 conv -> coupling as one FusedStep
        "jit_sampling": False,       # vector models: sample(num_samples=N) as XLA-compiled passes (evaluate's draws)
        "keep_checkpoints": 3,
        "sample_every": None,        # steps between TensorBoard sample grids (images only)
        "nan_policy": "stop",        # "stop" | "skip"
        "verbose": "auto",
        "deterministic": False,      # tf.config.experimental.enable_op_determinism()
        # residual="learned" models: train the base g alone first, then freeze it (base_training.py)
        "base_steps": 0,             # 0: g trains jointly with the flow (its L1 added to the objective)
        "base_patch_size": None,     # image_folder: g's patch size (None: data.patch_size)
        "base_batch_size": None,     # None: train.batch_size
        "base_learning_rate": None,  # cosine-decayed from this to 0 (None: train.learning_rate)
    },
    "eval": {
        "batch_size": 256,
        "max_examples": None,        # cap the test set (None = all)
        "num_conditions": 8,         # rows of the final sample grid
        "samples_per_condition": 6,
        "temperature": 0.8,
        # simulator runs: posterior diagnostics on the first test simulations (tfcflow.diagnostics)
        "diagnostics_simulations": 200,
        "posterior_samples": 500,    # posterior draws per test simulation
    },
}

CHOICES = {
    ("data", "source"): tuple(SOURCES),
    ("data", "flips"): FLIPS,
    ("data", "prepare_photos"): (None, "skimage", "bundled"),
    ("data", "on_nonfinite"): ("raise", "drop"),
    ("data", "task"): ("super_resolution", "inpainting", "colorization", "class_conditional"),
    ("data", "downsample"): ("area", "bicubic"),
    ("data", "mask"): ("central", "random"),
    ("train", "precision"): ("float32", "mixed_float16", "mixed_bfloat16"),
    ("train", "strategy"): ("default", "one_device", "mirrored", "multi_worker", "tpu"),
    ("train", "nan_policy"): ("stop", "skip"),
    ("train", "optimizer"): ("adam", "fused_adam"),
    ("train", "verbose"): ("auto", 0, 1, 2),
}

# Keys that may change between a run and its resume (they do not change what was trained so far).
RESUMABLE = {("train", "steps"), ("train", "sample_every"), ("train", "verbose"), ("train", "plateau_patience"),
             ("train", "sub_batches"), ("train", "fused_steps"), ("train", "jit_sampling"),
             ("eval", "batch_size"), ("eval", "max_examples"), ("eval", "num_conditions"),
             ("eval", "samples_per_condition"), ("eval", "temperature"),
             ("eval", "diagnostics_simulations"), ("eval", "posterior_samples")}

MODEL_CLASSES = ("ConditionalRealNVP", "RelaxedConditionFlow", "ConditionalGlow", "CAFlow")


class ConfigError(ValueError):
    """A configuration problem, named by its dotted key."""


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(path: str, value: Any, default: Any) -> None:
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{path}: expected {type(default).__name__}, got {value!r}")


def _merge(section: str, user: dict, defaults: dict) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in user.items():
        if key not in defaults:
            raise ConfigError(f"unknown key {section}.{key}{_suggest(key, defaults)}; known keys: {sorted(defaults)}")
        choices = CHOICES.get((section, key))
        if not choices:
            _check_value(f"{section}.{key}", value, defaults[key])
        elif value not in choices or isinstance(value, bool):
            raise ConfigError(f"{section}.{key} must be one of {choices}, got {value!r}")
        out[key] = value
    return out


def validate(user: dict) -> dict:
    """Merges ``user`` into the defaults and checks every key (see module docstring)."""
    if not isinstance(user, dict):
        raise ConfigError(f"a config is a mapping of sections, got {type(user).__name__}")
    top = {"name", "seed", "data", "model", "train", "eval"}
    for key in user:
        if key not in top:
            raise ConfigError(f"unknown section {key!r}{_suggest(key, top)}; sections: {sorted(top)}")
    cfg = {"name": user.get("name", DEFAULTS["name"]), "seed": user.get("seed", DEFAULTS["seed"])}
    _check_value("name", cfg["name"], "")
    _check_value("seed", cfg["seed"], 0)
    for section in ("data", "train", "eval"):
        value = user.get(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"section {section!r} must be a mapping, got {value!r}")
        cfg[section] = _merge(section, value, DEFAULTS[section])
    cfg["model"] = validate_model(user.get("model", DEFAULTS["model"]))
    _check_ranges(cfg)
    source = cfg["data"]["source"]
    if source in ("gaussian_mixture", "simulator") and cfg["model"]["class"] not in MODEL_CLASSES[:2]:
        raise ConfigError(f"data.source {source!r} needs a vector model {MODEL_CLASSES[:2]}, "
                          f"got model.class {cfg['model']['class']!r}")
    if source == "simulator":
        if isinstance(cfg["data"]["prior"], dict):
            from tfcflow.inference.prior import PriorSpace, prior_from_spec
            try:
                PriorSpace(prior_from_spec(cfg["data"]["prior"]))
            except (ValueError, TypeError) as e:
                raise ConfigError(f"data.prior: {e}") from None
        for key in ("prior", "simulator") if not isinstance(cfg["data"]["prior"], dict) else ("simulator",):
            if not isinstance(cfg["data"][key], str) or not cfg["data"][key]:
                raise ConfigError(f"data.{key}: data.source 'simulator' needs the dotted path of a function "
                                  f"(e.g. 'tfcflow.data.sbi_tasks:two_moons_{key}'), got {cfg['data'][key]!r}")
    if source == "image_folder":
        if not isinstance(cfg["data"]["folder"], str) or not cfg["data"]["folder"]:
            raise ConfigError(f"data.folder: data.source 'image_folder' needs the path of a folder of images, "
                              f"got {cfg['data']['folder']!r}")
        if cfg["data"]["task"] == "class_conditional":
            raise ConfigError("data.task: an image folder serves 'super_resolution', 'inpainting' or "
                              "'colorization', not 'class_conditional'")
    t = cfg["train"]
    if t["base_patch_size"] is not None and source != "image_folder":
        raise ConfigError(f"train.base_patch_size sets the patches of an image folder; data.source is {source!r}")
    if source == "image_folder" and cfg["data"]["task"] == "super_resolution":
        for section, key in (("data", "patch_size"), ("train", "base_patch_size")):
            size = cfg[section][key]
            if size is not None and size % cfg["data"]["factor"]:
                raise ConfigError(f"{section}.{key} ({size}) must be a multiple of data.factor "
                                  f"({cfg['data']['factor']})")
    if t["base_steps"]:
        residual = cfg["model"].get("residual")
        if (residual.get("kind") if isinstance(residual, dict) else residual) != "learned":
            raise ConfigError(f"train.base_steps trains a learned residual base alone: it needs model.residual "
                              f"'learned', got {cfg['model'].get('residual')!r}")
        if t["strategy"] not in ("default", "one_device"):
            raise ConfigError(f"train.base_steps runs on one device: it needs train.strategy 'default' or "
                              f"'one_device', got {t['strategy']!r}")
    if source in ("tfds", "image_folder") and cfg["model"]["class"] in MODEL_CLASSES[:2]:
        raise ConfigError(f"image tasks need an image model {MODEL_CLASSES[2:]}, got model.class "
                          f"{cfg['model']['class']!r}")
    return cfg


# (section, key) -> (test, what it must be); None values pass where "or null" is said
_RANGES = {
    ("train", "steps"): (lambda v: v >= 1, ">= 1"),
    ("train", "batch_size"): (lambda v: v >= 1, ">= 1"),
    ("train", "steps_per_epoch"): (lambda v: v >= 1, ">= 1"),
    ("train", "keep_checkpoints"): (lambda v: v >= 1, ">= 1"),
    ("train", "sub_batches"): (lambda v: v >= 1, ">= 1"),
    ("train", "learning_rate"): (lambda v: v > 0, "> 0"),
    ("train", "ema"): (lambda v: v is None or 0 < v < 1, "in (0, 1) or null"),
    ("train", "clipnorm"): (lambda v: v is None or v > 0, "> 0 or null"),
    ("train", "warmup_steps"): (lambda v: v >= 0, ">= 0"),
    ("train", "decay_interval"): (lambda v: v >= 1, ">= 1"),
    ("train", "decay_gamma"): (lambda v: 0 < v <= 1, "in (0, 1]"),
    ("train", "plateau_factor"): (lambda v: 0 < v <= 1, "in (0, 1]"),
    ("train", "plateau_patience"): (lambda v: v is None or v >= 1, ">= 1 or null"),
    ("train", "sample_every"): (lambda v: v is None or v >= 1, ">= 1 or null"),
    ("train", "base_steps"): (lambda v: v >= 0, ">= 0"),
    ("train", "base_patch_size"): (lambda v: v is None or v >= 1, ">= 1 or null"),
    ("train", "base_batch_size"): (lambda v: v is None or v >= 1, ">= 1 or null"),
    ("train", "base_learning_rate"): (lambda v: v is None or v > 0, "> 0 or null"),
    ("data", "test_size"): (lambda v: v >= 1, ">= 1"),
    ("data", "simulations"): (lambda v: v is None or v >= 1, ">= 1 or null"),
    ("data", "test_simulations"): (lambda v: v >= 1, ">= 1"),
    ("eval", "diagnostics_simulations"): (lambda v: v >= 1, ">= 1"),
    ("eval", "posterior_samples"): (lambda v: v >= 1, ">= 1"),
    ("data", "sigma"): (lambda v: v > 0, "> 0"),
    ("data", "factor"): (lambda v: v >= 1, ">= 1"),
    ("data", "shuffle_buffer"): (lambda v: v >= 1, ">= 1"),
    ("data", "patch_size"): (lambda v: v >= 1, ">= 1"),
    ("data", "test_fraction"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("eval", "batch_size"): (lambda v: v >= 1, ">= 1"),
    ("eval", "num_conditions"): (lambda v: v >= 1, ">= 1"),
    ("eval", "samples_per_condition"): (lambda v: v >= 1, ">= 1"),
    ("eval", "max_examples"): (lambda v: v is None or v >= 1, ">= 1 or null"),
    ("eval", "temperature"): (lambda v: v >= 0, ">= 0"),
}


def _check_ranges(cfg: dict) -> None:
    for (section, key), (ok, what) in _RANGES.items():
        value = cfg[section].get(key)
        if key in cfg[section] and not ok(value):
            raise ConfigError(f"{section}.{key} must be {what}, got {value}")
    d, t = cfg["data"], cfg["train"]
    try:
        check_scales(d.get("scales"))
    except ValueError as e:
        raise ConfigError(f"data.{e}") from None
    if d["source"] == "gaussian_mixture" and d["train_size"] < t["batch_size"]:
        raise ConfigError(f"data.train_size must be >= train.batch_size ({t['batch_size']}), got {d['train_size']}")


def model_class(name: str):
    import tfcflow.models as models
    if name not in MODEL_CLASSES:
        raise ConfigError(f"model.class must be one of {MODEL_CLASSES}, got {name!r}{_suggest(name, MODEL_CLASSES)}")
    return getattr(models, name)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# what a JSON value must be for a constructor annotation: (test, description)
_SIMPLE = {
    int: (_is_int, "int"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "float"),
    bool: (lambda v: isinstance(v, bool), "bool"),
    str: (lambda v: isinstance(v, str), "str"),
}


def _annotation_check(annotation):
    """``(test, description)`` of the JSON values a constructor annotation admits, or None when the
    annotation is not one a config can check (the constructor then checks the value itself)."""
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple, collections.abc.Sequence) and args and args[0] is int:
        return (lambda v: isinstance(v, list) and all(_is_int(d) for d in v)), "a list of int"
    if origin in (list, tuple, collections.abc.Sequence) and args and args[0] == typing.Optional[int]:
        # a shape whose sizes may be null (any size)
        return (lambda v: isinstance(v, list) and all(d is None or _is_int(d) for d in v)), "a list of int"
    if origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        checks = [_annotation_check(a) for a in options]
        if any(c is None for c in checks):
            return None
        if len(options) == 2 and options[0] is int and checks[1][1] == "a list of int":  # a shape: D or [D, ...]
            return (lambda v: _is_int(v) or checks[1][0](v)), "a list of int"
        test = (lambda v: v is None or any(c[0](v) for c in checks)) if type(None) in args else \
            (lambda v: any(c[0](v) for c in checks))
        names = " or ".join(c[1] for c in checks) + (" or null" if type(None) in args else "")
        return test, names
    return None


def validate_model(model: dict) -> dict:
    """Checks ``model``'s keys against the class' constructor and its values against the
    constructor's annotations (the values themselves are checked by the constructor)."""
    if not isinstance(model, dict) or "class" not in model:
        raise ConfigError(f"section 'model' must be a mapping with a 'class' key, got {model!r}")
    cls = model_class(model["class"])
    params = inspect.signature(cls.__init__).parameters
    try:  # configs written before an argument was renamed or grouped (ConditionalFlowModel.migrate_config)
        model = {"class": model["class"], **cls.migrate_config({k: v for k, v in model.items() if k != "class"})}
    except ValueError as e:
        raise model_error(e, model) from None
    known = [p for p in params if p not in ("self", "kwargs")]
    hints = typing.get_type_hints(cls.__init__)
    for key, value in model.items():
        if key == "class":
            continue
        if key not in known:
            raise ConfigError(f"unknown key model.{key} for {model['class']}{_suggest(key, known)}; "
                              f"known keys: {sorted(known)}")
        check = _annotation_check(hints.get(key))
        if check is not None and not check[0](value):
            raise ConfigError(f"model.{key}: expected {check[1]}, got {value!r}")
    return dict(model)


def model_error(error: Exception, model: dict) -> ConfigError:
    """A model constructor's ValueError as a ConfigError naming the ``model.<key>`` it is about: the
    key the message starts with, else the first key it names (``model`` if none)."""
    message = str(error)
    keys = sorted((k for k in model if k != "class"), key=len, reverse=True)
    for key in keys:
        if message.startswith(key + " "):
            return ConfigError(f"model.{key}: {message[len(key) + 1:]}")
    named = [k for k in keys if re.search(rf"\b{re.escape(k)}\b", message)]
    if named:
        first = min(named, key=lambda k: re.search(rf"\b{re.escape(k)}\b", message).start())
        return ConfigError(f"model.{first}: {message}")
    return ConfigError(f"model: {message}")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'train.steps=500'`` -> (['train', 'steps'], 500); the value is JSON, else a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(user: dict, overrides: Iterable[str]) -> dict:
    user = copy.deepcopy(user)
    for item in overrides:
        path, value = parse_override(item)
        node = user
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {part!r} is not a section")
        node[path[-1]] = value
    return user


def load(path: str, overrides: Iterable[str] = ()) -> dict:
    """Reads a JSON/YAML config file, applies ``--set`` overrides, validates it."""
    if not os.path.exists(path):
        raise ConfigError(f"config file {path!r} does not exist")
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError("YAML configs need PyYAML (pip install pyyaml); or use JSON") from None
        user = yaml.safe_load(text)
    else:
        try:
            user = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON: {e}") from None
    return validate(apply_overrides(user, overrides))


def resume_conflicts(saved: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between a saved config and a new one, except RESUMABLE keys.
    A key the saved config lacks (written before the key existed) counts as its default."""
    diffs = []
    for key in sorted(set(saved) | set(new)):
        a, b = saved.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            defaults = DEFAULTS.get(key, {}) if isinstance(DEFAULTS.get(key), dict) else {}
            for sub in sorted(set(a) | set(b)):
                old = a.get(sub, defaults.get(sub))
                if (key, sub) not in RESUMABLE and old != b.get(sub):
                    diffs.append(f"{key}.{sub}: {old!r} -> {b.get(sub)!r}")
        elif a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def resolve_path(path: Optional[str], config_path: Optional[str]) -> Optional[str]:
    """A relative path in a config is relative to the config file's folder."""
    if path is None or os.path.isabs(path) or config_path is None:
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), path))
