"""16 Python threads writing at once while another thread measures that it is not
starved: every wait (Raft commit, fsync) releases the GIL."""

from __future__ import annotations

import threading
import time
from typing import List

import quorumkv


def test_sixteen_writers_do_not_starve_other_threads(node: quorumkv.Node) -> None:
    duration = 3.0
    stop = threading.Event()
    done: List[int] = [0] * 16
    errors: List[BaseException] = []

    def writer(i: int) -> None:
        try:
            n = 0
            while not stop.is_set():
                node.put(f"t/{i}/{n % 100}", b"x" * 100)
                n += 1
            done[i] = n
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ticks: List[float] = []

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    t = threading.Thread(target=ticker)
    start = time.monotonic()
    t.start()
    for th in threads:
        th.start()
    time.sleep(duration)
    stop.set()
    for th in threads:
        th.join()
    t.join()
    elapsed = time.monotonic() - start
    assert not errors, errors
    assert all(n > 0 for n in done), done
    puts = sum(done)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    expected = elapsed / 0.0101
    print(f"{puts} puts in {elapsed:.2f}s ({puts / elapsed:.0f}/s); ticker {len(ticks)} of ~{expected:.0f}, max gap {max(gaps) * 1000:.1f} ms")
    # The ticker wants the GIL 100 times a second: it gets it a good part of the time.
    # (A put that held the GIL while waiting for its commit would leave it a 17th of
    # the GIL at best.) The bounds leave room for a loaded CI machine's scheduling.
    assert len(ticks) >= 0.3 * expected
    assert max(gaps) < 1.0
    assert node.range("t/", prefix=True, count_only=True).count == min(puts, 1600)


def test_threads_share_one_node_and_watch(node: quorumkv.Node) -> None:
    w = node.watch("shared/", prefix=True)
    got: List[bytes] = []

    def reader() -> None:
        for ev in w:
            got.append(ev.key)
            if len(got) == 8 * 25:
                return

    r = threading.Thread(target=reader)
    r.start()
    writers = [
        threading.Thread(target=lambda i=i: [node.put(f"shared/{i}/{j}", "v") for j in range(25)]) for i in range(8)
    ]
    for th in writers:
        th.start()
    for th in writers:
        th.join()
    r.join(20)
    assert not r.is_alive()
    assert len(set(got)) == 200
