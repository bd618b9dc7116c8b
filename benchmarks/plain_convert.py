"""The hand-written path that `edgeopt convert` is measured against (see convert_overhead.py).

What a user who knows the libraries would write to make the same seven files edgeopt's default
recipe makes, with the same libraries and options, and check each one: TFLite fp32, fp16,
int8-dynamic and int8 (int8 I/O, calibrated), ONNX fp32 (tf2onnx, opset 17), int8-dynamic
(MatMul/Gemm) and int8 (QDQ, per channel, after quant_pre_process, calibrated). Each file is run
on the evaluation samples with LiteRT or onnxruntime and compared with the Keras model's outputs.
No edgeopt import: this is the baseline, not a use of the tool.

    python benchmarks/plain_convert.py model.h5 calib.npz eval.npz OUT_FOLDER
"""

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf_keras, as edgeopt uses
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
import tf_keras as keras  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402


@contextlib.contextmanager
def timed(step):
    """Print how long `step` took (convert_overhead.py reads these lines: where the time goes)."""
    t0 = time.perf_counter()
    yield
    print(f"step {step}: {time.perf_counter() - t0:.2f} s", flush=True)


def tflite_files(model, calibration, out):
    def representative():
        for i in range(len(calibration)):
            yield [calibration[i:i + 1]]

    for precision in ["fp32", "fp16", "int8-dynamic", "int8"]:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if precision != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if precision == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if precision == "int8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        with timed(f"tflite {precision}"):
            (out / f"model.{precision}.tflite").write_bytes(converter.convert())


def onnx_files(model, calibration, out):
    signature = [tf.TensorSpec([None] + list(model.input_shape[1:]), tf.float32, name="input")]
    with timed("onnx fp32"):
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, output_path=str(out / "model.fp32.onnx"))
    with timed("onnx int8-dynamic"):
        quantize_dynamic(str(out / "model.fp32.onnx"), str(out / "model.int8-dynamic.onnx"),
                         weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter({"input": calibration[i:i + 1]} for i in range(len(calibration)))

        def get_next(self):
            return next(self.samples, None)

    with timed("onnx int8"), tempfile.TemporaryDirectory() as tmp:
        pre = str(Path(tmp) / "pre.onnx")
        quant_pre_process(str(out / "model.fp32.onnx"), pre)
        quantize_static(pre, str(out / "model.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        extra_options={"CalibTensorRangeSymmetric": False})


def run_tflite(path, x):
    interpreter = Interpreter(model_path=str(path))
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    scale, zero = inp["quantization"]
    if inp["dtype"] == np.int8:
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(outp["index"])
    scale, zero = outp["quantization"]
    return (y.astype(np.float32) - zero) * scale if outp["dtype"] == np.int8 else y


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def main(model_path, calibration_path, evaluation_path, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with timed("load and reference outputs"):
        model = keras.models.load_model(model_path, compile=False)
        calibration = np.load(calibration_path)["x"].astype(np.float32)
        x = np.load(evaluation_path)["x"].astype(np.float32)
        reference = model.predict(x, verbose=0)
    tflite_files(model, calibration, out)
    onnx_files(model, calibration, out)
    for path in sorted(out.glob("model.*")):
        with timed(f"check {path.name}"):
            y = run_tflite(path, x) if path.suffix == ".tflite" else run_onnx(path, x)
        agreement = np.mean(y.argmax(1) == reference.argmax(1))
        print(f"{path.name}: max abs error {np.abs(y - reference).max():.3g}, top-1 agreement {agreement:.1%}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
