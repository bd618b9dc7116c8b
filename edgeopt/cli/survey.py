"""`edgeopt survey DIR`: convert every model in a folder; one row per model, Markdown and JSON."""


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
    from ..corpus import SURVEY_MD, survey

    survey(args.folder, args.out, artifacts=args.artifacts, samples=args.samples,
           trust_model_code=args.trust_model_code, timeout_s=args.timeout)
    from pathlib import Path

    print(Path(args.out, SURVEY_MD).read_text())
    return 0
