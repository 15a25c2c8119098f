"""Profile one landslide training step: where the time of a `fit` step goes, by op type.

    python -m benchmarks.profile_step [--config unet_ce] [--width 1] [--batch 8] [--steps 3]
                                      [--set train.precision=mixed_bfloat16 ...]

Traces `--steps` training steps (after two warm-up steps) of the config's compiled training model
with the TensorFlow profiler (the same trace TensorBoard's `profile_batch` writes), then sums the
host time of every op by type and by group: convolution (forward and both backward ops),
BatchNorm, casts, bilinear up-sampling (resize and its gradient), concatenation/split, attention
(matmul, softmax, layer norm), the loss and metric, the optimizer, and the rest. Prints one table
and writes it as JSON next to the trace (benchmarks/tmp/profile/).
"""

import argparse
import glob
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = [
    ("convolution", ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "_FusedConv2D", "_MklConv2D",
                     "_MklNativeConv2D", "_MklFusedConv2D", "_MklNativeFusedConv2D", "_MklNativeConv2DBackpropInput",
                     "_MklNativeConv2DBackpropFilter", "_MklConv2DBackpropInput", "_MklConv2DBackpropFilter",
                     "_MklNativeConv2DWithBias", "_MklNativeConv2DBackpropFilterWithBias", "BiasAddGrad",
                     "BiasAdd")),
    ("batchnorm", ("FusedBatchNormV3", "FusedBatchNormGradV3", "_MklFusedBatchNormV3", "_MklFusedBatchNormGradV3",
                   "_MklNativeFusedBatchNormV3", "_MklNativeFusedBatchNormGradV3", "_MklNativeFusedBatchNormEx", "_FusedBatchNormEx",
                   "AssignMovingAvg",
                   "AssignSubVariableOp")),
    ("cast", ("Cast",)),
    ("upsampling", ("ResizeBilinear", "ResizeBilinearGrad", "ResizeNearestNeighbor", "ResizeNearestNeighborGrad")),
    ("concat/slice", ("ConcatV2", "_MklConcatV2", "_MklConcat", "Slice", "StridedSlice", "StridedSliceGrad", "Pack",
                      "Unpack", "Split", "SplitV")),
    ("pooling", ("MaxPool", "MaxPoolGrad", "_MklMaxPool", "_MklMaxPoolGrad", "_MklNativeMaxPool",
                 "_MklNativeMaxPoolGrad")),
    ("relu", ("Relu", "ReluGrad", "_MklRelu", "_MklReluGrad")),
    ("attention/matmul", ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "_MklMatMul", "_MklBatchMatMulV2",
                          "_MklNativeBatchMatMulV2", "Einsum", "_MklEinsum", "Softmax", "SoftmaxGrad",
                          "_MklSoftmax")),
    ("optimizer", ("ResourceApplyAdam", "ResourceApplyAdamWithAmsgrad", "AssignAddVariableOp")),
]


def group_of(op_type):
    if op_type == "IDLE":
        return "idle (threads waiting)"
    for name, types in GROUPS:
        if op_type in types:
            return name
    return "other (elementwise, loss, metric, reductions, ...)"


def profile(config, width, batch, steps, overrides, out_dir):
    from common.cli import setup_tensorflow

    setup_tensorflow()
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    from common.config import load_config
    from common.train import make_optimizer, set_precision, set_seed
    from landslide.config import DEFAULTS
    from landslide.features import num_channels
    from landslide.models import build_models, compile_training_model

    cfg = load_config(ROOT / "configs" / "landslide" / f"{config}.yaml",
                      [f"model.width={width}", f"train.batch_size={batch}", *overrides], defaults=DEFAULTS)
    if cfg["train"]["precision"] == "auto":
        from common.train import resolve_precision

        cfg["train"]["precision"] = resolve_precision(cfg["train"])[0]
    set_seed(0)
    set_precision(cfg["train"])
    channels = num_channels(cfg["features"])
    training, _ = build_models(cfg, [0.0] * channels, [1.0] * channels)
    compile_training_model(training, cfg, make_optimizer(cfg["train"], 100))
    from common.train import apply_step_options

    apply_step_options(training, cfg["train"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 4, 128, 128, 14)).astype("float32")
    y = (rng.random((batch * 4, 128, 128, 1)) > 0.9).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().prefetch(2)
    from common.weight_gradients import weight_gradients

    with weight_gradients(cfg["train"]) as (matmul_weight_gradients, _):  # as common.train.fit traces it
        training.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    training.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    plain = (time.perf_counter() - start) / steps
    trace_dir = out_dir / f"{config}_{cfg['train']['precision']}"
    tf.profiler.experimental.start(str(trace_dir))
    training.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    tf.profiler.experimental.stop()
    keras_policy = cfg["train"]["precision"]
    from tf_keras import mixed_precision

    mixed_precision.set_global_policy("float32")
    xplane = sorted(glob.glob(str(trace_dir / "**" / "*.xplane.pb"), recursive=True))[-1]
    data, ok = plugin.xspace_to_tools_data([xplane], "framework_op_stats", {})
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [c["id"] if "id" in c else c["label"] for c in table["cols"]]
    per_type = defaultdict(float)
    for row in table["rows"]:
        values = dict(zip(columns, [cell["v"] if cell else None for cell in row["c"]]))
        if values.get("host_or_device", "Host") not in ("Host", None):
            continue
        op_type = values.get("type") or values.get("op_type")
        per_type[op_type] += float(values.get("total_self_time") or 0.0)  # microseconds
    total = sum(per_type.values())
    groups = defaultdict(float)
    for op_type, us in per_type.items():
        groups[group_of(op_type)] += us
    from common.cpuinfo import cpu_info

    report = {
        "machine": cpu_info(),
        "config": config, "width": width, "batch": batch, "steps": steps, "precision": keras_policy,
        "step_s": plain, "patches_per_s": batch / plain,
        "groups_ms_per_step": {k: v / 1000 / steps for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "groups_share": {k: v / total for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "types_ms_per_step": {k: v / 1000 / steps for k, v in sorted(per_type.items(), key=lambda kv: -kv[1])[:25]},
        "options": {**{k: cfg["train"][k] for k in ("steps_per_execution", "jit_compile") if k in cfg["train"]},
                    "matmul_weight_gradients": matmul_weight_gradients},
    }
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="unet_ce")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "tmp" / "profile"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = profile(args.config, args.width, args.batch, args.steps, args.overrides, out)
    name = f"{args.config}_{report['precision']}_w{args.width:g}{'_' + '_'.join(args.overrides) if args.overrides else ''}"
    (out / f"{name.replace('/', '_')}.json").write_text(json.dumps(report, indent=1))
    from common.cpuinfo import cpu_line

    print(cpu_line(report["machine"]))
    print(f"{args.config} width {args.width:g} batch {args.batch} {report['precision']} {report['options']}: "
          f"{report['step_s']:.2f} s/step, {report['patches_per_s']:.2f} patches/s")
    for group, ms in report["groups_ms_per_step"].items():
        print(f"  {group:<50} {ms:8.1f} ms  {100 * report['groups_share'][group]:5.1f} %")
    print("  top op types:", ", ".join(f"{k} {v:.0f} ms" for k, v in list(report["types_ms_per_step"].items())[:12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
