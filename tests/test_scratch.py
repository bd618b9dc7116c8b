"""Our files in the system temp folder: one private folder per run, removed on exit, swept once its process is gone."""

import os
import subprocess
import sys
import tempfile

import pytest

from edgeopt import owner, scratch


@pytest.fixture
def system_temp(tmp_path, monkeypatch):
    """A system temp folder of the test's own, so no other process's files are touched."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def test_temp_files_of_a_run_and_its_children_land_in_its_private_folder_removed_on_exit(system_temp):
    with scratch.private_tempdir() as private:
        assert private.parent == system_temp and private.name.startswith(f"edgeopt-run-{owner.tag()}-")
        bundle = tempfile.mkdtemp(prefix="edgeopt-bench-")
        child = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
                               capture_output=True, text=True, check=True)
        with scratch.private_tempdir() as nested:
            assert nested == private
        assert os.path.dirname(bundle) == str(private) and child.stdout.strip() == str(private)
    assert list(system_temp.iterdir()) == []
    assert tempfile.gettempdir() == str(system_temp) and os.environ["TMPDIR"] == str(system_temp)


def test_an_exception_removes_the_private_folder_too(system_temp):
    with pytest.raises(KeyboardInterrupt), scratch.private_tempdir():
        tempfile.mkstemp(suffix=".py", prefix="__autograph_generated_file")
        raise KeyboardInterrupt
    assert list(system_temp.iterdir()) == []


def test_only_folders_of_processes_that_are_gone_are_swept(system_temp):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        live_start = owner.start_ticks(sleeper.pid)
        folders = {
            "gone": f"edgeopt-run-{int(gone.stdout)}.1-abc",
            "live": f"edgeopt-run-{sleeper.pid}.{live_start}-abc",
            "pid reused": f"edgeopt-run-{sleeper.pid}.{int(live_start) - 1}-abc",  # same pid, earlier process
            "not ours": "edgeopt-bench-made-by-an-older-version",
        }
        for name in folders.values():
            (system_temp / name).mkdir()
        with scratch.private_tempdir():
            left = sorted(p.name for p in system_temp.iterdir() if not p.name.startswith(f"edgeopt-run-{owner.tag()}"))
        assert left == sorted([folders["live"], folders["not ours"]])
    finally:
        sleeper.kill()
        sleeper.wait()
