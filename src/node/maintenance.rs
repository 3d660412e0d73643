//! Maintenance and membership operations beyond the core: etcd's `MemberUpdate`,
//! `MoveLeader`, `HashKV`, `Defragment` and `Snapshot`, in Rust.

use std::path::Path;
use std::time::Duration;

use super::forward::{ForwardReply, ForwardRequest, Member};
use super::Node;
use crate::error::{Error, Result};
use crate::mvcc::{MvccStore, RangeRequest, ResponseHeader};

/// A hash of the key-value state at one revision (etcd `HashKV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32 (Castagnoli is not used; IEEE, as crc32fast computes) over every live key
    /// at `revision`: key, create and mod revision, version, value and lease, in key order.
    /// Equal on every member that has applied `revision`.
    pub hash: u32,
    /// The revision hashed.
    pub revision: i64,
    /// The store's compaction revision when the hash was taken.
    pub compact_revision: i64,
}

impl Node {
    /// A response header at the current revision.
    pub(crate) fn header_now(&self) -> ResponseHeader {
        let revision = self.running().map_or(0, |r| r.store.revision());
        self.header(revision)
    }

    /// Replaces a member's peer addresses (etcd `MemberUpdate`), keeping its name and
    /// client addresses. Returns the members after the change.
    ///
    /// Errors: `MemberNotFound`, `InvalidArgument` (no address), `NoLeader`, `Timeout`.
    pub async fn update_member(&self, id: u64, peer_addrs: Vec<String>) -> Result<Vec<Member>> {
        if peer_addrs.is_empty() {
            return Err(Error::InvalidArgument("a member needs at least one peer address".into()));
        }
        let mut addrs = {
            let members = self.inner.observed.members.read().expect("members lock");
            members.get(&id).map(|(a, _)| a.clone()).ok_or(Error::MemberNotFound)?
        };
        addrs.peer_addrs = peer_addrs;
        let timeout = self.inner.config.request_timeout();
        let req = ForwardRequest::UpdateAddrs { id, addrs };
        match self.on_runtime(move |n| async move { n.to_leader(req, timeout).await }).await? {
            ForwardReply::Members { members, .. } => Ok(members),
            other => Err(Error::internal(format!("unexpected reply to a member update: {other:?}"))),
        }
    }

    /// Hands leadership to the voter `target` (etcd `MoveLeader`) and waits until it leads.
    /// Sent to any member; it is carried out by the leader.
    ///
    /// Errors: `BadLeaderTransferee` (not a voter of the cluster), `NoLeader`, `Timeout`.
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        let timeout = self.inner.config.request_timeout();
        self.on_runtime(move |n| async move { n.to_leader(ForwardRequest::MoveLeader { target }, timeout).await })
            .await?;
        Ok(())
    }

    /// The leader's side of [`Node::move_leader`].
    pub(super) async fn move_leader_as_leader(&self, target: u64, timeout: Duration) -> Result<ForwardReply> {
        let is_voter = self.inner.observed.members.read().expect("members lock").get(&target).is_some_and(|m| m.1);
        if !is_voter {
            return Err(Error::BadLeaderTransferee);
        }
        let raft = self.running()?.raft.clone();
        if target != self.inner.member_id {
            raft.trigger().transfer_leader(target).await.map_err(|e| Error::Fatal(e.to_string()))?;
            raft.wait(Some(timeout)).current_leader(target, "leader transfer").await.map_err(|_| Error::Timeout)?;
        }
        Ok(ForwardReply::Members { cluster_id: self.cluster_id(), members: self.members()? })
    }

    /// Hashes the key-value state at `revision` (0: the current one), etcd `HashKV`.
    /// Served locally; the store is read page by page, never held in memory.
    ///
    /// Errors: `Compacted`, `FutureRevision`, `Stopped`.
    pub async fn hash_kv(&self, revision: i64) -> Result<KvHash> {
        let store = self.running()?.store.clone();
        self.on_runtime(move |_| async move {
            tokio::task::spawn_blocking(move || hash_at(&store, revision)).await.map_err(Error::internal)?
        })
        .await
    }

    /// Compacts the node's storage files (etcd `Defragment`): every keyspace is rewritten
    /// without the space of deleted and compacted entries. Local to this node; the node
    /// keeps serving meanwhile.
    pub async fn defragment(&self) -> Result<()> {
        let store = self.running()?.store.clone();
        self.on_runtime(move |_| async move {
            tokio::task::spawn_blocking(move || {
                for (_, keyspace) in store.keyspaces().tagged() {
                    keyspace.major_compact()?;
                }
                Ok(())
            })
            .await
            .map_err(Error::internal)?
        })
        .await
    }

    /// Writes a consistent backup of the whole state to `path` (etcd `Snapshot`): the same
    /// file format Raft sends to lagging members, streamed from a point-in-time view and
    /// fsynced. The node keeps serving meanwhile.
    pub async fn backup(&self, path: &Path) -> Result<()> {
        let store = self.running()?.store.clone();
        let path = path.to_path_buf();
        self.on_runtime(move |_| async move {
            tokio::task::spawn_blocking(move || crate::raft::write_backup(&store, &path).map_err(Error::from))
                .await
                .map_err(Error::internal)?
        })
        .await
    }
}

/// Keys read per page while hashing.
const HASH_PAGE_KEYS: i64 = 1000;

fn hash_at(store: &MvccStore, revision: i64) -> Result<KvHash> {
    let revision = if revision == 0 { store.revision() } else { revision };
    let compact_revision = store.compact_revision();
    let mut hasher = crc32fast::Hasher::new();
    let mut page = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        limit: HASH_PAGE_KEYS,
        serializable: true,
        ..Default::default()
    };
    loop {
        let resp = store.range(&page)?;
        for kv in &resp.kvs {
            hasher.update(&(kv.key.len() as u64).to_le_bytes());
            hasher.update(&kv.key);
            for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                hasher.update(&n.to_le_bytes());
            }
            hasher.update(&(kv.value.len() as u64).to_le_bytes());
            hasher.update(&kv.value);
        }
        match resp.kvs.last() {
            Some(last) if resp.more => {
                page.key = last.key.clone();
                page.key.push(0);
            }
            _ => break,
        }
    }
    Ok(KvHash { hash: hasher.finalize(), revision, compact_revision })
}
