"""Bad input raises the documented exception and leaves the node working."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

import quorumkv
from quorumkv import Compare, Op

from conftest import FAST, free_ports


def still_works(node: quorumkv.Node) -> None:
    r = node.put("alive", "yes")
    kv = node.get("alive")
    assert kv is not None and kv.value == b"yes" and kv.mod_revision == r.revision


def raises(node: quorumkv.Node, exc: type[BaseException], f: Callable[[], Any]) -> BaseException:
    with pytest.raises(exc) as e:
        f()
    assert isinstance(e.value, quorumkv.Error)
    still_works(node)
    return e.value


def test_wrong_types(node: quorumkv.Node) -> None:
    bad: Any = 12
    e = raises(node, quorumkv.InvalidTypeError, lambda: node.put(bad, "v"))
    assert isinstance(e, TypeError) and isinstance(e, quorumkv.InvalidArgumentError)
    raises(node, quorumkv.InvalidTypeError, lambda: node.put("k", bad))
    raises(node, quorumkv.InvalidTypeError, lambda: node.get(None))  # type: ignore[arg-type]
    raises(node, quorumkv.InvalidTypeError, lambda: node.put("k", "v", lease=bad.__str__()))
    raises(node, quorumkv.InvalidTypeError, lambda: node.put("k", "v", prev_kv=bad))
    raises(node, quorumkv.InvalidTypeError, lambda: node.range("k", limit=True))
    raises(node, quorumkv.InvalidTypeError, lambda: node.txn([bad]))
    raises(node, quorumkv.InvalidTypeError, lambda: node.txn(success=[bad]))
    raises(node, quorumkv.InvalidTypeError, lambda: Compare.value("k") == bad)
    raises(node, quorumkv.InvalidArgumentError, lambda: node.get(2**70))  # type: ignore[arg-type]
    raises(node, quorumkv.InvalidArgumentError, lambda: node.range("k", limit=2**70))
    raises(node, quorumkv.InvalidArgumentError, lambda: node.put("\udc80", "v"))  # not encodable


def test_bad_values(node: quorumkv.Node) -> None:
    raises(node, quorumkv.InvalidArgumentError, lambda: node.put(b"", "v"))  # empty key
    e = raises(node, quorumkv.RequestTooLargeError, lambda: node.put("big", b"x" * (2 << 20)))
    assert isinstance(e, quorumkv.RequestTooLargeError) and e.max_bytes == 1536 * 1024 and e.size_bytes > e.max_bytes
    raises(node, quorumkv.InvalidArgumentError, lambda: node.range("a", "b", prefix=True))
    raises(node, quorumkv.InvalidArgumentError, lambda: node.range("a", sort_order="sideways"))  # type: ignore[arg-type]
    raises(node, quorumkv.InvalidArgumentError, lambda: node.range("a", sort_target="colour"))  # type: ignore[arg-type]
    raises(node, quorumkv.InvalidArgumentError, lambda: node.txn(success=[Op.put("x", "1"), Op.delete("x")]))
    raises(node, quorumkv.InvalidArgumentError, lambda: node.txn(success=[Op.put(f"k{i}", "v") for i in range(200)]))
    raises(node, quorumkv.InvalidArgumentError, lambda: node.grant(10**10))
    raises(node, quorumkv.InvalidArgumentError, lambda: node.watch("w").next_event(-1))
    raises(node, quorumkv.FutureRevisionError, lambda: node.get("k", revision=10**9))


def test_unknown_lease(node: quorumkv.Node) -> None:
    raises(node, quorumkv.LeaseNotFoundError, lambda: node.put("k", "v", lease=987654321))
    raises(node, quorumkv.LeaseNotFoundError, lambda: node.revoke(987654321))
    raises(node, quorumkv.LeaseNotFoundError, lambda: node.lease(987654321))
    lease = node.grant(10)
    lease.revoke()
    raises(node, quorumkv.LeaseNotFoundError, lease.keep_alive)
    raises(node, quorumkv.LeaseNotFoundError, lease.keep_alive_once)


def test_compacted_start_revision(node: quorumkv.Node) -> None:
    first = node.put("c", "1").revision
    last = node.put("c", "2").revision
    node.compact(last)

    def watch_old() -> None:
        w = node.watch("c", start_revision=first)
        next(w)

    e = raises(node, quorumkv.CompactedError, watch_old)
    assert isinstance(e, quorumkv.CompactedError) and e.compact_revision == last and e.code == "Compacted"
    raises(node, quorumkv.CompactedError, lambda: node.compact(first))
    raises(node, quorumkv.CompactedError, lambda: node.range("c", revision=first))


def test_closed_node(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    n = quorumkv.Node("closed", tmp_path / "closed", f"127.0.0.1:{port}", **FAST)
    with pytest.raises(quorumkv.NodeStoppedError):
        n.put("k", "v")  # never started
    with n:
        assert n.wait_for_leader(10)
        n.put("k", "v")
        w = n.watch("k")
    for call in (lambda: n.put("k", "v"), lambda: n.get("k"), n.status, n.members, lambda: n.watch("k")):
        with pytest.raises(quorumkv.NodeStoppedError):
            call()
    with pytest.raises(quorumkv.NodeStoppedError):
        next(w)  # the node's watches end with NodeStoppedError
    n.stop()  # idempotent
    # It starts again from its data dir.
    with n:
        assert n.wait_for_leader(10)
        kv = n.get("k")
        assert kv is not None and kv.value == b"v"


def test_bad_config_and_locked_data_dir(tmp_path: Path, node: quorumkv.Node) -> None:
    with pytest.raises(quorumkv.InvalidConfigError):
        quorumkv.Node("", tmp_path / "x", "127.0.0.1:1")
    with pytest.raises(quorumkv.InvalidConfigError):
        quorumkv.Node("a", tmp_path / "x", "127.0.0.1:1", heartbeat_interval_ms=500, election_timeout_ms=100)
    with pytest.raises(quorumkv.InvalidConfigError):
        quorumkv.Node("a", tmp_path / "x", "127.0.0.1:1", initial_cluster={"b": "127.0.0.1:2"})
    with pytest.raises(quorumkv.InvalidArgumentError):
        quorumkv.Node("a", tmp_path / "x", "127.0.0.1:1", initial_cluster={"a": "x"}, join=["y"])
    with pytest.raises(quorumkv.InvalidTypeError):
        quorumkv.Node("a", 5, "127.0.0.1:1")  # type: ignore[arg-type]
    (port,) = free_ports(1)
    twin = quorumkv.Node("solo", node.data_dir, f"127.0.0.1:{port}")
    with pytest.raises(quorumkv.DataDirError):
        twin.start()
    still_works(node)
