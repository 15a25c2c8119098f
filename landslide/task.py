"""Landslide segmentation on Landslide4Sense (paper 1) as a common.task.Task.

Items of a split are image file names (image_N.h5). The reported split is `val` (the k-fold
validation fold, or the holdout share); under `train.select_on: inner` (the default) the epoch is
chosen on `inner`, a seeded `data.inner_val_fraction` of the training patches.
"""

from importlib import import_module
from pathlib import Path

import numpy as np

from common.cli import add_shorthand
from common.config import load_config
from common.download import ZENODO_API
from common.errors import ConfigError
from common.runner import load_task_config, need_data, outputs, say
from common.task import Command, DemoRun, Task, carve_inner
from landslide import data as D
from landslide import download as fetch
from landslide import edge
from landslide.config import DEFAULTS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "landslide"
LADDER = ["unet_ce", "features", "residual", "attention", "multires"]  # the rungs below full.yaml
CLASS_NAMES = ["background", "landslide"]
# metrics.json, in terminal order. precision, recall, f1, iou_landslide: the landslide class,
# pixels pooled over all images; miou, f1_mean: the mean of the two classes' IoU / F1, pixels
# pooled (f1_mean is what paper 1's authors' code calls F1); miou_per_image: each image's two-class
# mean IoU, averaged (common.metrics.mean_iou_per_image: images without landslides).
METRIC_KEYS = ("precision", "recall", "f1", "iou_landslide", "miou", "miou_per_image", "f1_mean")


def image_confusions(labels, probs, threshold=0.5):
    """Per-image 2x2 confusion matrices (N, 2, 2) of probabilities above `threshold` against 0/1
    labels; `labels` and `probs` are (N, H, W) or (N, H, W, 1)."""
    from common.metrics import per_image_confusion

    labels = np.asarray(labels).reshape(len(labels), -1)
    predicted = (np.asarray(probs).reshape(labels.shape) > threshold).astype(np.int64)
    return per_image_confusion(labels, predicted, 2)


def segmentation_metrics(matrices):
    """The METRIC_KEYS scores (fractions) of per-image confusion matrices (N, 2, 2)."""
    from common.metrics import mean_iou_per_image, per_class_scores

    pooled = per_class_scores(np.sum(matrices, axis=0))
    scores = {**{key: pooled[key][1] for key in ("precision", "recall", "f1")},
              "iou_landslide": pooled["iou"][1], "miou": np.mean(pooled["iou"]),
              "miou_per_image": mean_iou_per_image(matrices), "f1_mean": np.mean(pooled["f1"])}
    return {key: float(scores[key]) for key in METRIC_KEYS}


def all_metrics(labels, probs):
    """Every METRIC_KEYS score of probabilities (N, H, W[, 1]) thresholded at 0.5 against labels."""
    return segmentation_metrics(image_confusions(labels, probs))


def f1_metric(labels, probs):
    """Landslide F1 of probabilities (N, H, W[, 1]) thresholded at 0.5 against 0/1 labels."""
    return all_metrics(labels, probs)["f1"]


def check_augment(augment_cfg):
    """The `augment:` section, checked (ConfigError names the key)."""
    p = augment_cfg["rotation_probability"]
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"config key 'augment.rotation_probability' must be in [0, 1], got {p}")
    for key in ("cutmix_max", "off_last_epochs"):
        if augment_cfg[key] < 0:
            raise ConfigError(f"config key 'augment.{key}' must be >= 0, got {augment_cfg[key]}")
    return augment_cfg


def tiny_rung_config(rung):
    """A rung of the ablation ladder at the tiny model's size: the rung's own switches, with every
    value in which tiny.yaml differs from full.yaml (width, heads, schedule, split) applied on
    top."""
    tiny, full, cfg = (load_config(CONFIG_DIR / f"{name}.yaml", defaults=DEFAULTS)
                       for name in ("tiny", "full", rung))
    for section, values in tiny.items():
        cfg[section].update({k: v for k, v in values.items() if v != full[section][k]})
    return cfg


