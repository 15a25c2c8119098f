"""The `edge` target (the default): `model_int8.tflite`, int8 inside with float32 input and output,
for LiteRT on a phone or single-board computer CPU. Quantized by QAT, PTQ or the fallback
(`common.export.quantize`, `export.mode`).

Beside it, for host CPUs, `model_int8.onnx`: the same int8 model for ONNX Runtime
(common.export.to_onnx), which runs int8 convolutions faster than LiteRT on x86 CPUs without
AVX-512 VNNI. `export.onnx`: auto (written when every operator converts and it agrees with Keras
as well as the .tflite, within ONNX_AGREEMENT_MARGIN; the report's `onnx` section says why
not otherwise), true (the export fails without it), false (never; an earlier copy goes).
`predict --tflite RUN` runs it only where it times fastest (common.tflite_choice)."""

from pathlib import Path

from common.errors import ConfigError, ExportError
from common.export.quantize import MODES, quantize_int8
from common.export.targets import SingleFileTarget, register
from common.io import write_bytes, write_json
from common.tflite_runtime import front_path

#: How much lower than the .tflite's agreement with Keras the ONNX copy's may be (`auto` keeps it).
ONNX_AGREEMENT_MARGIN = 0.01


class EdgeTarget(SingleFileTarget):
    name = "edge"
    description = "int8 weights and activations, float32 input and output (QAT, PTQ or the fallback)"
    device = "phones, Raspberry Pi, Coral-class boards: LiteRT on the CPU (XNNPACK)"
    file_names = ("model_int8.tflite",)
    report_file = "export_report.json"

    def check(self, settings):
        if settings.get("mode", "auto") not in MODES:
            raise ConfigError(f"config key 'export.mode': expected one of {', '.join(MODES)}, "
                              f"got {settings.get('mode')!r}")
        onnx_setting(settings)

    def convert_bytes(self, job):
        where = job.out_dir / self.main_file(job)
        quantized = quantize_int8(job.model, job.calibration, job.heldout, mode=job.settings.get("mode", "auto"),
                                  qat=job.qat, num_threads=int(job.settings.get("num_threads", 2)), where=where)
        return quantized.tflite, {**quantized.report(), "mode": job.settings.get("mode", "auto")}

    def convert(self, job, staging):
        """The .tflite, beside it the host front's settings when the model's front runs on the
        host (`ExportJob.host_front`; an earlier export's front file goes otherwise), and the ONNX
        copy (`stage_onnx`)."""
        from common.export.report import file_sha256

        converted = super().convert(job, staging)
        front_name = front_path(converted["name"]).name
        if job.host_front is None:
            staging.remove_on_commit(front_name)
        else:
            write_json(staging.path(front_name), {**job.host_front, "model_file": converted["name"],
                                                  "model_sha256": file_sha256(converted["staged"])})
        converted["host_front"] = job.host_front is not None
        return {**converted, "onnx": stage_onnx(job, converted, staging)}

    def verify(self, job, converted, report):
        from common.export.parity import keras_outputs

        keras_out = keras_outputs(job.model, job.heldout)
        self.verify_file(job, converted, report, keras_out)
        report.update(onnx=verify_onnx(job, converted["onnx"], report, keras_out))


def onnx_setting(settings):
    """`export.onnx` as "auto", "true" or "false" (YAML booleans arrive as strings or bools)."""
    value = str(settings.get("onnx", "auto")).lower()
    if value not in ("auto", "true", "false"):
        raise ConfigError(f"config key 'export.onnx': expected auto, true or false, got {settings.get('onnx')!r}")
    return value


def _refuse_or_skip(setting, staging, name, why):
    """Without an ONNX copy: an error when `export.onnx` is true, else the report's reason."""
    if setting == "true":
        raise ExportError(f"{staging.out_dir / name}: not written ({why}); export.onnx is true")
    staging.remove_on_commit(name)
    return {"written": False, "why": why}


def stage_onnx(job, converted, staging):
    """Convert the staged .tflite to ONNX into `staging`; returns {"staged": path, "info": ...} or
    the report section saying why there is none."""
    from common.export.parity import one_line
    from common.export.report import file_sha256
    from common.export.to_onnx import NotConvertible, convert_tflite

    onnx_name = Path(converted["name"]).with_suffix(".onnx").name  # model_int8.onnx in a run
    setting = onnx_setting(job.settings)
    if setting == "false":
        staging.remove_on_commit(onnx_name)
        return {"written": False, "why": "export.onnx is false"}
    if converted["host_front"]:
        return _refuse_or_skip(setting, staging, onnx_name, "the model's input front runs on the host")
    try:
        onnx_bytes, info = convert_tflite(converted["staged"].read_bytes(), file_sha256(converted["staged"]))
    except NotConvertible as err:
        return _refuse_or_skip(setting, staging, onnx_name, str(err))
    except Exception as err:  # noqa: BLE001 - a converter fault must not cost the device file
        return _refuse_or_skip(setting, staging, onnx_name, f"the conversion failed ({one_line(err)})")
    write_bytes(staging.path(onnx_name), onnx_bytes)
    return {"staged": staging.path(onnx_name), "name": onnx_name, "info": info, "setting": setting,
            "staging": staging}


def verify_onnx(job, staged, report, keras_out):
    """Run the staged ONNX copy on the parity examples beside Keras; keep it only when it agrees
    with Keras within ONNX_AGREEMENT_MARGIN of the .tflite (`report["agreement"]`). Returns the
    report's `onnx` section."""
    import time

    from common.export.parity import closeness, one_line, scores
    from common.export.report import file_sha256
    from common.onnx_runtime import OnnxModel

    if "staged" not in staged:
        return staged
    started = time.perf_counter()
    try:
        runtime = OnnxModel(staged["staged"], num_threads=int(job.settings.get("num_threads", 2)))
        outputs = runtime.predict(job.heldout, batch_size=8)
    except Exception as err:  # noqa: BLE001 - ONNX Runtime refusing the copy must not cost the device file
        staged["staged"].unlink()
        return _refuse_or_skip(staged["setting"], staged["staging"], staged["name"],
                               f"ONNX Runtime could not run it ({one_line(err)})")
    close = closeness(keras_out, outputs)
    metrics = scores(job.scorer, job.heldout_labels, keras_out, outputs)
    section = {"path": str(job.out_dir / staged["name"]), "bytes": staged["staged"].stat().st_size,
               "sha256": file_sha256(staged["staged"]), "runtime": "onnxruntime", **staged["info"],
               "agreement": close["agreement"], "max_abs_diff": close["max_abs_diff"],
               "mean_abs_diff": close["mean_abs_diff"], "metric": metrics["tflite_metric"],
               "latency_ms": runtime.latency_ms(job.heldout[0]),
               "parity_seconds": round(time.perf_counter() - started, 2)}
    floor = report["agreement"] - ONNX_AGREEMENT_MARGIN
    if close["agreement"] < floor:
        staged["staged"].unlink()
        return {**section, **_refuse_or_skip(
            staged["setting"], staged["staging"], staged["name"],
            f"agreement with Keras {close['agreement']:.3f}, under the .tflite's {report['agreement']:.3f} "
            f"less {ONNX_AGREEMENT_MARGIN}")}
    return {**section, "written": True}


EDGE = register(EdgeTarget())
