"""Shared helpers: free loopback ports, and clusters of in-process nodes."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, TypeVar

import pytest

import quorumkv

T = TypeVar("T")

# Fast elections so leader changes and lease expiry take about a second.
FAST: Dict[str, Any] = dict(heartbeat_interval_ms=50, election_timeout_ms=300, request_timeout_ms=5000)


_HANDED_OUT: Set[int] = set()


def free_ports(n: int) -> List[int]:
    """n ports free on 127.0.0.1 right now, never handed out before in this process.

    They lie below the kernel's ephemeral range (32768 and up), so outgoing connections
    cannot take one before its node binds it; a port kept for a node that is down and
    will restart on it is never handed to another test.
    """
    ports: List[int] = []
    while len(ports) < n:
        port = random.randint(10000, 32000)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        ports.append(port)
    return ports


def eventually(check: Callable[[], Optional[T]], timeout: float = 10.0, what: str = "condition") -> T:
    """Polls `check` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            v = check()
            if v is not None and v is not False:
                return v
        except quorumkv.Error as e:
            last_error = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


class Cluster:
    """Three nodes in this process, bootstrapped together."""

    def __init__(self, root: Path, size: int = 3) -> None:
        ports = free_ports(size)
        self.addrs = {f"n{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(ports)}
        self.root = root
        self.nodes: List[quorumkv.Node] = [
            quorumkv.Node(name, root / name, addr, initial_cluster=self.addrs, **FAST)
            for name, addr in self.addrs.items()
        ]

    def start(self) -> "Cluster":
        for n in self.nodes:
            n.start()
        self.leader()
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def running(self) -> List[quorumkv.Node]:
        return [n for n in self.nodes if n.is_running]

    def leader(self, timeout: float = 15.0) -> quorumkv.Node:
        def find() -> Optional[quorumkv.Node]:
            for n in self.running():
                if n.is_leader() and n.status().has_leader:
                    return n
            return None

        return eventually(find, timeout, "a leader")

    def followers(self) -> List[quorumkv.Node]:
        lead = self.leader()
        return [n for n in self.running() if n is not lead]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[quorumkv.Node]:
    (port,) = free_ports(1)
    n = quorumkv.Node("solo", tmp_path / "solo", f"127.0.0.1:{port}", **FAST)
    with n:
        assert n.wait_for_leader(10)
        yield n
