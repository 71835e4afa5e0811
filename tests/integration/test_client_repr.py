"""What a client shows of its cluster (issue 17, item 16): the repr and the notebook
repr carry the current workers, threads, memory and dashboard link, and say "closed"
once closed."""

from __future__ import annotations

import re

from shoal import Client, LocalCluster


def _numbers(text: str) -> tuple[int, int]:
    m = re.search(r"processes=(\d+) threads=(\d+), memory=", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def test_repr_has_the_cluster_summary(client, cluster):
    text = repr(client)
    assert repr(cluster.scheduler_address) in text or "inproc://" in text
    assert _numbers(text) == (2, 2)


def test_repr_by_address_has_the_summary_too(cluster):
    with Client(cluster.scheduler_address, security=cluster.security, set_as_default=False) as c:
        assert _numbers(repr(c)) == (2, 2)  # no Cluster object: the scheduler tells


def test_repr_follows_the_cluster(poll):
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cl:
        with Client(cl, set_as_default=False) as c:
            assert _numbers(repr(c)) == (1, 2)
            cl.scale(2)
            poll(lambda: _numbers(repr(c)) == (2, 4), timeout=20)
            html = c._repr_html_()
            assert "Total threads" in html and "<td>4</td>" in html
            assert c.dashboard_link and c.dashboard_link in html
            assert "running" in html
        text, html = repr(c), c._repr_html_()
        assert text.endswith("closed>") and "processes=" not in text
        assert "Client (closed)" in html and "<td>closed</td>" in html
        assert "Total threads" not in html and "Dashboard" not in html


def test_repr_before_connecting():
    c = Client("tcp://127.0.0.1:1", asynchronous=True, set_as_default=False)  # never awaited
    assert "tcp://127.0.0.1:1" in repr(c)


def test_text_progress_bar_by_scheduler_address(client, cluster, capsys):
    from task_functions import inc

    from shoal.diagnostics.progressbar import TextProgressBar

    futures = client.map(inc, range(4))
    client.gather(futures)
    TextProgressBar([f.key for f in futures], scheduler=cluster.scheduler_address, interval=0.01, complete=True)
    out = capsys.readouterr().out
    assert "100% Completed" in out and "4/4" in out
