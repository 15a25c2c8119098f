"""common.cpuinfo: the CPU's name, features and cores, read from /proc/cpuinfo's format."""

from common.cpuinfo import FEATURES, bf16_kernels, cpu_info, cpu_line, native_bf16, read_cpuinfo

# Two processors of an AVX2-only machine (no AVX-512, no VNNI), as Linux prints them (abridged).
AVX2_ONLY = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi1 bmi2

processor\t: 1
model name\t: Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi1 bmi2
"""
SAPPHIRE = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16 avx_vnni
"""


def test_avx2_only_machine(tmp_path):
    (tmp_path / "cpuinfo").write_text(AVX2_ONLY)
    info = cpu_info(tmp_path / "cpuinfo", environ={})
    assert info["cpu"] == "Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz"
    assert info["cpu_flags"] == ["avx2", "fma"] and info["onednn_max_cpu_isa"] is None
    assert info["cores"] >= 1
    assert native_bf16(info) == (False, "CPU without AVX-512 BF16 or AMX")
    assert bf16_kernels(info) == (False, "a CPU without AVX-512")  # not even emulated
    assert cpu_line(info) == f"CPU: Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz, {info['cores']} cores; avx2 fma"


def test_bf16_machine_and_a_onednn_cap(tmp_path):
    (tmp_path / "cpuinfo").write_text(SAPPHIRE)
    info = cpu_info(tmp_path / "cpuinfo", environ={})
    assert info["cpu_flags"] == [flag for flag in FEATURES]  # every feature, in FEATURES' order
    assert native_bf16(info) == (True, "CPU with avx512_bf16, amx_bf16")
    capped = cpu_info(tmp_path / "cpuinfo", environ={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    native, why = native_bf16(capped)
    assert not native and "ONEDNN_MAX_CPU_ISA=AVX2" in why
    assert native_bf16(cpu_info(tmp_path / "cpuinfo", environ={"ONEDNN_MAX_CPU_ISA": "avx512_core_amx"}))[0]
    assert cpu_line(capped).endswith("; oneDNN capped at AVX2")
    assert bf16_kernels(info)[0] and not bf16_kernels(capped)[0]
    assert bf16_kernels(cpu_info(tmp_path / "cpuinfo", environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}))[0]


def test_no_cpuinfo_file_and_older_records(tmp_path):
    info = cpu_info(tmp_path / "absent", environ={})
    assert info["cpu_flags"] is None and info["cpu"]  # platform's name, or "unknown CPU"
    assert cpu_line({"cpu": "AMD EPYC", "cores": 2}) == "CPU: AMD EPYC, 2 cores"  # a record made before flags
    assert read_cpuinfo("") == (None, set())


def test_cpuid_cap_names_what_the_kernels_see(tmp_path):
    (tmp_path / "cpuinfo").write_text(SAPPHIRE)
    environ = {"CPUID_CAP": "x86-64-v3", "LD_PRELOAD": "/x/benchmarks/tmp/cpu_cap.so"}
    info = cpu_info(tmp_path / "cpuinfo", environ=environ)
    assert info["cpu_flags"] == ["avx2", "fma"] and info["cpuid_cap"] == "x86-64-v3"
    assert native_bf16(info)[0] is False and bf16_kernels(info)[0] is False
    assert cpu_line(info).endswith("; avx2 fma; CPUID capped to x86-64-v3 (benchmarks/cpu_cap.c)")
    # The variable alone, without the library loaded, caps nothing.
    assert cpu_info(tmp_path / "cpuinfo", environ={"CPUID_CAP": "x86-64-v3"})["cpu_flags"] == list(FEATURES)
