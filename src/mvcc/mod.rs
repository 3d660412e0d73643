//! The MVCC state machine: etcd's data model (revisions, ranges, transactions, compaction)
//! on fjall. It knows nothing of Raft: the `raft` module feeds it committed commands.

mod check;
mod encoding;
mod history;
mod leases;
mod store;
pub mod types;

pub use check::{check_delete, check_put, check_range, check_txn};
pub(crate) use leases::{LeaseChange, LeaseRecord, MAX_LEASE_TTL_SECS};
pub(crate) use store::{AppliedBatch, Applier, MvccKeyspaces};
pub use store::{MvccStore, WriteCommand, WriteResponse};
pub use types::*;

/// Memtable size of the keyspaces that take every write (the MVCC keyspaces and the Raft
/// log). fjall's default is 64 MiB per keyspace, held in memory until flushed: after a
/// burst of writes that is most of a node's resident set. 4 MiB keeps a node small and
/// still flushes in large sequential segments.
pub(crate) const MEMTABLE_BYTES: u64 = 4 << 20;

/// Options of the keyspaces that take every write.
pub(crate) fn keyspace_options() -> fjall::KeyspaceCreateOptions {
    fjall::KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
}
