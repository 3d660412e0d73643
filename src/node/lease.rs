//! The lease API of a node (etcd's Lease service) and the leader's expiry task.

use openraft::type_config::async_runtime::WatchReceiver;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;

use openraft::ServerState;

use super::forward::{ForwardReply, ForwardRequest};
use super::{Node, NodeInner};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::*;

/// Longest sleep of the expiry task (when this node does not lead, or no lease exists):
/// an idle node wakes once a second for leases.
const EXPIRY_IDLE: Duration = Duration::from_secs(1);
/// Shortest sleep (deadlines closer than this are handled together).
const EXPIRY_MIN: Duration = Duration::from_millis(20);
/// Most revokes proposed per tick (etcd limits revocations to 1000 per second).
const REVOKES_PER_TICK: usize = 100;

impl Node {
    /// The lessor, if this node is the leader (after taking the deadlines over).
    pub(super) fn lessor_as_leader(&self) -> Result<Arc<Lessor>> {
        let running = self.running()?;
        // Every keep-alive and expiry tick passes here: read the metrics, do not clone them.
        let rx = running.raft.metrics();
        let (state, leader, term) = {
            let m = rx.borrow_watched();
            (m.state, m.current_leader, m.current_term)
        };
        if state != ServerState::Leader {
            return Err(Error::NotLeader { leader });
        }
        running.lessor.ensure_primary(term);
        Ok(running.lessor.clone())
    }

    /// Grants a lease (etcd `LeaseGrant`). A TTL below the cluster minimum
    /// ([`NodeConfig::min_lease_ttl_secs`](crate::NodeConfig::min_lease_ttl_secs)) is raised
    /// to it; `id` 0 lets the node pick a random one.
    ///
    /// Errors: `LeaseExists`, `LeaseTtlTooLarge`, `InvalidArgument` (negative id), and the
    /// write errors (`NoLeader`, `Timeout`, `Stopped`).
    pub async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        if req.ttl > MAX_LEASE_TTL_SECS {
            return Err(Error::LeaseTtlTooLarge);
        }
        if req.id < 0 {
            return Err(Error::InvalidArgument("a lease id cannot be negative".into()));
        }
        let ttl = req.ttl.max(self.inner.config.min_lease_ttl_secs());
        let chosen = req.id == 0;
        loop {
            let id = if chosen { rand::random::<i64>() & i64::MAX } else { req.id };
            if id == 0 {
                continue;
            }
            match self.write(WriteCommand::LeaseGrant(LeaseGrantRequest { ttl, id })).await {
                Ok(WriteResponse::LeaseGrant(r)) => return Ok(r),
                // A random id that is taken: pick another.
                Err(Error::LeaseExists) if chosen => continue,
                Err(e) => return Err(e),
                Ok(other) => return Err(Error::internal(format!("unexpected grant reply {other:?}"))),
            }
        }
    }

    /// Revokes a lease and deletes its keys, in one revision (etcd `LeaseRevoke`).
    ///
    /// Errors: `LeaseNotFound`, and the write errors.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        match self.write(WriteCommand::LeaseRevoke(LeaseRevokeRequest { id })).await? {
            WriteResponse::LeaseRevoke(r) => Ok(r),
            other => Err(Error::internal(format!("unexpected revoke reply {other:?}"))),
        }
    }

    /// Renews a lease once (etcd `LeaseKeepAlive`, one message); forwarded to the leader.
    ///
    /// Errors: `LeaseNotFound` (unknown, revoked or expired), `NoLeader`, `Timeout`.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let timeout = self.inner.config.request_timeout();
        let reply = self
            .on_runtime(move |n| async move { n.to_leader(ForwardRequest::LeaseKeepAlive { id }, timeout).await })
            .await?;
        match reply {
            ForwardReply::LeaseTtl(ttl) => {
                Ok(LeaseKeepAliveResponse { header: self.header(self.local_revision()), id, ttl })
            }
            other => Err(Error::internal(format!("unexpected keep-alive reply {other:?}"))),
        }
    }

    /// Keeps a lease alive in the background until the returned handle is dropped or
    /// stopped, or the lease is gone: a keep-alive every third of its TTL (etcd's
    /// client `KeepAlive`). Each response (or the error that ended it) can be read from
    /// the handle; reading is optional: while 4 responses wait unread, newer ones are
    /// dropped and the keep-alives go on.
    ///
    /// Errors: `LeaseNotFound` at once if the lease does not exist.
    pub async fn lease_keep_alive_stream(&self, id: i64) -> Result<KeepAlive> {
        let first = self.lease_keep_alive(id).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let node = self.clone();
        let task = self.inner.runtime.spawn(async move {
            let mut ttl = first.ttl;
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let period = Duration::from_millis((ttl.max(1) as u64 * 1000 / 3).max(100));
                tokio::time::sleep(period).await;
                let result = node.lease_keep_alive(id).await;
                let end = matches!(result, Err(Error::LeaseNotFound | Error::Stopped));
                if let Ok(r) = &result {
                    ttl = r.ttl;
                }
                // Transient errors (no leader) are reported and retried. A reader that
                // does not keep up misses responses, never keep-alives.
                if matches!(tx.try_send(result), Err(TrySendError::Closed(_))) || end {
                    return;
                }
            }
        });
        Ok(KeepAlive { rx, task })
    }

    /// A lease's remaining and granted TTL, by the leader's clock (etcd
    /// `LeaseTimeToLive`); `ttl` is -1 when the lease does not exist or has expired.
    /// With `keys`, also the keys attached to it, read linearizably: a key attached
    /// through any member before this call is listed.
    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        let timeout = self.inner.config.request_timeout();
        let reply = self
            .on_runtime(move |n| async move { n.to_leader(ForwardRequest::LeaseTimeToLive { id }, timeout).await })
            .await?;
        let ForwardReply::LeaseRemaining(remaining) = reply else {
            return Err(Error::internal("unexpected time-to-live reply"));
        };
        let Some((ttl, granted_ttl)) = remaining else {
            let header = self.header(self.local_revision());
            return Ok(LeaseTimeToLiveResponse { header, id, ttl: -1, ..Default::default() });
        };
        let keys = if keys {
            // The keys come from this node's store: wait until it has applied every write
            // committed before this request (etcd answers from the leader's lessor), so a
            // key attached through any member just before is listed.
            self.read_barrier().await?;
            self.running()?.store.lease_keys(id)?
        } else {
            Vec::new()
        };
        let header = self.header(self.local_revision());
        Ok(LeaseTimeToLiveResponse { header, id, ttl, granted_ttl, keys })
    }

    /// Every lease id (etcd `LeaseLeases`), linearizable.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse> {
        self.read_barrier().await?;
        let running = self.running()?;
        let leases = running.store.leases()?.into_iter().map(|(id, _)| id).collect();
        Ok(LeaseLeasesResponse { header: self.header(running.store.revision()), leases })
    }

    fn local_revision(&self) -> i64 {
        self.running().map_or(0, |r| r.store.revision())
    }
}

