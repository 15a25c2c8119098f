import copy

import librosa
import numpy as np
import pytest

from asc import features as feats
from common.errors import ConfigError, DataError

SR = 44100


@pytest.fixture
def cfg():
    return copy.deepcopy(feats.FEATURE_DEFAULTS)


def _tone(freq):
    t = np.arange(SR) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("freq", [440.0, 1000.0])
def test_pure_tone_lands_in_the_right_bin(cfg, freq):
    x = feats.compute_features(_tone(freq), cfg)
    assert x.shape == (128, 87, 3) == feats.input_shape(cfg) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    peak = x.mean(axis=1).argmax(axis=0)  # strongest bin of each spectrogram
    mel_centres = librosa.mel_frequencies(128 + 2, fmin=10.0, fmax=SR / 2)[1:-1]
    gt_centres = feats.gammatone_center_frequencies(128, 10.0, SR / 2)
    assert abs(peak[0] - np.abs(mel_centres - freq).argmin()) <= 1
    assert abs(peak[1] - np.abs(gt_centres - freq).argmin()) <= 1
    assert peak[2] == round(24 * np.log2(freq / 50.0))  # CQT: 24 bins per octave from 50 Hz
    # 440 Hz: Mel bin 13 (~437 Hz), Gammatone bin 29, CQT bin 75.
    if freq == 440.0:
        assert tuple(peak) == (13, 29, 75)


def test_gammatone_filterbank_is_erb_spaced(cfg):
    bank = feats.gammatone_filterbank(SR, 4096, 128, 10.0, SR / 2)
    assert bank.shape == (128, 2049)
    np.testing.assert_allclose(bank.sum(axis=1), 1.0, rtol=1e-4)
    centres = feats.gammatone_center_frequencies(128, 10.0, SR / 2)
    np.testing.assert_allclose(np.diff(feats.hz_to_erb_rate(centres)), np.diff(feats.hz_to_erb_rate(centres))[0])
    assert centres[0] == pytest.approx(10.0) and centres[-1] == pytest.approx(SR / 2)


def test_config_checks(cfg):
    cfg["cqt"]["fmin"] = 10.0
    with pytest.raises(ConfigError, match="features.cqt.fmin.*longer than"):
        feats.check_config(cfg)
    cfg["cqt"]["fmin"] = 600.0
    with pytest.raises(ConfigError, match="above Nyquist"):
        feats.check_config(cfg)
    cfg["cqt"]["fmin"], cfg["kinds"] = 50.0, ["logmel", "mfcc"]
    with pytest.raises(ConfigError, match="unknown kind 'mfcc'"):
        feats.check_config(cfg)


def test_cache_reused_invalidated_and_rebuilt(tmp_path, cfg):
    import soundfile as sf

    cfg["kinds"] = ["logmel", "gammatone"]  # the cache logic does not depend on the kinds
    names = []
    for i, freq in enumerate((300.0, 2000.0, 5000.0)):
        names.append(f"audio/tone{i}.wav")
        (tmp_path / "audio").mkdir(exist_ok=True)
        sf.write(str(tmp_path / names[-1]), _tone(freq), SR, subtype="PCM_16")
    said = []
    path, counts = feats.build_cache(tmp_path, names, cfg, say=said.append)
    assert path == tmp_path / "features.h5" and counts["computed"] == 3
    x = feats.load_cache(path, names, cfg)
    direct = feats.features_of_file(tmp_path / names[1], cfg)
    np.testing.assert_allclose(x[1], direct, atol=2e-3)  # float16 cache

    _, counts = feats.build_cache(tmp_path, names, cfg, say=said.append)
    assert counts == {"computed": 0, "reused": 3, "mixed_down": 0, "resampled": 0, "padded": 0, "cropped": 0}
    _, counts = feats.build_cache(tmp_path, names[:2], cfg, say=said.append)
    assert counts["computed"] == 0

    changed = copy.deepcopy(cfg)
    changed["hop_length"] = 1024
    with pytest.raises(DataError, match="cache is changed"):
        feats.load_cache(path, names, changed)
    said.clear()
    _, counts = feats.build_cache(tmp_path, names, changed, say=said.append)
    assert counts["computed"] == 3 and "feature config changed" in said[0]
    assert feats.load_cache(path, names, changed).shape == (3, 128, 44, 2)

    path.write_bytes(path.read_bytes()[:2000])  # truncated
    said.clear()
    _, counts = feats.build_cache(tmp_path, names, changed, say=said.append)
    assert counts["computed"] == 3 and "truncated or corrupt" in said[0]
    with pytest.raises(DataError, match="no features for audio/other.wav"):
        feats.load_cache(path, ["audio/other.wav"], changed)
