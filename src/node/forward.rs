//! Leader-side handling of requests (local or forwarded from followers), and membership.

use openraft::type_config::async_runtime::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use openraft::errors::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::datadir::{self, Identity};
use super::{Node, NodeInner};
use crate::error::{Error, Result};
use crate::mvcc::WriteCommand;
use crate::raft::codec::{decode, encode};
use crate::raft::network::{ForwardHandler, VerifiedPeer};
use crate::raft::{MemberAddrs, Raft, Request, Response};

/// A cluster member as listed by [`Node::members`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member id (stable).
    pub id: u64,
    /// Member name.
    pub name: String,
    /// Peer addresses.
    pub peer_addrs: Vec<String>,
    /// Client addresses.
    pub client_addrs: Vec<String>,
    /// `true` for a non-voting learner.
    pub is_learner: bool,
}

impl Member {
    pub(crate) fn from_addrs(id: u64, a: &MemberAddrs, is_learner: bool) -> Self {
        Member {
            id,
            name: a.name.clone(),
            peer_addrs: a.peer_addrs.clone(),
            client_addrs: a.client_addrs.clone(),
            is_learner,
        }
    }
}

/// What followers ask the leader to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ForwardRequest {
    /// Propose a replicated command.
    Write(Request),
    /// Confirm leadership and return the log index reads must wait for.
    ReadIndex,
    /// Add a member (as a learner, then a voter unless `learner`).
    Join { id: u64, addrs: MemberAddrs, learner: bool, cluster_id: u64 },
    /// Ask a member which cluster it belongs to (the envelope check refuses foreign ones).
    Ping,
    /// Register a member before it starts: as a learner, or as a voter unless `learner`
    /// (without waiting for it to catch up).
    Register { id: u64, addrs: MemberAddrs, learner: bool },
    /// Remove a member.
    Remove { id: u64 },
    /// Make a learner a voter.
    Promote { id: u64 },
    /// Replace a member's addresses.
    UpdateAddrs { id: u64, addrs: MemberAddrs },
    /// Renew a lease (only the leader's deadlines count).
    LeaseKeepAlive { id: i64 },
    /// A lease's remaining time, by the leader's clock.
    LeaseTimeToLive { id: i64 },
    /// Hand leadership to this voter.
    MoveLeader { target: u64 },
    /// The member list as the leader knows it (a node about to join looks for a member
    /// added for its address).
    LeaderMembers,
    /// Propose these writes (a follower's concurrent writes, see `forward_writes.rs`).
    WriteBatch(Vec<WriteCommand>),
    /// A read index that the follower `voter` will vouch for (see `read_index.rs`): no
    /// heartbeat round when the leader and it make a quorum.
    VouchedReadIndex { voter: u64 },
    /// From the leader: does the receiving follower still hold the committed vote for
    /// this leader id? (The leader's own rounds, see `read_index.rs`.) Answered by the
    /// receiver, never relayed.
    Vouch { voucher: u64, term: u64, leader: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ForwardReply {
    Write(Response),
    ReadIndex(u64),
    Members {
        cluster_id: u64,
        members: Vec<Member>,
    },
    /// The renewed TTL of a lease.
    LeaseTtl(i64),
    /// Remaining and granted TTL of a lease (`None`: it does not exist or has expired).
    LeaseRemaining(Option<(i64, i64)>),
    /// Each write's answer, in order (outer error: not proposed, or no answer from Raft).
    WriteBatch(Vec<super::propose::Answer>),
    /// A read index taken without a round, valid once the follower vouches for the
    /// leader id it names.
    VouchedReadIndex(super::read_index::Vouched),
    /// The answer to `Vouch`.
    Vouches(bool),
}

/// The peer service's entry point for forwarded requests.
pub(crate) struct Handler {
    pub node: Weak<NodeInner>,
}

impl ForwardHandler for Handler {
    fn handle(
        &self,
        payload: Vec<u8>,
        peer: Option<VerifiedPeer>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + 'static>> {
        let node = self.node.upgrade().map(|inner| Node { inner });
        Box::pin(async move {
            let req = decode_request(&payload);
            let req = match (req, &peer) {
                (Ok(req), Some(peer)) => check_claims(peer, &req).map(|()| req),
                (req, _) => req,
            };
            let result = match (node, req) {
                (None, _) => Err(Error::Stopped),
                (_, Err(e)) => Err(e),
                (Some(node), Ok(req)) => {
                    let timeout = node.inner.config.request_timeout();
                    match req {
                        // Sent by nodes that may not know the leader: relay to it.
                        ForwardRequest::Join { .. } | ForwardRequest::UpdateAddrs { .. } => {
                            node.to_leader(req, timeout * 4).await
                        }
                        ForwardRequest::LeaderMembers => node.to_leader(req, timeout).await,
                        ForwardRequest::Ping => Ok(node.members_reply()),
                        ForwardRequest::Vouch { voucher, term, leader } => node.vouch(voucher, term, leader).await,
                        req => node.handle_as_leader(req, timeout).await,
                    }
                }
            };
            encode(&result)
        })
    }
}

/// Decodes a forwarded request. A request this version does not know (a newer peer's)
/// fails with the error [`is_undecodable_request`] recognises, in this and in earlier
/// versions alike.
fn decode_request(payload: &[u8]) -> Result<ForwardRequest> {
    decode::<ForwardRequest>(payload, "forwarded request")
}

/// Whether a peer answered that it could not decode the request sent to it: a node of an
/// older version that does not know the request (so the sender can fall back to one it
/// knows).
pub(super) fn is_undecodable_request(e: &Error) -> bool {
    matches!(e, Error::Storage(m) if m.starts_with("cannot decode forwarded request"))
}

/// With mutual TLS: what a forwarded request may claim, given who sent it. A node that
/// joins or moves speaks for itself only at addresses its certificate covers; a member
/// may relay such a request for another node; anything else comes from members only (a
/// node not yet a member may only join or ask for the member list).
fn check_claims(peer: &VerifiedPeer, req: &ForwardRequest) -> Result<()> {
    match req {
        ForwardRequest::Join { id, addrs, .. } | ForwardRequest::UpdateAddrs { id, addrs } if *id == peer.sender_id => {
            addrs.peer_addrs.iter().try_for_each(|a| peer.covers(a))
        }
        ForwardRequest::Ping | ForwardRequest::LeaderMembers => Ok(()),
        // A member vouches for the leader with its own vote only.
        ForwardRequest::VouchedReadIndex { voter } if peer.is_member && *voter != peer.sender_id => {
            Err(Error::Transport(format!(
                "peer certificate refused: member {:016x} ({}) may not vouch as member {voter:016x}",
                peer.sender_id, peer.remote
            )))
        }
        _ if peer.is_member => Ok(()),
        _ => {
            let e = Error::Transport(format!(
                "peer certificate refused: {} (member {:016x}) is no member and may only join",
                peer.remote, peer.sender_id
            ));
            tracing::warn!(error = %e, "peer request refused");
            Err(e)
        }
    }
}

pub(super) fn write_error(e: RaftError<crate::raft::TypeConfig, ClientWriteError<crate::raft::TypeConfig>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader { leader: f.leader_id },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => Error::MembershipChange(c.to_string()),
        // The entry was dropped before it committed: safe to propose again.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => Error::NotLeader { leader: None },
        RaftError::APIError(e) => Error::MembershipChange(e.to_string()),
        RaftError::Fatal(openraft::errors::Fatal::Stopped) => Error::Stopped,
        RaftError::Fatal(f) => Error::Fatal(f.to_string()),
    }
}

