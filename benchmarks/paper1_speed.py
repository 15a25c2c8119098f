"""Paper 1's networks side by side: parameters, GMACs per 128x128 patch and training speed.

    python -m benchmarks.paper1_speed [--batch 4] [--steps 3] [--configs authors_logs,small,features]

Builds each configs/landslide/paper1/ config (23 channels), counts parameters and multiply-adds
(common.complexity: convolutions, dense and attention layers; the training model with every head,
and the inference model), then times `--steps` training steps of `--batch` random patches after
one warm-up step. Prints one Markdown table. Speed depends on the machine and its load: say which
machine and how busy it was when quoting it.
"""

import argparse
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args(argv)
    rows = [measure(name, args.batch, args.steps) for name in args.configs.split(",")]
    print("| config | model | parameters | GMACs/patch (training, all heads) | GMACs/patch "
          "(inference) | training patches/s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['config']}` | {r['model']} | {r['params']:,} | {r['gmacs_training']:.1f} | "
              f"{r['gmacs_inference']:.1f} | {r['patches_per_s']:.2f} |")


if __name__ == "__main__":
    main()
