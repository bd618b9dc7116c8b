"""Plain-text and Markdown tables: the one renderer the converter, benchmark and survey share."""


def render(headers, rows, markdown=False, align=None) -> str:
    """Columns sized to their content. `align`: a string of 'l'/'r' per column (default: left)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    align = align or "l" * len(headers)

    def fmt(values):
        parts = [v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align)]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    lines = [fmt([str(h) for h in headers])]
    if markdown:
        lines.append("|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|")
    else:
        lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def pct(x, digits=1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"
