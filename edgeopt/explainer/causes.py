"""Why a layer lost accuracy, where it can be measured: one finding per cause, with its evidence.

Every finding comes from figures measured on the evaluation data (layers.py) or read from the
quantized file itself (its scales, its float ops); the thresholds below are stated in each finding.
TensorFlow-free.
"""

from __future__ import annotations

OUTLIER_RANGE_RATIO = 8.0  # quantized range over the data's 99.9th percentile: most values use few int8 levels
CHANNEL_SPREAD = 20.0  # widest channel's max |x| over the median channel's, on a per-tensor scale
WEIGHT_SPREAD = 20.0
CLIPPED = 0.001  # 0.1% of values outside the quantized range
SATURATED = 0.01  # 1% of int8 inputs or outputs at the ends of their range


def find_causes(records: list, summary: dict, facts: dict) -> list:
    """[{"cause", "layers", "evidence"}] for the layers that matter: the first divergent and the worst."""
    suspects = [r for r in records if r["layer"] in _suspects(summary)]
    found = []
    if facts.get("synthetic_calibration"):  # first: it can explain every other finding
        found.append({"cause": "calibration on synthetic data", "layers": [],
                      "evidence": "the int8 ranges were calibrated on random inputs (--calibration synthetic), "
                                  "not on data like the evaluation data; calibrate on real samples"})
    for r in suspects:
        found += _activation_causes(r)
    for layer, weights in (facts.get("per_tensor_weights") or {}).items():
        spread = weights.get("spread") or 0.0
        if spread >= WEIGHT_SPREAD and layer in {r["layer"] for r in suspects}:
            found.append({"cause": "per-tensor weight scale over channels of very different ranges", "layers": [layer],
                          "evidence": f"one weight scale for all output channels, whose max |w| differ {spread:.0f}x "
                                      f"(limit {WEIGHT_SPREAD:.0f}x): small channels keep few int8 levels; "
                                      "quantize weights per channel"})
    if facts.get("float_ops"):
        ops = facts["float_ops"]
        found.append({"cause": "ops left in float force quantize/dequantize pairs", "layers": [],
                      "evidence": f"{len(ops)} op(s) run in float inside the int8 graph ({', '.join(ops[:6])}"
                                  f"{', ...' if len(ops) > 6 else ''}): each one dequantizes its input and "
                                  "requantizes its output"})
    for where, fraction in (facts.get("saturated_io") or {}).items():
        if fraction >= SATURATED:
            found.append({"cause": "saturated int8 inputs or outputs", "layers": [],
                          "evidence": f"{fraction:.1%} of the {where} values on the evaluation data lie beyond "
                                      f"what its int8 scale can hold (limit {SATURATED:.0%}): they are clipped to "
                                      "the end of the range; calibrate on data that covers them"})
    return found


def _suspects(summary) -> list:
    first = [summary["first_divergent_layer"]] if summary.get("first_divergent_layer") else []
    return list(dict.fromkeys(first + summary.get("worst_layers", [])[:3]))


def _activation_causes(r) -> list:
    found = []
    ratio = r.get("range_over_p999")
    if ratio and ratio >= OUTLIER_RANGE_RATIO:
        found.append({"cause": "activation range dominated by outliers", "layers": [r["layer"]],
                      "evidence": f"its int8 range reaches {ratio:.0f}x the 99.9th percentile of its values on the "
                                  f"evaluation data (limit {OUTLIER_RANGE_RATIO:.0f}x): 99.9% of values share "
                                  f"{max(1, int(256 / ratio))} of the 256 levels; calibrate with percentile or "
                                  "entropy ranges, or keep this layer float"})
    spread = r.get("channel_spread")
    if spread and spread >= CHANNEL_SPREAD and r.get("quantization"):
        found.append({"cause": "one per-tensor activation scale over channels of very different ranges",
                      "layers": [r["layer"]],
                      "evidence": f"channel {r.get('widest_channel')} reaches {spread:.0f}x the median channel's "
                                  f"max |x| (limit {CHANNEL_SPREAD:.0f}x) under a single int8 scale: the other "
                                  f"{r['channels'] - 1} channels are left a few levels each"})
    clipped = r.get("clipped_fraction") or 0.0
    if clipped >= CLIPPED:
        found.append({"cause": "values clipped by the calibrated range", "layers": [r["layer"]],
                      "evidence": f"{clipped:.2%} of its float values fall outside the int8 range "
                                  f"[{r['quantized_range'][0]:.3g}, {r['quantized_range'][1]:.3g}] the calibration "
                                  f"chose (limit {CLIPPED:.1%}): calibrate on data that covers them"})
    return found
