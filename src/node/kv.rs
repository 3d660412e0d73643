//! The key-value API of a node: etcd's KV service, in Rust.
//!
//! Writes go through Raft on the leader (forwarded from followers). Linearizable reads
//! get a read index from the leader, wait until this node has applied it, then read
//! locally; serializable reads read locally at once.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::forward::{ForwardReply, ForwardRequest};
use openraft::type_config::async_runtime::WatchReceiver;

use super::Node;
use crate::error::{Error, Result};
use crate::mvcc::*;
use crate::raft::Request;

/// The yield point of an async read that has nothing to wait for (a serializable read, or
/// a linearizable one on a one-member cluster's leader): it takes one unit of the calling
/// task's tokio cooperative budget, and yields once the budget is spent. Without it such a
/// read completes on its first poll, and a task looping over reads would hold its worker
/// thread forever, starving the runtime's timers and other tasks (a closed loop stopped by
/// a timer never stops). Free outside a tokio runtime, where there is no budget.
async fn no_wait_yield_point() {
    tokio::task::consume_budget().await;
}

impl Node {
    /// Proposes a write command and returns the state machine's answer.
    pub(super) async fn write(&self, cmd: WriteCommand) -> Result<WriteResponse> {
        let req = Request::Kv(cmd);
        // Counted without building the encoding: the request is encoded once, in the log.
        let size = postcard::experimental::serialized_size(&req).map_err(Error::internal)?;
        let max = self.inner.config.max_request_bytes;
        if size > max {
            return Err(Error::RequestTooLarge { size_bytes: size, max_bytes: max });
        }
        let timeout = self.inner.config.request_timeout();
        let Request::Kv(cmd) = req else { unreachable!("built above") };
        let result = self
            .on_runtime(move |n| async move {
                if n.leader() == Some(n.id()) {
                    n.write_via_leader(cmd, timeout).await
                } else {
                    n.forward_write(cmd, size, timeout).await
                }
            })
            .await?;
        let mut resp = result?;
        let header = resp.header_mut();
        *header = self.header(header.revision);
        Ok(resp)
    }

    /// Makes a read ready to run on this node's state: a linearizable one waits for the
    /// read barrier; a serializable one has nothing to wait for and only yields now and then.
    async fn ready_to_read(&self, serializable: bool) -> Result<()> {
        if serializable {
            no_wait_yield_point().await;
            return Ok(());
        }
        self.read_barrier().await
    }

    /// Waits until a read on this node observes every write committed before the call
    /// (etcd's linearizable read: ReadIndex on the leader, then wait for apply).
    pub async fn read_barrier(&self) -> Result<()> {
        if self.reads_are_local() {
            no_wait_yield_point().await;
            return Ok(());
        }
        let timeout = self.inner.config.request_timeout();
        let deadline = Instant::now() + timeout;
        self.on_runtime(move |n| async move {
            let index = if n.leader() == Some(n.id()) {
                // The leader's rounds are bounded; no routing and no timer per read.
                let raft = n.running()?.raft.clone();
                match n.local_read_index(raft, timeout).await {
                    // Boxed: it is rare here and its future is large.
                    Err(Error::NotLeader { .. }) => Box::pin(n.read_index_from_leader(timeout)).await?,
                    other => other?,
                }
            } else {
                // A follower's concurrent reads share one forwarded request per round.
                n.inner.forward_stats.reads.fetch_add(1, Ordering::Relaxed);
                let node = n.clone();
                let round = n.inner.forwarded_reads.read_index(move || {
                    let node = node.clone();
                    node.inner.forward_stats.read_rounds.fetch_add(1, Ordering::Relaxed);
                    async move { node.vouched_read_index_from_leader(timeout).await }
                });
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::timeout(left, round).await.map_err(|_| Error::Timeout)??
            };
            if n.applied_index() >= index {
                return Ok(());
            }
            let raft = n.running()?.raft.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            // Boxed: Raft's wait future takes about 2 KiB, and reads that need no wait
            // should not carry it.
            Box::pin(raft.wait(Some(left)).applied_index_at_least(Some(index), "linearizable read"))
                .await
                .map_err(|_| Error::Timeout)?;
            Ok(())
        })
        .await
    }

