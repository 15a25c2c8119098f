"""The CPU this process runs on: model name, the instruction-set features that decide how fast
TensorFlow (oneDNN) and LiteRT (XNNPACK) run, and the cores. No TensorFlow: the edge predict path
uses it too (`common.tflite_choice` keys its cache on it).

Speed numbers depend on these features (issue 27): int8 TFLite was 4-5x PyTorch float32 on an
AVX-512 VNNI machine and no faster on an AVX2-only one; bfloat16 training is native only with
AVX-512 BF16 or AMX. So every benchmark output records `cpu_info()` and every generated speed
table names its CPU with `cpu_line`.

Example:
    >>> info = cpu_info()
    >>> cpu_line(info)
    'CPU: AMD EPYC, 2 cores; avx2 fma avx512f avx512_vnni avx512_bf16 avx_vnni'
"""

import os
import platform

#: The /proc/cpuinfo flags that matter to this project's kernels, in the order they are printed:
#: AVX2/FMA (every x86 server since 2013), AVX-512 (oneDNN's and XNNPACK's wide kernels), VNNI
#: (int8 dot products: XNNPACK's fast int8 convolutions), BF16 and AMX (native bfloat16 training).
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
            "amx_bf16")

#: Of FEATURES, those CPUID still reports under benchmarks/cpu_cap.c, which sets CPUID_CAP to the
#: level it caps the CPU to (x86-64-v3: AVX2 and FMA, nothing of AVX-512, VNNI, BF16 or AMX).
#: /proc/cpuinfo still lists the real flags there; the kernels see only these.
CAPPED_FEATURES = {"x86-64-v3": ("avx2", "fma")}

# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA caps the kernels it dispatches) that include bfloat16
# dot products; any other cap makes oneDNN emulate bfloat16, which is slower than float32.
_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
              "AVX10_2_512_AMX_2", "ALL", "DEFAULT"}


def read_cpuinfo(text):
    """(model name or None, set of flags) of the first processor in /proc/cpuinfo's `text`."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if model is not None and flags:
            break
    return model, flags


def cpu_info(path="/proc/cpuinfo", environ=None):
    """What this machine's CPU offers.

    Args:
        path: the cpuinfo file (Linux); elsewhere `platform.processor()` names the CPU and no
            flags are known. environ: the environment (default os.environ), read for
            ONEDNN_MAX_CPU_ISA.

    Returns:
        dict: "cpu" (model name), "cores" (logical CPUs this process may use), "cpu_flags" (the
        FEATURES present, in FEATURES' order; None when unknown), "onednn_max_cpu_isa" (the cap
        set in the environment, or None).
    """
    environ = os.environ if environ is None else environ
    try:
        with open(path) as handle:
            model, flags = read_cpuinfo(handle.read())
        found = [flag for flag in FEATURES if flag in flags]
    except OSError:
        model, found = None, None
    cpuid_cap = environ.get("CPUID_CAP") if "cpu_cap" in environ.get("LD_PRELOAD", "") else None
    if cpuid_cap and found is not None:
        found = [flag for flag in found if flag in CAPPED_FEATURES.get(cpuid_cap, ())]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count()
    return {
        "cpu": model or platform.processor() or platform.machine() or "unknown CPU",
        "cores": cores,
        "cpu_flags": found,
        "onednn_max_cpu_isa": environ.get("ONEDNN_MAX_CPU_ISA") or None,
        "cpuid_cap": cpuid_cap,
    }


# oneDNN caps at or above AVX512_CORE (and AVX2_VNNI_2, which has bfloat16 conversions): the ISAs
# with which oneDNN has bfloat16 kernels at all (emulated below AVX512_CORE_BF16).
_BF16_KERNEL_ISAS = _BF16_ISAS | {"AVX512_CORE", "AVX512_CORE_VNNI", "AVX2_VNNI_2"}


def bf16_kernels(info):
    """(True/False, why): whether oneDNN has bfloat16 convolutions at all on the CPU of `info`
    (cpu_info()), native or emulated: it needs AVX-512 (measured: under ONEDNN_MAX_CPU_ISA=AVX2 a
    bfloat16 Conv2D fails with "could not create a primitive descriptor"; AVX512_CORE runs it)."""
    flags = info.get("cpu_flags")
    if flags is not None and "avx512f" not in flags:
        return False, "a CPU without AVX-512"
    cap = info.get("onednn_max_cpu_isa")
    if cap and cap.upper() not in _BF16_KERNEL_ISAS:
        return False, f"ONEDNN_MAX_CPU_ISA={cap}"
    return True, "AVX-512"


def native_bf16(info):
    """(True/False, why): whether oneDNN computes bfloat16 natively on the CPU of `info`
    (cpu_info()): the CPU has AVX-512 BF16 or AMX and ONEDNN_MAX_CPU_ISA, if set, allows it."""
    found = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in (info.get("cpu_flags") or ())]
    if not found:
        return False, "CPU without AVX-512 BF16 or AMX"
    cap = info.get("onednn_max_cpu_isa")
    if cap and cap.upper() not in _BF16_ISAS:
        return False, f"CPU with {', '.join(found)}, but ONEDNN_MAX_CPU_ISA={cap} leaves them unused"
    return True, f"CPU with {', '.join(found)}"


def slow_weight_gradient_kernel(info, machine=None):
    """(True/False, why): whether TensorFlow's convolution weight-gradient kernel is the slow one on
    the CPU of `info` (cpu_info()): x86-64 without AVX-512, where oneDNN's NHWC kernel runs at half
    the forward speed (common/weight_gradients.py). `machine`: platform.machine() by default."""
    machine = machine or platform.machine()
    if machine.lower() not in ("x86_64", "amd64"):
        return False, f"a CPU of type {machine}"
    flags = info.get("cpu_flags")
    if flags is None:
        return False, "CPU flags unknown"
    if "avx512f" in flags:
        return False, "a CPU with AVX-512"
    return True, "an x86-64 CPU without AVX-512"


def level_suffix(info):
    """"_x86-64-v3" for a run under benchmarks/cpu_cap.c, "" otherwise: benchmark files made as on
    another CPU level keep their own names beside the machine's own."""
    return f"_{info['cpuid_cap']}" if info.get("cpuid_cap") else ""


def cpu_line(info):
    """One line naming the CPU of a benchmark output's `machine` record (cpu_info() keys; an
    older record without flags gives the name and cores only), printed above its tables."""
    line = f"CPU: {info.get('cpu', 'unknown CPU')}, {info.get('cores', '?')} cores"
    flags = info.get("cpu_flags")
    if flags is not None:
        line += "; " + (" ".join(flags) if flags else "none of " + "/".join(FEATURES[:3]))
    if info.get("onednn_max_cpu_isa"):
        line += f"; oneDNN capped at {info['onednn_max_cpu_isa']}"
    if info.get("cpuid_cap"):
        line += f"; CPUID capped to {info['cpuid_cap']} (benchmarks/cpu_cap.c)"
    return line
