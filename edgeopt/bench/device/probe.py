"""What a target is and whether it can run the benchmark: `python probe.py [WORKDIR]` prints one JSON line.

The machine (as sysinfo describes it), whether each runtime imports and its version (an import can
fail where the package is installed: a wheel for another CPU, a missing system library), and the
free space where the bundle will go. Standard library only, so it runs on a board with nothing installed.
"""

import importlib
import json
import os
import shutil
import sys

import sysinfo  # sibling; `edgeopt target check` sends this module's source along when it sends the probe

IMPORTS = {"numpy": "numpy", "ai-edge-litert": "ai_edge_litert.interpreter", "onnxruntime": "onnxruntime"}


def probe(workdir) -> dict:
    facts = sysinfo.describe()
    facts["executable"] = sys.executable
    facts["home"] = os.path.expanduser("~")
    facts["imports"] = {}
    for dist, module in IMPORTS.items():
        try:
            importlib.import_module(module)
            facts["imports"][dist] = {"ok": True, "version": facts["versions"].get(dist)}
        except BaseException as e:  # an ImportError, or a wheel's native code failing as it loads
            facts["imports"][dist] = {"ok": False, "error": f"{type(e).__name__}: {str(e).strip()[:300]}"}
    folder = os.path.expanduser(workdir)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # not made yet: it will be made on the nearest existing folder's disk
    try:
        facts["disk_free_bytes"] = shutil.disk_usage(folder).free
    except OSError:
        facts["disk_free_bytes"] = None
    return facts


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1] if len(sys.argv) > 1 else "/tmp")))
