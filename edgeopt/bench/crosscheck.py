"""Parity of every file across targets: a reference execution, a diagnosis per file, figures per row.

For each file: its outputs on every target, the float model's outputs (evaluation.npz `reference`),
and, where the runtime offers one, a reference execution of the same file on this machine (LiteRT's
reference kernels for int8 .tflite files; onnxruntime with graph optimizations off for QDQ .onnx
files, which then run DequantizeLinear -> float op -> QuantizeLinear). diagnosis.py names the targets
that deviate and why; each row gets its figures, and a warning when its CPU is one the file's int8
kernels are known to misbehave on (the file was not made for it).

TensorFlow-free.
"""

from __future__ import annotations

from . import kernels, parity
from .diagnosis import diagnose_parity

# The reference kernels are slow (LiteRT's are plain loops): they run on the first samples only, and
# every target is compared with them on those samples.
REFERENCE_SAMPLES = 128
REFERENCE_LABELS = {"tflite": "LiteRT's reference kernels (BUILTIN_REF)",
                    "onnx": "onnxruntime's unfused execution (graph optimizations off)"}


def check_parity(report, work, data, made_for=None):
    """Fill row.parity, row.warnings and report.parity (artifact id -> diagnosis) for every file."""
    made_for = made_for or {}
    machines = {t["name"]: {**(t.get("machine") or {}), "emulated": t.get("emulated")} for t in report.targets}
    local = next((t["name"] for t in report.targets if t["kind"] == "local"), "local")
    for artifact, rows in _by_artifact(report.rows).items():
        outputs = {}
        for r in rows:
            w = work.get((r.target, r.artifact, r.threads), {})
            if r.target not in outputs or outputs[r.target] is None:
                outputs[r.target] = w.get("outputs") if r.ok else None
        if not any(o is not None for o in outputs.values()):
            continue
        first = rows[0]
        specs = next((w.get("output_specs") for (t, a, _), w in work.items() if a == artifact and w.get("output_specs")),
                     None)
        weights = _weights(first)
        diagnosis = diagnose_parity(
            artifact, outputs, machines, fmt=first.format, precision=first.precision,
            scales=_scales(first, specs), float_reference=data.reference,
            reference_execution=reference_execution(first, weights, data),
            reference_label=REFERENCE_LABELS.get(first.format), weights=weights, local=local)
        if diagnosis.verdict != "not-compared" or _worth_saying(first):
            report.parity[artifact] = diagnosis.to_dict()
        for r in rows:
            _fill_row(r, diagnosis)
            deviates = bool(r.parity and r.parity.get("reason"))
            warning = cpu_warning(r, weights, machines.get(r.target), made_for.get(artifact), with_cause=not deviates)
            if warning and deviates:
                r.parity["reason"] += f" ({warning})"  # one warning per row: the deviation and its cause, the fix
            elif warning:
                r.warnings.append(warning)


def _by_artifact(rows) -> dict:
    groups = {}
    for r in rows:
        groups.setdefault(r.artifact, []).append(r)
    return groups


def _worth_saying(row) -> bool:
    return row.precision == "int8"


def _weights(row):
    if row.format != "onnx" or row.precision != "int8" or not row.path:
        return None
    try:
        return kernels.onnx_weight_facts(row.path)
    except Exception:  # a graph this cannot read: no kernel rule, the figures still stand
        return None


def _scales(row, specs):
    if not row.precision.startswith("int8") or not row.path:
        return None
    try:
        return parity.output_scales(row.path, specs)
    except Exception:  # no readable scale: parity falls back to an 8-bit grid over the output range
        return None


def reference_execution(row, weights, data):
    """The file's outputs through the runtime's reference kernels on this machine, or None where there are none.

    None for float files (nothing int8 to check), for ONNX QOperator and int8-dynamic files (their
    QLinear/MatMulInteger ops run the same int8 kernels with optimizations off), and when it fails.
    """
    if not row.path or row.precision not in ("int8", "int8-dynamic"):
        return None
    if row.format == "onnx" and (row.precision != "int8" or (weights or {}).get("layout") != "qdq"):
        return None
    from .device.runtimes import open_model

    try:
        model = open_model(row.path, threads=1, reference=True)
        inputs = [x[:REFERENCE_SAMPLES] for x in data.inputs_for(model.input_specs)]
        return model.predict(inputs)
    except Exception:  # no reference for this file (an op without a reference kernel): judged without one
        return None


def _fill_row(row, diagnosis):
    finding = diagnosis.finding(row.target)
    if finding is None or diagnosis.verdict == "not-compared" or finding.verdict == "failed":
        return
    row.parity = {"verdict": finding.verdict, "vs": diagnosis.judge, "lsb": finding.lsb,
                  "max_abs_diff": finding.max_abs_diff, "error_vs_float": finding.error_vs_float, "why": finding.why}
    if finding.verdict == "differs":
        row.parity["reason"] = (f"{'%.0f LSB' % finding.lsb if finding.lsb is not None else 'outputs'} "
                                f"from {diagnosis.judge}; likely cause: {finding.why}")
        if diagnosis.verdict == "inconclusive":
            row.parity["verdict"] = "inconclusive"


def cpu_warning(row, weights, machine, made_for, with_cause=True) -> str | None:
    """A file on a CPU whose int8 kernels are known to misbehave with it: say so, and how to convert for it."""
    if not weights or not weights.get("weight_type") or not row.ok:
        return None
    cpu = (machine or {}).get("cpu")
    risk = kernels.onnx_int8_risk(weights, kernels.cpu_class(cpu))
    if risk["safe"] is not False:
        return None
    made = f"made for {', '.join(made_for)}" if made_for else "made with full-range s8 weights (for VNNI x86 or ARM)"
    fix = (f"convert it for this CPU with `edgeopt convert ... --target {_target_name(row.target)}` (or the export "
           "option int8_variant: reduce_range)")
    if not with_cause:
        return f"{made}: {fix}"
    return f"{made}, not for this CPU ({kernels.describe_cpu(cpu)}), where {risk['why']}: {fix}"


def _target_name(target) -> str:
    return target if target in ("local", *kernels.NAMED_CPUS) else "x86-64-avx2"
