import hashlib

import numpy as np
import soundfile as sf

from asc.data import SCENES, TAUUrbanAcousticScenes2022Mobile, read_tsv
from asc.sample import write_sample


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


def test_sample_is_deterministic_and_in_the_real_layout(tmp_path):
    a = write_sample(tmp_path / "a", per_class=3, seed=7)
    b = write_sample(tmp_path / "b", per_class=3, seed=7)
    c = write_sample(tmp_path / "c", per_class=3, seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)

    rows = [row for _, row in read_tsv(a / "meta.csv", ("filename", "scene_label", "identifier", "source_label"))]
    assert len(rows) == 30 and sorted({r["scene_label"] for r in rows}) == sorted(SCENES)
    audio, rate = sf.read(str(a / rows[0]["filename"]))
    assert rate == 44100 and audio.shape == (44100,)
    assert rows[0]["filename"].startswith("audio/") and rows[0]["filename"].endswith(f"-{rows[0]['source_label']}.wav")

    train = TAUUrbanAcousticScenes2022Mobile(a, "train")
    evaluate = TAUUrbanAcousticScenes2022Mobile(a, "evaluate")
    assert len(train.clips) + len(evaluate.clips) == 30
    assert not {c.filename for c in train.clips} & {c.filename for c in evaluate.clips}
    assert {c.label for c in evaluate.clips} == set(range(10))  # every scene is evaluated


def test_scenes_differ_in_spectrum(tmp_path):
    # Mean log spectra of two scenes are far apart compared with two clips of one scene.
    from asc.sample import scene_audio

    def spectrum(scene, i):
        x = scene_audio(scene, np.random.default_rng([0, i]))
        return np.log10(np.abs(np.fft.rfft(x))[:22050].reshape(-1, 441).mean(axis=1) + 1e-6)

    same = np.abs(spectrum("bus", 0) - spectrum("bus", 1)).mean()
    other = np.abs(spectrum("bus", 0) - spectrum("park", 0)).mean()
    assert other > 2 * same