def model_summary(cfg):
    """Parameters and MACs of a config's models (normalisation statistics do not change them)."""
    from common.complexity import model_summary as summary
    from landslide.features import num_channels
    from landslide.models import build_models

    channels = num_channels(cfg["features"])
    training, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
    info = summary(inference)
    return {"params": training.count_params(), "inference_params": info["params"],
            "macs": info["macs"], "channels": channels, "outputs": training.output_shape[-1],
            "input_shape": info["input_shape"], "output_shape": info["output_shape"]}


class LandslideTask(Task):
    name = "landslide"
    defaults = DEFAULTS
    description = ("Landslide segmentation on Landslide4Sense (14-band Sentinel-2 + slope + DEM "
                   "patches)")
    config_dir = CONFIG_DIR
    train_config = "full.yaml"
    metric_name = "f1"
    secondary_metrics = ("iou_landslide", "miou", "miou_per_image")
    reported_split = "val"
    inner_split = "inner"
    classifier = False
    edge_batch = edge.PREDICT_BATCH
    predict_out_help = ("output folder: mask_N.h5 per image_N.h5, <scene>_landslide.tif per scene "
                        "(inputs in several folders sharing a name: their folders mirrored below OUT)")

    def describe(self, cfg):
        from landslide.features import num_channels

        m = cfg["model"]
        channels = f"{num_channels(cfg['features'])} channels"
        if m["family"] == "authors_unet":
            return f"authors' U-Net, {channels}, {cfg['loss']['name']} loss"
        if m["family"] == "rau_net":
            heads = "/".join(f"{s:g}x" for s in m["head_scales"])
            return (f"RAU-Net {m['filters']} filters, {m['block_attention']} attention, heads "
                    f"{heads}, {channels}, {cfg['loss']['name']} loss")
        parts = ["features"] if any(cfg["features"].values()) else []
        parts += [name for name in ("residual", "attention", "multires") if m[name]]
        width = f", width 1/{round(1 / m['width'])}" if m["width"] < 1 else ""
        return f"U-Net{''.join('+' + p for p in parts)}, {cfg['loss']['name']} loss{width}"

    # -- data --------------------------------------------------------------------------------

    def open_data(self, cfg):
        folder = D.labelled_folder(cfg["data"]["root"])
        return D.index_folder(folder, masks=True, patch_size=cfg["data"]["patch_size"])

    def class_names(self, data):
        return CLASS_NAMES

    def make_split(self, cfg, data):
        d = cfg["data"]
        split = D.make_split(data.names, protocol=d["split"], folds=d["folds"], fold=d["fold"],
                             val_fraction=d["val_fraction"], seed=d["split_seed"],
                             fold_order=d["fold_order"])
        if cfg["train"]["select_on"] == "reported":
            return split
        train, inner = carve_inner(split["train"], d["inner_val_fraction"], d["split_seed"])
        return {"train": train, "inner": inner, "val": split["val"]}

    def check_split(self, cfg, data, split):
        """Every patch of every split read as training reads it (`read_image`: no infinite
        values, not all NaN; `read_mask`: only 0 and 1): the headers were checked by `open_data`."""
        size = cfg["data"]["patch_size"]
        patches = data.subset(list(dict.fromkeys(name for names in split.values() for name in names)))
        for image, mask in zip(patches.images, patches.masks):
            D.read_image(image, size)
            D.read_mask(mask, size)

    def split_info(self, cfg, split):
        d = cfg["data"]
        keys = ("folds", "fold", "fold_order", "val_fraction", "inner_val_fraction")
        return {"protocol": d["split"], **{key: d[key] for key in keys}, "seed": d["split_seed"]}

    def split_ids(self, data, split):
        return {name: list(items) for name, items in split.items()}

    def split_from_ids(self, data, ids):
        data.subset([name for names in ids.values() for name in names])  # DataError: unknown name
        return self.split_ids(data, ids)

    def all_items(self, data):
        return data.names

    # -- training ----------------------------------------------------------------------------

    def register_layers(self):
        import landslide.models  # noqa: F401

    def error_context(self):
        return D.reraise_data_errors()

    def datasets(self, cfg, data, split):
        d, t, a = cfg["data"], cfg["train"], check_augment(cfg["augment"])
        cache = D.should_cache(len(data.images), d["patch_size"], d["cache"])
        self._augment_switch = None
        if d["augment"] and a["off_last_epochs"] > 0:
            import tensorflow as tf

            self._augment_switch = tf.Variable(1, dtype=tf.int32, trainable=False,
                                               name="augment_switch")

        def dataset(items, train=False):
            return D.training_dataset(data.subset(items), batch_size=t["batch_size"],
                                      seed=t["seed"], shuffle=train, cache=cache,
                                      augment_data=train and d["augment"],
                                      patch_size=d["patch_size"], augment_cfg=a,
                                      switch=self._augment_switch if train else None)

        steps = t["steps_per_epoch"] or -(-len(split["train"]) // t["batch_size"])
        return dataset(split["train"], True), dataset(split[self.selection_split(cfg)]), steps

    def build(self, cfg, data, split, run_dir):
        from landslide.features import normalisation, training_stats
        from landslide.models import build_models

        stats = training_stats(cfg, data.subset(split["train"]), run_dir)  # RUN/stats.json
        return build_models(cfg, *normalisation(stats, cfg["data"]["normalization"]))

    def label_loss(self, cfg):
        from landslide.models import base_loss

        return base_loss(cfg["loss"])

    def compile(self, model, cfg, optimizer):
        from landslide.models import compile_training_model

        compile_training_model(model, cfg, optimizer)

    def callbacks(self, cfg, data, split):
        switch = getattr(self, "_augment_switch", None)
        if switch is None:
            return []
        from common.augment import AugmentOff

        return [AugmentOff(switch, cfg["train"]["epochs"], cfg["augment"]["off_last_epochs"])]

    # -- evaluation --------------------------------------------------------------------------

    def examples(self, cfg, data, items):
        size, patches = cfg["data"]["patch_size"], data.subset(items)
        images = np.stack([D.read_image(path, size)[0] for path in patches.images])
        return images, np.stack([D.read_mask(path, size) for path in patches.masks])[..., None]

    metric = staticmethod(f1_metric)
    metrics = staticmethod(all_metrics)

    def evaluate(self, model, cfg, data, items):
        """Streams the patches in batches of 8; pixels above `predict.threshold` are landslide. One
        2x2 confusion matrix per patch (for miou_per_image); their sum is the pooled one."""
        size, threshold = cfg["data"]["patch_size"], cfg["predict"]["threshold"]
        matrices = [np.zeros((0, 2, 2), np.int64)]
        for image, mask, _ in D.read_dataset(data.subset(items), patch_size=size).batch(8):
            probs = outputs(model, image.numpy())[..., 0]
            matrices.append(image_confusions(mask.numpy()[..., 0], probs, threshold))
        return segmentation_metrics(np.concatenate(matrices))

    def score_line(self, metrics):
        return "  ".join(f"{key} {metrics[key]:.3f}" for key in METRIC_KEYS)

    def pictures(self, out_dir, model, cfg, data, items, metrics, count=4):
        """OUT/examples.png: the patches with the most landslide pixels (RGB, truth, prediction)."""
        from common.plots import plot_segmentation_examples

        masks = [D.read_mask(path, cfg["data"]["patch_size"]) for path in data.subset(items).masks]
        chosen = np.argsort([-int(mask.sum()) for mask in masks], kind="stable")[:count]
        images, truth = self.examples(cfg, data, [items[i] for i in chosen])
        predicted = outputs(model, images)[..., 0] > cfg["predict"]["threshold"]
        rgb = images[..., [3, 2, 1]].astype("float64")  # B4, B3, B2, stretched to 2-98 percentiles
        low, high = np.percentile(rgb, [2, 98], axis=(1, 2, 3), keepdims=True)
        plot_segmentation_examples(np.clip((rgb - low) / np.maximum(high - low, 1e-6), 0, 1),
                                   truth[..., 0], predicted, Path(out_dir) / "examples.png",
                                   title="landslide examples (validation split)")

    def write_frontend(self, cfg, run_dir, mcu_section):
        return {"inside_model": True,
                "note": "NaN replacement, engineered bands and normalisation are layers of the "
                        "model: a firmware feeds the raw 14-band patch as stored (a NaN value is "
                        "quantized as 0.0, the input zero point)"}

    def host_front(self, cfg, model):
        """The front of a config whose engineered bands int8 kernels cannot run
        (`landslide.edge.int8_front`): cut after its last front layer; the numpy front
        (landslide.edge.numpy_front) computes it on the host from these settings."""
        from landslide.edge import front_spec, int8_front

        if int8_front(cfg):
            return None
        front = model.get_layer("band_features").get_config()
        standardize = [layer for layer in model.layers if layer.name == "standardize"]
        stats = standardize[0].get_config() if standardize else {"mean": None, "std": None}
        options = {key: front[key] for key in ("ratio", "box_blur_size", "median_blur_size")}
        return ("standardize" if standardize else "band_features",
                front_spec(front["features"], front["band_scale"], options, stats["mean"], stats["std"]))

    def load_tflite(self, path):
        return edge.load_tflite(path)

    # -- command line and prediction -----------------------------------------------------------

    def add_arguments(self, command, parser):
        if command == "train":
            parser.add_argument("--fold", help="k-fold protocol: validation fold K (0-based), or "
                                "'all' for OUT/fold_K")
        if command == "evaluate":  # the runs of `train --fold all`
            parser.add_argument("--folds", action="store_true", help="RUN holds fold_K runs: their mean and std")
        if command in ("evaluate", "predict"):
            add_shorthand(parser, "--threshold", "predict.threshold", type=float,
                          help="landslide probability above which a pixel is 1 (default 0.5)")
        if command == "predict":
            add_shorthand(parser, "--overlap", "predict.overlap", type=int,
                          help="scenes: pixels shared by neighbouring tiles (default 32)")
            parser.add_argument("--geojson", action="store_true",
                                help="scenes: also OUT/<scene>_landslide.geojson")

    def train_runs(self, cfg, out, fold=None):
        """`fold`: None (one run in `out`), a fold number, or "all" (one run per fold)."""
        if fold is None:
            return [(cfg, out)]
        d, fold_name = cfg["data"], str(fold)
        if d["split"] != "kfold":
            raise ConfigError(f"--fold {fold_name}: the config's data.split is {d['split']!r}; "
                              "k-fold runs need --set data.split=kfold")
        if fold_name == "all":
            return [({**cfg, "data": {**d, "fold": k}}, Path(out) / f"fold_{k}")
                    for k in range(d["folds"])]
        try:
            fold = int(fold_name)
        except ValueError:
            raise ConfigError(f"--fold must be a fold number or 'all', got {fold_name!r}") from None
        if not 0 <= fold < d["folds"]:
            raise ConfigError(f"--fold {fold}: must be in 0..{d['folds'] - 1} (data.folds)")
        return [({**cfg, "data": {**d, "fold": fold}}, out)]

    def predict(self, model, cfg, inputs, out, *, geojson=False):
        """`geojson`: scenes also get OUT/<scene>_landslide.geojson; threshold and overlap are
        the run config's `predict` keys (`--threshold`, `--overlap` set them)."""
        return edge.predict(model, inputs, out, **cfg["predict"], geojson=geojson)

    def edge_predict(self, tflite_path, inputs, out, *, threshold=DEFAULTS["predict"]["threshold"],
                     overlap=DEFAULTS["predict"]["overlap"], geojson=False):
        """`threshold`: landslide probability in [0, 1] above which a pixel is 1; `overlap`:
        pixels shared by neighbouring tiles of a scene; `geojson` as in `predict`."""
        return edge.predict(edge.load_tflite(tflite_path), inputs, out, threshold=float(threshold),
                            overlap=int(overlap), geojson=geojson)

    # -- sample, download, demo, extra commands ----------------------------------------------------

    def add_sample_arguments(self, parser):
        parser.add_argument("--n", type=int, default=64,
                            help="labelled training patches (default 64)")
        parser.add_argument("--seed", type=int, default=0)

    def sample(self, out, n=48, seed=0):
        """`n` labelled training patches (the command line's default is 64), seeded."""
        from landslide.sample import write_sample

        info = write_sample(out, n=n, seed=seed)
        return (f"wrote {out}: {info['TrainData']} training patches with masks, "
                f"{info['ValidData']} valid, {info['TestData']} test; "
                f"{100 * info['landslide_fraction']:.1f}% landslide pixels; a {info['scene_size']}x"
                f"{info['scene_size']} GeoTIFF scene {info['scene']}")

    def add_download_arguments(self, parser):
        parser.add_argument("--record", default=fetch.RECORD,
                            help=f"Zenodo record id (default {fetch.RECORD})")
        parser.add_argument("--api", default=ZENODO_API,
                            help=f"Zenodo REST API (default {ZENODO_API})")

    def download(self, dest, *, record=fetch.RECORD, api=ZENODO_API, quiet=False):
        root, counts = fetch.download(dest, record=record, api=api, quiet=quiet)
        return (f"Landslide4Sense is in {root}: {counts['TrainData']} labelled training patches, "
                f"{counts['ValidData']} valid, {counts['TestData']} test; "
                f"use it with --data {root}")

    def demo_plan(self):
        """The lower rungs of the ladder at tiny width (trained and evaluated), then the tiny full
        model (also exported)."""
        return [*(DemoRun(f"ladder_{rung}", tiny_rung_config(rung)) for rung in LADDER),
                DemoRun("full_tiny", "tiny.yaml", export=True, overrides=["export.target=mcu"])]

    def commands(self):
        return [
            Command("stats", "per-channel statistics of the training split -> OUT/stats.json",
                    lambda p: p.add_argument("--out", default=".", help="folder for stats.json"),
                    self._stats, common_args=True),
            Command("summary", "parameters and MACs of a config's model", lambda p: None,
                    self._summary, common_args=True),
            Command("ladder", "paper 1's table: six rungs x the folds, mean +- std, best rung "
                              "exported -> OUT/ladder.md, ladder.json (resumable)",
                    lambda p: import_module("landslide.paper").add_arguments(p),
                    lambda args: import_module("landslide.paper").run(self, args)),
        ]

    def _stats(self, args):
        from landslide.features import STATS_FILE, training_stats

        cfg = need_data(load_task_config(self, args.config, args.overrides, args.data, announce=True))
        data = self.open_data(cfg)
        stats = training_stats(cfg, data.subset(self.make_split(cfg, data)["train"]), args.out)
        say(f"landslide: wrote {Path(args.out) / STATS_FILE}: {stats['patches']} training patches, "
            f"{stats['nan_values']} NaN values replaced")

    def _summary(self, args):
        from common.complexity import shape_text

        cfg = load_task_config(self, args.config, args.overrides, announce=True)
        info, size = model_summary(cfg), cfg["data"]["patch_size"]
        say(f"landslide: {args.config or self.train_config}: {info['params']:,} parameters, "
            f"{info['macs'] / 1e9:.2f} GMACs per {size}x{size} patch, {info['channels']} input "
            f"channels (14 bands + engineered), {info['outputs']} output head(s); inference "
            f"model input {shape_text(info['input_shape'])} -> output {shape_text(info['output_shape'])}")
