"""TensorFlow Lite Micro: an int8-in, int8-out TFLite model checked in TFLM (the `mcu` target).

`export_mcu` turns a float Keras model into what a firmware build needs, or refuses it:

* `model_int8_mcu.tflite`: post-training full-integer quantization (`common.export.quantize.
  convert_full_integer`, calibrated on representative raw inputs) with int8 input and output
  tensors, so the device never converts floats at the model's edges. (The edge export's
  `model_int8.tflite`, float32 in and out, is left as it is.) Ops that TensorFlow Lite Micro (TFLM)
  runs only in float (`TFLM_FLOAT_ONLY_OPS`, e.g. SQRT, or any op whose int8 kernel TFLM refuses
  when the model is prepared) stay float between a DEQUANTIZE and a QUANTIZE; the report lists
  them (`float_ops`, `float_layers`).
* It runs in the TFLM Python interpreter (package `tflite-micro`, the same kernels as the C++
  library, reference kernels). An op TFLM has no kernel for at all is refused with
  `ExportError`: one line naming the TFLite operator and the Keras layer it came from, and
  nothing is written.
* The tensor arena is measured: the smallest arena (to 16 bytes) in which the model allocates
  and runs, on this 64-bit host. A 32-bit microcontroller needs a little less (TFLM's bookkeeping
  structs hold pointers); `arena_recommended_bytes` adds a 1 KB margin rounded up to whole KB.
* Parity: on held-out examples, TFLM's outputs (dequantized) are compared with the LiteRT run of
  the same file and with the float Keras model: decision agreement (argmax for classifiers, the
  0.5 threshold per pixel for a (H, W, 1) segmentation output) and largest absolute difference.
* `model_int8.cc` / `model_int8.h`: the model as a 16-byte-aligned C array with its length, the
  input/output shape, scale and zero point, the labels, the op list (for a
  `tflite::MicroMutableOpResolver`) and the arena size.
* Board fit (`targets`): for each target, whether the model fits its flash (model bytes +
  `RUNTIME_FLASH_BYTES` for the TFLM runtime and kernels) and its RAM (arena +
  `RESERVED_RAM_BYTES` for stack, firmware and I/O), or, on boards with PSRAM, whether the arena
  fits there.

Input quantization on the device: q = clamp(round(x / scale) + zero_point, -128, 127); a NaN
input becomes 0.0 first (so q = zero_point), which is what the landslide model's own NaN
replacement would do. Outputs: x = (q - zero_point) * scale.
"""

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from common.errors import ExportError
from common.export.carray import c_array
from common.export.parity import (
    closeness,
    examples,
    keras_outputs,
    one_line,
    run_litert,
    scores,
)
from common.export.quantize import convert_full_integer
from common.io import write_bytes, write_text

#: File names written by `export_mcu` (in `out_dir`).
MCU_TFLITE_NAME = "model_int8_mcu.tflite"
C_SOURCE_NAME = "model_int8.cc"
C_HEADER_NAME = "model_int8.h"
#: Prefix of the C symbols (`g_model_int8`, `MODEL_INT8_LEN`, ...).
C_SYMBOL = "model_int8"

#: Boards the report checks by default. RAM is on-chip SRAM; `psram_bytes` external RAM that can
#: hold the arena (slower); flash holds the model array and the firmware.
DEFAULT_TARGETS = (
    {"name": "cortex-m4", "description": "Cortex-M4 class (e.g. STM32F4, nRF52840)",
     "ram_bytes": 256 * 1024, "flash_bytes": 1024 * 1024, "psram_bytes": 0},
    {"name": "cortex-m7", "description": "Cortex-M7 class (e.g. STM32F7/H7, i.MX RT)",
     "ram_bytes": 512 * 1024, "flash_bytes": 2 * 1024 * 1024, "psram_bytes": 0},
    {"name": "esp32-s3", "description": "ESP32-S3 class, 512 KB SRAM + 8 MB PSRAM, 8 MB flash",
     "ram_bytes": 512 * 1024, "flash_bytes": 8 * 1024 * 1024, "psram_bytes": 8 * 1024 * 1024},
)
#: Flash taken by the TFLM runtime and the kernels of a small CNN (an estimate, bytes).
RUNTIME_FLASH_BYTES = 100_000
#: RAM kept for the stack, the rest of the firmware and the input buffer (bytes).
RESERVED_RAM_BYTES = 32 * 1024
#: TFLite ops that TFLM runs only in float: kept float from the start (saves a retry).
TFLM_FLOAT_ONLY_OPS = ("SQRT",)
#: Most held-out examples TFLM runs for parity (batch 1, reference kernels: slow on big inputs).
MCU_PARITY_EXAMPLES = 64
#: TFLM aborts the whole process (instead of failing to allocate) in an arena this small or
#: smaller (tflite-micro, measured with a Dense(16)-Dense(2) model): never tried.
TFLM_ABORT_BYTES = 1024
#: Largest arena tried, bytes.
MAX_ARENA_BYTES = 64 * 1024 * 1024
_FLOAT_RETRIES = 4
# TFLite op name -> tflite::MicroMutableOpResolver method where CamelCase of the name is wrong.
_RESOLVER_METHODS = {"BATCH_MATMUL": "AddBatchMatMul"}


