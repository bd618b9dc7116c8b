"""`edgeopt target check SPEC` and `edgeopt target setup aarch64-emulated`: get a benchmark target ready."""


def add(sub):
    p = sub.add_parser("target", help="check a benchmark target, or set up the aarch64 emulator")
    actions = p.add_subparsers(metavar="action")
    check = actions.add_parser("check", help="what a target is and whether it can run the benchmark")
    check.add_argument("spec", help="local, aarch64-emulated, or ssh://user@host[:port][?python=...&workdir=...]")
    check.set_defaults(func=_check)
    setup = actions.add_parser("setup", help="build the aarch64 emulator into the cache (once; no root)")
    setup.add_argument("spec", choices=["aarch64-emulated"])
    setup.add_argument("--cpu", default=None, help="emulated CPU (neoverse-n1, cortex-a76, cortex-a72; "
                                                   "default neoverse-n1)")
    setup.add_argument("--force", action="store_true", help="remove the cached emulator and build it again")
    setup.set_defaults(func=_setup)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _check(args):
    from ..bench.targets import parse_target
    from ..table import render

    target = parse_target(args.spec)
    report = target.check()
    print(f"target {target.name} ({target.kind})")
    print(render(["", ""], report.rows).split("\n", 2)[2])
    if report.ok:
        print("ready: it can run the benchmark")
        return 0
    for what, fix in report.problems:
        print(f"PROBLEM: {what}\n  fix: {fix}")
    return 1


def _setup(args):
    from ..bench.emulator import DEFAULT_CPU
    from ..bench.emulator_setup import setup

    setup(cpu=args.cpu or DEFAULT_CPU, force=args.force, log=lambda line: print(line, flush=True))
    return 0
