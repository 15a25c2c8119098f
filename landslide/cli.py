"""Command line: `python -m landslide COMMAND` (download, sample, stats, train, evaluate, predict,
export, summary, demo). Bad input prints one line, `error: ...`, and exits with code 2.

Examples:
    python -m landslide download --dest data/l4s           # Landslide4Sense from Zenodo
    python -m landslide sample --out data/l4s_sample --n 64
    python -m landslide train --config configs/landslide/full.yaml --data data/l4s --out runs/full
    python -m landslide train --config configs/landslide/full.yaml --data data/l4s --out runs/cv --fold all
    python -m landslide evaluate --run runs/full            # the run's validation split
    python -m landslide evaluate --run runs/cv --folds      # mean and std over runs/cv/fold_K
    python -m landslide predict --run runs/full --data data/l4s/TestData --out preds
    python -m landslide predict --run runs/full scene.tif --out maps --geojson   # whole GeoTIFF scene
    python -m landslide predict --tflite runs/full/model_int8.tflite --data data/l4s/TestData --out preds
    python -m landslide export --run runs/full
    python -m landslide summary --config configs/landslide/full.yaml
    python -m landslide demo --out runs/demo

`download` and `predict --tflite` never import TensorFlow (an edge device has only LiteRT): keep
this module's top-level imports free of it (landslide.config pulls it, hence `_defaults()`).
"""

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from common.cli import add_common_args, run_cli, setup_tensorflow
from common.config import load_config
from common.errors import ConfigError, RunDirError
from common.io import write_json
from landslide import data as D
from landslide.edge import SCENE_SUFFIXES, output_name, split_inputs, write_mask  # noqa: F401  (public here too)

log = logging.getLogger("landslide")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "landslide"
METRIC_KEYS = ("precision", "recall", "f1", "miou")


# ---------------------------------------------------------------------------------------------
# sample / stats


def cmd_sample(args):
    from landslide.sample import write_sample

    if not args.out:
        raise ConfigError("sample: --out is required")
    info = write_sample(args.out, n=args.n, seed=args.seed)
    print(f"wrote {args.out}: {info['TrainData']} training patches with masks, {info['ValidData']} valid, "
          f"{info['TestData']} test; {100 * info['landslide_fraction']:.1f}% landslide pixels")


def _defaults():
    """The config schema (imported on use: it imports TensorFlow)."""
    from landslide.config import DEFAULTS

    return DEFAULTS


def _config(args):
    cfg = load_config(args.config, args.overrides, defaults=_defaults())
    if getattr(args, "data", None):
        cfg["data"]["root"] = str(Path(args.data).resolve())
    return cfg


def _labelled(cfg):
    if not cfg["data"]["root"]:
        raise ConfigError("no data set: give --data DIR (or data.root in the config)")
    folder = D.labelled_folder(cfg["data"]["root"])
    return D.index_folder(folder, masks=True, patch_size=cfg["data"]["patch_size"])


def _split(cfg, patches):
    d = cfg["data"]
    return D.make_split(patches.names, protocol=d["split"], folds=d["folds"], fold=d["fold"],
                        val_fraction=d["val_fraction"], seed=d["split_seed"])


def cmd_stats(args):
    from landslide.stats import STATS_FILE, compute_stats, save_stats

    cfg = _config(args)
    patches = _labelled(cfg)
    patches = patches.subset(_split(cfg, patches)["train"])
    stats = compute_stats(patches, cfg["features"], normalization=cfg["data"]["normalization"],
                          patch_size=cfg["data"]["patch_size"])
    out = Path(args.out or ".") / STATS_FILE
    save_stats(stats, out)
    print(f"wrote {out}: {stats['patches']} training patches, {stats['nan_values']} NaN values replaced")


# ---------------------------------------------------------------------------------------------
# train


