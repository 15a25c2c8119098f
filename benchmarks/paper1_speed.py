"""Paper 1's networks side by side: parameters, GMACs per 128x128 patch and training speed.

    python -m benchmarks.paper1_speed [--batch 4] [--steps 3] [--configs authors_logs,small,features]

Builds each configs/landslide/paper1/ config (23 channels), counts parameters and multiply-adds
(common.complexity: convolutions, dense and attention layers; the training model with every head,
and the inference model), then times `--steps` training steps of `--batch` random patches after
one warm-up step. Also counts the parameters of every rung of the ladder (built, not trained).
Writes OUT/paper1_speed.json and OUT/PAPER1_SPEED.md (stamped with the command, the machine and
the date; docs/paper1.md quotes them). Speed depends on the machine and its load.
"""

import argparse
import sys
import time

import numpy as np

CONFIGS = {"authors_logs": "RAU-Net 128 (the paper's model, se)", "small": "RAU-Net 40 (their small)",
           "features": "authors' U-Net (23 channels)"}


def measure(name, batch, steps):
    """One row: params, GMACs (training model, inference model), training patches/s."""
    import tf_keras as keras

    from common.complexity import model_complexity
    from common.runner import load_task_config
    from landslide.features import num_channels
    from landslide.models import build_models, compile_training_model
    from landslide.task import LandslideTask

    cfg = load_task_config(LandslideTask(), f"paper1/{name}.yaml", ["train.precision=float32"])
    channels = num_channels(cfg["features"])
    keras.utils.set_random_seed(0)
    training, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
    compile_training_model(training, cfg, keras.optimizers.Adam(1e-4))
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (batch, 128, 128, 14)).astype(np.float32)
    y = (rng.uniform(size=(batch, 128, 128, 1)) > 0.98).astype(np.float32)
    training.train_on_batch(x, y)  # warm-up: tracing
    start = time.perf_counter()
    for _ in range(steps):
        training.train_on_batch(x, y)
    speed = batch * steps / (time.perf_counter() - start)
    return {"config": name, "model": CONFIGS.get(name, name), "params": training.count_params(),
            "gmacs_training": model_complexity(training)["macs"] / 1e9,
            "gmacs_inference": model_complexity(inference)["macs"] / 1e9, "patches_per_s": speed}


def rung_params(rung):
    """Parameters of a ladder rung's training model (built, not trained)."""
    import tf_keras as keras

    from common.runner import load_task_config
    from landslide.features import num_channels
    from landslide.models import build_models
    from landslide.task import LandslideTask

    cfg = load_task_config(LandslideTask(), f"paper1/{rung}.yaml", ["train.precision=float32"])
    channels = num_channels(cfg["features"])
    training, _ = build_models(cfg, [0.0] * channels, [1.0] * channels)
    count = training.count_params()
    keras.backend.clear_session()
    return count


def markdown(results):
    """The two tables of PAPER1_SPEED.md."""
    from common.cpuinfo import cpu_line

    m = results["machine"]
    lines = ["# Paper 1's networks: parameters, GMACs, training speed", "",
             f"`{results['command']}` on {m['cpu']} ({m['cores']} cores), {m['date']}, "
             f"TensorFlow {m['tensorflow']}; float32, 128x128 patches, batch {results['batch']}.", "",
             cpu_line(m), "",
             "| config | model | parameters | GMACs/patch (training, all heads) | GMACs/patch "
             "(inference) | training patches/s |", "|---|---|---:|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(f"| `{r['config']}` | {r['model']} | {r['params']:,} | {r['gmacs_training']:.1f} | "
                     f"{r['gmacs_inference']:.1f} | {r['patches_per_s']:.2f} |")
    lines += ["", "Parameters of every rung (training model, built from its config):", "",
              "| rung | parameters |", "|---|---:|"]
    lines += [f"| `{rung}` | {count:,} |" for rung, count in results["rung_params"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    from common.bench import machine, write_outputs
    from landslide.paper import RUNGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", default="benchmarks", help="folder for paper1_speed.json and PAPER1_SPEED.md")
    args = parser.parse_args(argv)
    rows = [measure(name, args.batch, args.steps) for name in args.configs.split(",")]
    results = {"command": "python -m benchmarks.paper1_speed " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": machine(), "batch": args.batch, "steps": args.steps, "rows": rows,
               "rung_params": {rung: rung_params(rung) for rung in [*RUNGS, "small"]}}
    write_outputs(args.out, results, "paper1_speed.json", "PAPER1_SPEED.md", markdown(results))


if __name__ == "__main__":
    main()
