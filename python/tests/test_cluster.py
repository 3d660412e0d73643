"""A 3-node cluster in one Python process: KV with etcd's options, txn, watch (sync and
async), leases, members, and a leader change when the leader stops."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

import quorumkv
from quorumkv import Compare, Op

from conftest import Cluster, eventually, free_ports, FAST


def test_put_get_on_every_node(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    r = a.put(b"greeting", "hello")
    assert r.revision == r.header.revision > 1
    assert r.header.raft_term >= 1
    assert r.header.cluster_id == a.cluster_id == b.cluster_id
    for n in cluster.nodes:
        kv = n.get("greeting")
        assert kv is not None
        assert kv.key == b"greeting" and kv.value == b"hello"
        assert kv.version == 1 and kv.create_revision == kv.mod_revision == r.revision
    assert c.get(b"missing") is None
    # Serializable reads are local; after a read barrier they see the write too.
    c.read_barrier()
    kv = c.get(b"greeting", serializable=True)
    assert kv is not None and kv.value == b"hello"


def test_put_options(cluster: Cluster) -> None:
    n = cluster.followers()[0]
    first = n.put("k", "v1")
    r = n.put("k", "v2", prev_kv=True)
    assert r.prev_kv is not None and r.prev_kv.value == b"v1"
    assert n.put("k2", "x").prev_kv is None
    # ignore_value keeps the value, bumps the version.
    n.put("k", b"", ignore_value=True)
    kv = n.get("k")
    assert kv is not None and kv.value == b"v2" and kv.version == 3
    # Reading at an old revision.
    old = n.get("k", revision=first.revision)
    assert old is not None and old.value == b"v1"
    with pytest.raises(quorumkv.InvalidArgumentError):
        n.put("nope", b"", ignore_value=True)  # key not found
    with pytest.raises(quorumkv.InvalidArgumentError):
        n.put("k", b"x", ignore_value=True)  # value provided


def test_range_options(cluster: Cluster) -> None:
    n = cluster.nodes[2]
    for i in range(10):
        n.put(f"r/{i:02d}", f"value-{9 - i}")
    n.put("r0", "outside")
    n.put("s", "after")
    r = n.range("r/", prefix=True)
    assert [kv.key for kv in r.kvs] == [f"r/{i:02d}".encode() for i in range(10)]
    assert r.count == 10 and not r.more and len(r) == 10
    assert [kv.key for kv in r] == [kv.key for kv in r.kvs]

    r = n.range("r/", prefix=True, limit=3)
    assert len(r.kvs) == 3 and r.more and r.count == 10

    r = n.range("r/03", "r/06")
    assert [kv.key for kv in r.kvs] == [b"r/03", b"r/04", b"r/05"]

    r = n.range("r0", from_key=True)
    assert [kv.key for kv in r.kvs] == [b"r0", b"s"]

    r = n.range("r/", prefix=True, sort_order="descend", sort_target="key", limit=2)
    assert [kv.key for kv in r.kvs] == [b"r/09", b"r/08"]
    r = n.range("r/", prefix=True, sort_order="ascend", sort_target="value")
    assert r.kvs[0].value == b"value-0" and r.kvs[0].key == b"r/09"

    r = n.range("r/", prefix=True, keys_only=True)
    assert all(kv.value == b"" for kv in r.kvs) and len(r.kvs) == 10
    r = n.range("r/", prefix=True, count_only=True)
    assert r.kvs == [] and r.count == 10

    rev = n.status().revision
    n.put("r/00", "changed")
    r = n.range("r/", prefix=True, revision=rev)
    assert r.kvs[0].value == b"value-9"
    r = n.range("r/", prefix=True, min_mod_revision=rev + 1)
    assert [kv.key for kv in r.kvs] == [b"r/00"]
    r = n.range("r/", prefix=True, serializable=True)
    assert r.count == 10
    everything = n.range(b"", prefix=True)
    assert everything.count == 12


def test_delete_options(cluster: Cluster) -> None:
    n = cluster.leader()
    for k in ["d/a", "d/b", "d/c", "e"]:
        n.put(k, "v")
    r = n.delete("d/a", prev_kv=True)
    assert r.deleted == 1 and [kv.key for kv in r.prev_kvs] == [b"d/a"]
    assert n.delete("d/a").deleted == 0
    r = n.delete("d/", prefix=True)
    assert r.deleted == 2 and r.prev_kvs == []
    assert n.range("d/", prefix=True).count == 0
    assert n.get("e") is not None


def test_txn(cluster: Cluster) -> None:
    n = cluster.followers()[0]
    n.put("acct/a", "100")
    created = n.get("acct/a")
    assert created is not None
    # Compare-and-swap on the value.
    t = n.txn(
        compare=[Compare.value("acct/a") == b"100"],
        success=[Op.put("acct/a", "90"), Op.put("acct/b", "10"), Op.get("acct/a")],
        failure=[Op.get("acct/a")],
    )
    assert t.succeeded and bool(t)
    put_a, put_b, got = t.responses
    assert isinstance(put_a, quorumkv.PutResult) and isinstance(got, quorumkv.RangeResult)
    assert got.kvs[0].value == b"90"
    assert put_a.header.revision == put_b.header.revision  # one revision per txn
    # The same compare now fails and runs the failure branch.
    t = n.txn([Compare.value("acct/a") == b"100"], [Op.put("acct/a", "0")], [Op.range("acct/", prefix=True)])
    assert not t.succeeded
    (rng,) = t.responses
    assert isinstance(rng, quorumkv.RangeResult) and rng.count == 2
    # Other targets and operators.
    assert n.txn([Compare.version("acct/a") == 2]).succeeded
    assert n.txn([Compare.version("acct/a") > 1, Compare.version("acct/a") < 3]).succeeded
    assert n.txn([Compare.create_revision("acct/a") == created.create_revision]).succeeded
    assert n.txn([Compare.mod_revision("acct/a") != created.mod_revision]).succeeded
    assert n.txn([Compare.create_revision("nope") == 0]).succeeded  # absent key
    assert n.txn([Compare.lease("acct/a") == 0]).succeeded
    assert n.txn([Compare.value("acct/", prefix=True) != b"x"]).succeeded
    # Delete and nested txn.
    t = n.txn(
        success=[
            Op.delete("acct/b", prev_kv=True),
            # Compares of a nested txn see the state before the outer one, as in etcd.
            Op.txn([Compare.version("acct/b") == 1], [Op.put("acct/c", "nested")]),
        ]
    )
    assert t.succeeded
    d, nested = t.responses
    assert isinstance(d, quorumkv.DeleteResult) and d.deleted == 1
    assert isinstance(nested, quorumkv.TxnResult) and nested.succeeded
    kv = n.get("acct/c")
    assert kv is not None and kv.value == b"nested"
    with pytest.raises(quorumkv.InvalidArgumentError):
        n.txn(success=[Op.put("x", "1"), Op.put("x", "2")])  # duplicate key
    with pytest.raises(quorumkv.InvalidArgumentError):
        Compare.version("x") <= 1  # type: ignore[operator]  # etcd has no <=


def test_compact(cluster: Cluster) -> None:
    n = cluster.leader()
    first = n.put("c", "1").revision
    n.put("c", "2")
    last = n.put("c", "3").revision
    n.compact(last)
    with pytest.raises(quorumkv.CompactedError) as e:
        n.get("c", revision=first)
    assert e.value.compact_revision == last
    with pytest.raises(quorumkv.FutureRevisionError):
        n.get("c", revision=last + 1000)
    kv = n.get("c", revision=last)
    assert kv is not None and kv.value == b"3"


def test_watch_sync(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    base = a.put("w/0", "zero").revision
    with b.watch("w/", prefix=True, start_revision=base, prev_kv=True) as w:
        a.put("w/1", "one")
        a.put("w/1", "uno")
        c.delete("w/0")
        events = [next(w) for _ in range(4)]
    assert [(e.type, e.key) for e in events] == [
        ("put", b"w/0"),
        ("put", b"w/1"),
        ("put", b"w/1"),
        ("delete", b"w/0"),
    ]
    revs = [e.revision for e in events]
    assert revs == sorted(revs) and revs[0] == base
    assert events[2].prev_kv is not None and events[2].prev_kv.value == b"one"
    assert events[3].prev_kv is not None and events[3].prev_kv.value == b"zero"
    assert events[1].kv.value == b"one" and events[1].kv.version == 1
    # After the with block the watch is cancelled: iteration ends.
    assert list(w) == []


def test_watch_filters_and_cancel_from_thread(cluster: Cluster) -> None:
    n = cluster.nodes[0]
    w = n.watch("f", no_delete=True)
    n.put("f", "1")
    n.delete("f")
    n.put("f", "2")
    assert [e.value for e in (next(w), next(w))] == [b"1", b"2"]
    assert w.next_event(timeout=0.2) is None and not w.done
    # Cancel from another thread while this one waits.
    threading.Timer(0.2, w.cancel).start()
    assert list(w) == []
    assert w.done


def test_watch_compacted_start(cluster: Cluster) -> None:
    n = cluster.nodes[1]
    r1 = n.put("wc", "1").revision
    r2 = n.put("wc", "2").revision
    n.compact(r2)
    n.read_barrier()  # the compaction is applied on this node too
    # Raised by watch() when the node knows the compaction already, else by the iteration.
    w: Optional[quorumkv.Watch] = None
    with pytest.raises(quorumkv.CompactedError) as e:
        w = n.watch("wc", start_revision=r1)
        next(w)
    assert e.value.compact_revision == r2
    n.put("still", "works")
    assert w is None or w.next_event(0) is None and w.done


def test_watch_async(cluster: Cluster) -> None:
    a, b, _ = cluster.nodes

    async def main() -> List[bytes]:
        w = b.watch("aw/", prefix=True)
        got: List[bytes] = []

        async def consume() -> None:
            async for ev in w:
                got.append(ev.value)
                if len(got) == 20:
                    break

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        await asyncio.gather(*[a.aput(f"aw/{i}", str(i)) for i in range(20)])
        await asyncio.wait_for(task, 10)
        # A cancelled watch ends async iteration too.
        async with w:
            pass
        assert [e async for e in w] == []
        return got

    got = asyncio.run(main())
    assert sorted(got, key=int) == [str(i).encode() for i in range(20)]


def test_async_kv(cluster: Cluster) -> None:
    n = cluster.followers()[1]

    async def main() -> None:
        puts = await asyncio.gather(*[n.aput(f"ak/{i:03d}", f"{i}") for i in range(100)])
        assert len({p.revision for p in puts}) == 100
        kv = await n.aget("ak/007")
        assert kv is not None and kv.value == b"7"
        assert await n.aget("ak/none") is None
        r = await n.arange("ak/", prefix=True, limit=10)
        assert len(r.kvs) == 10 and r.more and r.count == 100
        t = await n.atxn([Compare.value("ak/001") == "1"], [Op.put("ak/001", "one")])
        assert t.succeeded
        d = await n.adelete("ak/", prefix=True)
        assert d.deleted == 100
        lease = await n.agrant(5)
        assert lease.ttl >= 5
        with pytest.raises(quorumkv.LeaseNotFoundError):
            await n.aput("x", "y", lease=12345)
        h = await n.acompact(d.header.revision)
        assert h.revision >= d.header.revision
        with pytest.raises(quorumkv.CompactedError):
            await n.aget("ak/001", revision=2)

    asyncio.run(main())


def test_async_calls_of_one_loop_iteration_go_together(cluster: Cluster) -> None:
    """Calls made in one event-loop iteration reach the runtime as one batch: calls on
    every node of the cluster in one batch, a cancelled call in it, batches back to back."""
    nodes = cluster.nodes

    async def main() -> None:
        # One iteration: puts through all three nodes at once.
        puts = [nodes[i % 3].aput(f"batch/{i:03d}", f"{i}") for i in range(60)]
        doomed = asyncio.ensure_future(nodes[0].aget("batch/000"))
        # Bounded waits: a batch that never reached the runtime fails the test, not hangs it.
        results = await asyncio.wait_for(asyncio.gather(*puts), 30)
        assert len({r.revision for r in results}) == 60
        doomed.cancel()  # may already be done; either way nothing else is disturbed
        # Gets on every node see every put (linearizable), batch after batch.
        for _ in range(5):
            got = await asyncio.wait_for(
                asyncio.gather(*[n.aget(f"batch/{i:03d}") for n in nodes for i in range(0, 60, 7)]), 30
            )
            assert all(kv is not None for kv in got)
            assert [kv.value for kv in got if kv is not None] == [f"{i}".encode() for _ in nodes for i in range(0, 60, 7)]
        # A call on a stopped node fails at once, before anything is queued.
        with pytest.raises(quorumkv.NodeStoppedError):
            await quorumkv.Node("off", "/nonexistent", "127.0.0.1:1").aget("k")

    asyncio.run(main())


def test_leases_expire_and_delete_keys(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    # Three times the minimum (1 s with the fast election timeout of the tests): the
    # checks below must all run before it expires, on a loaded machine too.
    ttl = 3 * a.min_lease_ttl
    lease = a.grant(ttl)
    assert lease.ttl == ttl and int(lease) == lease.id
    assert lease.id in b.leases()
    b.put("lease/a", "1", lease=lease)
    c.put("lease/b", "2", lease=lease.id)
    info = lease.time_to_live(keys=True)
    assert sorted(info.keys) == [b"lease/a", b"lease/b"] and info.granted_ttl == ttl
    kv = c.get("lease/a")
    assert kv is not None and kv.lease == lease.id
    w = c.watch("lease/", prefix=True)
    # Unrenewed, the lease expires and its keys go, on every node.
    eventually(lambda: all(n.get("lease/a") is None and n.get("lease/b") is None for n in cluster.nodes), 10, "expiry")
    events = [next(w), next(w)]
    assert {e.type for e in events} == {"delete"} and {e.key for e in events} == {b"lease/a", b"lease/b"}
    assert events[0].revision == events[1].revision  # one revision
    assert lease.time_to_live().ttl == -1
    with pytest.raises(quorumkv.LeaseNotFoundError):
        a.put("late", "x", lease=lease)


def test_lease_keep_alive_and_revoke(cluster: Cluster) -> None:
    a, b, _ = cluster.nodes
    ttl = 2 * a.min_lease_ttl  # renewed every third of it: a stall must pass 2/3 of it
    lease = b.grant(ttl)
    lease.keep_alive()
    assert lease.keeping_alive
    b.put("kept", "1", lease=lease)
    time.sleep(2.5 * ttl)
    assert a.get("kept") is not None  # renewed past its TTL
    assert lease.keep_alive_once() >= 1
    with b.grant(30) as scoped:
        a.put("scoped", "x", lease=scoped)
    assert a.get("scoped") is None  # revoked on exit
    h = lease.revoke()
    assert h.revision > 0 and not lease.keeping_alive
    assert a.get("kept") is None
    with pytest.raises(quorumkv.LeaseNotFoundError):
        lease.revoke()
    with pytest.raises(quorumkv.LeaseNotFoundError):
        a.lease(lease.id)
    other = a.grant(30, id=4242)
    assert other.id == 4242 and b.lease(4242).id == 4242
    with pytest.raises(quorumkv.LeaseExistsError):
        a.grant(30, id=4242)
    b.revoke(4242)


def test_members_add_remove(cluster: Cluster, tmp_path: object) -> None:
    a, b, c = cluster.nodes
    members = a.members()
    assert sorted(m.name for m in members) == ["n1", "n2", "n3"]
    assert {m.id for m in members} == {n.id for n in cluster.nodes}
    assert all(not m.is_learner for m in members)
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    n4 = quorumkv.Node("n4", cluster.root / "n4", addr, join=[b.peer_addr], join_as_learner=True, **FAST)
    with n4:
        # Every member learns of the change when it applies it: wait for all of them.
        eventually(lambda: all(any(m.name == "n4" for m in n.members()) for n in cluster.nodes), 10, "n4 listed")
        (m4,) = [m for m in a.members() if m.name == "n4"]
        assert m4.is_learner and m4.peer_addrs == [addr] and m4.id == n4.id
        a.put("for-n4", "hi")
        eventually(lambda: n4.get("for-n4", serializable=True), 10, "n4 catches up")
        a.promote_member(n4.id)
        eventually(lambda: not [m for m in b.members() if m.name == "n4"][0].is_learner, 10, "promotion")
        a.remove_member(n4.id)
        eventually(lambda: all(m.name != "n4" for m in c.members()), 10, "n4 removed")
    with pytest.raises(quorumkv.MemberNotFoundError):
        a.remove_member(12345)
    with pytest.raises(quorumkv.MembershipError):
        a.add_member("dup", a.peer_addr)


def test_leader_change_when_leader_stops(cluster: Cluster) -> None:
    old = cluster.leader()
    term = old.status().term
    old.put("before", "1")
    others = [n for n in cluster.nodes if n is not old]
    w = others[0].watch("after")
    old.stop()
    assert not old.is_running
    with pytest.raises(quorumkv.NodeStoppedError):
        old.get("before")
    new = cluster.leader()
    assert new is not old and new.status().term > term
    eventually(lambda: all(n.leader() == new.id for n in others), 10, "every survivor follows the new leader")
    others[1].put("after", "2")
    assert next(w).value == b"2"
    for n in others:
        kv = n.get("before")
        assert kv is not None and kv.value == b"1"
    # The stopped node restarts from its data dir and catches up.
    old.start()
    eventually(lambda: old.get("after", serializable=True), 10, "catch up")
    assert old.id in {m.id for m in new.members()}


def test_nodes_on_a_local_network(tmp_path: Path) -> None:
    net = quorumkv.LocalNetwork()
    addrs = {f"n{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(free_ports(3))}
    nodes = [
        quorumkv.Node(name, tmp_path / name, addr, initial_cluster=addrs, local_network=net, **FAST)
        for name, addr in addrs.items()
    ]
    try:
        for n in nodes:
            n.start()
        assert net.addresses() == sorted(addrs.values())
        before = net.forwarded
        # Writes and linearizable reads through every node, followers included.
        for i, n in enumerate(nodes):
            n.put(f"local{i}", str(i))
        for n in nodes:
            assert n.range("local", prefix=True).count == 3
        assert net.forwarded > before  # the followers' puts reached the leader through it
        assert net.deliveries >= net.forwarded
        assert "forwarded=" in repr(net)
        nodes[0].stop()
        assert len(net.addresses()) == 2
    finally:
        for n in nodes:
            n.stop()
    assert net.addresses() == []
    with pytest.raises(quorumkv.InvalidTypeError):
        quorumkv.Node("x", tmp_path / "x", "127.0.0.1:1", local_network="not a network")  # type: ignore[arg-type]


def test_client_port_serves_etcd_api(tmp_path: Path) -> None:
    peer, client = free_ports(2)
    n = quorumkv.Node("etcd", tmp_path / "etcd", f"127.0.0.1:{peer}", client_addr=f"127.0.0.1:{client}", **FAST)
    with n:
        assert n.client_addr == f"127.0.0.1:{client}"
        assert n.wait_for_leader(10)
        (m,) = eventually(lambda: n.members(), 10, "the member list")
        assert m.client_addrs == [f"127.0.0.1:{client}"]
        with socket.create_connection(("127.0.0.1", client), timeout=5):
            pass  # the gRPC port accepts connections (etcdctl works against it)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", client), timeout=1).close()



def test_reads_that_need_no_wait(node: quorumkv.Node, cluster: Cluster) -> None:
    # A one-member cluster's leader serves linearizable reads from its own state.
    eventually(node.reads_are_local, what="the lone leader reads locally")
    node.put("k", "v1")
    eventually(node.reads_are_local, what="reads local again after a put")
    kv = node.get("k")
    assert kv is not None and kv.value == b"v1"
    node.put("k", "v2")
    first = node.put("other", "x").header.revision - 2
    eventually(node.reads_are_local, what="the puts applied")

    async def lone() -> None:
        kv = await node.aget("k")
        assert kv is not None and kv.value == b"v2"
        assert await node.aget("missing") is None
        old = await node.aget("k", revision=first)
        assert old is not None and old.value == b"v1"
        node.compact(first + 1)
        with pytest.raises(quorumkv.CompactedError):
            await node.aget("k", revision=first)

    async def fair() -> int:
        # Local reads complete without suspending, but never forever: a task looping
        # over them still lets the loop fire its timer and run the other task.
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        async def reader() -> int:
            n = 0
            while not stop.is_set():
                kv = await node.aget("k")
                assert kv is not None and kv.value == b"v2"
                n += 1
            return n

        other_task = asyncio.ensure_future(other())
        n = await asyncio.wait_for(reader(), 10)
        await other_task
        assert ticks > 0 and n > ticks
        return n

    asyncio.run(lone())
    eventually(node.reads_are_local, what="the compaction applied")
    assert asyncio.run(fair()) > 0
    # In a 3-member cluster no node may: linearizable reads wait for a read index.
    leader = cluster.leader()
    leader.put("k", "c")
    assert not any(n.reads_are_local() for n in cluster.running())

    async def three() -> None:
        kv = await leader.aget("k")
        assert kv is not None and kv.value == b"c"

    asyncio.run(three())