def train_run(cfg, out, *, resume=False, overwrite=False):
    """Train one run of `cfg` into `out` (split.json, stats.json, the common run files).

    Returns:
        (run directory, keras History).
    """
    patches = _labelled(cfg)  # bad data is reported before TensorFlow is even imported
    split = _split(cfg, patches)

    from common.train import fit, make_optimizer, prepare_run_dir
    from landslide.models import build_models, compile_training_model
    from landslide.stats import STATS_FILE, compute_stats, normalisation, save_stats

    run = prepare_run_dir(out, config=cfg, resume=resume, overwrite=overwrite)
    D.write_split(run, split)
    train_p, val_p = patches.subset(split["train"]), patches.subset(split["val"])
    size = cfg["data"]["patch_size"]
    stats = compute_stats(train_p, cfg["features"], normalization=cfg["data"]["normalization"], patch_size=size)
    save_stats(stats, run / STATS_FILE)
    mean, std = normalisation(stats, cfg["data"]["normalization"])
    cache = D.should_cache(len(patches.images), size, cfg["data"]["cache"])
    tcfg = cfg["train"]
    train_ds = D.training_dataset(train_p, batch_size=tcfg["batch_size"], seed=tcfg["seed"],
                                  augment_data=cfg["data"]["augment"], cache=cache, patch_size=size)
    val_ds = D.training_dataset(val_p, batch_size=tcfg["batch_size"], shuffle=False, augment_data=False,
                                cache=cache, patch_size=size)
    steps = tcfg["steps_per_epoch"] or math.ceil(len(train_p.images) / tcfg["batch_size"])
    models = {}

    def build_fn():
        training, models["inference"] = build_models(cfg, mean, std)
        return compile_training_model(training, cfg, make_optimizer(tcfg, steps))

    log.info("training on %d patches, validating on %d (%s split)", len(train_p.images), len(val_p.images),
             split["protocol"])
    with D.reraise_data_errors():
        _, history = fit(build_fn, train_ds, val_ds, tcfg, run, final_model_fn=lambda _: models["inference"])
    return run, history


def cmd_train(args):
    cfg = _config(args)
    if args.fold is None:
        train_run(cfg, args.out or "runs/landslide", resume=args.resume, overwrite=args.overwrite)
        return
    cfg["data"]["split"] = "kfold"
    folds = range(cfg["data"]["folds"]) if args.fold == "all" else [_fold_number(args.fold, cfg)]
    out = Path(args.out or "runs/landslide")
    for fold in folds:
        cfg["data"]["fold"] = fold
        target = out / f"fold_{fold}" if args.fold == "all" else out
        print(f"fold {fold} of {cfg['data']['folds']} -> {target}")
        train_run(cfg, target, resume=args.resume, overwrite=args.overwrite)


def _fold_number(text, cfg):
    try:
        fold = int(text)
    except ValueError:
        raise ConfigError(f"--fold must be a fold number or 'all', got {text!r}") from None
    if not 0 <= fold < cfg["data"]["folds"]:
        raise ConfigError(f"--fold {fold}: must be in 0..{cfg['data']['folds'] - 1} (data.folds)")
    return fold


# ---------------------------------------------------------------------------------------------
# evaluate


def _load_run(run, overrides=()):
    """The run's config (with `--set` overrides applied) and its inference model."""
    import landslide.models  # noqa: F401  (registers the custom layers)
    from common.train import load_run_model

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise RunDirError(f"{run}: not a run directory (no config.yaml)")
    cfg = load_config(run / "config.yaml", overrides, defaults=_defaults())
    return cfg, load_run_model(run)


def _eval_patches(run, cfg, data=None):
    """The labelled patches to evaluate on: all of `data`, else the run's validation split."""
    size = cfg["data"]["patch_size"]
    if data:
        return D.index_folder(D.labelled_folder(data), masks=True, patch_size=size)
    if not cfg["data"]["root"]:
        raise ConfigError(f"{run}: the run does not name its data set; give --data")
    patches = D.index_folder(D.labelled_folder(cfg["data"]["root"]), masks=True, patch_size=size)
    return patches.subset(D.read_split(run)["val"])


def predict_probabilities(model, patches, *, patch_size=D.PATCH_SIZE, batch_size=8):
    """Yield (landslide probabilities (B, H, W), masks (B, H, W) uint8) batch by batch."""
    ds = D.read_dataset(patches, patch_size=patch_size).batch(batch_size)
    with D.reraise_data_errors():
        for image, mask, _ in ds:
            probs = np.asarray(model(image, training=False), np.float32)[..., 0]
            yield probs, mask.numpy()[..., 0]


def segmentation_metrics(cm):
    """precision, recall, F1 of the landslide class and mIoU over both classes (fractions)."""
    from common.metrics import mean_iou, per_class_scores

    scores = per_class_scores(cm)
    return {
        "precision": float(scores["precision"][1]),
        "recall": float(scores["recall"][1]),
        "f1": float(scores["f1"][1]),
        "miou": float(mean_iou(cm)),
    }


