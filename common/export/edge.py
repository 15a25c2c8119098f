"""The `edge` target (the default): `model_int8.tflite`, int8 inside with float32 input and output,
for LiteRT on a phone or single-board computer CPU. Quantized by QAT, PTQ or the fallback
(`common.export.quantize`, `export.mode`)."""

from common.errors import ConfigError
from common.export.quantize import MODES, quantize_int8
from common.export.targets import SingleFileTarget, register
from common.io import write_json
from common.tflite_runtime import front_path


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

    def convert_bytes(self, job):
        where = job.out_dir / self.main_file(job)
        quantized = quantize_int8(job.model, job.calibration, job.heldout, mode=job.settings.get("mode", "auto"),
                                  qat=job.qat, num_threads=int(job.settings.get("num_threads", 2)), where=where)
        return quantized.tflite, {**quantized.report(), "mode": job.settings.get("mode", "auto")}

    def convert(self, job, staging):
        """The .tflite, and beside it the host front's settings when the model's front runs on the
        host (`ExportJob.host_front`); an earlier export's front file goes otherwise."""
        from common.export.report import file_sha256

        converted = super().convert(job, staging)
        front_name = front_path(converted["name"]).name
        if job.host_front is None:
            staging.remove_on_commit(front_name)
        else:
            write_json(staging.path(front_name), {**job.host_front, "model_file": converted["name"],
                                                  "model_sha256": file_sha256(converted["staged"])})
        return {**converted, "host_front": job.host_front is not None}


EDGE = register(EdgeTarget())
