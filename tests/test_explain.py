"""explain: per-layer error names the layer a model was built to break, its fallback is measured, the
per-operator profiles reach the report, and convert / bench point to explain by themselves.

Two session-scoped runs: a digits MLP with one layer whose channel 0 spans 1000x the others' range
(the next layer divides it back, so the float model is unchanged), converted by the CLI, whose
explain hook runs on the int8 files that fail; and a copy of the shared digits conversion
benchmarked by the CLI with --explain (every file passes its check there, so every file is timed).
"""

import json
import shutil

import pytest

from edgeopt.cli import main

from .conftest import BAD_LAYER


@pytest.fixture(scope="session")
def bad_layer_run(bad_layer_h5, tmp_path_factory):
    """`edgeopt convert` with its default explain hook; returns the folder and its explain.json."""
    out = tmp_path_factory.mktemp("bad-out")
    code = main(["convert", str(bad_layer_h5), "--formats", "tflite,onnx", "--precisions", "fp32,int8",
                 "--calibration", "digits", "--evaluation", "digits", "--out", str(out), "--quiet"])
    assert code == 1  # the int8 files fail their check: that is the point
    return out, json.loads((out / "explain" / "explain.json").read_text())


@pytest.fixture(scope="session")
def profiled_digits(converted, tmp_path_factory):
    """A copy of the shared digits conversion, benchmarked by `edgeopt bench --explain` (1 thread)."""
    _, source, _ = converted
    out = tmp_path_factory.mktemp("profiled") / "digits"
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("report*", "explain", "*.png"))
    code = main(["bench", str(out), "--threads", "1", "--rounds", "2", "--min-runs", "20", "--min-seconds", "0.05",
                 "--warmup-runs", "3", "--quiet", "--explain"])
    assert code in (0, 4)  # 4: parity warnings only (the fixture's s8 ONNX files on an x86 CPU without VNNI)
    return out, json.loads((out / "explain" / "explain.json").read_text())


def test_explain_names_exactly_the_layer_with_the_1000x_channel(bad_layer_run):
    _, explained = bad_layer_run
    int8 = [f for f in explained["files"] if f["precision"] == "int8"]
    assert {f["format"] for f in int8} == {"tflite", "onnx"}
    for f in int8:
        acc = f["accuracy"]
        assert acc["first_divergent_layer"] == BAD_LAYER, f["id"]
        assert acc["worst_layers"][0] == BAD_LAYER, f["id"]
        bad = next(r for r in acc["layers"] if r["layer"] == BAD_LAYER)
        assert bad["channel_spread"] > 100 and bad["widest_channel"] == 0
        before = [r for r in acc["layers"] if r["layer"] in ("flatten", "dense_a")]
        assert all(r["snr_db"] > 30 for r in before)  # nothing upstream is blamed
        causes = [c for c in acc["causes"] if BAD_LAYER in c["layers"]]
        assert any("channels of very different ranges" in c["cause"] for c in causes)
        assert f"layer '{BAD_LAYER}'" in f["verdicts"][0]


def test_tflite_debugger_statistics_join_the_layer_table(bad_layer_run):
    _, explained = bad_layer_run
    tflite = next(f for f in explained["files"] if f["format"] == "tflite" and f["precision"] == "int8")
    layers = {r["layer"]: r for r in tflite["accuracy"]["layers"]}
    assert tflite["accuracy"]["debugger"]["error"] is None
    # The first layers see exact inputs: the debugger's isolated error and the end-to-end one agree.
    assert layers["dense_a"]["isolated_snr_db"] == pytest.approx(layers["dense_a"]["snr_db"], abs=3)


def test_float_fallback_of_the_bad_layer_is_made_and_measured(bad_layer_run):
    out, explained = bad_layer_run
    for f in (f for f in explained["files"] if f["precision"] == "int8"):
        fallbacks = {tuple(fb["layers"]): fb for fb in f["accuracy"]["fallbacks"]}
        fixed = fallbacks[(BAD_LAYER, "logits")]  # the bad layer and the tensor it feeds stay float
        assert fixed["check"]["passed"], fixed
        assert fixed["check"]["accuracy"] > 0.85
        assert (out / "explain" / fixed["file"]).exists() and fixed["size_bytes"] > 0
        assert fixed["latency"]["p50_ms"] > 0 and fixed["latency"]["ratio_to_original"] > 0
        assert "passes the check" in f["verdicts"][0]


