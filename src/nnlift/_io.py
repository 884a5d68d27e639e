"""Files written whole: write to a temporary name in the same folder, flush it to disk, then rename over the target.

Writing never creates folders: a missing folder is an error, and callers that mean to create a results folder
say so with `ensure_folder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def ensure_folder(folder: str | Path) -> Path:
    """Create `folder` (and its parents) if missing; for results folders that a command documents as created."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def existing_folder(path: str | Path) -> Path:
    """The folder that `path` goes in; FileNotFoundError, saying to create it, when it is not there."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(f"folder '{folder}' does not exist; create it first")
    return folder


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable, where the system lets a folder be opened (POSIX)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)`, flush the temporary file to disk and atomically rename it to `path`.

    The folder of `path` must exist (FileNotFoundError otherwise); on any failure the old file, if any, is kept
    and the temporary file removed.
    """
    path = Path(path)
    folder = existing_folder(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    return path


def write_json(path: str | Path, data) -> Path:
    """Write `data` as indented JSON, whole."""
    def dump(tmp: str) -> None:
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2, default=float)
    return atomic_write(path, dump)
