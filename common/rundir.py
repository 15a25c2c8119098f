"""Run directories: the marker that says a folder is a run, the lock that keeps it to one process.

A run directory (`--out` of `train` and `distill`) holds what one training run produced
(`config.yaml`, `model.keras`, `checkpoints/`, `history.csv`, ...; see common/train.py) and two
files of its own:

    run.json    the marker: {"project", "version", "task", "created"}; `--overwrite` deletes only
                a folder that carries it (or a run made before markers existed: config.yaml beside
                model.keras or checkpoints/), never a folder of the user's
    .lock       locked with fcntl.flock by the process training the run; the operating system
                releases it when that process ends, however it ends, so it is never stale. It
                holds the PID of the process, which a second process names when it is refused.

No TensorFlow here: a run directory is checked (and refused) before TensorFlow starts.
"""

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from common.errors import RunDirError
from common.io import write_json

MODEL_FILE = "model.keras"
# TensorFlow checkpoint format (files best.index, best.data-*): unlike .h5 it loads into the
# variables of a distributed model.
BEST_WEIGHTS = "checkpoints/best"
BACKUP_DIR = "checkpoints/backup"
MARKER_FILE = "run.json"
LOCK_FILE = ".lock"
CONFIG_FILE = "config.yaml"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What a run writes during its first epoch; cleared when a run that never finished one restarts.
_FIRST_EPOCH_OUTPUTS = ("history.csv", "checkpoints", "tb")


def project_identity():
    """(name, version) of this project, from its pyproject.toml ("unknown" where unreadable)."""
    import tomllib

    try:
        project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
        return project["name"], project["version"]
    except (OSError, KeyError, ValueError):
        return "edge-rs-audio", "unknown"


