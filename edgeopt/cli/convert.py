"""`edgeopt convert`: flags (or a YAML recipe) in, converted and checked files out."""

from __future__ import annotations

import sys

from .tf_log import add_verbose_flag, tensorflow_output_kept, where_the_log_is


def add(sub):
    p = sub.add_parser("convert", help="prune, quantize and export a Keras model; check every file")
    p.add_argument("model", nargs="?", help=".keras / .h5 file or SavedModel folder (default: the recipe's model)")
    p.add_argument("--recipe", help="YAML recipe (flags below override it)")
    p.add_argument("--out", default="edgeopt-out", help="output folder (default: %(default)s)")
    p.add_argument("--prune", type=float, metavar="SPARSITY", help="pruning-aware fine-tuning to this sparsity, e.g. 0.5")
    p.add_argument("--prune-epochs", type=int, help="fine-tuning epochs")
    p.add_argument("--m-by-n", help="structured sparsity such as 2:4")
    p.add_argument("--formats", help="comma-separated: tflite,onnx")
    p.add_argument("--precisions", help="comma-separated: fp32,fp16,int8-dynamic,int8")
    p.add_argument("--calibration", help="representative inputs: .npz (x), module:function, digits, or synthetic "
                   "(random inputs of the model's shapes in a plausible range; results are marked synthetic)")
    p.add_argument("--evaluation", help="inputs (x) and optional labels (y) to check every file on (or synthetic)")
    p.add_argument("--train", help="training data (x, y) for pruning")
    p.add_argument("--calibration-samples", type=int, help="how many calibration samples to use")
    p.add_argument("--fixed-batch", type=int, metavar="N",
                   help="batch TFLite exports are traced at when the model needs a static one (default 1)")
    p.add_argument("--trust-model-code", action="store_true",
                   help="load Lambda layers and custom classes: this runs code stored in the model file")
    p.add_argument("--no-reuse", action="store_true", help="redo every step even if an earlier run matches")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verbose_flag(p)
    p.set_defaults(func=_convert)


def _convert(args):
    from ..pipeline import convert
    from ..recipe import load_recipe
    from ..summary import conversion_table

    base = load_recipe(args.recipe).to_dict() if args.recipe else {}
    recipe = _apply_flags(base, args)
    with tensorflow_output_kept(args.out, args.verbose):
        manifest = convert(args.model, recipe, calibration=args.calibration, evaluation=args.evaluation,
                           train=args.train, out=args.out, reuse=not args.no_reuse, progress=not args.quiet,
                           trust_model_code=args.trust_model_code)
    print(conversion_table(manifest))
    kept = len(manifest.artifacts) - len(manifest.of_run())
    if kept:
        print(f"({kept} of these records were made by earlier runs into {args.out} and are kept)")
    print(where_the_log_is(args.out, args.verbose))
    return 0 if all(a.status != "failed" for a in manifest.of_run()) else 1


def _apply_flags(recipe: dict, args) -> dict:
    from .. import capabilities
    from ..errors import RecipeError

    if args.prune is not None or args.m_by_n or args.prune_epochs:
        prune = dict(recipe.get("prune") or {})
        if args.prune is not None:
            prune["target_sparsity"] = args.prune
        if args.m_by_n:
            prune["m_by_n"] = args.m_by_n
        if args.prune_epochs:
            prune["epochs"] = args.prune_epochs
        recipe["prune"] = prune
    if args.fixed_batch:
        recipe["fixed_batch"] = args.fixed_batch
    if args.calibration_samples:
        recipe.setdefault("data", {})["calibration_samples"] = args.calibration_samples
    if args.formats or args.precisions:
        formats = _split(args.formats) or capabilities.FORMATS
        precisions = _split(args.precisions) or capabilities.PRECISIONS
        bad = [f"unknown format {f!r} (valid: {', '.join(capabilities.FORMATS)})" for f in formats
               if f not in capabilities.FORMATS]
        bad += [f"unknown precision {p!r} (valid: {', '.join(capabilities.PRECISIONS)})" for p in precisions
                if p not in capabilities.PRECISIONS]
        if bad:
            raise RecipeError(bad)
        exports = [{"format": f, "precision": p} for f in formats for p in precisions if capabilities.find(f, p)]
        missing = [f"{f}/{p}" for f in formats for p in precisions if not capabilities.find(f, p)]
        if missing:
            print(f"note: no such export, skipped: {', '.join(missing)} (see `edgeopt formats`)", file=sys.stderr)
        recipe["exports"] = exports
    return recipe


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else []