def test_bench_profiles_every_file_and_explain_reads_them(profiled_digits):
    out, explained = profiled_digits
    report = json.loads((out / "report.json").read_text())
    for row in report["rows"]:
        profile = row["profile"]
        assert profile and not profile.get("error"), row["artifact"]
        if row["format"] == "onnx":
            assert profile["nodes"] and all(n["us"] >= 0 and n["op_type"] for n in profile["nodes"])
        else:
            kernels = [p["kernels"] for p in profile["passes"]]
            assert kernels == ["xnnpack", "builtin"] and all(p["operators"] for p in profile["passes"])
    quantized = {r["artifact"] for r in report["rows"] if r["precision"] not in ("fp32",)}
    assert {f["id"] for f in explained["files"]} == quantized  # --explain: every quantized file, slower or not
    for f in explained["files"]:
        section = f["speed"][0]
        types = [t["op_type"] for t in section["profile"]["op_types"]]
        assert types and section["baseline_profile"] and section["cpu"]
        if f["id"].endswith("qoperator.onnx"):
            assert "QLinearConv" in types  # the kernel onnxruntime chose, as it ran
        if f["format"] == "tflite" and ".16x8." not in f["id"]:
            assert any("Convolution" in t for t in types), types  # XNNPACK's own operators
        elif f["format"] == "tflite":  # int16 activations: LiteRT's reference kernels, not XNNPACK
            assert "CONV_2D" in types, types


def test_a_slower_file_gets_a_verdict_naming_its_measured_op_types(profiled_digits):
    from edgeopt.bench.report import Report
    from edgeopt.explainer import speed

    out, _ = profiled_digits
    report = Report.load(out / "report.json")
    for row in (r for r in report.rows if r.precision == "int8"):
        row.speedup = {**row.speedup, "ratio": 0.5, "within_noise": False}  # as if it had come out slower
    found = speed.explain_rows(report, {r.artifact for r in report.rows if r.precision == "int8"})
    assert set(found) == {r.artifact for r in report.rows if r.precision == "int8"}  # every int8 export
    for sections in found.values():
        for s in sections:
            top = s["profile"]["op_types"][0]["op_type"]
            assert s["slower"] and top in s["verdict"] and "0.50x its fp32 parent" in s["verdict"]


@pytest.mark.parametrize("argv, message", [
    (["explain", "{tmp}/nowhere"], "no manifest"),
    (["explain", "{out}", "--files", "nope.int8.tflite"], "no quantized file 'nope.int8.tflite'"),
    (["explain", "{out}", "--threads", "0"], "thread counts must be whole numbers of at least 1"),
])
def test_explain_cli_refuses_bad_input(bad_layer_run, tmp_path, capsys, argv, message):
    out, _ = bad_layer_run
    code = main([a.format(tmp=tmp_path, out=out) for a in argv])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("run, kind", [("bad_layer_run", "snr"), ("profiled_digits", "time")])
def test_node_data_matches_the_graphs_model_explorer_builds(request, run, kind):
    from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter
    from model_explorer.node_data_builder import GraphNodeData, ModelNodeData, NodeDataResult
    from model_explorer_onnx.main import ONNXAdapter

    out, explained = request.getfixturevalue(run)
    for f in explained["files"]:
        adapter = BuiltinTfliteFlatbufferAdapter() if f["format"] == "tflite" else ONNXAdapter()
        built = adapter.convert(f["path"], {})
        graphs = built["graphCollections"][0].graphs if "graphCollections" in built else built["graphs"]
        ids = {_get(g, "id"): {_get(n, "id") for n in _get(g, "nodes")} for g in graphs}
        for name in [f["node_data"][kind]]:
            raw = json.loads((out / "explain" / name).read_text())
            loaded = ModelNodeData(graphsData={
                gid: GraphNodeData(**{**g, "results": {k: NodeDataResult(**v) for k, v in g["results"].items()}})
                for gid, g in raw.items()})
            for gid, graph in loaded.graphsData.items():
                assert gid in ids and graph.results
                assert set(graph.results) <= ids[gid], set(graph.results) - ids[gid]
            dumped = json.loads(loaded.to_json_string())  # the package writes back what it read
            assert all({k: dumped[gid][k] for k in raw[gid]} == raw[gid] for gid in raw)


def _get(obj, key):
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def test_pruned_files_say_what_sparsity_bought(converted):
    from edgeopt.explainer.run import _pruning

    manifest, _, _ = converted
    found = _pruning(manifest)
    assert found["sparsity"] >= 0.49 and found["gzip_bytes"] < found["size_bytes"]
    assert "multiply-accumulates" in found["verdict"]


