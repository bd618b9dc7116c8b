"""The emulated x86-64-avx2 target (a Haswell: x86 without VNNI), and parity that names the culprit across targets.

QEMU's TCG answers CPUID as a Haswell, so this machine's own onnxruntime takes its AVX2 int8 kernels,
whose int16 pair sums saturate with full-range s8 weights: the case a VNNI or ARM machine never shows.
Emulated latency is never asserted on.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import edgeopt
from edgeopt.bench import kernels
from edgeopt.bench.emulated import X86Avx2Target
from edgeopt.bench.parity import bundle_parity
from edgeopt.bench.targets import LocalTarget, parse_target
from edgeopt.cli.bench import exit_code

from .bundles import make_bundle

pytestmark = pytest.mark.x86_avx2

S8_QDQ, S8_QOP = "digits_cnn.pruned50.int8.s8.onnx", "digits_cnn.pruned50.int8.s8.qoperator.onnx"
DEFAULT_QDQ, DEFAULT_QOP = "digits_cnn.pruned50.int8.onnx", "digits_cnn.pruned50.int8.entropy.qoperator.onnx"
TFLITE = "digits_cnn.pruned50.int8.tflite"
QUICK = {"warmup_runs": 1, "min_runs": 3, "min_seconds": 0.0}
SAMPLES = 64


def test_setup_proved_that_onnxruntime_takes_its_avx2_kernels(x86_avx2_emulator):
    from edgeopt.bench import x86_emulator

    lines = []
    again = x86_emulator.setup(log=lines.append)
    assert lines == [f"the x86-64-avx2 emulator is already set up in {x86_avx2_emulator.prefix.parent}"]
    facts = again.facts
    assert "AVX2" in facts["cpuid"] and "AVX512F" not in facts["cpuid"] and "AVX512VNNI" not in facts["cpuid"]
    # The probe's exact answer is 64; the fused int8 kernel saturates far below it, the unfused one does not.
    assert facts["ort_u8s8_saturates"] and facts["probe"]["reference"] == 64.0 and facts["probe"]["fused"] < 32


def test_target_check_describes_the_emulated_haswell(x86_avx2_emulator):
    result = subprocess.run([sys.executable, "-m", "edgeopt.cli", "target", "check", "x86-64-avx2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "QEMU_CPU=Haswell-noTSX" in result.stdout and "ready" in result.stdout
    assert re.search(r"ISA features\s+sse4_2 avx avx2 fma f16c\n", result.stdout)  # no AVX-512, no VNNI
    assert re.search(r"onnxruntime int8 kernels\s+u8s8 with int16 saturation", result.stdout)


def test_s8_weights_saturate_under_emulation_and_the_portable_variants_do_not(x86_avx2_emulator, converted, digits,
                                                                               tmp_path):
    manifest, out, _ = converted
    files = [S8_QDQ, DEFAULT_QDQ, "digits_cnn.pruned50.int8.reduce-range.onnx"]
    x = digits["evaluation"].x[0][:SAMPLES]
    local = make_bundle(tmp_path / "local", [out / f for f in files], x)
    other = make_bundle(tmp_path / "avx2", [out / f for f in files], x)
    LocalTarget().run(local, timeout=300)
    target = parse_target("x86-64-avx2")
    assert isinstance(target, X86Avx2Target)
    results = json.loads(target.run(other, timeout=300).read_text())
    cpu = results["machine"]["cpu"]
    assert cpu["model"].startswith("Intel Haswell") and kernels.cpu_class(cpu) == kernels.X86_AVX2
    assert results["machine"]["emulated"]["qemu_cpu"] == "Haswell-noTSX" and all(m["emulated"] for m in results["measurements"])
    parity = bundle_parity(local, other, lambda job_id: manifest.get(job_id).precision)
    local_class = kernels.cpu_class(json.loads((local / "results.json").read_text())["machine"]["cpu"])
    if local_class != kernels.X86_AVX2:  # on a VNNI (or ARM) machine the s8 file differs between the two CPUs
        assert parity[S8_QDQ]["verdict"] == "differs" and parity[S8_QDQ]["lsb"] > 4, parity[S8_QDQ]
    for f in files[1:]:
        assert parity[f]["verdict"] == "ok" and parity[f]["lsb"] <= 2, (f, parity[f])


@pytest.fixture(scope="module")
def three_targets(x86_avx2_emulator, aarch64_emulator, converted, tmp_path_factory):
    """What a user runs: `edgeopt bench OUT --target local --target x86-64-avx2 --target aarch64-emulated`."""
    _, out, _ = converted
    folder = tmp_path_factory.mktemp("three-targets")
    argv = [sys.executable, "-m", "edgeopt.cli", "bench", *(str(out / f) for f in (S8_QDQ, S8_QOP, DEFAULT_QDQ,
                                                                                   DEFAULT_QOP, TFLITE)),
            "--evaluation", str(out / "evaluation.npz"), "--samples", str(SAMPLES), "--target", "local",
            "--target", "x86-64-avx2", "--target", "aarch64-emulated", "--threads", "1", "--rounds", "1",
            "--min-runs", "3", "--min-seconds", "0", "--warmup-runs", "1", "--out", str(folder), "--quiet"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    return result, edgeopt.Report.load(folder), folder


@pytest.mark.arm64
def test_bench_names_the_avx2_kernels_as_the_deviation(three_targets):
    result, report, folder = three_targets
    assert [(t["name"], t["status"]) for t in report.targets] == [
        ("local", "ok"), ("x86-64-avx2", "ok"), ("aarch64-emulated", "ok")]
    assert report.targets[2]["machine"]["cpu"]["arch"] == "aarch64"
    assert all(r.ok and r.emulated == (r.target != "local") for r in report.rows)
    local_class = kernels.cpu_class(report.targets[0]["machine"]["cpu"])
    expected = ["local", "x86-64-avx2"] if local_class == kernels.X86_AVX2 else ["x86-64-avx2"]
    for artifact, judge in ((S8_QDQ, "onnxruntime's unfused execution"), (S8_QOP, "closest to the float model")):
        d = report.parity[artifact]
        culprits = [f["target"] for f in d["findings"] if f["verdict"] == "differs"]
        assert d["verdict"] == "deviates" and culprits == expected and judge in d["judge"], d["sentence"]
        assert re.search(r"deviates on x86-64-avx2 \(x86 with AVX2, without VNNI, emulated\): \d+ LSB from .*"
                         r"likely cause: s8 weights through onnxruntime's u8s8 kernels \(vpmaddubsw\) saturate"
                         r".*mean \|error\| against the float model there is [\d.]+x that of", d["sentence"])
        assert "aarch64-emulated (ARM with int8 dot product (asimddp), emulated): onnxruntime's ARM int8 " \
               "kernels accumulate in int32" in d["sentence"]
    # A parity warning, not a failure: exit 4, and 1 under --strict.
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-2000:]
    assert exit_code(report) == 4 and exit_code(report, strict=True) == 1
    assert ("(made with full-range s8 weights (for VNNI x86 or ARM): convert it for this CPU with "
            "`edgeopt convert ... --target x86-64-avx2`") in result.stdout


@pytest.mark.arm64
def test_the_default_files_pass_parity_within_2_lsb_on_every_target(three_targets):
    _, report, folder = three_targets
    local_class = kernels.cpu_class(report.targets[0]["machine"]["cpu"])
    for artifact in (DEFAULT_QDQ, DEFAULT_QOP, TFLITE):
        d = report.parity[artifact]
        assert d["verdict"] == "ok", d["sentence"]
        for f in d["findings"]:
            assert f["verdict"] == "ok" and f["lsb"] <= 2, (artifact, f)
        rows = [r for r in report.rows if r.artifact == artifact]
        assert all(r.ok and r.parity["verdict"] == "ok" and not r.warnings for r in rows)
    if local_class == kernels.X86_VNNI:  # this machine: the report says why each file is safe here
        vnni = r"local \(x86 with AVX-512 VNNI[^)]*\)[^;]*: "
        assert re.search(vnni + "u8 weights take onnxruntime's u8u8 kernels, which do not saturate",
                         report.parity[DEFAULT_QDQ]["sentence"])
        assert re.search(vnni + "VNNI adds u8 x s8 products in int32", report.parity[DEFAULT_QOP]["sentence"])
    tflite = report.parity[TFLITE]
    assert tflite["judge"] == "LiteRT's reference kernels (BUILTIN_REF)"
    md = (folder / "report.md").read_text()
    assert "## Parity" in md and "EMULATED" in md and "ok (emulated)" in md and "LSB" in md


def test_this_machine_alone_judges_int8_files_against_the_reference_kernels(converted, tmp_path):
    """On this machine alone (no emulation): local rows of int8 files are judged against the reference kernels."""
    _, out, _ = converted
    report = edgeopt.benchmark([out / S8_QDQ, out / TFLITE], evaluation=out / "evaluation.npz", samples=SAMPLES,
                               threads=[1], rounds=1, timing=QUICK, out=tmp_path, progress=False, log=lambda *_: None)
    local_class = kernels.cpu_class(report.targets[0]["machine"]["cpu"])
    d = report.parity[S8_QDQ]
    if local_class == kernels.X86_AVX2:
        assert d["verdict"] == "deviates" and exit_code(report) == 4
        return
    assert d["verdict"] == "ok" and exit_code(report) == 0, d["sentence"]
    assert d["findings"][0]["lsb"] <= 2 and re.search(r"int32.*no (int16 )?saturation", d["sentence"])
    row = next(r for r in report.rows if r.artifact == S8_QDQ)
    assert row.parity["verdict"] == "ok" and row.parity["error_vs_float"]["mean"] > 0
    assert np.isfinite(row.parity["error_vs_float"]["max"])


@pytest.mark.parametrize("argv,message", [
    (["target", "check", "x86-64-avx2"],
     r"the x86-64-avx2 emulator is not set up in .*none: run `edgeopt target setup x86-64-avx2`"),
    (["target", "setup", "x86-64-avx2", "--cpu", "cortex-a72"],
     r"--cpu applies to aarch64-emulated only: x86-64-avx2 always emulates a Haswell"),
])
def test_x86_target_misuse_is_one_clear_message(argv, message, tmp_path):
    import os

    env = {**os.environ, "EDGEOPT_X86_CACHE": str(tmp_path / "none")}
    result = subprocess.run([sys.executable, "-m", "edgeopt.cli", *argv], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 2 and re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.stderr
