"""Atomic writes and file fingerprints. TensorFlow-free."""

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest, suffix=".tmp"):
    """Yield a temporary path beside `dest`; move it over `dest` only if the block succeeds.

    A crash or exception leaves any previous `dest` untouched and no half-written file behind.
    `suffix` is for writers that insist on an extension (Keras wants `.keras`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(dest, data: bytes):
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest, text: str):
    write_bytes_atomic(dest, text.encode("utf-8"))


def write_json_atomic(dest, obj):
    write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path) -> str:
    """Hash of a file, or of every file in a directory (for SavedModel folders), by relative path."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def tree_size(path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def gzip_size(path) -> int:
    """Bytes after gzip -9: what a download or an app bundle really costs (sparse weights compress)."""
    path = Path(path)
    if path.is_dir():
        return sum(gzip_size(p) for p in path.rglob("*") if p.is_file())
    # mtime=0 keeps the figure reproducible.
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def release_memory():
    """Give freed heap memory back to the OS (glibc keeps it otherwise), after a step that used a lot of it.

    TensorFlow and the runtimes free their tensors to malloc, whose arenas keep the pages: a process
    that predicted on a big batch stays that big while it waits for the next step. No-op off glibc.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def check_writable_dir(path):
    """Create `path` if needed and prove a file can be written there; raise OutputError otherwise."""
    from .errors import OutputError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edgeopt-write-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(
            f"output folder {str(path)!r} is not writable ({e.strerror or e}); "
            "choose another folder with --out, or fix its permissions"
        ) from None
    return path
