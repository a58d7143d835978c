"""The ``tfcflow`` command.

    tfcflow train CONFIG [--set key=value ...] [--out DIR]
    tfcflow data prepare-mnist --source DIR --data-dir DIR
    tfcflow data import-folder FOLDER --name NAME --data-dir DIR [--image-size N] [--test-fraction F]
    tfcflow data skimage-patches --name NAME --data-dir DIR [--patch-size N] [--test-images K]
    tfcflow export RUN_DIR --base DIR [--name NAME] [--version V] [--max-n N] [--no-ema]
    tfcflow evaluate RUN_DIR [--no-ema] [--max-examples N] [--hook training/TASK/evaluate.py]
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _train(args) -> int:
    from tfcflow import trainer
    from tfcflow.callbacks import TrainingDiverged
    from tfcflow.config import ConfigError

    try:
        results = trainer.train(args.config, args.out, args.set)
    except (ConfigError, TrainingDiverged) as e:
        print(f"tfcflow train: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, (dict, list))}, indent=1, default=str))
    return 0


def _data(args) -> int:
    from tfcflow.data import prepare

    try:
        if args.data_command == "prepare-mnist":
            path = prepare.prepare_mnist(args.source, args.data_dir)
        elif args.data_command == "import-folder":
            path = prepare.import_image_folder(args.folder, args.name, args.data_dir, args.image_size,
                                               args.test_fraction, args.seed)
        else:
            path = prepare.store_skimage_patches(args.name, args.data_dir, args.patch_size, args.stride,
                                                 args.downscale, args.test_images)
    except ValueError as e:
        print(f"tfcflow data: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _export(args) -> int:
    from tfcflow import export, trainer

    try:
        for flag, value in (("sub-batches", args.sub_batches), ("max-n", args.max_n), ("version", args.version)):
            if value is not None and value < 1:
                raise ValueError(f"--{flag} must be >= 1, got {value}")
        if args.name is not None and (os.path.basename(args.name) != args.name or args.name in ("", ".", "..")):
            raise ValueError(f"--name must be a single folder name, got {args.name!r}")
        if os.path.isfile(args.base):
            raise ValueError(f"--base {args.base} is a file, not a folder")
        trainer.run_config(args.run)
        model = trainer.load_run(args.run, use_ema=not args.no_ema)
        if args.sub_batches is not None:
            from tfcflow.execution import Execution
            model.execution = Execution(sub_batches=args.sub_batches, fused_steps=model.execution.fused_steps)
        name = args.name or os.path.basename(os.path.normpath(args.run))
        path = export.save(model, args.base, version=args.version, model_name=name, max_n=args.max_n, use_ema=False)
    except (FileNotFoundError, ValueError) as e:
        print(f"tfcflow export: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"export": path, "restored_from": model.restored_from, "ema": not args.no_ema}))
    return 0


def _evaluate(args) -> int:
    from tfcflow import trainer

    try:
        if args.max_examples is not None and args.max_examples < 1:
            raise ValueError(f"--max-examples must be >= 1, got {args.max_examples}")
        if args.hook is not None and not os.path.isfile(args.hook):
            raise ValueError(f"--hook {args.hook} does not exist")
        res = trainer.evaluate_run(args.run, use_ema=not args.no_ema, max_examples=args.max_examples,
                                   hook=args.hook)
    except (FileNotFoundError, ValueError) as e:
        print(f"tfcflow evaluate: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, (dict, list))}, indent=1, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfcflow", description="Conditional normalizing flows for TensorFlow.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a model from a config file")
    t.add_argument("config", help="JSON (or YAML) config, e.g. training/mnist_super_resolution/caflow.json")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=500 (value parsed as JSON)")
    t.add_argument("--out", default=None, help="output folder (default runs/<name>); rerun to resume")
    t.set_defaults(func=_train)

    d = sub.add_parser("data", help="prepare datasets offline")
    dsub = d.add_subparsers(dest="data_command", required=True)
    m = dsub.add_parser("prepare-mnist", help="prepare TFDS mnist from a folder of the 4 IDX .gz files")
    m.add_argument("--source", required=True)
    m.add_argument("--data-dir", required=True)
    f = dsub.add_parser("import-folder", help="store a folder of images (sub-folders = classes) as a TFDS dataset")
    f.add_argument("folder")
    f.add_argument("--name", required=True)
    f.add_argument("--data-dir", required=True)
    f.add_argument("--image-size", type=int, default=None, help="centre-crop and resize to N x N")
    f.add_argument("--test-fraction", type=float, default=0.0)
    f.add_argument("--seed", type=int, default=0)
    s = dsub.add_parser("skimage-patches", help="colour photo patches from scikit-image's bundled images")
    s.add_argument("--name", default="skimage_patches")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--patch-size", type=int, default=32)
    s.add_argument("--stride", type=int, default=8)
    s.add_argument("--downscale", type=int, default=2)
    s.add_argument("--test-images", type=int, default=2, help="hold out the last K images as the test split")
    d.set_defaults(func=_data)

    e = sub.add_parser("export", help="export a training run as a SavedModel for TF Serving")
    e.add_argument("run", help="a run folder written by `tfcflow train` (config.json, model.json, checkpoints/)")
    e.add_argument("--base", required=True, help="TF Serving model base folder; writes <base>/<name>/<version>/")
    e.add_argument("--name", default=None, help="model name (default: the run folder's name)")
    e.add_argument("--version", type=int, default=None, help="default: one more than the highest existing")
    e.add_argument("--max-n", type=int, default=64, help="cap of best_of_n's n")
    e.add_argument("--no-ema", action="store_true", help="export the raw weights instead of their EMA")
    e.add_argument("--sub-batches", type=int, default=None,
                   help="sub-batches of the exported graph (default: the run's train.sub_batches); pays when the "
                        "server runs 1 intra-op and N inter-op threads")
    e.set_defaults(func=_export)

    v = sub.add_parser("evaluate", help="test metrics of a run's latest checkpoint (EMA or raw weights)")
    v.add_argument("run")
    v.add_argument("--no-ema", action="store_true", help="evaluate the raw weights instead of their EMA")
    v.add_argument("--max-examples", type=int, default=None)
    v.add_argument("--hook", default=None, help="a task's evaluate.py to run as well (e.g. PSNR of best-of-10)")
    v.set_defaults(func=_evaluate)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