impl Node {
    /// Executes a leader-only request on this node; `Error::NotLeader` if it does not lead.
    pub(crate) async fn handle_as_leader(&self, req: ForwardRequest, timeout: Duration) -> Result<ForwardReply> {
        let running = self.running()?;
        let raft = running.raft.clone();
        drop(running);
        // The hot requests (writes, read indexes) run inline; the rare ones are boxed, so
        // the size of their futures (kilobytes for a membership change) is not carried by
        // every write's and read's future, which the server allocates and moves per request.
        let work = async {
            match req {
                ForwardRequest::Write(Request::Kv(cmd)) => {
                    let proposer = self.running()?.proposer.clone();
                    Ok(ForwardReply::Write(Response::Kv(proposer.propose(cmd).await?)))
                }
                ForwardRequest::WriteBatch(cmds) => super::forward_writes::propose_forwarded(self, cmds).await,
                ForwardRequest::ReadIndex => {
                    Ok(ForwardReply::ReadIndex(self.local_read_index(raft.clone(), timeout).await?))
                }
                ForwardRequest::VouchedReadIndex { voter } => {
                    // Boxed: once per follower round, and Raft's read future is large.
                    let vouched = Box::pin(super::read_index::vouched_read_index(&raft, self.inner.member_id, voter));
                    match vouched.await? {
                        Some(v) => Ok(ForwardReply::VouchedReadIndex(v)),
                        None => Ok(ForwardReply::ReadIndex(self.local_read_index(raft.clone(), timeout).await?)),
                    }
                }
                ForwardRequest::LeaseKeepAlive { id } => {
                    let lessor = self.lessor_as_leader()?;
                    lessor.renew(id).map(ForwardReply::LeaseTtl).ok_or(Error::LeaseNotFound)
                }
                ForwardRequest::LeaseTimeToLive { id } => {
                    Ok(ForwardReply::LeaseRemaining(self.lessor_as_leader()?.remaining(id)))
                }
                ForwardRequest::Ping | ForwardRequest::LeaderMembers => Ok(self.members_reply()),
                rare => Box::pin(self.handle_rare_as_leader(rare, raft, timeout)).await,
            }
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| Error::Timeout)?
    }

