"""Parity that names the culprit: diagnose_parity on real outputs of a converter-made int8 file.

The outputs are real (the s8 QDQ digits file through onnxruntime here, and through its unfused reference
execution); the "other targets" are those outputs moved by known amounts, with the machine records the
harness writes for real CPUs of each kind.
"""

import re

import numpy as np
import pytest

from edgeopt.bench import kernels, parity
from edgeopt.bench.device import sysinfo
from edgeopt.bench.device.runtimes import open_model
from edgeopt.bench.diagnosis import diagnose_parity

S8 = "digits_cnn.pruned50.int8.s8.onnx"
SAMPLES = 64
VNNI = {"cpu": {"arch": "x86_64", "features": {"avx2": True, "avx512f": True, "avx512_vnni": True}}}
AVX2 = {"cpu": {"arch": "x86_64", "features": {"avx2": True, "avx512_vnni": False}}, "emulated": True}
ARM = {"cpu": {"arch": "aarch64", "features": {"asimd": True, "asimddp": True}}}


@pytest.fixture(scope="module")
def s8_file(converted):
    """Outputs of the s8 QDQ file on a VNNI CPU and through its reference execution, the Keras outputs, its LSB."""
    _, out, _ = converted
    path = out / S8
    with np.load(out / "evaluation.npz") as z:
        x, keras = z["x"][:SAMPLES], z["reference"][:SAMPLES]
    fused = open_model(str(path)).predict([x])
    reference = open_model(str(path), reference=True).predict([x])
    (scale,) = parity.output_scales(path)
    # "local" is a VNNI x86 in these tests. On a VNNI (or ARM) host the file's own outputs are that; on x86
    # without VNNI they saturate (the case diagnosed here), and the unfused execution stands in for a VNNI
    # CPU, which matches it within 1 LSB (benchmarks/results/onnx_int8_variants.md).
    sound = fused if kernels.cpu_class(sysinfo.cpu()) in (kernels.X86_VNNI, kernels.ARM) else reference
    return {"fused": sound, "reference": reference, "keras": [keras], "scale": scale,
            "weights": kernels.onnx_weight_facts(path)}


def _moved(outputs, scale, lsb):
    """The outputs with every other class score moved by `lsb` LSB: a kernel that is off by that much."""
    y = outputs[0].copy()
    y[:, ::2] += lsb * scale
    return [y]


def _diagnose(f, others, machines, reference=True, keras=True):
    return diagnose_parity(S8, {"local": f["fused"], **others}, {"local": VNNI, **machines}, fmt="onnx",
                           precision="int8", scales=[f["scale"]], float_reference=f["keras"] if keras else None,
                           reference_execution=f["reference"] if reference else None,
                           reference_label="onnxruntime's unfused execution", weights=f["weights"])


def test_s8_weights_are_read_from_the_file(s8_file):
    assert s8_file["weights"] == {"weight_type": "int8", "weight_bits": 8, "layout": "qdq"}


@pytest.mark.parametrize("machine,lsb,verdict,culprits,cause", [
    # The AVX2 target is 12 LSB off: named, with the int16 saturation of onnxruntime's u8s8 kernels as the cause.
    (AVX2, 12, "deviates", ["avx2"], r"u8s8 kernels \(vpmaddubsw\) saturate"),
    # An ARM target as far off has no known cause: still named (the reference execution says so), cause unknown.
    (ARM, 12, "deviates", ["avx2"], r"not a known kernel difference"),
    # One LSB is rounding: every target passes, and the sentence says why the file is safe on each.
    (AVX2, 1, "ok", [], None),
])
def test_the_reference_execution_names_the_target_that_deviates(s8_file, machine, lsb, verdict, culprits, cause):
    d = _diagnose(s8_file, {"avx2": _moved(s8_file["fused"], s8_file["scale"], lsb)}, {"avx2": machine})
    assert d.verdict == verdict and d.culprits() == culprits, d.sentence
    local = d.finding("local")
    assert local.verdict == "ok" and local.lsb <= 2 and "vpdpbusd" in local.why
    other = d.finding("avx2")
    assert other.lsb == pytest.approx(lsb, abs=1.01)
    if culprits:
        assert re.search(cause, other.why) and re.search(cause, d.sentence)
        assert d.sentence.startswith(f"{S8} deviates on avx2") and "Safe on local (x86 with AVX-512 VNNI)" in d.sentence
        assert other.ratio_vs == "local" and other.error_ratio > 1.5
        assert re.search(r"its mean \|error\| against the float model there is [\d.]+x that of local", d.sentence)
    else:
        assert d.sentence.startswith(f"{S8}: at parity (within 2 LSB) with onnxruntime's unfused execution on")