@pytest.mark.parametrize("profiled, node", [
    ("digits_cnn/conv1/BiasAdd_token_17", "digits_cnn/conv1/BiasAdd"),
    ("fused digits_cnn/fc/MatMul/MatMulAddFusion", "digits_cnn/fc/MatMul/MatMulAddFusion"),
    ("digits_cnn/conv2/Relu:0_nchwc", "digits_cnn/conv2/Relu"),
    ("digits_cnn/conv1/BiasAdd_quant_token_1", "digits_cnn/conv1/BiasAdd"),
    ("image_q", None),
])
def test_onnxruntime_node_names_map_back_to_the_files_nodes(profiled, node):
    from edgeopt.explainer.verdict import original_node

    known = {"digits_cnn/conv1/BiasAdd", "digits_cnn/fc/MatMul/MatMulAddFusion", "digits_cnn/conv2/Relu"}
    assert original_node(profiled, known) == node


# ---- the HTML pages, in a real headless browser ------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                  "--virtual-time-budget=5000"]


@pytest.fixture(scope="session")
def chromium():
    import os

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must open the HTML reports in chromium: .ci/run installs Debian's chromium")
        pytest.skip("no chromium (apt-get install chromium)")
    return path


def _open_in_chromium(chromium, page, screenshot, tmp_path):
    """The DOM after the page's scripts ran, and the console messages chromium logged while loading it."""
    import subprocess

    profile = tmp_path / f"profile-{screenshot.stem}"
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    shot = subprocess.run([*common, "--window-size=1300,2200", f"--screenshot={screenshot}", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    dom = subprocess.run([*common, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert shot.returncode == 0 and dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    return dom.stdout, console


def _pages(bad_layer_run, profiled_digits):
    bad, _ = bad_layer_run
    digits, _ = profiled_digits
    return {"explain-accuracy": bad / "explain" / "explain.html", "explain-speed": digits / "explain" / "explain.html",
            "bench-report": digits / "report.html"}


@pytest.mark.parametrize("name", ["explain-accuracy", "explain-speed", "bench-report"])
def test_html_page_renders_every_plot_and_table_without_console_errors(chromium, bad_layer_run, profiled_digits,
                                                                       tmp_path, name):
    import re

    page = _pages(bad_layer_run, profiled_digits)[name]
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # nothing to fetch: plots are data URIs
    screenshot = tmp_path / f"{name}.png"
    dom, console = _open_in_chromium(chromium, page, screenshot, tmp_path)
    images, tables = html.count("<img "), html.count("<table class=sortable>")
    assert images >= 1 and tables >= 1
    assert len(re.findall(r'<img [^>]*data-rendered="1"', dom)) == images  # every plot decoded and drawn
    assert len(re.findall(r'<table class="sortable" data-ready="1"', dom)) == tables
    assert console == [], console
    assert screenshot.stat().st_size > 20_000
    print(f"screenshot of {page}: {screenshot}")


def test_the_browser_check_catches_a_broken_page(chromium, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><img alt=x src='data:image/png;base64,AAAA'><script>undefinedFunction()</script>"
                    "</body></html>")
    dom, console = _open_in_chromium(chromium, page, tmp_path / "broken.png", tmp_path)
    assert any("undefinedFunction" in line for line in console)


@pytest.mark.parametrize("xnnpack_us, kernels", [(0.0, "builtin"), (0.4, "builtin"), (3.0, "xnnpack")])
def test_litert_op_split_below_the_profilers_resolution_says_so(xnnpack_us, kernels):
    from edgeopt.explainer.ops import summarise

    profile = {"runtime": "ai-edge-litert", "passes": [
        {"kernels": "xnnpack", "invoke_us": 9.0, "operators": [
            {"name": "Fully Connected (NC, QS8, QC8W) GEMM", "kind": "xnnpack", "index": 0, "us": xnnpack_us}]},
        {"kernels": "builtin", "invoke_us": 12.0, "operators": [
            {"name": "FULLY_CONNECTED", "kind": "tflite", "index": 0, "us": 5.0}]}],
        "nodes": [{"index": 0, "op": "FULLY_CONNECTED", "outputs": ["m/fc/MatMul"], "input_types": ["int8"]}]}
    found = summarise(profile)
    assert found["kernels_profiled"] == kernels
    assert (found["resolution_note"] is not None) == (kernels == "builtin")
    assert found["op_types"][0]["precisions"] == ["int8"]
