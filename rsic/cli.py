"""Command line of the scene classification task: `python -m rsic COMMAND`.

    python -m rsic sample --out data/rsic_sample --classes 5 --per-class 40 --size 64
    python -m rsic train --config configs/rsic/tiny.yaml --data data/rsic_sample --out runs/rsic_teacher
    python -m rsic distill --teacher runs/rsic_teacher --config configs/rsic/tiny_student.yaml --out runs/rsic_student
    python -m rsic evaluate --run runs/rsic_student
    python -m rsic predict --run runs/rsic_student data/rsic_sample/beach --out predictions.csv
    python -m rsic predict --tflite runs/rsic_student/model_int8.tflite photos/ --out predictions.csv
    python -m rsic export --run runs/rsic_student
    python -m rsic benchmark --config configs/rsic/tiny.yaml --data data/rsic_sample --out runs/bench
    python -m rsic demo --out runs/rsic_demo
    python -m rsic download --dest data/   # NWPU-RESISC45 (about 0.4 GB)

Bad input prints one line naming the file or key and exits with code 2.
"""

import argparse
from pathlib import Path

from common.cli import add_common_args, run_cli, setup_tensorflow
from common.errors import ConfigError, DataError, RunDirError
from rsic.download import SHA256, URL

COMMANDS = ("sample", "train", "distill", "evaluate", "predict", "export", "benchmark", "demo", "download")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m rsic", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sample", help="write a small synthetic data set (NWPU-RESISC45 layout)")
    p.add_argument("--out", required=True, help="folder to write <class>/<name>.jpg into")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)

    p = add_common_args(sub.add_parser("train", help="train a classifier (a run directory in --out)"))
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")

    p = add_common_args(sub.add_parser("distill", help="train a student from a teacher run (paper 3)"))
    p.add_argument("--teacher", required=True, help="run directory of the trained teacher")
    p.add_argument("--skip-bad", action="store_true")

    p = add_common_args(sub.add_parser("evaluate", help="accuracy, per-class accuracy, confusion matrix"),
                        out=False, run=True, config=False)
    p.add_argument("--out", help="output folder (default: the run directory)")
    p.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                   help="which images: a part of the run's split, or all images of --data")
    p.add_argument("--tflite", action="store_true", help="evaluate the exported int8 model instead")
    p.add_argument("--skip-bad", action="store_true")

    p = add_common_args(sub.add_parser("predict", help="classify image files or folders -> CSV"),
                        data=False, out=False, config=False)
    p.add_argument("--run", help="run directory (its model.keras)")
    p.add_argument("--tflite", metavar="MODEL.tflite",
                   help="run this int8 TFLite model with LiteRT instead (no TensorFlow; labels.txt beside it)")
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--out", help="CSV path (default: RUN/predictions.csv; required with --tflite)")
    p.add_argument("--skip-bad", action="store_true")

    p = add_common_args(sub.add_parser("export", help="int8 TFLite export with accuracy check"),
                        out=False, run=True, config=False)

    p = add_common_args(sub.add_parser("benchmark", help="train, evaluate, export a list of backbones"))
    p.add_argument("--backbones", help="comma-separated backbone names (default: benchmark.backbones)")
    p.add_argument("--skip-bad", action="store_true")

    p = sub.add_parser("demo", help="sample data -> teacher -> student -> evaluate -> export")
    p.add_argument("--out", required=True, help="folder for the demo's data, runs and summary.json")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("download", help="fetch NWPU-RESISC45 (torchgeo's mirror on Hugging Face)")
    p.add_argument("--dest", required=True, help="folder to download and unpack into (about 0.4 GB)")
    p.add_argument("--url", default=URL, help="archive URL (default: the pinned torchgeo mirror)")
    p.add_argument("--sha256", default=SHA256, help="expected SHA-256 of the archive")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def load_task_config(path, overrides, data=None, skip_bad=False):
    """The resolved rsic config of a YAML file, with --set overrides, --data and --skip-bad applied."""
    from common.config import load_config
    from rsic.config import DEFAULTS

    overrides = list(overrides)
    cfg = load_config(path, overrides, defaults=DEFAULTS)
    if data:
        cfg["data"]["root"] = str(Path(data))
    if skip_bad:
        cfg["data"]["skip_bad"] = True
    return cfg


