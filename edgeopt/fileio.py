"""Atomic, durable writes and file fingerprints. TensorFlow-free.

Temporary files are named `.<name>.edgeopt-tmp-<pid>-<random>`: hidden, never with a model suffix
(a glob for *.tflite or *.keras cannot match a half-written file), and with the pid of the process
writing them, so `edgeopt verify` can remove those whose writer is gone. Every file gets the mode the
user's umask gives (mkstemp's private 0600 is not kept): outputs are copied into app bundles and
containers that run as other users.
"""

import contextlib
import gzip
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

TEMP_MARK = ".edgeopt-tmp-"
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.edgeopt-tmp-(?P<pid>\d+)-[0-9a-f]+$")


def fsync_dir(folder):
    """Make a rename or unlink in `folder` survive a power loss (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_name(dest) -> Path:
    dest = Path(dest)
    return dest.parent / f".{dest.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def atomic_path(dest):
    """Yield a temporary path beside `dest`; move it over `dest` only if the block succeeds.

    A crash or exception leaves any previous `dest` untouched; a temp file left by a kill is removed
    by the next `edgeopt verify --repair` (or convert/bench start). Writers that insist on a file
    extension (Keras) must write elsewhere and copy: the temp name never carries one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)
    try:
        yield tmp
        if tmp.exists():  # created by the writer with open(): the umask's mode, unlike mkstemp's 0600
            fsync_file(tmp)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_file(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


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


def check_writable_dir(path):
    """Create `path` if needed and prove a file can be written there; raise OutputError otherwise."""
    from .errors import OutputError

    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        where = "" if blocker == path else f": {str(blocker)!r} on its path"
        raise OutputError(
            f"output folder {str(path)!r} is a file, not a folder{where}; "
            "choose a folder with --out (a new folder is created)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temp_name(path / ".edgeopt-write-probe")
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        raise OutputError(
            f"output folder {str(path)!r} is not writable ({e.strerror or e}); "
            "choose another folder with --out, or fix its permissions"
        ) from None
    return path


def _file_in_the_way(path: Path):
    """`path` itself, or the first of its parents, that exists and is not a folder."""
    for p in [path, *path.parents]:
        if p.exists():
            return None if p.is_dir() else p
    return None
