"""`edgeopt survey DIR`: convert every model in a folder; one row per model, Markdown and JSON."""

import sys


def add(sub):
    p = sub.add_parser("survey", help="convert every model in a folder (synthetic data); write survey.md/.json")
    p.add_argument("folder", help="folder of .h5 / .keras files and SavedModel folders")
    p.add_argument("--out", default="survey-out", help="folder for survey.md and survey.json (default: %(default)s)")
    p.add_argument("--artifacts", help="folder for the converted files (default: OUT/models)")
    p.add_argument("--samples", type=int, default=32, help="synthetic calibration/evaluation samples (default: 32)")
    p.add_argument("--timeout", type=int, default=900, help="seconds one model may take (default: %(default)s)")
    p.add_argument("--trust-model-code", action="store_true",
                   help="load Lambda layers and custom classes: this runs code stored in the model files")
    p.set_defaults(func=_survey)


def _survey(args):
    """Exit codes as `convert`'s: 0 every model converted, 1 some model failed (its row says why), 2 bad input."""
    from pathlib import Path

    from ..corpus import SURVEY_MD, survey

    report = survey(args.folder, args.out, artifacts=args.artifacts, samples=args.samples,
                    trust_model_code=args.trust_model_code, timeout_s=args.timeout)
    print(Path(args.out, SURVEY_MD).read_text())
    short = [f"{r['model']} ({r['status']})" for r in report["rows"] if r.get("status") != "converted"]
    if short:
        print(f"edgeopt: {len(short)} of {len(report['rows'])} models did not convert cleanly: {', '.join(short)}; "
              f"their rows in {Path(args.out, SURVEY_MD)} say why", file=sys.stderr)
    return 1 if short else 0
