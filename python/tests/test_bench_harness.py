"""The benchmark's Rust-API side (`_native._bench_rust`) really runs the workload."""

from __future__ import annotations

import pytest

import quorumkv
from quorumkv import _native


@pytest.mark.parametrize("mode,workers", [("threads", 2), ("tasks", 4)])
def test_bench_rust_writes_and_reads(node: quorumkv.Node, mode: str, workers: int) -> None:
    before = node.status().revision
    puts = _native._bench_rust(node, "put", mode, workers, 0.3, b"v" * 16)
    assert puts > 0
    # Every counted put made one revision (the rate is over at least 0.3 s), and worker
    # 0's first key (8-byte big-endian 0) holds the value.
    assert node.status().revision - before >= int(puts * 0.3)
    kv = node.get((0).to_bytes(8, "big"))
    assert kv is not None and kv.value == b"v" * 16
    assert _native._bench_rust(node, "get_linearizable", mode, workers, 0.2, b"") > 0
    assert _native._bench_rust(node, "get_serializable", mode, workers, 0.2, b"") > 0


def test_bench_rust_bad_arguments(node: quorumkv.Node) -> None:
    bad = [("scan", "threads", 1, 0.1), ("put", "fibers", 1, 0.1), ("put", "threads", 0, 0.1), ("put", "threads", 1, 0.0)]
    for workload, mode, workers, seconds in bad:
        with pytest.raises(quorumkv.InvalidArgumentError):
            _native._bench_rust(node, workload, mode, workers, seconds, b"v")
    assert node.put("alive", "yes").revision > 0


def test_bench_rust_on_a_stopped_node(node: quorumkv.Node) -> None:
    node.stop()
    with pytest.raises(quorumkv.NodeStoppedError):
        _native._bench_rust(node, "put", "threads", 1, 0.1, b"v")
