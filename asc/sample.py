"""A small synthetic acoustic scene data set in the TAU Urban Acoustic Scenes 2022 Mobile layout.

Each scene has its own texture, so a model can learn it: a noise floor with a scene-specific
spectral shape, an amplitude rhythm, tones and events (`_event`). Each device then applies its
own frequency response and gain (s4-s6 only in the evaluation fold). Same seed, same bytes.
"""

from pathlib import Path

import numpy as np

from asc.data import DEVICES, FOLD_COLUMNS, META_COLUMNS, SCENES
from common.io import atomic_path, write_text

SAMPLE_RATE = 44100
DURATION = 1.0
CITIES = ["amsterdam", "barcelona", "helsinki", "lisbon", "london", "lyon",
          "madrid", "milan", "paris", "prague", "stockholm", "vienna"]  # fmt: skip
TRAIN_DEVICES = ["a", "b", "c", "s1", "s2", "s3"]

# Per scene: spectral tilt (dB per octave), resonance (Hz, width in octaves, gain dB),
# amplitude-modulation rate (Hz) and depth, then the tonal/event recipe names with parameters.
SCENE_SPECS = {
    "airport": dict(tilt=-3, peak=(500, 1.5, 10), am=(0.7, 0.3), tones=[("chime", 523.0)]),
    "bus": dict(tilt=-9, peak=(100, 1.0, 15), am=(8.0, 0.2), tones=[("engine", 50.0)]),
    "metro": dict(tilt=-6, peak=(250, 1.0, 12), am=(2.0, 0.5), tones=[("screech", 3000.0)]),
    "metro_station": dict(tilt=-3, peak=(1000, 2.0, 6), am=(0.3, 0.2), tones=[("beeps", 1000.0)]),
    "park": dict(tilt=-4, peak=(5000, 1.0, 8), am=(0.5, 0.4), tones=[("chirps", 4000.0)]),
    "public_square": dict(tilt=-3, peak=(700, 1.5, 8), am=(3.0, 0.4), tones=[("steps", 1.5)]),
    "shopping_mall": dict(tilt=-3, peak=(400, 1.5, 8), am=(2.0, 0.2), tones=[("music", 261.6)]),
    "street_pedestrian": dict(tilt=-2, peak=(1500, 1.5, 6), am=(1.0, 0.3), tones=[("steps", 2.2)]),
    "street_traffic": dict(tilt=-6, peak=(150, 2.0, 12), am=(0.0, 0.0), tones=[("car", 400.0)]),
    "tram": dict(tilt=-5, peak=(300, 1.0, 10), am=(4.0, 0.3), tones=[("hum", 250.0), ("bell", 1200.0)]),
}

# Per device: tilt (dB/octave around 1 kHz), high-pass and low-pass corners (Hz, 0 = none), gain.
DEVICE_SPECS = {"a": (0.0, 0, 0, 1.0), "b": (0.0, 150, 0, 0.8), "c": (0.0, 0, 8000, 1.2),
                "s1": (2.0, 0, 0, 1.0), "s2": (-2.0, 0, 0, 0.9), "s3": (0.0, 200, 10000, 1.1),
                "s4": (1.0, 100, 12000, 0.7), "s5": (0.0, 0, 5000, 1.0), "s6": (-1.0, 300, 0, 0.6)}


def write_sample(out, per_class=30, seed=0):
    """Write the sample data set into `out` (the layout of asc.data); `per_class` >= 2 clips per
    scene, 30 % of them in the evaluation fold. Returns `out` as a Path."""
    import soundfile as sf

    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    meta, train, evaluate = [], [], []
    for label, scene in enumerate(SCENES):
        n_eval = 0
        for i in range(per_class):
            held_out = i % 10 >= 7 or (i == per_class - 1 and n_eval == 0)
            devices = DEVICES if held_out else TRAIN_DEVICES
            device = devices[i % len(devices)]
            city = CITIES[(i + label) % len(CITIES)]
            location = 1000 + i
            name = f"audio/{scene}-{city}-{location}-{(i % 3) * 10}-{device}.wav"
            rng = np.random.default_rng([seed, label, i])
            audio = apply_device(scene_audio(scene, rng), device, rng)
            with atomic_path(out / name) as tmp:
                sf.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            meta.append(f"{name}\t{scene}\t{city}-{location}\t{device}")
            (evaluate if held_out else train).append(f"{name}\t{scene}")
            n_eval += held_out
    for path, columns, rows in (("meta.csv", META_COLUMNS, meta),
                                ("evaluation_setup/fold1_train.csv", FOLD_COLUMNS, train),
                                ("evaluation_setup/fold1_evaluate.csv", FOLD_COLUMNS, evaluate)):
        write_text(out / path, "".join(f"{line}\n" for line in ["\t".join(columns), *rows]))
    return out


def scene_audio(scene, rng, sample_rate=SAMPLE_RATE, duration=DURATION):
    """One clip of `scene`'s texture before the device: float64 (samples,), peak about 0.5."""
    n = int(sample_rate * duration)
    spec = SCENE_SPECS[scene]
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    center, width, gain = spec["peak"]
    center *= 2 ** rng.uniform(-0.2, 0.2)
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    shape_db = (spec["tilt"] + rng.uniform(-1, 1)) * octaves
    shape_db += gain * np.exp(-0.5 * (np.log2(np.maximum(freqs, 20.0) / center) / (width / 2)) ** 2)
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * 10 ** (shape_db / 20), n)
    noise /= np.abs(noise).max() + 1e-9
    t = np.arange(n) / sample_rate
    rate, depth = spec["am"]
    if rate > 0:
        noise *= 1 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    tonal = sum(_event(kind, value, t, rng) for kind, value in spec["tones"])
    audio = 0.6 * noise + tonal
    return 0.5 * audio / (np.abs(audio).max() + 1e-9)


