"""Where Numba's compiled kernels go (README, "CPU kernels and threads"): NUMBA_CACHE_DIR is honoured and
a later process loads the machine code from it; where no cache location is writable, as in a read-only
install, the kernels still import and run, compiled in memory, with a warning that says so.

Each test runs fresh Python processes, so that the cache is looked up as a new user's first import
does it; each compiles one small kernel (a few seconds)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba", reason="numba is not installed")

REPO = Path(__file__).resolve().parents[1]

# relu_forward on a few values; prints the result, then the relu kernel's cache hits in this process
RELU = ("import numpy as np, kernels.cpu as k, kernels.cpu.elementwise as e\n"
        "print(k.relu_forward(np.array([-1.0, 0.5, 2.0], np.float32)).tolist())\n"
        "print(sum(e._relu_forward.stats.cache_hits.values()))\n")


def python(code, env_changes, path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_CACHE")}
    env.update(env_changes, PYTHONPATH=str(path))
    return subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, cwd=path, capture_output=True,
                          text=True, timeout=300)


def test_numba_cache_dir_is_used_and_read_back(tmp_path):
    cache = tmp_path / "numba-cache"
    first = python(RELU, {"NUMBA_CACHE_DIR": str(cache)}, REPO)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split("\n")[:2] == ["[0.0, 0.5, 2.0]", "0"]        # compiled, nothing loaded
    written = [p.name for p in cache.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert any(name.startswith("elementwise._relu_forward") for name in written), written
    second = python(RELU, {"NUMBA_CACHE_DIR": str(cache)}, REPO)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("\n")[:2] == ["[0.0, 0.5, 2.0]", "1"]       # loaded from the cache


def test_without_a_writable_cache_location_the_kernels_still_run(tmp_path):
    """A copy of the kernels where Numba can create none of its cache directories: beside the sources,
    in NUMBA_CACHE_DIR and in the user's cache directory, a plain file stands where each directory would
    go (so the test holds even when run as root, whom file permissions do not stop)."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "kernels", site / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    for package in ("kernels", "kernels/cpu"):
        (site / package / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    result = python(RELU, {"NUMBA_CACHE_DIR": str(blocker / "numba"), "XDG_CACHE_HOME": str(blocker / "cache"),
                           "HOME": str(blocker)}, site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[0.0, 0.5, 2.0]", "0"]
    assert "minigrad: no writable Numba cache directory; _relu_forward will be compiled in every process" \
        in result.stderr