# ---------------------------------------------------------------------------------------------
# The TFLM interpreter


class TFLMFailure(Exception):
    """TFLM refused or failed a model; `log` is what it printed."""

    def __init__(self, log):
        super().__init__(log)
        self.log = log


@contextlib.contextmanager
def _captured_stderr():
    """Redirect file descriptor 2 (where TFLM's C++ code prints) into a list of lines."""
    lines = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        import sys

        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def tflm_run(tflite, inputs, arena_size, allocations=False):
    """Run TFLM on int8 examples one by one.

    Args:
        tflite: model bytes. inputs: int8 array (N, *input_shape). arena_size: int, bytes.
        allocations: also return the lines of `print_allocations` after the first example.

    Returns:
        (int8 outputs (N, *output_shape), allocation lines).

    Raises:
        TFLMFailure: the model did not allocate or an invoke failed (with TFLM's log).
    """
    from tflite_micro.python.tflite_micro import runtime

    outputs = []
    with _captured_stderr() as log:
        try:
            interpreter = runtime.Interpreter.from_bytes(tflite, arena_size=int(arena_size))
            for i, example in enumerate(inputs):
                interpreter.set_input(example[None], 0)
                interpreter.invoke()
                outputs.append(np.array(interpreter.get_output(0))[0])
                if allocations and i == 0:
                    interpreter.print_allocations()
            failed = None
        except (RuntimeError, ValueError) as err:
            failed = err
    if failed is not None:
        raise TFLMFailure(log or [str(failed)])
    return np.stack(outputs), [line for line in log if "RecordingMicroAllocator" in line]


def measure_arena(tflite, example, upper=None):
    """Smallest tensor arena (bytes, to 16) in which TFLM allocates `tflite` and runs `example`.

    Args:
        tflite: model bytes. example: int8 array (1, *input_shape).
        upper: an arena size known to work (bytes), or None to find one.

    Raises:
        TFLMFailure: the model does not run in `MAX_ARENA_BYTES`.
    """
    def fits(size):
        if size <= TFLM_ABORT_BYTES:  # TFLM would abort the process, not report a failure
            return False
        try:
            tflm_run(tflite, example, size)
            return True
        except TFLMFailure:
            return False

    if upper is None:
        upper = 256 * 1024
        while not fits(upper):
            if upper >= MAX_ARENA_BYTES:
                tflm_run(tflite, example, MAX_ARENA_BYTES)  # raises with TFLM's log
            upper = min(upper * 4, MAX_ARENA_BYTES)
    low, high = 0, int(upper)
    while high - low > 16:
        middle = (low + high) // 2 // 16 * 16
        if middle <= low:
            break
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


# ---------------------------------------------------------------------------------------------
# The flatbuffer: ops, tensors, quantization


def model_ops(tflite):
    """The operators of TFLite model bytes in execution order (subgraph 0).

    Returns:
        list of dicts: index (the TFLM node number), op (builtin name, e.g. "CONV_2D"), dtype
        (numpy name of the first output's type, e.g. "int8"), tensor (that output's name).
    """
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = runtime.convert_bytearray_to_object(bytearray(tflite))
    graph = model.subgraphs[0]
    ops = []
    for index, op in enumerate(graph.operators or []):
        code = runtime.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        out = graph.tensors[op.outputs[0]] if op.outputs is not None and len(op.outputs) else None
        ops.append({
            "index": index,
            "op": names.get(code, f"BUILTIN_{code}"),
            "dtype": types.get(out.type, str(out.type)) if out is not None else "none",
            "tensor": out.name.decode() if out is not None and out.name else "",
        })
    return ops


