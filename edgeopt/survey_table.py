"""survey.md: one row per model, one column per export, and the specific reason for every failure."""

from __future__ import annotations

from collections import Counter

from .table import render

# (format, precision, column title), in the order a reader compares them.
_COLUMNS = [("tflite", "fp32", "TFLite fp32"), ("tflite", "fp16", "fp16"), ("tflite", "int8-dynamic", "int8-dyn"),
            ("tflite", "int8", "int8"), ("onnx", "fp32", "ONNX fp32"), ("onnx", "int8-dynamic", "int8-dyn"),
            ("onnx", "int8", "int8")]


def survey_markdown(report: dict) -> str:
    notes = []
    rows = [_row(r, notes) for r in report["rows"]]
    headers = ["model", "Keras", "loader", "layers of note", *(title for _, _, title in _COLUMNS), "time"]
    lines = [
        f"# Survey of `{report['folder']}`",
        "",
        f"Every model converted by `edgeopt convert` with all exports; every file checked against the Keras model "
        f"on {report['samples']} **synthetic** inputs (random, of the model's input shape, dtype and a plausible "
        "range), and every int8 file **calibrated on synthetic inputs**: the figures prove the conversions are "
        "faithful, not that the models are accurate. Cells: `ok` with the max abs error against Keras, or the "
        "failure, explained below. `b1`: TFLite traced at a fixed batch of 1.",
        "",
        render(headers, rows, markdown=True),
    ]
    if notes:
        lines += ["", "## Why each failure happened", ""] + [f"{i}. {text}" for i, text in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def _row(r, notes):
    arts = {(a["format"], a["precision"]): a for a in r.get("artifacts", [])}  # the survey makes one of each
    cells = []
    for fmt, precision, _ in _COLUMNS:
        a = arts.get((fmt, precision))
        if a is None:
            cells.append("-")
        elif a["status"] == "ok":
            err = a.get("max_abs_error")
            cells.append(f"ok {err:.1e}" if err is not None else "ok")
        else:
            notes.append(f"**{r['model']}** {fmt} {precision}: {a['error']}")
            cells.append(f"{a['status']} ({len(notes)})")
        if a is not None and a.get("fixed_batch") and fmt == "tflite" and cells[-1] != "-":
            cells[-1] += " b1" if a["fixed_batch"] == 1 else f" b{a['fixed_batch']}"
    if r.get("error"):
        notes.append(f"**{r['model']}** ({r['status']}): {r['error']}")
        cells = [f"{r['status']} ({len(notes)})"] + ["-"] * (len(_COLUMNS) - 1)
    note = _layers_of_note(r)
    return [r["model"], r.get("saved_keras_version") or "?", r.get("loader") or "-", note, *cells,
            f"{r.get('seconds', 0):.0f}s"]


def _layers_of_note(r) -> str:
    """'recurrent: LSTM x4; nested models: Sequential x2' from labels such as 'lstm_1 (LSTM)'."""
    kinds = dict(r.get("layers_of_note") or {})
    if r.get("stored_code"):
        kinds.setdefault("stored code", r["stored_code"])
    parts = []
    for kind, labels in kinds.items():
        classes = Counter(label.rsplit("(", 1)[-1].rstrip(")") for label in labels)
        listed = ", ".join(f"{cls} x{n}" if n > 1 else cls for cls, n in classes.items())
        parts.append(f"{kind.replace('_', ' ')}: {listed}")
    if any("Windows" in w for w in r.get("warnings", [])):
        parts.append("repaired: Windows weight names")
    return "; ".join(parts) or "-"
