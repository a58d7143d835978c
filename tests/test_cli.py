import json

from tfcflow import cli


def test_train_command_reports_results(tmp_path, capsys):
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = cli.main(["train", os.path.join(root, "training", "gaussian_mixture", "cinn_fast.json"), "--out",
                     str(tmp_path), "--set", "train.steps=10", "--set", "train.steps_per_epoch=5"])
    assert code == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["steps"] == 10


def test_evaluate_command_with_ema_and_raw_weights(tmp_path, capsys):
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from tfcflow import trainer
    res = trainer.train(os.path.join(root, "training", "gaussian_mixture", "rcf_fast.json"), str(tmp_path),
                        ["train.steps=20", "train.steps_per_epoch=10", "train.ema=0.5"])
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path)]) == 0
    ema = json.loads(capsys.readouterr().out)
    assert cli.main(["evaluate", str(tmp_path), "--no-ema"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert ema["ema"] and not raw["ema"] and ema["checkpoint"].endswith("ckpt-20")
    assert abs(ema["test_loss"] - res["test_loss"]) < 1e-4  # what the run reported (EMA weights)
    assert ema["test_loss"] != raw["test_loss"]


def test_config_errors_exit_2_with_the_message(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"train": {"stepz": 1}}))
    assert cli.main(["train", str(tmp_path / "c.json")]) == 2
    assert "unknown key train.stepz" in capsys.readouterr().err


def test_data_commands(tmp_path, capsys, mnist_data_dir):
    assert cli.main(["data", "skimage-patches", "--name", "patches", "--data-dir", str(tmp_path),
                     "--patch-size", "16", "--stride", "16", "--downscale", "8"]) == 0
    from tfcflow.data.tasks import dataset_info
    info = dataset_info("patches", str(tmp_path))
    assert info["image_shape"] == (16, 16, 3) and set(info["splits"]) == {"train", "test"}
    assert cli.main(["data", "prepare-mnist", "--source", str(tmp_path / "nope"), "--data-dir", str(tmp_path)]) == 2
    assert "lacks the MNIST IDX file(s)" in capsys.readouterr().err