def io_details(tflite):
    """(input, output) dicts: shape, dtype, scale, zero_point of the model's first input/output,
    read from the flatbuffer."""
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = runtime.convert_bytearray_to_object(bytearray(tflite)).subgraphs[0]
    result = []
    for index in (graph.inputs[0], graph.outputs[0]):
        tensor = graph.tensors[index]
        q = tensor.quantization
        scales = [] if q is None or q.scale is None else list(q.scale)
        zeros = [] if q is None or q.zeroPoint is None else list(q.zeroPoint)
        result.append({
            "shape": [int(v) for v in tensor.shape],
            "dtype": types.get(tensor.type, str(tensor.type)),
            "scale": float(scales[0]) if scales else 0.0,
            "zero_point": int(zeros[0]) if zeros else 0,
        })
    return result


def quantize_input(x, scale, zero_point):
    """Float raw inputs -> int8 as the firmware does it: NaN -> 0, round(x / scale) + zero_point."""
    x = np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize_output(q, scale, zero_point):
    """int8 outputs -> float: (q - zero_point) * scale."""
    return (np.asarray(q, np.float32) - zero_point) * scale


def layer_of(tensor_name, layer_names):
    """The Keras layer a converted tensor came from, read from its name, or None.

    TFLite tensor names are TensorFlow op paths such as `model/band_features/Sqrt` (fused ops
    join several with ';'); the first path part that is a layer name wins.
    """
    for part in tensor_name.split(";"):
        for component in part.split("/")[1:] or part.split("/"):
            if component in layer_names:
                return component
    return None


def _refusal(out_dir, op, layer, why):
    where = f"from Keras layer '{layer}'" if layer else "from no layer the export could name"
    return (f"{out_dir}: TFLite Micro cannot run operator {op} ({where}): {why}; "
            f"nothing written")


