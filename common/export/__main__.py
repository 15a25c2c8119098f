"""`python -m common.export --model model.keras --representative x.npy --out model.tflite`: the
edge export of a .keras file outside a run directory (post-training quantization)."""

import argparse
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.export.api import export_tflite
from common.model_files import add_unsafe_load_arg, load_model_file


def main(argv=None):
    """Parse `argv`, export, print one line; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m common.export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras model file")
    parser.add_argument("--representative", required=True, help="a .npy array of raw inputs (N, ...)")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--budget-mb", type=float, default=20.0, help="size budget in MB (default 20)")
    parser.add_argument("--mode", choices=("auto", "ptq"), default="auto",
                        help="auto = ptq here (QAT needs training data)")
    add_unsafe_load_arg(parser)
    args = parser.parse_args(argv)
    model_path, data_path = Path(args.model), Path(args.representative)
    if not model_path.is_file():
        raise DataError(f"{model_path}: model file not found")
    if not data_path.is_file():
        raise DataError(f"{data_path}: representative data file not found")
    try:
        x = np.load(data_path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{data_path}: not a readable .npy array ({err})") from err
    model = load_model_file(model_path, unsafe_load=args.unsafe_load)
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != len(expected) + 1 or any(e is not None and e != d for e, d in zip(expected, x.shape[1:])):
        raise DataError(f"{data_path}: inputs of shape {x.shape[1:]}, the model expects {expected}")
    report = export_tflite(model, x, args.out, mode=args.mode, size_budget_mb=args.budget_mb)
    print(f"{report['path']}: {report['tflite_bytes']} bytes int8 ({report['quantization']}), "
          f"agreement {report['agreement']:.3f}, max_abs_diff {report['max_abs_diff']:.4f}")
    return 0


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main)
