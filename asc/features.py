"""Spectrograms for acoustic scenes (log-Mel, Gammatone, CQT) and their HDF5 cache.

The model's input is a stack of spectrograms, one channel per kind: float32 of shape
(n_bins, frames, len(kinds)), row 0 the lowest frequency, with frames = 1 + samples // hop_length
(centred frames; 87 for a 1-s clip at 44.1 kHz and hop 512, about 11.6 ms per frame). The same
`compute_features` is used for training, evaluation, prediction and the TFLite path; it runs in
numpy/librosa, outside the model.

Each spectrogram is a power spectrogram in decibels relative to its own maximum, floored at
`-top_db`, then mapped linearly to [-1, 1] (`db / (top_db / 2) + 1`). Per-clip referencing makes
the input independent of the recording gain, one of the device differences.

- log-Mel: librosa's Slaney Mel filter bank on an STFT power spectrum.
- Gammatone: this module's own ERB-spaced filter bank (`gammatone_filterbank`): the magnitude
  response of a 4th-order gammatone filter (bandwidth 1.019 ERB, Glasberg & Moore 1990) at each of
  `n_bins` centre frequencies equally spaced on the ERB-rate scale, applied as weights to the STFT
  power spectrum (one matrix product per clip; a fast approximation of a time-domain gammatone
  filter bank, as in Ellis' `gammatonegram`).
- CQT: librosa's constant-Q transform. Its lowest filter must fit the clip: with 24 bins per
  octave a filter at `fmin` is about 34 * sample_rate / fmin samples long, so a 1-s clip needs
  fmin >= ~50 Hz (librosa warns below); 128 bins then span 50 Hz to 2 kHz. The paper's fmin of
  10 Hz assumed 10-s clips.

Cache: `build_cache` writes one HDF5 dataset per clip, keyed by its file name relative to the data
root, with the feature config and its hash as attributes. A cache built with another config, or
truncated/corrupt, is detected and rebuilt (and said so).
"""

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from asc.data import ClipReport, read_wav
from common.config import config_hash
from common.errors import ConfigError, DataError
from common.io import atomic_path

log = logging.getLogger("asc")

KINDS = ("logmel", "gammatone", "cqt")

FEATURE_DEFAULTS = {
    "sample_rate": 44100,  # Hz; a clip at another rate is an error unless resample is true
    "duration": 1.0,  # seconds; shorter clips are zero-padded, longer ones cropped (counted)
    "resample": False,
    "kinds": ["logmel", "gammatone", "cqt"],  # one model branch per kind, in this order
    "n_bins": 128,
    "hop_length": 512,  # samples; 87 frames per 1-s clip at 44.1 kHz
    "top_db": 80.0,
    "logmel": {"n_fft": 4096, "win_length": 1920, "fmin": 10.0, "fmax": 0.0},  # fmax 0: Nyquist
    "gammatone": {"n_fft": 4096, "win_length": 1764, "fmin": 10.0, "fmax": 0.0, "order": 4},  # 40 ms
    "cqt": {"fmin": 50.0, "bins_per_octave": 24},
    "cache": "",  # HDF5 cache path; "" = <data>/features.h5
    "cache_dtype": "float16",  # float16 halves the cache; the model sees float32 either way
    "workers": 2,  # threads computing features
}
# Keys that do not change the features, left out of the cache hash.
_NOT_HASHED = ("cache", "workers")


def feature_hash(cfg):
    """Hash of the settings that determine the features (the cache key)."""
    return config_hash({k: v for k, v in cfg.items() if k not in _NOT_HASHED})


