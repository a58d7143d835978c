import json

import pytest

from tfcflow import config


def test_defaults_fill_in_and_types_are_checked():
    cfg = config.validate({"model": {"class": "CAFlow", "levels": 2}, "train": {"steps": 10}})
    assert cfg["train"]["steps"] == 10 and cfg["train"]["ema"] == 0.999 and cfg["data"]["task"] == "super_resolution"
    cfg = config.validate({"model": {"class": "CAFlow"}, "data": {"flips": "dihedral", "scales": [0.5, 1.0]}})
    assert cfg["data"]["flips"] == "dihedral" and cfg["data"]["scales"] == [0.5, 1.0]
    cases = [
        ({"trian": {}}, r"unknown section 'trian' \(did you mean 'train'\?\)"),
        ({"train": {"step": 3}}, r"unknown key train.step \(did you mean 'steps'\?\)"),
        ({"train": {"steps": "ten"}}, r"train.steps: expected int, got 'ten'"),
        ({"train": {"steps": 0}}, r"train.steps must be >= 1"),
        ({"train": {"precision": "fp16"}}, r"train.precision must be one of"),
        ({"train": {"strategy": "horovod"}}, r"train.strategy must be one of"),
        ({"train": {"ema": 1.5}}, r"train.ema must be in \(0, 1\)"),
        ({"data": {"scales": [0.5, 2.0]}}, r"data.scales must satisfy 0 < min <= max <= 1"),
        ({"data": {"scales": "big"}}, r"data.scales must be a pair \(min, max\)"),
        ({"data": {"task": "denoise"}}, r"data.task must be one of"),
        ({"model": {"class": "Glow"}}, r"model.class must be one of"),
        ({"model": {"class": "CAFlow", "level": 2}}, r"unknown key model.level for CAFlow \(did you mean 'levels'\?\)"),
        ({"model": {"class": "ConditionalRealNVP"}}, r"image tasks need an image model"),
        ({"data": {"source": "gaussian_mixture"}, "model": {"class": "CAFlow"}}, r"needs a vector model"),
    ]
    for user, pattern in cases:
        with pytest.raises(config.ConfigError, match=pattern):
            config.validate(user)


def test_model_values_are_checked_against_the_constructor():
    vec = {"data": {"source": "gaussian_mixture"}}
    cases = [
        ({"class": "CAFlow", "levels": "two"}, r"^model.levels: expected int, got 'two'$"),
        ({"class": "CAFlow", "levels": 2.0}, r"^model.levels: expected int, got 2.0$"),
        # (scale and clamp of configs written before the coupling spec are folded into it, then checked)
        ({"class": "CAFlow", "clamp": "big"}, r"^model.clamp: coupling clamp must be a number > 0, got 'big'$"),
        ({"class": "CAFlow", "mixing": 1}, r"^model.mixing: expected str, got 1$"),
        ({"class": "CAFlow", "lu": "yes"}, r"^model.lu: must be true or false \(now mixing='lu' or 'matrix'\), "
                                           r"got 'yes'$"),
        ({"class": "CAFlow", "scale": 1}, r"^model.scale: coupling scale must be"),
        ({"class": "CAFlow", "event_shape": "28x28"}, r"^model.event_shape: expected a list of int, got '28x28'$"),
        ({"class": "CAFlow", "event_shape": [28, "28", 1]}, r"^model.event_shape: expected a list of int"),
    ]
    for model, pattern in cases:
        with pytest.raises(config.ConfigError, match=pattern):
            config.validate({"model": model})
    with pytest.raises(config.ConfigError, match=r"^model.width: expected int, got \[64, 64\]$"):
        config.validate({**vec, "model": {"class": "ConditionalRealNVP", "width": [64, 64]}})
    with pytest.raises(config.ConfigError, match=r"^model.padding_dim: expected int or null, got 'x'$"):
        config.validate({**vec, "model": {"class": "RelaxedConditionFlow", "padding_dim": "x"}})
    # what the constructors take passes: ints for floats, null for Optional, an int or a list for a shape
    cfg = config.validate({**vec, "model": {"class": "RelaxedConditionFlow", "coupling": {"kind": "affine", "clamp": 3},
                                            "padding_dim": None, "event_shape": 2, "condition_shape": [8]}})
    assert cfg["model"]["coupling"] == {"kind": "affine", "clamp": 3}
    # a config written before Coupling grouped the settings: folded in (what does not apply dropped)
    cfg = config.validate({**vec, "model": {"class": "ConditionalRealNVP", "coupling": "spline", "clamp": 3,
                                            "spline_bins": 5}})
    assert cfg["model"]["coupling"] == {"kind": "spline", "bins": 5} and "clamp" not in cfg["model"]
    cfg = config.validate({"model": {"class": "ConditionalGlow", "lu": False}})
    assert cfg["model"]["mixing"] == "matrix" and "lu" not in cfg["model"]


