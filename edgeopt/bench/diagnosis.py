"""Parity that names the culprit: which target's kernels deviate, by how much, and the likely cause.

One file's outputs on several targets are judged against a reference execution of the same file
(LiteRT's reference kernels; onnxruntime with graph optimizations off, where a QDQ file runs unfused),
or, where the runtime has none, against the target whose outputs are closest to the float model's.
A target more than 2 LSB from the judge deviates when it also lands further from the float (Keras)
outputs than the judge (deep networks accumulate a few LSB of rounding on every CPU); the error says
what a deviation costs, and the target's CPU flags (kernels.py) say why: "deviates on x86-64-avx2 (x86
with AVX2, without VNNI): 13 LSB from onnxruntime's unfused execution; likely cause: s8 weights through
onnxruntime's u8s8 kernels (vpmaddubsw) saturate their int16 pair sums; its mean |error| against the
float model there is 10.1x that of local".

TensorFlow-free; a pure function of arrays and machine records, so `edgeopt explain` can call it.
Example:
    d = diagnose_parity("m.int8.onnx", {"local": [y1], "x86-64-avx2": [y2]}, machines, fmt="onnx",
                        precision="int8", scales=[0.15], float_reference=[keras_y], reference_execution=[ref_y])
    d.verdict, d.culprits(), d.sentence
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import kernels, parity

# A target more than 2 LSB from the judge deviates when its error against the float model is at least this
# multiple of the judge's; below it, the distance is int8 rounding that accumulates over a deep network.
WORSE_THAN_BEST = 1.5


@dataclass
class Finding:
    """One target's verdict on one file."""

    target: str
    cpu: str  # kernels.describe_cpu
    verdict: str  # ok / differs / failed
    lsb: float | None = None  # max |diff| from the judge, in LSB (int8) ...
    max_abs_diff: float | None = None  # ... and in output units
    error_vs_float: dict | None = None  # mean and max |error| against the float model's outputs
    error_ratio: float | None = None  # this target's mean |error| / `ratio_vs`'s (`ratio_vs_error`)
    ratio_vs: str | None = None
    ratio_vs_error: float | None = None
    why: str = ""  # the likely cause of a deviation, or why the file is safe on this CPU
    kernel_safe: bool | None = None  # what kernels.py expects of this file on this CPU (None: no rule)
    emulated: bool = False


@dataclass
class Diagnosis:
    artifact: str
    format: str
    precision: str
    verdict: str  # ok / deviates / inconclusive / not-compared
    judge: str  # what the targets were compared with
    findings: list = field(default_factory=list)
    sentence: str = ""

    def culprits(self) -> list[str]:
        return [f.target for f in self.findings if f.verdict == "differs"]

    def finding(self, target) -> Finding | None:
        return next((f for f in self.findings if f.target == target), None)

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose_parity(artifact, outputs: dict, machines: dict, *, fmt, precision, scales=None, float_reference=None,
                    reference_execution=None, reference_label=None, weights=None, local="local") -> Diagnosis:
    """Judge one file's outputs on every target; name the ones that deviate and why.

    Args:
        outputs: target name -> list of output arrays (None where the target produced none).
        machines: target name -> machine record (report.targets[i]["machine"]: its "cpu" and "emulated").
        scales: the LSB of each output (parity.output_scales); None for float outputs.
        float_reference: the float model's outputs on the same inputs (evaluation.npz `reference`).
        reference_execution: the same file's outputs through the runtime's reference kernels; it may
            cover only the first samples.
        weights: kernels.onnx_weight_facts of an ONNX file (what its int8 kernels will do).
        local: the name of the target that is this machine (preferred as judge among equals).
    """
    findings = {t: _finding(t, machines.get(t), fmt, weights) for t in outputs}
    ran = {t: o for t, o in outputs.items() if o is not None}
    for t in findings:
        if t not in ran:
            findings[t].verdict, findings[t].why = "failed", "produced no outputs (see its row)"
    for t, out in ran.items():
        findings[t].error_vs_float = _error(out, float_reference)
    best = None
    if reference_execution is not None:
        judge, anchor = reference_label or "the reference kernels", reference_execution
    elif len(ran) >= 2:
        best = _closest_to_float(ran, findings, local)
        judge, anchor = f"{best} (closest to the float model)" if float_reference is not None else best, ran[best]
    else:
        return _finish(Diagnosis(artifact, fmt, precision, "not-compared", "nothing", list(findings.values())))
    for t, out in ran.items():
        _judge(findings[t], anchor, out, precision, scales)
    diagnosis = Diagnosis(artifact, fmt, precision, "ok", judge, list(findings.values()))
    baseline = _baseline(reference_execution, judge, float_reference, findings, anchor_target=best)
    _explain(diagnosis, ran, float_reference, baseline, have_reference=reference_execution is not None)
    return _finish(diagnosis)