def input_shape(cfg):
    """The model input shape (n_bins, frames, kinds) for feature config `cfg`."""
    samples = int(round(cfg["sample_rate"] * cfg["duration"]))
    return (int(cfg["n_bins"]), 1 + samples // int(cfg["hop_length"]), len(cfg["kinds"]))


def check_config(cfg):
    """Raise ConfigError for feature settings that cannot work."""
    for kind in cfg["kinds"]:
        if kind not in KINDS:
            raise ConfigError(f"config key 'features.kinds': unknown kind {kind!r}, expected some of {KINDS}")
    if not cfg["kinds"]:
        raise ConfigError("config key 'features.kinds' must name at least one spectrogram")
    nyquist = cfg["sample_rate"] / 2
    if "cqt" in cfg["kinds"]:
        c = cfg["cqt"]
        top = c["fmin"] * 2 ** ((cfg["n_bins"] - 1) / c["bins_per_octave"])
        if top >= nyquist:
            raise ConfigError(
                f"config key 'features.cqt.fmin': top CQT bin {top:.0f} Hz is above Nyquist {nyquist:.0f} Hz"
            )
        q = 1.0 / (2 ** (1.0 / c["bins_per_octave"]) - 1)
        if q * cfg["sample_rate"] / c["fmin"] > cfg["sample_rate"] * cfg["duration"] * 0.75:
            raise ConfigError(
                f"config key 'features.cqt.fmin': the {c['fmin']} Hz CQT filter is longer than the "
                f"{cfg['duration']} s clip; raise fmin (>= {q / (0.75 * cfg['duration']):.0f} Hz)"
            )
    if cfg["cache_dtype"] not in ("float16", "float32"):
        raise ConfigError("config key 'features.cache_dtype' must be float16 or float32")


def _fmax(section, sample_rate):
    return float(section["fmax"]) or sample_rate / 2.0


def hz_to_erb_rate(f):
    """ERB-rate (Glasberg & Moore 1990) of frequency `f` in Hz."""
    return 21.4 * np.log10(1 + 0.00437 * np.asarray(f, dtype=np.float64))


def erb_rate_to_hz(e):
    """Inverse of `hz_to_erb_rate`."""
    return (10 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1) / 0.00437


def gammatone_center_frequencies(n_bins, fmin, fmax):
    """`n_bins` centre frequencies (Hz, ascending) equally spaced on the ERB-rate scale."""
    return erb_rate_to_hz(np.linspace(hz_to_erb_rate(fmin), hz_to_erb_rate(fmax), n_bins))


def gammatone_filterbank(sample_rate, n_fft, n_bins, fmin, fmax, order=4):
    """ERB-spaced gammatone weights for an STFT power spectrum.

    Row i is the power response |H(f)|^2 of an order-`order` gammatone filter centred at
    `gammatone_center_frequencies(...)[i]` with bandwidth b = 1.019 ERB(fc):
    |H(f)| = (1 + ((f - fc) / b)^2) ^ (-order / 2), normalised to unit sum over the FFT bins.

    Returns:
        float32 array (n_bins, n_fft // 2 + 1).
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    centres = gammatone_center_frequencies(n_bins, fmin, fmax)
    bandwidth = 1.019 * 24.7 * (4.37 * centres / 1000 + 1)
    response = (1 + ((freqs[None, :] - centres[:, None]) / bandwidth[:, None]) ** 2) ** (-order / 2)
    power = response**2
    return (power / power.sum(axis=1, keepdims=True)).astype(np.float32)


_FILTERBANKS = {}


def _filterbank(kind, cfg):
    import librosa

    section = cfg[kind]
    key = (kind, cfg["sample_rate"], cfg["n_bins"], json.dumps(section, sort_keys=True))
    if key not in _FILTERBANKS:
        fmax = _fmax(section, cfg["sample_rate"])
        if kind == "logmel":
            _FILTERBANKS[key] = librosa.filters.mel(
                sr=cfg["sample_rate"], n_fft=section["n_fft"], n_mels=cfg["n_bins"], fmin=section["fmin"], fmax=fmax
            )
        else:
            _FILTERBANKS[key] = gammatone_filterbank(
                cfg["sample_rate"], section["n_fft"], cfg["n_bins"], section["fmin"], fmax, section["order"]
            )
    return _FILTERBANKS[key]


def spectrogram(audio, kind, cfg):
    """One power spectrogram of `audio` (float32 (samples,)), shape (n_bins, frames), linear power."""
    import librosa

    hop = int(cfg["hop_length"])
    if kind == "cqt":
        c = cfg["cqt"]
        cqt = librosa.cqt(
            audio, sr=cfg["sample_rate"], hop_length=hop, fmin=c["fmin"], n_bins=cfg["n_bins"],
            bins_per_octave=c["bins_per_octave"],
        )  # fmt: skip
        return np.abs(cqt) ** 2
    section = cfg[kind]
    stft = librosa.stft(audio, n_fft=section["n_fft"], hop_length=hop, win_length=section["win_length"])
    return _filterbank(kind, cfg) @ (np.abs(stft) ** 2)


def to_db(power, top_db):
    """Power -> dB relative to the maximum, floored at -top_db, mapped to [-1, 1]."""
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    db = np.maximum(db - db.max(), -top_db)
    return db / (top_db / 2.0) + 1.0


def compute_features(audio, cfg):
    """The model input of one clip.

    Args:
        audio: float32 (samples,), exactly sample_rate * duration samples.
        cfg: the `features:` config section.

    Returns:
        float32 array (n_bins, frames, len(kinds)), values in [-1, 1].
    """
    return np.stack([to_db(spectrogram(audio, k, cfg), cfg["top_db"]) for k in cfg["kinds"]], axis=-1).astype(
        np.float32
    )


def features_of_file(path, cfg, report=None):
    """`compute_features` of the wav at `path` (read with `asc.data.read_wav`)."""
    audio = read_wav(path, cfg["sample_rate"], cfg["duration"], cfg["resample"], report)
    return compute_features(audio, cfg)


def compute_many(paths, cfg, report=None):
    """Features of many files, in a thread pool of `cfg["workers"]` threads.

    Returns:
        float32 array (len(paths), n_bins, frames, kinds).
    """
    report = report if report is not None else ClipReport()
    workers = max(1, int(cfg["workers"]))
    shape = input_shape(cfg)
    out = np.zeros((len(paths), *shape), np.float32)

    def one(i):
        out[i] = features_of_file(paths[i], cfg, report)

    if workers == 1 or len(paths) < 4:
        for i in range(len(paths)):
            one(i)
    else:
        # librosa/numpy release the GIL in their FFTs; threads keep TensorFlow safe (no fork).
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(paths))))
    return out


def default_cache_path(data_root, cfg):
    """Where the cache of `data_root` lives: `features.cache`, else `<data_root>/features.h5`."""
    return Path(cfg["cache"]) if cfg["cache"] else Path(data_root) / "features.h5"


def _cache_state(path, cfg):
    """(status, names) of an existing cache: status "ok", "missing", "changed" or "corrupt"."""
    import h5py

    path = Path(path)
    if not path.exists():
        return "missing", set()
    try:
        with h5py.File(path, "r") as h5:
            if not h5.attrs.get("complete", False):
                return "corrupt", set()
            if h5.attrs.get("config_hash") != feature_hash(cfg):
                return "changed", set()
            names = {n.decode() if isinstance(n, bytes) else n for n in h5["names"][...]}
            # Touch every dataset's header: a truncated file fails here, not in the middle of training.
            for name in names:
                if h5["features"][name].shape != input_shape(cfg):
                    return "corrupt", set()
            return "ok", names
    except (OSError, KeyError, ValueError, RuntimeError):
        return "corrupt", set()


def build_cache(data_root, filenames, cfg, path=None, say=print):
    """Make sure the cache at `path` holds the features of every file in `filenames`.

    Computes only what is missing; rebuilds from scratch (and says so) when the cache was built with
    another feature config or is truncated/corrupt. The file is replaced atomically.

    Args:
        data_root: str or Path; `filenames` are relative to it.
        filenames: list of str.
        cfg: the `features:` config section.
        path: cache path, or None for `default_cache_path`.
        say: callable(str) for progress messages.

    Returns:
        (Path of the cache, dict of counts: computed, reused, and the ClipReport counts).
    """
    import h5py

    check_config(cfg)
    data_root = Path(data_root)
    path = Path(path) if path else default_cache_path(data_root, cfg)
    status, have = _cache_state(path, cfg)
    if status == "changed":
        say(f"{path}: feature config changed (hash now {feature_hash(cfg)}); rebuilding the cache")
    elif status == "corrupt":
        say(f"{path}: cache is truncated or corrupt; rebuilding it")
    wanted = list(dict.fromkeys(filenames))
    todo = [f for f in wanted if f not in have]
    report = ClipReport()
    if not todo:
        return path, {"computed": 0, "reused": len(wanted), **report.as_dict()}
    say(f"computing {len(todo)} feature stacks {input_shape(cfg)} with {cfg['workers']} workers -> {path}")
    for name in todo:
        if not (data_root / name).is_file():
            raise DataError(f"{data_root / name}: file not found")
    new = compute_many([str(data_root / f) for f in todo], cfg, report)
    for line in report.lines():
        say(line)
    dtype = cfg["cache_dtype"]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            group = out.create_group("features")
            if have:
                with h5py.File(path, "r") as old:
                    for name in sorted(have):
                        group.create_dataset(name, data=old["features"][name][...])
            for name, x in zip(todo, new):
                group.create_dataset(name, data=x.astype(dtype))
            names = sorted(have | set(todo))
            out.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
            out.attrs["config_hash"] = feature_hash(cfg)
            out.attrs["config"] = json.dumps(cfg, sort_keys=True)
            out.attrs["clip_report"] = json.dumps(report.as_dict())
            out.attrs["complete"] = True  # written last: a cache without it is unfinished
    return path, {"computed": len(todo), "reused": len(wanted) - len(todo), **report.as_dict()}


def load_cache(path, filenames, cfg):
    """Features of `filenames` from the cache at `path`.

    Returns:
        float32 array (len(filenames), n_bins, frames, kinds).

    Raises:
        DataError: the cache does not match `cfg` or lacks a file (run `build_cache` first).
    """
    import h5py

    status, have = _cache_state(path, cfg)
    if status != "ok":
        raise DataError(f"{path}: feature cache is {status}; run `python -m asc features` again")
    out = np.zeros((len(filenames), *input_shape(cfg)), np.float32)
    with h5py.File(path, "r") as h5:
        for i, name in enumerate(filenames):
            if name not in have:
                raise DataError(f"{path}: no features for {name}; run `python -m asc features` again")
            out[i] = h5["features"][name][...]
    return out


class CachedFeatures:
    """A lazy view of cached features for data sets too large for memory.

    `x[i]` reads one clip's stack, `x[indices]` or `x[a:b]` several, as float32. Behaves like the
    (N, n_bins, frames, kinds) array `load_cache` returns, without loading it.

    Args:
        path: the cache file; names: list of file names (its rows); cfg: the `features:` section.
    """

    def __init__(self, path, names, cfg):
        status, have = _cache_state(path, cfg)
        if status != "ok":
            raise DataError(f"{path}: feature cache is {status}; run `python -m asc features` again")
        missing = [n for n in names if n not in have]
        if missing:
            raise DataError(f"{path}: no features for {missing[0]}; run `python -m asc features` again")
        self.path, self.names = Path(path), list(names)
        self.shape = (len(self.names), *input_shape(cfg))
        self._h5 = None

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        import h5py

        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        group = self._h5["features"]
        if isinstance(index, (int, np.integer)):
            return group[self.names[int(index)]][...].astype(np.float32)
        rows = range(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        out = np.zeros((len(rows), *self.shape[1:]), np.float32)
        for k, i in enumerate(rows):
            out[k] = group[self.names[int(i)]][...]
        return out


def cached_features(data_root, filenames, cfg, path=None, say=print, max_gb=None):
    """`build_cache` then the features of `filenames`, computed at most once.

    Returns:
        float32 array (N, n_bins, frames, kinds), or a `CachedFeatures` view when the array would
        take more than `max_gb` GB of memory.
    """
    path, _ = build_cache(data_root, filenames, cfg, path, say)
    size_gb = len(filenames) * int(np.prod(input_shape(cfg))) * 4 / 1e9
    if max_gb is not None and size_gb > max_gb:
        say(f"{path}: {size_gb:.1f} GB of features for {len(filenames)} clips; streaming them from the cache")
        return CachedFeatures(path, filenames, cfg)
    return load_cache(path, filenames, cfg)

