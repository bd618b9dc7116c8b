"""explain on the emulated aarch64 target: the worker's per-operator profiles run under QEMU as on x86.

Small on purpose (two int8 files and their fp32 parents, one round): emulated times are never
asserted on, only that both runtimes' profilers ran there and explain read them like the local ones.
"""

import shutil

import pytest

pytestmark = pytest.mark.arm64

FILES = ["digits_cnn.pruned50.int8.tflite", "digits_cnn.pruned50.int8.onnx"]


def test_explain_reads_profiles_measured_on_emulated_aarch64(converted, aarch64_emulator, tmp_path):
    import edgeopt

    _, source, _ = converted
    out = tmp_path / "digits"
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("report*", "explain", "*.png"))
    ex = edgeopt.explain(out, files=FILES, accuracy=False, targets=["local", "aarch64-emulated"], rounds=1,
                         log=print)
    machines = {m["name"]: m for m in ex.machines}
    assert machines["aarch64-emulated"]["arch"] == "aarch64" and machines["aarch64-emulated"]["emulated"]
    assert "dotprod" in machines["aarch64-emulated"]["features"]  # the ARM ISA features are named
    for f in ex.files:
        by_target = {s["target"]: s for s in f["speed"]}
        assert set(by_target) == {"local", "aarch64-emulated"}, f["id"]
        for target, s in by_target.items():
            assert s["profile"] and s["profile"]["op_types"], (f["id"], target, s.get("profile_error"))
            assert s["baseline_profile"], (f["id"], target)
        roles = {t: {o["family"] for o in s["profile"]["op_types"]} for t, s in by_target.items()}
        assert roles["local"] & roles["aarch64-emulated"] >= {"convolution", "matmul"}, roles
