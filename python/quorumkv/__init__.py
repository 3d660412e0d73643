"""quorumkv: a Raft-replicated, durable, etcd-compatible key-value store hosted in-process.

Start a node (or three) inside your program, the way you would open an sqlite3 file::

    import quorumkv

    with quorumkv.Node("n1", "data/n1", "127.0.0.1:7001") as node:
        node.put(b"greeting", "hello")
        assert node.get("greeting").value == b"hello"

Keys and values are ``bytes``; ``str`` is accepted and UTF-8 encoded. Every blocking call
releases the GIL while it waits. ``await node.aput(...)`` and the other ``a*`` methods, and
``async for event in node.watch(...)``, never block an asyncio event loop.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any, Literal, Optional, Sequence, Union, cast

from . import _native
from ._errors import (
    ClusterMismatchError,
    CompactedError,
    DataDirError,
    Error,
    FutureRevisionError,
    InternalError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidTypeError,
    LeaseExistsError,
    LeaseNotFoundError,
    MemberNotFoundError,
    MembershipError,
    NodeStoppedError,
    NoLeaderError,
    RequestTimeoutError,
    RequestTooLargeError,
    StorageError,
    TransportError,
)
from ._native import (
    Compare,
    CompareOperand,
    DeleteResult,
    Event,
    Header,
    KeyValue,
    Lease,
    LeaseTimeToLive,
    LocalNetwork,
    Member,
    Op,
    PutResult,
    RangeResult,
    Status,
    TxnResult,
    Watch,
)

__version__: str = _native.version()

__all__ = [
    "Node",
    "LocalNetwork",
    "Watch",
    "Lease",
    "Compare",
    "CompareOperand",
    "Op",
    "Header",
    "KeyValue",
    "PutResult",
    "RangeResult",
    "DeleteResult",
    "TxnResult",
    "Event",
    "LeaseTimeToLive",
    "Member",
    "Status",
    "Error",
    "InvalidArgumentError",
    "InvalidTypeError",
    "InvalidConfigError",
    "RequestTooLargeError",
    "NoLeaderError",
    "RequestTimeoutError",
    "CompactedError",
    "FutureRevisionError",
    "LeaseNotFoundError",
    "LeaseExistsError",
    "MembershipError",
    "MemberNotFoundError",
    "ClusterMismatchError",
    "NodeStoppedError",
    "DataDirError",
    "StorageError",
    "TransportError",
    "InternalError",
]

SortOrder = Literal["none", "ascend", "descend"]
SortTarget = Literal["key", "version", "create", "mod", "value"]
KeyLike = Union[bytes, bytearray, str]
"""What keys and values may be: ``bytes`` (returned as such), or ``str`` (UTF-8 encoded)."""

_completers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _native.Completer]" = (
    weakref.WeakKeyDictionary()
)


def _completer(loop: asyncio.AbstractEventLoop) -> _native.Completer:
    """The completer that resolves this loop's futures (one per loop, made on first use)."""
    c: Optional[_native.Completer] = getattr(loop, "_quorumkv_completer", None)
    if c is not None:
        return c
    c = _completers.get(loop)
    if c is None:
        c = _native.Completer()
        fd = c.fileno()
        os.set_blocking(fd, False)
        drain = c.drain

        def ready() -> None:
            try:
                os.read(fd, 4096)
            except BlockingIOError:
                pass
            drain()

        loop.add_reader(fd, ready)
        _completers[loop] = c
        try:  # the fast path above; loops without a __dict__ (uvloop) use the dictionary
            setattr(loop, "_quorumkv_completer", c)
        except AttributeError:
            pass
    return c


async def _watch_anext(w: Watch) -> Event:
    """``Watch.__anext__`` (called by the compiled module)."""
    while True:
        ev = w._pop()
        if ev is not None:
            return ev
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[bool]" = loop.create_future()
        w._fill(_completer(loop), fut)
        if not await fut:
            ev = w._pop()
            if ev is not None:
                return ev
            raise StopAsyncIteration


async def _watch_aenter(w: Watch) -> Watch:
    return w


async def _watch_aexit(w: Watch) -> None:
    w.cancel()


class Node(_native.Node):
    """A quorumkv node hosted in this process.

    ``Node(name, data_dir, peer_addr, initial_cluster={...} | join=[...], ...)`` only
    configures it; :meth:`start` (or ``with``) starts it, :meth:`stop` stops it. The
    node is safe to share between threads. See docs/python.md for every option.
    """

    # ----- asyncio: each returns an awaitable and never blocks the event loop -----

    async def aput(
        self,
        key: KeyLike,
        value: KeyLike,
        *,
        lease: Union[int, Lease, None] = None,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResult:
        """Awaitable :meth:`put`."""
        op = Op.put(key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value, ignore_lease=ignore_lease)
        return cast(PutResult, await self._start(op))

    async def aget(self, key: KeyLike, *, serializable: bool = False, revision: int = 0) -> Optional[KeyValue]:
        """Awaitable :meth:`get`."""
        # A read that needs no wait (serializable, or any read on a one-member cluster's
        # leader) is answered without a round trip through the node's runtime. Every 32nd
        # such answer in a row first yields to the event loop (`...`), so a task looping
        # over them cannot starve the loop's other tasks, timers and I/O.
        while True:
            kv = self._get_now(key, serializable, revision)
            if kv is NotImplemented:
                return await self._aget(key, serializable, revision)
            if kv is not ...:
                return cast(Optional[KeyValue], kv)
            await asyncio.sleep(0)

    async def arange(
        self,
        key: KeyLike = b"",
        range_end: Optional[KeyLike] = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: Optional[SortOrder] = None,
        sort_target: Optional[SortTarget] = None,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResult:
        """Awaitable :meth:`range`."""
        op = Op.range(
            key,
            range_end,
            prefix=prefix,
            from_key=from_key,
            limit=limit,
            revision=revision,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
        )
        return cast(RangeResult, await self._start(op))

    async def adelete(
        self,
        key: KeyLike,
        range_end: Optional[KeyLike] = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> DeleteResult:
        """Awaitable :meth:`delete`."""
        op = Op.delete(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
        return cast(DeleteResult, await self._start(op))

    async def atxn(
        self,
        compare: Optional[Sequence[Compare]] = None,
        success: Optional[Sequence[Op]] = None,
        failure: Optional[Sequence[Op]] = None,
    ) -> TxnResult:
        """Awaitable :meth:`txn`."""
        return cast(TxnResult, await self._start(Op.txn(compare, success, failure)))

    async def acompact(self, revision: int, *, physical: bool = False) -> Header:
        """Awaitable :meth:`compact`."""
        return cast(Header, await self._start(Op._compact(revision, physical)))

    async def agrant(self, ttl: int, *, id: int = 0) -> Lease:
        """Awaitable :meth:`grant`."""
        return cast(Lease, await self._start(Op._grant(ttl, id)))
