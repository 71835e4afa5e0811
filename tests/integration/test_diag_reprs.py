"""Notebook reprs of Client, LocalCluster and Future: consistent totals, escaped strings."""

from __future__ import annotations

import asyncio
import re
import urllib.request

from task_functions import inc

from shoal import Client, LocalCluster, wait
from shoal.diagnostics import reprs


def fail(x):
    raise ValueError("<img src=x onerror=alert(1)>")


def test_client_repr_totals_match_the_worker_list(cluster):
    with Client(cluster, set_as_default=False) as client:  # with its cluster object
        text = client._repr_html_()
        info = client.scheduler_info()
        n = len(info["workers"])
        threads = sum(w["nthreads"] for w in info["workers"].values())
        assert f"<th>Workers</th><td>{n}</td>" in text and f"<th>Total threads</th><td>{threads}</td>" in text
        assert f"Workers: {n}</summary>" in text
        for addr in info["workers"]:
            assert addr in text
        assert client.id in text and "Cluster object: LocalCluster" in text
        assert "<script" not in text
        link = client.dashboard_link
        if link:  # the link shown is the live dashboard
            assert f'href="{link}"' in text
            with urllib.request.urlopen(link, timeout=10) as r:
                assert r.status == 200
        else:
            assert "http" not in text  # no dashboard: no dead link


def test_cluster_repr(cluster):
    text = cluster._repr_html_()
    assert cluster.scheduler_address in text and cluster.name in text
    assert f"<th>Workers</th><td>{len(cluster.workers)}</td>" in text


def test_future_repr_escapes_key_and_error(client):
    key = "<b>bold</b>-1"
    f = client.submit(inc, 1, key=key)
    e = client.submit(fail, 1)
    wait([f, e])
    text = f._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt;-1" in text and "<b>bold</b>" not in text
    assert "finished" in text and "int" in text
    etext = e._repr_html_()
    assert "error" in etext and "&lt;img src=x onerror=alert(1)&gt;" in etext and "<img" not in etext


def test_long_worker_lists_are_cut_and_say_so(monkeypatch):
    workers = {f"tcp://h:{i}": {"name": f"<w{i}>", "nthreads": 2, "memory_limit": 2**30} for i in range(5)}
    monkeypatch.setattr(reprs, "MAX_WORKERS", 3)
    text = reprs.identity_html({"address": "tcp://s:1", "workers": workers})
    assert "Workers: 5 (3 of 5 shown)" in text
    assert "<th>Total threads</th><td>10</td>" in text and "5.00 GiB" in text
    assert len(re.findall(r"tcp://h:\d", text)) == 3 and "&lt;w0&gt;" in text


def test_async_client_and_cluster_reprs(cluster_kwargs):
    async def main():
        async with LocalCluster(asynchronous=True, **cluster_kwargs) as cl:
            async with Client(cl, asynchronous=True) as c:
                return c._repr_html_(), cl._repr_html_()

    ctext, cltext = asyncio.run(asyncio.wait_for(main(), 30))
    assert "Client" in ctext and "<th>Workers</th><td>2</td>" in cltext


def test_closed_client_repr_does_not_fail(cluster):
    c = Client(cluster)
    c.close()
    assert "closed" in c._repr_html_()
