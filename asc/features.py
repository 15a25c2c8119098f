"""Spectrograms for acoustic scenes (log-Mel, Gammatone, CQT) and their HDF5 cache.

The model's input is a stack of spectrograms, one channel per kind: float32 of shape
(n_bins, frames, len(kinds)), row 0 the lowest frequency, with frames = 1 + samples // hop_length
(centred frames; 87 for a 1-s clip at 44.1 kHz and hop 512, about 11.6 ms per frame). The same
`compute_features` / `compute_batch` is used for training, evaluation, prediction and the TFLite
path; it runs in numpy/scipy/librosa, outside the model, and never imports TensorFlow.

Each spectrogram is a power spectrogram in decibels relative to its own maximum, floored at
`-top_db`, then mapped linearly to [-1, 1] (`db / (top_db / 2) + 1`). Per-clip referencing makes
the input independent of the recording gain, one of the device differences.

- log-Mel: librosa's Slaney Mel filter bank on an STFT power spectrum.
- Gammatone: this module's own ERB-spaced filter bank (`gammatone_filterbank`): the magnitude
  response of a 4th-order gammatone filter (bandwidth 1.019 ERB, Glasberg & Moore 1990) at each of
  `n_bins` centre frequencies equally spaced on the ERB-rate scale, applied as weights to the STFT
  power spectrum (one matrix product per clip; a fast approximation of a time-domain gammatone
  filter bank, as in Ellis' `gammatonegram`).
- CQT: a constant-Q transform with librosa's filters (`librosa.filters.wavelet`: Hann-windowed
  complex sinusoids, L1-normalised, scaled like `librosa.cqt(scale=True)`). Its lowest filter must
  fit the clip: with 24 bins per octave a filter at `fmin` is about 34 * sample_rate / fmin samples
  long, so a 1-s clip needs fmin >= ~50 Hz (librosa warns below); 128 bins then span 50 Hz to
  2 kHz. The paper's fmin of 10 Hz assumed 10-s clips. `cqt.method: kernel` (default) computes it
  with one FFT per clip (`CQTKernel`): each filter's spectrum, sparsified, is folded onto the hop
  grid so one small inverse FFT per bin gives every frame exactly at the hop, batched over clips.
  That is librosa's own filter response at the full sample rate, without its octave-by-octave
  resampling, and about 20x faster than `librosa.cqt` (`cqt.method: librosa`). The two agree
  within `CQT_TOLERANCE` on the [-1, 1] scale (tests/asc/test_scale.py).

Cache (format 2, `build_cache`): one chunked HDF5 dataset `features` (N, n_bins, frames, kinds)
(float16 by default, one clip per HDF5 chunk for random reads) plus a name index `names` (N,)
(file names relative to the data root), with the feature config and its hash as attributes.
Features are computed `features.chunk` clips at a time and appended in place, so memory stays
O(chunk) whatever N; after each chunk's rows are flushed, the attribute `rows` (the committed row
count) is raised and flushed, so a killed run leaves a valid cache of the finished chunks, and the
next run resumes after them. Rows beyond `rows` are ignored (and overwritten). A cache built with
another config, or truncated/corrupt, is detected and rebuilt (and said so); a cache in the old
one-dataset-per-clip format is converted (same config) or rebuilt, with one line saying so.
"""

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from asc.data import ClipReport, read_wav
from common.config import config_hash
from common.errors import ConfigError, DataError
from common.io import atomic_path, write_json, write_text

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
    # method: kernel (one FFT per clip, batched; CQTKernel) | librosa (librosa.cqt, 20x slower)
    "cqt": {"fmin": 50.0, "bins_per_octave": 24, "method": "kernel"},
    "cache": "",  # HDF5 cache path; "" = <data>/features.h5
    "cache_dtype": "float16",  # float16 halves the cache; the model sees float32 either way
    "workers": 2,  # threads computing features
    # Clips computed, held in memory and appended to the cache at a time (the memory bound: about
    # chunk x 134 KB of float32 features for the default stack); also the unit a killed run resumes by.
    "chunk": 256,
}
# Keys that do not change the features, left out of the cache hash.
_NOT_HASHED = ("cache", "workers", "chunk")
# Largest difference between cqt.method kernel and librosa on the [-1, 1] feature scale that the
# tests allow, measured on the sample scenes: mean over all cells, and 99th percentile over the cells
# within 60 dB of the clip's maximum (the floor region below differs more, in absolute dB, since it
# is librosa's resampling noise).
CQT_TOLERANCE = {"mean": 0.02, "p99_above_-60dB": 0.06}


def feature_hash(cfg):
    """Hash of the settings that determine the features (the cache key).

    `cqt.method: librosa` hashes like the configs written before the method existed, so caches made
    with librosa's CQT stay valid for it.
    """
    cfg = {k: v for k, v in cfg.items() if k not in _NOT_HASHED}
    if isinstance(cfg.get("cqt"), dict) and cfg["cqt"].get("method", "librosa") == "librosa":
        cfg["cqt"] = {k: v for k, v in cfg["cqt"].items() if k != "method"}
    return config_hash(cfg)


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
    if "cqt" in cfg["kinds"] and cfg["cqt"].get("method", "kernel") not in ("kernel", "librosa"):
        raise ConfigError("config key 'features.cqt.method' must be kernel or librosa")
    if int(cfg.get("chunk", 1)) < 1:
        raise ConfigError("config key 'features.chunk' must be >= 1")
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


