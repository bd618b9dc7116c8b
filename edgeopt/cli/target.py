"""`edgeopt target check SPEC` and `edgeopt target setup aarch64-emulated|x86-64-avx2`: get a benchmark target ready."""


def add(sub):
    p = sub.add_parser("target", help="check a benchmark target, or set up an emulated one")
    actions = p.add_subparsers(metavar="action")
    check = actions.add_parser("check", help="what a target is and whether it can run the benchmark")
    check.add_argument("spec", help="local, aarch64-emulated, x86-64-avx2, or "
                                    "ssh://user@host[:port][?python=...&workdir=...]")
    check.set_defaults(func=_check)
    setup = actions.add_parser("setup", help="build an emulator into the cache (once; no root)")
    setup.add_argument("spec", choices=["aarch64-emulated", "x86-64-avx2"])
    setup.add_argument("--cpu", default=None, help="aarch64-emulated only: the emulated CPU (neoverse-n1, "
                                                   "cortex-a76, cortex-a72; default neoverse-n1)")
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
    from ..errors import TargetError

    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.spec == "x86-64-avx2":
        from ..bench import x86_emulator

        if args.cpu:
            raise TargetError("--cpu applies to aarch64-emulated only: x86-64-avx2 always emulates a Haswell")
        x86_emulator.setup(force=args.force, log=log)
        return 0
    from ..bench.emulator_setup import setup

    setup(cpu=args.cpu or DEFAULT_CPU, force=args.force, log=log)
    return 0
