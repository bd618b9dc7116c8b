"""`convert` and `bench` point to explain, and run it on the files that need it.

After `convert`: the quantized files that failed their check get the accuracy part (per-layer
error, causes, fallbacks). After `bench`: the files slower than their fp32 parent get the speed
part, from the profiles just measured. `--explain` runs that command's part on every quantized
file; `--no-explain` runs nothing. Both write into OUT/explain/ and keep what the other found.
A failure here is reported and never changes the command's result.
"""

from __future__ import annotations

import sys

from ..errors import EdgeoptError


def after_convert(manifest, mode=None, log=print):
    # only this run's files: records kept from earlier runs into the folder were explained then
    failed = [a.id for a in manifest.of_run() if a.format in ("tflite", "onnx") and a.precision != "fp32"
              and a.check and not a.check.get("passed", True) and a.path]
    if mode is False or (mode is None and not failed):
        return None
    if mode is None:
        log(f"explain: {len(failed)} file(s) failed their check; finding where the error enters "
            f"(skip with --no-explain; `edgeopt explain {manifest.root}` any time)")
    return _run(manifest.root, files=None if mode else failed, speed=False, log=log)


def after_bench(report, manifest, mode=None, log=print):
    slower = sorted({r.artifact for r in report.rows if r.ok and r.precision not in ("fp32", "?") and r.speedup
                     and r.speedup.get("ratio") and r.speedup["ratio"] < 1})
    if mode is False or (mode is None and not slower):
        return None
    if manifest is None:
        from .speed import explain_rows

        for sections in explain_rows(report, set(slower) if mode is None else None).values():
            for s in sections:
                if s.get("verdict"):
                    log(f"explain: {s['verdict']}")
        return None
    if mode is None:
        log(f"explain: {len(slower)} file(s) slower than their fp32 parent; reading their profiles "
            f"(skip with --no-explain)")
    saved = getattr(report, "saved_to", None)
    path = saved / report.files["json"] if saved and report.files.get("json") else None
    return _run(manifest.root, files=None if mode else slower, accuracy=False, report_path=path, log=log)


def _run(source, files=None, accuracy=True, speed=True, report_path=None, log=print):
    from .run import explain

    try:
        return explain(source, files=files, accuracy=accuracy, speed=speed, report=report_path, log=log)
    except EdgeoptError as e:
        print(f"explain: not run: {e}", file=sys.stderr)
    except Exception as e:  # explain is advice: a bug in it must not fail the command that succeeded
        print(f"explain: failed unexpectedly ({type(e).__name__}: {e}); the command's results stand",
              file=sys.stderr)
    return None
