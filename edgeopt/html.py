"""One self-contained HTML page per report: plots inline (data URIs), sortable tables, no network.

A page is a title, a few lines of facts, and sections of paragraphs, tables and images, built from
the same record as the Markdown. A small inline script sorts a table by the column clicked and
marks every plot that decoded (`data-rendered`), so a broken image shows as such. TensorFlow-free.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4;cursor:pointer;user-select:none}th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.bad td{background:#fdecea}
img{max-width:100%;border:1px solid #eee}.missing{color:#b00;font-weight:bold}ul.facts{color:#444}
.verdict{background:#f7f9fc;border-left:4px solid #4a78c2;padding:.4em .8em;margin:.4em 0}
"""

_SCRIPT = """
(function(){
  function key(cell){var t=cell.getAttribute('data-sort')||cell.textContent.trim();
    var n=parseFloat(t.replace(/[^0-9eE+.\\-]/g,''));return isNaN(n)||!/[0-9]/.test(t)?t.toLowerCase():n;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var dir=th.getAttribute('data-dir')==='asc'?'desc':'asc';
        table.querySelectorAll('th').forEach(function(h){h.removeAttribute('data-dir');});
        th.setAttribute('data-dir',dir);
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
          if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(dir==='asc'?1:-1);});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
    table.setAttribute('data-ready','1');
  });
  document.querySelectorAll('img').forEach(function(img){
    function done(){if(img.naturalWidth>0){img.setAttribute('data-rendered','1');}
      else{img.setAttribute('data-rendered','0');var p=document.createElement('p');p.className='missing';
        p.textContent='plot could not be shown: '+img.alt;img.after(p);}}
    if(img.complete){done();}else{img.addEventListener('load',done);img.addEventListener('error',done);}
  });
})();
"""


def page(title: str, facts: list, sections: list) -> str:
    """sections: [(heading, [blocks])]; a block is ("p", text), ("verdict", text), ("h3", text),
    ("table", headers, rows, bad_rows) or ("img", path, alt)."""
    body = [f"<h1>{_e(title)}</h1>", "<ul class=facts>" + "".join(f"<li>{_e(f)}</li>" for f in facts) + "</ul>"]
    for heading, blocks in sections:
        body.append(f"<h2>{_e(heading)}</h2>")
        body += [_block(b) for b in blocks]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            f"content='width=device-width,initial-scale=1'><title>{_e(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(body)}<script>{_SCRIPT}</script></body></html>\n")


def _block(block) -> str:
    kind = block[0]
    if kind == "p":
        return f"<p>{_e(block[1])}</p>"
    if kind == "verdict":
        return f"<p class=verdict>{_e(block[1])}</p>"
    if kind == "h3":
        return f"<h3>{_e(block[1])}</h3>"
    if kind == "img":
        return _image(block[1], block[2])
    headers, rows, bad = block[1], block[2], block[3] if len(block) > 3 else set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f"<tr{' class=bad' if i in bad else ''}>" + "".join(_cell(c) for c in row) + "</tr>"
                   for i, row in enumerate(rows))
    return f"<table class=sortable><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = "-" if isinstance(value, float) and not math.isfinite(value) else f"{value:.4g}"
        return f"<td class=num data-sort='{value if math.isfinite(value) else ''}'>{shown}</td>"
    text = str(value)
    numeric = text[:1].isdigit() or text[:1] in "-+." and text[1:2].isdigit()
    return f"<td{' class=num' if numeric else ''}>{_e(text)}</td>"


def _image(path, alt) -> str:
    path = Path(path)
    if not path.exists():
        return f"<p class=missing>plot missing: {_e(path.name)}</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<p><img alt='{_e(alt)}' src='data:image/png;base64,{data}'></p>"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


