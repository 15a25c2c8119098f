"""`make bench-scale`: throughput and peak memory of the data steps as the data sets grow, and the
extrapolation to the real data sets (TAU 2022 Mobile, Landslide4Sense, NWPU-RESISC45).

Each measurement runs in its own Python process, so its peak resident memory (ru_maxrss, which
includes the imports) belongs to that step alone. Synthetic data in the real layouts: a few unique
files written by each task's `sample` writer, linked under many names (the file contents do not
change the cost; the page cache may make reads cheaper than from a cold disk). Steps:

- asc `features`: the cache of N clips (three spectrograms, default config, `features.chunk` 256,
  2 threads), built from scratch, TensorFlow not imported; plus the CQT alone with
  `cqt.method: librosa` (the former path, one clip at a time) and `kernel` on 64 clips.
- asc streaming: one epoch of the training tf.data pipeline (shuffle, batch 32, mixup) reading the
  cache (`CachedFeatures`, as when a split exceeds `data.in_memory_gb`), against the student's
  training step rate on the same batches.
- landslide: one epoch of `landslide.data.training_dataset` (batch 8, augmentation, no in-memory
  cache) over N patches of 128x128x14; `should_cache` at the full size is reported too.
- rsic: one epoch of `rsic.data.make_dataset(training=True)` (224 px, batch 32, flips) over N JPEGs.

Writes benchmarks/scale.json and the "Scale" section of benchmarks/RESULTS.md.

    python -m benchmarks.scale [--quick] [--out benchmarks] [--work DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL = {"asc": 230_350, "asc_train": 139_620, "landslide": 3_799, "rsic": 31_500}
SIZES = {  # two sizes per step show the slope of memory and time
    "full": {"asc": (1_000, 4_000), "landslide": (500, 2_000), "rsic": (1_000, 3_000)},
    "quick": {"asc": (64, 256), "landslide": (32, 64), "rsic": (32, 64)},
}
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _link_many(sources, folder, count, name):
    """`count` symlinks folder/name.format(i) -> sources[i % len(sources)]; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / name.format(i)
        if not path.exists():
            os.symlink(sources[i % len(sources)], path)
        out.append(path)
    return out


# ---- one measurement (runs in a child process) --------------------------------------------------


def step_asc_features(work, n):
    from asc import features as feats
    from asc.sample import write_sample

    base = work / "asc_unique"
    if not (base / "meta.csv").exists():
        write_sample(base, per_class=4, seed=0)
    sources = sorted((base / "audio").glob("*.wav"))
    root = work / f"asc_{n}"
    paths = _link_many(sources, root / "audio", n, "clip{:06d}.wav")
    names = [p.relative_to(root).as_posix() for p in paths]
    cfg = json.loads(json.dumps(feats.FEATURE_DEFAULTS))
    cache = root / "features.h5"
    if cache.exists():
        cache.unlink()
    start, cpu = time.perf_counter(), _cpu_s()
    _, counts = feats.build_cache(root, names, cfg, cache, say=lambda _: None)
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    return {"items": counts["computed"], "seconds": seconds, "per_s": n / seconds, "cpu_s": cpu,
            "per_cpu_s": n / cpu, "peak_mb": _peak_mb(),
            "tensorflow_imported": "tensorflow" in sys.modules, "cache_mb": cache.stat().st_size / 1e6}


