"""The explain report: explain.json (the record), explain.md and a console summary (views of it).

TensorFlow-free. The HTML page is built from the same record (edgeopt/html.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fileio import write_json_atomic, write_text_atomic
from ..table import human_bytes, render

SCHEMA = "edgeopt.explain"
SCHEMA_VERSION = 1
EXPLAIN_JSON, EXPLAIN_MD, EXPLAIN_HTML = "explain.json", "explain.md", "explain.html"
PARITY_NOTE = ("outputs are compared across targets by the benchmark's parity check (bench/diagnosis.py), which "
               "names the target whose kernels deviate and why; files it flagged")


def parity_text(parity: dict) -> str:
    """The diagnosis sentence of a file bench flagged on some target, else the flagged targets' reasons."""
    diagnosis = parity.get("diagnosis") or {}
    if diagnosis.get("sentence"):
        return diagnosis["sentence"]
    return "; ".join(f"{f['target']}: {f.get('reason') or f.get('verdict')}" for f in parity.get("flagged", []))


@dataclass
class Explanation:
    source: str | None = None
    created: str | None = None
    settings: dict = field(default_factory=dict)
    machines: list = field(default_factory=list)  # the benchmark report's targets, with CPU features
    files: list = field(default_factory=list)  # one dict per explained file (see run.py)
    pruning: dict | None = None
    written: dict = field(default_factory=dict)

    def to_dict(self):
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **_finite(asdict(self))}

    def file(self, artifact_id) -> dict | None:
        return next((f for f in self.files if f["id"] == artifact_id), None)

    @property
    def verdicts(self) -> list:
        return [v for f in self.files for v in f.get("verdicts", [])]

    def save(self, folder, html=True) -> dict:
        folder = Path(folder)
        self.written.update({"json": EXPLAIN_JSON, "markdown": EXPLAIN_MD})
        if html:
            self.written["html"] = EXPLAIN_HTML
        write_text_atomic(folder / EXPLAIN_MD, markdown(self))
        if html:
            from ..html import explain_page

            write_text_atomic(folder / EXPLAIN_HTML, explain_page(self, folder))
        write_json_atomic(folder / EXPLAIN_JSON, self.to_dict())
        return {k: folder / v for k, v in self.written.items() if isinstance(v, str)}