    /// Whether a linearizable read on this node may be served from its applied state at
    /// once, with no Raft round and no wait: true when the node leads a cluster of which
    /// it is the only member (no other voter, no learner), it has applied an entry of its
    /// own term, and it has applied everything committed. Then no other node can have
    /// observed a write this node has not applied, and every acknowledged write is
    /// applied (a write is acknowledged after it is applied), so [`Node::range_local`]
    /// answers a linearizable read; [`Node::range`] and [`Node::read_barrier`] take this
    /// path by themselves. Otherwise (several members, an election, writes committed and
    /// not yet applied) a read takes the read-index path.
    ///
    /// The answer comes from one snapshot of Raft's metrics, which Raft publishes before
    /// a membership change can commit, so a member being added turns it off first.
    /// Cheap (no lock is written, no allocation); callable from any thread.
    pub fn reads_are_local(&self) -> bool {
        let me = self.inner.member_id;
        if self.leader() != Some(me) || self.inner.stopped.load(Ordering::Acquire) {
            return false;
        }
        let guard = self.inner.running.read().expect("running lock");
        let Some(running) = guard.as_ref() else { return false };
        let m = running.metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let solo = membership.get_joint_config().iter().all(|c| c.len() == 1 && c.contains(&me))
            && membership.nodes().all(|(id, _)| *id == me);
        m.state == openraft::ServerState::Leader
            && m.current_leader == Some(me)
            && m.vote.committed
            && solo
            && m.last_applied.as_ref().is_some_and(|l| l.committed_leader_id().term == m.current_term)
            && m.last_applied.as_ref().map(|l| l.index) >= m.local_committed.as_ref().map(|l| l.index)
    }

    /// This node's read index as the leader, from its batched leadership rounds
    /// (`NotLeader` when it does not lead).
    pub(super) async fn local_read_index(&self, raft: crate::raft::Raft, timeout: std::time::Duration) -> Result<u64> {
        let node = self.clone();
        self.inner
            .read_index
            .read_index(move || {
                let (node, raft) = (node.clone(), raft.clone());
                async move { node.leader_round(raft, timeout).await }
            })
            .await
    }

    /// One round of the leader's batcher: a follower that can vouch for this leader (see
    /// `read_index.rs`) confirms it with one call; otherwise, or when it does not, a
    /// heartbeat round does.
    async fn leader_round(&self, raft: crate::raft::Raft, timeout: std::time::Duration) -> Result<u64> {
        if let Some(index) = Box::pin(self.index_a_follower_vouches_for(&raft)).await {
            return Ok(index);
        }
        super::read_index::leader_round(raft, timeout).await
    }

    /// The read index, taken now, if the chosen follower still votes for this leader
    /// after it was taken. A follower that says no or fails to answer (within a heartbeat
    /// interval) is not asked again for a second, so a down follower, or one whose vote
    /// is not yet committed after an election, costs the rounds one extra call, not one
    /// each. A leader round takes at most that interval longer than a heartbeat round.
    async fn index_a_follower_vouches_for(&self, raft: &crate::raft::Raft) -> Option<u64> {
        let now = Instant::now();
        if self.inner.vouch_pause_until.lock().expect("vouch pause").is_some_and(|t| now < t) {
            return None;
        }
        let me = self.inner.member_id;
        let voucher = super::read_index::voucher(raft, me)?;
        let addr = self.peer_addr_of(voucher)?;
        let v = super::read_index::read_index_at_once(raft).await.ok()??;
        let ask = ForwardRequest::Vouch { voucher, term: v.term, leader: v.leader };
        let wait = std::time::Duration::from_millis(self.inner.config.heartbeat_interval_ms.max(20));
        match self.send_forward(&addr, &ask, wait).await {
            Ok(ForwardReply::Vouches(true)) => {
                self.inner.forward_stats.leader_vouched_rounds.fetch_add(1, Ordering::Relaxed);
                Some(v.index)
            }
            // No, or no answer: its vote moved on (leadership is in question) or it is
            // out of reach; heartbeat rounds decide for a second.
            other => {
                tracing::debug!(voucher, answer = ?other, "a follower did not vouch; heartbeat rounds for a second");
                *self.inner.vouch_pause_until.lock().expect("vouch pause") =
                    Some(now + std::time::Duration::from_secs(1));
                None
            }
        }
    }

