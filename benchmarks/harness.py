"""Timing helpers for `make bench`: medians over repeats after a warm-up, with the spread."""

import os
import platform
import statistics
import time
from datetime import datetime, timezone


def measure(fn, *, repeats=5, warmup=1):
    """Call `fn()` `warmup` times untimed, then `repeats` times; seconds per call.

    Returns:
        dict with `median_s`, `min_s`, `max_s` and `repeats`.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def rate(timing, items):
    """Items per second at the median, and the spread (min..max) as rates."""
    return {
        "per_s": items / timing["median_s"],
        "per_s_min": items / timing["max_s"],
        "per_s_max": items / timing["min_s"],
    }


def machine():
    """Where and when the numbers were made."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }
