"""The exception classes of quorumkv (raised by the compiled module, ``quorumkv._native``).

Every exception quorumkv raises derives from :class:`Error`. Each carries ``code`` (the
name of the Rust error variant, e.g. ``"Compacted"``) and ``retryable`` (``True`` for
errors after which the same request may succeed later: no leader, timeout, transport).
"""

from __future__ import annotations

from typing import Optional

__all__ = [
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


class Error(Exception):
    """Base class of every quorumkv error."""

    code: str = "Error"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(Error, ValueError):
    """A bad argument: empty key, bad range options, ``ignore_value`` with a value,
    a transaction writing a key twice or with too many operations, a TTL too large, ..."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type (e.g. an ``int`` where ``bytes`` or ``str`` is expected)."""


class InvalidConfigError(InvalidArgumentError):
    """The node configuration is invalid."""


class RequestTooLargeError(InvalidArgumentError):
    """The request exceeds ``max_request_bytes``."""

    size_bytes: int = 0
    max_bytes: int = 0


class NoLeaderError(Error):
    """No leader was known within the request timeout (retryable)."""

    leader: Optional[int] = None


class RequestTimeoutError(Error, TimeoutError):
    """The request did not complete in time; a write may or may not have been applied."""


class CompactedError(Error):
    """The requested revision was compacted away; ``compact_revision`` is the oldest one
    still readable."""

    compact_revision: int = 0


class FutureRevisionError(Error):
    """The requested revision is newer than the store's current revision."""


class LeaseNotFoundError(Error):
    """The lease does not exist (never granted, revoked or expired)."""


class LeaseExistsError(Error):
    """A lease with the requested id already exists."""


class MembershipError(Error):
    """A membership change was refused (peer address taken, not a learner, ...)."""


class MemberNotFoundError(MembershipError):
    """No member with this id."""


class ClusterMismatchError(Error):
    """The other side belongs to a different cluster."""

    local_cluster_id: int = 0
    remote_cluster_id: int = 0


class NodeStoppedError(Error):
    """The node is stopped (or was never started)."""


class DataDirError(Error):
    """The data dir is locked by another node, of an incompatible format, or damaged."""


class StorageError(Error):
    """A fatal storage or Raft error (I/O failure, full disk): the node takes no more writes."""


class TransportError(Error):
    """Talking to a peer failed (for example no member reachable to join); retryable."""


class InternalError(Error):
    """A bug in quorumkv (including a Rust panic caught at the boundary)."""
