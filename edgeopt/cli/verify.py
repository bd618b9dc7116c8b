"""`edgeopt verify OUT_DIR`: does a convert/bench output folder match its records? `--repair` fixes what a kill left.

Exit codes: 0 the folder matches its records (files marked failed are listed as notes, not problems),
1 a problem was found (with --repair: one could not be repaired), 2 the path is not a folder.
"""

from __future__ import annotations


def add(sub):
    p = sub.add_parser("verify", help="check an output folder against its manifest and report (hashes, sizes, "
                       "leftovers, failed files, half-done swaps)")
    p.add_argument("folder", help="the output folder of `edgeopt convert` or `edgeopt bench`")
    p.add_argument("--repair", action="store_true",
                   help="roll a half-done swap forward, remove what interrupted runs left, set aside what "
                        "no longer matches its record (convert and bench do this on start)")
    p.set_defaults(func=_verify)


def _verify(args):
    from ..verification import verify

    verdict = verify(args.folder, repair=args.repair)
    print(verdict.text())
    return 0 if verdict.ok else 1
