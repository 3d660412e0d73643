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
