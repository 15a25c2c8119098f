"""The `edge` target (the default): `model_int8.tflite`, int8 inside with float32 input and output,
for LiteRT on a phone or single-board computer CPU. Quantized by QAT, PTQ or the fallback
(`common.export.quantize`, `export.mode`)."""

from common.errors import ConfigError
from common.export.quantize import MODES, quantize_int8
from common.export.targets import SingleFileTarget, register


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


EDGE = register(EdgeTarget())
