"""Per-layer error of a quantized file against its float parent, on the evaluation data.

Both files run side by side on the same batches (taps.py reads every layer's output); per layer we
keep running sums, never the activations themselves, so a 224x224 network fits in memory:

- SNR (dB) = 10 log10(sum f^2 / sum (f - q)^2), f the float file's output, q the quantized file's;
  the same signal-to-quantization-noise ratio as onnxruntime's qdq_loss_debug
  (`compute_signal_to_quantization_noice_ratio`), accumulated over batches instead of over lists
  held in memory; and the same per channel, whose median says what the whole-tensor figure hides
  when one loud channel dominates the energy (the next layer may weight the quiet ones most). A
  layer's `snr_db` is the lower of the two;
- the error each layer adds: its relative noise (1 / SNR, linear) minus that of the layer before it
  in execution order (its input, in a chain), so the shares say where the error entered rather
  than where it was carried;
- what the cause analysis needs: the float range (max |f| and its 99.9th percentile), each
  channel's max |f|, and how much of the float data falls outside the quantized tensor's range.

TensorFlow-free.
"""

from __future__ import annotations

import math

import numpy as np

from .taps import open_taps

DEFAULT_SNR_THRESHOLD_DB = 20.0  # below this the noise is over 10% of the signal's amplitude
_RESERVOIR = 20000  # |f| values kept per layer for its percentile


class _Accumulator:
    def __init__(self, seed):
        self.signal = self.noise = 0.0
        self.count = 0
        self.max_abs_error = 0.0
        self.float_absmax = 0.0
        self.channel_absmax = None
        self.clipped = 0
        self.channel_signal = self.channel_noise = None
        self.sample = np.empty(0, np.float32)
        self.rng = np.random.default_rng(seed)

    def add(self, f, q, channel_axis, quant):
        f64, diff = f.astype(np.float64), f.astype(np.float64) - q.astype(np.float64)
        self.signal += float(np.sum(f64 * f64))
        self.noise += float(np.sum(diff * diff))
        self.count += f.size
        self.max_abs_error = max(self.max_abs_error, float(np.max(np.abs(diff))) if diff.size else 0.0)
        absf = np.abs(f)
        self.float_absmax = max(self.float_absmax, float(absf.max()) if absf.size else 0.0)
        if f.ndim >= 2:
            axes = tuple(i for i in range(f.ndim) if i != channel_axis % f.ndim)
            per_channel = absf.max(axis=axes)
            signal, noise = np.sum(f64 * f64, axis=axes), np.sum(diff * diff, axis=axes)
            if self.channel_absmax is None:
                self.channel_absmax, self.channel_signal, self.channel_noise = per_channel, signal, noise
            else:
                self.channel_absmax = np.maximum(self.channel_absmax, per_channel)
                self.channel_signal, self.channel_noise = self.channel_signal + signal, self.channel_noise + noise
        if quant:
            lo, hi = quantized_range(quant)
            self.clipped += int(np.sum((f < lo) | (f > hi)))
        flat = absf.reshape(-1)
        take = min(len(flat), _RESERVOIR // 4)
        self.sample = np.concatenate([self.sample, self.rng.choice(flat, take, replace=False)])[-_RESERVOIR:]


def quantized_range(quant):
    """The float interval an int8/uint8 tensor can hold: scale * (qmin - zero point) .. scale * (qmax - zero point)."""
    info = np.iinfo(np.dtype(quant["dtype"]))
    return quant["scale"] * (info.min - quant["zero_point"]), quant["scale"] * (info.max - quant["zero_point"])


def compare_layers(float_path, quant_path, inputs: list, keras3=False, output_layers=None, samples=128, batch=16,
                   seed=0) -> list:
    """One record per layer the two files share, in execution order (see the module docstring)."""
    reference = open_taps(float_path, keras3, output_layers)
    candidate = open_taps(quant_path, keras3, output_layers)
    try:
        _follow_fused_activations(reference.taps, candidate.taps)
        shared = [layer for layer in reference.taps if layer in candidate.taps]
        acc = {layer: _Accumulator(seed + i) for i, layer in enumerate(shared)}
        n = min(samples, len(inputs[0]))
        for start in range(0, n, batch):
            xs = [np.asarray(x[start:min(n, start + batch)]) for x in inputs]
            f_out, q_out = reference.run(xs), candidate.run(xs)
            for layer in shared:
                f, q = f_out.get(layer), q_out.get(layer)
                if f is None or q is None or f.size != q.size:
                    continue
                acc[layer].add(f, q.reshape(f.shape), reference.taps[layer].channel_axis,
                               candidate.taps[layer].bounds)
        return [_record(layer, reference.taps[layer], candidate.taps[layer], acc[layer])
                for layer in shared if acc[layer].count]
    finally:
        reference.close()
        candidate.close()


_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "RELU", "RELU6",
                "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU"}
_FUSED_KERNELS = {"QLinearConv", "QGemm", "QLinearMatMul", "QLinearAdd", "QLinearMul"}


