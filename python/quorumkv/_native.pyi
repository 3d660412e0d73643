"""Type stubs of the compiled module ``quorumkv._native`` (re-exported by ``quorumkv``)."""

import asyncio
import os
from types import TracebackType
from typing import Any, Generic, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, TypeVar, Union, final

_T = TypeVar("_T")
_Bytes = Union[bytes, bytearray, str]
_LeaseId = Union[int, "Lease"]
_SortOrder = Literal["none", "ascend", "descend"]
_SortTarget = Literal["key", "version", "create", "mod", "value"]

def version() -> str: ...
def debug_build() -> bool: ...
def runtime_without_lifo_slot() -> bool: ...
def _bench_rust(node: Node, workload: str, mode: str, workers: int, seconds: float, value: bytes) -> float: ...

@final
class Header:
    """Returned with every response."""

    @property
    def cluster_id(self) -> int: ...
    @property
    def member_id(self) -> int: ...
    @property
    def revision(self) -> int: ...
    @property
    def raft_term(self) -> int: ...

@final
class KeyValue:
    """One key's state at one revision."""

    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    @property
    def create_revision(self) -> int: ...
    @property
    def mod_revision(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def lease(self) -> int: ...

@final
class PutResult:
    @property
    def header(self) -> Header: ...
    @property
    def revision(self) -> int:
        """The revision of this put (``header.revision``)."""
    @property
    def prev_kv(self) -> Optional[KeyValue]: ...

@final
class RangeResult:
    @property
    def header(self) -> Header: ...
    @property
    def kvs(self) -> list[KeyValue]: ...
    @property
    def more(self) -> bool: ...
    @property
    def count(self) -> int: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[KeyValue]: ...

@final
class DeleteResult:
    @property
    def header(self) -> Header: ...
    @property
    def deleted(self) -> int: ...
    @property
    def prev_kvs(self) -> list[KeyValue]: ...

@final
class TxnResult:
    @property
    def header(self) -> Header: ...
    @property
    def succeeded(self) -> bool: ...
    @property
    def responses(self) -> list[Union[PutResult, RangeResult, DeleteResult, "TxnResult"]]: ...
    def __bool__(self) -> bool: ...

@final
class Member:
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def peer_addrs(self) -> list[str]: ...
    @property
    def client_addrs(self) -> list[str]: ...
    @property
    def is_learner(self) -> bool: ...

@final
class Status:
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def cluster_id(self) -> int: ...
    @property
    def term(self) -> int: ...
    @property
    def leader(self) -> Optional[int]: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def is_learner(self) -> bool: ...
    @property
    def has_leader(self) -> bool: ...
    @property
    def commit_index(self) -> int: ...
    @property
    def applied_index(self) -> int: ...
    @property
    def last_log_index(self) -> int: ...
    @property
    def revision(self) -> int: ...
    @property
    def compact_revision(self) -> int: ...
    @property
    def db_size_bytes(self) -> int: ...
    @property
    def watch_count(self) -> int: ...
    @property
    def leader_changes(self) -> int: ...
    @property
    def fatal_error(self) -> Optional[str]: ...

@final
class Event:
    """One change of one key."""

    @property
    def type(self) -> Literal["put", "delete"]: ...
    @property
    def kv(self) -> KeyValue:
        """The key after the change (for a delete: only key and mod_revision are set)."""
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    @property
    def revision(self) -> int: ...
    @property
    def prev_kv(self) -> Optional[KeyValue]: ...

@final
class LeaseTimeToLive:
    @property
    def header(self) -> Header: ...
    @property
    def id(self) -> int: ...
    @property
    def ttl(self) -> int:
        """Seconds left; -1 when the lease does not exist (or expired)."""
    @property
    def granted_ttl(self) -> int: ...
    @property
    def keys(self) -> list[bytes]: ...

@final
class Compare:
    """A transaction guard, built as ``Compare.value(b"k") == b"v"``, ``Compare.version(b"k") > 2``,
    ``Compare.create_revision(b"k") == 0`` (the key does not exist), ``Compare.mod_revision(...) < r``,
    ``Compare.lease(b"k") == lease``."""

    @staticmethod
    def value(
        key: _Bytes, range_end: Optional[_Bytes] = None, *, prefix: bool = False, from_key: bool = False
    ) -> CompareOperand[_Bytes]: ...
    @staticmethod
    def version(
        key: _Bytes, range_end: Optional[_Bytes] = None, *, prefix: bool = False, from_key: bool = False
    ) -> CompareOperand[int]: ...
    @staticmethod
    def create_revision(
        key: _Bytes, range_end: Optional[_Bytes] = None, *, prefix: bool = False, from_key: bool = False
    ) -> CompareOperand[int]: ...
    @staticmethod
    def mod_revision(
        key: _Bytes, range_end: Optional[_Bytes] = None, *, prefix: bool = False, from_key: bool = False
    ) -> CompareOperand[int]: ...
    @staticmethod
    def lease(
        key: _Bytes, range_end: Optional[_Bytes] = None, *, prefix: bool = False, from_key: bool = False
    ) -> CompareOperand[_LeaseId]: ...


@final
class CompareOperand(Generic[_T]):
    """The left side of a compare: compare it with ``==``, ``!=``, ``<`` or ``>``."""

    def __eq__(self, other: _T) -> Compare: ...  # type: ignore[override]
    def __ne__(self, other: _T) -> Compare: ...  # type: ignore[override]
    def __lt__(self, other: _T) -> Compare: ...
    def __gt__(self, other: _T) -> Compare: ...

@final
class Op:
    """One operation of a transaction."""

    @staticmethod
    def put(
        key: _Bytes,
        value: _Bytes,
        *,
        lease: Optional[_LeaseId] = None,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> Op: ...
    @staticmethod
    def get(key: _Bytes, *, serializable: bool = False, revision: int = 0) -> Op: ...
    @staticmethod
    def range(
        key: _Bytes = b"",
        range_end: Optional[_Bytes] = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: Optional[_SortOrder] = None,
        sort_target: Optional[_SortTarget] = None,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> Op: ...
    @staticmethod
    def delete(
        key: _Bytes, range_end: Optional[_Bytes] = None, *, prefix: bool = False, from_key: bool = False, prev_kv: bool = False
    ) -> Op: ...
    @staticmethod
    def txn(
        compare: Optional[Sequence[Compare]] = None,
        success: Optional[Sequence[Op]] = None,
        failure: Optional[Sequence[Op]] = None,
    ) -> Op: ...
    @staticmethod
    def _compact(revision: int, physical: bool = False) -> Op: ...
    @staticmethod
    def _grant(ttl: int, id: int = 0) -> Op: ...

@final
class Completer:
    def __init__(self) -> None: ...
    def fileno(self) -> int: ...
    def drain(self) -> int: ...
    def flush(self) -> None: ...

@final
class Watch:
    """A watch: ``for event in w`` / ``async for event in w``; a (async) context manager
    that cancels the watch on exit."""

    @property
    def id(self) -> int: ...
    @property
    def revision(self) -> int:
        """The store revision this watch has seen everything up to."""
    @property
    def done(self) -> bool:
        """The watch ended (cancelled, compacted, node stopped) and every event was read."""
    def cancel(self) -> None: ...
    def request_progress(self) -> None: ...
    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, waiting at most ``timeout`` seconds; ``None`` on timeout or end."""
    def __iter__(self) -> Watch: ...
    def __next__(self) -> Event: ...
    def __aiter__(self) -> Watch: ...
    def __anext__(self) -> "asyncio.Future[Event]": ...
    def __enter__(self) -> Watch: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    async def __aenter__(self) -> Watch: ...
    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    def _pop(self) -> Optional[Event]: ...
    def _fill(self, completer: Completer, fut: "asyncio.Future[bool]") -> None: ...

@final
class Lease:
    """A granted lease; ``int(lease)`` is its id. As a context manager it is revoked on exit."""

    @property
    def id(self) -> int: ...
    @property
    def ttl(self) -> int:
        """The granted TTL, seconds."""
    @property
    def header(self) -> Header: ...
    @property
    def keeping_alive(self) -> bool: ...
    def keep_alive(self) -> None:
        """Renew in the background until revoke(), stop_keep_alive(), the node stops or
        this object is garbage collected."""
    def keep_alive_once(self) -> int: ...
    def stop_keep_alive(self) -> None: ...
    def time_to_live(self, keys: bool = False) -> LeaseTimeToLive: ...
    def revoke(self) -> Header: ...
    def __index__(self) -> int: ...
    def __int__(self) -> int: ...
    def __enter__(self) -> Lease: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class LocalNetwork:
    """Nodes of this process that reach each other through memory instead of loopback
    TCP: give the same network to each (``Node(..., local_network=net)``)."""

    def __init__(self) -> None: ...
    def addresses(self) -> List[str]:
        """The peer addresses of the running nodes on the network, sorted."""
    @property
    def deliveries(self) -> int:
        """How many times a node reached another through the network so far (Raft
        messages, heartbeats included, and forwarded requests)."""
    @property
    def forwarded(self) -> int:
        """How many client requests a node forwarded to its leader through the network."""

class Node:
    """A quorumkv node hosted in this process (see ``quorumkv.Node``)."""

    def __init__(
        self,
        name: str,
        data_dir: Union[str, "os.PathLike[str]"],
        peer_addr: str,
        *,
        initial_cluster: Union[Mapping[str, str], Sequence[Tuple[str, str]], None] = None,
        join: Optional[Sequence[str]] = None,
        client_addr: Optional[str] = None,
        advertise_client_addrs: Optional[Sequence[str]] = None,
        cluster_token: Optional[str] = None,
        join_as_learner: bool = False,
        heartbeat_interval_ms: Optional[int] = None,
        election_timeout_ms: Optional[int] = None,
        request_timeout_ms: Optional[int] = None,
        snapshot_threshold_entries: Optional[int] = None,
        snapshot_logs_to_keep: Optional[int] = None,
        max_request_bytes: Optional[int] = None,
        max_txn_ops: Optional[int] = None,
        cache_size_bytes: Optional[int] = None,
        watch_progress_notify_interval_ms: Optional[int] = None,
        local_network: Optional["LocalNetwork"] = None,
    ) -> None: ...
    def start(self) -> "Node": ...
    def stop(self) -> None: ...
    def __enter__(self) -> "Node": ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def peer_addr(self) -> str: ...
    @property
    def data_dir(self) -> str: ...
    @property
    def client_addr(self) -> Optional[str]: ...
    @property
    def is_running(self) -> bool: ...
    @property
    def id(self) -> int: ...
    @property
    def cluster_id(self) -> int: ...
    @property
    def min_lease_ttl(self) -> int: ...
    def status(self) -> Status: ...
    def leader(self) -> Optional[int]: ...
    def is_leader(self) -> bool: ...
    def reads_are_local(self) -> bool:
        """Whether a linearizable read here needs no Raft round and no wait (this node
        leads a cluster of which it is the only member): `get` then keeps the GIL."""
    def members(self) -> list[Member]: ...
    def add_member(self, name: str, peer_addr: str, *, learner: bool = False) -> Member: ...
    def remove_member(self, id: int) -> None: ...
    def promote_member(self, id: int) -> None: ...
    def move_leader(self, id: int) -> None: ...
    def read_barrier(self) -> None: ...
    def wait_for_leader(self, timeout: Optional[float] = None) -> bool: ...
    def put(
        self,
        key: _Bytes,
        value: _Bytes,
        *,
        lease: Optional[_LeaseId] = None,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResult: ...
    def get(self, key: _Bytes, *, serializable: bool = False, revision: int = 0) -> Optional[KeyValue]: ...
    def range(
        self,
        key: _Bytes = b"",
        range_end: Optional[_Bytes] = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: Optional[_SortOrder] = None,
        sort_target: Optional[_SortTarget] = None,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResult: ...
    def delete(
        self, key: _Bytes, range_end: Optional[_Bytes] = None, *, prefix: bool = False, from_key: bool = False, prev_kv: bool = False
    ) -> DeleteResult: ...
    def txn(
        self,
        compare: Optional[Sequence[Compare]] = None,
        success: Optional[Sequence[Op]] = None,
        failure: Optional[Sequence[Op]] = None,
    ) -> TxnResult: ...
    def compact(self, revision: int, *, physical: bool = False) -> Header: ...
    def watch(
        self,
        key: _Bytes,
        range_end: Optional[_Bytes] = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        progress_notify: bool = False,
    ) -> Watch: ...
    def grant(self, ttl: int, *, id: int = 0) -> Lease: ...
    def lease(self, id: int) -> Lease: ...
    def leases(self) -> list[int]: ...
    def revoke(self, id: _LeaseId) -> Header: ...
    def _start(self, op: Op) -> "asyncio.Future[Any]": ...
    def _aget(self, key: _Bytes, serializable: bool, revision: int) -> "asyncio.Future[Optional[KeyValue]]": ...
    def _get_now(self, key: _Bytes, serializable: bool, revision: int) -> object: ...