# ---- the two pages -----------------------------------------------------------------------------------------
def report_page(report, folder) -> str:
    """The benchmark report (report.json) as a page: headline, the table, problems, plots."""
    from .bench.machines import machine_rows
    from .bench.report import HEADERS, SIZE_TITLE, _row_cells, headline, problems, short_names, size_notes, \
        what_it_bought

    names = short_names([r.artifact for r in report.rows])
    rows = [_row_cells(r, names) for r in report.rows]
    headers = list(HEADERS)
    if len({r.target for r in report.rows}) <= 1:  # as the Markdown table: one target, no target or parity column
        keep = [i for i, h in enumerate(headers) if h not in ("target", "parity")]
        headers, rows = [headers[i] for i in keep], [[c[i] for i in keep] for c in rows]
    bad = {i for i, r in enumerate(report.rows) if not r.ok}
    blocks = [("table", headers, rows, bad)]
    sections = [("Measurements", blocks), ("What each optimization bought",
                                           [("p", line.strip()) for line in what_it_bought(report).splitlines()])]
    found = problems(report)
    if found:
        sections.append(("Problems", [("p", f"{where}: {what}") for where, what in found]))
    notes = size_notes(report)
    if notes:
        sections.append((SIZE_TITLE, [("p", n) for n in notes]))
    if report.targets:  # as report.md's machines table: one column per target
        columns = [machine_rows(t) for t in report.targets]
        keys = [k for k in columns[0] if any(c.get(k) not in (None, "") for c in columns)]
        rows = [[k, *["-" if c.get(k) in (None, "") else str(c[k]) for c in columns]] for k in keys]
        sections.append(("Machines", [("table", ["", *[t["name"] for t in report.targets]], rows, set())]))
    plots = [("img", Path(folder) / v, k) for k, v in report.files.items() if k.startswith("plot")]
    if plots:
        sections.append(("Plots", plots))
    return page("Benchmark report", headline(report), sections)


def explain_page(ex, folder) -> str:
    from .explainer.report import PARITY_NOTE, _db, _fallback_cells, _num, _pct, parity_text

    s = ex.settings
    facts = [f"source: {ex.source}", f"evaluation: {s.get('evaluation')}",
             f"first divergent layer: the first whose SNR falls below {s.get('snr_threshold_db')} dB",
             f"per-operator times: {s.get('bench_report')}"]
    facts += [f"target {m['name']}: {m.get('cpu_model')}, {m.get('features')}" for m in ex.machines]
    sections = [("Verdicts", [("verdict", v) for v in ex.verdicts] or [("p", "nothing to explain")])]
    acc = [("img", Path(folder) / ex.written["plot_snr"], "SNR along the depth")] if "plot_snr" in ex.written else []
    for f in ex.files:
        a = f.get("accuracy")
        if not a or a.get("error"):
            continue
        acc.append(("h3", f"{f['id']} against {a['reference']}"))
        rows = [[r["layer"], r["op"], _db(r["snr_db"]), f"{r.get('error_share', 0):.0%}", _db(r.get("isolated_snr_db")),
                 _num(r.get("range_over_p999")), _num(r.get("channel_spread")), _pct(r.get("clipped_fraction"))]
                for r in a["layers"]]
        bad = {i for i, r in enumerate(a["layers"]) if r["layer"] == a.get("first_divergent_layer")}
        acc.append(("table", ["layer", "op", "SNR dB", "error added", "isolated SNR dB", "range / p99.9",
                              "channel spread", "clipped"], rows, bad))
        acc += [("p", f"{c['cause']}: {c['evidence']}") for c in a.get("causes", [])]
        if a.get("fallbacks"):
            acc.append(("table", ["kept in float", "check", "max error / range", "accuracy", "size", "latency"],
                        [_fallback_cells(fb) for fb in a["fallbacks"]]))
    sections.append(("Accuracy: where the error enters", acc or [
        ("p", "per-layer error was not measured in this run (`edgeopt explain FOLDER` measures it)")]))
    sections.append(("Speed: where the time goes", _speed_blocks(ex, folder)))
    flagged = [("p", f"{f['id']}: {parity_text(f['parity'])}") for f in ex.files if f.get("parity")]
    sections.append(("Across targets", [("p", f"The {PARITY_NOTE}: {'' if flagged else 'none'}")] + flagged))
    if ex.pruning:
        sections.append(("Pruning", [("p", ex.pruning["verdict"])]))
    return page("Why: per-layer error, per-operator time", facts, sections)


def _speed_blocks(ex, folder) -> list:
    blocks = [("img", Path(folder) / ex.written["plot_op_time"], "time per op role")] \
        if "plot_op_time" in ex.written else []
    for f in ex.files:
        for sec in f.get("speed") or []:
            p = sec.get("profile")
            if not p:
                continue
            ratio = f"{sec['speedup']:.2f}x" if sec.get("speedup") else "-"
            blocks.append(("h3", f"{f['id']} on {sec['target']}, {sec['threads']} thread(s): {ratio} of "
                                 f"{sec['baseline']}"))
            rows = [[t["op_type"], t["family"], "/".join(t["precisions"]), t["count"], t["us"], f"{t['share']:.0%}"]
                    for t in p["op_types"]]
            blocks.append(("table", ["op type", "role", "runs in", "nodes", "µs per run", "share"], rows))
            if p.get("resolution_note"):
                blocks.append(("p", f"Note: {p['resolution_note']}."))
    return blocks or [("p", "no per-operator profile")]
