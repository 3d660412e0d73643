"""A 3-node cluster of three Python processes: SIGKILL the leader, writes go on, the
killed node restarts from its data dir and catches up; SIGKILL all, restart, every key back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from conftest import free_ports

HERE = Path(__file__).resolve().parent


class Proc:
    def __init__(self, name: str, data_dir: Path, addr: str, cluster: Dict[str, str]) -> None:
        self.args = [sys.executable, str(HERE / "node_process.py"), name, str(data_dir), addr, json.dumps(cluster)]
        self.name = name
        self.p: Optional["subprocess.Popen[str]"] = None
        self.start()

    def start(self) -> None:
        self.p = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=dict(os.environ)
        )
        assert self.read() == {"ok": "started"}

    def read(self) -> Any:
        assert self.p is not None and self.p.stdout is not None
        line = self.p.stdout.readline()
        assert line, f"{self.name} exited with {self.p.poll()}"
        return json.loads(line)

    def call(self, **req: Any) -> Any:
        assert self.p is not None and self.p.stdin is not None
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        return self.read()

    def ok(self, **req: Any) -> Any:
        out = self.call(**req)
        assert "ok" in out, out
        return out["ok"]

    def kill(self) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        self.p = None

    def close(self) -> None:
        if self.p is not None:
            assert self.p.stdin is not None
            self.p.stdin.close()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
            self.p = None


def leader(procs: List[Proc], timeout: float = 20) -> Proc:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            s = p.ok(op="status")
            if s["is_leader"] and s["has_leader"]:
                return p
        time.sleep(0.1)
    raise AssertionError("no leader")


def put_retrying(p: Proc, key: str, value: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = p.call(op="put", key=key, value=value)
        if "ok" in out:
            return
        assert out["error"] in ("NoLeaderError", "RequestTimeoutError", "TransportError"), out
        assert time.monotonic() < deadline, out
        time.sleep(0.1)


def test_sigkill_leader_then_everyone(tmp_path: Path) -> None:
    ports = free_ports(3)
    cluster = {f"p{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(ports)}
    procs = [Proc(name, tmp_path / name, addr, cluster) for name, addr in cluster.items()]
    written: Dict[str, str] = {}
    try:
        lead = leader(procs)
        for i in range(50):
            put_retrying(procs[i % 3], f"k/{i:04d}", f"v{i}")
            written[f"k/{i:04d}"] = f"v{i}"

        # SIGKILL the leader's process: the two others elect a leader and take writes.
        lead.kill()
        alive = [p for p in procs if p is not lead]
        for i in range(50, 150):
            put_retrying(alive[i % 2], f"k/{i:04d}", f"v{i}")
            written[f"k/{i:04d}"] = f"v{i}"
        assert leader(alive) in alive

        # The killed node restarts from its data dir and catches up.
        lead.start()
        deadline = time.monotonic() + 20
        while lead.ok(op="count", prefix="k/", serializable=True) != len(written):
            assert time.monotonic() < deadline, "the restarted node did not catch up"
            time.sleep(0.1)
        assert lead.ok(op="get", key="k/0149", serializable=True) == "v149"

        for i in range(150, 200):
            put_retrying(procs[i % 3], f"k/{i:04d}", f"v{i}")
            written[f"k/{i:04d}"] = f"v{i}"

        # SIGKILL everyone, restart, and every acknowledged key is back.
        for p in procs:
            p.kill()
        for p in procs:
            p.start()
        leader(procs)
        for p in procs:
            assert p.ok(op="count", prefix="k/") == len(written)
        for key, value in written.items():
            assert procs[int(key[2:]) % 3].ok(op="get", key=key) == value
    finally:
        for p in procs:
            if p.p is not None:
                p.kill()
