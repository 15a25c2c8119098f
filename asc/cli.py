"""Command line of the acoustic scene task: `python -m asc COMMAND [options]`.

Commands:
    sample      write synthetic sample data in the TAU 2022 Mobile layout
    features    compute the spectrogram cache (HDF5) of a data set
    train       train a teacher or a student (by config) on a data set
    distill     train a student with a teacher's embeddings (--teacher RUN)
    evaluate    accuracy and log loss (overall, per device, per class, 3 groups) -> metrics.json
    predict     scenes of wav files or folders -> CSV (--tflite MODEL: LiteRT only, no TensorFlow)
    export      int8 TFLite of a trained model, with float and int8 accuracy
    complexity  parameters, MACs, int8 bytes; exit code 1 when over the DCASE limits
    demo        sample -> features -> teacher -> student -> evaluate -> export -> summary.json
    download    fetch TAU Urban Acoustic Scenes 2022 Mobile, development, from Zenodo

Bad input prints one line (`error: ...`) and exits with code 2.
"""

import argparse
from pathlib import Path

from asc.download import RECORD, ZENODO_API
from common.cli import add_common_args, run_cli
from common.errors import DataError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "asc"


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m asc", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="write synthetic sample data (TAU 2022 Mobile layout)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-class", type=int, default=30, help="clips per scene (default 30)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("features", help="compute the spectrogram cache of a data set")
    add_common_args(p, out=False)
    p.add_argument("--out", help="cache file (.h5); default <data>/features.h5")

    p = sub.add_parser("train", help="train a teacher or a student")
    add_common_args(p)
    p = sub.add_parser("distill", help="train a student with a teacher's embeddings")
    add_common_args(p)
    p.add_argument("--teacher", required=True, help="run directory of the trained teacher")

    for name, text in (("evaluate", "evaluate a run on the evaluate split"), ("export", "int8 TFLite export")):
        p = sub.add_parser(name, help=text)
        add_common_args(p, out=False, run=True, config=False)

    p = sub.add_parser("predict", help="predict scenes of wav files or folders")
    add_common_args(p, data=False, out=False, config=False)
    p.add_argument("--run", help="run directory (its model.keras; with --tflite, its config)")
    p.add_argument("--tflite", metavar="MODEL.tflite",
                   help="run this int8 TFLite model with LiteRT (no TensorFlow; labels.txt and config.yaml "
                        "beside it, or --run, say what it was trained on)")  # fmt: skip
    p.add_argument("inputs", nargs="+", help="wav files or folders")
    p.add_argument("--out", required=True, help="output CSV file")

    p = sub.add_parser("complexity", help="parameters, MACs and int8 bytes vs the DCASE limits")
    add_common_args(p, data=False, out=False)
    p.add_argument("--run", help="a run directory (its model and exported size) instead of --config")

    p = sub.add_parser("demo", help="the whole pipeline on sample data; writes DIR/summary.json")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=20, help="sample clips per scene (default 20)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of both demo configs, e.g. train.epochs=2")  # fmt: skip

    p = sub.add_parser("download", help="fetch TAU Urban Acoustic Scenes 2022 Mobile, development (Zenodo)")
    p.add_argument("--dest", required=True, help="folder to download and extract into (about 30 GB)")
    p.add_argument("--record", default=RECORD, help=f"Zenodo record (default {RECORD})")
    p.add_argument("--api", default=ZENODO_API, help="Zenodo REST API base URL")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "sample":
        from asc.sample import write_sample

        if args.per_class < 2:
            raise DataError(f"--per-class: need at least 2 clips per scene, got {args.per_class}")
        out = write_sample(args.out, per_class=args.per_class, seed=args.seed)
        print(f"{out}: {10 * args.per_class} clips (10 scenes x {args.per_class})")
        return 0
    # The edge path and the download never import TensorFlow.
    if args.command == "predict" and args.tflite:
        from asc import edge

        cfg = edge.edge_config(args.tflite, args.run, args.overrides)
        edge.predict(args.tflite, args.inputs, args.out, cfg=cfg)
        return 0
    if args.command == "download":
        from asc.download import download

        download(args.dest, record=args.record, api=args.api)
        return 0

    from common.cli import setup_tensorflow

    setup_tensorflow()
    from asc import pipeline
    from asc.config import load

    if args.command == "features":
        cfg = load(args.config, args.overrides, _need(args.data, "--data"))
        pipeline.build_all_features(cfg, args.out)
    elif args.command == "train":
        cfg = load(args.config or CONFIG_DIR / "teacher.yaml", args.overrides, _need(args.data, "--data"))
        pipeline.train(cfg, _need(args.out, "--out"), resume=args.resume, overwrite=args.overwrite)
    elif args.command == "distill":
        cfg = load(args.config or CONFIG_DIR / "student.yaml", args.overrides, _need(args.data, "--data"))
        pipeline.distill(cfg, _need(args.out, "--out"), args.teacher, resume=args.resume, overwrite=args.overwrite)
    elif args.command == "evaluate":
        pipeline.evaluate(pipeline.run_config(args.run, args.overrides, args.data), args.run)
    elif args.command == "export":
        pipeline.export(pipeline.run_config(args.run, args.overrides, args.data), args.run)
    elif args.command == "predict":
        run = _need(args.run, "--run")
        pipeline.predict(pipeline.run_config(run, args.overrides), run, args.inputs, args.out)
    elif args.command == "complexity":
        if args.run:
            cfg = pipeline.run_config(args.run, args.overrides)
        else:
            cfg = load(args.config or CONFIG_DIR / "student.yaml", args.overrides)
        result = pipeline.complexity_report(cfg, args.run)
        return 0 if result["within_limits"] else 1
    elif args.command == "demo":
        if args.per_class < 4:
            raise DataError(f"--per-class: the demo needs at least 4 clips per scene, got {args.per_class}")
        pipeline.demo(args.out, per_class=args.per_class, overrides=args.overrides)
    return 0


def _need(value, option):
    if not value:
        raise DataError(f"{option}: required for this command")
    return value


def cli(argv=None):
    """Entry point: run `main` with the project's error handling (exit code 2 on bad input)."""
    run_cli(main, argv)
