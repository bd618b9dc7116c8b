"""Training, calibration and evaluation data: .npz files, a `module:function`, or the bundled digits.

TensorFlow-free. Every source becomes a `Dataset` (a list of input arrays, one per model input, and
optional labels), checked against the model's inputs before any work starts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

DIGITS = "digits"
SYNTHETIC = "synthetic"  # drawn from the model's input specs; made by the pipeline, which knows them
_DIGITS_TRAIN_FRACTION = 0.7


@dataclass
class Dataset:
    x: list  # one array per model input, all with the same first (sample) dimension
    y: np.ndarray | None
    source: str

    def __len__(self):
        return len(self.x[0])

    def take(self, n, seed=0) -> "Dataset":
        """At most `n` samples, drawn without replacement in a seeded order (sources are often sorted)."""
        if len(self) <= n:
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Dataset([a[idx] for a in self.x], None if self.y is None else self.y[idx], self.source)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "samples": len(self),
            "labels": self.y is not None,
            "shapes": [list(a.shape[1:]) for a in self.x],
        }


def digits(role: str) -> Dataset:
    """scikit-learn's bundled 8x8 digits (offline), scaled to [0, 1], shape (N, 8, 8, 1).

    `role` picks a fixed split: 'train' and 'calibration' use the first 70%, 'evaluation' the rest.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    cut = int(len(x) * _DIGITS_TRAIN_FRACTION)
    part = slice(cut, None) if role == "evaluation" else slice(0, cut)
    return Dataset([x[part]], y[part], f"{DIGITS}:{'evaluation' if role == 'evaluation' else 'train'}")


def load(source, role: str) -> Dataset | None:
    """Turn a user's data argument into a Dataset.

    Accepts None, a Dataset, an array, an (x, y) tuple, a dict with 'x' and optional 'y',
    'digits', a path to an .npz holding x (or x0, x1, ...) and optional y, or 'module:function'
    returning any of those.
    """
    if source is None or isinstance(source, Dataset):
        return source
    if isinstance(source, (str, Path)):
        text = str(source)
        if text == SYNTHETIC:
            raise DataError(f"{role} data 'synthetic' is drawn from the model's inputs: pass it to convert()")
        if text == DIGITS:
            return digits(role)
        if text.endswith(".npz") or Path(text).exists():
            return _from_npz(Path(text), role)
        if ":" in text:
            return _from_callable(text, role)
        raise DataError(
            f"{role} data {text!r} is neither an existing .npz file, a 'module:function', nor 'digits'"
        )
    return _from_object(source, role, source_name="<in memory>")


def _from_npz(path: Path, role: str) -> Dataset:
    if not path.exists():
        raise DataError(f"{role} data file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/ValueError/OSError: all mean "not a readable npz"
        raise DataError(f"{role} data file {str(path)!r} is not a readable .npz archive ({e})") from None
    xs = [arrays[k] for k in _input_keys(arrays)]
    if not xs:
        raise DataError(
            f"{role} data file {str(path)!r} has no 'x' array (found: {', '.join(arrays) or 'nothing'}); "
            "save it with np.savez(path, x=inputs, y=labels)"
        )
    return _make(xs, arrays.get("y"), str(path), role)


def _input_keys(arrays):
    if "x" in arrays:
        return ["x"]
    keys, i = [], 0
    while f"x{i}" in arrays:
        keys.append(f"x{i}")
        i += 1
    return keys


def _from_callable(spec: str, role: str) -> Dataset:
    module_name, _, func_name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise DataError(f"{role} data {spec!r}: cannot import {func_name!r} from {module_name!r} ({e})") from None
    return _from_object(func(), role, source_name=spec)


def _from_object(obj, role, source_name) -> Dataset:
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, dict):
        xs = [obj[k] for k in _input_keys(obj)]
        return _make(xs, obj.get("y"), source_name, role)
    if isinstance(obj, tuple) and len(obj) == 2:
        x, y = obj
        return _make(list(x) if isinstance(x, list) else [x], y, source_name, role)
    if isinstance(obj, list):
        return _make(obj, None, source_name, role)
    return _make([obj], None, source_name, role)


