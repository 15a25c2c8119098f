"""Training on tf.distribute strategies and surviving a killed process (real subprocesses)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.train import read_history

WORKER = Path(__file__).with_name("train_worker.py")
ROOT = WORKER.parents[2]


def run_worker(*args, env=None, timeout=180):
    result = subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["loss"]


def run_worker_here(capsys, *args):
    """The worker's job in this process (default strategy): a run that needs no fresh process (no
    logical devices, no cluster, no signal) skips a TensorFlow start-up, seconds on 2 cores."""
    from tests.common import train_worker

    capsys.readouterr()
    train_worker.main([str(arg) for arg in args])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["loss"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path, capsys):
    # Two epochs: the per-epoch losses are compared, and the second is lower than the first.
    single = run_worker_here(capsys, "--out", tmp_path / "single", "--epochs", "2")
    mirrored = run_worker("--out", str(tmp_path / "mirrored"), "--epochs", "2", "--strategy", "mirrored", "--logical-cpus", "2")
    np.testing.assert_allclose(mirrored, single, rtol=1e-3)
    assert single[-1] < single[0]


def test_two_workers_on_localhost_train_and_chief_saves(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    try:
        for index in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), "--out", str(tmp_path / "run"), "--epochs", "2", "--strategy", "multiworker"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                    cwd=ROOT,
                )
            )
        outputs = [process.communicate(timeout=240) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-2000:]
    losses = [json.loads(stdout.strip().splitlines()[-1])["loss"] for stdout, _ in outputs]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)  # both workers run the same replicas
    from common.train import load_run_model

    model = load_run_model(tmp_path / "run")
    assert model.predict(np.zeros((2, 8), "float32"), verbose=0).shape == (2, 3)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        ".lock", "checkpoints", "config.yaml", "history.csv", "model.keras", "run.json", "tb"]


def test_killed_run_resumes_and_ends_with_all_epochs(tmp_path, capsys):
    run = tmp_path / "run"
    command = [sys.executable, str(WORKER), "--out", str(run), "--epochs", "6", "--epoch-seconds", "0.5"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while len(read_history(run).get("epoch", [])) < 2:
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.time() < deadline, "training never reached epoch 2"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    done_before = len(read_history(run)["epoch"])
    assert 2 <= done_before < 6
    assert not (run / "model.keras").exists()
    # The same command again resumes: nothing from the finished epochs is redone.
    losses = run_worker_here(capsys, "--out", run, "--epochs", "6")
    assert len(losses) == 6 - done_before
    assert read_history(run)["epoch"] == [0, 1, 2, 3, 4, 5]
    assert (run / "model.keras").is_file()


def test_ctrl_c_stops_after_the_epoch_checkpoint_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    command = [sys.executable, str(WORKER), "--out", str(run), "--epochs", "5", "--epoch-seconds", "1.0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while len(read_history(run).get("epoch", [])) < 1:
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.time() < deadline, "training never finished an epoch"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "run the same command to resume" in stderr
    done = len(read_history(run)["epoch"])
    assert 1 <= done < 5 and (run / "checkpoints/backup").is_dir() and not (run / "model.keras").exists()
    losses = run_worker_here(capsys, "--out", run, "--epochs", "5")
    assert len(losses) == 5 - done and read_history(run)["epoch"] == [0, 1, 2, 3, 4]
