"""Checkpoints: a .npz of named arrays plus a small JSON header, written atomically.

The file is written to a temporary name beside the target, flushed to disk, then renamed
over it: a crash mid-write leaves the previous checkpoint whole.  The temporary name carries the
writer's process id, so that the next save removes what a killed writer left behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

import numpy as np

from .backend import to_numpy

HEADER = "__header__"
FORMAT = "minigrad-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or does not fit what it is loaded into."""


_TEMPORARY = re.compile(r"^\.checkpoint-(?:(\d+)-)?.*\.npz\.tmp$")


def _remove_orphans(folder):
    """Delete the temporary files of writers that died mid-save (their process is gone); a live writer's
    file, in another process, stays."""
    for name in os.listdir(folder):
        match = _TEMPORARY.match(name)
        if not match:
            continue
        pid = int(match.group(1)) if match.group(1) else None
        if pid == os.getpid():
            continue
        if pid is not None:
            try:
                os.kill(pid, 0)
                continue                                 # alive: its save is in progress
            except ProcessLookupError:
                pass
            except PermissionError:
                continue                                 # another user's live process
        try:
            os.remove(os.path.join(folder, name))
        except OSError:
            pass


def save(path, arrays, header):
    """Write {name: array} and a JSON-able header dict to `path` atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    _remove_orphans(folder)
    payload = {name: to_numpy(a) for name, a in arrays.items()}          # GPU arrays are copied to the host
    payload[HEADER] = np.frombuffer(json.dumps({"format": FORMAT, **header}).encode(), dtype=np.uint8)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".checkpoint-{os.getpid()}-", suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load(path):
    """(arrays, header) from a checkpoint written by save(); CheckpointError says what is wrong."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        # the file opened here, so that it is closed whatever np.load raises (a truncated zip left
        # NumPy's own handle open: a ResourceWarning in the tests)
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as data:
            if HEADER not in data.files:
                raise CheckpointError(f"{path}: not a minigrad checkpoint (no header)")
            header = json.loads(bytes(data[HEADER]).decode())
            arrays = {name: data[name] for name in data.files if name != HEADER}
    except CheckpointError:
        raise
    except Exception as error:      # zip, array-header or JSON damage: BadZipFile, EOFError, SyntaxError, ...
        raise CheckpointError(f"{path}: the checkpoint is truncated or corrupted ({type(error).__name__}: "
                              f"{error})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {header.get('format')!r}")
    return arrays, header


def split(arrays, prefix):
    """The arrays saved under `prefix/`, with the prefix removed."""
    start = len(prefix) + 1
    return {name[start:]: a for name, a in arrays.items() if name.startswith(prefix + "/")}