/// A background keep-alive (see [`Node::lease_keep_alive_stream`]). Dropping it stops
/// the keep-alives; the lease then expires after its TTL unless revoked first.
#[derive(Debug)]
pub struct KeepAlive {
    rx: tokio::sync::mpsc::Receiver<Result<LeaseKeepAliveResponse>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// The next keep-alive response; `None` once keep-alives ended (after the error
    /// that ended them: `LeaseNotFound` when the lease is gone, `Stopped`; a reader
    /// that left 4 responses unread may miss that error and see only the `None`).
    pub async fn next(&mut self) -> Option<Result<LeaseKeepAliveResponse>> {
        self.rx.recv().await
    }

    /// Stops the keep-alives.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The leader's expiry loop: revokes leases whose deadline passed, through Raft. It
/// sleeps until the earliest deadline (or a grant), at most [`EXPIRY_IDLE`].
pub(super) async fn expiry_task(node: Weak<NodeInner>, lessor: Arc<Lessor>) {
    let mut nap = EXPIRY_IDLE;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = lessor.changed.notified() => {}
        }
        let Some(inner) = node.upgrade() else { return };
        let node = Node { inner };
        let lessor = match node.lessor_as_leader() {
            Ok(l) => l,
            Err(Error::Stopped) => return,
            Err(_) => {
                nap = EXPIRY_IDLE;
                continue;
            }
        };
        let due = lessor.expired(REVOKES_PER_TICK);
        let next = lessor.next_deadline().map(|d| d.saturating_duration_since(std::time::Instant::now()));
        nap = next.unwrap_or(EXPIRY_IDLE).clamp(EXPIRY_MIN, EXPIRY_IDLE);
        if due.is_empty() {
            continue;
        }
        let timeout = node.inner.config.request_timeout();
        let revokes = due.into_iter().map(|id| {
            let node = node.clone();
            async move {
                let cmd = crate::raft::Request::Kv(WriteCommand::LeaseRevoke(LeaseRevokeRequest { id }));
                match node.handle_as_leader(ForwardRequest::Write(cmd), timeout).await {
                    Ok(_) | Err(Error::LeaseNotFound) => tracing::debug!(lease = id, "lease expired and revoked"),
                    Err(e) => tracing::debug!(lease = id, error = %e, "cannot revoke an expired lease yet"),
                }
            }
        });
        futures::future::join_all(revokes).await;
    }
}