def prepare_run_dir(out, *, config=None, resume=False, overwrite=False, task=None, keep_apart=()):
    """Create or reopen the run directory `out` for training, lock it and save `config` in it.

    A new run gets `run.json` (the marker). An existing folder is reopened only when it is a run
    (it carries the marker, or it is a run made before markers: config.yaml with model.keras or
    checkpoints/); anything else is refused, with or without `overwrite`. A run that another
    process is training (its `.lock` is held) is refused naming that process.

    The same command resumes an unfinished run (no model.keras) with the same config: from its
    last finished epoch (the BackupAndRestore state), or from the start when it was killed
    before one finished (its partial history, checkpoints and logs are cleared first).

    Args:
        out: str or Path of the run directory.
        config: the resolved config dict to save as config.yaml (None: leave config.yaml alone).
        resume: continue the unfinished run in `out` (its config must be the same).
        overwrite: delete the run in `out` (never a folder that is not a run) and start afresh.
        task: the task's name, recorded in run.json.
        keep_apart: (flag, path) pairs `out` must not equal, lie inside or contain, e.g.
            [("--data", data_root), ("--teacher", teacher_run)]; empty paths are skipped.

    Returns:
        The run directory as a Path, locked by this process until `release_run_dir` or exit.

    Raises:
        RunDirError: any of the refusals above, one line naming `out` and what to do.
    """
    out = Path(out)
    if not is_chief():
        return out  # the chief owns the run directory; other workers only train
    if resume and overwrite:
        raise RunDirError(f"{out}: give either --resume or --overwrite, not both")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory")
    check_apart(out, keep_apart)
    if (out / LOCK_FILE).is_file():
        lock_run_dir(out)  # a run's own lock first: a process starting it may be writing its files
    if out.is_dir() and _entries(out) and not is_run_dir(out):
        raise RunDirError(f"{out}: is not a run directory (no {MARKER_FILE}) and holds {_listing(out)}; "
                          f"--overwrite replaces only runs; use another --out")
    fresh = not out.is_dir() or not _entries(out)
    out.mkdir(parents=True, exist_ok=True)
    lock_run_dir(out)
    if not fresh and overwrite:
        for entry in _entries(out):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        fresh = True
    elif not fresh and (out / CONFIG_FILE).is_file():
        _reopen(out, config, resume)
    if fresh:
        _FRESH_RUN_DIRS.append(out)
    if not (out / MARKER_FILE).is_file():
        name, version = project_identity()
        write_json(out / MARKER_FILE, {"project": name, "version": version, "task": task,
                                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    if config is not None:
        from common.config import save_config

        save_config(config, out / CONFIG_FILE)
    return out


def _reopen(out, config, resume):
    """Check that the existing run `out` may continue under `config`; clear a run that never
    finished an epoch so that it restarts cleanly."""
    from common.config import read_saved_config, same_run_settings

    saved = out / CONFIG_FILE
    finished = (out / MODEL_FILE).is_file()
    same_config = config is None or same_run_settings(read_saved_config(saved), config)
    if finished and resume:
        raise RunDirError(f"{out}: holds a finished run ({MODEL_FILE}), nothing to resume; "
                          f"use --overwrite to train it again or another --out")
    if finished:
        raise RunDirError(f"{out}: already holds a run; use --overwrite to replace it or another --out")
    if not same_config:
        raise RunDirError(f"{out}: holds an unfinished run with another config than {saved}; "
                          f"run that config again (or --resume) to continue it, or --overwrite to start afresh")
    if (out / BACKUP_DIR).is_dir():
        print(f"resuming the unfinished run in {out}", flush=True)
        return
    print(f"restarting the unfinished run in {out} (it stopped before its first epoch finished)", flush=True)
    for name in _FIRST_EPOCH_OUTPUTS:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def is_run_dir(folder):
    """True when `folder` is a run directory: it carries this project's run.json, or it is a run
    made before markers existed (config.yaml beside model.keras or checkpoints/)."""
    folder = Path(folder)
    marker = folder / MARKER_FILE
    if marker.is_file():
        try:
            content = json.loads(marker.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(content, dict) and content.get("project") == project_identity()[0]
    legacy = (folder / MODEL_FILE).is_file() or (folder / "checkpoints").is_dir()
    return (folder / CONFIG_FILE).is_file() and legacy


def run_task(run):
    """The task that trained the run directory `run`, as its run.json marker (or, for a run whose
    marker is missing, its split.json) records it; None when neither says."""
    for name in (MARKER_FILE, "split.json"):
        path = Path(run) / name
        try:
            made_by = json.loads(path.read_text()).get("task") if path.is_file() else None
        except (OSError, ValueError, AttributeError):
            made_by = None
        if made_by:
            return made_by
    return None


def check_run_task(run, task_name, context=""):
    """RunDirError when another task trained `run` (`context`: a prefix such as "--init-from: ")."""
    made_by = run_task(run)
    if made_by and made_by != task_name:
        raise RunDirError(f"{run}: {context}this run is for {made_by}, not {task_name}; "
                          f"use `python -m {made_by}` with it")


def check_apart(out, keep_apart):
    """Refuse an `out` equal to, inside or above any path of `keep_apart` ((flag, path) pairs)."""
    target = Path(out).expanduser().resolve()
    for flag, path in keep_apart:
        if not path:
            continue
        other = Path(path).expanduser().resolve()
        if target == other:
            raise RunDirError(f"{out}: --out is the {flag} folder itself; use another --out")
        if target.is_relative_to(other):
            raise RunDirError(f"{out}: --out lies inside the {flag} folder {other}; use a folder outside it")
        if other.is_relative_to(target):
            raise RunDirError(f"{out}: --out contains the {flag} folder {other}; use a folder beside it")


# Locks this process holds: resolved run directory -> open file of its .lock.
_HELD_LOCKS = {}


def lock_run_dir(run):
    """Lock `run` for this process (fcntl.flock on RUN/.lock, which then holds our PID).

    Taking a lock this process already holds is a no-op. The lock lasts until `release_run_dir`
    or until the process ends (the operating system releases it then, even on a kill).

    Raises:
        RunDirError: another process holds it (the message names its PID).
    """
    run = Path(run)
    key = run.resolve()
    path = run / LOCK_FILE
    held = _HELD_LOCKS.get(key)
    if held is not None:
        try:
            if os.fstat(held.fileno()).st_ino == os.stat(path).st_ino:
                return
        except OSError:
            pass
        release_run_dir(run)  # the folder was replaced since: lock the new file
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise RunDirError(f"{run}: is in use by {who} (training or resuming it); wait for it to finish, "
                          f"or use another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _HELD_LOCKS[key] = handle


def release_run_dir(run):
    """Release this process's lock on `run` (no-op when it holds none)."""
    handle = _HELD_LOCKS.pop(Path(run).resolve(), None)
    if handle is not None:
        handle.close()  # closing the file releases the flock


def _entries(folder):
    """What `folder` holds, its lock file aside."""
    return sorted(entry for entry in folder.iterdir() if entry.name != LOCK_FILE)


def _listing(folder, shown=3):
    entries = _entries(folder)
    names = [entry.name + ("/" if entry.is_dir() else "") for entry in entries[:shown]]
    more = f" and {len(entries) - shown} more" if len(entries) > shown else ""
    return ", ".join(names) + more


# Run directories this process created; see `discard_unstarted_runs`.
_FRESH_RUN_DIRS = []


def discard_unstarted_runs():
    """Delete the run directories this process created that hold no trained epoch yet.

    Called when a command fails on bad input (common.cli.run_cli), so that the failed command
    leaves no partial output behind. A run that finished an epoch keeps its checkpoints.
    """
    while _FRESH_RUN_DIRS:
        run = _FRESH_RUN_DIRS.pop()
        started = (run / BACKUP_DIR).is_dir() or (run / MODEL_FILE).is_file() or (run / "history.csv").is_file()
        if run.is_dir() and not started:
            release_run_dir(run)
            shutil.rmtree(run, ignore_errors=True)


def is_chief():
    """True unless TF_CONFIG names this process a non-chief worker."""
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return True
    task = json.loads(tf_config).get("task", {})
    cluster = json.loads(tf_config).get("cluster", {})
    if task.get("type") == "chief":
        return True
    # Without an explicit chief, worker 0 is the chief (TensorFlow's convention).
    return "chief" not in cluster and task.get("type") == "worker" and task.get("index", 0) == 0
