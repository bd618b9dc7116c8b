"""Channel pruning over ../shared/realmodels: every model pruned by 30% of its channels, or refused
with the layer named. One row per model in channels.md and channels.json (beside survey.md).

No data comes with these models: the surgery is proven on synthetic inputs of each model's shape
(the zeroed original against the pruned model), and nothing is fine-tuned, so the figures say what
the surgery did, not how accurate a pruned model would be after training.

    .venv/bin/python benchmarks/realmodels/channels.py [/work/shared/realmodels] [--out benchmarks/realmodels]

Each model is pruned in a process of its own (`--one PATH`), so a crash inside TensorFlow costs one row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FRACTION = 0.3
TIMEOUT_S = 900
JSON_NAME, MD_NAME = "channels.json", "channels.md"


def prune_one(path: Path) -> dict:
    """One model's row, in this process: load, prune 30% of its channels (l1, no fine-tuning), check shapes."""
    import edgeopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    from edgeopt.converter.keras_io import load_model
    from edgeopt.errors import EdgeoptError
    from edgeopt.steps.channels import prune_channels

    row = {"model": path.stem}
    try:
        loaded = load_model(path)
        row.update(loader=loaded.info["loader"], layers=loaded.info["layer_types"],
                   layers_of_note=loaded.info["layers_of_note"])
        smaller, record = prune_channels(loaded.model, {"target": FRACTION, "epochs": 0}, None, progress=False,
                                         log=lambda *a: None)
    except EdgeoptError as e:
        return {**row, "status": "refused", "error": str(e)}
    shapes = [_shapes(loaded.model.inputs), _shapes(loaded.model.outputs)]
    same_shapes = shapes == [_shapes(smaller.inputs), _shapes(smaller.outputs)]
    groups = [name for name, layer in record["layers"].items() if layer.get("removed")]
    return {**row, "status": "pruned" if groups else "nothing to prune", "shapes_unchanged": same_shapes,
            "io_shapes": shapes, "macs": record["macs"], "params": record["params"], "channels": record["channels"],
            "pruned_layers": groups, "pinned": record["pinned"], "bridge": record.get("bridge"),
            "surgery_check": record["steps"][0]["surgery_check"], "error": None}


def _shapes(tensors):
    return [[None if d is None else int(d) for d in t.shape] for t in tensors]


def survey(folder: Path, out: Path) -> dict:
    from edgeopt.corpus import find_models
    from edgeopt.fileio import write_json_atomic, write_text_atomic

    report = {"schema": "edgeopt.realmodels.channels", "folder": str(folder), "fraction": FRACTION,
              "synthetic_inputs": True, "rows": []}
    models = find_models(folder)
    for i, path in enumerate(models, 1):
        print(f"[{i}/{len(models)}] {path.name} ...", flush=True)
        t0 = time.time()
        row = _in_child(path)
        row["seconds"] = round(time.time() - t0, 1)
        print(f"  {row['status']}" + (f": {row['error']}" if row.get("error") else ""), flush=True)
        report["rows"].append(row)
        write_json_atomic(out / JSON_NAME, report)
        write_text_atomic(out / MD_NAME, markdown(report))
    return report


def _in_child(path: Path) -> dict:
    try:
        done = subprocess.run([sys.executable, __file__, "--one", str(path)], capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"model": path.stem, "status": "timeout", "error": f"did not finish in {TIMEOUT_S}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        return {"model": path.stem, "status": "crashed", "error": f"exit code {done.returncode}: {tail[0][:400]}"}
    return json.loads(lines[-1])


def markdown(report) -> str:
    from edgeopt.table import render

    rows = []
    for r in report["rows"]:
        if r["status"] in ("pruned", "nothing to prune"):
            rows.append([r["model"], r.get("loader", "-"), r["status"],
                         f"{r['channels']['before']} -> {r['channels']['after']}",
                         f"{r['macs']['before']:,} -> {r['macs']['after']:,} ({r['macs']['ratio']:.2f}x)",
                         f"{r['params']['before']:,} -> {r['params']['after']:,}",
                         "yes" if r["shapes_unchanged"] else "NO", f"{r['surgery_check']['max_abs_error']:.1e}",
                         _pinned(r)])
        else:  # the first sentence names the layer and why; channels.json keeps the whole message
            rows.append([r["model"], r.get("loader", "-"), r["status"], "-", "-", "-", "-", "-",
                         r["error"].split(". ")[0]])
    return "\n".join([
        f"# Channel pruning over `{report['folder']}`", "",
        f"Every model: {report['fraction']:.0%} of the channels of every prunable group removed by the l1 criterion, "
        "no fine-tuning; the surgery proven on 32 **synthetic** inputs (the original with the removed channels' "
        "weights zeroed must give the pruned model's outputs; *surgery check* is the max abs difference). "
        "Refused models name the layer that stopped the step. Made by `benchmarks/realmodels/channels.py`.", "",
        render(["model", "loader", "status", "channels", "MACs", "parameters", "I/O shapes kept", "surgery check",
                "channels kept, or why refused"], rows, markdown=True),
    ]) + "\n"


def _pinned(r) -> str:
    why = sorted({w for p in r["pinned"] for w in p["why"]})
    return "; ".join(why) if why else "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared" / "realmodels"))
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--markdown-only", action="store_true", help=f"rewrite {MD_NAME} from {JSON_NAME}")
    args = p.parse_args(argv)
    if args.markdown_only:
        sys.path.insert(0, str(ROOT))
        (args.out / MD_NAME).write_text(markdown(json.loads((args.out / JSON_NAME).read_text())))
        return 0
    if args.one:
        print(json.dumps(prune_one(args.one), default=str), flush=True)
        return 0
    sys.path.insert(0, str(ROOT))
    survey(Path(args.folder), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