def load_run_config(run, overrides=(), data=None, skip_bad=False):
    """The config of a run directory (its config.yaml), with overrides applied."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise RunDirError(f"{run}: not a run directory (no config.yaml); run `train` first")
    return load_task_config(run / "config.yaml", overrides, data, skip_bad)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "sample":
        from rsic.sample import write_sample

        out = write_sample(args.out, classes=args.classes, per_class=args.per_class, size=args.size,
                           seed=args.seed)
        print(f"wrote {args.classes} classes x {args.per_class} images of {args.size}x{args.size} to {out}")
        return 0
    # The edge runtime and the download never import TensorFlow.
    if args.command == "predict" and args.tflite:
        from rsic.edge import predict

        predict(args.tflite, args.inputs, _need(args.out, "--out"), skip_bad=args.skip_bad)
        return 0
    if args.command == "download":
        from rsic.download import download

        root, classes, images = download(args.dest, url=args.url, sha256=args.sha256, quiet=args.quiet)
        print(f"NWPU-RESISC45: {classes} classes, {images} images; use --data {root}")
        return 0
    setup_tensorflow()
    return globals()[f"_{args.command}"](args)


def _need(value, option):
    if not value:
        raise ConfigError(f"{option} is required")
    return value


def _train(args):
    from rsic.train import train

    cfg = load_task_config(args.config, args.overrides, args.data, args.skip_bad)
    run_dir, metrics = train(cfg, _need(args.out, "--out"), overwrite=args.overwrite, resume=args.resume)
    print(f"{run_dir}: test accuracy {metrics['accuracy']:.4f}")
    return 0


def _distill(args):
    from rsic.train import distill

    cfg = load_task_config(args.config, args.overrides, args.data, args.skip_bad)
    run_dir, metrics = distill(cfg, args.teacher, _need(args.out, "--out"), overwrite=args.overwrite,
                               resume=args.resume)
    print(f"{run_dir}: student test accuracy {metrics['accuracy']:.4f}, "
          f"teacher {metrics['teacher_accuracy']:.4f}, agreement {metrics['teacher_agreement']:.4f}")
    return 0


def _run_model(run, tflite):
    """The run's Keras model, or with `tflite` its exported int8 model (for evaluate)."""
    from common.tflite_runtime import TFLiteModel
    from common.train import load_run_model
    from rsic.export import TFLITE_FILE

    if tflite:
        path = Path(run) / TFLITE_FILE
        if not path.is_file():
            raise RunDirError(f"{path}: not found; run `python -m rsic export --run {run}` first")
        return TFLiteModel(path)
    return load_run_model(run)


def _evaluate(args):
    from rsic.data import read_labels, read_split_file, scan_image_folder
    from rsic.evaluate import evaluate_split

    cfg = load_run_config(args.run, args.overrides, args.data, args.skip_bad)
    class_names = read_labels(Path(args.run) / "labels.txt")
    folder = scan_image_folder(_need(cfg["data"]["root"], "--data"), skip_bad=cfg["data"]["skip_bad"])
    if args.split == "all":
        _remap_labels(folder, class_names)
        import numpy as np

        indices = np.arange(len(folder.files))
    else:
        if folder.class_names != class_names:
            raise DataError(f"{folder.root}: classes differ from {Path(args.run) / 'labels.txt'}; "
                            "use --split all to evaluate another folder")
        indices = read_split_file(Path(args.run) / "split.json", folder)[args.split]
        if len(indices) == 0:
            raise DataError(f"{Path(args.run) / 'split.json'}: the '{args.split}' split is empty")
    model = _run_model(args.run, args.tflite)
    out = Path(args.out) if args.out else Path(args.run) / ("eval_int8" if args.tflite else "")
    evaluate_split(model, folder, indices, out, cfg, split_name=args.split)
    return 0


def _remap_labels(folder, class_names):
    """Give `folder` the class indices of the run (its classes must be among the run's)."""
    import numpy as np

    unknown = [name for name in folder.class_names if name not in class_names]
    if unknown:
        raise DataError(f"{folder.root / unknown[0]}: class '{unknown[0]}' is not one the model knows")
    mapping = np.array([class_names.index(name) for name in folder.class_names])
    folder.labels = mapping[folder.labels]
    folder.class_names = list(class_names)


def _predict(args):
    from rsic.data import read_labels
    from rsic.evaluate import collect_images, predict_probs, write_predictions

    run = _need(args.run, "--run (or --tflite MODEL.tflite)")
    cfg = load_run_config(run, args.overrides)
    class_names = read_labels(Path(run) / "labels.txt")
    files = collect_images(args.inputs, skip_bad=args.skip_bad)
    model = _run_model(run, tflite=False)
    probs = predict_probs(model, files, int(cfg["model"]["input_size"]), int(cfg["train"]["batch_size"]))
    out = Path(args.out) if args.out else Path(run) / "predictions.csv"
    write_predictions(out, files, probs, class_names)
    print(f"{len(files)} predictions -> {out}")
    return 0


def _export(args):
    from rsic.data import read_split_file, scan_image_folder
    from rsic.export import TFLITE_FILE, export_model

    cfg = load_run_config(args.run, args.overrides, args.data)
    folder = scan_image_folder(_need(cfg["data"]["root"], "--data"), skip_bad=cfg["data"]["skip_bad"])
    split = read_split_file(Path(args.run) / "split.json", folder)
    model = _run_model(args.run, tflite=False)
    export_model(model, cfg, folder, split, Path(args.run) / TFLITE_FILE)
    return 0


def _benchmark(args):
    from rsic.benchmark import run_benchmark

    cfg = load_task_config(args.config, args.overrides, args.data, args.skip_bad)
    if args.backbones:
        cfg["benchmark"]["backbones"] = [b.strip() for b in args.backbones.split(",") if b.strip()]
    run_benchmark(cfg, _need(args.out, "--out"), overwrite=args.overwrite)
    return 0


def _demo(args):
    from rsic.demo import run_demo

    run_demo(args.out, overwrite=args.overwrite)
    return 0


def entry(argv=None):
    run_cli(main, argv)
