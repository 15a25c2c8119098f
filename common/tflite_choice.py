"""`predict --tflite RUN` (or `--tflite auto --run RUN`): of a run's exported files, the one that
runs fastest on this CPU.

int8 is what a device runs and, on CPUs with AVX-512 VNNI, the fastest by far; on CPUs without
int8 dot products (AVX2 only) XNNPACK's int8 convolutions lose much of their lead and a float file
(the `gpu` target's float16 weights, the `weights8` file, a float32 file) can be as fast or faster
(issue 27). There the edge export's ONNX copy of the int8 model (`model_int8.onnx`, ONNX
Runtime's uint8 x int8 kernels, common.export.to_onnx) is usually the fastest; an ONNX file whose
recorded source is not the run's present model_int8.tflite is left out. Every one of these files
passed its parity check against the Keras model at export, so any of them gives the run's
predictions. The first predict on a machine times each present
file for a moment (`SELF_TIMING_INVOKES` invokes after a warm-up, at the batch predict uses) and
remembers the choice in RUN/tflite_choice.json, keyed by the CPU (model, flags, cores), the
threads, the batch and the files' SHA-256: another machine, or a new export, times again.

No TensorFlow: this is the edge predict path.
"""

import hashlib
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from common.errors import DataError

#: The exported files that take and return float32 (what `predict --tflite` feeds), in the order
#: a tie is broken (first wins: the edge file, which is what the export report describes).
#: model_float32.tflite is written by no target; a user may put one there (plain conversion).
CANDIDATES = ("model_int8.tflite", "model_float16.tflite", "model_weights8.tflite", "model_float32.tflite",
              "model_int8.onnx")
CACHE_FILE = "tflite_choice.json"
#: Timed invokes per file after one warm-up (a few seconds in all on the full-size U-Net).
SELF_TIMING_INVOKES = 3


def candidates(run):
    """The CANDIDATES present in the run directory `run`, in CANDIDATES' order."""
    return [Path(run) / name for name in CANDIDATES if (Path(run) / name).is_file()]


def usable(path):
    """Whether a candidate may be timed: every .tflite; model_int8.onnx only when its metadata
    names the model_int8.tflite beside it (a copy left from another export is not that model)."""
    if Path(path).suffix != ".onnx":
        return True
    from common.onnx_runtime import source_sha256

    edge_file = Path(path).with_name("model_int8.tflite")
    try:
        return edge_file.is_file() and source_sha256(path) == file_sha256(edge_file)
    except DataError:  # unreadable
        return False


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(machine, files, num_threads, batch):
    """The text that names one timing situation: CPU model, flags and cores (`machine`:
    common.cpuinfo.cpu_info()), threads, batch and each file's name and SHA-256."""
    parts = {"cpu": machine.get("cpu"), "flags": machine.get("cpu_flags"), "cores": machine.get("cores"),
             "threads": num_threads, "batch": batch,
             "files": {Path(path).name: file_sha256(path) for path in files}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def time_file(path, num_threads, batch, load=None):
    """Median milliseconds per example of `path` in its runtime (common.tflite_runtime.open_model:
    LiteRT, or ONNX Runtime for a .onnx; or what `load(path)` returns: a task's loader, which puts
    a host front back in front of its model, so that the time counts it) on zeros, `batch`
    examples per invoke, after one warm-up."""
    import numpy as np

    from common.tflite_runtime import open_model

    model = load(path) if load else open_model(path, num_threads=num_threads)
    x = np.zeros((batch, *model.input_shape), np.float32)
    model.predict(x, batch_size=batch)
    times = []
    for _ in range(SELF_TIMING_INVOKES):
        start = time.perf_counter()
        model.predict(x, batch_size=batch)
        times.append((time.perf_counter() - start) * 1000.0 / batch)
    return statistics.median(times)


def _read_cache(path):
    try:
        entries = json.loads(Path(path).read_text()).get("entries", {})
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError, AttributeError):  # absent, unreadable or foreign: time again
        return {}


def choose(run, *, num_threads=None, batch=1, timer=None, machine=None):
    """The fastest exported file of the run directory `run` on this CPU, and one line saying so.

    Args:
        run: the run directory (holding model_int8.tflite and possibly the other CANDIDATES).
        num_threads: LiteRT threads predict will use (None: common.tflite_runtime.default_threads).
        batch: examples per invoke.
        timer: (path, num_threads, batch) -> ms per example; default `time_file` (tests inject it).
        machine: common.cpuinfo.cpu_info() of this machine (tests inject another).

    Returns:
        (path of the chosen file, line): the line names the file, the times and whether they were
        measured now or read from RUN/tflite_choice.json.

    Raises:
        DataError: no candidate file in `run`.
    """
    from common.cpuinfo import cpu_info
    from common.tflite_runtime import default_threads

    run = Path(run)
    files = candidates(run)
    if len(files) == 1 and files[0].suffix != ".onnx":
        return files[0], f"using {files[0].name} (the run's only exported file)"
    machine = machine or cpu_info()
    num_threads = int(num_threads or default_threads(machine.get("cores")))  # as TFLiteModel will
    key = cache_key(machine, files, num_threads, batch)
    cache_path = run / CACHE_FILE
    entries = _read_cache(cache_path)
    entry = entries.get(key)
    how = "timed before on this CPU"
    if not (isinstance(entry, dict) and entry.get("file") in [path.name for path in files]
            and isinstance(entry.get("ms_per_example"), dict)):
        # Checked here only: a remembered choice was made from these very files (the key has
        # their SHA-256), so a predict that finds one does not open the ONNX copy at all.
        left_out = [path.name for path in files if not usable(path)]
        files = [path for path in files if path.name not in left_out]
        if not files:
            raise DataError(f"{run}: no exported model ({', '.join(CANDIDATES[:3])}"
                            f"{'; ' + ', '.join(left_out) + ' is of another export' if left_out else ''}); "
                            "run `export` first")
        timer = timer or time_file
        times = {path.name: float(timer(path, num_threads, batch)) for path in files}
        fastest = min(files, key=lambda path: times[path.name])  # ties: CANDIDATES' order
        entry = {"file": fastest.name, "ms_per_example": times, "cpu": machine.get("cpu"),
                 "cpu_flags": machine.get("cpu_flags"), "threads": num_threads, "batch": batch,
                 "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        how = "timed now" + "".join(f", {name} left out (converted from another model_int8.tflite)"
                                    for name in left_out)
        try:
            from common.io import write_json

            write_json(cache_path, {"entries": {**entries, key: entry}})
            how += f", remembered in {cache_path}"
        except OSError as error:  # a read-only run: choose again next time
            how += f", not remembered ({cache_path}: {error.strerror or error})"
    times = ", ".join(f"{name} {ms:.1f}" for name, ms in entry["ms_per_example"].items())
    line = (f"using {entry['file']}, the fastest of the run's exported files on {machine.get('cpu')} "
            f"(ms per example at batch {batch}, {num_threads} threads: {times}; {how})")
    return run / entry["file"], line
