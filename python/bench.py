"""Throughput of quorumkv from Python against one node in this process.

    python bench.py [--seconds 3] [--rounds 3] [--threads 16] [--tasks 64] [--value-bytes 256]

Measures puts/s and gets/s (linearizable, and serializable) with N Python threads
calling the blocking API, and with M asyncio tasks awaiting the async API on one event
loop, and in the same run, on the same node, the same workload through the Rust API:
N OS threads calling its blocking methods, or M tasks on the library's runtime awaiting
its async ones (`quorumkv._native._bench_rust`). The two sides alternate, `--rounds`
rounds each, and the medians and their ratio are printed as a Markdown table. Keys are
8 bytes and values 256 bytes, as in the Rust API benchmark (`cargo bench --bench core`).
Build the module with `maturin develop --release` (or install the wheel) first: a debug
build is several times slower.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable, List, Tuple

# Run as `python python/bench.py`, the script's directory would shadow an installed
# (release) quorumkv with the source tree's quorumkv/ (a `maturin develop` build).
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import quorumkv  # noqa: E402

KEYS = 1_000


def key(i: int) -> bytes:
    return struct.pack(">Q", i % 100_000_000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def threaded(n_threads: int, seconds: float, op: Callable[[int, int], object]) -> float:
    """Runs op(thread, i) in a closed loop on n_threads threads; returns operations/s."""
    stop = threading.Event()
    counts: List[int] = [0] * n_threads

    def run(t: int) -> None:
        i = 0
        while not stop.is_set():
            op(t, i)
            i += 1
        counts[t] = i

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join()
    return sum(counts) / (time.perf_counter() - start)


async def tasks(n_tasks: int, seconds: float, op: Callable[[int, int], Awaitable[object]]) -> float:
    """Runs `await op(task, i)` in a closed loop on n_tasks asyncio tasks; returns operations/s."""
    stop = False
    counts: List[int] = [0] * n_tasks

    async def run(t: int) -> None:
        i = 0
        while not stop:
            await op(t, i)
            i += 1
        counts[t] = i

    start = time.perf_counter()
    running = [asyncio.ensure_future(run(t)) for t in range(n_tasks)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*running)
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0, help="length of one round of one side")
    p.add_argument("--rounds", type=int, default=3, help="rounds per workload and side (median reported)")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--tasks", type=int, default=64)
    p.add_argument("--value-bytes", type=int, default=256)
    args = p.parse_args()
    value = b"\x02" * args.value_bytes
    if quorumkv._native.debug_build():
        print(f"warning: {quorumkv.__file__} is a debug build; use a release build for figures", file=sys.stderr)
    secs, n, m = args.seconds, args.threads, args.tasks

    with tempfile.TemporaryDirectory(prefix="qkv-pybench-") as tmp:
        # As the Rust benchmark (benches/common): no snapshot every 10,000 entries mid-run.
        node = quorumkv.Node("bench", Path(tmp) / "n1", f"127.0.0.1:{free_port()}", snapshot_threshold_entries=100_000)
        with node:
            assert node.wait_for_leader(10)
            for i in range(KEYS):
                node.put(key(i), value)
            # The gets below read these keys, so every get finds a value (as in the Rust
            # benchmark), on both sides.
            assert node.get(key(KEYS - 1)) is not None

            def rust(workload: str, mode: str, workers: int) -> Callable[[], float]:
                return lambda: quorumkv._native._bench_rust(node, workload, mode, workers, secs, value)

            def in_loop(op: Callable[[int, int], Awaitable[object]]) -> Callable[[], float]:
                return lambda: asyncio.run(tasks(m, secs, op))

            # (name, Python side, Rust side): the Rust side runs the same workload, keys
            # and worker count through the Rust API (bench.rs in the module).
            workloads: List[Tuple[str, Callable[[], float], Callable[[], float]]] = [
                (
                    f"puts/s, {n} threads",
                    lambda: threaded(n, secs, lambda t, i: node.put(key(t * 1_000_000 + i), value)),
                    rust("put", "threads", n),
                ),
                (
                    f"linearizable gets/s, {n} threads",
                    lambda: threaded(n, secs, lambda t, i: node.get(key((t + 7 * i) % KEYS))),
                    rust("get_linearizable", "threads", n),
                ),
                (
                    f"serializable gets/s, {n} threads",
                    lambda: threaded(n, secs, lambda t, i: node.get(key((t + 7 * i) % KEYS), serializable=True)),
                    rust("get_serializable", "threads", n),
                ),
                (
                    f"puts/s, asyncio {m} tasks / {m} Rust tasks",
                    in_loop(lambda t, i: node.aput(key(t * 1_000_000 + i), value)),
                    rust("put", "tasks", m),
                ),
                (
                    f"linearizable gets/s, asyncio {m} tasks / {m} Rust tasks",
                    in_loop(lambda t, i: node.aget(key((t + 7 * i) % KEYS))),
                    rust("get_linearizable", "tasks", m),
                ),
            ]
            rows = []
            for name, py_side, rust_side in workloads:
                py_runs: List[float] = []
                rust_runs: List[float] = []
                for r in range(args.rounds):
                    # Alternate which side goes first, so drift hits both alike.
                    order = [(py_side, py_runs), (rust_side, rust_runs)]
                    for side, runs in order if r % 2 == 0 else reversed(order):
                        runs.append(side())
                print(f"{name}: Python {py_runs}, Rust {rust_runs}", file=sys.stderr)
                rows.append((name, statistics.median(py_runs), statistics.median(rust_runs)))

    print(f"| 1 node, {args.value_bytes}-byte values, median of {args.rounds} x {secs:g} s | Python | Rust API | Python / Rust |")
    print("|---|---:|---:|---:|")
    for name, py_ops, rust_ops in rows:
        print(f"| {name} | {py_ops:,.0f} | {rust_ops:,.0f} | {py_ops / rust_ops:.2f} |")


if __name__ == "__main__":
    main()
