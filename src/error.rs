//! The one error type of quorumkv.
//!
//! Every layer returns [`Error`]. It is mapped once per boundary: to a gRPC status in the
//! etcd server, to a `qkv_result` in the C ABI and to a Python exception class. Inside the
//! core nothing matches on message text. The etcd-defined errors carry etcd's own message
//! text (see `Error::etcd_message`) so the gRPC layer can reproduce them byte for byte.

use serde::{Deserialize, Serialize};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in quorumkv.
///
/// The enum is `Clone` and serializable because errors decided on the leader travel back
/// to the follower that forwarded the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    // ----- etcd's request errors (rpctypes/error.go) -----
    /// A key was required but empty (`etcdserver: key is not provided`).
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` set together with a non-empty value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` set together with a non-zero lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A transaction has more operations at one level than the configured maximum.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps {
        /// The configured maximum (`max_txn_ops`).
        max: usize,
    },
    /// A transaction writes one key twice (or puts a key it also deletes).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The requested revision has been compacted away.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The revision the store is compacted to; reads at or above it succeed.
        compact_revision: i64,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The encoded request exceeds `max_request_bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge {
        /// Size of the rejected request in bytes.
        size_bytes: usize,
        /// The configured limit in bytes.
        max_bytes: usize,
    },
    /// The lease id is not known (never granted, revoked or expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with the requested id already exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// The requested TTL exceeds etcd's maximum (9,000,000,000 seconds).
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// The node asked is not the leader (a forwarding hint; `leader` is its best guess).
    #[error("etcdserver: not leader")]
    NotLeader {
        /// The leader the node knows of, if any.
        leader: Option<u64>,
    },
    /// No leader was known within the request timeout.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request did not complete within the request timeout.
    #[error("etcdserver: request timed out")]
    Timeout,

    // ----- membership -----
    /// No member with this id.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member with this id or peer address already exists.
    #[error("etcdserver: Peer URLs already exists")]
    PeerAddrExists,
    /// Only a learner can be promoted.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Leadership can only move to a voting member.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// The remote side belongs to a different cluster.
    #[error("cluster id mismatch: this node belongs to cluster {local:016x}, the peer to cluster {remote:016x}")]
    ClusterMismatch {
        /// This node's cluster id.
        local: u64,
        /// The other side's cluster id.
        remote: u64,
    },
    /// A membership change is not possible right now (for example another one is in progress).
    #[error("membership change rejected: {0}")]
    MembershipChange(String),

    // ----- node lifecycle and storage -----
    /// The node is stopped (or stopping) and takes no more requests.
    #[error("node is stopped")]
    Stopped,
    /// The data directory is in use by another node, in this process or another one.
    #[error("data dir {path} is locked by another quorumkv node")]
    DataDirLocked {
        /// The locked directory.
        path: String,
    },
    /// The data directory was written by an incompatible quorumkv version.
    #[error("data dir {path} has format {found:?}, this build reads {expected:?}")]
    DataDirIncompatible {
        /// The data directory.
        path: String,
        /// The format marker found on disk.
        found: String,
        /// The format marker this build understands.
        expected: String,
    },
    /// The data directory is damaged; nothing was read from it.
    #[error("data dir {path} is damaged: {detail}")]
    DataDirCorrupted {
        /// The data directory.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A storage operation failed (I/O error, disk full, failed fsync). The node stops
    /// taking writes: nothing acknowledged is lost, nothing is dropped silently.
    #[error("fatal storage error: {0}")]
    Storage(String),
    /// The Raft core stopped because of an unrecoverable error.
    #[error("fatal raft error: {0}")]
    Fatal(String),

    // ----- usage -----
    /// An argument is invalid (bad length, not UTF-8 where text is required, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The node configuration is invalid.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Talking to a peer failed.
    #[error("peer transport: {0}")]
    Transport(String),
    /// An internal invariant was broken; a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether a client may retry the same request later (possibly on another node).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NoLeader | Error::Timeout | Error::Transport(_))
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(e.to_string())
    }
}
