"""`AppendFiles`: values appended by group, read back whole groups in order, one file per
group, with fewer handles open than groups."""

from __future__ import annotations

import os

import numpy as np

from shoal.protocol.serialize import dumps, loads
from shoal.worker.memory import AppendFiles


def test_groups_come_back_in_order_with_their_tags_and_leave_no_file(tmp_path):
    files = AppendFiles(str(tmp_path / "d"), compression=None, max_open=2)  # fewer than the groups
    arrays = {}
    for tag in range(5):
        for group in range(4):
            a = np.arange(1000 * (group + 1)) + tag
            arrays[group, tag] = a
            assert files.append(group, tag, dumps(a))
    assert len(files) == 4 and len(os.listdir(tmp_path / "d")) == 4  # one file per group
    assert files.disk_bytes > sum(a.nbytes for a in arrays.values())
    got = files.take(2)
    assert [t for t, _ in got] == list(range(5))
    for tag, p in got:
        np.testing.assert_array_equal(loads(p), arrays[2, tag])
    assert not files.append(2, 9, dumps(1))  # read back: a late piece is dropped
    assert files.take(2) == [] and len(files) == 3
    for group in (0, 1, 3):
        assert len(files.take(group)) == 5
    assert files.disk_bytes == 0 and os.listdir(tmp_path / "d") == []
    files.close()


def test_compressed_frames_round_trip(tmp_path):
    files = AppendFiles(str(tmp_path / "d"), compression="lz4")
    a = np.zeros(1 << 20)  # compresses
    files.append("g", 7, dumps(a))
    assert files.disk_bytes < a.nbytes / 10
    ((tag, p),) = files.take("g")
    assert tag == 7 and (loads(p) == 0).all() and loads(p).shape == a.shape
    files.close()
