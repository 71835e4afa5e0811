"""Small things a user notices (issue 19 item 7): the licence metadata builds without a
setuptools warning, plurals and sizes in log lines, a closed client says so."""

from __future__ import annotations

import logging
import os
import tomllib

from shoal import Client, LocalCluster
from shoal.utils import plural

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_licence_is_an_spdx_string():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        meta = tomllib.load(f)
    assert meta["project"]["license"] == "BSD-3-Clause"  # the table form is deprecated
    assert any(r.startswith("setuptools>=77") for r in meta["build-system"]["requires"])


def test_plural():
    assert plural(1, "thread") == "1 thread" and plural(2, "thread") == "2 threads" and plural(0, "key") == "0 keys"


def test_register_line_and_a_closed_clients_repr(caplog):
    with caplog.at_level(logging.INFO, logger="shoal"):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
            c = Client(cl)
            assert "closed" not in repr(c)
            c.close()
            assert repr(c) == f"<Client: {cl.scheduler_address!r} closed>"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Register worker")]
    assert lines and lines[0].endswith("(1 thread)")
    assert sum(r.getMessage().startswith("Scheduler at") for r in caplog.records) == 1
