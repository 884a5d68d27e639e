"""Files are written whole, with ordinary permissions, and a failed write leaves nothing behind."""

import json
import os
import stat

import pytest

from nnlift._io import atomic_write, write_json


def test_write_json_round_trips_with_umask_permissions(tmp_path):
    path = write_json(tmp_path / "sub" / "r.json", {"a": 1.5})
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