def _event(kind, value, t, rng):
    """Tonal components and events of a scene; `value` is a frequency (Hz) or a rate (per s)."""
    jitter = 2 ** rng.uniform(-0.1, 0.1)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "engine":  # harmonics of a low fundamental
        f0 = value * jitter
        return sum(0.5 / k * np.sin(2 * np.pi * k * f0 * t + phase * k) for k in range(1, 7))
    if kind == "screech":  # wheel squeal with vibrato, swelling
        f = value * jitter * (1 + 0.01 * np.sin(2 * np.pi * 6 * t))
        return 0.4 * np.sin(2 * np.pi * np.cumsum(f) * (t[1] - t[0]) + phase) * np.sin(np.pi * t) ** 2
    if kind == "chime":  # three-note announcement chime
        out = np.zeros_like(t)
        for k, ratio in enumerate((1.0, 1.26, 1.5)):
            start = 0.1 + 0.25 * k + rng.uniform(0, 0.05)
            env = np.where(t >= start, np.exp(-(t - start) * 6), 0.0)
            out += 0.4 * env * np.sin(2 * np.pi * value * ratio * jitter * t)
        return out
    if kind == "beeps":  # rhythmic door beeps, 3 per second
        gate = (np.sin(2 * np.pi * 3 * t + phase) > 0.6).astype(float)
        return 0.35 * gate * np.sin(2 * np.pi * value * jitter * t)
    if kind == "chirps":  # bird chirps: fast upward sweeps
        out = np.zeros_like(t)
        for _ in range(rng.integers(3, 7)):
            start, length = rng.uniform(0, 0.85), rng.uniform(0.04, 0.1)
            f_lo = value * 2 ** rng.uniform(-0.5, 0.3)
            inside = (t >= start) & (t < start + length)
            tau = t[inside] - start
            sweep = f_lo * tau + f_lo * tau**2 / length  # instantaneous frequency f_lo -> 3 f_lo
            out[inside] += 0.5 * np.sin(2 * np.pi * sweep) * np.sin(np.pi * tau / length)
        return out
    if kind == "steps":  # footsteps: short low-mid clicks at a walking rate
        out = np.zeros_like(t)
        start = rng.uniform(0, 1.0 / value)
        while start < t[-1]:
            inside = t >= start
            tau = t[inside] - start
            out[inside] += 0.8 * np.exp(-tau * 60) * np.sin(2 * np.pi * 180 * jitter * tau)
            start += (1.0 / value) * rng.uniform(0.9, 1.1)
        return out
    if kind == "music":  # a major chord with harmonics, pulsing at 2 Hz
        pulse = 0.6 + 0.4 * np.sin(2 * np.pi * 2 * t + phase) ** 2
        return pulse * sum(0.25 / h * np.sin(2 * np.pi * value * jitter * r * h * t)
                           for r in (1.0, 1.26, 1.5) for h in (1, 2, 3))
    if kind == "car":  # a passing car: broadband swell, sometimes a horn
        centre = rng.uniform(0.2, 0.8)
        swell = np.exp(-0.5 * ((t - centre) / 0.2) ** 2)
        rumble = np.convolve(rng.standard_normal(len(t)), np.ones(30) / 30, mode="same")
        out = 3.0 * swell * rumble
        if rng.random() < 0.5:
            horn = (t > centre) & (t < centre + 0.3)
            out += 0.4 * horn * sum(np.sin(2 * np.pi * value * jitter * h * t) / h for h in (1, 2, 3))
        return out
    if kind == "hum":  # electric motor hum with a whine
        f = value * jitter
        return 0.3 * np.sin(2 * np.pi * f * t + phase) + 0.1 * np.sin(2 * np.pi * 4 * f * t)
    if kind == "bell":  # a single decaying bell strike
        start = rng.uniform(0.05, 0.6)
        env = np.where(t >= start, np.exp(-(t - start) * 4), 0.0)
        f = value * jitter
        return 0.5 * env * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 2.76 * f * t))
    raise ValueError(f"unknown event kind {kind!r}")


def apply_device(audio, device, rng, sample_rate=SAMPLE_RATE):
    """Colour `audio` with `device`'s frequency response and gain, add its noise floor; float32."""
    tilt, highpass, lowpass, gain = DEVICE_SPECS[device]
    n = len(audio)
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 1.0)
    response = 10 ** (tilt * np.log2(freqs / 1000.0) / 20)
    if highpass:
        response /= np.sqrt(1 + (highpass / freqs) ** 4)
    if lowpass:
        response /= np.sqrt(1 + (freqs / lowpass) ** 4)
    coloured = np.fft.irfft(np.fft.rfft(audio) * response, n)
    coloured *= 0.5 / (np.abs(coloured).max() + 1e-9) * gain * rng.uniform(0.8, 1.2)
    coloured += 0.002 * rng.standard_normal(n)
    return np.clip(coloured, -1, 1).astype(np.float32)

