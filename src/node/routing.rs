//! Request routing: serve locally, forward to the leader, or wait for one.
//!
//! The decision is a pure function ([`route`]) tested with a table; the rest of this
//! module carries forwarded requests over the peer transport.

use openraft::type_config::async_runtime::WatchReceiver;
use std::time::{Duration, Instant};

use super::forward::{ForwardReply, ForwardRequest};
use super::Node;
use crate::error::{Error, Result};
use crate::raft::codec::{decode, encode};
use crate::raft::network::{pb, peer_client, ForwardCallError};

/// The id of a member added by peer address alone (etcd's `MemberAdd` before the node
/// starts) at `peer_addr`, in the leader's member list asked through the first of `peers`
/// that answers; `None` when there is none (or nobody answers: the join itself then
/// reports that).
pub(crate) async fn preassigned_id(
    clients: &crate::raft::network::PeerClients,
    peers: &[String],
    peer_addr: &str,
) -> Option<u64> {
    for addr in peers {
        let Ok(channel) = clients.get(addr) else { continue };
        let env = pb::Envelope {
            cluster_id: 0,
            payload: encode(&ForwardRequest::LeaderMembers).into(),
            sender_id: 0,
            call_id: 0,
        };
        let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(5), peer_client(channel).forward(env)).await
        else {
            continue;
        };
        let Ok(Ok(ForwardReply::Members { members, .. })) =
            decode::<Result<ForwardReply>>(&reply.into_inner().payload, "members")
        else {
            return None;
        };
        return members
            .into_iter()
            .find(|m| m.name.is_empty() && m.peer_addrs.iter().any(|a| a == peer_addr))
            .map(|m| m.id);
    }
    None
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// This node leads: handle it here.
    Local,
    /// Send it to this leader.
    Forward(u64),
    /// No leader known: wait for one (until the deadline).
    Wait,
    /// The deadline passed without a leader.
    NoLeader,
}

/// Decides where a leader-only request goes.
pub(crate) fn route(me: u64, leader: Option<u64>, deadline_passed: bool) -> Route {
    match leader {
        Some(l) if l == me => Route::Local,
        Some(l) => Route::Forward(l),
        None if deadline_passed => Route::NoLeader,
        None => Route::Wait,
    }
}

/// Whether a transport failure proves the request never reached the peer (so it is safe
/// to send again). tonic reports a refused connection as `Unavailable` whose message
/// names the connect step; anything else may have been delivered.
fn never_delivered(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().to_ascii_lowercase().contains("connect")
}

/// How sending a forwarded request failed.
#[derive(Debug)]
pub(super) enum SendError {
    /// The request never reached the peer (the connection was refused): safe to resend.
    NotDelivered(String),
    /// The request may have reached the peer; its outcome is unknown.
    Lost(String),
    /// The peer answered with this error, or the call timed out.
    Failed(Error),
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotDelivered(m) | SendError::Lost(m) => Error::Transport(m),
            SendError::Failed(e) => e,
        }
    }
}

impl Node {
    pub(super) fn peer_addr_of(&self, id: u64) -> Option<String> {
        let members = self.inner.observed.members.read().expect("members lock");
        members.get(&id).and_then(|(a, _)| a.peer_addrs.first().cloned())
    }

    /// Sends `req` to the node at `addr` once. `SendError::NotDelivered` and a
    /// `NotLeader` answer mean the request was not executed.
    pub(super) async fn send_forward(
        &self,
        addr: &str,
        req: &ForwardRequest,
        timeout: Duration,
    ) -> Result<ForwardReply, SendError> {
        let payload = encode(req);
        let local = self.inner.local_network().and_then(|n| n.forward_to(addr));
        // The reply as `Bytes`: the gRPC payload is read where it arrived, not copied.
        let reply: bytes::Bytes = match local {
            // A node of this process: handed over in memory, still encoded (the handler
            // is shared with the gRPC path, and requests are small next to their work).
            Some(peer) => tokio::time::timeout(timeout, peer.local_forward(self.cluster_id(), payload))
                .await
                .map_err(|_| SendError::Failed(Error::Timeout))?
                .into(),
            None => {
                let env = pb::Envelope {
                    cluster_id: self.cluster_id(),
                    payload: payload.into(),
                    sender_id: self.inner.member_id,
                    call_id: 0,
                };
                match tokio::time::timeout(timeout, self.inner.peers.forward_call(addr, env)).await {
                    Err(_) => return Err(SendError::Failed(Error::Timeout)),
                    Ok(Err(ForwardCallError::Channel(e))) => return Err(SendError::Failed(e)),
                    Ok(Err(ForwardCallError::Status(status))) if never_delivered(&status) => {
                        return Err(SendError::NotDelivered(format!("cannot reach {addr}: {}", status.message())))
                    }
                    Ok(Err(ForwardCallError::Status(status))) => {
                        return Err(SendError::Lost(format!("{addr}: {status}")))
                    }
                    Ok(Ok(r)) => r,
                }
            }
        };
        let result: Result<ForwardReply> = decode(&reply, "forward reply").map_err(SendError::Failed)?;
        result.map_err(|e| match e {
            // The peer (a leader being stopped) went away while handling it: for us that
            // is a lost leader, not our own stop.
            Error::Stopped | Error::Fatal(_) => SendError::Lost(format!("{addr}: {e}")),
            e => SendError::Failed(e),
        })
    }