    /// The requests of [`Node::handle_as_leader`] that are not on a hot path: membership
    /// changes, leadership moves and writes of the node's own commands.
    async fn handle_rare_as_leader(&self, req: ForwardRequest, raft: Raft, timeout: Duration) -> Result<ForwardReply> {
        match req {
            ForwardRequest::Write(r) => {
                let resp = raft.client_write(r).await.map_err(write_error)?;
                Ok(ForwardReply::Write(resp.data))
            }
            ForwardRequest::Join { id, addrs, learner, cluster_id } => {
                self.join_as_leader(id, addrs, learner, cluster_id).await
            }
            ForwardRequest::Remove { id } => self.remove_as_leader(id).await,
            ForwardRequest::Register { id, addrs, learner } => {
                let members = self.inner.observed.members.read().expect("members lock").clone();
                let taken = members
                    .iter()
                    .any(|(other, (a, _))| *other == id || a.peer_addrs.iter().any(|p| addrs.peer_addrs.contains(p)));
                if taken {
                    return Err(Error::PeerAddrExists);
                }
                raft.add_learner(id, addrs, false).await.map_err(write_error)?;
                if !learner {
                    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(write_error)?;
                }
                Ok(self.members_reply())
            }
            ForwardRequest::Promote { id } => {
                self.ensure_member(id, true)?;
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(write_error)?;
                Ok(self.members_reply())
            }
            ForwardRequest::MoveLeader { target } => self.move_leader_as_leader(target, timeout).await,
            ForwardRequest::UpdateAddrs { id, addrs } => {
                self.ensure_member(id, false)?;
                raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, addrs)])), false)
                    .await
                    .map_err(write_error)?;
                Ok(self.members_reply())
            }
            ForwardRequest::WriteBatch(_)
            | ForwardRequest::ReadIndex
            | ForwardRequest::VouchedReadIndex { .. }
            | ForwardRequest::Vouch { .. }
            | ForwardRequest::LeaseKeepAlive { .. }
            | ForwardRequest::LeaseTimeToLive { .. }
            | ForwardRequest::Ping
            | ForwardRequest::LeaderMembers => Err(Error::internal("a hot request reached the rare-request path")),
        }
    }

    /// A follower's answer to its leader's `Vouch` (see `read_index.rs`): a node other
    /// than the `voucher` asked for (the leader's address table was stale) says no.
    pub(super) async fn vouch(&self, voucher: u64, term: u64, leader: u64) -> Result<ForwardReply> {
        if voucher != self.inner.member_id {
            return Ok(ForwardReply::Vouches(false));
        }
        let raft = self.running()?.raft.clone();
        Ok(ForwardReply::Vouches(super::read_index::votes_for(&raft, term, leader).await?))
    }

    fn members_reply(&self) -> ForwardReply {
        ForwardReply::Members { cluster_id: self.cluster_id(), members: self.members().unwrap_or_default() }
    }

    /// The membership as this node's Raft holds it now, member id to (addresses, is a
    /// voter). The leader's checks read this, not the observed table, which a background
    /// task refreshes a moment after each change.
    fn raft_members(&self) -> Result<BTreeMap<u64, (MemberAddrs, bool)>> {
        let raft = self.running()?.raft.clone();
        let membership = raft.metrics().borrow_watched().membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        Ok(membership.nodes().map(|(id, a)| (*id, (a.clone(), voters.contains(id)))).collect())
    }

    /// Waits (up to the request timeout) until this node's member table shows a change
    /// the leader has committed, so `members()` right after a membership call shows it.
    async fn await_member_table(&self, shows: impl Fn(&BTreeMap<u64, (MemberAddrs, bool)>) -> bool) {
        let deadline = std::time::Instant::now() + self.inner.config.request_timeout();
        while !shows(&self.inner.observed.members.read().expect("members lock")) && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Fails unless `id` is a member (and, with `learner_only`, a learner).
    fn ensure_member(&self, id: u64, learner_only: bool) -> Result<()> {
        let members = self.raft_members()?;
        match members.get(&id) {
            None => Err(Error::MemberNotFound),
            Some((_, true)) if learner_only => Err(Error::MemberNotLearner),
            Some(_) => Ok(()),
        }
    }

    async fn join_as_leader(
        &self,
        id: u64,
        addrs: MemberAddrs,
        learner: bool,
        cluster_id: u64,
    ) -> Result<ForwardReply> {
        let local = self.cluster_id();
        if cluster_id != 0 && cluster_id != local {
            return Err(Error::ClusterMismatch { local, remote: cluster_id });
        }
        let raft = self.running()?.raft.clone();
        let existing = self.raft_members()?;
        for (other, (a, _)) in &existing {
            let clash = a.name == addrs.name || a.peer_addrs.iter().any(|p| addrs.peer_addrs.contains(p));
            if *other != id && clash {
                return Err(Error::PeerAddrExists);
            }
        }
        // A member added as a learner before it started (etcd `MemberAdd --learner`)
        // joins as one, and waits for `MemberPromote`.
        let learner = learner || existing.get(&id).is_some_and(|(_, is_voter)| !is_voter);
        match existing.get(&id) {
            Some((current, _)) if current != &addrs => {
                raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, addrs.clone())])), false)
                    .await
                    .map_err(write_error)?;
            }
            Some(_) => {}
            None => {
                // Blocking: returns once the learner has caught up with the log.
                raft.add_learner(id, addrs, true).await.map_err(write_error)?;
            }
        }
        let is_voter = self.raft_members()?.get(&id).is_some_and(|(_, v)| *v);
        if !learner && !is_voter {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(write_error)?;
        }
        let voter = !learner;
        self.await_member_table(|m| m.get(&id).is_some_and(|(_, v)| *v || !voter)).await;
        // Reply from Raft's own view (the member table may still lag a learner's promotion).
        let raft_members = raft.metrics().borrow_watched().membership_config.membership().clone();
        let voters: Vec<u64> = raft_members.voter_ids().collect();
        let members =
            raft_members.nodes().map(|(i, a)| Member::from_addrs(*i, a, !voters.contains(i))).collect::<Vec<_>>();
        Ok(ForwardReply::Members { cluster_id: local, members })
    }

    async fn remove_as_leader(&self, id: u64) -> Result<ForwardReply> {
        let raft = self.running()?.raft.clone();
        let members = self.raft_members()?;
        let Some((_, is_voter)) = members.get(&id) else {
            return Err(Error::MemberNotFound);
        };
        let change = if *is_voter {
            let voters = members.values().filter(|(_, v)| *v).count();
            if voters == 1 {
                return Err(Error::MembershipChange("cannot remove the last voter".into()));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        raft.change_membership(change, false).await.map_err(write_error)?;
        self.await_member_table(|m| !m.contains_key(&id)).await;
        Ok(self.members_reply())
    }

    /// Joins the cluster through any of `peers`, retrying until the request timeout.
    pub(super) async fn join_through(&self, peers: &[String], identity: &Identity) -> Result<()> {
        let req = ForwardRequest::Join {
            id: self.inner.member_id,
            addrs: self.addrs(),
            learner: self.inner.config.join_as_learner,
            cluster_id: identity.cluster_id,
        };
        let deadline = std::time::Instant::now() + self.inner.config.request_timeout() * 6;
        let mut last_err = Error::NoLeader;
        while std::time::Instant::now() < deadline {
            for addr in peers {
                let timeout = self.inner.config.request_timeout() * 4;
                match self.send_forward(addr, &req, timeout).await.map_err(Error::from) {
                    Ok(ForwardReply::Members { cluster_id, .. }) => {
                        self.inner.cluster_id.store(cluster_id, Ordering::Release);
                        let running = self.running()?;
                        let id = Identity { cluster_id, ..identity.clone() };
                        datadir::save_identity(&running.db, &running.identity_ks, &id)?;
                        return Ok(());
                    }
                    Ok(_) => return Err(Error::internal("unexpected join reply")),
                    Err(e @ (Error::ClusterMismatch { .. } | Error::PeerAddrExists)) => return Err(e),
                    Err(e) => {
                        tracing::debug!(peer = %addr, error = %e, "join attempt failed");
                        last_err = e;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(match last_err {
            Error::Transport(e) => Error::Transport(format!("no member reachable to join: {e}")),
            e => e,
        })
    }

    /// A restarted node asked to join through `peers` checks that they belong to its own
    /// cluster, and refuses to start otherwise (its data is not touched). Unreachable
    /// peers are no error: the node rejoins with its persisted identity.
    pub(super) async fn verify_cluster(&self, peers: &[String]) -> Result<()> {
        for addr in peers {
            match self.send_forward(addr, &ForwardRequest::Ping, Duration::from_secs(2)).await.map_err(Error::from) {
                Err(e @ Error::ClusterMismatch { .. }) => return Err(e),
                Ok(ForwardReply::Members { cluster_id, .. }) if cluster_id != 0 && cluster_id != self.cluster_id() => {
                    return Err(Error::ClusterMismatch { local: self.cluster_id(), remote: cluster_id });
                }
                Ok(_) => return Ok(()),
                Err(e) => tracing::debug!(peer = %addr, error = %e, "cannot check the cluster id"),
            }
        }
        Ok(())
    }

    /// Publishes this node's current addresses (a changed peer address, client addresses
    /// not in the membership yet) once the node knows the membership, in the background.
    /// Nothing is sent when the membership already has them.
    pub(super) fn spawn_address_update(&self, identity: Identity) {
        let node = self.clone();
        let task = tokio::spawn(async move {
            let req = ForwardRequest::UpdateAddrs { id: node.inner.member_id, addrs: node.addrs() };
            loop {
                if !node.is_running() {
                    return;
                }
                // The leader's view: a node's own may be a bootstrap proposal that lost.
                let listed = match node.to_leader(ForwardRequest::Ping, Duration::from_secs(10)).await {
                    Ok(ForwardReply::Members { members, .. }) => members
                        .into_iter()
                        .find(|m| m.id == node.inner.member_id)
                        .map(|m| MemberAddrs { name: m.name, peer_addrs: m.peer_addrs, client_addrs: m.client_addrs }),
                    _ => None,
                };
                match listed {
                    Some(addrs) if addrs == node.addrs() => return,
                    Some(_) => {}
                    // Not a member yet (a static bootstrap still forming): wait for it.
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                match node.to_any_member(req.clone(), Duration::from_secs(10)).await {
                    Ok(_) => {
                        tracing::info!(addr = %node.inner.config.peer_addr, "addresses updated in the membership");
                        if let Ok(running) = node.running() {
                            let id = Identity { peer_addr: node.inner.config.peer_addr.clone(), ..identity.clone() };
                            let _ = datadir::save_identity(&running.db, &running.identity_ks, &id);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot update the addresses yet; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        self.inner.chores.lock().expect("chores lock").push(task);
    }

    /// Adds a member before it starts (etcd `MemberAdd`): a voter at once (as in etcd,
    /// the cluster's quorum then counts it), or a learner with `learner`, to be promoted
    /// with [`Node::promote_member`]. The new node then starts with
    /// [`Bootstrap::Join`](crate::Bootstrap::Join) and the same name and peer address.
    /// Normally a new node simply joins; this is for etcd's add-then-start workflow.
    pub async fn add_member(&self, name: &str, peer_addr: &str, learner: bool) -> Result<Member> {
        let id = datadir::member_id_of(name, peer_addr, &self.inner.config.cluster_token);
        let addrs = MemberAddrs { name: name.into(), peer_addrs: vec![peer_addr.into()], client_addrs: vec![] };
        let req = ForwardRequest::Register { id, addrs: addrs.clone(), learner };
        let timeout = self.inner.config.request_timeout();
        self.on_runtime(move |n| async move {
            n.to_leader(req, timeout).await?;
            n.await_member_table(|m| m.contains_key(&id)).await;
            Ok(())
        })
        .await?;
        Ok(Member::from_addrs(id, &addrs, learner))
    }

    /// Removes a member (etcd `MemberRemove`).
    pub async fn remove_member(&self, id: u64) -> Result<()> {
        let timeout = self.inner.config.request_timeout();
        self.on_runtime(move |n| async move {
            n.to_leader(ForwardRequest::Remove { id }, timeout).await?;
            n.await_member_table(|m| !m.contains_key(&id)).await;
            Ok(())
        })
        .await
    }

    /// Promotes a learner to voter (etcd `MemberPromote`).
    pub async fn promote_member(&self, id: u64) -> Result<()> {
        let timeout = self.inner.config.request_timeout();
        self.on_runtime(move |n| async move {
            n.to_leader(ForwardRequest::Promote { id }, timeout).await?;
            n.await_member_table(|m| m.get(&id).is_some_and(|(_, voter)| *voter)).await;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request a node does not know (one added after its version: here, a variant index
    /// past the last) is refused with the error a sender recognises to fall back on.
    #[test]
    fn an_unknown_request_is_recognisably_undecodable() {
        let unknown = [200u8, 1, 2, 3];
        let e = decode_request(&unknown).unwrap_err();
        assert!(is_undecodable_request(&e), "{e:?}");
        let known = encode(&ForwardRequest::VouchedReadIndex { voter: 7 });
        assert!(matches!(decode_request(&known), Ok(ForwardRequest::VouchedReadIndex { voter: 7 })));
        assert!(!is_undecodable_request(&Error::NoLeader));
        assert!(!is_undecodable_request(&Error::Storage("disk full".into())));
    }
}
