"""`set_tcp_timeout`: the socket options that make a cut link fail a TCP connection."""

from __future__ import annotations

import socket

import pytest

from shoal.comm.tcp import set_tcp_timeout


def test_keepalive_and_user_timeout_follow_the_configured_seconds():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        set_tcp_timeout(sock, 30)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if not hasattr(socket, "TCP_USER_TIMEOUT"):
            pytest.skip("no TCP_USER_TIMEOUT on this platform")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000


def test_zero_leaves_the_os_defaults():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        set_tcp_timeout(sock, 0)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
