"""`make bench-peer`: this project's landslide training and int8 inference beside the official
PyTorch baseline, on the same sample patches, batch, threads and epochs.

    python -m benchmarks.peer [--quick] [--epochs 4] [--threads 2] [--out benchmarks]

The peer (benchmarks/peer/l4s_torch.py, run by `.venv-peer/bin/python`) is a replica of the
official Landslide4Sense 2022 U-Net baseline in PyTorch, trained in float32 and under
`torch.autocast("cpu", dtype=torch.bfloat16)`. This project's side is `configs/landslide/unet_ce.yaml`
and `full.yaml`, each with the default config (`train.precision: auto`) and with float32, trained
through the ordinary runner (common.runner.train: checkpoints, logs and all).

Every system is one long-lived process; the driver asks each in turn for one epoch (training, then
a validation pass), so all systems see the same machine load, round after round. Reported: the
median over the epochs after the first (which traces and warms up) of the training phase alone,
the validation pass, the mean training loss and the validation F1 of every epoch. Inference: the
whole process (start, import, load, read 80 patches, predict, write masks), int8 TFLite through
`python -m landslide predict --tflite`, the export's ONNX Runtime copy of it (model_int8.onnx) and
the run's fastest file on this CPU, against the PyTorch model in float32 (and bf16 where the CPU
has it natively), interleaved repeats, medians. Under benchmarks/cpu_cap.c
(`make bench-peer CPU_CAP=x86-64-v3`) every process runs as on an AVX2-only CPU.

Writes `peer` into benchmarks/results.json and the side-by-side section of RESULTS.md (both keep
what `make bench` wrote), and the raw per-epoch numbers into benchmarks/tmp/peer/.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = ROOT / "benchmarks" / "peer" / "l4s_torch.py"
WORK = ROOT / "benchmarks" / "tmp" / "peer"
QUICK_WIDTH = 0.0625
TORCH_NAMES = {"float32": "float32", "bf16": "bf16 autocast"}
SECTION = "## Side by side with the PyTorch baseline"


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


# -- the project's side: one training process stepped by the driver ------------------------------


def project_worker(argv):
    """`python -m benchmarks.peer worker CONFIG DATA OUT [key=value ...]`: train through the runner,
    waiting for an `epoch` line on stdin before each epoch and printing one JSON line after it."""
    config, data, out, *overrides = argv
    from common.cli import quiet_native_logs, setup_tensorflow

    quiet_native_logs()  # TensorFlow's native start-up lines stay out of the terminal
    setup_tensorflow()
    import tf_keras as keras

    from common import runner
    from landslide.task import LandslideTask

    class Stepper(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            print(json.dumps({"ready": True, "params": self.model.count_params()}), flush=True)

        def on_epoch_begin(self, epoch, logs=None):
            if sys.stdin.readline().strip() != "epoch":
                raise SystemExit(0)
            self.t0, self.t1, self.t2 = time.perf_counter(), None, None

        def on_test_begin(self, logs=None):
            self.t1 = self.t1 or time.perf_counter()

        def on_test_end(self, logs=None):
            self.t2 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            end = time.perf_counter()
            t1, t2 = self.t1 or end, self.t2 or end
            print(json.dumps({"train_s": t1 - self.t0, "val_s": t2 - t1, "epoch_s": end - self.t0,
                              "loss": float(logs["loss"]), "val_f1": float(logs.get("val_f1", float("nan")))}),
                  flush=True)

        def on_train_end(self, logs=None):
            # Evaluation, export-free saving and pictures wait until every system has trained.
            sys.stdin.readline()

    class SteppedTask(LandslideTask):
        def callbacks(self, cfg, data, split):
            return [*super().callbacks(cfg, data, split), Stepper()]

    task = SteppedTask()
    cfg = runner.load_task_config(task, config, overrides, data)
    result = runner.train(task, cfg, out, overwrite=True)
    print(json.dumps({"final": result.metrics, "precision": cfg["train"]["precision"]}), flush=True)


# -- the driver -------------------------------------------------------------------------------------


class System:
    def __init__(self, name, kind, command, env=None):
        self.name, self.kind, self.command = name, kind, command
        self.epochs, self.info = [], {}
        self.log = open(WORK / f"{name.replace(' ', '_')}.log", "w")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, cwd=ROOT, env={**os.environ, **(env or {})})

    def read(self):
        """The next JSON line of the process (other lines go to its log)."""
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
            self.log.write(line)
        raise RuntimeError(f"{self.name}: the process ended early; see {self.log.name}")

    def send(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def _median(values):
    return statistics.median(values) if values else float("nan")


def _sample(n):
    from landslide.data import index_folder, labelled_folder, make_split
    from landslide.sample import write_sample

    data = WORK / f"sample_{n}"
    if not (data / "TrainData" / "img" / f"image_{n}.h5").is_file():
        write_sample(data, n=n, seed=0)
    names = index_folder(labelled_folder(data)).names
    split = make_split(names, protocol="kfold", folds=5, fold=0, seed=0)
    return data, split


def peer_precisions(info=None):
    """The PyTorch settings to run: float32, and bf16 autocast where the CPU computes bfloat16
    natively. Elsewhere oneDNN emulates it at about a tenth of float32's speed (761 s an epoch
    against 78 s on an AVX2 machine, issue 27), so it is never the peer's fastest setting there
    and would only make the run ten times longer."""
    from common.cpuinfo import cpu_info, native_bf16

    return ("float32", "bf16") if native_bf16(info or cpu_info())[0] else ("float32",)


def run(quick=False, epochs=None, threads=2, out=ROOT / "benchmarks", configs=("unet_ce", "full"), precisions=None):
    from common.cpuinfo import cpu_info, slow_weight_gradient_kernel

    if not PEER_PYTHON.is_file():
        raise SystemExit(f"error: {PEER_PYTHON}: missing; `make bench-peer` creates it "
                         "(benchmarks/peer/requirements.txt)")
    WORK.mkdir(parents=True, exist_ok=True)
    n = 20 if quick else 80
    epochs = epochs or (2 if quick else 4)
    batch = 8
    data, split = _sample(n)
    width = QUICK_WIDTH if quick else 1.0
    env = {"EDGE_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONHASHSEED": "0"}
    load_start, clock = loadavg(), time.time()

    torch_args = ["--data", str(data), "--train", ",".join(split["train"]), "--val", ",".join(split["val"]),
                  "--batch", str(batch), "--threads", str(threads), "--width", str(width)]
    # model.bn_momentum 0.9 is PyTorch's BatchNorm default (momentum 0.1): with Keras' 0.99 the
    # moving statistics of a few-epoch run are still mostly their initial values, and the
    # validation F1 says nothing. It changes no speed. unet_ce.yaml (and every rung built on it)
    # now sets it itself, with the baseline's weight decay 5e-4 (train.weight_decay_mode l2, as
    # torch.optim.Adam applies it in l4s_torch.py); the override keeps other configs comparable.
    common = [f"train.batch_size={batch}", f"train.epochs={epochs}", "train.verbose=0", "data.split=kfold",
              "data.folds=5", "data.fold=0", f"model.width={width}", "model.bn_momentum=0.9",
              "train.select_on=reported"]  # the same training patches and validation fold as PyTorch's
    project = [sys.executable, "-m", "benchmarks.peer", "worker"]
    precisions = precisions or peer_precisions()
    systems = [System(f"pytorch {TORCH_NAMES[precision]}", "peer", [
        str(PEER_PYTHON), str(PEER_SCRIPT), "train", "--precision", precision, *torch_args], env)
        for precision in precisions]
    for config in configs:
        for precision in ("auto", "float32"):
            label = "default (auto)" if precision == "auto" else "float32"
            systems.append(System(f"{config} {label}", config, [
                *project, f"configs/landslide/{config}.yaml", str(data), str(WORK / f"run_{config}_{precision}"),
                *common, f"train.precision={precision}"], env))
    if "unet_ce" in configs:  # TensorFlow's own default on CPUs without AVX-512 VNNI/BF16/AMX (issue 27)
        systems.append(System("unet_ce float32, oneDNN off", "unet_ce", [
            *project, "configs/landslide/unet_ce.yaml", str(data), str(WORK / "run_unet_ce_eigen"), *common,
            "train.precision=float32", "train.weight_gradients=tensorflow"], {**env, "TF_ENABLE_ONEDNN_OPTS": "0"}))
    # What train.weight_gradients auto buys, where it takes the matmul form (read without TensorFlow).
    if "unet_ce" in configs and slow_weight_gradient_kernel(cpu_info())[0]:
        systems.append(System("unet_ce float32, TensorFlow weight gradients", "unet_ce", [
            *project, "configs/landslide/unet_ce.yaml", str(data), str(WORK / "run_unet_ce_tf_wgrad"), *common,
            "train.precision=float32", "train.weight_gradients=tensorflow"], env))
    for system in systems:
        system.info.update(system.read())
        print(f"peer: {system.name} ready ({system.info.get('params', 0):,} parameters)", flush=True)

    rounds = []
    for epoch in range(epochs):
        order = systems[epoch % len(systems):] + systems[: epoch % len(systems)]  # rotate who goes first
        for system in order:
            system.send("epoch")
            record = system.read()
            record["load"] = loadavg()[0]
            system.epochs.append(record)
            print(f"peer: epoch {epoch + 1} {system.name}: train {record['train_s']:.1f} s, "
                  f"val {record['val_s']:.1f} s, loss {record['loss']:.3f}, val F1 {record['val_f1']:.3f}",
                  flush=True)
        rounds.append(loadavg())

    weights = {}
    for system in systems:
        if system.kind == "peer":
            weights[system.name] = WORK / f"{system.name.split()[1]}.pt"
            system.send(f"save {weights[system.name]}")
            system.read()
            system.send("quit")
        else:
            system.send("finish")
            final = system.read()
            system.info.update(final)
        system.process.wait()

    # Inference, whole process, interleaved: int8 TFLite of the default unet_ce run, the edge
    # export's ONNX Runtime copy of it, and the run's fastest exported file on this CPU (`--tflite
    # RUN`: int8 .tflite, its .onnx copy or the gpu target's float16), vs PyTorch.
    unet_run = WORK / "run_unet_ce_auto"
    for export in (["--mode", "ptq"], ["--target", "gpu"]):
        subprocess.run([sys.executable, "-m", "landslide", "export", "--run", str(unet_run), *export],
                       check=True, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    images = data / "TrainData" / "img"
    infer = {
        "int8 TFLite (unet_ce)": [sys.executable, "-m", "landslide", "predict", "--tflite",
                                  str(unet_run / "model_int8.tflite"), str(images), "--out", str(WORK / "pred_tflite"),
                                  "--overwrite"],
        "int8 ONNX Runtime (unet_ce)": [sys.executable, "-m", "landslide", "predict", "--tflite",
                                        str(unet_run / "model_int8.onnx"), str(images), "--out",
                                        str(WORK / "pred_onnx"), "--overwrite"],
        "fastest TFLite (unet_ce)": [sys.executable, "-m", "landslide", "predict", "--tflite", str(unet_run),
                                     str(images), "--out", str(WORK / "pred_tflite_auto"), "--overwrite"],
    }
    # Its first run times the files and remembers the choice (RUN/tflite_choice.json); say which.
    chosen = subprocess.run(infer["fastest TFLite (unet_ce)"], check=True, cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, text=True).stdout
    chosen = next((line for line in chosen.splitlines() if "using model_" in line), chosen.strip())
    print(f"peer: {chosen}", flush=True)
    torch_weights = weights["pytorch float32"]
    for precision in precisions:
        infer[f"pytorch {precision}"] = [str(PEER_PYTHON), str(PEER_SCRIPT), "infer", "--precision", precision,
                                         "--weights", str(torch_weights), "--images", str(images),
                                         "--out", str(WORK / f"pred_torch_{precision}"), "--batch", str(batch),
                                         "--threads", str(threads), "--width", str(width)]
    infer_times = {name: [] for name in infer}
    for _ in range(2 if quick else 3):
        for name, command in infer.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            infer_times[name].append(time.perf_counter() - start)

    results = summarise(systems, infer_times, n, split, epochs, batch, threads, width, quick, configs)
    results["tflite_choice"] = chosen
    report = json.loads((unet_run / "export_report.json").read_text())
    results["export_agreement"] = {"int8 TFLite": report["agreement"],
                                   "int8 ONNX Runtime": report.get("onnx", {}).get("agreement"),
                                   "parity_examples": report["parity_examples"]}
    results.update({"load_start": load_start, "load_rounds": rounds, "load_end": loadavg(),
                    "seconds": time.time() - clock})
    write(results, Path(out), quick)
    return results


def _macs(config, width):
    from common.config import load_config
    from landslide.config import DEFAULTS
    from landslide.task import model_summary

    cfg = load_config(ROOT / "configs" / "landslide" / f"{config}.yaml", [f"model.width={width}"], defaults=DEFAULTS)
    return model_summary(cfg)["macs"]


def summarise(systems, infer_times, n, split, epochs, batch, threads, width, quick, configs):
    from common.bench import machine

    rows = []
    for system in systems:
        later = system.epochs[1:] or system.epochs
        train_s = _median([e["train_s"] for e in later])
        rows.append({
            "system": system.name,
            "precision": system.info.get("precision", "bf16" if "bf16" in system.name else "float32"),
            "params": system.info.get("params"),
            "train_s_median": train_s,
            "train_s_all": [round(e["train_s"], 2) for e in system.epochs],
            "val_s_median": _median([e["val_s"] for e in later]),
            "train_patches_per_s": len(split["train"]) / train_s,
            "loss": [round(e["loss"], 4) for e in system.epochs],
            "val_f1": [round(e["val_f1"], 3) for e in system.epochs],
            "load": [e["load"] for e in system.epochs],
        })
    by = {row["system"]: row for row in rows}
    macs = {config: _macs(config, width) for config in {*configs, "unet_ce"}}
    for config in configs:
        for row in rows:
            # The PyTorch replica is the same 5-level U-Net as unet_ce (17.27M against 17.28M parameters).
            if row["system"].startswith(config + " ") or (config == "unet_ce" and row["system"].startswith("pytorch")):
                row["gmacs"] = macs[config] / 1e9
                row["gmac_per_s"] = row["train_patches_per_s"] * macs[config] / 1e9
    infer = {name: {"median_s": _median(times), "all_s": [round(t, 2) for t in times]}
             for name, times in infer_times.items()}
    fp32 = by["pytorch float32"]["train_s_median"]
    bf16 = by.get("pytorch bf16 autocast", {}).get("train_s_median")  # absent without native bf16
    unet = by["unet_ce default (auto)"]["train_s_median"]
    tflite = infer["int8 TFLite (unet_ce)"]["median_s"]
    # The peer at its fastest setting on this machine (float32 on CPUs without native bf16).
    torch_train = min(t for t in (fp32, bf16) if t is not None)
    torch_infer = min(value["median_s"] for name, value in infer.items() if name.startswith("pytorch"))
    ratios = {
        "unet_ce_default_vs_torch_float32": fp32 / unet,
        "unet_ce_float32_vs_torch_float32": fp32 / by["unet_ce float32"]["train_s_median"],
        "tflite_int8_vs_torch_float32_inference": infer["pytorch float32"]["median_s"] / tflite,
        "unet_ce_default_vs_torch_fastest": torch_train / unet,
        "tflite_fastest_vs_torch_fastest_inference": torch_infer / infer["fastest TFLite (unet_ce)"]["median_s"],
        "onnx_int8_vs_torch_float32_inference": infer["pytorch float32"]["median_s"]
        / infer["int8 ONNX Runtime (unet_ce)"]["median_s"],
    }
    if "unet_ce float32, oneDNN off" in by:  # what setup_tensorflow's TF_ENABLE_ONEDNN_OPTS=1 buys here
        ratios["unet_ce_float32_onednn_vs_eigen"] = (by["unet_ce float32, oneDNN off"]["train_s_median"]
                                                     / by["unet_ce float32"]["train_s_median"])
    if "unet_ce float32, TensorFlow weight gradients" in by:  # train.weight_gradients auto (matmul) here
        ratios["unet_ce_float32_matmul_vs_tensorflow_weight_gradients"] = (
            by["unet_ce float32, TensorFlow weight gradients"]["train_s_median"] / by["unet_ce float32"]["train_s_median"])
    if bf16 is not None:
        ratios["unet_ce_default_vs_torch_bf16"] = bf16 / unet
        ratios["tflite_int8_vs_torch_bf16_inference"] = infer["pytorch bf16"]["median_s"] / tflite
    if "full" in configs:
        ratios["full_vs_unet_gmac_per_s"] = (by["full default (auto)"]["gmac_per_s"]
                                             / by["unet_ce default (auto)"]["gmac_per_s"])
    targets = {
        # Issue 27's bar on every x86 CPU, against the peer's fastest setting there.
        "unet_ce_default_vs_torch_fastest >= 1.2": ratios["unet_ce_default_vs_torch_fastest"] >= 1.2,
        "tflite_fastest_vs_torch_fastest_inference >= 2": ratios["tflite_fastest_vs_torch_fastest_inference"] >= 2.0,
    }
    if bf16 is not None:  # the bars set on a machine with native bf16
        targets["unet_ce_default_vs_torch_bf16 >= 1.2"] = ratios["unet_ce_default_vs_torch_bf16"] >= 1.2
        targets["unet_ce_default_vs_torch_float32 >= 2"] = ratios["unet_ce_default_vs_torch_float32"] >= 2.0
        targets["tflite_int8_vs_torch_bf16_inference >= 3"] = ratios["tflite_int8_vs_torch_bf16_inference"] >= 3.0
    if "full" in configs:
        targets["full_vs_unet_gmac_per_s >= 1"] = ratios["full_vs_unet_gmac_per_s"] >= 1.0
    return {"machine": machine(), "quick": quick, "patches": n, "train_patches": len(split["train"]),
            "val_patches": len(split["val"]), "epochs": epochs, "batch": batch, "threads": threads, "width": width,
            "rows": rows, "inference": infer, "ratios": ratios, "targets_met": targets}


def render(peer):
    from common.cpuinfo import cpu_line

    info = peer["machine"]
    cap = info.get("cpuid_cap")
    lines = [
        f"{SECTION}, as on an AVX2-only CPU (`make bench-peer CPU_CAP={cap}`)" if cap
        else f"{SECTION} (`make bench-peer`)",
        "",
        f"{info['date']}, {info['cpu']}, {info['cores']} cores, {peer['threads']} threads per system; "
        f"{peer['train_patches']} training + {peer['val_patches']} validation sample patches, batch {peer['batch']}, "
        f"{peer['epochs']} epochs per system, interleaved; width {peer['width']:g}{' (quick mode)' if peer['quick'] else ''}. "
        f"Load average (1 min) at start {peer['load_start'][0]}, at end {peer['load_end'][0]}. "
        "Training: median seconds of the training phase of epochs 2 and later (min-max in brackets);",
        "loss: mean training loss of the first and last epoch; F1: landslide F1 on the validation patches.",
        "",
        cpu_line(info),
        "",
        "| system | precision | train s/epoch | patches/s | GMAC/s | val s | loss first -> last | val F1 last |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in peer["rows"]:
        later = row["train_s_all"][1:] or row["train_s_all"]
        lines.append(
            f"| {row['system']} | {row['precision']} | {row['train_s_median']:.1f} ({min(later):.1f}-{max(later):.1f}) | "
            f"{row['train_patches_per_s']:.2f} | {row.get('gmac_per_s', float('nan')):.1f} | {row['val_s_median']:.1f} | "
            f"{row['loss'][0]:.3f} -> {row['loss'][-1]:.3f} | {row['val_f1'][-1]:.3f} |")
    lines += ["", cpu_line(info), "", f"Inference, whole process over {peer['patches']} patches (medians of {len(next(iter(peer['inference'].values()))['all_s'])} interleaved runs):", "",
              "| system | seconds | all runs |", "|---|---:|---|"]
    for name, value in peer["inference"].items():
        lines.append(f"| {name} | {value['median_s']:.1f} | {', '.join(f'{t:.1f}' for t in value['all_s'])} |")
    if peer.get("tflite_choice"):  # older results lack it
        lines += ["", f"`predict --tflite RUN` chose: {peer['tflite_choice']}"]
    if peer.get("export_agreement"):  # older results lack it
        agreement = peer["export_agreement"]
        lines += ["", f"Agreement with the Keras model at export ({agreement['parity_examples']} validation patches, "
                  "pixels on the same side of 0.5): "
                  + ", ".join(f"{name} {value:.4f}" for name, value in agreement.items()
                             if name != "parity_examples" and value is not None)
                  + "."]
    lines += ["", "| ratio | value | target met |", "|---|---:|---|"]
    names = {key.split(" ")[0]: key for key in peer["targets_met"]}
    for key, value in peer["ratios"].items():
        met = peer["targets_met"].get(names.get(key, ""), None)
        lines.append(f"| {key} | {value:.2f} | {'-' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines) + "\n"


def results_key(info):
    """Where a run's numbers go in results.json: "peer", or "peer_<level>" for a run under
    benchmarks/cpu_cap.c (`make bench-peer CPU_CAP=x86-64-v3`), so that both stay side by side."""
    from common.cpuinfo import level_suffix

    return f"peer{level_suffix(info)}"


def peer_sections(results):
    """The bench-peer results kept in `results` (results.json), uncapped first."""
    return [results[key] for key in sorted(key for key in results if key.startswith("peer"))]


def write(peer, out, quick):
    from benchmarks.run import keep_scale_section
    from benchmarks.scale import BEGIN as SCALE_BEGIN
    from common.io import write_json, write_text

    suffix = "_quick" if quick else ""
    path = out / f"results{suffix}.json"
    results = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    results[results_key(peer["machine"])] = peer
    write_json(path, results)
    md = out / f"RESULTS{suffix}.md"
    text = md.read_text() if md.is_file() else "# Benchmark results\n"
    text = text.split(SECTION)[0].split(SCALE_BEGIN)[0].rstrip() + "\n"
    text += "".join("\n" + render(section) for section in peer_sections(results))
    write_text(md, keep_scale_section(text, md))
    print(render(peer))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return project_worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/16 width, 20 patches, 2 epochs (a smoke run)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per system (default 4, quick 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=["unet_ce", "full"], choices=["unet_ce", "full"],
                        help="this project's configs beside the peer (default both)")
    parser.add_argument("--peer-precisions", nargs="+", choices=["float32", "bf16"], default=None,
                        help="PyTorch's settings (default: float32, and bf16 autocast where the CPU has native bf16)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = parser.parse_args(argv)
    run(quick=args.quick, epochs=args.epochs or None, threads=args.threads, out=Path(args.out), configs=args.configs,
        precisions=args.peer_precisions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