def _finding(target, machine, fmt, weights) -> Finding:
    cpu = (machine or {}).get("cpu")
    risk = _risk(fmt, weights, cpu)
    return Finding(target, kernels.describe_cpu(cpu), "ok", why=risk["why"], kernel_safe=risk["safe"],
                   emulated=bool((machine or {}).get("emulated")))


def _risk(fmt, weights, cpu) -> dict:
    cls = kernels.cpu_class(cpu)
    if fmt == "onnx" and weights and weights.get("weight_type"):
        return kernels.onnx_int8_risk(weights, cls)
    if fmt == "tflite":
        return kernels.tflite_int8_risk(cls)
    return {"safe": None, "why": ""}


def _error(outputs, float_reference, samples=None) -> dict | None:
    """Mean and max |error| of the first output against the float model's, on the first `samples` (default: all)."""
    if float_reference is None or not outputs:
        return None
    ref, out = np.asarray(float_reference[0], np.float64), np.asarray(outputs[0], np.float64)
    n = min(len(ref), len(out), samples or len(out))
    if ref.shape[1:] != out.shape[1:] or n == 0:
        return None
    err = np.abs(out[:n] - ref[:n])
    return {"mean": float(err.mean()), "max": float(err.max()), "samples": int(n)}


def _closest_to_float(ran, findings, local) -> str:
    """The judge without a reference execution: the target nearest the float model (this machine on ties)."""
    def key(t):
        err = findings[t].error_vs_float
        return (err["mean"] if err else 0.0, t != local)
    return min(ran, key=key)


def _judge(finding, anchor, out, precision, scales):
    n = min(len(anchor[0]), len(out[0]))
    figures = parity.compare([a[:n] for a in anchor], [o[:n] for o in out], precision, scales)
    if figures["verdict"] == "failed":
        finding.verdict, finding.why = "failed", figures["reason"]
        return
    finding.lsb, finding.max_abs_diff = figures.get("lsb"), figures["max_abs_diff"]
    finding.verdict = figures["verdict"]


def _baseline(reference_execution, judge, float_reference, findings, anchor_target) -> dict | None:
    """What a faithful execution of this file costs against the float model: the judge's own error."""
    if float_reference is None:
        return None
    if reference_execution is not None:
        err = _error(reference_execution, float_reference)
        return err and {"label": judge, **err}
    err = findings[anchor_target].error_vs_float
    return err and {"label": anchor_target, **err}


def _explain(d, ran, float_reference, baseline, have_reference):
    """Rounding or deviation; the causes of deviations, their cost, and the overall verdict."""
    for f in d.findings:
        if f.verdict == "ok" and f.kernel_safe is False:  # at risk, yet these inputs did not trigger it
            f.why = f"at parity on these inputs, but at risk on this CPU: {f.why}"
    lsbs = {f.target: f.lsb for f in d.findings if f.lsb is not None}
    for f in [f for f in d.findings if f.verdict == "differs"]:
        _weigh(f, ran[f.target], float_reference, baseline, lsbs)
    differing = [f for f in d.findings if f.verdict == "differs"]
    if not differing:
        return
    best = min((f for f in d.findings if f.verdict == "ok" and f.error_vs_float),
               key=lambda f: f.error_vs_float["mean"], default=None)
    for f in differing:
        if best and f.error_vs_float and best.error_vs_float["mean"] > 0:  # the cost, against the best target
            f.error_ratio = f.error_vs_float["mean"] / best.error_vs_float["mean"]
            f.ratio_vs, f.ratio_vs_error = best.target, best.error_vs_float["mean"]
        if f.kernel_safe is not False:
            f.why = "not a known kernel difference on this CPU: its kernels give other numbers than the others"
    named = have_reference or any(f.kernel_safe is False or (f.error_ratio or 0) >= WORSE_THAN_BEST
                                  for f in differing)
    d.verdict = "deviates" if named else "inconclusive"