def evaluate_run(run, data=None, threshold=0.5, batch_size=8):
    """Stream the run's model over its validation split (or all of `data`); write RUN/metrics.json.

    Returns:
        dict with exactly precision, recall, f1 (landslide class) and miou (both classes).
    """
    from common.metrics import ConfusionMatrix

    cfg, model = _load_run(run)
    patches = _eval_patches(run, cfg, data)
    cm = ConfusionMatrix(2)
    for probs, mask in predict_probabilities(model, patches, patch_size=cfg["data"]["patch_size"],
                                             batch_size=batch_size):
        cm.update(mask, (probs > threshold).astype(np.int64))
    metrics = segmentation_metrics(cm)
    write_json(Path(run) / "metrics.json", metrics)
    write_pictures(run, model, patches, cfg["data"]["patch_size"], threshold)
    return metrics


def rgb_composite(image):
    """(H, W, 14) raw bands -> (H, W, 3) display RGB from B4, B3, B2, stretched to the 2-98 percentiles."""
    rgb = image[..., [3, 2, 1]].astype("float64")
    low, high = np.percentile(rgb, 2), np.percentile(rgb, 98)
    return np.clip((rgb - low) / max(high - low, 1e-6), 0, 1)


def write_pictures(run, model, patches, patch_size, threshold=0.5, count=4):
    """RUN/training_curves.png and RUN/examples.png (RGB, ground truth, prediction, errors)."""
    from common.plots import plot_history, plot_segmentation_examples
    from common.train import read_history

    history = read_history(run)
    if history:
        plot_history(history, Path(run) / "training_curves.png", title=f"training: {Path(run).name}")
    if not patches.masks:
        return
    # Show the patches with the most landslide pixels: empty ones say little.
    masks = [D.read_mask(path, patch_size) for path in patches.masks]
    chosen = np.argsort([-int(mask.sum()) for mask in masks], kind="stable")[:count]
    images = np.stack([D.read_image(patches.images[i], patch_size)[0] for i in chosen])
    probs = np.asarray(model(images, training=False), np.float32)[..., 0]
    plot_segmentation_examples(
        np.stack([rgb_composite(image) for image in images]),
        np.stack([masks[i] for i in chosen]),
        probs > threshold,
        Path(run) / "examples.png",
        title="landslide examples (validation split)",
    )


def evaluate_folds(parent, data=None):
    """Evaluate every RUN/fold_K and write RUN/metrics.json (means) and RUN/metrics_folds.json."""
    runs = [run for run in sorted(Path(parent).glob("fold_*"), key=D.natural_key) if (run / "model.keras").is_file()]
    if not runs:
        raise RunDirError(f"{parent}: no trained fold_K runs (train with --fold all)")
    per_fold = [evaluate_run(run, data) for run in runs]
    mean = {key: float(np.mean([m[key] for m in per_fold])) for key in METRIC_KEYS}
    std = {key: float(np.std([m[key] for m in per_fold])) for key in METRIC_KEYS}
    write_json(Path(parent) / "metrics.json", mean)
    write_json(Path(parent) / "metrics_folds.json",
               {"folds": [run.name for run in runs], "per_fold": per_fold, "mean": mean, "std": std})
    return mean, std


def cmd_evaluate(args):
    if args.folds:
        mean, std = evaluate_folds(args.run, args.data)
        print("  ".join(f"{k} {100 * mean[k]:.2f} +- {100 * std[k]:.2f}" for k in METRIC_KEYS))
        return
    metrics = evaluate_run(args.run, args.data, threshold=args.threshold)
    print("  ".join(f"{k} {100 * metrics[k]:.2f}" for k in METRIC_KEYS), f"-> {Path(args.run) / 'metrics.json'}")


# ---------------------------------------------------------------------------------------------
# predict


def predict_files(run, inputs, out, threshold=0.5, batch_size=8):
    """Predict a mask for every .h5 patch in `inputs`; write OUT/mask_N.h5. Returns the paths."""
    cfg, model = _load_run(run)
    files = D.image_files(inputs)
    size = cfg["data"]["patch_size"]
    for path in files:
        D.check_image_header(path, size)
    patches = D.PatchFolder(Path(out), files, [])
    written = []
    start = 0
    for probs, _ in predict_probabilities(model, patches, patch_size=size, batch_size=batch_size):
        for offset, prob in enumerate(probs):
            target = Path(out) / output_name(files[start + offset])
            write_mask(target, (prob > threshold).astype(np.uint8))
            written.append(target)
        start += len(probs)
    return written


