"""Why an int8 file is not smaller than its fp32 parent, told with figures read from the files themselves.

ONNX graphs are built with onnx.helper and quantized by edgeopt's own onnxruntime passes (no TensorFlow):
a tiny MLP whose int8 files grow, and a wide one whose int8 file shrinks and needs no explanation.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.bench import filebytes
from edgeopt.converter import onnx_quant
from edgeopt.data import Dataset


def _mlp(path, widths):
    """x -> MatMul+Add+Relu per layer: the graph tf2onnx makes of a Dense stack, with long TF-style names."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "serving_default_input:0"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        w, bias, out = f"sequential/dense_{i}/MatMul/ReadVariableOp:0", f"sequential/dense_{i}/BiasAdd/ReadVariableOp:0", \
            f"sequential/dense_{i}/Relu:0"
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), w),
                  numpy_helper.from_array(np.zeros(b, np.float32), bias)]
        nodes += [helper.make_node("MatMul", [prev, w], [out + "mm"], name=f"sequential/dense_{i}/MatMul"),
                  helper.make_node("Add", [out + "mm", bias], [out + "add"], name=f"sequential/dense_{i}/BiasAdd"),
                  helper.make_node("Relu", [out + "add"], [out], name=f"sequential/dense_{i}/Relu")]
        prev = out
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("serving_default_input:0", TensorProto.FLOAT,
                                                                            ["batch", widths[0]])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", widths[-1]])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("filebytes")
    made = {}
    for name, widths in (("tiny", [16, 12, 10]), ("wide", [256, 256, 10])):
        fp32 = _mlp(d / f"{name}.fp32.onnx", widths)
        calib = Dataset([np.random.default_rng(1).random((32, widths[0]), dtype=np.float32)], None, "calibration")
        static, _ = onnx_quant.quantize_static(fp32, calib, {"quant_format": "qdq", "per_channel": True})
        dynamic, _ = onnx_quant.quantize_dynamic(fp32)
        (d / f"{name}.int8.onnx").write_bytes(static)
        (d / f"{name}.int8-dynamic.onnx").write_bytes(dynamic)
        made[name] = d
    return d


def _note(d, model, precision):
    return filebytes.size_note(f"{model}.{precision}.onnx", d / f"{model}.{precision}.onnx", "onnx", precision,
                               f"{model}.fp32.onnx", d / f"{model}.fp32.onnx")




@pytest.mark.parametrize("precision", ["int8", "int8-dynamic"])
def test_an_int8_file_larger_than_fp32_says_why_in_figures_from_both_files(files, precision):
    path = files / f"tiny.{precision}.onnx"
    parts, base = filebytes.breakdown(path, "onnx"), filebytes.breakdown(files / "tiny.fp32.onnx", "onnx")
    assert parts["total"] > base["total"]  # the case this explains: int8 made the file bigger
    graph = onnx.load(str(path)).graph
    qdq = sum(n.op_type in filebytes.QDQ_OPS for n in graph.node)
    assert parts["counts"]["qdq_nodes"] == qdq > 0
    assert parts["counts"]["weights"] == base["counts"]["weights"] == 16 * 12 + 12 + 12 * 10 + 10
    known = sum(parts[k] for k in ("float_weights", "int_weights", "quant_params", "qdq_nodes", "other_nodes",
                                   "annotations"))
    assert known <= parts["total"] and parts["int_weights"] < base["float_weights"]
    note = _note(files, "tiny", precision)
    ratio = parts["total"] / base["total"]
    assert note.startswith(f"tiny.{precision}.onnx is {ratio:.2f}x the size of tiny.fp32.onnx (")
    assert f"{qdq} quantize/dequantize node" in note and "scale" in note and "names take" in note
    assert "what int8 saves is less than the bookkeeping it adds" in note


def test_an_int8_file_that_shrinks_needs_no_explanation(files):
    parts, base = filebytes.breakdown(files / "wide.int8.onnx", "onnx"), filebytes.breakdown(files / "wide.fp32.onnx", "onnx")
    assert parts["total"] < 0.5 * base["total"]
    assert _note(files, "wide", "int8") is None and _note(files, "wide", "int8-dynamic") is None
    # A float export is never explained as if quantized.
    assert filebytes.size_note("x", files / "tiny.fp32.onnx", "onnx", "fp16", "y", files / "tiny.fp32.onnx") is None


def test_tflite_weights_are_read_from_the_flatbuffer(converted):
    manifest, out, _ = converted
    params = manifest.source["params"]
    fp32 = filebytes.breakdown(out / "digits_cnn.pruned50.fp32.tflite", "tflite")
    int8 = filebytes.breakdown(out / "digits_cnn.pruned50.int8.tflite", "tflite")
    assert fp32["counts"]["weights"] >= params and fp32["float_weights"] >= 4 * params
    assert int8["float_weights"] == 0 and int8["counts"]["quant_params"] > 0 and int8["quant_params"] > 0
    assert params <= int8["int_weights"] < 1.1 * params + 4 * 200  # int8 weights, int32 biases