def _weigh(f, outputs, float_reference, baseline, lsbs):
    """More than 2 LSB from the judge: a deviation, or int8 rounding that accumulates over many layers?

    Deep networks (MobileNetV2: 9-12 LSB from onnxruntime's unfused execution on every CPU) round
    differently at every layer; what matters is whether the target lands further from the float model
    than the judge does. Without float outputs: whether it is far further from the judge than the others.
    """
    if f.lsb is None:  # float outputs: no rounding to allow for
        return
    if baseline and baseline["mean"] > 0:
        mine = _error(outputs, float_reference, baseline["samples"])
        ratio = mine["mean"] / baseline["mean"] if mine else None
        if ratio is not None and ratio < WORSE_THAN_BEST:
            f.verdict, f.why = "ok", (f"{f.lsb:.0f} LSB from the judge, but no further from the float model on "
                                      f"average (mean |error| {mine['mean']:.3g}, the judge's {baseline['mean']:.3g}; "
                                      f"max {mine['max']:.3g}, the judge's {baseline['max']:.3g})" + _also(f.why))
        elif ratio is not None:
            f.error_ratio, f.ratio_vs, f.ratio_vs_error = ratio, baseline["label"], baseline["mean"]
        return
    others = [v for t, v in lsbs.items() if t != f.target]
    if others and f.lsb is not None and f.lsb <= 2 * min(others) + parity.MAX_LSB:
        f.verdict, f.why = "ok", f"{f.lsb:.0f} LSB from the judge, about as far as the other targets" + _also(f.why)


def _also(why) -> str:
    return f"; {why}" if why else ""


def _finish(d: Diagnosis) -> Diagnosis:
    d.sentence = sentence(d)
    return d


def sentence(d: Diagnosis) -> str:
    """What a person reads: who deviates, by how much, why; where the file is safe, and why."""
    if d.verdict == "not-compared":
        known = [f for f in d.findings if f.why and f.verdict != "failed"]
        return (f"{d.artifact}: nothing to compare with (one target, and no reference execution of this file)"
                + (f"; by its CPU's kernels: {_grouped(known)}." if known else "."))
    parts = []
    for f in (f for f in d.findings if f.verdict == "differs"):
        text = f"{d.artifact} deviates on {_where(f)}: {_size(f)} from {d.judge}; likely cause: {f.why}"
        if f.error_ratio is not None:
            text += (f"; its mean |error| against the float model there is {f.error_ratio:.1f}x that of "
                     f"{f.ratio_vs} ({f.error_vs_float['mean']:.3g} vs {f.ratio_vs_error:.3g})")
        parts.append(text + ".")
    if d.verdict == "inconclusive":
        parts.append("Nothing says which target is right (no reference execution, no float outputs that settle it).")
    ok = [f for f in d.findings if f.verdict == "ok"]
    if ok:
        limit = f"{parity.MAX_LSB:g} LSB" if d.precision.startswith("int8") else "the float tolerance"
        rounding = any(f.lsb is not None and f.lsb > parity.MAX_LSB for f in ok)
        lead = "Safe on" if parts else f"{d.artifact}: at parity (within {limit}" + \
            (", or rounding" if rounding else "") + f") with {d.judge} on"
        parts.append(f"{lead} {_grouped(ok)}.")
    failed = [f.target for f in d.findings if f.verdict == "failed"]
    if failed:
        parts.append(f"Not compared on {', '.join(failed)} (no outputs).")
    return " ".join(parts)


def _where(f) -> str:
    return f"{f.target} ({f.cpu}{', emulated' if f.emulated else ''})"


def _grouped(findings) -> str:
    """Targets that share a reason, named together: 'a (cpu) and b (cpu): reason; c (cpu): reason'."""
    groups = {}
    for f in findings:
        groups.setdefault(f.why, []).append(_where(f))
    return "; ".join(" and ".join(names) + (f": {why}" if why else "") for why, names in groups.items())


def _size(f) -> str:
    return f"{f.lsb:.0f} LSB" if f.lsb is not None else f"max |diff| {f.max_abs_diff:.3g}"