def test_value_ranges_of_data_train_and_eval():
    vec = {"data": {"source": "gaussian_mixture"}, "model": {"class": "ConditionalRealNVP"}}
    cases = [
        ({"data": {"train_size": 10}}, r"^data.train_size must be >= train.batch_size \(64\), got 10$"),
        ({"data": {"test_size": 0}}, r"^data.test_size must be >= 1, got 0$"),
        ({"data": {"sigma": 0}}, r"^data.sigma must be > 0, got 0$"),
        ({"data": {"factor": 0}}, r"^data.factor must be >= 1, got 0$"),
        ({"data": {"shuffle_buffer": 0}}, r"^data.shuffle_buffer must be >= 1, got 0$"),
        ({"train": {"warmup_steps": -1}}, r"^train.warmup_steps must be >= 0, got -1$"),
        ({"train": {"decay_interval": 0}}, r"^train.decay_interval must be >= 1, got 0$"),
        ({"train": {"decay_gamma": 0}}, r"^train.decay_gamma must be in \(0, 1\], got 0$"),
        ({"train": {"plateau_factor": 2}}, r"^train.plateau_factor must be in \(0, 1\], got 2$"),
        ({"train": {"plateau_patience": 0}}, r"^train.plateau_patience must be >= 1 or null, got 0$"),
        ({"train": {"sample_every": 0}}, r"^train.sample_every must be >= 1 or null, got 0$"),
        ({"eval": {"batch_size": 0}}, r"^eval.batch_size must be >= 1, got 0$"),
        ({"eval": {"num_conditions": 0}}, r"^eval.num_conditions must be >= 1, got 0$"),
        ({"eval": {"samples_per_condition": 0}}, r"^eval.samples_per_condition must be >= 1, got 0$"),
        ({"eval": {"max_examples": 0}}, r"^eval.max_examples must be >= 1 or null, got 0$"),
        ({"eval": {"temperature": -0.5}}, r"^eval.temperature must be >= 0, got -0.5$"),
    ]
    for user, pattern in cases:
        merged = {**vec, **{k: {**vec.get(k, {}), **v} for k, v in user.items()}}
        with pytest.raises(config.ConfigError, match=pattern):
            config.validate(merged)


def test_file_loading_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "x", "model": {"class": "ConditionalGlow"}}))
    cfg = config.load(str(path), ["train.steps=7", "model.levels=2", "data.dataset=my_images", "train.ema=null"])
    assert cfg["train"]["steps"] == 7 and cfg["model"]["levels"] == 2 and cfg["data"]["dataset"] == "my_images"
    assert cfg["train"]["ema"] is None
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(config.ConfigError, match="invalid JSON"):
        config.load(str(tmp_path / "bad.json"))
    with pytest.raises(config.ConfigError, match="--set expects key=value"):
        config.load(str(path), ["train.steps"])


def test_resume_conflicts_ignore_resumable_keys():
    a = config.validate({"model": {"class": "CAFlow"}})
    b = config.validate({"model": {"class": "CAFlow"}, "train": {"steps": 5000, "learning_rate": 1e-4},
                         "eval": {"temperature": 0.5}})
    assert config.resume_conflicts(a, b) == ["train.learning_rate: 0.001 -> 0.0001"]
    # a run saved before a key existed: the key counts as its default, not as a change
    older = {k: ({kk: vv for kk, vv in v.items() if kk != "min_patch_std"} if k == "data" else v) for k, v in a.items()}
    assert config.resume_conflicts(older, a) == []
    changed = config.validate({"model": {"class": "CAFlow"}, "data": {"min_patch_std": 3.0}})
    assert config.resume_conflicts(older, changed) == ["data.min_patch_std: 0.0 -> 3.0"]


def test_every_shipped_config_is_valid():
    import glob
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # jobs with their own entry point (train.py) have their own config schema
    paths = [p for p in glob.glob(os.path.join(root, "training", "*", "*.json"))
             if not os.path.exists(os.path.join(os.path.dirname(p), "train.py"))]
    assert len(paths) >= 10
    for p in paths:
        config.load(p)
