"""ONNX int8 variants: the export option, what `auto` becomes for which targets, and what lands in the files."""

import pytest

from edgeopt.bench import kernels
from edgeopt.bench.crosscheck import cpu_warning
from edgeopt.bench.device import sysinfo
from edgeopt.bench.report import Row
from edgeopt.converter.onnx_variants import PORTABLE, choose
from edgeopt.errors import RecipeError
from edgeopt.recipe import build_recipe

AVX2 = {"cpu": {"arch": "x86_64", "features": {"avx2": True, "avx512_vnni": False}}}
VNNI = {"cpu": {"arch": "x86_64", "features": {"avx2": True, "avx512_vnni": True}}}
ARM = {"cpu": {"arch": "aarch64", "features": {"asimd": True, "asimddp": True}}}


@pytest.mark.parametrize("layout,targets,variant,why", [
    ("qdq", [], PORTABLE["qdq"], r"no target named: .*safe on x86 with or without VNNI and on ARM"),
    ("qoperator", [], "reduce_range", r"no target named"),
    ("qdq", ["aarch64"], "s8", r"every target adds int8 products in int32 \(aarch64: arm\)"),
    ("qoperator", ["x86-64-vnni", "aarch64-emulated"], "s8", r"full-range s8 weights, the most precise"),
    ("qdq", ["aarch64", "x86-64-avx2"], PORTABLE["qdq"], r"x86-64-avx2: x86 without VNNI, where s8 weights saturate"),
    ("qoperator", ["x86-64-avx2"], "reduce_range", r"reduce_range does not"),
    ("qdq", ["ssh://pi@raspberrypi.local"], PORTABLE["qdq"], r"CPU of ssh://pi@raspberrypi.local is not known"),
])
def test_auto_becomes_the_variant_for_the_named_targets(layout, targets, variant, why):
    import re

    choice = choose({"quant_format": layout, "int8_variant": "auto"}, targets)
    assert choice["variant"] == variant and re.search(why, choice["why"]), choice["why"]
    assert choice["asked"] == "auto" and choice["made_for"] == (targets or ["any CPU"])


def test_local_is_this_machines_cpu_read_at_conversion_time():
    choice = choose({"quant_format": "qdq", "int8_variant": "auto"}, ["local"])
    safe_here = kernels.cpu_class(sysinfo.cpu()) in (kernels.X86_VNNI, kernels.ARM)
    assert choice["variant"] == ("s8" if safe_here else PORTABLE["qdq"])
    assert choice["cpus"] == {"local": kernels.cpu_class(sysinfo.cpu())}


def test_an_explicit_variant_is_kept_and_its_risk_recorded():
    choice = choose({"quant_format": "qdq", "int8_variant": "s8"}, ["x86-64-avx2", "aarch64"])
    assert choice["variant"] == "s8" and choice["why"] == "asked for s8; at risk on x86-64-avx2"
    assert choice["made_for"] == ["x86-64-avx2", "aarch64"]


@pytest.mark.parametrize("variant,made_for", [
    ("s8", ["VNNI x86", "ARM"]), ("reduce_range", ["any CPU"]), ("u8u8", ["any CPU"])])
def test_an_explicit_variant_without_targets_is_made_for_the_cpus_it_is_safe_on(variant, made_for):
    assert choose({"quant_format": "qdq", "int8_variant": variant}, [])["made_for"] == made_for


@pytest.mark.parametrize("recipe,message", [
    ({"exports": [{"format": "onnx", "precision": "int8", "quant_format": "qoperator", "int8_variant": "u8u8"}]},
     r"int8_variant=u8u8 needs quant_format=qdq: onnxruntime's QOperator quantizer writes int8 weights"),
    ({"exports": [{"format": "onnx", "precision": "int8", "int8_variant": "u8s8"}]},
     r"int8_variant='u8s8' is not one of 'auto', 's8', 'reduce_range', 'u8u8'"),
    ({"targets": ["arm"]}, r"targets: unknown target 'arm' \(valid: local, x86-64-avx2, x86-64-vnni"),
])
def test_bad_variants_and_targets_are_refused_naming_the_valid_ones(recipe, message):
    with pytest.raises(RecipeError, match=message):
        build_recipe(recipe)


