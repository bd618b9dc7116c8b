"""`edgeopt bench`: latency, memory and accuracy of every artifact; a table, report.json/.md and plots.

Exit codes: 0 every file measured, at parity everywhere, no warning; 1 a file or target failed its
measurement (the others are kept), or, with --strict, a warning; 2 bad input; 3 a regression past
--fail-on-regression; 4 everything measured, with warnings (a file's outputs deviate on a target,
or a file runs on a CPU it was not made for).
"""

from __future__ import annotations

import sys

FAILED_EXIT, REGRESSION_EXIT, WARNING_EXIT = 1, 3, 4


def add(sub):
    p = sub.add_parser("bench", help="measure latency, memory and accuracy of converted models")
    p.add_argument("models", nargs="+", help="a converter output folder, or .tflite/.onnx files")
    p.add_argument("--target", action="append", dest="targets", metavar="TARGET",
                   help="where to run: local (default), aarch64-emulated, x86-64-avx2, ssh://user@host[:port]; "
                   "repeatable")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--min-runs", type=int, help="timed runs per measurement, at least (default 50)")
    p.add_argument("--min-seconds", type=float, help="seconds per measurement, at least (default 1.0)")
    p.add_argument("--warmup-runs", type=int, help="untimed runs first (default 10)")
    p.add_argument("--evaluation", help=".npz with x (and optional y) to score on (default: the converter's)")
    p.add_argument("--samples", type=int, default=1000, help="at most this many samples scored")
    p.add_argument("--baseline", help="artifact id speedups refer to (default: the fp32 file of each format)")
    p.add_argument("--metric", help="module:function(outputs, labels) -> float (default: top-1 accuracy)")
    p.add_argument("--out", help="folder for the report and plots (default: the converter folder)")
    p.add_argument("--compare", metavar="OLD_REPORT", help="an earlier report.json to compare with")
    p.add_argument("--fail-on-regression", metavar="PERCENT",
                   help=f"with --compare: exit {REGRESSION_EXIT} when an artifact is this much slower")
    p.add_argument("--accuracy-tolerance", type=float, default=1.0,
                   help="with --compare: accuracy points an artifact may lose (default: %(default)s)")
    p.add_argument("--strict", action="store_true",
                   help=f"parity warnings fail the run (exit {FAILED_EXIT} instead of {WARNING_EXIT})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_bench)


def _bench(args):
    from ..bench.harness import benchmark
    from ..bench.regression import find_regressions, parse_percent
    from ..bench.report import Report, console
    from ..errors import BenchmarkError

    if args.fail_on_regression and not args.compare:
        raise BenchmarkError("--fail-on-regression needs --compare OLD/report.json to compare with")
    limit = parse_percent(args.fail_on_regression) if args.fail_on_regression else None
    old = Report.load(args.compare) if args.compare else None  # before measuring: a bad path fails fast
    timing = {k: v for k, v in {"min_runs": args.min_runs, "min_seconds": args.min_seconds,
                                "warmup_runs": args.warmup_runs}.items() if v is not None}
    source = args.models[0] if len(args.models) == 1 else args.models
    report = benchmark(source, targets=args.targets or ["local"], threads=_threads(args.threads),
                       rounds=args.rounds, timing=timing, evaluation=args.evaluation, samples=args.samples,
                       baseline=args.baseline, metric=args.metric, out=args.out, progress=not args.quiet)
    print(console(report))
    code = exit_code(report, args.strict)
    if old is not None:
        found = find_regressions(old, report, limit or float("inf"), args.accuracy_tolerance)
        for line in found:
            print(f"regression: {line}", file=sys.stderr)
        if found and limit is not None:
            return REGRESSION_EXIT
        if not found:
            print(f"no regression against {args.compare}")
    return code


def exit_code(report, strict=False) -> int:
    """0 clean, 1 a failure (or a warning under --strict), 4 warnings only."""
    if not report.ok:
        return FAILED_EXIT
    if report.warnings():
        return FAILED_EXIT if strict else WARNING_EXIT
    return 0


def _threads(text):
    from ..errors import BenchmarkError

    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise BenchmarkError(f"--threads takes whole numbers such as 1,4, got {text!r}") from None
