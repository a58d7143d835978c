import json

import pytest

from tfcflow import config


def test_defaults_fill_in_and_types_are_checked():
    cfg = config.validate({"model": {"class": "CAFlow", "levels": 2}, "train": {"steps": 10}})
    assert cfg["train"]["steps"] == 10 and cfg["train"]["ema"] == 0.999 and cfg["data"]["task"] == "super_resolution"
    cases = [
        ({"trian": {}}, r"unknown section 'trian' \(did you mean 'train'\?\)"),
        ({"train": {"step": 3}}, r"unknown key train.step \(did you mean 'steps'\?\)"),
        ({"train": {"steps": "ten"}}, r"train.steps: expected int, got 'ten'"),
        ({"train": {"steps": 0}}, r"train.steps must be >= 1"),
        ({"train": {"precision": "fp16"}}, r"train.precision must be one of"),
        ({"train": {"strategy": "horovod"}}, r"train.strategy must be one of"),
        ({"train": {"ema": 1.5}}, r"train.ema must be in \(0, 1\)"),
        ({"data": {"task": "denoise"}}, r"data.task must be one of"),
        ({"model": {"class": "Glow"}}, r"model.class must be one of"),
        ({"model": {"class": "CAFlow", "level": 2}}, r"unknown key model.level for CAFlow \(did you mean 'levels'\?\)"),
        ({"model": {"class": "ConditionalRealNVP"}}, r"image tasks need an image model"),
        ({"data": {"source": "gaussian_mixture"}, "model": {"class": "CAFlow"}}, r"needs a vector model"),
    ]
    for user, pattern in cases:
        with pytest.raises(config.ConfigError, match=pattern):
            config.validate(user)


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