    /// Runs a leader-only request: locally when this node leads, forwarded otherwise,
    /// waiting for a leader up to the request timeout. A request is sent again only when
    /// it certainly was not executed (refused connection, or "not leader").
    pub(crate) async fn to_leader(&self, req: ForwardRequest, timeout: Duration) -> Result<ForwardReply> {
        let deadline = Instant::now() + timeout;
        let mut hint: Option<u64> = None;
        loop {
            let now = Instant::now();
            let leader = hint.take().or_else(|| self.leader());
            match route(self.inner.member_id, leader, now >= deadline) {
                Route::NoLeader => return Err(Error::NoLeader),
                Route::Local => match self.handle_as_leader(req.clone(), deadline - now).await {
                    Err(Error::NotLeader { leader }) => hint = leader.filter(|l| *l != self.inner.member_id),
                    other => return other,
                },
                Route::Forward(leader) => {
                    let Some(addr) = self.peer_addr_of(leader) else {
                        hint = self.wait_leader_change(Some(leader), deadline).await?;
                        continue;
                    };
                    // Boxed: a gRPC call's future is large, and a leader's own requests
                    // (the common case) should not carry its size.
                    match Box::pin(self.send_forward(&addr, &req, deadline - now)).await {
                        Err(SendError::Failed(Error::NotLeader { leader: h })) => hint = h.filter(|l| *l != leader),
                        Err(SendError::NotDelivered(e)) => {
                            tracing::debug!(error = %e, "leader unreachable, waiting for a new one");
                            hint = self.wait_leader_change(Some(leader), deadline).await?;
                        }
                        // A write that may have run must not run twice: its outcome is unknown.
                        Err(SendError::Lost(_))
                            if matches!(req, ForwardRequest::Write(_) | ForwardRequest::WriteBatch(_)) =>
                        {
                            return Err(Error::Timeout)
                        }
                        Err(SendError::Lost(e)) => {
                            tracing::debug!(error = %e, "lost contact with the leader, waiting for a new one");
                            hint = self.wait_leader_change(Some(leader), deadline).await?;
                        }
                        Err(SendError::Failed(e)) => return Err(e),
                        Ok(reply) => return Ok(reply),
                    }
                }
                // Go on with the leader Raft names, whether or not the mirror shows it yet.
                Route::Wait => {
                    hint = self.wait_leader_change(None, deadline).await?;
                    continue;
                }
            }
            if Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Waits (at most until `deadline`, and at most one heartbeat interval when a leader
    /// is known) for Raft to name a leader other than `from`, and returns it (`None`: the
    /// wait ran out). `Stopped` once the node stops.
    ///
    /// The answer comes from Raft's metrics, not from [`Node::leader`]: that mirror is
    /// refreshed by a task of its own and may lag (right after a start it is still empty
    /// while Raft already leads). A caller that ignored the answer and asked the mirror
    /// again would find the same stale value and come straight back here; the wait ends
    /// at once, so it would loop without yielding, and with as many such requests as the
    /// runtime has workers, the task refreshing the mirror would never run.
    async fn wait_leader_change(&self, from: Option<u64>, deadline: Instant) -> Result<Option<u64>> {
        let running = self.running()?;
        let step = Duration::from_millis(self.inner.config.heartbeat_interval_ms.max(20));
        let until = deadline.min(Instant::now() + step);
        let mut rx = running.raft.server_metrics();
        drop(running);
        let changed = tokio::time::timeout_at(until.into(), async {
            loop {
                let leader = rx.borrow_watched().current_leader;
                if leader != from && leader.is_some() {
                    return leader;
                }
                if rx.changed().await.is_err() {
                    // Raft stopped: no leader will come; wait out the step (no busy loop).
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        Ok(changed.ok().flatten())
    }

    /// Sends `req` to any member that will take it: the leader if known, otherwise each
    /// member in turn, following "not leader" hints. Used by a node whose own address
    /// changed, which the leader may not reach yet.
    pub(crate) async fn to_any_member(&self, req: ForwardRequest, timeout: Duration) -> Result<ForwardReply> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let me = self.inner.member_id;
            let leader = self.leader();
            let mut targets: Vec<u64> = {
                let members = self.inner.observed.members.read().expect("members lock");
                members.keys().copied().filter(|id| *id != me).collect()
            };
            // The leader first: it takes the request without relaying it.
            targets.sort_by_key(|id| Some(*id) != leader);
            for id in targets {
                let Some(addr) = self.peer_addr_of(id) else {
                    continue;
                };
                let left = deadline.saturating_duration_since(Instant::now());
                match self.send_forward(&addr, &req, left.min(Duration::from_secs(2))).await {
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        tracing::debug!(peer = id, error = ?e, "member did not take the request")
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::NoLeader)
    }

    pub(crate) fn applied_index(&self) -> u64 {
        let Ok(running) = self.running() else { return 0 };
        let applied = running.raft.data_metrics().borrow_watched().last_applied;
        applied.map_or(0, |l| l.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table() {
        let cases = [
            // (me, leader, deadline passed, expected)
            (1, Some(1), false, Route::Local),
            (1, Some(1), true, Route::Local),
            (1, Some(2), false, Route::Forward(2)),
            (1, Some(2), true, Route::Forward(2)),
            (1, None, false, Route::Wait),
            (1, None, true, Route::NoLeader),
        ];
        for (me, leader, passed, want) in cases {
            assert_eq!(route(me, leader, passed), want, "me={me} leader={leader:?} passed={passed}");
        }
    }
}