class CQTKernel:
    """The CQT of a batch of clips with one FFT per clip (`cqt.method: kernel`).

    librosa's CQT response of frame t and bin k is the correlation of the (zero-padded) clip with
    filter k at lag t * hop. Computed for the whole clip at once: U = rfft(clip padded to M = T *
    hop samples), then for every bin the product U * conj(W_k) (W_k: the M-point spectrum of
    librosa's frequency-domain filter k, sparsified like librosa's, keeping 99 % of its L1 mass)
    is folded modulo T (summing the bins F = m + jT), which samples the correlation every hop
    samples, and a T-point inverse FFT gives all frames. The folding is one sparse matrix (M/2+1,
    n_bins * T) built once per config, so a batch costs one rfft per clip, one sparse product and
    n_bins small inverse FFTs. M >= samples + the longest filter, so nothing wraps around.

    Args:
        cfg: the `features:` config section.
    """

    _cache = {}
    _lock = threading.Lock()

    def __init__(self, cfg):
        import scipy.fft
        import scipy.sparse

        sr, hop, n_bins = float(cfg["sample_rate"]), int(cfg["hop_length"]), int(cfg["n_bins"])
        c = cfg["cqt"]
        self.samples = int(round(cfg["sample_rate"] * cfg["duration"]))
        self.frames = 1 + self.samples // hop
        self.n_bins = n_bins
        freqs = c["fmin"] * 2.0 ** (np.arange(n_bins) / c["bins_per_octave"])
        lengths = _wavelet_lengths(freqs, sr)
        n = int(2.0 ** np.ceil(np.log2(lengths.max())))  # librosa's filter buffer (a power of 2)
        self.pad = n // 2  # frame t is centred on sample t * hop, as librosa's (center=True)
        self.T = scipy.fft.next_fast_len(-(-(self.samples + n) // hop))
        self.M = self.T * hop
        rows, cols, values = [], [], []
        for k in range(n_bins):  # one filter at a time: a few MB of temporaries
            spectrum = np.fft.fft(_wavelet(freqs[k], lengths[k], sr, n))
            spectrum[n // 2 + 1 :] = 0  # librosa keeps the non-negative frequencies only
            kernel = np.fft.fft(spectrum)  # h_k[j] = sum_f B_k(f) exp(-2 pi i f j / n)
            # librosa.cqt's scale: filters times length / n_fft, response divided by sqrt(length);
            # constant factors drop out of the per-clip dB reference.
            w = np.conj(np.fft.fft(np.conj(kernel), n=self.M))[: self.M // 2 + 1] * np.sqrt(lengths[k])
            keep = _sparsify(w, 0.01)
            rows.append(k * self.T + keep % self.T)
            cols.append(keep)
            values.append(w[keep])
        # (n_bins * T, M/2+1): row k*T + m sums the spectrum bins F = m (mod T) of filter k.
        self.fold = scipy.sparse.csr_matrix(
            (np.concatenate(values).astype(np.complex64), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_bins * self.T, self.M // 2 + 1),
        )

    @classmethod
    def for_config(cls, cfg):
        key = (cfg["sample_rate"], cfg["duration"], cfg["hop_length"], cfg["n_bins"], json.dumps(cfg["cqt"], sort_keys=True))
        with cls._lock:
            if key not in cls._cache:
                cls._cache[key] = cls(cfg)
            return cls._cache[key]

    def power(self, audio):
        """float32 (B, samples) -> CQT power (B, n_bins, frames), float32."""
        import scipy.fft

        audio = np.asarray(audio, np.float32).reshape(-1, self.samples)
        padded = np.zeros((len(audio), self.M), np.float32)
        padded[:, self.pad : self.pad + self.samples] = audio
        spectrum = scipy.fft.rfft(padded, axis=1)
        folded = (self.fold @ spectrum.T).T.reshape(len(audio), self.n_bins, self.T)
        response = scipy.fft.ifft(folded, axis=-1)[..., : self.frames]
        return (response.real**2 + response.imag**2).astype(np.float32)


def _wavelet_lengths(freqs, sr):
    """librosa.filters.wavelet_lengths (filter_scale 1, gamma 0): Q * sr / f, Q from the bin spacing."""
    logf = np.log2(freqs)
    bpo = np.empty_like(freqs)
    bpo[0], bpo[-1] = 1 / (logf[1] - logf[0]), 1 / (logf[-1] - logf[-2])
    bpo[1:-1] = 2 / (logf[2:] - logf[:-2])
    alpha = (2.0 ** (2 / bpo) - 1) / (2.0 ** (2 / bpo) + 1)
    return sr / alpha / freqs


def _wavelet(freq, length, sr, size):
    """One filter of librosa.filters.wavelet (Hann, L1-normalised), centred in `size` samples."""
    import scipy.signal

    t = np.arange(-length // 2, length // 2, dtype=float)
    sig = np.exp(1j * 2 * np.pi * freq / sr * t) * scipy.signal.get_window("hann", len(t), fftbins=True)
    sig /= np.abs(sig).sum()
    out = np.zeros(size, np.complex128)
    start = (size - len(sig)) // 2
    out[start : start + len(sig)] = sig
    return out


def _sparsify(row, quantile):
    """Indices of `row` to keep, as librosa.util.sparsify_rows: drop the smallest magnitudes that
    together hold at most `quantile` of its L1 norm."""
    mags = np.abs(row)
    order = np.argsort(mags)
    cumulative = np.cumsum(mags[order]) / mags.sum()
    drop = np.searchsorted(cumulative, quantile)
    return np.sort(order[drop:])


def spectrogram_batch(audio, kind, cfg):
    """Power spectrograms of a batch of clips (float32 (B, samples)), shape (B, n_bins, frames)."""
    import librosa

    audio = np.asarray(audio, np.float32)
    hop = int(cfg["hop_length"])
    if kind == "cqt":
        c = cfg["cqt"]
        if c.get("method", "kernel") == "kernel":
            return CQTKernel.for_config(cfg).power(audio)
        cqt = librosa.cqt(
            audio, sr=cfg["sample_rate"], hop_length=hop, fmin=c["fmin"], n_bins=cfg["n_bins"],
            bins_per_octave=c["bins_per_octave"],
        )  # fmt: skip
        return np.abs(cqt) ** 2
    section = cfg[kind]
    power = stft_power(audio, section["n_fft"], hop, section["win_length"])  # (B, frames, n_fft // 2 + 1)
    weights = _filterbank(kind, cfg)
    out = power.reshape(-1, power.shape[-1]) @ weights.T  # one BLAS product for the whole batch
    return out.reshape(len(audio), -1, weights.shape[0]).transpose(0, 2, 1)


_WINDOWS = {}


def stft_power(audio, n_fft, hop_length, win_length):
    """|STFT|^2 of a batch of clips, as librosa.stft (centred frames, zero padding, periodic Hann).

    librosa's window of `win_length` sits in the middle of the `n_fft` frame; only those samples are
    read and the FFT zero-pads them to n_fft, which shifts the phase but not the power.

    Args:
        audio: float32 (B, samples).

    Returns:
        float32 (B, frames, n_fft // 2 + 1) with frames = 1 + samples // hop_length.
    """
    import scipy.fft
    import scipy.signal

    audio = np.asarray(audio, np.float32)
    n_fft, hop, win = int(n_fft), int(hop_length), int(win_length)
    if win not in _WINDOWS:
        _WINDOWS[win] = scipy.signal.get_window("hann", win, fftbins=True).astype(np.float32)
    frames = 1 + audio.shape[-1] // hop
    offset = (n_fft - win) // 2
    padded = np.pad(audio, ((0, 0), (n_fft // 2, n_fft // 2)))
    view = np.lib.stride_tricks.sliding_window_view(padded[:, offset:], win, axis=-1)[:, ::hop][:, :frames]
    spectrum = scipy.fft.rfft(view * _WINDOWS[win], n=n_fft, axis=-1)
    return spectrum.real**2 + spectrum.imag**2


def spectrogram(audio, kind, cfg):
    """One power spectrogram of `audio` (float32 (samples,)), shape (n_bins, frames), linear power."""
    return spectrogram_batch(np.asarray(audio, np.float32)[None], kind, cfg)[0]


def to_db(power, top_db):
    """Power -> dB relative to the maximum, floored at -top_db, mapped to [-1, 1].

    `power` is one spectrogram (bins, frames) or a batch (B, bins, frames), each referenced to its
    own maximum.
    """
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    db = np.maximum(db - db.max(axis=(-2, -1), keepdims=True), -top_db)
    return db / (top_db / 2.0) + 1.0


def compute_batch(audio, cfg):
    """The model inputs of a batch of clips.

    Args:
        audio: float32 (B, samples), each exactly sample_rate * duration samples.
        cfg: the `features:` config section.

    Returns:
        float32 array (B, n_bins, frames, len(kinds)), values in [-1, 1].
    """
    return np.stack([to_db(spectrogram_batch(audio, k, cfg), cfg["top_db"]) for k in cfg["kinds"]], axis=-1).astype(
        np.float32
    )


def compute_features(audio, cfg):
    """The model input of one clip (`compute_batch` of one).

    Args:
        audio: float32 (samples,), exactly sample_rate * duration samples.
        cfg: the `features:` config section.

    Returns:
        float32 array (n_bins, frames, len(kinds)), values in [-1, 1].
    """
    return compute_batch(np.asarray(audio, np.float32)[None], cfg)[0]


def features_of_file(path, cfg, report=None):
    """`compute_features` of the wav at `path` (read with `asc.data.read_wav`)."""
    audio = read_wav(path, cfg["sample_rate"], cfg["duration"], cfg["resample"], report)
    return compute_features(audio, cfg)


_BATCH = 16  # clips per batched FFT inside a chunk (a few MB of temporaries per thread)


def compute_many(paths, cfg, report=None, out=None):
    """Features of many files: batches of 16 clips shared among `cfg["workers"]` threads.

    Args:
        paths: list of str.
        cfg: the `features:` config section.
        report: `ClipReport` or None.
        out: float32 array (len(paths), n_bins, frames, kinds) to fill, or None for a new one.

    Returns:
        float32 array (len(paths), n_bins, frames, kinds).
    """
    report = report if report is not None else ClipReport()
    workers = max(1, int(cfg["workers"]))
    out = np.zeros((len(paths), *input_shape(cfg)), np.float32) if out is None else out
    starts = list(range(0, len(paths), _BATCH))

    def one(start):
        part = paths[start : start + _BATCH]
        audio = np.stack([read_wav(p, cfg["sample_rate"], cfg["duration"], cfg["resample"], report) for p in part])
        out[start : start + len(part)] = compute_batch(audio, cfg)

    if workers == 1 or len(starts) < 2:
        for start in starts:
            one(start)
    else:
        # numpy/scipy release the GIL in their FFTs and products; threads keep TensorFlow safe (no fork).
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, starts))
    return out


def iter_features(paths, cfg, report=None, chunk=None):
    """Yield (start, float32 features of paths[start:start + chunk]) chunk by chunk: O(chunk) memory."""
    chunk = max(1, int(chunk or cfg.get("chunk", 256)))
    buffer = None
    for start in range(0, len(paths), chunk):
        part = paths[start : start + chunk]
        if buffer is None or len(buffer) != len(part):
            buffer = np.zeros((len(part), *input_shape(cfg)), np.float32)
        yield start, compute_many(part, cfg, report, out=buffer)


def default_cache_path(data_root, cfg):
    """Where the cache of `data_root` lives: `features.cache`, else `<data_root>/features.h5`."""
    return Path(cfg["cache"]) if cfg["cache"] else Path(data_root) / "features.h5"


CACHE_FORMAT = 2  # attribute `format` of a chunked cache; the old per-clip caches have none
# Called after every committed chunk with (rows committed); tests use it to kill a run halfway.
_after_chunk = None


def _decode(names):
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _cache_state(path, cfg):
    """(status, names in row order) of an existing cache.

    status: "ok", "missing", "changed" (another feature config), "corrupt" (truncated, unreadable or
    inconsistent), "old" (the per-clip format of earlier versions, same config) or "old-changed".
    """
    import h5py

    path = Path(path)
    if not path.exists():
        return "missing", []
    try:
        with h5py.File(path, "r") as h5:
            if "format" not in h5.attrs:  # the one-dataset-per-clip format
                if not h5.attrs.get("complete", False) or not isinstance(h5.get("features"), h5py.Group):
                    return "corrupt", []
                if h5.attrs.get("config_hash") != feature_hash(cfg):
                    return "old-changed", []
                return "old", sorted(_decode(h5["names"][...]))
            if int(h5.attrs["format"]) != CACHE_FORMAT:
                return "corrupt", []
            if h5.attrs.get("config_hash") != feature_hash(cfg):
                return "changed", []
            x, names, rows = h5["features"], h5["names"], int(h5.attrs["rows"])
            if tuple(x.shape[1:]) != tuple(input_shape(cfg)) or x.dtype != np.dtype(cfg["cache_dtype"]):
                return "corrupt", []
            if not 0 <= rows <= min(x.shape[0], names.shape[0]):
                return "corrupt", []
            have = _decode(names[:rows])
            if rows and (x[rows - 1].shape != x.shape[1:]):  # reads the last committed chunk
                return "corrupt", []
            if len(set(have)) != len(have):
                return "corrupt", []
            return "ok", have
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):
        return "corrupt", []


def _new_cache(path, cfg, report=None):
    """Create an empty format-2 cache at `path` (atomically: a temporary file, then a rename)."""
    import h5py

    shape, dtype = tuple(input_shape(cfg)), cfg["cache_dtype"]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("features", (0, *shape), dtype, maxshape=(None, *shape), chunks=(1, *shape))
            h5.create_dataset("names", (0,), h5py.string_dtype(), maxshape=(None,), chunks=(1024,))
            h5.attrs["format"] = CACHE_FORMAT
            h5.attrs["config_hash"] = feature_hash(cfg)
            h5.attrs["config"] = json.dumps(cfg, sort_keys=True)
            h5.attrs["clip_report"] = json.dumps((report or ClipReport()).as_dict())
            h5.attrs["rows"] = 0


def _append(h5, names, x):
    """Append rows (names, features) after the committed ones, then commit them (crash-safe order)."""
    rows = int(h5.attrs["rows"])
    end = rows + len(names)
    for key in ("features", "names"):
        if h5[key].shape[0] < end:
            h5[key].resize(end, axis=0)
    h5["features"][rows:end] = x.astype(h5["features"].dtype, copy=False)
    h5["names"][rows:end] = np.array(names, dtype=object)
    h5.flush()  # the rows are on disk before they are counted
    h5.attrs["rows"] = end
    h5.flush()
    return end


def _convert_old(path, cfg, names, say):
    """Copy an old per-clip cache (same config) into a new format-2 file, chunk by chunk."""
    import h5py

    chunk = max(1, int(cfg.get("chunk", 256)))
    with atomic_path(path) as tmp:
        _new_cache(tmp, cfg)
        with h5py.File(path, "r") as old, h5py.File(tmp, "r+") as new:
            group = old["features"]
            for start in range(0, len(names), chunk):
                part = names[start : start + chunk]
                _append(new, part, np.stack([group[n][...] for n in part]))
    say(f"{path}: converted {len(names)} clips from the old one-dataset-per-clip cache to the chunked format")


def build_cache(data_root, filenames, cfg, path=None, say=print):
    """Make sure the cache at `path` holds the features of every file in `filenames`.

    Computes only what is missing, `features.chunk` clips at a time, appending each finished chunk
    to the cache (so memory stays O(chunk) and a killed run resumes after its last finished chunk).
    Rebuilds from scratch (and says so) when the cache was built with another feature config or is
    truncated/corrupt; converts an old-format cache of the same config (one line).

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
    elif status == "old-changed":
        say(f"{path}: old one-dataset-per-clip cache of another feature config; rebuilding it in the chunked format")
    elif status == "old":
        _convert_old(path, cfg, have, say)
    have = set(have) if status in ("ok", "old") else set()
    wanted = list(dict.fromkeys(filenames))
    todo = [f for f in wanted if f not in have]
    report = ClipReport()
    if not todo:
        return path, {"computed": 0, "reused": len(wanted), **report.as_dict()}
    for name in todo:
        if not (data_root / name).is_file():
            raise DataError(f"{data_root / name}: file not found")
    fresh = status not in ("ok", "old")
    if fresh:
        _new_cache(path, cfg)
    chunk = max(1, int(cfg.get("chunk", 256)))
    resumed = f" (resuming after {len(have)} cached)" if have else ""
    say(
        f"computing {len(todo)} feature stacks {input_shape(cfg)} in chunks of {chunk} with "
        f"{cfg['workers']} workers -> {path}{resumed}"
    )
    done = 0
    with h5py.File(path, "r+") as h5:
        try:
            for start, x in iter_features([str(data_root / f) for f in todo], cfg, report, chunk):
                rows = _append(h5, todo[start : start + len(x)], x)
                done += len(x)
                if _after_chunk is not None:
                    _after_chunk(rows)
        except DataError:
            if fresh and done == 0:  # a bad clip in the first chunk: leave no empty cache behind
                h5.close()
                path.unlink(missing_ok=True)
            raise
        totals = json.loads(h5.attrs.get("clip_report", "{}"))
        h5.attrs["clip_report"] = json.dumps({k: totals.get(k, 0) + v for k, v in report.as_dict().items()})
    for line in report.lines():
        say(line)
    return path, {"computed": done, "reused": len(wanted) - len(todo), **report.as_dict()}


def _rows_of(path, filenames, cfg):
    """Row index of each of `filenames` in the cache at `path`; DataError if unusable or missing."""
    status, have = _cache_state(path, cfg)
    if status != "ok":
        raise DataError(f"{path}: feature cache is {status}; run `python -m asc features` again")
    index = {name: i for i, name in enumerate(have)}
    rows = np.empty(len(filenames), np.int64)
    for i, name in enumerate(filenames):
        if name not in index:
            raise DataError(f"{path}: no features for {name}; run `python -m asc features` again")
        rows[i] = index[name]
    return rows


def _read_rows(dataset, rows, out):
    """out[i] = dataset[rows[i]]: contiguous runs as slices, the rest one row at a time (sorted)."""
    rows = np.asarray(rows, np.int64)
    if len(rows) == 0:
        return out
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    for run_order, run_rows in zip(np.split(order, breaks), np.split(sorted_rows, breaks)):
        block = dataset[int(run_rows[0]) : int(run_rows[-1]) + 1]
        out[run_order] = block
    return out


def load_cache(path, filenames, cfg):
    """Features of `filenames` from the cache at `path`.

    Returns:
        float32 array (len(filenames), n_bins, frames, kinds).

    Raises:
        DataError: the cache does not match `cfg` or lacks a file (run `build_cache` first).
    """
    import h5py

    rows = _rows_of(path, filenames, cfg)
    out = np.zeros((len(filenames), *input_shape(cfg)), np.float32)
    with h5py.File(path, "r") as h5:
        _read_rows(h5["features"], rows, out)
    return out


class CachedFeatures:
    """A lazy view of cached features for data sets too large for memory.

    `x[i]` reads one clip's stack, `x[indices]` or `x[a:b]` several, as float32. Behaves like the
    (N, n_bins, frames, kinds) array `load_cache` returns, without loading it; reads go through the
    name index to rows of the one chunked dataset (contiguous rows as one slice).

    Args:
        path: the cache file; names: list of file names (its rows); cfg: the `features:` section.
    """

    def __init__(self, path, names, cfg):
        self.rows = _rows_of(path, names, cfg)
        self.path, self.names = Path(path), list(names)
        self.shape = (len(self.names), *input_shape(cfg))
        self._h5 = None
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.names)

    def _dataset(self):
        import h5py

        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=8 << 20)
        return self._h5["features"]

    def __getitem__(self, index):
        with self._lock:
            data = self._dataset()
            if isinstance(index, (int, np.integer)):
                return data[int(self.rows[int(index)])].astype(np.float32)
            rows = self.rows[index] if isinstance(index, slice) else self.rows[np.asarray(index, np.int64)]
            return _read_rows(data, rows, np.zeros((len(rows), *self.shape[1:]), np.float32))

    def close(self):
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


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


def data_set_names(cfg):
    """File names of every clip of the data set at `data.root` (train, evaluate and, for TAU, meta.csv)."""
    from asc.data import open_dataset

    root = Path(cfg["data"]["root"])
    if not cfg["data"]["root"]:
        raise ConfigError("--data: no data folder given (and the run does not name one)")
    names = []
    for split in ("train", "evaluate"):
        try:
            names += [c.filename for c in open_dataset(root, split, cfg["data"]["classes"], cfg["data"]["val_fraction"]).clips]
        except DataError:
            if split == "train":
                raise
    if (root / "meta.csv").is_file():
        names += [c.filename for c in open_dataset(root, "all", cfg["data"]["classes"]).clips]
    return list(dict.fromkeys(names))


def build_data_cache(cfg, out=None, say=print):
    """The `features` command without TensorFlow: cache every clip of `data.root` (resumable).

    Same as `asc.pipeline.build_all_features`; this module imports no TensorFlow, so the command's
    memory is librosa/numpy plus O(features.chunk) clips.

    Returns:
        dict: path, computed, reused and the ClipReport counts.
    """
    check_config(cfg["features"])
    root = Path(cfg["data"]["root"])
    names = data_set_names(cfg)
    path = Path(out) if out else default_cache_path(root, cfg["features"])
    path, counts = build_cache(root, names, cfg["features"], path, say)
    say(f"{path}: {counts['computed']} computed, {counts['reused']} reused, shape {input_shape(cfg['features'])}")
    return {"path": str(path), **counts}


# =============================================================================================
# The front end for firmware (`export --target mcu`): the filter banks as files, and the features
# recomputed from those files alone in plain numpy.
#
# The asc front end for firmware: filter banks as files, and the features from those files alone.
#
# The asc model's input is three spectrograms computed outside the model (`asc.features`, numpy +
# librosa). A device that records audio must compute the same features, so `write_frontend` writes
# everything that defines them, with no librosa needed afterwards:
#
# * `frontend.json`: every parameter (sample rate, clip length, hop, frames, per kind the FFT
#   size, window, padding, frequency range, the dB reference and the scaling to [-1, 1]) and the
#   file list.
# * Per kind a banded sparse filter bank (row k covers FFT bins start[k] .. start[k] + length[k] - 1;
#   its weights are `weights[offset[k] : offset[k] + length[k]]`, offset = cumulative lengths) as
#   `<kind>_start.npy`, `<kind>_length.npy`, `<kind>_weights.npy`, and the analysis window as
#   `<kind>_window.npy` (n_fft,), the same arrays as C arrays in `frontend.h` / `frontend.cc`.
#   - logmel: librosa's Slaney Mel matrix on the STFT power spectrum (exactly its non-zero band).
#   - gammatone: `asc.features.gammatone_filterbank` (ERB-spaced 4th-order gammatone power
#     responses, unit sum per row), each row cut where its weight falls under
#     `GAMMATONE_THRESHOLD` times the row's peak (-90 dB; the features floor at -top_db = -80 dB).
#   - cqt: complex frequency-domain kernels (Brown & Puckette's constant-Q transform): librosa's
#     CQT wavelets (Hann-windowed complex exponentials, L1-normalised, one per bin, length
#     Q * sample_rate / f_k with Q = 1 / (2^(1/bins_per_octave) - 1)) at the full sample rate,
#     zero-padded to n_fft (a power of two >= the longest filter), FFT'd, scaled by
#     length / n_fft / sqrt(length) (librosa's `scale=True`), with librosa's sparsification (the
#     smallest entries making up 1% of each row's L1 norm dropped). Applied to the STFT of the clip
#     with a rectangular n_fft window, same hop. The documented approximation: `librosa.cqt`
#     computes the lower octaves on audio decimated by 2 per octave (soxr resampling), this front
#     end computes every octave at the full rate. The two agree to a fraction of a dB where the
#     features have signal (differences of several dB only in troughs 50-70 dB under the clip's
#     peak); see `FRONTEND_CQT_TOLERANCE`. The cqt window is all ones (kept as a file for uniformity, not as
#     a C array). Cost on a device: one 32768-point real FFT per hop at 44.1 kHz and 24 bins per
#     octave from 50 Hz (the longest filter is ~30,000 samples); a multi-rate implementation is
#     cheaper and matches to the same tolerance.
#
# `frontend_features(audio, load_frontend(folder))` recomputes the model input from those files in
# plain numpy (no librosa, no TensorFlow). Tolerances against `asc.features.compute_features`
# (features in [-1, 1], where 0.025 is 1 dB at top_db 80) are `LOGMEL_TOLERANCE`,
# `GAMMATONE_TOLERANCE` (largest absolute difference) and `FRONTEND_CQT_TOLERANCE` (mean and 99th
# percentile of the absolute difference), checked on sample clips by tests/asc/test_frontend.py.
#
# On the device: frame t of the clip (zero-padded by n_fft // 2 samples at both ends) starts at
# sample t * hop; multiply it by the window, take the real FFT (n_fft // 2 + 1 bins), then
# power = |X|^2 and band_k = sum_j w_kj power_j (logmel, gammatone) or
# power_k = |sum_j c_kj X_j|^2 (cqt, complex weights); then the dB scaling in `frontend.json`.

FRONTEND_FORMAT = "asc-frontend"
FRONTEND_VERSION = 1
#: dB floor of the power before the log (the `1e-10` of `asc.features.to_db`).
AMIN = 1e-10
#: Gammatone rows are cut where the weight is below this times the row's peak.
GAMMATONE_THRESHOLD = 1e-9
#: librosa's CQT kernel sparsity (`librosa.cqt(sparsity=0.01)`).
CQT_SPARSITY = 0.01
#: Largest absolute difference from `asc.features` (feature units; 0.025 = 1 dB).
LOGMEL_TOLERANCE = 1e-3
GAMMATONE_TOLERANCE = 1e-3
#: CQT (the single-rate approximation): (mean, 99th percentile) of the absolute difference.
#: Measured on sample clips: mean 0.002-0.005 (0.1-0.2 dB), 99th percentile 0.013-0.06; the
#: largest single differences (up to ~0.4) sit in spectral troughs 50-70 dB under the clip's peak.
FRONTEND_CQT_TOLERANCE = (0.01, 0.1)

_C_PREFIX = "frontend"


# ---------------------------------------------------------------------------------------------
# Writing (at export time: uses librosa and asc.features)


def _band(row, threshold=0.0):
    """(start, weights) of the smallest band holding every entry of `row` above `threshold`."""
    keep = np.flatnonzero(np.abs(row) > threshold)
    if len(keep) == 0:
        return 0, row[:0]
    return int(keep[0]), row[keep[0]:keep[-1] + 1]


def _banded(matrix, threshold_fraction=0.0):
    """Banded sparse form of a (rows, bins) matrix: start, length (int32), weights (concatenated)."""
    starts, lengths, parts = [], [], []
    for row in matrix:
        start, weights = _band(row, threshold_fraction * np.abs(row).max())
        starts.append(start)
        lengths.append(len(weights))
        parts.append(weights)
    return np.array(starts, np.int32), np.array(lengths, np.int32), np.concatenate(parts)


def _stft_window(win_length, n_fft):
    """librosa's STFT window: periodic Hann of `win_length`, zero-padded at the centre of n_fft."""
    import librosa

    window = librosa.filters.get_window("hann", int(win_length), fftbins=True)
    return librosa.util.pad_center(window, size=int(n_fft)).astype(np.float32)


def cqt_kernels(cfg):
    """Single-rate CQT kernels for the `features:` config `cfg`.

    Returns:
        (kernels: complex64 (n_bins, n_fft // 2 + 1), n_fft, filter lengths (n_bins,) in samples).
    """
    import librosa

    c = cfg["cqt"]
    sr, bpo, n_bins = float(cfg["sample_rate"]), int(c["bins_per_octave"]), int(cfg["n_bins"])
    freqs = librosa.cqt_frequencies(n_bins, fmin=float(c["fmin"]), bins_per_octave=bpo)
    ratio = 2.0 ** (2.0 / bpo)
    alpha = np.full(n_bins, (ratio - 1) / (ratio + 1))  # librosa's relative bandwidth for a CQT
    basis, lengths = librosa.filters.wavelet(freqs=freqs, sr=sr, window="hann", filter_scale=1, pad_fft=True,
                                             norm=1, gamma=0, alpha=alpha)
    n_fft = basis.shape[1]
    basis = basis * (lengths[:, None] / float(n_fft))
    kernels = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
    kernels = librosa.util.sparsify_rows(kernels, quantile=CQT_SPARSITY).toarray()
    kernels /= np.sqrt(lengths)[:, None]
    return kernels.astype(np.complex64), int(n_fft), lengths


def build_frontend(cfg):
    """The front end of feature config `cfg` (the `features:` section) in memory.

    Returns:
        dict: "params" (what `frontend.json` holds) and "arrays" (name -> numpy array, the .npy
        files: <kind>_window, <kind>_start, <kind>_length, <kind>_weights).
    """

    check_config(cfg)
    n_bins, frames, _ = input_shape(cfg)
    samples = int(round(cfg["sample_rate"] * cfg["duration"]))
    arrays, kinds = {}, {}
    for kind in cfg["kinds"]:
        if kind == "cqt":
            kernels, n_fft, lengths = cqt_kernels(cfg)
            start, length, weights = _banded(kernels)
            arrays[f"{kind}_window"] = np.ones(n_fft, np.float32)
            c = cfg["cqt"]
            kinds[kind] = {
                "transform": "power_k = |sum_j kernel_kj X_j|^2, X = rfft(frame * window)",
                "n_fft": n_fft, "win_length": n_fft, "window": "rectangular (ones): the kernels carry the Hann windows",
                "fmin": float(c["fmin"]), "bins_per_octave": int(c["bins_per_octave"]),
                "fmax_bin": float(c["fmin"] * 2 ** ((n_bins - 1) / c["bins_per_octave"])),
                "filter_lengths": [round(float(v), 3) for v in lengths],
                "kernel_scaling": "FFT of (wavelet * length / n_fft), divided by sqrt(length)",
                "sparsity": CQT_SPARSITY,
                "weights_dtype": "complex64 (C: interleaved real, imaginary float pairs)",
                "approximation": "single-rate constant-Q kernels; librosa.cqt decimates by 2 per octave",
            }
        else:
            section = cfg[kind]
            matrix = np.asarray(_filterbank(kind, cfg), np.float32)
            threshold = GAMMATONE_THRESHOLD if kind == "gammatone" else 0.0
            start, length, weights = _banded(matrix, threshold)
            arrays[f"{kind}_window"] = _stft_window(section["win_length"], section["n_fft"])
            kinds[kind] = {
                "transform": "band_k = sum_j weight_kj |X_j|^2, X = rfft(frame * window)",
                "n_fft": int(section["n_fft"]), "win_length": int(section["win_length"]),
                "window": "periodic Hann of win_length samples, zero-padded at the centre of n_fft",
                "fmin": float(section["fmin"]), "fmax": float(section["fmax"]) or cfg["sample_rate"] / 2.0,
                "weights_dtype": "float32",
            }
            if kind == "logmel":
                kinds[kind]["mel"] = "Slaney mel scale and area normalisation (librosa htk=False, norm='slaney')"
            else:
                kinds[kind].update(order=int(section["order"]), bandwidth="1.019 ERB(fc), Glasberg & Moore 1990",
                                   threshold=GAMMATONE_THRESHOLD)
        arrays[f"{kind}_start"], arrays[f"{kind}_length"], arrays[f"{kind}_weights"] = start, length, weights
        kinds[kind].update(
            nnz=int(length.sum()),
            files={part: f"{kind}_{part}.npy" for part in ("window", "start", "length", "weights")},
        )
    params = {
        "format": FRONTEND_FORMAT,
        "version": FRONTEND_VERSION,
        "sample_rate": int(cfg["sample_rate"]),
        "duration": float(cfg["duration"]),
        "samples": samples,
        "audio": "mono float in [-1, 1]; shorter clips zero-padded at the end, longer ones cropped",
        "hop_length": int(cfg["hop_length"]),
        "frames": frames,
        "framing": "centred: the clip is padded with n_fft // 2 zeros at both ends; frame t starts at t * hop",
        "n_bins": n_bins,
        "kinds": list(cfg["kinds"]),
        "top_db": float(cfg["top_db"]),
        "amin": AMIN,
        "scaling": "db = 10 * log10(max(power, amin)); db = max(db - max(db over the clip), -top_db); "
                   "value = db / (top_db / 2) + 1  (per kind; values in [-1, 1])",
        "output": {"shape": [n_bins, frames, len(cfg["kinds"])],
                   "layout": "row 0 = lowest frequency, column = frame, channel = kind in `kinds` order"},
        "bands": "row k uses FFT bins start[k] .. start[k] + length[k] - 1 with weights[offset[k] + i], "
                 "offset[k] = length[0] + ... + length[k - 1]",
        "kinds_params": kinds,
    }
    return {"params": params, "arrays": arrays}


def write_frontend(cfg, out_dir, *, model_input=None):
    """Write `frontend.json`, the .npy arrays and `frontend.h` / `frontend.cc` to `out_dir`.

    Args:
        cfg: the `features:` config section.
        out_dir: str or Path.
        model_input: optional dict (scale, zero_point) of the int8 model input, recorded in
            `frontend.json` so the device can quantize the features.

    Returns:
        the `frontend.json` dict (plus "files": every path written).
    """
    out_dir = Path(out_dir)
    frontend = build_frontend(cfg)
    params = dict(frontend["params"])
    if model_input is not None:
        params["model_input"] = {
            "dtype": "int8", "scale": float(model_input["scale"]), "zero_point": int(model_input["zero_point"]),
            "quantize": "q = clamp(round(value / scale) + zero_point, -128, 127)",
        }
    files = []
    for name, array in frontend["arrays"].items():
        path = out_dir / f"{name}.npy"
        with atomic_path(path) as tmp:
            np.save(tmp, array, allow_pickle=False)
        files.append(str(path))
    header, source = c_sources(params, frontend["arrays"])
    write_text(out_dir / f"{_C_PREFIX}.h", header)
    write_text(out_dir / f"{_C_PREFIX}.cc", source)
    files += [str(out_dir / f"{_C_PREFIX}.h"), str(out_dir / f"{_C_PREFIX}.cc")]
    write_json(out_dir / "frontend.json", params)
    return {**params, "files": [*files, str(out_dir / "frontend.json")]}


def _c_floats(values, per_line=8):
    items = [f"{float(v):.9g}f" for v in np.asarray(values).ravel()]
    return "\n".join("  " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def _c_ints(values, per_line=16):
    items = [str(int(v)) for v in np.asarray(values).ravel()]
    return "\n".join("  " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def c_sources(params, arrays):
    """(header, source) text of the front end's C arrays and constants.

    Per kind K: FRONTEND_K_N_FFT, FRONTEND_K_NNZ, `g_frontend_K_window[n_fft]` (not for cqt:
    rectangular),
    `g_frontend_K_start[n_bins]`, `g_frontend_K_length[n_bins]` and `g_frontend_K_weights[nnz]`
    (cqt: 2 * nnz floats, real and imaginary interleaved).
    """
    p = _C_PREFIX.upper()
    lines = [
        "// Generated by asc/features.py (the firmware front end): do not edit. See frontend.json for the algorithm.",
        f"#ifndef {p}_H_", f"#define {p}_H_", "", "#include <stdint.h>", "",
        f"#define {p}_SAMPLE_RATE {params['sample_rate']}",
        f"#define {p}_SAMPLES {params['samples']}",
        f"#define {p}_HOP_LENGTH {params['hop_length']}",
        f"#define {p}_FRAMES {params['frames']}",
        f"#define {p}_N_BINS {params['n_bins']}",
        f"#define {p}_NUM_KINDS {len(params['kinds'])}",
        f"#define {p}_TOP_DB {params['top_db']!r}f",
        f"#define {p}_AMIN {params['amin']!r}f",
    ]
    if "model_input" in params:
        lines += [f"#define {p}_MODEL_INPUT_SCALE {params['model_input']['scale']!r}f",
                  f"#define {p}_MODEL_INPUT_ZERO_POINT {params['model_input']['zero_point']}"]
    source = ["// Generated by asc/features.py (the firmware front end): do not edit.", f'#include "{_C_PREFIX}.h"', ""]
    for index, kind in enumerate(params["kinds"]):
        k = kind.upper()
        kp = params["kinds_params"][kind]
        nnz = kp["nnz"]
        weights = arrays[f"{kind}_weights"]
        if np.iscomplexobj(weights):
            weights = np.stack([weights.real, weights.imag], axis=-1)
            count = f"2 * {p}_{k}_NNZ"
        else:
            count = f"{p}_{k}_NNZ"
        lines += [
            "", f"// {kind} (channel {index}): {kp['transform']}",
            f"#define {p}_{k}_CHANNEL {index}",
            f"#define {p}_{k}_N_FFT {kp['n_fft']}",
            f"#define {p}_{k}_NNZ {nnz}",
            f"extern const float g_{_C_PREFIX}_{kind}_window[{p}_{k}_N_FFT];",
            f"extern const int32_t g_{_C_PREFIX}_{kind}_start[{p}_N_BINS];",
            f"extern const int32_t g_{_C_PREFIX}_{kind}_length[{p}_N_BINS];",
            f"extern const float g_{_C_PREFIX}_{kind}_weights[{count}];",
        ]
        if kind == "cqt":  # a rectangular window: no array
            lines.remove(f"extern const float g_{_C_PREFIX}_{kind}_window[{p}_{k}_N_FFT];")
        else:
            source += [f"const float g_{_C_PREFIX}_{kind}_window[{p}_{k}_N_FFT] = {{",
                       _c_floats(arrays[f"{kind}_window"]), "};"]
        source += [
            f"const int32_t g_{_C_PREFIX}_{kind}_start[{p}_N_BINS] = {{", _c_ints(arrays[f"{kind}_start"]), "};",
            f"const int32_t g_{_C_PREFIX}_{kind}_length[{p}_N_BINS] = {{", _c_ints(arrays[f"{kind}_length"]), "};",
            f"const float g_{_C_PREFIX}_{kind}_weights[{count}] = {{", _c_floats(weights), "};", "",
        ]
    lines += ["", f"#endif  // {p}_H_", ""]
    return "\n".join(lines), "\n".join(source)


# ---------------------------------------------------------------------------------------------
# Reading and computing (plain numpy)


def load_frontend(folder):
    """`frontend.json` and its arrays from `folder`.

    Returns:
        dict: "params" (the JSON) and "arrays" (name -> array).

    Raises:
        DataError: a file is missing or not a front end of this version.
    """
    folder = Path(folder)
    path = folder / "frontend.json"
    if not path.is_file():
        raise DataError(f"{path}: front end description not found")
    try:
        params = json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path}: not readable JSON ({err})") from err
    if params.get("format") != FRONTEND_FORMAT or params.get("version") != FRONTEND_VERSION:
        raise DataError(f"{path}: not an {FRONTEND_FORMAT} version {FRONTEND_VERSION} description")
    arrays = {}
    for kind in params["kinds"]:
        for part, name in params["kinds_params"][kind]["files"].items():
            file = folder / name
            if not file.is_file():
                raise DataError(f"{file}: front end array not found")
            arrays[f"{kind}_{part}"] = np.load(file, allow_pickle=False)
    return {"params": params, "arrays": arrays}


def _frames(audio, n_fft, hop, frames):
    """(frames, n_fft) centred frames of `audio` padded with n_fft // 2 zeros at both ends."""
    padded = np.pad(audio, (n_fft // 2, n_fft // 2))
    need = (frames - 1) * hop + n_fft
    if len(padded) < need:
        padded = np.pad(padded, (0, need - len(padded)))
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    return padded[index]


def _apply_bands(spectrum, start, length, weights):
    """(frames, n_bins) = spectrum (frames, bins) times the banded matrix (n_bins, bins)^T."""
    out = np.zeros((spectrum.shape[0], len(start)), dtype=np.result_type(spectrum, weights))
    offset = 0
    for k, (s, n) in enumerate(zip(start, length)):
        out[:, k] = spectrum[:, s:s + n] @ weights[offset:offset + n]
        offset += n
    return out


def _to_unit(power, top_db, amin):
    db = 10.0 * np.log10(np.maximum(power, amin))
    db = np.maximum(db - db.max(), -top_db)
    return db / (top_db / 2.0) + 1.0


def frontend_power(audio, frontend, kind):
    """Power spectrogram (n_bins, frames) of one kind, from the front end files (numpy only)."""
    params, arrays = frontend["params"], frontend["arrays"]
    kp = params["kinds_params"][kind]
    n_fft, hop, frames = int(kp["n_fft"]), int(params["hop_length"]), int(params["frames"])
    spectrum = np.fft.rfft(_frames(np.asarray(audio, np.float64), n_fft, hop, frames)
                           * arrays[f"{kind}_window"].astype(np.float64), axis=1)
    start, length = arrays[f"{kind}_start"], arrays[f"{kind}_length"]
    weights = arrays[f"{kind}_weights"]
    if np.iscomplexobj(weights):
        power = np.abs(_apply_bands(spectrum, start, length, weights.astype(np.complex128))) ** 2
    else:
        power = _apply_bands(np.abs(spectrum) ** 2, start, length, weights.astype(np.float64))
    return power.T


def frontend_features(audio, frontend):
    """The model input of one clip, computed from the front end files alone (numpy only).

    Args:
        audio: float (samples,) mono clip at params["sample_rate"]; padded or cropped to
            params["samples"].
        frontend: what `load_frontend` returns (or `build_frontend`).

    Returns:
        float32 array (n_bins, frames, len(kinds)), values in [-1, 1].
    """
    params = frontend["params"]
    audio = np.asarray(audio, np.float64)[: params["samples"]]
    audio = np.pad(audio, (0, params["samples"] - len(audio)))
    channels = [_to_unit(frontend_power(audio, frontend, kind), params["top_db"], params["amin"])
                for kind in params["kinds"]]
    return np.stack(channels, axis=-1).astype(np.float32)