def _failed_op(log, ops):
    """(kind, op name, node index or None) of the failure in a TFLM log, or (None, None, None)."""
    text = "\n".join(log)
    missing = re.search(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", text)
    if missing:
        name = missing.group(1)
        index = next((o["index"] for o in ops if o["op"] == name), None)
        return "missing", name, index
    node = re.search(r"Node ([A-Z0-9_]+) \(number (\d+)\) failed to (prepare|invoke)", text)
    if node:
        return node.group(3), node.group(1), int(node.group(2))
    return None, None, None


# ---------------------------------------------------------------------------------------------
# C source


def _c_string(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def resolver_method(op):
    """The `tflite::MicroMutableOpResolver` method that registers TFLite op `op` ("CONV_2D" ->
    "AddConv2D")."""
    if op in _RESOLVER_METHODS:
        return _RESOLVER_METHODS[op]
    return "Add" + "".join(part.capitalize() if not part[0].isdigit() else part.upper()
                           for part in op.split("_"))


def c_sources(tflite, info, symbol=C_SYMBOL, source_name=MCU_TFLITE_NAME):
    """The text of `<symbol>.h` and `<symbol>.cc` for model bytes `tflite`.

    Args:
        tflite: bytes. info: dict with input, output (shape, scale, zero_point), labels (list or
            None), arena_bytes, ops (unique op names). symbol: C identifier prefix.

    Returns:
        (header text, source text).
    """
    labels = list(info.get("labels") or [])
    macro = symbol.upper()
    inp, out = info["input"], info["output"]
    label_items = ", ".join(_c_string(label) for label in labels) if labels else "0"
    array = c_array(f"alignas(16) const unsigned char g_{symbol}[]", [f"0x{b:02x}" for b in tflite], 12)
    source = f"""// Generated by common/export/tflm.py from {source_name}: do not edit.
#include "{symbol}.h"

const int g_{symbol}_input_shape[{macro}_INPUT_DIMS] = {{{", ".join(map(str, inp['shape']))}}};
const int g_{symbol}_output_shape[{macro}_OUTPUT_DIMS] = {{{", ".join(map(str, out['shape']))}}};
const char* const g_{symbol}_labels[{max(len(labels), 1)}] = {{{label_items}}};
const unsigned int g_{symbol}_len = {len(tflite)};
""" + "\n".join(array) + "\n"
    return _c_header(len(tflite), info, labels, symbol, source_name), source


def _c_header(size, info, labels, symbol, source_name):
    macro, guard = symbol.upper(), f"{symbol.upper()}_H_"
    inp, out, ops = info["input"], info["output"], list(info["ops"])
    resolver = " \\\n".join(f"    (resolver).{resolver_method(op)}();" for op in ops)
    return f"""// Generated by common/export/tflm.py from {source_name}: do not edit.
// int8 model for TensorFlow Lite Micro. Usage:
//   #include "{symbol}.h"
//   alignas(16) static uint8_t tensor_arena[{macro}_ARENA_SIZE];
//   const tflite::Model* model = tflite::GetModel(g_{symbol});
//   tflite::MicroMutableOpResolver<{macro}_NUM_OP_KINDS> resolver;
//   {macro}_ADD_OPS(resolver);
//   tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, {macro}_ARENA_SIZE);
//   interpreter.AllocateTensors();
//   int8_t* in = interpreter.input(0)->data.int8;   // q = round(x / INPUT_SCALE) + INPUT_ZERO_POINT
//   interpreter.Invoke();
//   int8_t* out = interpreter.output(0)->data.int8; // x = (q - OUTPUT_ZERO_POINT) * OUTPUT_SCALE
#ifndef {guard}
#define {guard}

#include <stdint.h>

#define {macro}_LEN {size}
// Smallest arena measured in the TFLM interpreter ({info['arena_bytes']} bytes on a 64-bit host)
// plus a margin; a 32-bit target needs a little less.
#define {macro}_ARENA_SIZE {info['arena_recommended_bytes']}
#define {macro}_INPUT_SCALE {inp['scale']!r}f
#define {macro}_INPUT_ZERO_POINT {inp['zero_point']}
#define {macro}_OUTPUT_SCALE {out['scale']!r}f
#define {macro}_OUTPUT_ZERO_POINT {out['zero_point']}
#define {macro}_INPUT_DIMS {len(inp['shape'])}
#define {macro}_OUTPUT_DIMS {len(out['shape'])}
#define {macro}_NUM_LABELS {len(labels)}
#define {macro}_NUM_OP_KINDS {len(ops)}
// Registers the {len(ops)} op kinds the model uses: {", ".join(ops)}.
#define {macro}_ADD_OPS(resolver) \\
{resolver}

extern const unsigned char g_{symbol}[];
extern const unsigned int g_{symbol}_len;
extern const int g_{symbol}_input_shape[{macro}_INPUT_DIMS];
extern const int g_{symbol}_output_shape[{macro}_OUTPUT_DIMS];
extern const char* const g_{symbol}_labels[{max(len(labels), 1)}];

#endif  // {guard}
"""


def parse_c_array(source, symbol=C_SYMBOL):
    """The bytes of the `g_<symbol>` array in C source text (what a compiler would see)."""
    match = re.search(rf"g_{symbol}\[\] = \{{(.*?)\}};", source, re.S)
    if not match:
        raise ValueError(f"no array g_{symbol} in the source")
    return bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", match.group(1)))


# ---------------------------------------------------------------------------------------------
# Board fit


def board_fit(flash_bytes, arena_bytes, targets=None):
    """Whether a model fits each target.

    Args:
        flash_bytes: model size in bytes (the C array lives in flash).
        arena_bytes: tensor arena in bytes.
        targets: list of dicts name, ram_bytes, flash_bytes, optional psram_bytes and
            description; None: `DEFAULT_TARGETS`.

    Returns:
        list of dicts: the target's fields plus flash_needed, ram_needed (bytes), fits_flash,
        arena_in ("sram", "psram" or None), fits (bool).
    """
    rows = []
    for target in DEFAULT_TARGETS if targets is None else targets:
        flash_needed = int(flash_bytes) + RUNTIME_FLASH_BYTES
        ram_needed = int(arena_bytes) + RESERVED_RAM_BYTES
        fits_flash = flash_needed <= int(target["flash_bytes"])
        if ram_needed <= int(target["ram_bytes"]):
            arena_in = "sram"
        elif int(arena_bytes) <= int(target.get("psram_bytes") or 0):
            arena_in = "psram"
        else:
            arena_in = None
        rows.append({**target, "flash_needed": flash_needed, "ram_needed": ram_needed,
                     "fits_flash": fits_flash, "arena_in": arena_in,
                     "fits": bool(fits_flash and arena_in is not None)})
    return rows


# ---------------------------------------------------------------------------------------------
# Conversion and check


def _convert_for_tflm(model, calibration, probe, out_dir, layer_names):
    """Convert, keeping float the ops TFLM has no int8 kernel for; refuse ops it lacks.

    Returns:
        (tflite bytes, float ops, generous arena size that worked).
    """
    float_ops = set(TFLM_FLOAT_ONLY_OPS)
    for _ in range(_FLOAT_RETRIES + 1):
        try:
            tflite = convert_full_integer(model, calibration, float_ops)
        except Exception as err:  # noqa: BLE001 - the converter raises many types
            raise ExportError(f"{out_dir}: full-integer TFLite conversion failed: {one_line(err)}; "
                              f"nothing written") from err
        ops = model_ops(tflite)
        io = io_details(tflite)
        arena = MAX_ARENA_BYTES
        try:
            tflm_run(tflite, quantize_input(probe, io[0]["scale"], io[0]["zero_point"]), arena)
            return tflite, sorted(float_ops), arena
        except TFLMFailure as failure:
            log = failure.log
            kind, name, index = _failed_op(log, ops)
        op = ops[index] if index is not None and index < len(ops) else None
        layer = layer_of(op["tensor"], layer_names) if op else None
        if kind == "missing":
            raise ExportError(_refusal(out_dir, name, layer, "TFLM has no kernel for it"))
        if kind is None:
            last = next((line for line in reversed(log) if line.strip()), "no message")
            if "allocate" in last.lower() or "arena" in last.lower():
                break
            raise ExportError(f"{out_dir}: TFLite Micro failed to run the model: {last.strip()}; nothing written")
        if op is not None and op["dtype"] != "float32" and name not in float_ops:
            float_ops.add(name)  # an int8 kernel TFLM lacks: keep the op float and convert again
            continue
        raise ExportError(_refusal(out_dir, name, layer, f"its kernel failed to {kind} ({op['dtype'] if op else '?'})"))
    raise ExportError(f"{out_dir}: TFLite Micro could not run the model in {MAX_ARENA_BYTES} bytes of arena "
                      f"(float ops kept: {sorted(float_ops)}); nothing written")




def convert_mcu(model, calibration, parity_x, where):
    """The fully integer model TFLM runs: converted, op list, input/output quantization, arena.

    Args:
        model: tf_keras float32 model. calibration: float array (N, *input_shape), every example
            calibrates. parity_x: float array (M, *input_shape) (the first probes TFLM).
        where: the output folder, named in errors.

    Returns:
        dict: tflite (bytes), float_ops (asked to stay float), ops (see `model_ops`), input,
        output (see `io_details`), arena_bytes (smallest measured), arena_upper (one that ran).

    Raises:
        ExportError: the conversion failed, TFLM lacks an operator, or the model is not int8 at
            its edges.
    """
    layer_names = {layer.name for layer in model.layers}
    tflite, float_ops, arena_upper = _convert_for_tflm(model, calibration, parity_x[:1], where, layer_names)
    inp, out = io_details(tflite)
    if inp["dtype"] != "int8" or out["dtype"] != "int8":
        raise ExportError(f"{where}: the converter gave {inp['dtype']} input / {out['dtype']} output, "
                          f"expected int8; nothing written")
    arena = measure_arena(tflite, quantize_input(parity_x[:1], inp["scale"], inp["zero_point"]), upper=arena_upper)
    return {"tflite": tflite, "float_ops": float_ops, "ops": model_ops(tflite), "input": inp, "output": out,
            "arena_bytes": int(arena), "arena_upper": arena_upper, "layer_names": layer_names}


def check_mcu(model, mcu, parity_x, labels, scorer, tflite_path, num_threads=1):
    """Parity of the TFLM model `mcu` (from `convert_mcu`, its file at `tflite_path`) with the
    Keras model and with LiteRT on the same file. Returns the report's `mcu` section (paths aside):
    flash_bytes, arena_bytes, arena_recommended_bytes, ops, float_ops, float_layers, input, output,
    parity_examples, agreement_keras, max/mean_abs_diff_keras, agreement_litert,
    max_abs_diff_litert, max_step_diff_litert, metric_name, keras_metric, mcu_metric, targets."""
    from importlib.metadata import version

    inp, out, ops = mcu["input"], mcu["output"], mcu["ops"]
    tflm_q, allocation_log = tflm_run(mcu["tflite"], quantize_input(parity_x, inp["scale"], inp["zero_point"]),
                                      mcu["arena_upper"], allocations=True)
    tflm_out = dequantize_output(tflm_q, out["scale"], out["zero_point"])
    keras_out = keras_outputs(model, parity_x, batch_size=16)
    litert_out = run_litert(tflite_path, np.nan_to_num(parity_x, nan=0.0), num_threads)["outputs"]
    keras_close, litert_close = closeness(keras_out, tflm_out), closeness(litert_out, tflm_out)
    found = scores(scorer, labels, keras_out, tflm_out)
    arena = mcu["arena_bytes"]
    return {
        "flash_bytes": len(mcu["tflite"]), "arena_bytes": arena,
        "arena_recommended_bytes": arena_recommended(arena), "arena_allocations": allocation_log,
        "ops": sorted({o["op"] for o in ops}), "op_count": len(ops),
        "float_ops": sorted({o["op"] for o in ops if o["dtype"] == "float32"} - {"DEQUANTIZE", "QUANTIZE"}),
        "float_ops_requested": mcu["float_ops"],
        "float_layers": sorted({layer_of(o["tensor"], mcu["layer_names"]) or o["tensor"] for o in ops
                                if o["dtype"] == "float32" and o["op"] not in ("DEQUANTIZE", "QUANTIZE")}),
        "input": inp, "output": out, "input_nan": "NaN inputs are quantized as 0.0 (the zero point)",
        "parity_examples": len(parity_x),
        "agreement_keras": keras_close["agreement"], "max_abs_diff_keras": keras_close["max_abs_diff"],
        "mean_abs_diff_keras": keras_close["mean_abs_diff"], "agreement_litert": litert_close["agreement"],
        "max_abs_diff_litert": litert_close["max_abs_diff"],
        "max_step_diff_litert": int(np.max(np.round(np.abs(litert_out - tflm_out) / out["scale"]))),
        "metric_name": scorer.metric_name, "keras_metric": found["keras_metric"], "mcu_metric": found["tflite_metric"],
        "targets": board_fit(len(mcu["tflite"]), arena), "runtime": f"tflite-micro {version('tflite-micro')}",
    }


def arena_recommended(arena_bytes):
    """The arena a firmware should reserve: the measured one plus 1 KB, rounded up to whole KB."""
    return (int(arena_bytes) + 1024 + 1023) // 1024 * 1024


def write_mcu_files(mcu, labels, folder):
    """Write `model_int8_mcu.tflite`, `model_int8.cc` and `model_int8.h` (the C array with the
    labels, op list and arena) of `mcu` (see `convert_mcu`) into `folder`."""
    folder = Path(folder)
    info = {"input": mcu["input"], "output": mcu["output"], "labels": labels,
            "ops": sorted({o["op"] for o in mcu["ops"]}), "arena_bytes": mcu["arena_bytes"],
            "arena_recommended_bytes": arena_recommended(mcu["arena_bytes"])}
    header, source = c_sources(mcu["tflite"], info)
    write_bytes(folder / MCU_TFLITE_NAME, mcu["tflite"])
    write_text(folder / C_HEADER_NAME, header)
    write_text(folder / C_SOURCE_NAME, source)


def export_mcu(model, calibration, out_dir, *, heldout=None, heldout_labels=None, scorer=None, labels=None,
               parity_examples=MCU_PARITY_EXAMPLES, num_threads=1):
    """Export `model` for a microcontroller into `out_dir` (library use; the command line's
    `export --target mcu` goes through `common.export.mcu`): int8 TFLite checked in TFLM, C array.

    Args:
        model: tf_keras float32 model taking the raw input.
        calibration: array (N, *input_shape) or tf.data.Dataset of raw inputs; every example
            calibrates. heldout: inputs for parity (first `parity_examples`); None: calibration.
        heldout_labels: labels of `heldout` for the scorer. scorer: common.export.parity.Scorer.
        labels: list of class names (written into the C source).

    Returns:
        The `mcu` section (see `check_mcu`) with path, c_source, c_header, seconds.

    Raises:
        ExportError: the conversion failed or TFLM lacks an operator; nothing is written then.
    """
    from common.export.parity import Scorer

    out_dir, started = Path(out_dir), time.perf_counter()
    calib = examples(calibration, None, "calibration")
    parity_x = examples(calibration if heldout is None else heldout, int(parity_examples), "heldout")
    mcu = convert_mcu(model, calib, parity_x, out_dir)
    converted = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcu-") as folder:
        path = Path(folder) / MCU_TFLITE_NAME
        path.write_bytes(mcu["tflite"])
        section = check_mcu(model, mcu, parity_x, heldout_labels, scorer or Scorer(), path, num_threads)
    write_mcu_files(mcu, labels, out_dir)
    section.update(path=str(out_dir / MCU_TFLITE_NAME), c_source=str(out_dir / C_SOURCE_NAME),
                   c_header=str(out_dir / C_HEADER_NAME),
                   seconds={"convert": round(converted - started, 2), "check": round(time.perf_counter() - converted, 2)})
    return section