def predict_scenes(run, scenes, out, threshold=0.5, overlap=32, geojson=False):
    """Landslide maps of whole GeoTIFF scenes (landslide/scene.py): OUT/<name>_landslide.tif
    (0/1 mask, nodata 255) and, with `geojson`, OUT/<name>_landslide.geojson polygons."""
    from landslide.scene import predict_scene

    cfg, model = _load_run(run)

    def predict_fn(tiles):
        return np.asarray(model(tiles, training=False), np.float32)

    written = []
    for scene in map(Path, scenes):
        target = Path(out) / f"{scene.stem}_landslide.tif"
        predict_scene(scene, target, predict_fn, bands=D.NUM_BANDS, patch=cfg["data"]["patch_size"],
                      overlap=overlap, threshold=threshold,
                      geojson_path=target.with_suffix(".geojson") if geojson else None, progress=False)
        written.append(target)
    return written


def cmd_predict(args):
    inputs = ([args.data] if args.data else []) + list(args.inputs)
    if not inputs:
        raise ConfigError("predict: give --data DIR or .h5 patches / .tif scenes")
    if not args.out:
        raise ConfigError("predict: --out DIR is required")
    if bool(args.run) == bool(args.tflite):
        raise ConfigError("predict: give either --run RUN (Keras) or --tflite MODEL.tflite (edge runtime)")
    scenes, patches = split_inputs(inputs)
    scene_options = {"threshold": args.threshold, "overlap": args.overlap, "geojson": args.geojson}
    if args.tflite:  # the edge runtime: LiteRT, numpy and h5py only
        from landslide import edge

        scene_fn, patch_fn, model = edge.predict_scenes, edge.predict_patches, args.tflite
    else:
        scene_fn, patch_fn, model = predict_scenes, predict_files, args.run
    if scenes:
        written = scene_fn(model, scenes, args.out, **scene_options)
        print(f"wrote {len(written)} scene masks to {args.out}")
    if patches:
        written = patch_fn(model, patches, args.out, threshold=args.threshold)
        print(f"wrote {len(written)} masks to {args.out}")


# ---------------------------------------------------------------------------------------------
# download


def cmd_download(args):
    from landslide.download import download

    root, counts = download(args.dest, record=args.record, api=args.api, quiet=args.quiet)
    print(f"Landslide4Sense is in {root}: {counts['TrainData']} labelled training patches, "
          f"{counts['ValidData']} valid, {counts['TestData']} test")
    print(f"use it with: --data {root}")


# ---------------------------------------------------------------------------------------------
# export


def load_arrays(patches, limit, size):
    """Up to `limit` raw images (N, H, W, 14) float32, NaNs replaced, and masks (N, H, W, 1) or None."""
    images, masks = [], []
    for i, image_path in enumerate(patches.images[:limit]):
        images.append(D.read_image(image_path, size)[0])
        if patches.masks:
            masks.append(D.read_mask(patches.masks[i], size))
    return np.stack(images), (np.stack(masks)[..., None] if masks else None)


def f1_metric(labels, probs):
    """Landslide F1 of probabilities thresholded at 0.5 against 0/1 labels (any equal shapes)."""
    from common.metrics import ConfusionMatrix

    cm = ConfusionMatrix(2)
    cm.update(np.asarray(labels).reshape(-1), (np.asarray(probs).reshape(-1) > 0.5).astype(np.int64))
    return segmentation_metrics(cm)["f1"]


def export_run(run, data=None, mode="auto", overrides=()):
    """int8 TFLite of the run's inference model (the ensemble included): RUN/model_int8.tflite.

    QAT fine-tunes on a few training batches (`export.qat_steps`); the converter is calibrated on
    `export.calibration_patches` training patches; parity and F1 are checked on the validation
    split. Returns the export report dict.
    """
    from common.export import export_tflite
    from landslide.models import base_loss

    cfg, model = _load_run(run, overrides)
    if data:
        cfg["data"]["root"] = str(Path(data).resolve())
    size = cfg["data"]["patch_size"]
    patches = _labelled(cfg)
    split = D.read_split(run) if (Path(run) / D.SPLIT_FILE).is_file() else _split(cfg, patches)
    train_p, val_p = patches.subset(split["train"]), patches.subset(split["val"])
    ecfg = cfg["export"]
    calibration, _ = load_arrays(train_p, ecfg["calibration_patches"], size)
    heldout, heldout_labels = load_arrays(val_p, 256, size)
    train_ds = D.training_dataset(train_p, batch_size=min(8, cfg["train"]["batch_size"]),
                                  seed=cfg["train"]["seed"], patch_size=size)
    return export_tflite(
        model, calibration, Path(run) / "model_int8.tflite", mode=mode, train_data=train_ds.repeat(),
        loss=base_loss(cfg["loss"]), qat_epochs=ecfg["qat_epochs"], qat_steps=ecfg["qat_steps"],
        qat_lr=ecfg["qat_lr"], heldout=heldout, heldout_labels=heldout_labels, metric=f1_metric,
        metric_name="f1", size_budget_mb=ecfg["size_budget_mb"],
    )


