"""`edgeopt demo`: the whole story on bundled data, offline."""

from .tf_log import add_verbose_flag, tensorflow_output_kept, where_the_log_is


def add(sub):
    p = sub.add_parser("demo", help="train a digits CNN offline and run the whole converter on it")
    p.add_argument("--out", default="edgeopt-demo", help="output folder (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_verbose_flag(p)
    p.set_defaults(func=_demo)


def _demo(args):
    from ..demo import run_demo

    with tensorflow_output_kept(args.out, args.verbose):
        manifest, report = run_demo(args.out, progress=not args.quiet)
    print(where_the_log_is(args.out, args.verbose))
    return 0 if all(a.status != "failed" for a in manifest.artifacts) and report.ok else 1
