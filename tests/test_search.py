"""`edgeopt optimize`: a real search (Optuna study in SQLite, real conversions and measurements) on the digits CNN,
killed halfway with SIGKILL of its process group and resumed; the recommendation, the report and the bad inputs.

One session-scoped search serves every test here (and the Ray test compares against it): 4 candidates
(the fp32 references and the single-tool default int8 files), batches of 2, short timing.

`--ray ADDRESS` runs on a real two-node Ray cluster on loopback: `ray start --head` (which owns the 'local'
target) plus a second worker node, both started and stopped by the test. That search must find the same
candidates (same keys and outputs) and follow the same recommendation rule as the local one.
"""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

SEARCH_FLAGS = ["--calibration", "digits", "--evaluation", "digits", "--precisions", "fp32,int8", "--trials", "4",
                "--batch-size", "2", "--threads", "1", "--rounds", "1", "--final-rounds", "2", "--min-runs", "10",
                "--min-seconds", "0.05"]
SEARCH_ARGS = dict(calibration="digits", evaluation="digits", precisions=["fp32", "int8"], trials=4, batch_size=2,
                   threads=[1], rounds=1, final_rounds=2, timing={"min_runs": 10, "min_seconds": 0.05})


def complete_trials(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not created yet, or a write holds the lock
        return 0


def finished_files(out) -> dict:
    """key -> (inode, mtime_ns) of each finished candidate's file and manifest: what a redo would replace."""
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    found = {}
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        if t.user_attrs.get("outcome") == "ok":
            folder = out / "candidates" / t.user_attrs["key"]
            files = [folder / t.user_attrs["artifact"]["path"], folder / "manifest.json"]
            found[t.user_attrs["key"]] = [(os.stat(f).st_ino, os.stat(f).st_mtime_ns) for f in files]
    return found


@pytest.fixture(scope="session")
def killed_and_resumed(model_h5, tmp_path_factory):
    """Start `edgeopt optimize` in its own process group, SIGKILL the group once 2 of 4 candidates are finished
    (the second batch is then converting), then resume with edgeopt.optimize() into the same folder."""
    import edgeopt

    out = tmp_path_factory.mktemp("search") / "out"
    log = open(out.parent / "killed.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edgeopt.cli", "optimize", str(model_h5), *SEARCH_FLAGS,
                             "--out", str(out)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 400
    while complete_trials(out / "study.db") < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    assert alive, "the search ended before it could be killed:\n" + (out.parent / "killed.log").read_text()[-3000:]
    before = finished_files(out)
    lines = []
    result = edgeopt.optimize(model_h5, out=out, log=lines.append, **SEARCH_ARGS)
    return {"out": out, "before": before, "after": finished_files(out), "result": result, "log": lines}


def test_search_killed_halfway_resumes_without_redoing_a_finished_candidate(killed_and_resumed):
    import optuna

    run = killed_and_resumed
    assert 2 <= len(run["before"]) < 4, run["before"]
    for key, stats in run["before"].items():  # the same files: not converted again, not even rewritten
        assert run["after"][key] == stats, key
    assert any("resuming" in line for line in run["log"]), run["log"]
    converted = " ".join(line for line in run["log"] if "converting" in line)
    labels = {c["key"]: c["candidate"]["label"] for c in run["result"].candidates}
    for key in run["before"]:
        assert labels[key] not in converted.split(": ", 1)[-1].split("; "), (labels[key], converted)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run['out'] / 'study.db'}")
    ok = [t.user_attrs["key"] for t in study.trials if t.user_attrs.get("outcome") == "ok"]
    assert len(ok) == len(set(ok)) == 4  # every candidate converted and measured exactly once


def test_recommendation_is_the_fastest_file_within_budget_in_the_side_by_side_run(killed_and_resumed):
    result = killed_and_resumed["result"]
    rec = result.recommendations["local"]
    assert rec.point is not None, rec.sentence
    final = result.final["local"]
    feasible = [p for p in final if p.feasible]
    assert rec.point.p50_ms == min(p.p50_ms for p in feasible)
    assert rec.point.loss <= result.budget.value
    roles = {p.role for p in final}
    assert {"baseline", "reference"} <= roles  # the single-tool defaults were measured in the same run
    for p in final:
        if p.role == "baseline" and p.feasible:
            assert rec.point.p50_ms <= p.p50_ms
    table = {e["key"]: e for e in result.candidates}
    assert table[rec.point.key]["outcome"] == "ok" and rec.point.key in result.fronts["local"] or \
        rec.point.role in ("baseline", "reference")
    assert "faster than fp32" in rec.sentence or "fastest file within the budget" in rec.sentence
    assert "TFLiteConverter" in rec.sentence and "quantize_static" in rec.sentence


def test_search_writes_report_plot_and_study_and_the_recommended_file_exists(killed_and_resumed):
    out, result = killed_and_resumed["out"], killed_and_resumed["result"]
    page = (out / "search.md").read_text()
    assert "**Recommendation:**" in page and result.recommendations["local"].sentence in page
    assert (out / "front-local.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "search.json").read_text())
    assert len(data["candidates"]) == 4 and data["recommendations"]["local"]["point"]["key"]
    assert result.recommended_file("local").is_file()
    assert result.study["storage"].startswith("sqlite:///") and (out / "study.db").is_file()


def copy_of_search(run, folder) -> Path:
    """The killed-and-resumed search's folder (study, candidates, evaluation data) without its measurements."""
    out = folder / "out"
    shutil.copytree(run["out"], out, ignore=shutil.ignore_patterns("final", "measurements"))
    return out


def fastest(points, allowed):
    fits = [p for p in points if allowed(p)]
    return min(fits, key=lambda p: p.p50_ms) if fits else None


def test_time_limit_and_size_ceiling_on_a_resumed_search(killed_and_resumed, model_h5, tmp_path):
    """--time spent: no new candidate starts, yet the answer comes from what was measured; --max-size rules out
    every bigger file, and the choice is the fastest file that meets both the budget and the ceiling."""
    import edgeopt

    first = killed_and_resumed["result"]
    feasible = [p for p in first.final["local"] if p.feasible]
    ceiling = min(p.size_bytes for p in feasible)
    lines = []
    result = edgeopt.optimize(model_h5, out=copy_of_search(killed_and_resumed, tmp_path), log=lines.append,
                              **{**SEARCH_ARGS, "trials": 8}, max_size_bytes=ceiling, time_limit=0.001)
    assert any("time limit reached: 4 post-training candidate(s) tried" in line for line in lines), lines
    assert not any("converting" in line for line in lines), lines
    rec, final = result.recommendations["local"], result.final["local"]
    assert rec.point is not None, rec.sentence
    assert rec.point.size_bytes <= ceiling and rec.point.loss <= result.budget.value
    assert rec.point.key == fastest(final, lambda p: p.size_bytes <= ceiling and p.loss <= result.budget.value).key
    assert all(not p.feasible for p in final if p.size_bytes > ceiling)
    assert f"at most {ceiling:,} bytes" in (tmp_path / "out" / "search.md").read_text()


def test_max_error_budget_with_a_latency_ceiling(killed_and_resumed, model_h5, tmp_path):
    """The budget as max abs error against the source model's outputs: a new study over the same candidates
    (reused files, new measurements); the choice is the fastest file within the error and the latency ceiling,
    and a ceiling no file meets gives no file and says which limits were asked."""
    import edgeopt
    from dataclasses import replace

    from edgeopt.search.budget import Budget
    from edgeopt.search.recommend import recommend

    first = killed_and_resumed["result"]
    tflite_int8 = next(p for p in first.final["local"] if p.role == "baseline" and p.format == "tflite")
    limit = tflite_int8.figures["max_abs_error"] * 1.5  # the TFLiteConverter file fits; fp32 files fit
    slowest = max(p.p50_ms for p in first.final["local"])
    lines = []
    result = edgeopt.optimize(model_h5, out=copy_of_search(killed_and_resumed, tmp_path), log=lines.append,
                              **{**SEARCH_ARGS, "budget": limit, "samples": 60}, budget_metric="max-error",
                              max_latency_ms=slowest * 10)
    assert result.budget.metric == "max-error" and not any("resuming" in line for line in lines)
    # Files are scored on the first 60 samples: the source's accuracy is taken on the same 60 (fp32 matches it).
    fp32 = next(p for p in result.final["local"] if p.role == "reference" and p.format == "tflite")
    assert fp32.figures["accuracy"] == pytest.approx(result.source_accuracy, abs=1e-9)
    rec, final = result.recommendations["local"], result.final["local"]
    assert rec.point is not None, rec.sentence
    assert rec.point.loss == rec.point.figures["max_abs_error"] <= limit
    assert rec.point.key == fastest(final, lambda p: p.figures["max_abs_error"] <= limit).key
    assert "max abs error" in rec.sentence
    for p in final:
        assert p.feasible == (p.figures["max_abs_error"] <= limit and p.p50_ms <= slowest * 10), p

    too_fast = Budget(limit, "max-error", max_latency_ms=min(p.p50_ms for p in final) / 2)
    judged = [replace(p, feasible=too_fast.within(p.loss, p.p50_ms, p.size_bytes)) for p in final]
    none = recommend("local", judged, too_fast)
    assert none.point is None and f"at most {too_fast.max_latency_ms:g} ms" in none.sentence


@pytest.mark.parametrize("flags, message", [
    (["--budget", "-1"], "the budget must be 0 or more"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--formats", "tflite,coreml"], "unknown format or precision 'coreml'"),
    (["--target", "bogus://x"], "bogus"),
    (["--max-size", "lots"], "--max-size takes a size"),
    (["--time", "soon"], "--time takes a duration"),
    (["--threads", "one"], "--threads takes comma-separated whole numbers"),
])
def test_optimize_bad_input_exits_2_naming_the_problem(flags, message, model_h5, tmp_path, capsys):
    from edgeopt.cli import main

    assert main(["optimize", str(model_h5), "--calibration", "digits", *flags, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_optimize_missing_model_exits_2(tmp_path, capsys):
    from edgeopt.cli import main

    assert main(["optimize", str(tmp_path / "nope.h5"), "--calibration", "digits", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- Ray -------------------------------------------------------------------------------------------------
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNode:
    """`ray start --block` in its own process group: stopping the group stops that node's processes only."""

    def __init__(self, args, log):
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self.proc = subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", *args], env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_for_nodes(address, n, timeout=120):
    import ray

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            alive = [node for node in ray.nodes() if node["Alive"]]
            ray.shutdown()
            if len(alive) >= n:
                return
        except (ConnectionError, RuntimeError):
            pass
        time.sleep(1)
    raise TimeoutError(f"the Ray cluster at {address} did not show {n} nodes in {timeout}s")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    if not RAY.exists():
        pytest.fail("ray is not installed: pip install -e '.[convert,test]' installs it (the 'search' extra)")
    folder = tmp_path_factory.mktemp("ray")
    temp = Path("/tmp") / f"edgeopt-ray-{os.getpid()}"  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = open(folder / "ray.log", "w")
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(100 * 1024**2)]
    head = RayNode(["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp),
                    "--resources", '{"edgeopt_target_local": 1}', *common], log)
    nodes = [head]
    try:
        wait_for_nodes(address, 1)
        nodes.append(RayNode(["--address", address, *common], log))
        wait_for_nodes(address, 2)
        yield address
    finally:
        for node in reversed(nodes):
            node.stop()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def what_was_found(result) -> dict:
    """key -> label, outcome and the figures of the file's outputs (not its bytes: tf2onnx numbers generated
    node names with a per-process counter, so the same graph converted in another process differs in names)."""
    return {e["key"]: (e["candidate"]["label"], e["outcome"], e["artifact"]["size_bytes"] // 1024,
                       {k: e["figures"]["local"].get(k) for k in ("accuracy", "agreement")})
            for e in result.candidates}


@pytest.mark.timeout(600)
def test_search_on_a_two_node_ray_cluster_matches_the_local_search(ray_cluster, killed_and_resumed, model_h5,
                                                                   tmp_path):
    import edgeopt

    lines = []
    result = edgeopt.optimize(model_h5, out=tmp_path / "ray", ray=ray_cluster, log=lines.append, **SEARCH_ARGS)
    local = killed_and_resumed["result"]
    assert result.runner == "ray"
    assert what_was_found(result) == what_was_found(local)
    feasible = {p.key for p in result.final["local"] if p.feasible}
    assert feasible == {p.key for p in local.final["local"] if p.feasible}
    rec = result.recommendations["local"]
    assert rec.point is not None, rec.sentence
    assert rec.point.p50_ms == min(p.p50_ms for p in result.final["local"] if p.feasible)
    assert {p.role for p in result.final["local"]} >= {"baseline", "reference"}
    assert result.recommended_file("local").is_file() and (tmp_path / "ray" / "search.md").is_file()


def test_edgeopt_default_onnx_int8_seed_is_found_though_the_manifest_records_its_resolved_variant(model_h5, tmp_path):
    """The converter records `int8_variant: auto` as the variant it chose (u8u8, s8, ...): the search's own
    default ONNX int8 candidate must still find its file, not fail with 'the converter made no file'."""
    from edgeopt.search.jobs import convert_candidate
    from edgeopt.search.space import Space

    seed = next(c for c in Space.build(["onnx"], ["int8"], 100).seeds()
                if c.role == "seed" and c.export.get("int8_variant") == "auto")
    result = convert_candidate({"model": str(model_h5), "recipe": seed.recipe("digits_cnn"), "export": seed.export,
                                "data": {"calibration": "digits", "evaluation": "digits"}, "out": str(tmp_path / "c")})
    assert result["status"] == "ok", result
    assert result["artifact"]["path"].endswith(".int8.onnx")


def test_a_candidate_failed_with_a_multi_line_error_keeps_the_candidate_table_one_row():
    """A recipe refused with a list of problems (one per line) must not split the Markdown row."""
    from types import SimpleNamespace

    from edgeopt.search.budget import Budget
    from edgeopt.search.outcome import candidate_rows

    refused = {"key": "k1", "outcome": "failed", "error": "invalid recipe:\n  - exports[0]: onnx/int8: no",
               "candidate": {"label": "onnx int8 (qoperator, u8u8)", "role": "search"}}
    result = SimpleNamespace(candidates=[refused], budget=Budget(1.0, "agreement"), source_accuracy=None,
                             fronts={"local": []})
    [row] = candidate_rows(result, "local")
    assert row[-1] == "failed: invalid recipe: - exports[0]: onnx/int8: no"


def test_an_option_the_model_gives_no_meaning_is_not_searched(model_h5, tmp_path):
    """`recurrent` (how LSTM/GRU layers export) is searched only for a model with recurrent layers: elsewhere every
    value but the default is refused by the converter, and each draw would cost a conversion."""
    from edgeopt.converter.keras_io import layer_classes, tf_keras
    from edgeopt.search.space import Space

    keras = tf_keras()
    rnn = keras.Sequential([keras.layers.Input((4, 3)), keras.layers.LSTM(2), keras.layers.Dense(2)])
    for name in ("rnn.h5", "rnn.keras"):
        rnn.save(tmp_path / name)
        assert "LSTM" in layer_classes(tmp_path / name)
    assert "Conv2D" in layer_classes(model_h5) and "LSTM" not in layer_classes(model_h5)
    assert layer_classes(tmp_path) is None  # not a model file: unknown, so nothing is left out

    plain = Space.build(["tflite"], ["fp32"], model_kinds=set())
    recurrent = Space.build(["tflite"], ["fp32"], model_kinds={"recurrent"})
    unknown = Space.build(["tflite"], ["fp32"])
    [cap] = plain.exports
    assert "recurrent" not in plain.searched(cap) and plain.size() == 1
    assert "recurrent" in recurrent.searched(cap) and "recurrent" in unknown.searched(cap) and recurrent.size() > 1


def test_draws_the_declarations_refuse_are_one_line_under_the_candidate_table_not_rows():
    from types import SimpleNamespace

    from edgeopt.search.budget import Budget
    from edgeopt.search.outcome import candidate_rows, refused_line

    refused = [{"key": f"k{i}", "outcome": "invalid", "error": "invalid recipe:\n  - exports[0]: onnx/int8: "
                "int8_variant=u8u8 needs quant_format=qdq", "candidate": {"label": f"onnx int8 ({i})", "role": "search"}}
               for i in range(2)]
    refused.append({"key": "k2", "outcome": "invalid", "error": "invalid recipe:\n  - exports[0]: tflite/int8: a-b\n"
                    "  - exports[0]: tflite/int8: c", "candidate": {"label": "tflite int8", "role": "search"}})
    result = SimpleNamespace(candidates=refused, budget=Budget(1.0, "agreement"), source_accuracy=None,
                             fronts={"local": []})
    assert candidate_rows(result, "local") == []
    assert refused_line(result) == ("Also drawn and refused before any work (3: combinations the declarations do not "
                                    "allow, not counted as tries): onnx/int8: int8_variant=u8u8 needs quant_format=qdq; "
                                    "tflite/int8: a-b; tflite/int8: c.")
    assert Budget(1.0, "accuracy").describe() == "at most 1 accuracy point lost"
    assert Budget(0.5, "agreement").describe().startswith("at most 0.5 points of top-1 disagreement")


def test_a_failed_onnx_int8_candidate_reports_the_converters_error_not_a_missing_file(tmp_path):
    """The converter resolves `int8_variant: auto` before the build and records it even when the build fails (here
    as the OOM-killed entropy calibration of a MobileNetV2 was recorded): the search must find that record and
    report its error."""
    from edgeopt.manifest import Artifact, Manifest
    from edgeopt.search.jobs import summarise

    crashed = ("onnxruntime int8 quantization crashed the converter process (SIGKILL: Killed, which is what the "
               "kernel's out-of-memory killer sends)")
    art = Artifact(id="m.int8.entropy.onnx", path=None, format="onnx", precision="int8", stage="onnx-quantize",
                   parent="m.fp32.onnx", status="failed", error=crashed,
                   options={"quant_format": "qdq", "calibration_method": "entropy", "int8_variant": "u8u8"},
                   facts={"int8_variant": {"asked": "auto", "variant": "u8u8"}})
    asked = {"format": "onnx", "precision": "int8", "quant_format": "qdq", "calibration_method": "entropy",
             "int8_variant": "auto"}
    result = summarise(Manifest(artifacts=[art], root=tmp_path), asked)
    assert result["status"] == "failed" and result["error"] == crashed