def _follow_fused_activations(reference: dict, candidate: dict):
    """Re-key a quantized tap whose kernel absorbed the activation layer after it.

    onnxruntime's QOperator kernels (QLinearConv ...) apply a following Relu/Clip through their
    output range and drop the node, yet keep the pre-activation tensor name: their output is the
    activation layer's, and must be compared with that.
    """
    order = list(reference)
    for layer, after in zip(order, order[1:]):
        tap = candidate.get(layer)
        if (tap is not None and tap.op in _FUSED_KERNELS and after not in candidate
                and reference[after].op in _ACTIVATIONS):
            candidate[after] = candidate.pop(layer)


def _record(layer, ref_tap, tap, a) -> dict:
    tensor_noise = a.noise / a.signal if a.signal > 0 else (0.0 if a.noise == 0 else math.inf)
    channel_noise = _median_channel_noise(a)
    rel_noise = max(tensor_noise, channel_noise if channel_noise is not None else 0.0)
    p999 = float(np.percentile(a.sample, 99.9)) if a.sample.size else 0.0
    record = {
        "layer": layer,
        "tensor_snr_db": _db(tensor_noise),
        "channel_snr_db": None if channel_noise is None else _db(channel_noise),
        "op": tap.op,
        "float_op": ref_tap.op,
        "tensor": tap.tensor,
        "node": tap.extra.get("node"),  # the graph's own node: op index (TFLite) or node name (ONNX)
        "float_tensor": ref_tap.tensor,
        "snr_db": _db(rel_noise),
        "relative_noise": rel_noise,
        "max_abs_error": a.max_abs_error,
        "float_mean_square": a.signal / a.count,
        "float_absmax": a.float_absmax,
        "float_p999": p999,
        "quantization": {k: tap.bounds[k] for k in ("scale", "zero_point", "dtype")} if tap.bounds else None,
    }
    if a.channel_absmax is not None and a.channel_absmax.size > 1:
        positive = a.channel_absmax[a.channel_absmax > 0]
        median = float(np.median(positive)) if positive.size else 0.0
        record["channels"] = int(a.channel_absmax.size)
        record["channel_spread"] = float(a.channel_absmax.max() / median) if median else None
        record["widest_channel"] = int(np.argmax(a.channel_absmax))
    if tap.bounds:
        lo, hi = quantized_range(tap.bounds)
        record["quantized_range"] = [lo, hi]
        record["clipped_fraction"] = a.clipped / a.count
        record["range_over_p999"] = (max(abs(lo), abs(hi)) / p999) if p999 > 0 else None
    return record


def _median_channel_noise(a):
    """Median over the channels that carry signal of noise / signal; None without a channel axis."""
    if a.channel_signal is None or a.channel_signal.size < 2:
        return None
    live = a.channel_signal > 0
    if not live.any():
        return None
    return float(np.median(a.channel_noise[live] / a.channel_signal[live]))


def _db(rel_noise):
    if rel_noise == 0:
        return math.inf
    return -10.0 * math.log10(rel_noise) if math.isfinite(rel_noise) else -math.inf


def attribute(records: list, threshold_db=DEFAULT_SNR_THRESHOLD_DB, quantized=None, failed=False) -> dict:
    """First divergent layer, worst layers, and the share of the final error each layer added.

    `quantized`: the layers that quantize something (int8 weights or an int8 output). A layer that
    quantizes nothing (a softmax in a dynamic-range file) only carries or amplifies the error it
    was given, so it is credited none. The first divergent layer is the first below `threshold_db`;
    for a file that `failed` its check with no layer that low, the first whose SNR is already within
    3 dB of the output's (where most of the final error had arrived), and the rule says so.
    """
    carried = 0.0
    for r in records:
        noise = r["relative_noise"] if math.isfinite(r["relative_noise"]) else 1.0
        r["error_added"] = max(0.0, noise - carried) if quantized is None or r["layer"] in quantized else 0.0
        carried = noise
    total = sum(r["error_added"] for r in records)
    for r in records:
        r["error_share"] = r["error_added"] / total if total > 0 else 0.0
    first = next((r["layer"] for r in records if r["snr_db"] < threshold_db), None)
    rule = f"first layer below {threshold_db:.0f} dB"
    final = records[-1]["snr_db"] if records else None
    if first is None and failed and final is not None and math.isfinite(final):
        first = next((r["layer"] for r in records if r["snr_db"] <= final + 3.0), None)
        rule = f"no layer below {threshold_db:.0f} dB: first layer within 3 dB of the output's {final:.1f} dB"
    worst = sorted((r for r in records if r["error_share"] > 0), key=lambda r: -r["error_share"])
    return {
        "threshold_db": threshold_db,
        "first_divergent_layer": first,
        "divergence_rule": rule if first else None,
        "worst_layers": [r["layer"] for r in worst[:5]],
        "final_snr_db": final,
    }
