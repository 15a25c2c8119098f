"""Acoustic scene data sets (the TAU Urban Acoustic Scenes 2022 Mobile layout, or a folder per
class), clip reading, and the tf.data pipeline (mixup) over cached features.

A bad file raises `DataError` naming it; fixable problems (stereo, another sample rate when
resampling is allowed, a short or long clip) are fixed and counted in a `ClipReport`.
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import DataError

# The 10 DCASE 2023 Task 1 scenes, in index order (label i is SCENES[i]).
SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]  # fmt: skip
# The DCASE 3-class grouping (indoor / outdoor / transportation) used in the paper's 82.3 % figure.
SCENE_GROUPS = {
    "indoor": ["airport", "metro_station", "shopping_mall"],
    "outdoor": ["park", "public_square", "street_pedestrian", "street_traffic"],
    "transportation": ["bus", "metro", "tram"],
}
# Real devices a, b, c and simulated s1-s6; s4-s6 appear only in the evaluation fold.
DEVICES = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]

META_COLUMNS = ("filename", "scene_label", "identifier", "source_label")
FOLD_COLUMNS = ("filename", "scene_label")


@dataclass(frozen=True)
class Clip:
    """One audio clip: `filename` relative to the data set root (`audio/park-lyon-1-0-a.wav`, the
    feature cache's key), `label` (class index), recording `device` (`a`, `s4`, ...) and `city`
    (`unknown` in the folder layout)."""

    filename: str
    label: int
    device: str = "unknown"
    city: str = "unknown"


@dataclass
class ClipReport:
    """Counts of the fixes applied while reading clips (said once, at the end of a data set)."""

    mixed_down: list = field(default_factory=list)
    resampled: list = field(default_factory=list)
    padded: list = field(default_factory=list)
    cropped: list = field(default_factory=list)

    def lines(self):
        """One line per kind of fix that happened."""
        return [f"{len(names)} {what} (first: {names[0]})" for what, names in (
            ("stereo/multichannel clips mixed down to mono", self.mixed_down),
            ("clips resampled (features.resample=true)", self.resampled),
            ("clips shorter than features.duration, zero-padded", self.padded),
            ("clips longer than features.duration, cropped to their start", self.cropped),
        ) if names]

    def as_dict(self):
        return {k: len(v) for k, v in vars(self).items()}


def parse_tau_filename(filename):
    """(scene, city, device) of a TAU name `<scene>-<city>-<location>-<segment>-<device>.wav`."""
    parts = Path(filename).stem.split("-")
    if len(parts) != 5:
        raise DataError(f"{filename}: expected <scene>-<city>-<id>-<segment>-<device>.wav")
    return parts[0], parts[1], parts[4]


def recording_id(filename):
    """The recording a clip was cut from: `scene-city-location` of a TAU name, shared by every
    segment and device of one recording; any other name is a recording of its own."""
    parts = Path(filename).stem.split("-")
    return "-".join(parts[:3]) if len(parts) == 5 else str(filename)


class TAUUrbanAcousticScenes2022Mobile:
    """TAU Urban Acoustic Scenes 2022 Mobile (DCASE 2023 Task 1 development set).

    Features:
        * 1-second mono clips, 44.1 kHz, 24-bit (16-bit in this project's sample data);
        * 10 scenes recorded in 12 European cities with 3 real devices (a, b, c) and 6 simulated
          ones (s1-s6); s4, s5, s6 appear only in the evaluation fold;
        * about 230,000 clips (64 hours), the official fold 1 split 70/30 by recording location.

    On-disk format (tab-separated CSV files with a header row)::

        root/
          audio/<scene>-<city>-<id>-<segment>-<device>.wav   e.g. airport-lisbon-1000-40000-a.wav
          meta.csv                        filename  scene_label  identifier  source_label
          evaluation_setup/fold1_train.csv      filename  scene_label
          evaluation_setup/fold1_evaluate.csv   filename  scene_label

    `filename` is relative to `root` (`audio/...wav`). Device and city are parsed from the name.
    Classes (index order): `SCENES`.

    Download: https://zenodo.org/record/6337421 (development set, about 23 GB); the data is never
    fetched by this project. Cite: Heittola, Mesaros, Virtanen, "Acoustic scene classification in
    DCASE 2020 challenge: generalization across devices and low complexity solutions", DCASE 2020.

    `split` is "train" (fold1_train.csv), "evaluate" (fold1_evaluate.csv) or "all" (meta.csv);
    `classes` the class names in index order (default `SCENES`). Sets `.clips` and `.classes`.
    """

    url = "https://zenodo.org/record/6337421"
    split_files = {"train": "evaluation_setup/fold1_train.csv", "all": "meta.csv",
                   "evaluate": "evaluation_setup/fold1_evaluate.csv"}

    def __init__(self, root, split="train", classes=None):
        self.root, self.classes = Path(root), list(classes or SCENES)
        path = self.root / self.split_files[split]
        if not path.is_file():
            raise DataError(f"{path}: not found (expected the TAU 2022 Mobile layout, see {self.url})")
        self.clips = []
        for line, row in read_tsv(path, META_COLUMNS if split == "all" else FOLD_COLUMNS):
            filename, label = row["filename"], row["scene_label"]
            if not (self.root / filename).is_file():
                raise DataError(f"{path}: row {line}: file {filename} does not exist")
            if label not in self.classes:
                raise DataError(f"{path}: row {line}: label {label!r} is not a known class "
                                f"{self.classes}")
            _, city, device = parse_tau_filename(filename)
            self.clips.append(Clip(filename, self.classes.index(label), device, city))
        if not self.clips:
            raise DataError(f"{path}: no rows")


class AudioFolder:
    """A folder-per-class data set of wav files, for retraining on one's own recordings.

    On-disk format::

        root/<class name>/<any name>.wav      (sub-folders below a class folder are searched too)

    Classes are the given list, or the sorted class folder names. The split is deterministic: of
    each class's files in sorted order, every `round(1 / val_fraction)`-th goes to "evaluate"
    (`split`), the rest to "train"; "all" is both. Sets `.clips` and `.classes`.
    """

    def __init__(self, root, split="train", classes=None, val_fraction=0.25):
        self.root = Path(root)
        folders = [p.name for p in sorted(self.root.iterdir()) if p.is_dir()
                   and not p.name.startswith(".") and any(p.rglob("*.wav"))]
        if not folders:
            raise DataError(f"{self.root}: no class folders with .wav files (and no meta.csv)")
        self.classes = list(classes or folders)
        unknown = [f for f in folders if f not in self.classes]
        if unknown:
            raise DataError(f"{self.root / unknown[0]}: folder label {unknown[0]!r} is not a known "
                            f"class {self.classes}")
        every = max(2, round(1.0 / val_fraction)) if 0 < val_fraction < 1 else 0
        self.clips = []
        for folder in folders:
            for i, path in enumerate(sorted((self.root / folder).rglob("*.wav"))):
                held_out = bool(every) and i % every == every - 1
                if split == "all" or (split == "evaluate") == held_out:
                    self.clips.append(Clip(path.relative_to(self.root).as_posix(),
                                           self.classes.index(folder)))


def open_dataset(root, split="train", classes=None, val_fraction=0.25):
    """The data set at `root` (`TAUUrbanAcousticScenes2022Mobile` when `root/meta.csv` exists,
    else `AudioFolder`); `classes` None or empty: the layout's default."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if (root / "meta.csv").is_file():
        dataset = TAUUrbanAcousticScenes2022Mobile(root, split, classes or None)
    else:
        dataset = AudioFolder(root, split, classes or None, val_fraction)
    if not dataset.clips:
        raise DataError(f"{root}: the {split!r} split has no clips (data.val_fraction={val_fraction})")
    return dataset


def read_tsv(path, required):
    """Rows of a tab-separated CSV with a header, as (line number, dict) pairs; DataError when the
    file is unreadable or lacks one of the `required` columns."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise DataError(f"{path}: missing column {missing[0]!r} (columns: {columns}; tab-separated?)")
            return [(i + 2, row) for i, row in enumerate(reader)]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None


def read_wav(path, sample_rate, duration, resample=False, report=None):
    """One clip (a wav, or any format libsndfile reads) as mono float32 (round(sample_rate *
    duration),) in [-1, 1]: mixed down, resampled (with `resample`, else another rate is a
    DataError), zero-padded or cropped, each fix counted in `report` (a `ClipReport` or None).
    A clip with NaN or infinite samples (a float wav can hold them) is a DataError."""
    import soundfile as sf

    name, report = str(path), report if report is not None else ClipReport()
    try:
        audio, rate = sf.read(name, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise DataError(f"{name}: cannot read audio ({str(error).splitlines()[0]})") from None
    if audio.size == 0:
        raise DataError(f"{name}: empty audio file (0 samples)")
    bad = int(np.count_nonzero(~np.isfinite(audio)))  # a float wav can hold NaN or Inf
    if bad:
        raise DataError(f"{name}: {bad} samples are NaN or infinite")
    if audio.shape[1] > 1:
        audio = audio.mean(axis=1, keepdims=True)
        report.mixed_down.append(name)
    audio = audio[:, 0]
    if rate != sample_rate:
        if not resample:
            raise DataError(f"{name}: sample rate {rate} Hz, expected {sample_rate} Hz "
                            "(set features.resample=true to resample)")
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate).astype(np.float32)
        report.resampled.append(name)
    length = int(round(sample_rate * duration))
    if len(audio) < length:
        audio = np.pad(audio, (0, length - len(audio)))
        report.padded.append(name)
    elif len(audio) > length:
        audio = audio[:length]
        report.cropped.append(name)
    return np.ascontiguousarray(audio, dtype=np.float32)


def one_hot(labels, num_classes):
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def make_dataset(x, labels, num_classes, batch_size, *, shuffle=False, mixup_alpha=0.0, seed=0):
    """A batched tf.data pipeline of (spectrogram stack, soft label) pairs.

    Mixup (Zhang et al., https://arxiv.org/abs/1710.09412) mixes each batch with itself reversed:
    x = lam * x + (1 - lam) * x_rev, y likewise, lam ~ Beta(alpha, alpha) per example, so the
    labels become soft.

    `x`: float (N, bins, frames, kinds), or a lazy `asc.features.CachedFeatures` view (read a
    batch at a time); `labels`: int (N,). Yields float32 (B, bins, frames, kinds), (B, classes).
    """
    import tensorflow as tf

    targets = one_hot(labels, num_classes)
    if isinstance(x, np.ndarray):
        x = x.astype(np.float32, copy=False)
    # Shuffle indices, batch them, then fetch each batch's clips in one call (from the array, or
    # from the cache in sorted rows): memory beyond `x` itself is a few batches.
    shape = tuple(x.shape[1:])
    ds = tf.data.Dataset.range(len(labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def read(i):
        clips = tf.numpy_function(lambda j: x[j], [i], tf.float32, stateful=False)
        return tf.ensure_shape(clips, (None, *shape)), tf.gather(targets, i)

    ds = ds.map(read)
    if mixup_alpha > 0:
        generator = tf.random.Generator.from_seed(seed)

        def mix(xb, yb):
            n = tf.shape(xb)[0]
            seeds = generator.make_seeds(2)  # advances: every batch of every epoch draws anew
            a, b = (tf.random.stateless_gamma([n], seeds[:, i], float(mixup_alpha)) for i in (0, 1))
            lam = a / (a + b + 1e-12)
            lx, ly = tf.reshape(lam, [-1, 1, 1, 1]), tf.reshape(lam, [-1, 1])
            return lx * xb + (1 - lx) * tf.reverse(xb, [0]), ly * yb + (1 - ly) * tf.reverse(yb, [0])

        ds = ds.map(mix)
    return ds.prefetch(2)
