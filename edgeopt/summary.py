"""The table `edgeopt convert` and `edgeopt demo` print: what was produced and how faithful it is."""

from .bench.filebytes import size_note
from .bench.report import SIZE_TITLE
from .table import human_bytes, pct, render


def conversion_table(manifest, markdown=False) -> str:
    fp32 = {a.format: a.size_bytes for a in manifest.artifacts if a.precision == "fp32" and a.size_bytes}
    rows = []
    for a in manifest.artifacts:
        c = a.check or {}
        base = fp32.get(a.format)
        rows.append([
            a.id, a.format, a.precision, human_bytes(a.size_bytes), human_bytes(a.gzip_bytes),
            f"{a.size_bytes / base:.2f}x" if base and a.size_bytes else "-",
            pct(c.get("accuracy")), pct(c.get("top1_agreement")),
            "-" if c.get("max_abs_error") is None else f"{c['max_abs_error']:.2g}",
            pct((a.sparsity or {}).get("model")) if a.sparsity else "-",
            a.status,
        ])
    headers = ["artifact", "format", "precision", "size", "gzip", "vs fp32", "accuracy", "agreement",
               "max abs err", "sparsity", "status"]
    table = render(headers, rows, markdown=markdown, align="lllrrrrrrrl")
    notes = [f"  {a.id}: {a.error}" for a in manifest.artifacts if a.error]
    sizes = size_notes(manifest)
    src = manifest.source
    head = f"source: {src.get('path') or src.get('name')} ({src.get('loader')})"
    pruned = next((a for a in manifest.artifacts if a.stage == "prune" and a.check), None)
    if pruned and pruned.check.get("accuracy") is not None:
        head += f"; Keras accuracy {pct(pruned.check['reference_accuracy'])} before pruning, {pct(pruned.check['accuracy'])} after"
    else:
        ref = next((a.check["reference_accuracy"] for a in manifest.artifacts
                    if a.check and a.check.get("reference_accuracy") is not None), None)
        head += f"; Keras accuracy {pct(ref)}" if ref is not None else ""
    ev = manifest.data.get("evaluation", {})
    head += f"; checked on {ev.get('samples')} {'synthetic ' if ev.get('synthetic') else ''}samples from {ev.get('source')}"
    if (manifest.data.get("calibration") or {}).get("synthetic"):
        head += "; int8 calibrated on synthetic inputs"
    return "\n".join([head, table] + (["problems:"] + notes if notes else [])
                     + ([f"{SIZE_TITLE}:"] + [f"  {n}" for n in sizes] if sizes else []))


def size_notes(manifest) -> list:
    """Why a quantized file is not smaller than the fp32 file of its format, from the two files' bytes."""
    fp32 = {a.format: a for a in manifest.artifacts if a.precision == "fp32" and a.path and a.format != "keras"}
    notes = []
    for a in manifest.artifacts:
        base = fp32.get(a.format)
        if base and a.path:
            note = size_note(a.id, manifest.path_of(a), a.format, a.precision, base.id, manifest.path_of(base))
            notes += [note] if note else []
    return notes