    /// A follower's read index from the leader, which this node vouches for when it can
    /// (see `read_index.rs`); a full leadership round on the leader when it cannot.
    async fn vouched_read_index_from_leader(&self, timeout: std::time::Duration) -> Result<u64> {
        let voter = self.inner.member_id;
        let reply = match self.to_leader(ForwardRequest::VouchedReadIndex { voter }, timeout).await {
            // A leader of an older version cannot decode the request: ask the way it
            // understands.
            Err(e) if super::forward::is_undecodable_request(&e) => {
                return Box::pin(self.read_index_from_leader(timeout)).await
            }
            other => other?,
        };
        match reply {
            ForwardReply::ReadIndex(index) => Ok(index),
            ForwardReply::VouchedReadIndex(v) => {
                // Step 3 in `read_index.rs`: our vote, asked now, must still be for the
                // leader that answered.
                let raft = self.running()?.raft.clone();
                if super::read_index::votes_for(&raft, v.term, v.leader).await? {
                    self.inner.forward_stats.vouched_rounds.fetch_add(1, Ordering::Relaxed);
                    Ok(v.index)
                } else {
                    // Our vote moved on while the leader answered: no proof; a full round.
                    Box::pin(self.read_index_from_leader(timeout)).await
                }
            }
            _ => Err(Error::internal("unexpected reply to a read index request")),
        }
    }

    /// A read index from the leader (this node or the one it forwards to).
    async fn read_index_from_leader(&self, timeout: std::time::Duration) -> Result<u64> {
        match self.to_leader(ForwardRequest::ReadIndex, timeout).await? {
            ForwardReply::ReadIndex(index) => Ok(index),
            _ => Err(Error::internal("unexpected reply to a read index request")),
        }
    }

    /// Puts a key (etcd `Put`).
    ///
    /// Errors: `EmptyKey`, `ValueProvided`, `LeaseProvided`, `KeyNotFound` (ignore_* on a
    /// missing key), `LeaseNotFound`, `RequestTooLarge`, `NoLeader`, `Timeout`, `Stopped`.
    pub async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        check_put(&req)?;
        match self.write(WriteCommand::Put(req)).await? {
            WriteResponse::Put(r) => Ok(r),
            other => Err(Error::internal(format!("unexpected put reply {other:?}"))),
        }
    }

    /// Reads keys (etcd `Range`). Linearizable unless `req.serializable`.
    ///
    /// Errors: `EmptyKey`, `Compacted`, `FutureRevision`, `NoLeader`, `Timeout`, `Stopped`.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        check_range(&req)?;
        self.ready_to_read(req.serializable).await?;
        self.range_local(&req)
    }

    /// Reads keys from this node's state without any Raft round (etcd's serializable read).
    /// Never blocks on the network; callable from any thread, async or not.
    pub fn range_local(&self, req: &RangeRequest) -> Result<RangeResponse> {
        check_range(req)?;
        let running = self.running()?;
        let mut resp = running.store.range(req)?;
        resp.header = self.header(resp.header.revision);
        Ok(resp)
    }

    /// The current value of `key`, linearizable (`None` when absent).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        Ok(self.range(RangeRequest::key(key)).await?.kvs.pop())
    }

    /// Deletes keys (etcd `DeleteRange`).
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        check_delete(&req)?;
        match self.write(WriteCommand::DeleteRange(req)).await? {
            WriteResponse::DeleteRange(r) => Ok(r),
            other => Err(Error::internal(format!("unexpected delete reply {other:?}"))),
        }
    }

    /// Runs a transaction (etcd `Txn`). A transaction with only reads is served like a
    /// range (locally after a read barrier, or at once if every range is serializable).
    ///
    /// Errors: `TooManyOps`, `EmptyKey`, `DuplicateKey`, the errors of its operations.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        check_txn(&req, self.inner.config.max_txn_ops)?;
        if req.is_read_only() {
            self.ready_to_read(req.is_serializable()).await?;
            let running = self.running()?;
            let mut resp = running.store.txn_read_only(&req)?;
            fill_txn_header(self, &mut resp);
            return Ok(resp);
        }
        match self.write(WriteCommand::Txn(req)).await? {
            WriteResponse::Txn(mut r) => {
                fill_txn_header(self, &mut r);
                Ok(r)
            }
            other => Err(Error::internal(format!("unexpected txn reply {other:?}"))),
        }
    }

    /// Compacts the history below `req.revision` (etcd `Compact`).
    ///
    /// Errors: `Compacted` (already compacted to or past it), `FutureRevision`.
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse> {
        match self.write(WriteCommand::Compact(req)).await? {
            WriteResponse::Compact(r) => Ok(r),
            other => Err(Error::internal(format!("unexpected compact reply {other:?}"))),
        }
    }
}

