"""manifest.json: one record per produced file, with lineage, options, versions and check figures.

TensorFlow-free: the benchmark side reads manifests on devices without TensorFlow. Runs into one
folder merge (edgeopt.publish): one record per file, the newest wins, each naming the `run` that
made it; `runs` lists those runs. Files that failed their check live in `failed/`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EdgeoptError
from .fileio import write_json_atomic

MANIFEST_NAME = "manifest.json"
FAILED_DIR = "failed"  # files that failed their check: kept to inspect, apart from the ones to ship
SCHEMA = "edgeopt.manifest"
SCHEMA_VERSION = 1


@dataclass
class TensorSpec:
    name: str
    shape: list  # None for a dynamic dimension
    dtype: str
    quantization: dict | None = None  # {"scale": float, "zero_point": int} for int8/uint8 tensors

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


@dataclass
class Artifact:
    """One produced file (or folder) and everything needed to trust and reproduce it."""

    id: str  # unique within a manifest; also the file name
    path: str  # relative to the manifest's folder
    format: str
    precision: str
    stage: str  # what made it: "prune", "tflite-convert", "onnx-export", "onnx-quantize", ...
    parent: str | None  # id of the artifact it was made from (None: the source model)
    status: str = "ok"
    error: str | None = None
    options: dict = field(default_factory=dict)
    tool_versions: dict = field(default_factory=dict)
    sha256: str | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    inputs: list = field(default_factory=list)  # TensorSpec dicts
    outputs: list = field(default_factory=list)
    sparsity: dict | None = None
    check: dict | None = None
    facts: dict = field(default_factory=dict)  # what the step found (e.g. which ops ended up int8)
    seconds: float | None = None  # time the step took when it last ran
    notes: list = field(default_factory=list)
    cache_key: str | None = None  # hash of parent + stage + options + versions: lets re-runs reuse work
    run: str | None = None  # id of the run that made the file (see Manifest.runs)
    parent_sha256: str | None = None  # the parent file it was made from: a later run may replace that parent

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def ok(self):
        return self.status == "ok"


@dataclass
class Manifest:
    source: dict = field(default_factory=dict)  # the input model: path, sha256, loader, keras version
    recipe: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # calibration / evaluation provenance; evaluation.npz path
    tool_versions: dict = field(default_factory=dict)
    artifacts: list = field(default_factory=list)  # Artifact
    runs: list = field(default_factory=list)  # {id, command, started, finished, source, artifacts}: oldest first
    root: Path | None = field(default=None, compare=False, repr=False)  # folder the paths are relative to

    def to_dict(self):
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "recipe": self.recipe,
            "data": self.data,
            "tool_versions": self.tool_versions,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "runs": self.runs,
        }

    @classmethod
    def from_dict(cls, d, root=None):
        if d.get("schema") != SCHEMA:
            raise EdgeoptError("not an edgeopt manifest (its 'schema' field is missing or different)")
        if d.get("schema_version", 0) > SCHEMA_VERSION:
            raise EdgeoptError(
                f"manifest schema version {d['schema_version']} is newer than this edgeopt understands "
                f"({SCHEMA_VERSION}); upgrade edgeopt"
            )
        return cls(
            source=d.get("source", {}),
            recipe=d.get("recipe", {}),
            data=d.get("data", {}),
            tool_versions=d.get("tool_versions", {}),
            artifacts=[Artifact.from_dict(a) for a in d.get("artifacts", [])],
            runs=d.get("runs", []),
            root=Path(root) if root else None,
        )

    @classmethod
    def load(cls, path) -> "Manifest":
        """Load from a manifest.json file or the folder holding one."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise EdgeoptError(f"no manifest at {str(path)!r}: run `edgeopt convert` into that folder first") from None
        except json.JSONDecodeError as e:
            raise EdgeoptError(f"manifest {str(path)!r} is not valid JSON ({e})") from None
        return cls.from_dict(d, root=path.parent)

    def save(self, folder=None):
        folder = Path(folder or self.root)
        write_json_atomic(folder / MANIFEST_NAME, self.to_dict())
        self.root = folder
        return folder / MANIFEST_NAME

    def get(self, artifact_id) -> Artifact | None:
        return next((a for a in self.artifacts if a.id == artifact_id), None)

    def put(self, artifact: Artifact):
        """Add or replace (by id) a record, keeping the order artifacts were first produced in."""
        for i, a in enumerate(self.artifacts):
            if a.id == artifact.id:
                self.artifacts[i] = artifact
                return
        self.artifacts.append(artifact)

    def path_of(self, artifact: Artifact) -> Path:
        return (self.root or Path(".")) / artifact.path

    @property
    def ok(self):
        return [a for a in self.artifacts if a.ok]

    def of_run(self, run_id=None) -> list:
        """The records a run made or confirmed (reused); default: the latest run's."""
        run = next((r for r in reversed(self.runs) if run_id in (None, r["id"])), None)
        ids = set(run["artifacts"]) if run else set()
        return [a for a in self.artifacts if a.id in ids] if run else list(self.artifacts)

    @property
    def failed(self):
        return [a for a in self.artifacts if a.status == "failed"]

    def evaluation_path(self) -> Path | None:
        """The evaluation inputs (and labels, and reference outputs) saved beside the artifacts."""
        rel = self.data.get("evaluation", {}).get("path")
        return (self.root or Path(".")) / rel if rel else None
