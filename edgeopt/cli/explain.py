"""`edgeopt explain OUT_DIR`: why each quantized file lost accuracy or speed; explain.md/.json/.html and plots."""

from __future__ import annotations


def add(sub):
    p = sub.add_parser("explain", help="per-layer error, per-operator time and a verdict for every quantized file")
    p.add_argument("source", help="a converter output folder (with manifest.json)")
    p.add_argument("--files", help="comma-separated artifact ids to explain (default: every quantized file)")
    p.add_argument("--evaluation", help=".npz with x (and y) for per-layer error (default: the converter's)")
    p.add_argument("--calibration", help="calibration data for the float fallbacks, if the converter's cannot be "
                   "loaded again (.npz, module:function, digits)")
    p.add_argument("--report", help="a benchmark report.json with per-operator profiles (default: the folder's; "
                   "else one is measured)")
    p.add_argument("--target", action="append", dest="targets", metavar="TARGET",
                   help="where to profile when no report has profiles: local (default), aarch64-emulated, ssh://...")
    p.add_argument("--threads", default="1", help="thread counts to profile at (default: %(default)s)")
    p.add_argument("--no-fallback", action="store_true", help="do not make and measure float fallbacks")
    p.add_argument("--snr-threshold", type=float, default=20.0,
                   help="dB: the first layer below this is where a file diverged (default: %(default)s)")
    p.add_argument("--samples", type=int, default=128, help="evaluation samples for per-layer error (default: 128)")
    p.add_argument("--out", help="folder for the results (default: SOURCE/explain)")
    p.add_argument("--trust-model-code", action="store_true",
                   help="load Lambda layers and custom classes (TFLite's debugger reloads the Keras model)")
    p.set_defaults(func=_explain)


def _explain(args):
    from ..explainer.run import explain
    from .bench import _threads

    files = [f.strip() for f in args.files.split(",") if f.strip()] if args.files else None
    explain(args.source, files=files, evaluation=args.evaluation, calibration=args.calibration, report=args.report,
            targets=args.targets or ["local"], threads=_threads(args.threads), fallback=not args.no_fallback,
            snr_threshold_db=args.snr_threshold, samples=args.samples, out=args.out,
            trust_model_code=args.trust_model_code)
    return 0
