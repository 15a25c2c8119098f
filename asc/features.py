"""Spectrograms for acoustic scenes (log-Mel, Gammatone, CQT), their HDF5 cache, and the front end
a firmware recomputes them from (`export --target mcu`). Never imports TensorFlow.

The model's input is a stack of spectrograms, one channel per kind: float32 of shape
(n_bins, frames, len(kinds)), row 0 the lowest frequency, with frames = 1 + samples // hop_length
(centred frames; 87 for a 1-s clip at 44.1 kHz and hop 512, about 11.6 ms per frame). The same
`compute_batch` serves training, evaluation, prediction and the TFLite path. Each spectrogram is a
power spectrogram in dB relative to its own maximum (so independent of the recording gain, one of
the device differences), floored at `-top_db`, mapped linearly to [-1, 1] (db / (top_db / 2) + 1).

- log-Mel: librosa's Slaney Mel filter bank on an STFT power spectrum.
- Gammatone: ERB-spaced 4th-order gammatone power responses (`gammatone_filterbank`, Glasberg &
  Moore 1990) applied as weights to the STFT power spectrum, as in Ellis' `gammatonegram`.
- CQT: librosa's constant-Q filters (`cqt_filters`), scaled like `librosa.cqt(scale=True)`. At 24
  bins per octave the filter at `fmin` is about 34 * sample_rate / fmin samples long, so a 1-s
  clip needs fmin >= ~50 Hz (128 bins then span 50 Hz to 2 kHz; the paper's 10 Hz assumed 10-s
  clips). `cqt.method: kernel` (default, `_cqt_fold`) takes one FFT per clip at the full sample
  rate, about 20x faster than `librosa.cqt` (`cqt.method: librosa`, which resamples octave by
  octave); they agree within `CQT_TOLERANCE`.

Cache (format 2, `build_cache`): one chunked HDF5 dataset `features` (N, n_bins, frames, kinds)
(float16 by default, one clip per HDF5 chunk for random reads) plus a name index `names` (N,)
(file names relative to the data root), with the feature config and its hash as attributes.
Features are computed `features.chunk` clips at a time and appended in place (memory O(chunk));
after each chunk's rows are flushed, the attribute `rows` (the committed row count) is raised and
flushed, so a killed run leaves a valid cache of the finished chunks and the next run resumes
after them; rows beyond `rows` are ignored (and overwritten). A cache of another config, or
truncated/corrupt (or not of format 2), is rebuilt with one line saying so.

Front end (`write_frontend`), for a device without librosa: `frontend.json` (every parameter),
per kind the analysis window `<kind>_window.npy` (n_fft,) and a banded sparse filter bank (row k
covers FFT bins start[k] .. start[k] + length[k] - 1 with weights[offset[k]:offset[k] + length[k]],
offset = the cumulative lengths) as `<kind>_start.npy`, `<kind>_length.npy`, `<kind>_weights.npy`,
and the same arrays in `frontend.h` / `frontend.cc`. On the device: frame t of the clip
(zero-padded by n_fft // 2 at both ends) starts at sample t * hop; window it, real FFT, then
band_k = sum_j w_kj |X_j|^2 (logmel: exactly the Mel matrix's non-zero band; gammatone: rows cut
under `GAMMATONE_THRESHOLD` times their peak, -90 dB) or power_k = |sum_j c_kj X_j|^2 (cqt: the
training filters as complex single-rate kernels, Brown & Puckette, on a rectangular n_fft window:
every octave at the full rate, where librosa.cqt decimates; one 32768-point FFT per hop at the
defaults), then the dB scaling. `frontend_features` does that in plain numpy; it matches
`compute_features` within the `*_TOLERANCE` constants (tests/asc/test_frontend.py).
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np

from asc.data import ClipReport, read_wav
from common.config import config_hash
from common.errors import ConfigError, DataError
from common.export.carray import c_array
from common.io import atomic_path, write_json, write_text

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
    "gammatone": {"n_fft": 4096, "win_length": 1764, "fmin": 10.0, "fmax": 0.0, "order": 4},
    # method: kernel (one FFT per clip, batched; _cqt_fold) | librosa (librosa.cqt, 20x slower)
    "cqt": {"fmin": 50.0, "bins_per_octave": 24, "method": "kernel"},
    "cache": "",  # HDF5 cache path; "" = <data>/features.h5
    "cache_dtype": "float16",  # float16 halves the cache; the model sees float32 either way
    "workers": 2,  # threads computing features
    # Clips computed, held in memory and appended to the cache at a time (the memory bound: about
    # chunk x 134 KB of float32 features for the default stack); also the unit a run resumes by.
    "chunk": 256,
}
_NOT_HASHED = ("cache", "workers", "chunk")  # keys that do not change the features
# Largest difference between cqt.method kernel and librosa on the [-1, 1] feature scale that the
# tests allow, measured on the sample scenes: mean over all cells, and 99th percentile over the
# cells within 60 dB of the clip's maximum (the floor region below differs more, in absolute dB,
# since it is librosa's resampling noise).
CQT_TOLERANCE = {"mean": 0.02, "p99_above_-60dB": 0.06}
_BATCH = 16  # clips per batched FFT inside a chunk (a few MB of temporaries per thread)
CACHE_FORMAT = 2  # attribute `format` of a chunked cache
# Called after every committed chunk with (rows committed); tests use it to kill a run halfway.
_after_chunk = None

FRONTEND_FORMAT = "asc-frontend"
FRONTEND_VERSION = 1
AMIN = 1e-10  # power floor before the log
GAMMATONE_THRESHOLD = 1e-9  # front end gammatone rows are cut under this times the row's peak
CQT_SPARSITY = 0.01  # librosa's CQT kernel sparsity (`librosa.cqt(sparsity=0.01)`)
# Front end vs `compute_features`, in feature units (0.025 = 1 dB): largest absolute difference,
# and for the single-rate CQT (mean, 99th percentile). Measured on sample clips: CQT mean
# 0.002-0.005, 99th percentile 0.013-0.06; the largest single differences (up to ~0.4) sit in
# spectral troughs 50-70 dB under the clip's peak.
LOGMEL_TOLERANCE = 1e-3
GAMMATONE_TOLERANCE = 1e-3
FRONTEND_CQT_TOLERANCE = (0.01, 0.1)

_MEMO, _MEMO_LOCK = {}, threading.Lock()


def _memo(key, make):
    """`make()` once per key (filter banks, CQT kernels), shared by the worker threads."""
    with _MEMO_LOCK:
        if key not in _MEMO:
            _MEMO[key] = make()
        return _MEMO[key]


def feature_hash(cfg):
    """Hash of the settings that determine the features (the cache key).

    `cqt.method: librosa` hashes like the configs written before the method existed, so caches made
    with librosa's CQT stay valid for it.
    """
    cfg = {k: v for k, v in cfg.items() if k not in _NOT_HASHED}
    if isinstance(cfg.get("cqt"), dict) and cfg["cqt"].get("method", "librosa") == "librosa":
        cfg["cqt"] = {k: v for k, v in cfg["cqt"].items() if k != "method"}
    return config_hash(cfg)


def _samples(cfg):
    return int(round(cfg["sample_rate"] * cfg["duration"]))


def input_shape(cfg):
    """The model input shape (n_bins, frames, kinds) for feature config `cfg`."""
    return (int(cfg["n_bins"]), 1 + _samples(cfg) // int(cfg["hop_length"]), len(cfg["kinds"]))


def check_config(cfg):
    """Raise ConfigError for feature settings that cannot work."""
    for kind in cfg["kinds"]:
        if kind not in KINDS:
            raise ConfigError(f"config key 'features.kinds': unknown kind {kind!r}, "
                              f"expected some of {KINDS}")
    if not cfg["kinds"]:
        raise ConfigError("config key 'features.kinds' must name at least one spectrogram")
    if "cqt" in cfg["kinds"]:
        c, nyquist = cfg["cqt"], cfg["sample_rate"] / 2
        top = c["fmin"] * 2 ** ((cfg["n_bins"] - 1) / c["bins_per_octave"])
        if top >= nyquist:
            raise ConfigError(f"config key 'features.cqt.fmin': top CQT bin {top:.0f} Hz is above "
                              f"Nyquist {nyquist:.0f} Hz")
        q = 1.0 / (2 ** (1.0 / c["bins_per_octave"]) - 1)
        if q * cfg["sample_rate"] / c["fmin"] > cfg["sample_rate"] * cfg["duration"] * 0.75:
            raise ConfigError(
                f"config key 'features.cqt.fmin': the {c['fmin']} Hz CQT filter is longer than the "
                f"{cfg['duration']} s clip; raise fmin (>= {q / (0.75 * cfg['duration']):.0f} Hz)")
        if c.get("method", "kernel") not in ("kernel", "librosa"):
            raise ConfigError("config key 'features.cqt.method' must be kernel or librosa")
    if int(cfg.get("chunk", 1)) < 1:
        raise ConfigError("config key 'features.chunk' must be >= 1")
    if cfg["cache_dtype"] not in ("float16", "float32"):
        raise ConfigError("config key 'features.cache_dtype' must be float16 or float32")


# ---------------------------------------------------------------------------------------------
# Filter banks and spectrograms


def hz_to_erb_rate(f):
    """ERB-rate (Glasberg & Moore 1990) of frequency `f` in Hz."""
    return 21.4 * np.log10(1 + 0.00437 * np.asarray(f, dtype=np.float64))


def gammatone_center_frequencies(n_bins, fmin, fmax):
    """`n_bins` centre frequencies (Hz, ascending) equally spaced on the ERB-rate scale."""
    erb = np.linspace(hz_to_erb_rate(fmin), hz_to_erb_rate(fmax), n_bins)
    return (10 ** (erb / 21.4) - 1) / 0.00437


def gammatone_filterbank(sample_rate, n_fft, n_bins, fmin, fmax, order=4):
    """ERB-spaced gammatone weights for an STFT power spectrum, float32 (n_bins, n_fft // 2 + 1).

    Row i is the power response |H(f)|^2 of an order-`order` gammatone filter centred at
    `gammatone_center_frequencies(...)[i]` with bandwidth b = 1.019 ERB(fc):
    |H(f)| = (1 + ((f - fc) / b)^2) ^ (-order / 2), normalised to unit sum over the FFT bins.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    centres = gammatone_center_frequencies(n_bins, fmin, fmax)
    bandwidth = 1.019 * 24.7 * (4.37 * centres / 1000 + 1)
    response = (1 + ((freqs[None, :] - centres[:, None]) / bandwidth[:, None]) ** 2) ** (-order / 2)
    power = response**2
    return (power / power.sum(axis=1, keepdims=True)).astype(np.float32)


def _filterbank(kind, cfg):
    """The (n_bins, n_fft // 2 + 1) weights of `kind` (logmel or gammatone) for `cfg`."""
    s, sr, n_bins = cfg[kind], cfg["sample_rate"], cfg["n_bins"]
    fmax = float(s["fmax"]) or sr / 2.0

    def make():
        if kind == "gammatone":
            return gammatone_filterbank(sr, s["n_fft"], n_bins, s["fmin"], fmax, s["order"])
        import librosa

        return librosa.filters.mel(sr=sr, n_fft=s["n_fft"], n_mels=n_bins, fmin=s["fmin"],
                                   fmax=fmax)

    return _memo((kind, sr, n_bins, json.dumps(s, sort_keys=True)), make)


def _frames(audio, n_fft, hop):
    """Centred frames (..., 1 + samples // hop, n_fft) of clips (..., samples), a strided view of
    the clips zero-padded by n_fft // 2 at both ends: frame t starts at padded sample t * hop."""
    pad = [(0, 0)] * (audio.ndim - 1) + [(n_fft // 2, n_fft - n_fft // 2)]
    view = np.lib.stride_tricks.sliding_window_view(np.pad(audio, pad), n_fft, axis=-1)
    return view[..., ::hop, :][..., : 1 + audio.shape[-1] // hop, :]


def cqt_filters(cfg):
    """librosa's CQT filters for the `features:` config `cfg`, the one source of the training CQT
    (`_cqt_fold`) and the front end's kernels.

    Filter k, at f_k = fmin * 2^(k / bins_per_octave), is `librosa.filters.wavelet`'s (filter_scale
    1, gamma 0): a Hann-windowed complex sinusoid of length Q * sr / f_k samples (Q = 1 / alpha,
    alpha = (r - 1) / (r + 1), r = 2^(2 / bins_per_octave)), L1-normalised, centred in n samples
    (the next power of 2 of the longest filter).

    Returns:
        (spectra, n, lengths): spectra complex128 (n_bins, n // 2 + 1) is each filter's n-point
        FFT at the non-negative frequencies (the ones librosa.cqt uses) times sqrt(length), as
        `librosa.cqt(scale=True)` up to a constant; lengths float (n_bins,) in samples.
    """
    import scipy.signal

    c, sr = cfg["cqt"], float(cfg["sample_rate"])
    freqs = c["fmin"] * 2.0 ** (np.arange(int(cfg["n_bins"])) / c["bins_per_octave"])
    ratio = 2.0 ** (2.0 / c["bins_per_octave"])
    lengths = sr * (ratio + 1) / (ratio - 1) / freqs
    n = int(2.0 ** np.ceil(np.log2(lengths.max())))
    spectra = np.zeros((len(freqs), n // 2 + 1), np.complex128)
    for k, (freq, length) in enumerate(zip(freqs, lengths)):  # a few MB of temporaries at a time
        t = np.arange(-length // 2, length // 2, dtype=float)
        wavelet = np.exp(2j * np.pi * freq / sr * t) * scipy.signal.get_window("hann", len(t))
        padded = np.zeros(n, np.complex128)
        padded[(n - len(t)) // 2 : (n - len(t)) // 2 + len(t)] = wavelet / np.abs(wavelet).sum()
        spectra[k] = np.fft.fft(padded)[: n // 2 + 1] * np.sqrt(length)
    return spectra, n, lengths


def _sparsify(row, quantile=CQT_SPARSITY):
    """Indices of `row` to keep, as librosa.util.sparsify_rows: drop the smallest magnitudes that
    together hold at most `quantile` of its L1 norm."""
    mags = np.abs(row)
    order = np.argsort(mags)
    drop = np.searchsorted(np.cumsum(mags[order]) / mags.sum(), quantile)
    return np.sort(order[drop:])


def _cqt_fold(cfg):
    """The CQT of `cqt.method: kernel`, with one FFT per clip: (fold, T, M, pad) for `cfg`.

    librosa's CQT response of frame t and bin k is the correlation of the (zero-padded) clip with
    filter k at lag t * hop. Computed for the whole clip at once: U = rfft(clip padded to M = T *
    hop samples, `pad` zeros first), then for every bin the product U * conj(W_k) (W_k: the M-point
    spectrum of filter k of `cqt_filters`, sparsified like librosa's, keeping 99 % of its L1 mass)
    is folded modulo T (summing the bins F = m + jT), which samples the correlation every hop
    samples, and a T-point inverse FFT gives all frames. The folding is one sparse matrix `fold`
    (n_bins * T, M/2+1) built once per config, so a batch costs one rfft per clip, one sparse
    product and n_bins small inverse FFTs. M >= samples + the longest filter: nothing wraps around.
    """
    import scipy.fft
    import scipy.sparse

    def make():
        spectra, n, _ = cqt_filters(cfg)
        T = scipy.fft.next_fast_len(-(-(_samples(cfg) + n) // int(cfg["hop_length"])))
        M = T * int(cfg["hop_length"])
        rows, cols, values = [], [], []
        for k, spectrum in enumerate(spectra):
            kernel = np.fft.fft(spectrum, n=n)  # h_k[j] = sum_f B_k(f) exp(-2 pi i f j / n)
            w = np.conj(np.fft.fft(np.conj(kernel), n=M))[: M // 2 + 1]
            keep = _sparsify(w)
            rows.append(k * T + keep % T)  # row k*T + m sums the bins F = m (mod T) of filter k
            cols.append(keep)
            values.append(w[keep])
        fold = scipy.sparse.csr_matrix(
            (np.concatenate(values).astype(np.complex64),
             (np.concatenate(rows), np.concatenate(cols))), shape=(len(spectra) * T, M // 2 + 1))
        return fold, T, M, n // 2  # frame t is centred on sample t * hop, as librosa's

    key = ("cqt", cfg["sample_rate"], cfg["duration"], cfg["hop_length"], cfg["n_bins"],
           json.dumps(cfg["cqt"], sort_keys=True))
    return _memo(key, make)


def spectrogram_batch(audio, kind, cfg):
    """Power spectrograms of a batch of clips (float32 (B, samples)), shape (B, n_bins, frames).

    logmel, gammatone: the filter bank times |STFT|^2 as librosa.stft's (centred frames, zero
    padding, periodic Hann). librosa's window of `win_length` sits in the middle of the `n_fft`
    frame; only those samples are read and the FFT zero-pads them to n_fft, which shifts the phase
    but not the power.
    """
    import scipy.fft
    import scipy.signal

    audio, hop = np.asarray(audio, np.float32), int(cfg["hop_length"])
    if kind == "cqt":
        c = cfg["cqt"]
        if c.get("method", "kernel") == "kernel":
            fold, T, M, pad = _cqt_fold(cfg)
            padded = np.zeros((len(audio), M), np.float32)
            padded[:, pad : pad + audio.shape[1]] = audio
            folded = (fold @ scipy.fft.rfft(padded, axis=1).T).T.reshape(len(audio), -1, T)
            response = scipy.fft.ifft(folded, axis=-1)[..., : 1 + audio.shape[1] // hop]
            return (response.real**2 + response.imag**2).astype(np.float32)
        import librosa

        return np.abs(librosa.cqt(audio, sr=cfg["sample_rate"], hop_length=hop, fmin=c["fmin"],
                                  n_bins=cfg["n_bins"], bins_per_octave=c["bins_per_octave"])) ** 2
    n_fft, win = int(cfg[kind]["n_fft"]), int(cfg[kind]["win_length"])
    offset = (n_fft - win) // 2
    frames = _frames(audio, n_fft, hop)[..., offset : offset + win]  # (B, frames, win)
    window = scipy.signal.get_window("hann", win).astype(np.float32)  # periodic, as librosa's
    spectrum = scipy.fft.rfft(frames * window, n=n_fft, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    weights = _filterbank(kind, cfg)
    out = power.reshape(-1, power.shape[-1]) @ weights.T  # one BLAS product for the whole batch
    return out.reshape(len(audio), -1, weights.shape[0]).transpose(0, 2, 1)


def to_db(power, top_db, amin=AMIN):
    """Power (..., bins, frames) -> dB relative to each spectrogram's maximum, floored at -top_db,
    mapped to [-1, 1]."""
    db = 10.0 * np.log10(np.maximum(power, amin))
    db = np.maximum(db - db.max(axis=(-2, -1), keepdims=True), -top_db)
    return db / (top_db / 2.0) + 1.0


def compute_batch(audio, cfg):
    """The model inputs float32 (B, n_bins, frames, len(kinds)) in [-1, 1] of a batch of clips
    float32 (B, samples), each exactly sample_rate * duration samples."""
    spectrograms = [to_db(spectrogram_batch(audio, k, cfg), cfg["top_db"]) for k in cfg["kinds"]]
    return np.stack(spectrograms, axis=-1).astype(np.float32)


def compute_features(audio, cfg):
    """The model input (n_bins, frames, len(kinds)) of one clip (`compute_batch` of one)."""
    return compute_batch(np.asarray(audio, np.float32)[None], cfg)[0]


def features_of_file(path, cfg, report=None):
    """`compute_features` of the wav at `path` (read with `asc.data.read_wav`)."""
    return compute_many([path], cfg, report)[0]


def compute_many(paths, cfg, report=None):
    """Features float32 (len(paths), n_bins, frames, kinds) of wav files: batches of `_BATCH` clips
    shared among `cfg["workers"]` threads (numpy and scipy release the GIL in their FFTs and
    products; threads, not processes, keep TensorFlow safe)."""
    report = report if report is not None else ClipReport()
    out = np.zeros((len(paths), *input_shape(cfg)), np.float32)

    def one(start):
        part = paths[start : start + _BATCH]
        audio = np.stack([read_wav(p, cfg["sample_rate"], cfg["duration"], cfg["resample"], report)
                          for p in part])
        out[start : start + len(part)] = compute_batch(audio, cfg)

    with ThreadPoolExecutor(max(1, int(cfg["workers"]))) as pool:
        list(pool.map(one, range(0, len(paths), _BATCH)))
    return out


def iter_features(paths, cfg, report=None):
    """Yield (start, float32 features of paths[start:start + chunk]), `features.chunk` clips at a
    time: memory O(chunk)."""
    chunk = int(cfg.get("chunk", 256))
    for start in range(0, len(paths), chunk):
        yield start, compute_many(paths[start : start + chunk], cfg, report)


# ---------------------------------------------------------------------------------------------
# The cache


def cache_state(path, cfg):
    """(status, names in row order) of an existing cache.

    status: "ok", "missing", "changed" (another feature config) or "corrupt" (truncated,
    unreadable, inconsistent, or not a format-2 cache).
    """
    import h5py

    if not Path(path).exists():
        return "missing", []
    try:
        with h5py.File(path, "r") as h5:
            same = h5.attrs.get("config_hash") == feature_hash(cfg)
            if int(h5.attrs.get("format", 0)) != CACHE_FORMAT:
                return "corrupt", []
            if not same:
                return "changed", []
            x, names, rows = h5["features"], h5["names"], int(h5.attrs["rows"])
            if (not 0 <= rows <= min(x.shape[0], names.shape[0])
                    or x.shape[1:] != input_shape(cfg) or x.dtype != cfg["cache_dtype"]):
                return "corrupt", []
            have = list(names.asstr()[:rows])
            # x[rows - 1] reads the last committed chunk: an error if the file is truncated
            if len(set(have)) != len(have) or (rows and x[rows - 1].shape != x.shape[1:]):
                return "corrupt", []
            return "ok", have
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):
        return "corrupt", []


def _new_cache(path, cfg):
    """Create an empty format-2 cache at `path` (atomically: a temporary file, then a rename)."""
    import h5py

    shape, dtype = input_shape(cfg), cfg["cache_dtype"]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("features", (0, *shape), dtype, maxshape=(None, *shape),
                          chunks=(1, *shape))
        h5.create_dataset("names", (0,), h5py.string_dtype(), maxshape=(None,), chunks=(1024,))
        h5.attrs.update(format=CACHE_FORMAT, config_hash=feature_hash(cfg), rows=0,
                        config=json.dumps(cfg, sort_keys=True),
                        clip_report=json.dumps(ClipReport().as_dict()))


def _append(h5, names, x):
    """Append rows (names, features) after the committed ones, then commit them (crash-safe
    order)."""
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


_REBUILT = {
    "changed": "feature config changed (hash now {hash}); rebuilding the cache",
    "corrupt": "cache is truncated or corrupt; rebuilding it",
}


def build_cache(data_root, filenames, cfg, path=None, say=print):
    """Make sure the cache at `path` (None: `features.cache`, else `<data_root>/features.h5`) holds
    the features of every file in `filenames` (relative to `data_root`); computes only what is
    missing (see the module docstring: chunked, resumable, rebuilt or converted with one line).
    `say`: progress lines.

    Returns:
        (Path of the cache, dict of counts: computed, reused, and the ClipReport counts).
    """
    import h5py

    check_config(cfg)
    data_root = Path(data_root)
    path = Path(path or cfg["cache"] or data_root / "features.h5")
    status, have = cache_state(path, cfg)
    if status in _REBUILT:
        say(f"{path}: " + _REBUILT[status].format(hash=feature_hash(cfg)))
    fresh, have = status != "ok", set(have)  # `have` is empty unless ok
    wanted = list(dict.fromkeys(filenames))
    todo = [f for f in wanted if f not in have]
    report = ClipReport()
    if not todo:
        return path, {"computed": 0, "reused": len(wanted), **report.as_dict()}
    for name in todo:
        if not (data_root / name).is_file():
            raise DataError(f"{data_root / name}: file not found")
    if fresh:
        _new_cache(path, cfg)
    resumed = f" (resuming after {len(have)} cached)" if have else ""
    say(f"computing {len(todo)} feature stacks {input_shape(cfg)} in chunks of "
        f"{int(cfg.get('chunk', 256))} with {cfg['workers']} workers -> {path}{resumed}")
    done = 0
    with h5py.File(path, "r+") as h5:
        try:
            for start, x in iter_features([str(data_root / f) for f in todo], cfg, report):
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
        h5.attrs["clip_report"] = json.dumps({k: totals.get(k, 0) + v
                                              for k, v in report.as_dict().items()})
    for line in report.lines():
        say(line)
    return path, {"computed": done, "reused": len(wanted) - len(todo), **report.as_dict()}


def load_cache(path, filenames, cfg):
    """Features float32 (len(filenames), n_bins, frames, kinds) of `filenames` from the cache at
    `path`; DataError when it does not match `cfg` or lacks a file (run `build_cache` first)."""
    with closing(CachedFeatures(path, filenames, cfg)) as view:
        return view[:]


class CachedFeatures:
    """A lazy view of cached features for data sets too large for memory.

    `x[i]` reads one clip's stack, `x[indices]` or `x[a:b]` several, as float32: it behaves like the
    (N, n_bins, frames, kinds) array of `load_cache` without loading it. Reads go through the name
    index to rows of the one chunked dataset, sorted, contiguous rows as one slice.

    Args:
        path: the cache file; names: list of file names (its rows); cfg: the `features:` section.
    """

    def __init__(self, path, names, cfg):
        status, have = cache_state(path, cfg)
        again = "run `python -m asc features` again"
        if status != "ok":
            raise DataError(f"{path}: feature cache is {status}; {again}")
        index = {name: i for i, name in enumerate(have)}
        for name in names:
            if name not in index:
                raise DataError(f"{path}: no features for {name}; {again}")
        self.rows = np.array([index[name] for name in names], np.int64)
        self.path, self.names = Path(path), list(names)
        self.shape = (len(self.names), *input_shape(cfg))
        self._h5, self._lock = None, threading.Lock()

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        import h5py

        with self._lock:
            if self._h5 is None:
                self._h5 = h5py.File(self.path, "r", rdcc_nbytes=8 << 20)
            data = self._h5["features"]
            if isinstance(index, (int, np.integer)):
                return data[int(self.rows[int(index)])].astype(np.float32)
            rows = self.rows[index if isinstance(index, slice) else np.asarray(index, np.int64)]
            out = np.zeros((len(rows), *self.shape[1:]), np.float32)
            order = np.argsort(rows, kind="stable")
            breaks = np.flatnonzero(np.diff(rows[order]) != 1) + 1
            for run in np.split(order, breaks) if len(rows) else []:
                out[run] = data[int(rows[run[0]]) : int(rows[run[-1]]) + 1]
            return out

    def close(self):
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __getstate__(self):
        return {**self.__dict__, "_h5": None, "_lock": None}

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())


def cached_features(data_root, filenames, cfg, path=None, say=print, max_gb=None):
    """`build_cache` then the features of `filenames`: a float32 array (N, n_bins, frames, kinds),
    or a `CachedFeatures` view when the array would take more than `max_gb` GB of memory."""
    path, _ = build_cache(data_root, filenames, cfg, path, say)
    size_gb = len(filenames) * int(np.prod(input_shape(cfg))) * 4 / 1e9
    if max_gb is not None and size_gb > max_gb:
        say(f"{path}: {size_gb:.1f} GB of features for {len(filenames)} clips; streaming them "
            "from the cache")
        return CachedFeatures(path, filenames, cfg)
    return load_cache(path, filenames, cfg)


def build_data_cache(cfg, out=None, say=print):
    """The `features` command (no TensorFlow): cache every clip of `data.root` (train, evaluate
    and, for TAU, meta.csv) at `out` or the default path, resumably.

    Returns:
        dict: path, computed, reused and the ClipReport counts.
    """
    from asc.data import open_dataset

    check_config(cfg["features"])
    d = cfg["data"]
    if not d["root"]:
        raise ConfigError("--data: no data folder given (and the run does not name one)")
    root, names = Path(d["root"]), []
    for split in ("train", "evaluate"):
        try:
            names += [c.filename
                      for c in open_dataset(root, split, d["classes"], d["val_fraction"]).clips]
        except DataError:
            if split == "train":
                raise
    if (root / "meta.csv").is_file():
        names += [c.filename for c in open_dataset(root, "all", d["classes"]).clips]
    path, counts = build_cache(root, list(dict.fromkeys(names)), cfg["features"], out, say)
    say(f"{path}: {counts['computed']} computed, {counts['reused']} reused, shape "
        f"{input_shape(cfg['features'])}")
    return {"path": str(path), **counts}


# ---------------------------------------------------------------------------------------------
# The front end for firmware (see the module docstring): written at export time, computed in
# plain numpy.


def _banded(matrix, threshold_fraction=0.0):
    """Banded sparse form of a (rows, bins) matrix: start, length (int32), weights (concatenated);
    row k keeps the smallest band holding every entry above `threshold_fraction` times its peak."""
    starts, parts = [], []
    for row in matrix:
        keep = np.flatnonzero(np.abs(row) > threshold_fraction * np.abs(row).max())
        starts.append(int(keep[0]) if len(keep) else 0)
        parts.append(row[keep[0] : keep[-1] + 1] if len(keep) else row[:0])
    lengths = np.array([len(part) for part in parts], np.int32)
    return np.array(starts, np.int32), lengths, np.concatenate(parts)


_PARTS = ("window", "start", "length", "weights")  # the arrays of a kind, `<kind>_<part>.npy`
_BANDS = ("band_k = sum_j weight_kj |X_j|^2, X = rfft(frame * window)",
          "periodic Hann of win_length samples, zero-padded at the centre of n_fft")
# frontend.json's descriptions of each kind: transform, window, and notes after the parameters
_TEXT = {
    "logmel": (*_BANDS, {"mel": "Slaney mel scale and area normalisation "
                                "(librosa htk=False, norm='slaney')"}),
    "gammatone": (*_BANDS, {"bandwidth": "1.019 ERB(fc), Glasberg & Moore 1990",
                            "threshold": GAMMATONE_THRESHOLD}),
    "cqt": ("power_k = |sum_j kernel_kj X_j|^2, X = rfft(frame * window)",
            "rectangular (ones): the kernels carry the Hann windows",
            {"kernel_scaling": "FFT of (wavelet * length / n_fft), divided by sqrt(length)",
             "sparsity": CQT_SPARSITY,
             "weights_dtype": "complex64 (C: interleaved real, imaginary float pairs)",
             "approximation": "single-rate constant-Q kernels; librosa.cqt decimates by 2 per "
                              "octave"}),
}


def build_frontend(cfg):
    """The front end of feature config `cfg` (the `features:` section) in memory.

    Returns:
        dict: "params" (what `frontend.json` holds) and "arrays" (name -> numpy array, the .npy
        files: <kind>_window, <kind>_start, <kind>_length, <kind>_weights).
    """
    import scipy.signal

    check_config(cfg)
    n_bins, frames, _ = input_shape(cfg)
    arrays, kinds = {}, {}
    for kind in cfg["kinds"]:
        s = cfg[kind]
        if kind == "cqt":  # the training filters with librosa.cqt's kernel scale and sparsity
            spectra, n_fft, lengths = cqt_filters(cfg)
            kernels = np.zeros(spectra.shape, np.complex64)
            for k, row in enumerate(spectra):
                keep = _sparsify(row)
                kernels[k, keep] = row[keep] / n_fft
            window, win, bands = np.ones(n_fft, np.float32), n_fft, _banded(kernels)
            values = {"fmin": float(s["fmin"]), "bins_per_octave": int(s["bins_per_octave"]),
                      "fmax_bin": float(s["fmin"] * 2 ** ((n_bins - 1) / s["bins_per_octave"])),
                      "filter_lengths": [round(float(v), 3) for v in lengths]}
        else:
            n_fft, win = int(s["n_fft"]), int(s["win_length"])
            window = np.pad(scipy.signal.get_window("hann", win).astype(np.float32),
                            ((n_fft - win) // 2, n_fft - win - (n_fft - win) // 2))
            threshold = GAMMATONE_THRESHOLD if kind == "gammatone" else 0.0
            bands = _banded(np.asarray(_filterbank(kind, cfg), np.float32), threshold)
            fmax = float(s["fmax"]) or cfg["sample_rate"] / 2.0
            values = {"fmin": float(s["fmin"]), "fmax": fmax, "weights_dtype": "float32"}
            if kind == "gammatone":
                values["order"] = int(s["order"])
        arrays.update({f"{kind}_{part}": a for part, a in zip(_PARTS, (window, *bands))})
        transform, window_text, notes = _TEXT[kind]
        kinds[kind] = {"transform": transform, "n_fft": n_fft, "win_length": win,
                       "window": window_text, **values, **notes, "nnz": int(bands[1].sum()),
                       "files": {part: f"{kind}_{part}.npy" for part in _PARTS}}
    params = {
        "format": FRONTEND_FORMAT, "version": FRONTEND_VERSION,
        "sample_rate": int(cfg["sample_rate"]), "duration": float(cfg["duration"]),
        "samples": _samples(cfg),
        "audio": "mono float in [-1, 1]; shorter clips zero-padded at the end, longer ones cropped",
        "hop_length": int(cfg["hop_length"]), "frames": frames,
        "framing": "centred: the clip is padded with n_fft // 2 zeros at both ends; frame t starts "
                   "at t * hop",
        "n_bins": n_bins, "kinds": list(cfg["kinds"]), "top_db": float(cfg["top_db"]), "amin": AMIN,
        "scaling": "db = 10 * log10(max(power, amin)); db = max(db - max(db over the clip), "
                   "-top_db); value = db / (top_db / 2) + 1  (per kind; values in [-1, 1])",
        "output": {"shape": [n_bins, frames, len(cfg["kinds"])],
                   "layout": "row 0 = lowest frequency, column = frame, channel = kind in `kinds` "
                             "order"},
        "bands": "row k uses FFT bins start[k] .. start[k] + length[k] - 1 with weights[offset[k] "
                 "+ i], offset[k] = length[0] + ... + length[k - 1]",
        "kinds_params": kinds,
    }
    return {"params": params, "arrays": arrays}


def write_frontend(cfg, out_dir, *, model_input=None):
    """Write `frontend.json`, the .npy arrays and `frontend.h` / `frontend.cc` of the `features:`
    section `cfg` to `out_dir`; `model_input` (optional dict scale, zero_point of the int8 model
    input) goes into frontend.json so the device can quantize the features. Returns the
    frontend.json dict plus "files" (every path written)."""
    out_dir = Path(out_dir)
    frontend = build_frontend(cfg)
    params = frontend["params"]
    if model_input is not None:
        params["model_input"] = {
            "dtype": "int8", "scale": float(model_input["scale"]),
            "zero_point": int(model_input["zero_point"]),
            "quantize": "q = clamp(round(value / scale) + zero_point, -128, 127)"}
    files = []
    for name, array in frontend["arrays"].items():
        files.append(str(out_dir / f"{name}.npy"))
        with atomic_path(files[-1]) as tmp:
            np.save(tmp, array, allow_pickle=False)
    for name, text in zip(("frontend.h", "frontend.cc"), c_sources(params, frontend["arrays"])):
        write_text(out_dir / name, text)
        files.append(str(out_dir / name))
    write_json(out_dir / "frontend.json", params)
    return {**params, "files": [*files, str(out_dir / "frontend.json")]}


def c_sources(params, arrays):
    """(header, source) text of the front end's C arrays and constants.

    Per kind K: FRONTEND_K_CHANNEL, FRONTEND_K_N_FFT, FRONTEND_K_NNZ, `g_frontend_K_window[n_fft]`
    (not for cqt: rectangular), `g_frontend_K_start[n_bins]`, `g_frontend_K_length[n_bins]` and
    `g_frontend_K_weights[nnz]` (cqt: 2 * nnz floats, real and imaginary interleaved). Floats are
    written 8 per line, integers 16.
    """
    defines = {k.upper(): params[k] for k in ("sample_rate", "samples", "hop_length", "frames",
                                              "n_bins")}
    defines.update(NUM_KINDS=len(params["kinds"]), TOP_DB=f"{params['top_db']!r}f",
                   AMIN=f"{params['amin']!r}f")
    if "model_input" in params:
        defines.update(MODEL_INPUT_SCALE=f"{params['model_input']['scale']!r}f",
                       MODEL_INPUT_ZERO_POINT=params["model_input"]["zero_point"])
    note = "// Generated by asc/features.py (the firmware front end): do not edit."
    header = [f"{note} See frontend.json for the algorithm.", "#ifndef FRONTEND_H_",
              "#define FRONTEND_H_", "", "#include <stdint.h>", "",
              *(f"#define FRONTEND_{k} {v}" for k, v in defines.items())]
    source = [note, '#include "frontend.h"', ""]
    for index, kind in enumerate(params["kinds"]):
        K, g, kp = f"FRONTEND_{kind.upper()}", f"g_frontend_{kind}", params["kinds_params"][kind]
        weights, count = arrays[f"{kind}_weights"], f"{K}_NNZ"
        if np.iscomplexobj(weights):
            weights, count = np.stack([weights.real, weights.imag], axis=-1), f"2 * {K}_NNZ"
        arrays_c = {f"const int32_t {g}_start[FRONTEND_N_BINS]": arrays[f"{kind}_start"],
                    f"const int32_t {g}_length[FRONTEND_N_BINS]": arrays[f"{kind}_length"],
                    f"const float {g}_weights[{count}]": weights}
        if kind != "cqt":  # cqt's window is rectangular: no array
            arrays_c = {f"const float {g}_window[{K}_N_FFT]": arrays[f"{kind}_window"], **arrays_c}
        header += ["", f"// {kind} (channel {index}): {kp['transform']}",
                   f"#define {K}_CHANNEL {index}", f"#define {K}_N_FFT {kp['n_fft']}",
                   f"#define {K}_NNZ {kp['nnz']}", *(f"extern {d};" for d in arrays_c)]
        for declaration, values in arrays_c.items():
            floats = declaration.startswith("const float")
            items = [f"{float(v):.9g}f" if floats else str(int(v)) for v in np.ravel(values)]
            source += c_array(declaration, items, 8 if floats else 16)
        source.append("")
    header += ["", "#endif  // FRONTEND_H_", ""]
    return "\n".join(header), "\n".join(source)


def load_frontend(folder):
    """`frontend.json` and its arrays from `folder`: dict "params" (the JSON) and "arrays" (name ->
    array). DataError when a file is missing or not a front end of this version."""
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
            if not (folder / name).is_file():
                raise DataError(f"{folder / name}: front end array not found")
            arrays[f"{kind}_{part}"] = np.load(folder / name, allow_pickle=False)
    return {"params": params, "arrays": arrays}


def frontend_features(audio, frontend):
    """The model input float32 (n_bins, frames, len(kinds)) in [-1, 1] of one clip (samples,) at
    params["sample_rate"] (padded or cropped to params["samples"]), computed in float64 from the
    front end files alone (`load_frontend` or `build_frontend`; numpy only)."""
    params, arrays = frontend["params"], frontend["arrays"]
    audio = np.asarray(audio, np.float64)[: params["samples"]]
    audio = np.pad(audio, (0, params["samples"] - len(audio)))
    channels = []
    for kind in params["kinds"]:
        start, length, weights = (arrays[f"{kind}_{part}"] for part in _PARTS[1:])
        frames = _frames(audio, int(params["kinds_params"][kind]["n_fft"]), params["hop_length"])
        spectrum = np.fft.rfft(frames * arrays[f"{kind}_window"].astype(np.float64), axis=1)
        cqt = np.iscomplexobj(weights)  # complex kernels on the spectrum, else weights on its power
        values = spectrum if cqt else np.abs(spectrum) ** 2
        rows = np.split(weights.astype(values.dtype), np.cumsum(length)[:-1])
        power = np.stack([values[:, a : a + n] @ w for a, n, w in zip(start, length, rows)], axis=1)
        channels.append(to_db((np.abs(power) ** 2 if cqt else power).T, params["top_db"],
                              params["amin"]))
    return np.stack(channels, axis=-1).astype(np.float32)
