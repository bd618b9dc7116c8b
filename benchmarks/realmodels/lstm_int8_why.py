"""Why full int8 fails on an Embedding + LSTM + Dense model: which tensor 8 bits cannot hold, measured.

    .venv/bin/python benchmarks/realmodels/lstm_int8_why.py                     # nextword_lstm_nilkanth02
    .venv/bin/python benchmarks/realmodels/lstm_int8_why.py --model PATH.h5 --evaluation evaluation.npz

Replays the LSTM in numpy with the model's own weights (checked against Keras first) on the evaluation
inputs recurrent_int8.py checked the files with, then rounds one tensor family at a time to a
per-tensor grid over its observed range, as a calibrated int8 (or int16) file would, and measures the
softmax output's error and top-1 agreement against the unrounded replay. Hand-written because it asks
a what-if no quantizer offers: the TFLite quantization debugger reports each tensor's error inside
one quantized file, not the output error caused by rounding one tensor alone.
Writes <model>_int8_why.json beside this script; recurrent_int8.py quotes its `text`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ROOT.parent / "shared" / "realmodels" / "nextword_lstm_nilkanth02.h5"
DEFAULT_EVALUATION = ROOT / "benchmarks" / "work" / "recurrent" / "nextword_lstm_nilkanth02" / "evaluation.npz"


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def grid(bits: int, lo: float, hi: float):
    """Round to a per-tensor grid over [lo, hi]: asymmetric for 8 bits, symmetric for 16 (as LiteRT's 16x8)."""
    if bits == 8:
        step = (hi - lo) / 255
        return lambda t: np.clip(np.round((t - lo) / step), 0, 255) * step + lo
    step = max(abs(lo), abs(hi)) / 32767
    return lambda t: np.round(t / step) * step


class Replay:
    """The model's forward pass in numpy (Keras LSTM gate order i, f, c, o), with optional rounding per tensor."""

    def __init__(self, model):
        emb, lstm, dense = model.layers[-3:]
        self.table = np.asarray(emb.get_weights()[0])
        self.kernel, self.recurrent, self.bias = (np.asarray(w) for w in lstm.get_weights())
        self.dense_w, self.dense_b = (np.asarray(w) for w in dense.get_weights())
        self.units = self.recurrent.shape[0]

    def __call__(self, ids, round_gates=None, round_cell=None, round_hidden=None):
        keep = lambda t: t  # noqa: E731
        round_gates, round_cell, round_hidden = (f or keep for f in (round_gates, round_cell, round_hidden))
        h = c = np.zeros((len(ids), self.units))
        gates, cells = [], []
        for t in range(ids.shape[1]):
            z = round_gates(self.table[ids[:, t].astype(int)] @ self.kernel + h @ self.recurrent + self.bias)
            i, f, g, o = np.split(z, 4, axis=1)
            c = round_cell(_sigmoid(f) * c + _sigmoid(i) * np.tanh(g))
            h = round_hidden(_sigmoid(o) * np.tanh(c))
            gates.append(z)
            cells.append(c)
        return _softmax(h @ self.dense_w + self.dense_b), np.array(gates), np.array(cells)


def measure(model, ids) -> dict:
    replay = Replay(model)
    exact, gates, cells = replay(ids)
    keras_error = float(np.abs(exact - np.asarray(model(ids))).max())
    ranges = {"gates": (float(gates.min()), float(gates.max())), "cell": (float(cells.min()), float(cells.max())),
              "hidden": (-1.0, 1.0)}
    cases = {}
    for bits in (8, 16):
        for family, (lo, hi) in ranges.items():
            out, _, _ = replay(ids, **{f"round_{family}": grid(bits, lo, hi)})
            cases[f"{family} int{bits}"] = _compare(out, exact)
        out, _, _ = replay(ids, **{f"round_{k}": grid(bits, *r) for k, r in ranges.items()})
        cases[f"all int{bits}"] = _compare(out, exact)
    return {"replay_vs_keras_max_abs_error": keras_error, "samples": len(ids), "ranges": ranges, "cases": cases}


def _compare(out, exact) -> dict:
    return {"max_abs_error": float(np.abs(out - exact).max()), "top1_agreement": float((out.argmax(1) == exact.argmax(1)).mean())}


def explain(m: dict) -> str:
    c, (clo, chi), (glo, ghi) = m["cases"], m["ranges"]["cell"], m["ranges"]["gates"]
    f = lambda k: f"{c[k]['max_abs_error']:.2g} (top-1 {c[k]['top1_agreement']:.0%})"  # noqa: E731
    return (f"8-bit activations cannot hold this LSTM's state. Its cell state spans [{clo:.1f}, {chi:.1f}] and its "
            f"gate pre-activations [{glo:.0f}, {ghi:.0f}] (saturated gates); rounded to an int8 grid over those "
            f"ranges, each alone moves the 764-way softmax by up to {f('cell int8')} and {f('gates int8')} over the "
            f"8 steps (all state in int8: {f('all int8')}); in int16 the same replay stays within {f('all int16')}. "
            f"Measured by benchmarks/realmodels/lstm_int8_why.py (a numpy replay of the model, "
            f"{m['replay_vs_keras_max_abs_error']:.1g} from Keras, on the {m['samples']} check inputs).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT)
    p.add_argument("--evaluation", type=Path, default=DEFAULT_EVALUATION,
                   help="inputs as recurrent_int8.py saved them (default: %(default)s)")
    args = p.parse_args(argv)
    import edgeopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    from edgeopt.converter.keras_io import load_model

    with np.load(args.evaluation) as z:
        ids = z["x"]
    m = measure(load_model(str(args.model)).model, ids)
    m["text"] = explain(m)
    out = HERE / f"{args.model.stem}_int8_why.json"
    out.write_text(json.dumps(m, indent=1))
    print(m["text"], f"\nwritten: {out}", sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
