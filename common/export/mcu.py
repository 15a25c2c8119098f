"""The `mcu` target: the edge export plus a fully integer model for TensorFlow Lite Micro
(`model_int8_mcu.tflite`, int8 input and output, checked in the TFLM interpreter), its C array
(`model_int8.cc` / `.h`), the measured arena, board fit, and the task's firmware front end
(`Task.write_frontend`). A current edge export (same model file, same export settings, same
`model_int8.tflite`) is reused, not redone; the report says so (`edge_reused`)."""

from common.export.edge import EDGE
from common.export.report import file_sha256
from common.export.targets import Target, register
from common.export.tflm import (
    C_HEADER_NAME,
    C_SOURCE_NAME,
    MCU_PARITY_EXAMPLES,
    MCU_TFLITE_NAME,
    check_mcu,
    convert_mcu,
    write_mcu_files,
)

# Report keys that describe an export run, not the edge model: not carried over on reuse.
_RUN_KEYS = ("mcu", "files", "target", "edge_reused")


def current_edge(job):
    """The edge part of the report of a current edge export in `job.out_dir`, or None.

    Current: the earlier report was made from the same model file with the same export settings
    (`job.fingerprint`), and its `model_int8.tflite` still has the bytes that report measured.
    """
    previous = job.previous or {}
    if job.fingerprint is None or previous.get("fingerprint") != job.fingerprint:
        return None
    if previous.get("target") not in ("edge", "mcu") or not previous.get("sha256"):
        return None
    if file_sha256(job.out_dir / EDGE.main_file(job)) != previous["sha256"]:
        return None
    return {key: value for key, value in previous.items() if key not in _RUN_KEYS}


class McuTarget(Target):
    name = "mcu"
    description = "the edge file, plus int8 input and output for TFLite Micro, its C array and arena"
    device = "microcontrollers (Cortex-M4/M7, ESP32-S3): TFLite Micro in a firmware build"
    file_names = (*EDGE.file_names, MCU_TFLITE_NAME, C_SOURCE_NAME, C_HEADER_NAME)
    report_file = "export_report.json"

    def check(self, settings):
        EDGE.check(settings)

    def convert(self, job, staging):
        reused = current_edge(job)
        edge = None if reused is not None else EDGE.convert(job, staging)
        mcu = convert_mcu(job.model, job.calibration, job.heldout[:MCU_PARITY_EXAMPLES], job.out_dir)
        write_mcu_files(mcu, job.labels, staging.folder)
        return {"reused": reused, "edge": edge, "mcu": mcu, "staging": staging}

    def verify(self, job, converted, report):
        if converted["reused"] is not None:
            report.update(converted["reused"], edge_reused=True)
        else:
            EDGE.verify(job, converted["edge"], report)
            report.update(edge_reused=False)
        staging, mcu = converted["staging"], converted["mcu"]
        section = check_mcu(job.model, mcu, job.heldout[:MCU_PARITY_EXAMPLES], job.heldout_labels, job.scorer,
                            staging.path(MCU_TFLITE_NAME))
        section.update(path=str(job.out_dir / MCU_TFLITE_NAME), c_source=str(job.out_dir / C_SOURCE_NAME),
                       c_header=str(job.out_dir / C_HEADER_NAME))
        if job.frontend is not None:
            frontend = job.frontend(staging.folder, section)
            if frontend:
                section["frontend"] = frontend
        report.update(mcu=section)


MCU = register(McuTarget())
