"""Files are written whole, flushed to disk, with ordinary permissions; a failed write leaves nothing behind; a
missing folder is an error, not silently created."""

import json
import os
import stat

import pytest

from nnlift._io import atomic_write, ensure_folder, write_json


def test_write_json_round_trips_with_umask_permissions(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": 1.5})
    assert json.loads(path.read_text()) == {"a": 1.5}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.npz"
    target.write_text("old")

    def broken(tmp):
        with open(tmp, "w") as handle:
            handle.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_a_missing_folder_is_an_error_and_is_not_created(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"folder '{tmp_path / 'x' / 'y'}' does not exist; create it first"):
        write_json(tmp_path / "x" / "y" / "r.json", {"a": 1})
    assert not list(tmp_path.iterdir())
    path = write_json(ensure_folder(tmp_path / "x" / "y") / "r.json", {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}


def test_the_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def recording_replace(source, target):
        events.append("replace")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    write_json(tmp_path / "r.json", {"a": 1})
    assert events == ["fsync file", "replace", "fsync folder"]
