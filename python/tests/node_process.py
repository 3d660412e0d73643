"""One quorumkv node in its own process, driven over stdin/stdout with JSON lines.

Usage: python node_process.py NAME DATA_DIR PEER_ADDR CLUSTER_JSON
Requests: {"op": "put", "key": k, "value": v} | {"op": "get", "key": k, "serializable": b}
| {"op": "count", "prefix": p} | {"op": "status"}. Each gets one JSON line back:
{"ok": result} or {"error": class name, "message": text}.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict

import quorumkv


def handle(node: quorumkv.Node, req: Dict[str, Any]) -> Any:
    op = req["op"]
    if op == "put":
        return node.put(req["key"], req["value"]).revision
    if op == "get":
        kv = node.get(req["key"], serializable=bool(req.get("serializable", False)))
        return None if kv is None else kv.value.decode()
    if op == "count":
        return node.range(req["prefix"], prefix=True, count_only=True, serializable=bool(req.get("serializable", False))).count
    if op == "status":
        s = node.status()
        return {"id": s.id, "is_leader": s.is_leader, "has_leader": s.has_leader, "term": s.term, "revision": s.revision}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    name, data_dir, peer_addr, cluster = sys.argv[1:5]
    node = quorumkv.Node(
        name,
        data_dir,
        peer_addr,
        initial_cluster=json.loads(cluster),
        heartbeat_interval_ms=50,
        election_timeout_ms=300,
        request_timeout_ms=3000,
    )
    node.start()
    print(json.dumps({"ok": "started"}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            out: Dict[str, Any] = {"ok": handle(node, req)}
        except quorumkv.Error as e:
            out = {"error": type(e).__name__, "message": str(e)}
        print(json.dumps(out), flush=True)
    node.stop()


if __name__ == "__main__":
    main()
