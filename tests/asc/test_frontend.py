"""The firmware front end of asc/features.py: the filter banks written as files, and the numpy-only features computed from
those files alone match asc.features (whatever asc.features computes) within the stated tolerance."""

import copy
import json
import re
import sys

import numpy as np
import pytest

from asc.data import SCENES
from asc.features import (
    FEATURE_DEFAULTS,
    FRONTEND_CQT_TOLERANCE,
    GAMMATONE_TOLERANCE,
    LOGMEL_TOLERANCE,
    compute_features,
    frontend_features,
    load_frontend,
    write_frontend,
)
from asc.sample import scene_audio

# A smaller feature config than the default (same code paths, a tenth of the cost).
SMALL = {**copy.deepcopy(FEATURE_DEFAULTS), "sample_rate": 22050, "n_bins": 64, "hop_length": 256,
         "logmel": {"n_fft": 1024, "win_length": 800, "fmin": 20.0, "fmax": 0.0},
         "gammatone": {"n_fft": 1024, "win_length": 882, "fmin": 20.0, "fmax": 8000.0, "order": 4},
         "cqt": {"fmin": 60.0, "bins_per_octave": 12}}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontend")
    info = write_frontend(SMALL, out, model_input={"scale": 0.0078, "zero_point": -1})
    return out, info


def test_numpy_features_match_the_project_features(written):
    out, _ = written
    frontend = load_frontend(out)
    rng = np.random.default_rng(3)
    for scene in SCENES[:4]:
        audio = scene_audio(scene, rng, sample_rate=SMALL["sample_rate"]).astype(np.float32)
        expected = compute_features(audio, SMALL)
        got = frontend_features(audio, frontend)
        assert got.shape == expected.shape == (64, 87, 3)
        diff = np.abs(got - expected)
        assert diff[..., 0].max() <= LOGMEL_TOLERANCE, (scene, diff[..., 0].max())
        assert diff[..., 1].max() <= GAMMATONE_TOLERANCE, (scene, diff[..., 1].max())
        mean, p99 = FRONTEND_CQT_TOLERANCE
        assert diff[..., 2].mean() <= mean, (scene, diff[..., 2].mean())
        assert np.percentile(diff[..., 2], 99) <= p99, (scene, np.percentile(diff[..., 2], 99))


def test_frontend_json_has_every_parameter(written):
    out, info = written
    params = json.loads((out / "frontend.json").read_text())
    for key in ("sample_rate", "samples", "hop_length", "frames", "n_bins", "kinds", "top_db", "amin",
                "scaling", "framing", "model_input"):
        assert key in params, key
    assert params["kinds"] == ["logmel", "gammatone", "cqt"]
    for kind in params["kinds"]:
        kp = params["kinds_params"][kind]
        for key in ("n_fft", "win_length", "window", "transform", "nnz", "files"):
            assert key in kp, (kind, key)
        for name in kp["files"].values():
            assert (out / name).is_file()
    assert len(params["kinds_params"]["cqt"]["filter_lengths"]) == 64
    assert info["files"][-1].endswith("frontend.json")


def test_c_arrays_equal_the_npy_files(written):
    out, _ = written
    header, source = (out / "frontend.h").read_text(), (out / "frontend.cc").read_text()
    assert "#define FRONTEND_SAMPLE_RATE 22050" in header and "#define FRONTEND_N_BINS 64" in header
    for kind in ("logmel", "gammatone", "cqt"):
        nnz = int(re.search(rf"#define FRONTEND_{kind.upper()}_NNZ (\d+)", header).group(1))
        body = re.search(rf"g_frontend_{kind}_weights\[[^\]]*\] = \{{(.*?)\}};", source, re.S).group(1)
        values = np.array([float(v.rstrip("f")) for v in re.findall(r"[-0-9.e+]+f", body)])
        weights = np.load(out / f"{kind}_weights.npy")
        if np.iscomplexobj(weights):
            weights = np.stack([weights.real, weights.imag], axis=-1).ravel()
        assert len(weights) == nnz * (2 if kind == "cqt" else 1)
        np.testing.assert_allclose(values, weights, rtol=1e-6, atol=1e-12)
        starts = re.search(rf"g_frontend_{kind}_start\[[^\]]*\] = \{{(.*?)\}};", source, re.S).group(1)
        assert [int(v) for v in re.findall(r"-?\d+", starts)] == np.load(out / f"{kind}_start.npy").tolist()


def test_computing_needs_neither_librosa_nor_tensorflow(written, monkeypatch):
    out, _ = written
    for name in ("librosa", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it would now fail
    frontend = load_frontend(out)
    audio = np.zeros(SMALL["sample_rate"], np.float32)
    audio[::100] = 0.5
    assert frontend_features(audio, frontend).shape == (64, 87, 3)
