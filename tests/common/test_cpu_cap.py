"""benchmarks/cpu_cap.c: a program run under it sees an x86-64-v3 CPU (AVX2, no AVX-512) through
CPUID itself, as numpy's, XNNPACK's and oneDNN's kernel dispatch do; other faults still end it."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from numpy._core._multiarray_umath import __cpu_features__ as seen
from common.cpuinfo import cpu_info
print(json.dumps({"avx2": seen["AVX2"], "avx512f": seen["AVX512F"], "vnni": seen["AVX512VNNI"],
                  "info": cpu_info()}))
"""


@pytest.fixture(scope="module")
def cap_library(tmp_path_factory):
    if platform.machine().lower() not in ("x86_64", "amd64") or not sys.platform.startswith("linux"):
        pytest.skip("CPUID and its faulting are x86-64 Linux's")
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    library = tmp_path_factory.mktemp("cap") / "cpu_cap.so"
    subprocess.run([compiler, "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(library),
                    str(ROOT / "benchmarks" / "cpu_cap.c"), "-ldl"], check=True)
    return library


def _run(code, library):
    env = {**os.environ, "LD_PRELOAD": str(library)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_cpuid_reports_x86_64_v3(cap_library):
    with open("/proc/cpuinfo") as handle:
        cpuid_can_fault = "cpuid_fault" in handle.read().split()
    result = _run(PROBE, cap_library)
    if not cpuid_can_fault:  # it refuses to run uncapped rather than give uncapped numbers
        assert result.returncode == 2 and "cannot make CPUID fault" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    import json

    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["avx512f"] is False and seen["vnni"] is False
    with open("/proc/cpuinfo") as handle:
        assert seen["avx2"] == ("avx2" in handle.read().split())
    assert seen["info"]["cpuid_cap"] == "x86-64-v3"
    assert set(seen["info"]["cpu_flags"]) <= {"avx2", "fma"}

    # A real fault still ends the program, through Python's own handler (faulthandler) first.
    crash = _run("import faulthandler, ctypes; faulthandler.enable(); ctypes.string_at(0)", cap_library)
    assert crash.returncode == -11 and "Segmentation fault" in crash.stderr


def test_tensorflow_uses_onednn_on_an_avx2_only_cpu(cap_library):
    # TensorFlow turns oneDNN on by itself only with AVX-512 VNNI/BF16/AMX; setup_tensorflow turns
    # it on on every x86-64 CPU (its Eigen kernels train slower there), and a user's choice stands.
    from common.cli import onednn_by_default

    assert onednn_by_default("x86_64") and onednn_by_default("AMD64") and not onednn_by_default("aarch64")
    probe = ("import os; from common.cli import setup_tensorflow; setup_tensorflow()\n"
             "from tensorflow.python.util import _pywrap_util_port as port\n"
             "print(port.IsMklEnabled(), os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            env={**env, "LD_PRELOAD": str(cap_library), "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode == 2 and "cannot make CPUID fault" in result.stderr:
        pytest.skip("CPUID cannot fault on this machine")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["True", "1"]
