"""The ``tfcflow`` command.

    tfcflow train CONFIG [--set key=value ...] [--out DIR]
    tfcflow data prepare-mnist --source DIR --data-dir DIR
    tfcflow data prepare-photos SOURCE FOLDER [--downscale 2] [--method bicubic] [--validation K] [--seed S]
    tfcflow data import-folder FOLDER --name NAME --data-dir DIR [--image-size N] [--test-fraction F]
    tfcflow data skimage-patches --name NAME --data-dir DIR [--patch-size N] [--test-images K]
    tfcflow export RUN_DIR --base DIR [--name NAME] [--version V] [--max-n N] [--no-ema]
    tfcflow evaluate RUN_DIR [--no-ema] [--max-examples N] [--hook training/TASK/evaluate.py]
                             [--sample-diagnostics N]
    tfcflow sample RUN_DIR INPUT... --out DIR [--temperature T] [--best-of N] [--seed S] [--mask FILE]
                   [--pad] [--overwrite] [--no-ema]
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
        elif args.data_command == "prepare-photos":
            manifest = prepare.prepare_photo_folder(args.source, args.folder, args.downscale, args.method,
                                                    validation=args.validation, seed=args.seed)
            path = f"{args.folder} ({len(manifest['photos'])} photos)"
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
    from tfcflow import evaluation

    try:
        if args.max_examples is not None and args.max_examples < 1:
            raise ValueError(f"--max-examples must be >= 1, got {args.max_examples}")
        if args.hook is not None and not os.path.isfile(args.hook):
            raise ValueError(f"--hook {args.hook} does not exist")
        if args.sample_diagnostics < 0:
            raise ValueError(f"--sample-diagnostics must be >= 0, got {args.sample_diagnostics}")
        res = evaluation.evaluate_run(args.run, use_ema=not args.no_ema, max_examples=args.max_examples,
                                      hook=args.hook, sample_images=args.sample_diagnostics)
    except (FileNotFoundError, ValueError) as e:
        print(f"tfcflow evaluate: {e}", file=sys.stderr)
        return 2
    shown = {k: v for k, v in res.items() if not isinstance(v, (dict, list))}
    shown.update({f"sample_diagnostics.{k}": v for k, v in res.get("sample_diagnostics", {}).items()
                  if not isinstance(v, list)})
    print(json.dumps(shown, indent=1, default=str))
    return 0


def _sample(args) -> int:
    """Image files (or folders of them) as conditions -> one result PNG each in --out, plus a sheet
    (input | result) in --out/sheets. A bad file gets one line and the others are still done."""
    import numpy as np

    from tfcflow import images, trainer
    from tfcflow._checks import first_line

    def say(message):
        print(f"tfcflow sample: {message}", file=sys.stderr)

    try:
        if args.best_of < 1:
            raise ValueError(f"--best-of must be >= 1, got {args.best_of}")
        if not args.max_megapixels >= 0:
            raise ValueError(f"--max-megapixels must be >= 0, got {args.max_megapixels}")
        from tfcflow.tiling import Tiling
        tiling = Tiling(tile=args.tile, overlap=args.overlap)
        if args.temperature is not None and not (args.temperature >= 0 and args.temperature != float("inf")):
            raise ValueError(f"--temperature must be a finite number >= 0, got {args.temperature}")
        if os.path.isfile(args.out):
            raise ValueError(f"--out {args.out} is a file, not a folder")
        cfg = trainer.run_config(args.run)
        data = cfg.get("data", {})
        # the image sources (TFDS, a folder of photos) name their task; the others are not images
        task = data.get("task") if data.get("source", "tfds") in ("tfds", "image_folder") else data.get("source")
        if task not in images.IMAGE_TASKS:
            raise ValueError(f"{args.run} is a {task} run; sample takes image-conditioned runs "
                             f"({', '.join(images.IMAGE_TASKS)})")
        factor = int(data.get("factor", 4)) if task == "super_resolution" else 1
        if args.mask is not None and task != "inpainting":
            raise ValueError(f"--mask is for inpainting runs; {args.run} is a {task} run")
        mask = mask_folder = None
        if args.mask is not None:
            if os.path.isdir(args.mask):
                mask_folder = args.mask
            elif os.path.exists(args.mask):
                mask = images.read_mask(args.mask)
            else:
                raise ValueError(f"--mask {args.mask} does not exist")
        temperature = args.temperature
        if temperature is None:  # the run's eval.temperature (the config default where a run lacks it)
            from tfcflow.config import DEFAULTS
            temperature = float(cfg.get("eval", {}).get("temperature", DEFAULTS["eval"]["temperature"]))
        files, problems = images.list_images(args.inputs)
        model = trainer.load_run(args.run, use_ema=not args.no_ema)
    except (FileNotFoundError, ValueError) as e:
        say(e)
        return 2
    except Exception as e:  # a checkpoint that cannot be restored, ...
        say(f"{args.run}: cannot load the model ({type(e).__name__}: {first_line(e)})")
        return 2

    levels = int(getattr(model, "levels", 0) or 0)
    condition_channels = int(model.condition_shape[-1])
    trained = "x".join("?" if d is None else str(d) for d in model.condition_shape)
    sheets = os.path.join(args.out, "sheets")
    failed = len(problems)
    for line in problems:
        say(line)
    written, claimed, tiled = [], {}, {}
    try:
        from tqdm import tqdm
        progress = tqdm(files, desc="tfcflow sample", unit="image", file=sys.stderr, disable=not sys.stderr.isatty())
        report = lambda line: tqdm.write(f"tfcflow sample: {line}", file=sys.stderr)  # noqa: E731
    except ImportError:
        progress, report = files, say
    for path in progress:
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        target, sheet = os.path.join(args.out, name), os.path.join(sheets, name)
        try:
            if name in claimed:
                raise images.ImageError(f"{path}: {claimed[name]} writes {target} too; rename one of them")
            claimed[name] = path
            for out in (target, sheet):
                if os.path.exists(out) and not args.overwrite:
                    raise images.ImageError(f"{path}: {out} exists; pass --overwrite to replace it")
            image = images.read_image(path)
            this_mask = mask
            if mask_folder is not None:
                this_mask = _mask_for(images, mask_folder, path)
            prepared = images.prepare_condition(task, image, condition_channels=condition_channels, levels=levels,
                                                factor=factor, mask=this_mask, pad=args.pad, path=path)
            condition = prepared.condition[None]
            try:
                out_pixels = condition.shape[1] * condition.shape[2] * int(getattr(model, "factor", 1)) ** 2
                if out_pixels > args.max_megapixels * 1e6:  # bounded memory: one tile at a time
                    from tfcflow import tiling as tiles
                    tile_plan = tiles.plan(model, condition.shape[1:3], tiling)
                    tiled[target] = tile_plan.describe()
                    report(f"{path}: {tile_plan.describe()} (more than --max-megapixels {args.max_megapixels:g})")
                    x = tiles.sample_tiled(model, condition, tiling, temperature=temperature, seed=args.seed,
                                           best_of=args.best_of)[None]
                elif args.best_of > 1:
                    x, _ = model.best_of_n(condition, args.best_of, temperature=temperature, seed=args.seed)
                else:
                    x = model.sample(condition, temperature=temperature, seed=args.seed)
            except Exception as e:  # the model refused this input (e.g. a size it was not built for)
                shape = prepared.condition.shape
                if any(d is not None and d != g for d, g in zip(model.condition_shape, shape)):
                    raise images.ImageError(
                        f"{path}: the model cannot take this {'x'.join(map(str, shape))} condition (it was trained "
                        f"on {trained} conditions): {first_line(e)}") from None
                raise images.ImageError(f"{path}: sampling failed ({type(e).__name__}: {first_line(e)})") from None
            result = prepared.finish(np.asarray(x)[0])
            images.save_png(result, target, overwrite=args.overwrite)
            images.save_png(images.side_by_side([prepared.preview, result]), sheet, overwrite=args.overwrite)
            written.append(target)
        except images.ImageError as e:
            failed += 1
            report(e)
        except Exception as e:  # OSError writing, ...: this file failed, the others go on
            failed += 1
            report(f"{path}: failed ({type(e).__name__}: {first_line(e)})")
    print(json.dumps({"out": args.out, "written": written, "sheets": sheets if written else None,
                      "failed": failed, "temperature": temperature, "best_of": args.best_of, "seed": args.seed,
                      "tiled": tiled},
                     indent=1))
    return 2 if failed else 0


def _mask_for(images, folder, path):
    """The mask of ``path`` in a --mask folder: the file of the same base name (any image type)."""
    base = os.path.splitext(os.path.basename(path))[0]
    for name in sorted(os.listdir(folder)):
        if os.path.splitext(name)[0] == base and images.is_image_name(name):
            return images.read_mask(os.path.join(folder, name))
    raise images.ImageError(f"{path}: no mask {base}.png (or .jpg) in --mask folder {folder}")


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
    ph = dsub.add_parser("prepare-photos", help="prepare a folder of photographs for the image tasks (downscaled "
                                                "with antialiasing, the same for train/ and test/; atomic)")
    ph.add_argument("source", help="a folder of photos, or one with train/ and test/ (or eval/) sub-folders")
    ph.add_argument("folder", help="the prepared image folder to write (new or empty); data.folder of a job")
    ph.add_argument("--downscale", type=int, default=2, help="factor of the antialiased reduction (1: none)")
    ph.add_argument("--method", default="bicubic", choices=("bicubic", "area"))
    ph.add_argument("--validation", type=int, default=0, metavar="K",
                    help="move K training photos (seeded) to FOLDER/validation, for choices made after training")
    ph.add_argument("--seed", type=int, default=0, help="seed of the validation photos' choice")
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
    v.add_argument("--sample-diagnostics", type=int, default=0, metavar="N",
                   help="image tasks: consistency with the input, diversity and per-pixel calibration of 19 "
                        "samples of each of the first N held-out images (figures in RUN/sample_diagnostics)")
    v.set_defaults(func=_evaluate)

    s = sub.add_parser("sample", help="run a trained image model on image files (super-resolution, inpainting, "
                                      "colorization)")
    s.add_argument("run", metavar="RUN", help="a run folder written by `tfcflow train`")
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (PNG / JPEG) or folders of them: low-resolution images for super-resolution, "
                        "grayscale images for colorization, images (with --mask) for inpainting")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="folder of the results: DIR/NAME.png and DIR/sheets/NAME.png")
    s.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="latent temperature (default: the run's eval.temperature)")
    s.add_argument("--best-of", type=int, default=1, metavar="N",
                   help="draw N samples per input and keep the most likely one")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (the same for every input)")
    s.add_argument("--mask", default=None, metavar="FILE",
                   help="inpainting: a mask image (white = missing) for every input, or a folder of masks named like "
                        "the inputs (default: the central square)")
    s.add_argument("--pad", action="store_true", help="reflection-pad inputs of an invalid size to the next valid "
                                                      "one and crop the results back")
    s.add_argument("--max-megapixels", type=float, default=2.0, metavar="M",
                   help="outputs larger than M megapixels are sampled by overlapping tiles, one at a time, so memory "
                        "is bounded by the tile (tfcflow/tiling.py; 0: tile every output, inf: never)")
    s.add_argument("--tile", type=int, default=1024, metavar="PX", help="side of a tile in output pixels")
    s.add_argument("--overlap", type=int, default=32, metavar="PX", help="output pixels neighbouring tiles share "
                                                                         "(blended)")
    s.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    s.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their EMA")
    s.set_defaults(func=_sample)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # (--help and usage errors never load TensorFlow)
    from tfcflow import _runtime
    # TensorFlow's C++ log quiet unless asked for; the commands that run a model name its devices
    _runtime.start(announce=args.command != "data")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
