"""Atomic file writing: a crash never leaves a truncated file under the final name."""

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    The temporary name keeps the final suffix, so writers that choose a format by extension
    (Keras `.keras`, h5py, matplotlib `.png`) behave as for the final name.

    Example:
        with atomic_path("run/model.keras") as tmp:
            model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers create the file themselves (h5py refuses some existing files)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            if os.path.isdir(tmp):
                import shutil

                shutil.rmtree(tmp)
            else:
                os.unlink(tmp)


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_bytes(path, data):
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_json(path, obj):
    """Write `obj` as indented JSON to `path` atomically (numpy scalars and arrays allowed)."""
    write_text(path, json.dumps(obj, indent=2, default=_to_builtin) + "\n")


def _to_builtin(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
