"""Repair `.keras` files saved on Windows, whose weight names use backslashes (keras-team/keras#18528).

Keras 2.13-2.15 on Windows wrote HDF5 group names such as 'layers\\lstm\\cell/vars/0' into
model.weights.h5; the loader looks for 'layers/lstm/cell/vars/0', finds no variables and fails.
The repair copies the archive to a temporary file with every HDF5 name using '/'; the input is
never modified.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

WEIGHTS = "model.weights.h5"


def backslash_names(path) -> list[str]:
    """HDF5 names in a .keras archive's weights that contain a backslash (empty when the file is fine)."""
    import h5py

    with zipfile.ZipFile(path) as z:
        if WEIGHTS not in z.namelist():
            return []
        with h5py.File(io.BytesIO(z.read(WEIGHTS)), "r") as f:
            names = []
            f.visit(lambda name: names.append(name) if "\\" in name else None)
    return names


@contextlib.contextmanager
def repaired_copy(path):
    """Yield the path of a temporary copy of `path` whose weight names use '/'; removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="edgeopt-repair-"))
    try:
        target = tmp / Path(path).name
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                dst.writestr(item, _fix_weights(data) if item.filename == WEIGHTS else data)
        yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fix_weights(blob: bytes) -> bytes:
    import h5py

    out = io.BytesIO()
    with h5py.File(io.BytesIO(blob), "r") as src, h5py.File(out, "w") as dst:
        _copy_attrs(src, dst)

        def copy(name, obj):
            new = name.replace("\\", "/")
            if isinstance(obj, h5py.Dataset):
                dst.create_dataset(new, data=obj[()])
                _copy_attrs(obj, dst[new])
            else:
                _copy_attrs(obj, dst.require_group(new))

        src.visititems(copy)
    return out.getvalue()


def _copy_attrs(src, dst):
    for key, value in src.attrs.items():
        dst.attrs[key] = value