def cmd_export(args):
    report = export_run(args.run, args.data, mode=args.mode, overrides=args.overrides)
    print(f"wrote {report['path']}: {report['tflite_bytes'] / 1e6:.2f} MB, {report['quantization']}, "
          f"agreement {100 * report['agreement']:.2f}%, F1 keras {report['keras_metric']:.4f} "
          f"tflite {report['tflite_metric']:.4f}")


# ---------------------------------------------------------------------------------------------
# summary / demo


def model_summary(cfg):
    """Parameters and MACs of a config's models (normalisation statistics do not change them)."""
    from common.complexity import model_complexity
    from landslide.features import num_channels
    from landslide.models import build_models

    channels = num_channels(cfg["features"])
    training, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
    complexity = model_complexity(inference)
    return {"params": training.count_params(), "inference_params": complexity["params"],
            "macs": complexity["macs"], "channels": channels, "outputs": training.output_shape[-1]}


def cmd_summary(args):
    cfg = load_config(args.config, args.overrides, defaults=_defaults())
    info = model_summary(cfg)
    print(f"{args.config or 'defaults'}: {info['params']:,} parameters, {info['macs'] / 1e9:.2f} GMACs per "
          f"{cfg['data']['patch_size']}x{cfg['data']['patch_size']} patch, {info['channels']} input channels "
          f"(14 bands + engineered), {info['outputs']} output head(s)")


LADDER = ["unet_ce", "features", "residual", "attention", "multires"]  # the rungs below full.yaml


def tiny_rung_config(rung):
    """A rung of the ablation ladder at the tiny model's size: the rung's own switches, with every
    value in which tiny.yaml differs from full.yaml (width, heads, schedule, split) applied on top."""
    defaults = _defaults()
    tiny = load_config(CONFIG_DIR / "tiny.yaml", defaults=defaults)
    full = load_config(CONFIG_DIR / "full.yaml", defaults=defaults)
    cfg = load_config(CONFIG_DIR / f"{rung}.yaml", defaults=defaults)
    for section, values in tiny.items():
        for key, value in values.items():
            if value != full[section][key]:
                cfg[section][key] = value
    return cfg


def run_ladder(out, data):
    """Train and evaluate every lower rung of the ladder at tiny width; summary rows (float F1 only)."""
    from common.complexity import model_complexity

    rows = []
    for rung in LADDER:
        cfg = tiny_rung_config(rung)
        cfg["data"]["root"] = str(Path(data).resolve())
        cfg["train"]["verbose"] = 0
        run, _ = train_run(cfg, Path(out) / "ladder" / rung, overwrite=True)
        metrics = evaluate_run(run)
        complexity = model_complexity(_load_run(run)[1])
        log.info("ladder rung %s: F1 %.4f", rung, metrics["f1"])
        rows.append({"task": "landslide", "model": f"ladder: {rung}.yaml, width 1/16", "params": complexity["params"],
                     "macs": complexity["macs"], "metric_name": "f1", "float_metric": metrics["f1"],
                     "int8_metric": None, "tflite_bytes": None, "latency_ms": None})
    return rows


