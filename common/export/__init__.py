"""Export: a trained Keras model -> the files a device runs, checked against the model.

    targets.py   the Target interface, the registry (TARGETS), ExportJob, staging, run_export
    edge.py      `edge`: int8 LiteRT, float32 in/out (the default)
    gpu.py       `gpu`: float16 weights for LiteRT's GPU delegate
    weights8.py  `weights8`: int8 weights, float activations (dynamic range)
    mcu.py       `mcu`: edge + fully integer TFLite Micro model, C array, arena (tflm.py)
    quantize.py  the int8 choice: QAT, PTQ, fallback (graph.py inlines nested models)
    parity.py    parity and metrics against Keras, the one parity limit
    report.py    ExportReport, written once per export
    carray.py    the one C-array writer

Importing this package imports no TensorFlow: the command line reads the registry to check
`--target` before TensorFlow starts. See docs/export.md.
"""

from common.export import edge, gpu, mcu, weights8  # noqa: F401 - registers the built-in targets
from common.export.api import export_tflite
from common.export.parity import PARITY_EXAMPLES, Scorer, prediction_agreement
from common.export.quantize import convert_full_integer
from common.export.report import REPORT_KEYS, ExportReport
from common.export.targets import (
    TARGETS,
    ExportJob,
    Target,
    get_target,
    register,
    run_export,
    target_names,
)

__all__ = [
    "PARITY_EXAMPLES", "REPORT_KEYS", "TARGETS", "ExportJob", "ExportReport", "Scorer", "Target",
    "convert_full_integer", "export_tflite", "get_target", "prediction_agreement", "register", "run_export",
    "target_names",
]
