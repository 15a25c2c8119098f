"""The asc front end for firmware: filter banks as files, and the features from those files alone.

The asc model's input is three spectrograms computed outside the model (`asc.features`, numpy +
librosa). A device that records audio must compute the same features, so `write_frontend` writes
everything that defines them, with no librosa needed afterwards:

* `frontend.json`: every parameter (sample rate, clip length, hop, frames, per kind the FFT
  size, window, padding, frequency range, the dB reference and the scaling to [-1, 1]) and the
  file list.
* Per kind a banded sparse filter bank (row k covers FFT bins start[k] .. start[k] + length[k] - 1;
  its weights are `weights[offset[k] : offset[k] + length[k]]`, offset = cumulative lengths) as
  `<kind>_start.npy`, `<kind>_length.npy`, `<kind>_weights.npy`, and the analysis window as
  `<kind>_window.npy` (n_fft,), the same arrays as C arrays in `frontend.h` / `frontend.cc`.
  - logmel: librosa's Slaney Mel matrix on the STFT power spectrum (exactly its non-zero band).
  - gammatone: `asc.features.gammatone_filterbank` (ERB-spaced 4th-order gammatone power
    responses, unit sum per row), each row cut where its weight falls under
    `GAMMATONE_THRESHOLD` times the row's peak (-90 dB; the features floor at -top_db = -80 dB).
  - cqt: complex frequency-domain kernels (Brown & Puckette's constant-Q transform): librosa's
    CQT wavelets (Hann-windowed complex exponentials, L1-normalised, one per bin, length
    Q * sample_rate / f_k with Q = 1 / (2^(1/bins_per_octave) - 1)) at the full sample rate,
    zero-padded to n_fft (a power of two >= the longest filter), FFT'd, scaled by
    length / n_fft / sqrt(length) (librosa's `scale=True`), with librosa's sparsification (the
    smallest entries making up 1% of each row's L1 norm dropped). Applied to the STFT of the clip
    with a rectangular n_fft window, same hop. The documented approximation: `librosa.cqt`
    computes the lower octaves on audio decimated by 2 per octave (soxr resampling), this front
    end computes every octave at the full rate. The two agree to a fraction of a dB where the
    features have signal (differences of several dB only in troughs 50-70 dB under the clip's
    peak); see `CQT_TOLERANCE`. The cqt window is all ones (kept as a file for uniformity, not as
    a C array). Cost on a device: one 32768-point real FFT per hop at 44.1 kHz and 24 bins per
    octave from 50 Hz (the longest filter is ~30,000 samples); a multi-rate implementation is
    cheaper and matches to the same tolerance.

`frontend_features(audio, load_frontend(folder))` recomputes the model input from those files in
plain numpy (no librosa, no TensorFlow). Tolerances against `asc.features.compute_features`
(features in [-1, 1], where 0.025 is 1 dB at top_db 80) are `LOGMEL_TOLERANCE`,
`GAMMATONE_TOLERANCE` (largest absolute difference) and `CQT_TOLERANCE` (mean and 99th
percentile of the absolute difference), checked on sample clips by tests/asc/test_frontend.py.

On the device: frame t of the clip (zero-padded by n_fft // 2 samples at both ends) starts at
sample t * hop; multiply it by the window, take the real FFT (n_fft // 2 + 1 bins), then
power = |X|^2 and band_k = sum_j w_kj power_j (logmel, gammatone) or
power_k = |sum_j c_kj X_j|^2 (cqt, complex weights); then the dB scaling in `frontend.json`.
"""

import json
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.io import atomic_path, write_json, write_text

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
CQT_TOLERANCE = (0.01, 0.1)

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
    from asc.features import _filterbank, check_config, input_shape

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
        "// Generated by asc/frontend.py: do not edit. See frontend.json for the algorithm.",
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
    source = ["// Generated by asc/frontend.py: do not edit.", f'#include "{_C_PREFIX}.h"', ""]
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