fn fill_txn_header(node: &Node, resp: &mut TxnResponse) {
    resp.header = node.header(resp.header.revision);
    for r in &mut resp.responses {
        match r {
            ResponseOp::Range(x) => x.header = node.header(x.header.revision),
            ResponseOp::Put(x) => x.header = node.header(x.header.revision),
            ResponseOp::DeleteRange(x) => x.header = node.header(x.header.revision),
            ResponseOp::Txn(x) => fill_txn_header(node, x),
        }
    }
}

/// Generates the blocking twin of each async method.
macro_rules! blocking_twins {
    ($( $(#[$doc:meta])* $blocking:ident => $async_fn:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        impl Node {
            $(
                $(#[$doc])*
                ///
                /// Blocking: call it from a thread outside any async runtime (it returns
                /// `InvalidArgument` when called from one).
                pub fn $blocking(&self, $($arg: $ty),*) -> Result<$ret> {
                    self.block_on(self.$async_fn($($arg),*))
                }
            )*
        }
    };
}

blocking_twins! {
    /// Blocking [`Node::put`].
    put_blocking => put(req: PutRequest) -> PutResponse;
    /// Blocking [`Node::delete_range`].
    delete_range_blocking => delete_range(req: DeleteRangeRequest) -> DeleteRangeResponse;
    /// Blocking [`Node::txn`].
    txn_blocking => txn(req: TxnRequest) -> TxnResponse;
    /// Blocking [`Node::compact`].
    compact_blocking => compact(req: CompactionRequest) -> CompactionResponse;
    /// Blocking [`Node::read_barrier`].
    read_barrier_blocking => read_barrier() -> ();
    /// Blocking [`Node::remove_member`].
    remove_member_blocking => remove_member(id: u64) -> ();
    /// Blocking [`Node::promote_member`].
    promote_member_blocking => promote_member(id: u64) -> ();
    /// Blocking [`Node::lease_grant`].
    lease_grant_blocking => lease_grant(req: LeaseGrantRequest) -> LeaseGrantResponse;
    /// Blocking [`Node::lease_revoke`].
    lease_revoke_blocking => lease_revoke(id: i64) -> LeaseRevokeResponse;
    /// Blocking [`Node::lease_keep_alive`].
    lease_keep_alive_blocking => lease_keep_alive(id: i64) -> LeaseKeepAliveResponse;
    /// Blocking [`Node::lease_keep_alive_stream`].
    lease_keep_alive_stream_blocking => lease_keep_alive_stream(id: i64) -> crate::node::KeepAlive;
    /// Blocking [`Node::lease_time_to_live`].
    lease_time_to_live_blocking => lease_time_to_live(id: i64, keys: bool) -> LeaseTimeToLiveResponse;
    /// Blocking [`Node::lease_leases`].
    lease_leases_blocking => lease_leases() -> LeaseLeasesResponse;
    /// Blocking [`Node::move_leader`].
    move_leader_blocking => move_leader(target: u64) -> ();
}

impl Node {
    /// Blocking [`Node::range`]. A read that needs no wait (serializable, or any read while
    /// [`Node::reads_are_local`]) is served on the calling thread without entering the
    /// runtime, as [`Node::range_local`]; any other waits as [`Node::range`] does.
    ///
    /// Blocking: call it from a thread outside any async runtime (it returns
    /// `InvalidArgument` when called from one).
    pub fn range_blocking(&self, req: RangeRequest) -> Result<RangeResponse> {
        super::ensure_not_async()?;
        if req.serializable || self.reads_are_local() {
            return self.range_local(&req);
        }
        self.block_on(self.range(req))
    }

    /// Blocking [`Node::get`], served as [`Node::range_blocking`] serves one key.
    ///
    /// Blocking: call it from a thread outside any async runtime (it returns
    /// `InvalidArgument` when called from one).
    pub fn get_blocking(&self, key: Vec<u8>) -> Result<Option<KeyValue>> {
        Ok(self.range_blocking(RangeRequest::key(key))?.kvs.pop())
    }

    /// Blocking [`Node::add_member`].
    pub fn add_member_blocking(&self, name: &str, peer_addr: &str, learner: bool) -> Result<crate::node::Member> {
        self.block_on(self.add_member(name, peer_addr, learner))
    }
}
