//! Lease state in the MVCC store: which leases exist, their TTLs, and the keys attached
//! to each. Deadlines are not stored: they live in the leader's lessor (`crate::lease`),
//! and a new leader refreshes them, as etcd does.

use fjall::Readable;
use serde::{Deserialize, Serialize};

use super::encoding::{decode, encode};
use super::store::{header_at, Applier, MvccStore, TxnWrite};
use super::types::*;
use crate::error::{Error, Result};

/// etcd's `MaxLeaseTTL`: 9,000,000,000 seconds.
pub(crate) const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;

/// A stored lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    /// The granted time to live, seconds.
    pub ttl: i64,
}

/// A lease change made by an apply batch (the lessor follows these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked { id: i64 },
}

fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

fn attached_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&lease_key(id));
    out.extend_from_slice(key);
    out
}

impl MvccStore {
    /// Every lease with its record, ascending by id, from one consistent view.
    pub(crate) fn leases(&self) -> Result<Vec<(i64, LeaseRecord)>> {
        let mut out = Vec::new();
        let view = self.read_view()?;
        for g in view.snap.iter(&self.keyspaces().lease) {
            let (k, v) = g.into_inner()?;
            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::Storage("corrupt lease key".into()))?);
            out.push((id as i64, decode(&v, "lease")?));
        }
        Ok(out)
    }

    /// One lease's record, if it exists.
    pub(crate) fn lease(&self, id: i64) -> Result<Option<LeaseRecord>> {
        match self.keyspaces().lease.get(lease_key(id))? {
            Some(v) => Ok(Some(decode(&v, "lease")?)),
            None => Ok(None),
        }
    }

    /// The keys attached to a lease, ascending, from one consistent view.
    pub(crate) fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let view = self.read_view()?;
        for g in view.snap.prefix(&self.keyspaces().lease_keys, lease_key(id)) {
            let k = g.key()?;
            out.push(k[8..].to_vec());
        }
        Ok(out)
    }
}

impl Applier<'_> {
    /// A lease as this batch sees it.
    pub(super) fn lease_record(&self, id: i64) -> Result<Option<LeaseRecord>> {
        if let Some(v) = self.lease_overlay.get(&id) {
            return Ok(*v);
        }
        self.store.lease(id)
    }

    pub(super) fn lease_grant(&mut self, g: &LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        if g.id <= 0 {
            return Err(Error::InvalidArgument("a lease id must be positive".into()));
        }
        if g.ttl > MAX_LEASE_TTL_SECS {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.lease_record(g.id)?.is_some() {
            return Err(Error::LeaseExists);
        }
        let rec = LeaseRecord { ttl: g.ttl };
        let ks = &self.store.keyspaces().lease;
        self.batch.insert(ks, lease_key(g.id), encode(&rec));
        self.lease_overlay.insert(g.id, Some(rec));
        self.lease_changes.push(LeaseChange::Granted { id: g.id, ttl: g.ttl });
        Ok(LeaseGrantResponse { header: header_at(self.revision), id: g.id, ttl: g.ttl })
    }

    /// Deletes the lease and every key attached to it, all in one revision.
    pub(super) fn lease_revoke(&mut self, r: &LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        if self.lease_record(r.id)?.is_none() {
            return Err(Error::LeaseNotFound);
        }
        // The attachment index is read from committed state: publish this batch first.
        self.flush()?;
        let keys = self.store.lease_keys(r.id)?;
        let mut tx = TxnWrite::new(self.revision + 1);
        for key in keys {
            tx.delete(self, &DeleteRangeRequest::key(key))?;
        }
        let ks = &self.store.keyspaces().lease;
        self.batch.remove(ks, lease_key(r.id));
        self.lease_overlay.insert(r.id, None);
        self.finish(tx);
        self.lease_changes.push(LeaseChange::Revoked { id: r.id });
        Ok(LeaseRevokeResponse { header: header_at(self.revision) })
    }

    /// Moves `key` from lease `old` to lease `new` in the attachment index (0: none).
    pub(super) fn update_lease_index(&mut self, key: &[u8], old: i64, new: i64) {
        let ks = &self.store.keyspaces().lease_keys;
        if old != 0 {
            self.batch.remove(ks, attached_key(old, key));
        }
        if new != 0 {
            self.batch.insert(ks, attached_key(new, key), Vec::<u8>::new());
        }
    }
}
