import numpy as np
import pytest
import soundfile as sf

from asc.data import (
    AudioFolder,
    ClipReport,
    TAUUrbanAcousticScenes2022Mobile,
    make_dataset,
    open_dataset,
    parse_tau_filename,
    read_wav,
)
from common.errors import DataError

SR = 44100


def _wav(path, seconds=1.0, rate=SR, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(str(path), np.stack([tone] * channels, axis=1) if channels > 1 else tone, rate, subtype="PCM_16")
    return path


def _tau(root, rows, header="filename\tscene_label"):
    (root / "evaluation_setup").mkdir(parents=True, exist_ok=True)
    body = header + "\n" + "".join(f"{f}\t{s}\n" for f, s in rows)
    (root / "evaluation_setup" / "fold1_train.csv").write_text(body)
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n")
    return root


def test_parse_tau_filename():
    assert parse_tau_filename("audio/airport-lisbon-1000-40000-s4.wav") == ("airport", "lisbon", "s4")
    with pytest.raises(DataError, match="bad-name.wav"):
        parse_tau_filename("audio/bad-name.wav")


def test_read_wav_fixes_and_counts(tmp_path):
    report = ClipReport()
    stereo = read_wav(_wav(tmp_path / "stereo.wav", channels=2), SR, 1.0, report=report)
    short = read_wav(_wav(tmp_path / "short.wav", seconds=0.5), SR, 1.0, report=report)
    resampled = read_wav(_wav(tmp_path / "22k.wav", rate=22050), SR, 1.0, resample=True, report=report)
    for audio in (stereo, short, resampled):
        assert audio.shape == (SR,) and audio.dtype == np.float32
    assert np.all(short[SR // 2 + 10 :] == 0)
    assert report.as_dict() == {"mixed_down": 1, "resampled": 1, "padded": 1, "cropped": 0}
    assert any("mixed down" in line for line in report.lines())


def test_read_wav_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"22k\.wav: sample rate 22050 Hz, expected 44100"):
        read_wav(_wav(tmp_path / "22k.wav", rate=22050), SR, 1.0)
    (tmp_path / "junk.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(DataError, match=r"junk\.wav: cannot read audio"):
        read_wav(tmp_path / "junk.wav", SR, 1.0)
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0), SR)
    with pytest.raises(DataError, match=r"empty\.wav: empty audio file"):
        read_wav(tmp_path / "empty.wav", SR, 1.0)


def test_tau_csv_errors(tmp_path):
    _wav(tmp_path / "audio" / "park-lyon-1-0-a.wav")
    root = _tau(tmp_path, [("audio/park-lyon-1-0-a.wav", "park")])
    clips = TAUUrbanAcousticScenes2022Mobile(root, "train").clips
    assert clips[0].label == 4 and clips[0].device == "a" and clips[0].city == "lyon"

    _tau(tmp_path, [("audio/park-lyon-1-0-a.wav", "beach")])
    with pytest.raises(DataError, match=r"fold1_train.csv: row 2: label 'beach' is not a known class"):
        TAUUrbanAcousticScenes2022Mobile(root, "train")
    _tau(tmp_path, [("audio/missing-lyon-1-0-a.wav", "park")])
    with pytest.raises(DataError, match=r"fold1_train.csv: row 2: file audio/missing-lyon-1-0-a.wav does not exist"):
        TAUUrbanAcousticScenes2022Mobile(root, "train")
    _tau(tmp_path, [("audio/park-lyon-1-0-a.wav", "park")], header="filename\tlabel")
    with pytest.raises(DataError, match=r"fold1_train.csv: missing column 'scene_label'"):
        TAUUrbanAcousticScenes2022Mobile(root, "train")
    with pytest.raises(DataError, match=r"fold1_evaluate.csv: not found"):
        TAUUrbanAcousticScenes2022Mobile(root, "evaluate")


def test_folder_per_class_layout(tmp_path):
    for name in ("kitchen", "office"):
        for i in range(4):
            _wav(tmp_path / name / f"rec{i}.wav")
    data = open_dataset(tmp_path, "train")
    assert isinstance(data, AudioFolder) and data.classes == ["kitchen", "office"]
    assert len(data.clips) == 6 and len(open_dataset(tmp_path, "evaluate").clips) == 2
    assert data.clips[0].filename == "kitchen/rec0.wav"
    with pytest.raises(DataError, match=r"office: folder label 'office' is not a known class"):
        open_dataset(tmp_path, "train", classes=["kitchen"])


def test_mixup_makes_soft_labels():
    x = np.stack([np.full((4, 3, 1), i, np.float32) for i in range(8)])
    ds = make_dataset(x, np.arange(8) % 4, 4, batch_size=8, mixup_alpha=0.4, seed=0)
    xb, yb = next(iter(ds))
    yb = yb.numpy()
    np.testing.assert_allclose(yb.sum(axis=1), 1.0, rtol=1e-5)
    assert (yb.max(axis=1) < 0.999).any()  # some labels are mixed
    # Inputs are mixed with the same weights as the labels (example 0 with example 7).
    lam = yb[0, 0] if yb[0, 0] >= yb[0, 3] else 1 - yb[0, 3]
    np.testing.assert_allclose(xb.numpy()[0].mean(), lam * 0 + (1 - lam) * 7, rtol=1e-4)
    plain = next(iter(make_dataset(x, np.arange(8) % 4, 4, batch_size=8)))[1].numpy()
    assert set(np.unique(plain)) == {0.0, 1.0}


def test_recording_id_groups_segments_and_devices():
    from asc.data import recording_id

    assert recording_id("audio/airport-lisbon-1000-40000-a.wav") == "airport-lisbon-1000"
    assert recording_id("audio/airport-lisbon-1000-50000-s4.wav") == "airport-lisbon-1000"
    assert recording_id("audio/airport-lisbon-1001-40000-a.wav") == "airport-lisbon-1001"
    assert recording_id("park/my recording.wav") == "park/my recording.wav"  # any other name: its own