def _finite(obj):
    """JSON has no Infinity: an exact match (no noise at all) is written as null with its meaning kept."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items() if not k.startswith("_") and k != "traceback"}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, set):
        return sorted(obj)
    return obj


# ---- console and Markdown ------------------------------------------------------------------------------
def console(ex: Explanation) -> str:
    lines = [f"  {v}" for v in ex.verdicts] or ["  nothing to explain: every file passed its check and none was "
                                                "slower than its fp32 parent"]
    where = ex.written.get("markdown")
    return "\n".join(["explain:"] + lines + ([f"details: {Path(ex.source or '.') / 'explain' / where}"]
                                            if where else []))


def markdown(ex: Explanation) -> str:
    s = ex.settings
    lines = ["# Why: per-layer error, per-operator time", ""]
    lines += [f"- source: `{ex.source}`", f"- evaluation: {s.get('evaluation')}",
              f"- first divergent layer: the first whose output SNR against the float file falls below "
              f"{s.get('snr_threshold_db')} dB", f"- per-operator times: {s.get('bench_report')}"]
    for m in ex.machines:
        lines.append(f"- target {m['name']}: {m.get('cpu_model')}, {m.get('features') or 'features unknown'}"
                     + (" (EMULATED: times include QEMU)" if m.get("emulated") else ""))
    lines += ["", "## Verdicts", ""] + [f"- {v}" for v in ex.verdicts or ["nothing to explain"]] + [""]
    plots = {k: v for k, v in ex.written.items() if k.startswith("plot")}
    lines += ["## Accuracy: where the error enters", ""]
    if "plot_snr" in plots:
        lines += [f"![SNR along the depth of the network]({plots['plot_snr']})", ""]
    for f in ex.files:
        if f.get("accuracy"):
            lines += _accuracy_md(f)
    lines += ["## Speed: where the time goes", ""]
    if "plot_op_time" in plots:
        lines += [f"![time per op type]({plots['plot_op_time']})", ""]
    for f in ex.files:
        for sec in f.get("speed") or []:
            lines += _speed_md(f, sec)
    flagged = [f"- {f['id']}: {parity_text(f['parity'])}" for f in ex.files if f.get("parity")]
    lines += ["## Across targets", "", f"The {PARITY_NOTE}: {'' if flagged else 'none'}", ""] + flagged + [""]
    if ex.pruning:
        lines += ["## Pruning", "", ex.pruning["verdict"], ""]
    node_data = [(f["id"], n) for f in ex.files for n in (f.get("node_data") or {}).values()]
    if node_data:
        lines += ["## Model Explorer", "", "Open a file with its node data painted on the graph "
                  "(`pip install 'edgeopt[explorer]'`):", ""]
        lines += [f"- `model-explorer {f['path']} --node_data_paths=explain/{name}`"
                  for f in ex.files for name in (f.get("node_data") or {}).values()] + [""]
    return "\n".join(lines) + "\n"


def _accuracy_md(f) -> list:
    a = f["accuracy"]
    lines = [f"### {f['id']}", ""]
    if a.get("error"):
        return lines + [f"Not measured: {a['error']}", ""]
    lines += [f"Against {a['reference']}, on {f.get('samples')} evaluation samples.", ""]
    headers = ["layer", "op", "SNR dB", "error added", "isolated SNR dB (TFLite debugger)", "range / p99.9",
               "channel spread", "clipped"]
    rows = [[r["layer"], r["op"], _db(r["snr_db"]), f"{r.get('error_share', 0):.0%}", _db(r.get("isolated_snr_db")),
             _num(r.get("range_over_p999")), _num(r.get("channel_spread")), _pct(r.get("clipped_fraction"))]
            for r in a["layers"]]
    lines += [render(headers, rows, markdown=True, align="llrrrrrr"), ""]
    if a.get("causes"):
        lines += ["Causes found:", ""] + [f"- **{c['cause']}**" + (f" ({', '.join(c['layers'])})" if c["layers"] else "")
                                          + f": {c['evidence']}" for c in a["causes"]] + [""]
    if a.get("fallbacks"):
        lines += ["Float fallbacks, made and measured:", ""]
        headers = ["kept in float", "check", "max error / range", "accuracy", "size", "latency vs original"]
        rows = [_fallback_cells(fb) for fb in a["fallbacks"]]
        lines += [render(headers, rows, markdown=True, align="llrrrr"), ""]
    return lines


def _fallback_cells(fb) -> list:
    if fb.get("error"):
        return [", ".join(fb["layers"]), f"not made: {fb['error'][:80]}", "-", "-", "-", "-"]
    c, lat = fb.get("check") or {}, fb.get("latency") or {}
    return [", ".join(fb["layers"]), "passed" if c.get("passed") else "failed", _pct(c.get("relative_max_error")),
            _pct(c.get("accuracy")), f"{human_bytes(fb['size_bytes'])} ({fb.get('size_ratio') or 0:.2f}x)",
            f"{lat['ratio_to_original']:.2f}x" if lat.get("ratio_to_original") else fb.get("latency_error", "-")]


def _speed_md(f, sec) -> list:
    title = f"### {f['id']} on {sec['target']}, {sec['threads']} thread(s)"
    ratio = f"{sec['speedup']:.2f}x" if sec.get("speedup") else "-"
    lines = [title, "", f"Speed against {sec['baseline']}: {ratio}" + (" (within noise)" if sec.get("within_noise") else ""), ""]
    p = sec.get("profile")
    if not p:
        return lines + [f"No per-operator profile: {sec.get('profile_error')}", ""]
    headers = ["op type", "role", "runs in", "nodes", "µs per run", "share"]
    rows = [[t["op_type"], t["family"], "/".join(t["precisions"]), t["count"], f"{t['us']:.3g}", f"{t['share']:.0%}"]
            for t in p["op_types"]]
    lines += [render(headers, rows, markdown=True, align="lllrrr"), ""]
    if sec.get("changes"):
        rows = [[c["family"], f"{c['us']:.3g}", f"{c['baseline_us']:.3g}", f"{c['delta_us']:+.3g}"] for c in sec["changes"]]
        lines += [render(["role", "this file µs", "fp32 µs", "difference"], rows, markdown=True, align="lrrr"), ""]
    if p.get("resolution_note"):
        lines += [f"Note: {p['resolution_note']}.", ""]
    lines += [f"What the profiler sees: {p['sees']}.", ""]
    return lines


def _db(v):
    if v is None:
        return "-"
    return "exact" if math.isinf(v) and v > 0 else f"{v:.1f}"


def _num(v):
    return "-" if v is None else f"{v:.1f}x"


def _pct(v):
    return "-" if v is None else f"{v:.1%}"
