"""Across hosts: a scheduler and two workers started with the CLI, each in its own network
namespace with its own address, joined by a bridge; a client in this process reaches them
through a veth of its own. Mid-computation one worker's link is cut (no reset reaches
anyone: packets just stop); the scheduler notices through the worker TTL, the other
worker's fetches from it fail through the TCP timeout, and the computation completes on
the remaining worker with exactly the result a local run gives.

Needs root and `ip netns` (skipped otherwise). Everything it creates (namespaces, veths,
processes) is removed in `finally`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest

import shoal
from shoal import Client, Security

pytestmark = pytest.mark.system

ROOT = Path(shoal.__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent.parent  # tests/: chaos_functions is imported by workers

#: environment of every process of the test cluster: a silent worker is dropped after 2 s,
#: a connection that stops answering fails after 3 s
FAST_FAILURE = {
    "shoal.scheduler.worker-ttl": "2s",
    "shoal.worker.heartbeat-interval": "200ms",
    "shoal.comm.timeouts.tcp": "3s",
    "shoal.comm.timeouts.connect": "3s",
}


def as_environment(settings: dict[str, str]) -> dict[str, str]:
    return {"DASK_" + k.upper().replace(".", "__").replace("-", "_"): v for k, v in settings.items()}


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


class Network:
    """Namespaces `<tag>-s` (scheduler), `<tag>-a`, `<tag>-b` (workers) each with one veth
    into a bridge living in namespace `<tag>-br`, plus a veth from this (root) namespace
    into the bridge. Addresses 10.213.<n>.1, .2, .3; this namespace is .254."""

    def __init__(self) -> None:
        self.tag = f"sh{os.getpid() % 100000}"
        self.net = f"10.213.{os.getpid() % 250}"
        self.nodes = {"s": 1, "a": 2, "b": 3}
        self.bridge_ns = f"{self.tag}-br"
        self.created: list[str] = []
        self.root_link = False

    def ns(self, node: str) -> str:
        return f"{self.tag}-{node}"

    def ip(self, node: str) -> str:
        return f"{self.net}.{self.nodes[node]}"

    def link(self, node: str) -> str:
        """The bridge-side end of `node`'s veth (setting it down cuts the node off)."""
        return f"{self.tag}{node}1"

    def up(self) -> None:
        br = self.bridge_ns
        run("ip", "netns", "add", br)
        self.created.append(br)
        run("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", br, "link", "set", "br0", "up")
        for node in self.nodes:
            ns, inside, outside = self.ns(node), f"{self.tag}{node}0", self.link(node)
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            run("ip", "-n", ns, "link", "add", inside, "type", "veth", "peer", "name", outside, "netns", br)
            run("ip", "-n", br, "link", "set", outside, "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.ip(node)}/24", "dev", inside)
            run("ip", "-n", ns, "link", "set", inside, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        here, there = f"{self.tag}r0", f"{self.tag}r1"
        run("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", br)
        self.root_link = True
        run("ip", "-n", br, "link", "set", there, "master", "br0", "up")
        run("ip", "addr", "add", f"{self.net}.254/24", "dev", here)
        run("ip", "link", "set", here, "up")

    def cut(self, node: str) -> None:
        run("ip", "-n", self.bridge_ns, "link", "set", self.link(node), "down")

    def down(self) -> None:
        if self.root_link:
            subprocess.run(["ip", "link", "del", f"{self.tag}r0"], capture_output=True, timeout=30, check=False)
        for ns in reversed(self.created):  # deleting a namespace deletes its veths
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


def netns_unavailable() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    probe = f"shprobe{os.getpid() % 100000}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return f"cannot create network namespaces here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30, check=False)
    return None


def test_cut_link_mid_computation_across_namespaces(tmp_path, poll):
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    from chaos_functions import block, mix, total

    secret = secrets.token_bytes(32)
    env = dict(os.environ, **as_environment(FAST_FAILURE), SHOAL_SECRET=secret.hex())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    net = Network()
    procs: list[subprocess.Popen] = []

    def start(node: str, *args: str) -> None:
        with open(tmp_path / f"{node}.log", "w") as log:
            cmd = ["ip", "netns", "exec", net.ns(node), sys.executable, "-m", "shoal.cli", *args]
            procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log))

    try:
        net.up()
        address = f"tcp://{net.ip('s')}:8786"
        start("s", "scheduler", "--host", net.ip("s"), "--port", "8786", "--no-dashboard")
        for node in ("a", "b"):
            start(node, "worker", address, "--no-nanny", "--nthreads", "1", "--name", node, "--memory-limit", "0")
        nblocks, size, delay = 24, 50_000, 0.1
        expected_blocks = [block(i, size, 0) for i in range(nblocks)]
        expected = total([mix(expected_blocks[i], expected_blocks[(i + 1) % nblocks]) for i in range(nblocks)])
        with (
            dask.config.set(FAST_FAILURE),
            Client(address, security=Security(secret), timeout=30, set_as_default=False) as c,
        ):
            c.wait_for_workers(2, timeout=60)
            hosts = {w["name"]: addr for addr, w in c.scheduler_info()["workers"].items()}
            assert sorted(hosts) == ["a", "b"]
            assert {node: addr.split("//")[1].split(":")[0] for node, addr in hosts.items()} == {
                "a": net.ip("a"),
                "b": net.ip("b"),
            }
            blocks = [c.submit(block, i, size, delay, pure=False) for i in range(nblocks)]
            mixed = [c.submit(mix, blocks[i], blocks[(i + 1) % nblocks]) for i in range(nblocks)]
            result = c.submit(total, mixed)
            # mid-computation: both workers hold results, the sum is not done
            poll(lambda: sum(f.done() for f in blocks) >= nblocks // 3, timeout=60)
            holders = c.who_has(blocks)
            assert any(hosts["a"] in h for h in holders.values()) and any(hosts["b"] in h for h in holders.values())
            assert not result.done()
            net.cut("a")
            assert result.result(timeout=60) == expected  # bit-identical to the local run
            # the cut worker was removed for its silence; the other did all the rest
            assert list(c.scheduler_info()["workers"]) == [hosts["b"]]
            removals = [e for _, e in c.get_events(hosts["a"]) if e.get("action") == "remove-worker"]
            assert removals, "the scheduler never removed the cut worker"
            print("cut worker removed:", removals[0]["reason"])
            assert all(f.status == "finished" for f in blocks + mixed)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                pass
        net.down()
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert net.tag not in leftovers
