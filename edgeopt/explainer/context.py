"""What one explain run works from: the manifest, its files, the evaluation and calibration data.

TensorFlow-free; TensorFlow is loaded only if synthetic calibration has to be drawn again in the
plausible ranges of the Keras model's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import data as datalib
from ..errors import EdgeoptError


@dataclass
class Context:
    manifest: object
    root: Path
    out: Path
    data: object  # bench.inputs.EvaluationData
    threshold_db: float
    samples: int
    targets: list
    rounds: int = 3
    timing: dict = field(default_factory=lambda: {"warmup_runs": 5, "min_runs": 30, "min_seconds": 0.5})
    calibration_source: object = None
    trust_model_code: bool = False
    log: object = print
    _calibration: object = None

    @property
    def keras3(self) -> bool:
        return self.manifest.source.get("loader") == "keras3"

    @property
    def output_layers(self) -> list:
        return [o["name"] for o in self.manifest.source.get("outputs", [])]

    @property
    def tolerances(self) -> dict:
        return (self.manifest.recipe.get("check") or {}).get("tolerances") or {}

    def path(self, art) -> Path:
        return self.root / art.path

    def parent(self, art):
        """The fp32 file of the same format made from the same model: the float reference of `art`."""
        if art.format == "onnx" and art.parent:
            found = self.manifest.get(art.parent)
            if found is not None and found.precision == "fp32":
                return found
        return next((a for a in self.manifest.artifacts if a.format == art.format and a.precision == "fp32"
                     and a.parent == art.parent and a.ok and a.path), None)

    def parent_path(self, art) -> Path:
        return self.path(self.parent(art))

    def keras_model_path(self, art) -> Path | None:
        """The Keras model `art` was exported from: the pruned .keras artifact, else the source file."""
        chain = self.manifest.get(art.parent) if art.parent else None
        while chain is not None and chain.format != "keras":
            chain = self.manifest.get(chain.parent) if chain.parent else None
        if chain is not None and chain.path:
            return self.root / chain.path
        path = self.manifest.source.get("path")
        return Path(path) if path and Path(path).exists() else None

    def calibration(self):
        """The calibration inputs the converter used, loaded again (or the user's), as a Dataset."""
        if self._calibration is None:
            self._calibration = self._load_calibration()
        return self._calibration

    def _load_calibration(self):
        recorded = self.manifest.data.get("calibration") or {}
        source = self.calibration_source or recorded.get("source")
        samples = (self.manifest.recipe.get("data") or {}).get("calibration_samples") or 200
        seed = self.manifest.recipe.get("seed", 0)
        if source and str(source).startswith(datalib.SYNTHETIC):
            return self._synthetic(samples, seed)
        try:
            ds = datalib.load(_loadable(source), "calibration")
        except EdgeoptError as e:
            raise EdgeoptError(f"the calibration data the converter used ({source!r}) cannot be loaded again "
                               f"({e}); pass calibration=... (--calibration) to explain") from None
        if ds is None:
            raise EdgeoptError("no calibration data is recorded for these files: pass calibration=... "
                               "(--calibration calib.npz) to explain")
        return ds.take(samples, seed=seed)

    def _synthetic(self, samples, seed):
        from ..converter.anatomy import input_ranges
        from ..converter.keras_io import load_model

        keras = self.manifest.source.get("path")
        model = load_model(keras, trust_model_code=self.trust_model_code).model
        specs = self.manifest.source.get("inputs", [])
        return datalib.synthetic(specs, min(samples, 256), seed, input_ranges(model))


def _loadable(source):
    """'digits:train' as recorded -> 'digits' as data.load takes it."""
    if isinstance(source, str) and source.startswith(datalib.DIGITS + ":"):
        return datalib.DIGITS
    return source
