"""The inputs every model is timed and scored on: the user's data, the converter's, or synthetic.

TensorFlow-free. Data that does not fit a model's inputs makes that model's rows fail with the
shapes named; labels that cannot belong to the data or the outputs are refused before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import data as datalib
from ..errors import BenchmarkError, DataError

SYNTHETIC_SAMPLES = 64


@dataclass
class EvaluationData:
    x: list | None  # one array per model input; None: synthetic, made per input signature
    y: np.ndarray | None
    reference: list | None  # the Keras model's outputs on x (from the converter), if known
    source: str
    synthetic: bool = False
    _written: dict = field(default_factory=dict)  # (bundle, signature) -> inputs file in that bundle

    def describe(self) -> dict:
        n = len(self.x[0]) if self.x else SYNTHETIC_SAMPLES
        return {"source": self.source, "samples": n, "labels": self.y is not None,
                "reference_outputs": self.reference is not None, "synthetic": self.synthetic}

    def reference_summary(self, manifest) -> dict | None:
        """The Keras model's own accuracy, when the converter saved its outputs and labels exist."""
        if self.reference is None or self.y is None or manifest is None:
            return None
        from ..check import task_accuracy

        keras = next((a.id for a in manifest.artifacts if a.format == "keras"), manifest.source.get("path"))
        return {"artifact": keras, "accuracy": task_accuracy(self.reference[0], self.y)}

    def mismatch(self, candidate) -> str | None:
        """Why this data cannot feed `candidate`, or None when it fits."""
        if self.synthetic or not candidate.input_specs:
            return None
        specs = candidate.input_specs
        if len(specs) != len(self.x):
            return f"the evaluation data has {len(self.x)} input array(s); {candidate.id} takes {len(specs)}"
        for spec, arr in zip(specs, self.x):
            want, got = spec["shape"][1:], list(arr.shape[1:])
            if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
                return (f"evaluation samples of shape {tuple(got)} do not fit input {spec['name']!r} of "
                        f"{candidate.id}, which takes {tuple('?' if d is None else d for d in want)}")
        return None

    def inputs_for(self, input_specs) -> list:
        """The arrays a model with these inputs is fed: the same on every target (synthetic ones are seeded)."""
        if not self.synthetic:
            return self.x
        return datalib.synthetic(_float_specs(input_specs), SYNTHETIC_SAMPLES).x

    def write_inputs(self, bundle: Path, candidate) -> str:
        """Save the inputs for `candidate` into the bundle once per input signature; return the relative path."""
        # Per bundle too: every target gets a bundle of its own.
        key = (str(bundle), _signature(candidate.input_specs) if self.synthetic else "data")
        if key not in self._written:
            name = f"inputs-{len(self._written)}.npz"
            xs = self.inputs_for(candidate.input_specs)
            np.savez(bundle / name, **({"x": xs[0]} if len(xs) == 1 else {f"x{i}": a for i, a in enumerate(xs)}))
            self._written[key] = name
        return self._written[key]


def _float_specs(specs):
    # int8-input models are fed float data: the worker quantizes it with the model's own scale.
    return [{**s, "dtype": "float32"} if s.get("quantization") else s for s in specs]


def _signature(specs) -> str:
    return repr([(s["shape"][1:], s["dtype"]) for s in specs or []])


def load_evaluation(evaluation, manifest, candidates, samples) -> EvaluationData:
    if evaluation is not None:
        ds, reference = _user_data(evaluation)
    elif manifest is not None and manifest.evaluation_path() and manifest.evaluation_path().exists():
        ds, reference = _user_data(manifest.evaluation_path())
    else:
        return EvaluationData(None, None, None, f"synthetic:uniform[0,1), {SYNTHETIC_SAMPLES} samples", True)
    n = min(len(ds), int(samples))
    x = [a[:n] for a in ds.x]
    y = None if ds.y is None else np.asarray(ds.y)[:n]
    reference = None if reference is None else [r[:n] for r in reference]
    data = EvaluationData(x, y, reference, ds.source)
    _check_labels(data, candidates)
    return data


def _user_data(source):
    try:
        ds = datalib.check_finite(datalib.load(source, "evaluation"), "evaluation")
    except DataError as e:
        raise BenchmarkError(str(e)) from None
    reference = None
    if isinstance(source, (str, Path)) and str(source).endswith(".npz"):
        with np.load(source, allow_pickle=False) as z:
            keys = ["reference"] if "reference" in z.files else sorted(
                (k for k in z.files if k.startswith("reference") and k[9:].isdigit()), key=lambda k: int(k[9:]))
            reference = [z[k] for k in keys] or None
    return ds, reference


def _check_labels(data, candidates):
    """Labels must be class indices below every classifier's output width (or one-hot of that width)."""
    if data.y is None:
        return
    y = data.y
    for c in candidates:
        if c.skip_reason or not c.input_specs:
            continue
        specs = c.output_specs
        width = specs[0]["shape"][-1] if specs and specs[0]["shape"] else None
        if width and width > 1 and y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and y.max() >= width:
            raise BenchmarkError(
                f"the labels go up to {int(y.max())} but {c.id} has {width} outputs: these labels belong to "
                "another model or task; pass the evaluation data that goes with it"
            )
        if width and y.ndim == 2 and y.shape[1] != width:
            raise BenchmarkError(f"labels of shape {y.shape[1:]} do not match the {width} outputs of {c.id}")
