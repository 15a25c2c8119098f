"""benchmarks/conv_kernels.py reads oneDNN's log lines (ONEDNN_VERBOSE=1) of the measured step."""

from benchmarks.conv_kernels import parse_verbose, summarise

# Lines as TensorFlow 2.21's and PyTorch 2.13's oneDNN print them (this machine, capped to AVX2).
TENSORFLOW = (
    "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32::blocked:acdb::f0 "
    "wei:f32:a:blocked:Acdb16a::f0 bia:undef::undef::: dst:f32::blocked:acdb::f0,attr-scratchpad:user,"
    "alg:convolution_direct,mb8_ic64oc64_ih128oh128kh3sh1dh0ph1_iw128ow128kw3sw1dw0pw1,48.0371\n"
    "onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,backward_weights,src:f32::blocked:acdb::f0 "
    "wei:f32:a:blocked:ABcd8b8a::f0 bia:undef::undef::: dst:f32::blocked:acdb::f0,,alg:convolution_direct,"
    "mb8_ic64oc64_ih128oh128kh3sh1dh0ph1_iw128ow128kw3sw1dw0pw1,134.666\n")
TORCH = (
    "onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,backward_data,src:f32:a:blocked:aBcd8b::f0 "
    "wei:f32:a:blocked:ABcd8a8b::f0 bia:undef::undef::: dst:f32:a:blocked:aBcd8b::f0,attr-scratchpad:user,"
    "alg:convolution_direct,mb8_ic64oc64_ih128oh128kh3sh1dh0ph1_iw128ow128kw3sw1dw0pw1,44.823\n"
    "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:abcd::f0,,,8x14x128x128,0.2\n")


def test_the_measured_step_only():
    text = TORCH + "MEASURED STEP\n" + TENSORFLOW  # the warm-up step's lines are left out
    found = parse_verbose(text)
    assert [p["kind"] for p in found] == ["forward_training", "backward_weights"]
    macs = 8 * 64 * 128 * 128 * 64 * 9
    assert found[0] == {"kernel": "brg_conv_fwd:avx2", "kind": "forward_training", "layout": "acdb",
                        "shape": "mb8_ic64oc64_ih128oh128kh3sh1dh0ph1_iw128ow128kw3sw1dw0pw1", "macs": macs,
                        "ms": 48.0371}
    kinds = summarise(found + parse_verbose("MEASURED STEP\n" + TORCH))
    assert list(kinds) == ["forward_training", "backward_data", "backward_weights"]  # the reorder is no convolution
    assert kinds["backward_weights"] == {"ms": 134.7, "gmac_per_s": round(macs / 134.666 / 1e6, 1),
                                         "kernels": ["jit:avx2"], "layouts": ["acdb"], "primitives": 1}
    assert kinds["backward_data"]["layouts"] == ["aBcd8b"]