def step_asc_cqt(work, n):
    import numpy as np

    from asc import features as feats
    from asc.data import read_wav
    from asc.sample import write_sample

    base = work / "asc_unique"
    if not (base / "meta.csv").exists():
        write_sample(base, per_class=4, seed=0)
    audio = np.stack([read_wav(p, 44100, 1.0) for p in sorted((base / "audio").glob("*.wav"))])
    audio = np.concatenate([audio] * (1 + n // len(audio)))[:n]
    out = {}
    for method in ("librosa", "kernel"):
        cfg = json.loads(json.dumps(feats.FEATURE_DEFAULTS))
        cfg["kinds"], cfg["cqt"]["method"] = ["cqt"], method
        feats.compute_features(audio[0], cfg)  # warm (numba, filters)
        start = time.perf_counter()
        if method == "librosa":  # the former path: one librosa.cqt per clip
            for clip in audio:
                feats.compute_features(clip, cfg)
        else:
            for i in range(0, n, 16):
                feats.compute_batch(audio[i : i + 16], cfg)
        out[method] = n / (time.perf_counter() - start)
    return {"items": n, "librosa_per_s": out["librosa"], "kernel_per_s": out["kernel"],
            "speedup": out["kernel"] / out["librosa"], "peak_mb": _peak_mb()}


def step_asc_stream(work, n):
    import numpy as np

    from common.cli import setup_tensorflow

    setup_tensorflow()
    from asc import features as feats
    from asc.data import make_dataset

    root = work / f"asc_{n}"
    cfg = json.loads(json.dumps(feats.FEATURE_DEFAULTS))
    names = sorted(p.relative_to(root).as_posix() for p in (root / "audio").glob("*.wav"))
    lazy = feats.CachedFeatures(root / "features.h5", names, cfg)
    labels = np.arange(len(names)) % 10
    ds = make_dataset(lazy, labels, 10, 32, shuffle=True, mixup_alpha=0.4, seed=0)
    start = time.perf_counter()
    count = sum(int(x.shape[0]) for x, _ in ds)
    stream = count / (time.perf_counter() - start)
    # The student's training step on the same input (batch 32), for the ratio.
    import tf_keras as keras

    from asc.config import load
    from asc.models import build_model
    from common.bench import train_examples_per_s

    config = load(ROOT / "configs" / "asc" / "student.yaml")
    model = build_model(feats.input_shape(cfg), 10, config["model"], cfg["kinds"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    x = lazy[np.arange(64)]
    y = np.eye(10, dtype=np.float32)[labels[:64]]
    train_rate = train_examples_per_s(model, x, y, 32, steps=4, repeats=2)["median"]
    return {"items": count, "per_s": stream, "student_train_per_s": train_rate, "ratio": stream / train_rate,
            "peak_mb": _peak_mb()}


def step_landslide(work, n):
    from common.cli import setup_tensorflow

    setup_tensorflow()
    from landslide import data as D
    from landslide.sample import write_sample

    base = work / "l4s_unique"
    if not (base / "TrainData").exists():
        write_sample(base, n=32, seed=0)
    root = work / f"l4s_{n}" / "TrainData"
    images = sorted((base / "TrainData" / "img").glob("*.h5"), key=D.natural_key)
    masks = [base / "TrainData" / "mask" / D.mask_name(p.name) for p in images]
    _link_many(images, root / "img", n, "image_{}.h5")
    _link_many(masks, root / "mask", n, "mask_{}.h5")
    patches = D.index_folder(root, check=False)
    ds = D.training_dataset(patches, batch_size=8, seed=0, augment_data=True, cache=False)
    start = time.perf_counter()
    count = sum(int(x.shape[0]) for x, _ in ds)
    seconds = time.perf_counter() - start
    return {"items": count, "seconds": seconds, "per_s": count / seconds, "peak_mb": _peak_mb(),
            "decoded_gb": D.dataset_bytes(n) / 1e9, "full_decoded_gb": D.dataset_bytes(FULL["landslide"]) / 1e9,
            "should_cache_full": bool(D.should_cache(FULL["landslide"]))}


def step_rsic(work, n):
    from common.cli import setup_tensorflow

    setup_tensorflow()
    from rsic.features import make_dataset
    from rsic.sample import write_sample

    base = work / "rsic_unique"
    if not base.exists():
        write_sample(base, classes=5, per_class=8, size=256, seed=0)
    sources = sorted(base.rglob("*.jpg"))
    files = _link_many(sources, work / f"rsic_{n}", n, "img{:06d}.jpg")
    labels = [i % 5 for i in range(n)]
    ds = make_dataset(files, labels, image_size=224, batch_size=32, training=True,
                      augment={"flip": True, "rot90": True, "crop": 1.0}, seed=0)
    start = time.perf_counter()
    count = sum(int(x.shape[0]) for x, _ in ds)
    seconds = time.perf_counter() - start
    return {"items": count, "seconds": seconds, "per_s": count / seconds, "peak_mb": _peak_mb(),
            "decoded_gb": n * 224 * 224 * 3 * 4 / 1e9}


STEPS = {"asc_features": step_asc_features, "asc_cqt": step_asc_cqt, "asc_stream": step_asc_stream,
         "landslide_epoch": step_landslide, "rsic_epoch": step_rsic}


def _child(step, work, n, timeout):
    env = {**os.environ, "EDGE_THREADS": os.environ.get("EDGE_THREADS", "2"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--step", step, "--n", str(n), "--work", str(work)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks.scale step {step} n={n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the whole benchmark ---------------------------------------------------------------------------


def _extrapolate(small, large, full):
    """Peak MB at `full` items from a straight line through two (items, peak_mb) points."""
    slope = (large["peak_mb"] - small["peak_mb"]) / max(1, large["items"] - small["items"])
    # A falling line is measurement noise around a flat one: never extrapolate below the larger peak.
    return {"mb_per_1000": 1000 * slope, "peak_mb_full": large["peak_mb"] + max(0.0, slope) * (full - large["items"])}


def run(quick=False, work=None, timeout=1800, say=print):
    sizes = SIZES["quick" if quick else "full"]
    work = Path(work or tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    from common.cpuinfo import cpu_info

    results = {"machine": cpu_info(), "quick": quick, "sizes": sizes, "full_sizes": FULL, "steps": {}}
    for step, key in (("asc_features", "asc"), ("asc_stream", "asc"), ("landslide_epoch", "landslide"),
                      ("rsic_epoch", "rsic")):
        rows = []
        for n in sizes[key]:
            say(f"bench-scale: {step} n={n}")
            rows.append(_child(step, work, n, timeout))
        results["steps"][step] = {"runs": rows, **_extrapolate(rows[0], rows[1], FULL[key])}
    say("bench-scale: asc_cqt")
    results["steps"]["asc_cqt"] = {"runs": [_child("asc_cqt", work, 16 if quick else 64, timeout)]}
    feats = results["steps"]["asc_features"]["runs"][-1]
    results["extrapolation"] = {
        "asc_features_hours": FULL["asc"] / feats["per_s"] / 3600,
        "asc_stream_epoch_minutes": FULL["asc_train"] / results["steps"]["asc_stream"]["runs"][-1]["per_s"] / 60,
        "landslide_epoch_minutes": FULL["landslide"] / results["steps"]["landslide_epoch"]["runs"][-1]["per_s"] / 60,
        "rsic_epoch_minutes": FULL["rsic"] / results["steps"]["rsic_epoch"]["runs"][-1]["per_s"] / 60,
    }
    return results


def render(results):
    from common.cpuinfo import cpu_line

    s, e = results["steps"], results["extrapolation"]
    lines = [
        BEGIN,
        "## Scale: the data steps as the data sets grow (`make bench-scale`)",
        "",
        f"Synthetic data in the real layouts, each step in its own process (peak = ru_maxrss, imports "
        f"included); {'quick sizes' if results['quick'] else 'sizes ' + json.dumps(results['sizes'])}. "
        "Full size = a straight line through the two sizes' peaks.",
        "",
        *([cpu_line(results["machine"]), ""] if "machine" in results else []),  # older results lack it
        "| step | items | items/s | peak MB | MB per 1,000 more items | full data set | full: time | full: peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    what = {
        "asc_features": ("asc features (3 spectrograms -> HDF5 cache)", "asc", e["asc_features_hours"] * 60, "min"),
        "asc_stream": ("asc streaming epoch (cache -> tf.data, mixup)", "asc_train", e["asc_stream_epoch_minutes"], "min"),
        "landslide_epoch": ("landslide data epoch (128x128x14, batch 8)", "landslide", e["landslide_epoch_minutes"], "min"),
        "rsic_epoch": ("rsic data epoch (224 px JPEG, batch 32)", "rsic", e["rsic_epoch_minutes"], "min"),
    }
    for key, (label, full_key, minutes, _) in what.items():
        step = s[key]
        for run in step["runs"]:
            lines.append(
                f"| {label} | {run['items']:,} | {run['per_s']:.1f} | {run['peak_mb']:.0f} | {step['mb_per_1000']:.1f} | "
                f"{FULL[full_key]:,} | {minutes:.1f} min | {step['peak_mb_full']:.0f} |"
            )
    cqt = s["asc_cqt"]["runs"][0]
    stream = s["asc_stream"]["runs"][-1]
    land = s["landslide_epoch"]["runs"][-1]
    lines += [
        "",
        f"- CQT alone, 1-s clips: librosa.cqt one clip at a time (the former path) {cqt['librosa_per_s']:.1f} clips/s, "
        f"kernel CQT batched {cqt['kernel_per_s']:.1f} clips/s: {cqt['speedup']:.1f}x.",
        f"- Streaming from the cache: {stream['per_s']:.0f} clips/s against the student's {stream['student_train_per_s']:.0f} "
        f"training clips/s: {stream['ratio']:.1f}x.",
        f"- asc features ran without TensorFlow: {not s['asc_features']['runs'][-1]['tensorflow_imported']}; "
        f"TAU development ({FULL['asc']:,} clips) at this rate: {e['asc_features_hours']:.2f} h wall on this (shared) "
        f"machine; at {s['asc_features']['runs'][-1]['per_cpu_s']:.0f} clips per CPU-second, "
        f"{FULL['asc'] / s['asc_features']['runs'][-1]['per_cpu_s'] / 3600:.2f} h of CPU time in all (an upper bound "
        "for the wall time of a machine with one free core; two threads share it on two).",
        f"- landslide: the decoded full training set is {land['full_decoded_gb']:.2f} GB; `data.cache: auto` keeps it in "
        f"memory only when that is under half the free memory (here: {land['should_cache_full']}); the measured epochs "
        "stream from the files.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write(results, out):
    from common.io import write_json, write_text

    out = Path(out)
    write_json(out / "scale.json", results)
    md = out / "RESULTS.md"
    text = md.read_text() if md.exists() else ""
    section = render(results)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_text(md, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    parser.add_argument("--work", default=None, help="folder for the synthetic data (default: a temporary one)")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        print(json.dumps(STEPS[args.step](Path(args.work), args.n)))
        return 0
    results = run(args.quick, args.work)
    write(results, args.out)
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
