"""The benchmark report: one row per target, artifact and thread count; JSON, Markdown and console forms.

TensorFlow-free. `report.json` is the record (versioned schema); the tables are views of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BenchmarkError
from ..fileio import write_json_atomic, write_text_atomic
from ..table import human_bytes, pct, render
from .machines import machines_table

SCHEMA = "edgeopt.bench.report"
SCHEMA_VERSION = 1
REPORT_JSON, REPORT_MD = "report.json", "report.md"
SIZE_TITLE = "Why some int8 files are not smaller"


@dataclass
class Row:
    target: str
    artifact: str
    path: str | None
    format: str
    precision: str
    threads: int | None
    status: str = "ok"  # ok / failed / skipped
    error: str | None = None
    emulated: bool = False
    synthetic_calibration: bool = False  # int8 ranges from random inputs: its accuracy is a smoke test
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    size_ratio: float | None = None  # vs the baseline artifact
    macs: int | None = None
    gmacs_per_s: float | None = None
    runtime: str | None = None
    delegates: list = field(default_factory=list)
    runtime_settings: dict = field(default_factory=dict)  # threads, XNNPACK, ORT session options
    load_seconds: float | None = None
    first_inference_ms: float | None = None
    latency: dict | None = None  # pooled runs of all rounds: min/mean/std/p50/p90/p99/max_ms, throughput, ci95_ms
    speedup: dict | None = None  # vs: baseline id, ratio (>1 faster), ci95, within_noise
    memory_mb: dict | None = None  # peak, load_delta, run_delta (median over rounds)
    accuracy: dict | None = None  # metric, value, delta_points vs baseline, agreement figures
    parity: dict | None = None  # outputs on this target vs the same artifact on the local CPU
    size_note: str | None = None  # why a quantized file is not smaller than its baseline (bench/filebytes.py)

    @property
    def ok(self):
        return self.status == "ok"


@dataclass
class Report:
    rows: list = field(default_factory=list)
    targets: list = field(default_factory=list)  # {name, kind, emulated, machine, seconds, status, error}
    settings: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)  # source, samples, labels, synthetic
    reference: dict | None = None  # the Keras model's accuracy, from the converter's evaluation.npz
    source: str | None = None  # the manifest benchmarked, if any
    created: str | None = None
    files: dict = field(default_factory=dict)  # what was written: report.json, report.md, plots

    def to_dict(self):
        d = asdict(self)
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}

    @classmethod
    def from_dict(cls, d):
        if d.get("schema") != SCHEMA:
            raise BenchmarkError("not an edgeopt benchmark report (its 'schema' field is missing or different)")
        if d.get("schema_version", 0) > SCHEMA_VERSION:
            raise BenchmarkError(f"report schema version {d['schema_version']} is newer than this edgeopt; upgrade")
        known = set(Row.__dataclass_fields__)
        rows = [Row(**{k: v for k, v in r.items() if k in known}) for r in d.get("rows", [])]
        fields = {k: d[k] for k in ("targets", "settings", "evaluation", "reference", "source", "created", "files")
                  if k in d}
        return cls(rows=rows, **fields)

    @classmethod
    def load(cls, path) -> "Report":
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_JSON
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise BenchmarkError(f"no benchmark report at {str(path)!r}") from None
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{str(path)!r} is not valid JSON ({e})") from None

    @property
    def ok(self):
        """No failed row or target, and no output that differs between a target and the local CPU."""
        return (all(r.status != "failed" and (r.parity or {}).get("verdict", "ok") == "ok" for r in self.rows)
                and all(t.get("status") != "failed" for t in self.targets))

    def save(self, folder) -> dict:
        folder = Path(folder)
        self.files.update({"json": REPORT_JSON, "markdown": REPORT_MD})
        write_text_atomic(folder / REPORT_MD, markdown(self))
        write_json_atomic(folder / REPORT_JSON, self.to_dict())
        return {k: folder / v for k, v in self.files.items()}


# ---- tables ----------------------------------------------------------------------------------------
HEADERS = ["target", "artifact", "format", "precision", "threads", "size", "vs base", "p50 ms (95% CI)", "speedup",
           "GMAC/s", "peak MB", "accuracy", "Δ acc", "parity", "status"]
ALIGN = "llllrrrrrrrrrrl"


def short_names(ids) -> dict:
    """Artifact ids without the prefix they all share ('digits_cnn.pruned50.'), which says nothing in a table."""
    unique = list(dict.fromkeys(ids))
    prefix = os.path.commonprefix(unique) if len(unique) > 1 else ""
    prefix = prefix[: prefix.rfind(".") + 1]
    return {i: i[len(prefix):] or i for i in unique}


def _row_cells(r: Row, names: dict) -> list:
    lat, sp, acc, mem = r.latency or {}, r.speedup or {}, r.accuracy or {}, r.memory_mb or {}
    if lat:
        lo, hi = lat["ci95_ms"]
        p50 = f"{_ms(lat['p50_ms'])} ({_ms(lo)}-{_ms(hi)})"
    else:
        p50 = "-"
    if sp.get("vs") == r.artifact:
        speed = "base"
    elif sp.get("ratio") is None:
        speed = "-"
    else:
        speed = ("≈" if sp["within_noise"] else "") + f"{sp['ratio']:.2f}x"
    delta = acc.get("delta_points")
    marks = [m for m, on in (("emulated", r.emulated), ("synthetic calibration", r.synthetic_calibration)) if on]
    status = r.status + (f" ({', '.join(marks)})" if marks and r.ok else "")
    if r.parity and r.parity.get("verdict") != "ok":
        status += " PARITY"
    return [
        r.target, names[r.artifact], r.format, r.precision, r.threads or "auto", human_bytes(r.size_bytes),
        "-" if r.size_ratio is None else f"{r.size_ratio:.2f}x", p50, speed,
        "-" if r.gmacs_per_s is None else f"{r.gmacs_per_s:.2f}", "-" if not mem else f"{mem['peak']:.1f}",
        pct(acc.get("value")) if acc.get("value") is not None else _agreement(acc),
        "-" if delta is None else f"{delta:+.1f}", _parity(r.parity), status,
    ]


def _parity(p):
    """How far this target's outputs are from the local CPU's: in LSB for int8, else max |diff|."""
    if not p:
        return "-"
    if p.get("verdict") == "failed":
        return "failed"
    return f"{p['lsb']:.2g} LSB" if p.get("lsb") is not None else f"{p['max_abs_diff']:.2g}"


def _agreement(acc):
    a = acc.get("top1_agreement")
    return "-" if a is None else f"{pct(a)} agr"


def _ms(v):
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"  # three significant digits: 0.0141, 12.2, 153


def table(report: Report, markdown_format=False) -> str:
    names = short_names([r.artifact for r in report.rows])
    rows = [_row_cells(r, names) for r in report.rows]
    headers, align = HEADERS, ALIGN
    prefix = _common_prefix(names)
    if prefix:
        headers = [f"artifact ({prefix}…)" if h == "artifact" else h for h in headers]
    if len({r.target for r in report.rows}) <= 1:  # one target: no column for it, and no parity to show
        keep = [i for i, h in enumerate(headers) if h not in ("target", "parity")]
        rows = [[c[i] for i in keep] for c in rows]
        headers, align = [headers[i] for i in keep], "".join(align[i] for i in keep)
    return render(headers, rows, markdown=markdown_format, align=align)


def _common_prefix(names: dict) -> str:
    full, short = next(iter(names.items()), ("", ""))
    return full[: len(full) - len(short)]


def headline(report: Report) -> list:
    lines = []
    ev = report.evaluation
    if ev:
        what = "synthetic inputs (latency only; agreement with the baseline)" if ev.get("synthetic") else ev.get("source")
        lines.append(f"evaluation: {ev.get('samples')} samples from {what}"
                     + ("" if ev.get("labels") else "; no labels, so accuracy is agreement with the reference"))
    if report.reference and report.reference.get("accuracy") is not None:
        lines.append(f"Keras model ({report.reference['artifact']}): accuracy {pct(report.reference['accuracy'])} "
                     "(from the converter's reference outputs)")
    for t in report.targets:
        m = (t.get("machine") or {}).get("cpu", {})
        desc = f"target {t['name']}: {m.get('model', '?')} ({m.get('arch', '?')}, {m.get('cores', '?')} cores)"
        if t.get("emulated"):
            desc += " EMULATED: latency and memory are not device figures"
        if t.get("status") == "failed":
            desc += f" FAILED: {t.get('error')}"
        lines.append(desc)
    s = report.settings
    if s:
        t = s.get("timing", {})
        rounds = s.get('rounds')
        lines.append(f"{rounds} interleaved round{'s' if rounds != 1 else ''}, each measurement at least {t.get('min_runs')} runs and "
                     f"{t.get('min_seconds')} s after {t.get('warmup_runs')} warm-up runs; speedup is the baseline's "
                     "p50 / this p50, ≈ marks a difference within noise (the ratio's 95% interval contains 1)")
    return lines


def what_it_bought(report: Report) -> str:
    """One line per optimized file at the fewest threads measured, on each target: size, speed and accuracy
    against its baseline. Empty when no row has a baseline other than itself."""
    rows = [r for r in report.rows if r.ok and (r.speedup or {}).get("vs") not in (None, r.artifact)]
    if not rows:
        return ""
    fewest = min(r.threads or 0 for r in rows)
    rows = [r for r in rows if (r.threads or 0) == fewest]
    by_key = {(r.target, r.artifact, r.threads): r for r in report.rows}
    bases = [by_key.get((r.target, r.speedup["vs"], r.threads)) for r in rows]
    fp32 = all(b is not None and b.precision == "fp32" and b.format == r.format for b, r in zip(bases, rows))
    against = "the fp32 file of the same format" if fp32 else ", ".join(sorted({r.speedup["vs"] for r in rows}))
    threads = f"{fewest} thread{'s' if fewest != 1 else ''}" if fewest else "automatic threads"
    lines = [f"What each optimization bought ({threads}, against {against}):"]
    for r in rows:
        sp, acc = r.speedup, r.accuracy or {}
        speed = ("no measurable change in speed" if sp["within_noise"] else
                 f"{sp['ratio']:.2f}x faster" if sp["ratio"] > 1 else f"{1 / sp['ratio']:.2f}x slower")
        delta = acc.get("delta_points")
        kept = "" if delta is None else f", accuracy {delta:+.1f} points"
        where = f" on {r.target}" if len(report.targets) > 1 else ""
        size = "" if r.size_ratio is None else f"{r.size_ratio:.2f}x the size, "
        lines.append(f"  {r.artifact}{where}: {size}{speed}{kept}")
    return "\n".join(lines)


def size_notes(report: Report) -> list:
    """Each explanation once: rows of one file on several targets and thread counts share it."""
    return list(dict.fromkeys(r.size_note for r in report.rows if r.size_note))


def problems(report: Report) -> list:
    """(where, what) for every row that failed or whose outputs differ from the local CPU's."""
    found = [(f"{r.target} {r.artifact} threads={r.threads}", r.error) for r in report.rows if r.error]
    found += [(f"{r.target} {r.artifact} threads={r.threads}", f"outputs differ from the local CPU's: {r.parity.get('reason')}")
              for r in report.rows if r.parity and r.parity.get("verdict") != "ok"]
    return found


def console(report: Report) -> str:
    lines = headline(report) + [table(report)]
    found = problems(report)
    if found:
        lines += ["problems:"] + [f"  {where}: {what}" for where, what in found]
    bought = what_it_bought(report)
    if bought:
        lines += ["", bought]
    notes = size_notes(report)
    if notes:
        lines += ["", SIZE_TITLE + ":"] + [f"  {n}" for n in notes]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    lines = ["# Benchmark report", ""]
    lines += [f"- {line}" for line in headline(report)]
    lines += ["", table(report, markdown_format=True), ""]
    found = problems(report)
    if found:
        lines += ["## Problems", ""] + [f"- **{where}**: {what}" for where, what in found] + [""]
    bought = what_it_bought(report)
    if bought:
        title, *items = bought.splitlines()
        lines += ["## " + title.rstrip(":"), ""] + [f"- {item.strip()}" for item in items] + [""]
    notes = size_notes(report)
    if notes:
        lines += [f"## {SIZE_TITLE}", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Machines", "", machines_table(report.targets)]
    plots = {k: v for k, v in report.files.items() if k.startswith("plot")}
    if plots:
        lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"
