"""`edgeopt formats`: the capability table, printed from the one place it is declared."""


def add(sub):
    p = sub.add_parser("formats", help="list the format/precision combinations and what each needs")
    p.set_defaults(func=_formats)


def _formats(args):
    from ..capabilities import CAPABILITIES
    from ..table import render

    rows = []
    for c in CAPABILITIES:
        opts = ", ".join(f"{k}={v[1]!r}" for k, v in c.options.items()) or "-"
        rows.append([c.format, c.precision, "yes" if c.needs_calibration else "no", c.tool, c.summary, opts,
                     c.after_qat or "not offered"])
    print(render(["format", "precision", "calibration", "made by", "what it is", "options (default)", "after qat"],
                 rows))
    rules = [f"  {c.format}/{c.precision}: {r.when[0]}={r.when[1]!r} needs {r.needs[0]}="
             f"{' or '.join(map(repr, r.needs[1]))} ({r.why})" for c in CAPABILITIES for r in c.rules]
    if rules:
        print("\noption combinations:\n" + "\n".join(rules))