@pytest.mark.parametrize("artifact,variant,weights", [
    ("digits_cnn.pruned50.int8.onnx", PORTABLE["qdq"], {"weight_type": "uint8", "weight_bits": 8, "layout": "qdq"}),
    ("digits_cnn.pruned50.int8.entropy.qoperator.onnx", "reduce_range",
     {"weight_type": "int8", "weight_bits": 7, "layout": "qoperator"}),
    ("digits_cnn.pruned50.int8.s8.onnx", "s8", {"weight_type": "int8", "weight_bits": 8, "layout": "qdq"}),
    ("digits_cnn.pruned50.int8.s8.qoperator.onnx", "s8", {"weight_type": "int8", "weight_bits": 8, "layout": "qoperator"}),
    ("digits_cnn.pruned50.int8.reduce-range.onnx", "reduce_range", {"weight_type": "int8", "weight_bits": 7, "layout": "qdq"}),
])
def test_each_variant_is_in_the_file_and_the_manifest_says_why(converted, artifact, variant, weights):
    manifest, out, _ = converted
    a = manifest.get(artifact)
    assert a is not None and a.ok, (artifact, [x.id for x in manifest.artifacts])
    assert a.options["int8_variant"] == variant  # what really ran; `auto` stays out of the file name
    assert a.facts["int8_variant"]["variant"] == variant and a.facts["int8_variant"]["why"]
    assert kernels.onnx_weight_facts(out / a.path) == weights
    assert a.check["passed"] and a.check["top1_agreement"] >= 0.95


@pytest.mark.parametrize("artifact,machine,made_for,warned", [
    ("digits_cnn.pruned50.int8.s8.onnx", AVX2, ["aarch64"], r"^made for aarch64, not for this CPU \(x86 with AVX2"),
    ("digits_cnn.pruned50.int8.s8.onnx", AVX2, None, r"^made with full-range s8 weights .*--target x86-64-avx2"),
    ("digits_cnn.pruned50.int8.s8.onnx", AVX2, ["VNNI x86", "ARM"], r"^made for VNNI x86, ARM, not for this CPU"),
    ("digits_cnn.pruned50.int8.s8.onnx", VNNI, None, None),
    ("digits_cnn.pruned50.int8.s8.onnx", ARM, ["aarch64"], None),
    ("digits_cnn.pruned50.int8.reduce-range.onnx", AVX2, None, None),
    ("digits_cnn.pruned50.int8.onnx", AVX2, ["any CPU"], None),
])
def test_bench_warns_when_a_file_runs_on_a_cpu_it_was_not_made_for(converted, artifact, machine, made_for, warned):
    import re

    _, out, _ = converted
    row = Row(target="x86-64-avx2", artifact=artifact, path=str(out / artifact), format="onnx", precision="int8",
              threads=1)
    warning = cpu_warning(row, kernels.onnx_weight_facts(out / artifact), machine, made_for)
    assert (warning is None) if warned is None else re.search(warned, warning), warning


def test_convert_target_flags_become_the_recipes_targets():
    from edgeopt.cli import build_parser
    from edgeopt.cli.convert import _apply_flags

    args = build_parser().parse_args(["convert", "m.h5", "--target", "x86-64-avx2", "--target", "aarch64"])
    assert _apply_flags({}, args)["targets"] == ["x86-64-avx2", "aarch64"]


def test_a_reused_file_records_the_targets_it_now_serves(model_h5, tmp_path):
    """Same variant for other targets: the file is reused, its record (published through the journal) says so."""
    import edgeopt
    from edgeopt.manifest import Manifest

    recipe = {"exports": [{"format": "onnx", "precision": "int8"}]}
    for targets in (["aarch64"], ["x86-64-vnni"]):
        logged = []
        edgeopt.convert(str(model_h5), {**recipe, "targets": targets}, calibration="digits", evaluation="digits",
                        out=tmp_path, progress=False, log=logged.append)
    assert "reusing digits_cnn.int8.onnx" in logged
    (record,) = [a for a in Manifest.load(tmp_path).artifacts if a.precision == "int8"]
    assert record.facts["int8_variant"]["made_for"] == ["x86-64-vnni"] and record.options["int8_variant"] == "s8"
    assert edgeopt.verify(tmp_path).ok