def _make(xs, y, source, role) -> Dataset:
    xs = [np.asarray(a) for a in xs]
    if not xs:
        raise DataError(f"{role} data from {source} holds no input arrays")
    n = len(xs[0])
    if any(len(a) != n for a in xs) or (y is not None and len(y) != n):
        raise DataError(
            f"{role} data from {source}: inputs and labels have different sample counts "
            f"({[len(a) for a in xs]}{'' if y is None else f', y: {len(y)}'})"
        )
    if n == 0:
        raise DataError(f"{role} data from {source} is empty")
    return Dataset(xs, None if y is None else np.asarray(y), source)


def check_against_inputs(ds: Dataset, input_specs: list, role: str) -> Dataset:
    """Raise DataError unless `ds` fits the model's inputs; return it cast to the inputs' dtypes.

    `input_specs`: dicts with name, shape (None for free dims), dtype. Only safe casts are made
    (float64 -> float32); an integer array for a float input is refused, because uint8 images fed
    to a model trained on [0, 1] would calibrate silently wrong.
    """
    if len(ds.x) != len(input_specs):
        raise DataError(
            f"{role} data from {ds.source} has {len(ds.x)} input array(s) but the model has "
            f"{len(input_specs)} input(s): {', '.join(s['name'] for s in input_specs)}"
        )
    cast = []
    for arr, spec in zip(ds.x, input_specs):
        want = [d for d in spec["shape"][1:]]
        got = list(arr.shape[1:])
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            hint = ""
            if len(got) + 1 == len(want) and want[-1] == 1:
                hint = " (add the channel axis: x[..., None])"
            raise DataError(
                f"{role} data from {ds.source}: samples of shape {tuple(got)} do not fit model input "
                f"{spec['name']!r}, which takes {tuple('?' if d is None else d for d in want)} per sample{hint}"
            )
        model_dtype = np.dtype(spec["dtype"])
        if arr.dtype.kind not in "biuf" or (model_dtype.kind == "f" and arr.dtype.kind != "f"):
            raise DataError(
                f"{role} data from {ds.source}: dtype {arr.dtype} does not fit model input {spec['name']!r} "
                f"({model_dtype}); convert it the way the model was trained, e.g. x.astype('float32') / 255 "
                "for 8-bit images trained on [0, 1]"
            )
        cast.append(arr.astype(model_dtype, copy=False))
    return Dataset(cast, ds.y, ds.source)


def synthetic(input_specs: list, n: int, seed=0, ranges=None) -> Dataset:
    """Random inputs of the model's shapes and dtypes, in a plausible range per input.

    `ranges`: one dict per input with low, high, integer (see converter.anatomy.input_ranges);
    default uniform [0, 1). Enough to smoke-test a conversion and calibrate it roughly: results on
    these are marked synthetic everywhere they are reported.
    """
    rng = np.random.default_rng(seed)
    ranges = ranges or [{"low": 0.0, "high": 1.0, "integer": False}] * len(input_specs)
    xs, described = [], []
    for spec, r in zip(input_specs, ranges):
        shape = [n] + [1 if d is None else d for d in spec["shape"][1:]]
        dtype = np.dtype(spec["dtype"]) if np.dtype(spec["dtype"]).kind in "fiu" else np.dtype("float32")
        if r["integer"]:
            x = rng.integers(int(r["low"]), int(r["high"]), size=shape)
            described.append(f"integers [{int(r['low'])},{int(r['high'])})")
        else:
            x = rng.uniform(r["low"], r["high"], size=shape)
            described.append(f"uniform[{r['low']:g},{r['high']:g})")
        xs.append(x.astype(dtype))
    return Dataset(xs, None, f"{SYNTHETIC}:{';'.join(described)}")


def is_synthetic(ds: Dataset | None) -> bool:
    return ds is not None and ds.source.startswith(SYNTHETIC)


def save_npz(file, ds: Dataset, reference: list):
    """evaluation.npz beside the artifacts: inputs, labels, reference outputs. `file`: a path or a binary file."""
    arrays = {"x": ds.x[0]} if len(ds.x) == 1 else {f"x{i}": a for i, a in enumerate(ds.x)}
    if ds.y is not None:
        arrays["y"] = ds.y
    if len(reference) == 1:
        arrays["reference"] = reference[0]
    else:
        arrays.update({f"reference{i}": r for i, r in enumerate(reference)})
    np.savez_compressed(file, **arrays)
