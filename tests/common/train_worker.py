"""A tiny training job run in subprocesses by the distribution and interruption tests.

    python tests/common/train_worker.py --out RUN [--epochs 4] [--strategy default]
        [--logical-cpus 2] [--epoch-seconds 0]

Prints one JSON line {"loss": [...]} at the end; exits 2 on the project's errors like the CLIs.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--epoch-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    devices = []
    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
        devices = [f"/cpu:{i}" for i in range(args.logical_cpus)]

    from common.config import load_config
    from common.train import TRAIN_DEFAULTS, fit, make_optimizer, prepare_run_dir, start_strategy

    overrides = [
        f"train.epochs={args.epochs}",
        f"train.strategy={args.strategy}",
        f"train.devices={json.dumps(devices)}",
        "train.verbose=0",
        "train.lr=0.05",
        "train.batch_size=32",
        # The runs are compared to 1e-3: bfloat16 sums in another order differ by more than that.
        "train.precision=float32",
    ]
    cfg = load_config(None, overrides, defaults={"train": dict(TRAIN_DEFAULTS)})
    start_strategy(cfg["train"])  # before any TensorFlow op, as multi-worker training requires
    run = prepare_run_dir(args.out, config=cfg)

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 512)
    x = (rng.normal(size=(512, 8)) + np.eye(3, 8)[y] * 2).astype("float32")
    # No shuffling: every strategy sees the same global batches in the same order.
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg["train"]["batch_size"])

    def build():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        outputs = keras.layers.Dense(3, activation="softmax")(hidden)
        model = keras.Model(inputs, outputs)
        model.compile(make_optimizer(cfg["train"], 16), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    class Slow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(args.epoch_seconds)

    _, history = fit(build, train_ds, None, {**cfg["train"], "monitor": "loss"}, run, extra_callbacks=[Slow()])
    print(json.dumps({"loss": history.history["loss"]}), flush=True)


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main)