def test_more_than_2_lsb_that_lands_no_further_from_the_float_model_is_rounding(s8_file):
    # Deep networks round differently at every layer (MobileNetV2: ~10 LSB from the unfused execution on
    # every CPU); a target 5 LSB off whose outputs are no further from the float model is not a deviation.
    f = s8_file
    closer = _moved(f["fused"], f["scale"], 5)
    d = diagnose_parity(S8, {"local": f["fused"], "arm": closer}, {"local": VNNI, "arm": ARM}, fmt="onnx",
                        precision="int8", scales=[f["scale"]], float_reference=closer,
                        reference_execution=f["reference"], weights=f["weights"])
    arm = d.finding("arm")
    assert d.verdict == "ok" and arm.verdict == "ok" and arm.lsb == pytest.approx(5, abs=1.01)
    assert re.search(r"5 LSB from the judge, but no further from the float model on average \(mean \|error\| "
                     r"0, the judge's [\d.]+; max 0, the judge's [\d.]+\)", arm.why)


def test_without_a_reference_execution_the_float_model_says_who_is_wrong(s8_file):
    f = s8_file
    d = _diagnose(f, {"avx2": _moved(f["fused"], f["scale"], 12), "arm": f["fused"]}, {"avx2": AVX2, "arm": ARM},
                  reference=False)
    assert d.verdict == "deviates" and d.culprits() == ["avx2"]
    assert d.judge == "local (closest to the float model)"
    assert d.finding("avx2").error_ratio >= 1.5 and d.finding("arm").verdict == "ok"


def test_without_reference_or_float_outputs_a_disagreement_is_inconclusive(s8_file):
    f = s8_file
    d = _diagnose(f, {"arm": _moved(f["fused"], f["scale"], 12)}, {"arm": ARM}, reference=False, keras=False)
    assert d.verdict == "inconclusive" and d.culprits() == ["arm"]
    assert "Nothing says which target is right" in d.sentence


def test_a_target_without_outputs_is_named_and_the_others_still_judged(s8_file):
    f = s8_file
    d = _diagnose(f, {"board": None, "arm": f["fused"]}, {"board": ARM, "arm": ARM})
    assert d.verdict == "ok" and d.finding("board").verdict == "failed"
    assert d.sentence.endswith("Not compared on board (no outputs).")


def test_one_target_without_a_reference_execution_is_not_compared(s8_file):
    d = diagnose_parity(S8, {"local": s8_file["fused"]}, {"local": VNNI}, fmt="onnx", precision="int8")
    assert d.verdict == "not-compared" and d.findings[0].lsb is None


def test_the_diagnosis_is_plain_data_for_explain(s8_file):
    d = _diagnose(s8_file, {"avx2": _moved(s8_file["fused"], s8_file["scale"], 12)}, {"avx2": AVX2})
    record = d.to_dict()
    assert record["verdict"] == "deviates" and record["findings"][1]["target"] == "avx2"
    assert record["findings"][1]["emulated"] is True and record["sentence"] == d.sentence


@pytest.mark.parametrize("cpu,cls,described", [
    (VNNI["cpu"], kernels.X86_VNNI, "x86 with AVX-512 VNNI"),
    (AVX2["cpu"], kernels.X86_AVX2, "x86 with AVX2, without VNNI"),
    ({"arch": "x86_64", "features": {"avx2": True, "avx512f": True}}, kernels.X86_AVX2,
     "x86 with AVX2 and AVX-512, without VNNI"),  # Skylake-X: AVX-512 without VNNI saturates too
    ({"arch": "x86_64", "features": {"avx2": True, "avx_vnni": True}}, kernels.X86_VNNI, "x86 with AVX-VNNI"),
    (ARM["cpu"], kernels.ARM, "ARM with int8 dot product (asimddp)"),
    ({"arch": "aarch64", "features": {"asimd": True}}, kernels.ARM, "ARM (NEON, no dot product)"),
    (None, kernels.UNKNOWN, "a CPU whose features are unknown"),
])
def test_cpu_classes_come_from_the_machine_record(cpu, cls, described):
    assert kernels.cpu_class(cpu) == cls and kernels.describe_cpu(cpu) == described