def run_demo(out, n=48, seed=0, config=None, ladder=True):
    """Sample data -> the lower rungs of the ladder (tiny width) -> train the tiny full model ->
    evaluate -> export; write OUT/summary.json."""
    from common.tflite_runtime import TFLiteModel
    from landslide.sample import write_sample

    out = Path(out)
    data = out / "landslide_data"
    clock = time.perf_counter()
    if not (data / "TrainData" / "img").is_dir():
        write_sample(data, n=n, seed=seed)
    cfg = load_config(config or CONFIG_DIR / "tiny.yaml", ["train.verbose=0"], defaults=_defaults())
    cfg["data"]["root"] = str(data.resolve())
    log.info("sample data in %s (%.0f s)", data, time.perf_counter() - clock)
    rows = run_ladder(out, data) if ladder else []
    run, _ = train_run(cfg, out / "landslide_run", overwrite=True)
    log.info("trained %s (%.0f s)", run, time.perf_counter() - clock)
    metrics = evaluate_run(run)
    log.info("evaluated: F1 %.4f (%.0f s)", metrics["f1"], time.perf_counter() - clock)
    report = export_run(run)
    log.info("exported: int8 F1 %s (%.0f s)", report["tflite_metric"], time.perf_counter() - clock)
    example = D.read_image(D.index_folder(D.labelled_folder(data), masks=True).images[0])[0]
    latency = TFLiteModel(run / "model_int8.tflite").latency_ms(example)
    row = {
        "task": "landslide",
        "model": "full (features+residual+attention+multires, focal+IoU), width 1/16",
        "params": report["params"],
        "macs": report["macs"],
        "metric_name": "f1",
        "float_metric": metrics["f1"],
        "int8_metric": report["tflite_metric"],
        "tflite_bytes": report["tflite_bytes"],
        "latency_ms": latency,
    }
    write_json(out / "summary.json", rows + [row])
    return row


def cmd_demo(args):
    started = time.perf_counter()
    row = run_demo(args.out or "runs/demo", n=args.n, seed=args.seed, config=args.config)
    print(json.dumps(row, indent=2))
    print(f"demo finished in {time.perf_counter() - started:.0f} s")


# ---------------------------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m landslide", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    from common.download import ZENODO_API
    from landslide.download import RECORD

    p = sub.add_parser("download", help="fetch Landslide4Sense from Zenodo (resumable, md5-checked, unpacked)")
    p.add_argument("--dest", required=True, help="folder to download and unpack into")
    p.add_argument("--record", default=RECORD, help=f"Zenodo record id (default {RECORD})")
    p.add_argument("--api", default=ZENODO_API, help=f"Zenodo REST API (default {ZENODO_API})")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("sample", help="write a sample data set in the Landslide4Sense layout")
    p.add_argument("--out", help="data set folder to create")
    p.add_argument("--n", type=int, default=64, help="labelled training patches (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = add_common_args(sub.add_parser("stats", help="per-channel statistics of the training split"))
    p.set_defaults(func=cmd_stats)

    p = add_common_args(sub.add_parser("train", help="train a model (writes a run directory)"))
    p.add_argument("--fold", help="k-fold protocol: validation fold K (0-based), or 'all' for OUT/fold_K")
    p.set_defaults(func=cmd_train)

    p = add_common_args(sub.add_parser("evaluate", help="precision, recall, F1, mIoU -> RUN/metrics.json"),
                        out=False, run=True, config=False)
    p.add_argument("--folds", action="store_true", help="RUN holds fold_K runs: report their mean and std")
    p.add_argument("--threshold", type=float, default=0.5)
    p.set_defaults(func=cmd_evaluate)

    p = add_common_args(sub.add_parser("predict", help="a mask_N.h5 per image_N.h5, a map per GeoTIFF scene"),
                        config=False)
    p.add_argument("inputs", nargs="*", help=".h5 patches, folders of them, or .tif scenes")
    p.add_argument("--run", help="run directory written by train (the Keras model)")
    p.add_argument("--tflite", help="exported .tflite model instead of --run: runs on LiteRT without TensorFlow")
    p.add_argument("--threshold", type=float, default=0.5, help="landslide probability above which a pixel is 1")
    p.add_argument("--overlap", type=int, default=32, help="scenes: pixels shared by neighbouring tiles (default 32)")
    p.add_argument("--geojson", action="store_true", help="scenes: also OUT/<scene>_landslide.geojson polygons")
    p.set_defaults(func=cmd_predict)

    p = add_common_args(sub.add_parser("export", help="int8 TFLite -> RUN/model_int8.tflite"),
                        out=False, run=True, config=False)
    p.add_argument("--mode", choices=["auto", "qat", "ptq"], default="auto")
    p.set_defaults(func=cmd_export)

    p = add_common_args(sub.add_parser("summary", help="parameters and MACs of a config's model"),
                        data=False, out=False)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("demo", help="sample data -> train tiny -> evaluate -> export -> OUT/summary.json")
    p.add_argument("--out", help="demo folder (default runs/demo)")
    p.add_argument("--config", help="config (default configs/landslide/tiny.yaml)")
    p.add_argument("--n", type=int, default=48, help="labelled sample patches")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command not in ("sample", "download") and not getattr(args, "tflite", None):
        setup_tensorflow()
    return args.func(args)


if __name__ == "__main__":
    run_cli(main)
