"""`edgeopt optimize MODEL --budget 1.0 --target local ...`: search for the file to ship on each target.

Exit codes: 0 every target has a recommendation, 1 some target has none (nothing met the budget, or its
measurement failed: the report says why), 2 bad input.
"""

from __future__ import annotations

from .tf_log import add_verbose_flag, tensorflow_output_kept, where_the_log_is


def add(sub):
    p = sub.add_parser("optimize", help="search formats, precisions and quantization options under an accuracy "
                       "budget, measured on each target; recommend one file per target")
    p.add_argument("model", help=".keras / .h5 file or SavedModel folder")
    p.add_argument("--budget", type=float, default=1.0, help="loss allowed (default: %(default)s accuracy points)")
    p.add_argument("--budget-metric", default="accuracy", choices=["accuracy", "agreement", "max-error"],
                   help="what the budget counts: accuracy points lost (needs labels; without labels: agreement), "
                        "points of top-1 disagreement with the source model, or max abs error")
    p.add_argument("--max-latency", type=float, metavar="MS", help="also require at most this p50 (ms) on every target")
    p.add_argument("--max-size", metavar="SIZE", help="also require at most this file size, e.g. 4MB or 512KB")
    p.add_argument("--target", action="append", dest="targets", metavar="TARGET",
                   help="where to measure: local, aarch64-emulated, ssh://user@host (repeat; default local)")
    p.add_argument("--calibration", help="representative inputs for int8: .npz (x), module:function, digits")
    p.add_argument("--evaluation", help="inputs (x) and optional labels (y) every candidate is judged on "
                   "(default: the calibration data)")
    p.add_argument("--train", help="training data (x, y): enables training-step candidates (pruning, ...)")
    p.add_argument("--trials", type=int, default=24, help="distinct post-training candidates to try (default %(default)s)")
    p.add_argument("--training-trials", type=int, default=4,
                   help="training candidates, tried only when no post-training file meets the budget")
    p.add_argument("--time", metavar="DURATION", help="stop starting new candidates after this long, e.g. 30m")
    p.add_argument("--formats", help="comma-separated subset of tflite,onnx")
    p.add_argument("--precisions", help="comma-separated subset of fp32,fp16,int8-dynamic,int8")
    p.add_argument("--threads", help="comma-separated thread counts to measure (default: 1 and all cores)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per search batch (default %(default)s)")
    p.add_argument("--final-rounds", type=int, default=5, help="rounds of the final side-by-side run")
    p.add_argument("--min-runs", type=int, help="timed runs per measurement at least (default: bench's)")
    p.add_argument("--min-seconds", type=float, help="timed seconds per measurement at least (default: bench's)")
    p.add_argument("--batch-size", type=int, default=8, help="candidates asked of Optuna per batch")
    p.add_argument("--workers", type=int, default=1, help="local conversion processes (default %(default)s)")
    p.add_argument("--ray", metavar="auto|ADDRESS", help="run candidates as tasks on this Ray cluster")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite in OUT/study.db)")
    p.add_argument("--study-name", help="share a study by name (default: derived from model, data and settings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-model-code", action="store_true",
                   help="load Lambda layers and custom classes: this runs code stored in the model file")
    p.add_argument("--out", default="edgeopt-search", help="output folder (default: %(default)s)")
    add_verbose_flag(p)
    p.set_defaults(func=_optimize)


def _optimize(args):
    from ..errors import RecipeError
    from ..search.budget import parse_duration, parse_size
    from ..search.outcome import console_summary

    timing = {k: v for k, v in (("min_runs", args.min_runs), ("min_seconds", args.min_seconds)) if v is not None}
    try:
        threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    except ValueError:
        raise RecipeError(f"--threads takes comma-separated whole numbers such as 1,2, got {args.threads!r}") from None
    limits = {"max_size_bytes": parse_size(args.max_size) if args.max_size else None,
              "time_limit": parse_duration(args.time) if args.time else None}  # bad input: before any folder exists
    with tensorflow_output_kept(args.out, args.verbose):  # the conversion processes inherit the redirection
        result = _search(args, timing, threads, limits)
    print(console_summary(result))
    print(where_the_log_is(args.out, args.verbose))
    return 0 if all(r.point for r in result.recommendations.values()) else 1


def _search(args, timing, threads, limits):
    from ..search.engine import optimize

    return optimize(
        args.model, budget=args.budget, budget_metric=args.budget_metric, max_latency_ms=args.max_latency,
        targets=args.targets or ["local"],
        calibration=args.calibration, evaluation=args.evaluation, train=args.train, trials=args.trials,
        training_trials=args.training_trials,
        formats=_split(args.formats), precisions=_split(args.precisions), threads=threads, rounds=args.rounds,
        final_rounds=args.final_rounds, timing=timing or None, batch_size=args.batch_size, workers=args.workers,
        ray=args.ray, storage=args.storage, study_name=args.study_name, seed=args.seed, out=args.out,
        trust_model_code=args.trust_model_code, **limits)


def _split(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else None
