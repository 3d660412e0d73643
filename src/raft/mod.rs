//! openraft glue: the type configuration, the log store and state machine on fjall, and
//! the peer transport. Everything openraft-specific lives under this module, so an
//! openraft upgrade touches nothing else.

pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod snapshot;
pub(crate) mod state_machine;
pub(crate) use state_machine::write_backup;

#[cfg(test)]
mod conformance;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mvcc::{WriteCommand, WriteResponse};

/// Identity and addresses of one cluster member, as stored in the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddrs {
    /// Human-readable member name (unique in a cluster).
    pub name: String,
    /// Addresses other members reach this member's peer port on (`host:port`).
    pub peer_addrs: Vec<String>,
    /// Addresses of this member's client (etcd gRPC) port, if it serves one.
    pub client_addrs: Vec<String>,
}

/// A replicated command: what one Raft log entry asks the state machine to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// An MVCC write (or a transaction).
    Kv(WriteCommand),
    /// Several independent writes proposed together by a busy leader: applied in order,
    /// each at its own revision, each with its own answer (one log entry, one Raft round).
    Batch(Vec<WriteCommand>),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Kv(WriteCommand::Put(p)) => write!(f, "put({} bytes key)", p.key.len()),
            Request::Kv(WriteCommand::DeleteRange(_)) => write!(f, "delete_range"),
            Request::Kv(WriteCommand::Txn(t)) => {
                write!(f, "txn({} compares, {}+{} ops)", t.compare.len(), t.success.len(), t.failure.len())
            }
            Request::Kv(WriteCommand::Compact(c)) => write!(f, "compact({})", c.revision),
            Request::Kv(WriteCommand::LeaseGrant(g)) => write!(f, "lease_grant({:x}, {}s)", g.id, g.ttl),
            Request::Kv(WriteCommand::LeaseRevoke(r)) => write!(f, "lease_revoke({:x})", r.id),
            Request::Batch(cmds) => write!(f, "batch({} writes)", cmds.len()),
        }
    }
}

/// The state machine's answer to a [`Request`]. Errors decided at apply time (for example
/// a compare on a compacted revision) are answers, not failures of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The result of a [`Request::Kv`].
    Kv(Result<WriteResponse>),
    /// The results of a [`Request::Batch`], in order.
    Batch(Vec<Result<WriteResponse>>),
    /// For blank and membership entries.
    Empty,
}

openraft::declare_raft_types!(
    /// openraft type configuration of quorumkv.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = MemberAddrs,
);

/// The openraft handle type used by the node.
pub(crate) type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
pub(crate) type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub(crate) type Entry = openraft::alias::EntryOf<TypeConfig>;
pub(crate) type Vote = openraft::alias::VoteOf<TypeConfig>;
pub(crate) type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type RaftSnapshot = openraft::alias::SnapshotOf<TypeConfig, snapshot::SnapshotFile>;

/// Binary encoding of everything Raft stores or sends (postcard: compact, no schema).
pub(crate) mod codec {
    use super::*;

    pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).expect("postcard encoding into a Vec cannot fail")
    }

    pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
        postcard::from_bytes(bytes).map_err(|e| Error::Storage(format!("cannot decode {what}: {e}")))
    }

    pub fn decode_io<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> std::io::Result<T> {
        postcard::from_bytes(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("cannot decode {what}: {e}")))
    }
}

pub(crate) fn io_err(e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
