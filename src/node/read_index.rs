//! Read-index batching: concurrent linearizable reads share one leadership confirmation.
//!
//! A read may use a read index only if the leadership round that produced it started
//! after the read arrived. Requests that arrive while a round is in flight wait for the
//! next round, which one task runs for all of them; so under load one round serves every
//! read that queued during the previous one.
//!
//! Every node has two batchers (etcd batches the same way on every member):
//! - on the leader, a round is one heartbeat round confirming its leadership
//!   ([`leader_round`]);
//! - on a follower, a round is one read-index request forwarded to the leader, so a
//!   follower serving many concurrent reads sends the leader one request per round,
//!   not one per read. The leader's round starts after it receives that request, hence
//!   after every read the request answers arrived: the rule above still holds.
//!
//! # A follower vouches for the leader ([`vouched_read_index`])
//!
//! A leadership round proves that a quorum of the leader's configuration was still in
//! the leader's term after the read arrived, so no newer leader (which needs a quorum's
//! votes) can have committed writes the read index misses. When the follower asking for
//! a read index and the leader together make a quorum of every configuration of the
//! leader's committed membership (a 3-voter cluster: any voter follower), the follower's
//! own vote is that proof, and the leader needs no heartbeat round:
//!
//! 1. the follower asks the leader for a vouched read index;
//! 2. the leader, still leading, answers with its read index (the later of its commit
//!    index and its term's first entry) and its leader id (term and node);
//! 3. after the answer arrives, the follower asks its own Raft core for its vote. If that
//!    is still the committed vote for the same leader id, it uses the index; otherwise it
//!    asks again with a full round.
//!
//! Votes only ever grow, so a follower whose vote is (T, L) after step 2 had voted for
//! nobody in a later term when the leader answered; with the leader in term T then as
//! well, the pair made sure no leader of a later term existed when the index was taken,
//! exactly as acknowledgements of a heartbeat round from that pair would have. The
//! leader checks the pair against its membership as its metrics show it, only when that
//! membership is committed; the metrics may lag a change the leader has just begun, but
//! voters change only through a joint configuration, every quorum of which includes a
//! quorum of the configuration before it, so the pair still meets every new quorum.
//!
//! It saves the leader a heartbeat round (two peer calls through three Raft cores) for
//! each of a follower's read-index rounds; other cluster shapes, and learners, take the
//! full round.
//!
//! The leader's own rounds use the same proof the other way round: the leader takes its
//! read index, then asks one follower that can vouch ([`voucher`]) whether it still holds
//! the committed vote for this leader id (one peer call and one Raft-core query there,
//! instead of heartbeats to every follower and their acknowledgements through three
//! cores). The request names the follower asked, and any other node that receives it
//! (the leader's address table was stale) says no. A "no", or no answer within a
//! heartbeat interval, falls back to a heartbeat round, and no follower is asked again
//! for a second.
//!
//! Neither side waits inside openraft for a quorum acknowledgement: a leader that no
//! quorum has acknowledged within its leader lease answers with the full round, which is
//! bounded by the request timeout. A node of an older version, which cannot decode a
//! vouched request, is asked the old way.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::errors::{LinearizableReadError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{LinearizerOption, ReadPolicy};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::raft::Raft;

type Waiter = oneshot::Sender<Result<u64>>;

#[derive(Default)]
struct State {
    round_running: bool,
    waiting: Vec<Waiter>,
}

/// Coalesces concurrent read-index requests into rounds (see the module docs).
#[derive(Default)]
pub(crate) struct ReadIndexBatcher {
    state: Mutex<State>,
}

impl ReadIndexBatcher {
    /// The log index a linearizable read must wait for, from a round that started after
    /// this call. `round` runs one round; when a round task is already running, it
    /// serves this call with the `round` it was started with (every caller of one
    /// batcher passes an equivalent one).
    pub async fn read_index<R, F>(self: &Arc<Self>, round: R) -> Result<u64>
    where
        R: Fn() -> F + Send + 'static,
        F: Future<Output = Result<u64>> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start_round = {
            let mut s = self.state.lock().expect("read index state");
            s.waiting.push(tx);
            !std::mem::replace(&mut s.round_running, true)
        };
        if start_round {
            let me = self.clone();
            tokio::spawn(async move { me.run_rounds(round).await });
        }
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Runs rounds until nobody waits.
    async fn run_rounds<R, F>(&self, round: R)
    where
        R: Fn() -> F,
        F: Future<Output = Result<u64>>,
    {
        loop {
            let batch = {
                let mut s = self.state.lock().expect("read index state");
                if s.waiting.is_empty() {
                    s.round_running = false;
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            let result = round().await;
            for w in batch {
                let _ = w.send(result.clone());
            }
        }
    }
}

/// The leader's round: a heartbeat round that confirms `raft` still leads; its answer
/// is the read index. It fails with `Timeout` after `timeout`, so a read that waits on a
/// batcher of leader rounds waits at most two rounds and needs no timer of its own.
///
/// A round that a quorum does not acknowledge in time (Raft's `QuorumNotEnough`) is
/// retried until `timeout`: right after an election or a restart the followers'
/// connections may still be coming up, and a leader that is still the leader a moment
/// later must not fail a read for that. A lost leadership ends the round with `NotLeader`.
pub(crate) async fn leader_round(raft: Raft, timeout: Duration) -> Result<u64> {
    let confirm = async {
        loop {
            match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
                Ok(lin) => return Ok(lin.read_log_id().index()),
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                    return Err(Error::NotLeader { leader: f.leader_id })
                }
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
                    tracing::debug!(error = %e, "leadership not confirmed yet; trying again");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(RaftError::Fatal(f)) => return Err(Error::Fatal(f.to_string())),
            }
        }
    };
    tokio::time::timeout(timeout, confirm).await.map_err(|_| Error::Timeout)?
}

/// A read index a follower vouches for (see the module docs): the index and the leader
/// id (term, node) it was taken under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Vouched {
    pub index: u64,
    pub term: u64,
    pub leader: u64,
}

/// Whether the leader `a` and the voter `b` together are a quorum (a strict majority) of
/// every configuration of a (possibly joint) membership; `b` must be a voter of each
/// (a learner's vote counts for nothing).
pub(crate) fn pair_is_quorum(joint: &[BTreeSet<u64>], a: u64, b: u64) -> bool {
    a != b
        && !joint.is_empty()
        && joint.iter().all(|voters| voters.contains(&b) && 2 * (1 + usize::from(voters.contains(&a))) > voters.len())
}

/// Whether `voter` can vouch for the leader `me` (see the module docs): `me`'s membership,
/// as its metrics show it, is committed, and the two are a quorum of its every
/// configuration.
fn can_vouch(m: &openraft::RaftMetrics<crate::raft::TypeConfig>, me: u64, voter: u64) -> bool {
    m.membership_config.log_id() == m.committed_membership_config.log_id()
        && pair_is_quorum(m.membership_config.membership().get_joint_config(), me, voter)
}

/// The leader's side of a vouched read index for the follower `voter`: `Ok(None)` when
/// that follower cannot vouch ([`can_vouch`]), or [`read_index_at_once`] has none; the
/// caller then runs a full round. Fails with `NotLeader` when this node does not lead.
pub(crate) async fn vouched_read_index(raft: &Raft, me: u64, voter: u64) -> Result<Option<Vouched>> {
    if !can_vouch(&raft.metrics().borrow_watched(), me, voter) {
        return Ok(None);
    }
    read_index_at_once(raft).await
}

/// This leader's read index and leader id, taken now, for a follower to vouch for.
///
/// openraft answers at once; `None` when no quorum has acknowledged this leader within its
/// leader lease (a follower's vote could still prove it, but a leader that has lost touch
/// with its quorum is better served by the full round, which is bounded by the request
/// timeout). The answer's safety rests on the follower's check of its vote, not on that
/// lease. Fails with `NotLeader` when this node does not lead.
pub(crate) async fn read_index_at_once(raft: &Raft) -> Result<Option<Vouched>> {
    let at_once = LinearizerOption::new(None, false).with_wait_timeout(Duration::ZERO);
    match raft.get_read_linearizer(at_once).await {
        Ok(lin) => {
            let log_id = lin.read_log_id();
            let leader = log_id.committed_leader_id();
            Ok(Some(Vouched { index: log_id.index(), term: leader.term, leader: leader.node_id }))
        }
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
            Err(Error::NotLeader { leader: f.leader_id })
        }
        Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => Ok(None),
        Err(RaftError::Fatal(f)) => Err(Error::Fatal(f.to_string())),
    }
}

/// The follower the leader `me` asks to vouch for its own rounds (see the module docs):
/// of the voters that [`can_vouch`], the one whose replication has reached furthest (most
/// likely up and near). `None` when there is none.
pub(crate) fn voucher(raft: &Raft, me: u64) -> Option<u64> {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let matched = |id: &u64| m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index);
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| can_vouch(&m, me, *id))
        .max_by_key(|id| (matched(id), std::cmp::Reverse(*id)))
}

/// Whether this node's vote, asked of its Raft core now, is the committed vote for the
/// leader `leader` of term `term`.
pub(crate) async fn votes_for(raft: &Raft, term: u64, leader: u64) -> Result<bool> {
    let vote = raft.with_raft_state(|st| *st.vote_ref()).await.map_err(|f| Error::Fatal(f.to_string()))?;
    let id = vote.leader_id();
    Ok(vote.is_committed() && id.term == term && id.node_id == leader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Reads that arrive during a round wait for the next one, and one round answers
    /// all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_arriving_during_a_round_share_the_next_round() {
        let batcher = Arc::new(ReadIndexBatcher::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let round = {
            let rounds = rounds.clone();
            move || {
                let rounds = rounds.clone();
                async move {
                    let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(n * 100)
                }
            }
        };
        let first = tokio::spawn({
            let (b, r) = (batcher.clone(), round.clone());
            async move { b.read_index(r).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await; // round 1 is running
        let later: Vec<_> = (0..20)
            .map(|_| {
                let (b, r) = (batcher.clone(), round.clone());
                tokio::spawn(async move { b.read_index(r).await })
            })
            .collect();
        assert_eq!(first.await.unwrap().unwrap(), 100);
        for h in later {
            // Not round 1's answer: that round started before these reads arrived.
            assert_eq!(h.await.unwrap().unwrap(), 200);
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }

    /// Which follower can vouch for its leader: the pair must hold a strict majority of
    /// every configuration, joint ones included.
    #[test]
    fn a_pair_vouches_only_as_a_quorum_of_every_configuration() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        let three = [set(&[1, 2, 3])];
        assert!(pair_is_quorum(&three, 1, 2));
        assert!(pair_is_quorum(&three, 3, 1));
        assert!(!pair_is_quorum(&three, 1, 4), "a learner (no voter) does not vouch");
        assert!(!pair_is_quorum(&three, 2, 2), "a node does not vouch for itself");
        assert!(pair_is_quorum(&[set(&[1, 2])], 1, 2));
        assert!(!pair_is_quorum(&[set(&[1])], 1, 2));
        assert!(!pair_is_quorum(&[set(&[1, 2, 3, 4])], 1, 2), "two of four is no majority");
        assert!(!pair_is_quorum(&[set(&[1, 2, 3, 4, 5])], 1, 2));
        // Joint: {1,2,3} -> {1,2,4,5}: a majority of the first, not of the second.
        assert!(!pair_is_quorum(&[set(&[1, 2, 3]), set(&[1, 2, 4, 5])], 1, 2));
        // Joint: {1,2,3} -> {1,2}: a majority of both.
        assert!(pair_is_quorum(&[set(&[1, 2, 3]), set(&[1, 2])], 1, 2));
        assert!(!pair_is_quorum(&[], 1, 2));
    }

    /// The vote check that makes a vouched read index safe, on a real 3-node cluster: a
    /// follower vouches for the leader that answered while its vote is that leader's, and
    /// refuses once its vote has moved to a later term's leader; a leader never vouches
    /// for itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_vouches_only_while_its_vote_is_the_leaders() {
        use crate::node::{Bootstrap, Node, NodeConfig};
        let dir = tempfile::tempdir().unwrap();
        let addr = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("127.0.0.1:{}", l.local_addr().unwrap().port())
        };
        let members: Vec<(String, String)> = (1..=3).map(|i| (format!("v{i}"), addr())).collect();
        let starts = members.iter().map(|(name, peer)| {
            let mut c = NodeConfig::new(name.clone(), dir.path().join(name), peer.clone())
                .bootstrap(Bootstrap::InitialCluster(members.clone()));
            c.heartbeat_interval_ms = 50;
            c.election_timeout_ms = 300;
            Node::start(c)
        });
        let nodes: Vec<Node> = futures::future::join_all(starts).await.into_iter().map(|r| r.unwrap()).collect();
        let leader_of = |nodes: &[Node]| {
            let l = nodes[0].leader()?;
            nodes.iter().all(|n| n.leader() == Some(l)).then_some(l)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let leader = loop {
            if let Some(l) = leader_of(&nodes) {
                break l;
            }
            assert!(std::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        nodes[0].put(crate::mvcc::PutRequest::new("k", "v")).await.unwrap();
        let raft = |n: &Node| n.running().unwrap().raft.clone();
        // A leader answers `None` until a quorum has acknowledged it (just elected).
        async fn vouched_soon(leader: &Raft, me: u64, voter: u64) -> Vouched {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(v) = vouched_read_index(leader, me, voter).await.unwrap() {
                    return v;
                }
                assert!(std::time::Instant::now() < deadline, "the leader never answered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        async fn v_term(r: &Raft) -> u64 {
            r.with_raft_state(|st| st.vote_ref().leader_id().term).await.unwrap()
        }
        let l = nodes.iter().find(|n| n.id() == leader).unwrap();
        let mut others = nodes.iter().filter(|n| n.id() != leader);
        let (f, g) = (others.next().unwrap(), others.next().unwrap());

        let chosen = voucher(&raft(l), l.id()).expect("a 3-voter leader has a voucher");
        assert!(chosen == f.id() || chosen == g.id(), "the voucher is a follower, not {chosen}");
        assert!(votes_for(&raft(f), v_term(&raft(l)).await, leader).await.unwrap());
        let v = vouched_soon(&raft(l), l.id(), f.id()).await;
        assert_eq!(v.leader, leader);
        assert!(v.index >= l.applied_index(), "the index covers what the leader applied");
        assert!(votes_for(&raft(f), v.term, v.leader).await.unwrap(), "the follower's vote is the leader's");
        // Asked as the voucher it is, f says yes; asked for another member (a stale
        // address), it says no.
        use crate::node::forward::ForwardReply;
        assert!(matches!(f.vouch(f.id(), v.term, v.leader).await, Ok(ForwardReply::Vouches(true))));
        assert!(matches!(f.vouch(g.id(), v.term, v.leader).await, Ok(ForwardReply::Vouches(false))));
        assert!(vouched_read_index(&raft(l), l.id(), l.id()).await.unwrap().is_none(), "no vouching for oneself");
        let from_follower = vouched_read_index(&raft(f), f.id(), g.id()).await;
        assert!(!matches!(from_follower, Ok(Some(_))), "a follower answered as leader: {from_follower:?}");

        // Leadership moves to g in a later term; f's vote follows, and the old answer
        // is no longer vouched for.
        l.move_leader(g.id()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while f.leader() != Some(g.id()) {
            assert!(std::time::Instant::now() < deadline, "f never followed g");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !votes_for(&raft(f), v.term, v.leader).await.unwrap(),
            "a vote for a later leader refuses the old index"
        );
        let v2 = vouched_soon(&raft(g), g.id(), f.id()).await;
        assert!(v2.term > v.term && v2.leader == g.id());
        assert!(votes_for(&raft(f), v2.term, v2.leader).await.unwrap());
        // The old leader's own rounds: f no longer votes for it.
        assert!(!votes_for(&raft(f), v.term, v.leader).await.unwrap());
        // The new leader's reads are confirmed by a follower's vote, not a heartbeat round.
        let before = g.status().unwrap().vouched_read_rounds;
        g.range(crate::mvcc::RangeRequest::key("k")).await.unwrap();
        assert!(g.status().unwrap().vouched_read_rounds > before, "the leader's read was vouched for");
        for n in &nodes {
            n.stop().await.unwrap();
        }
    }

    /// A failed round fails every read it serves; the next read starts a fresh round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_round_fails_its_reads_only() {
        // One round function for both reads, as every caller of a batcher passes an
        // equivalent one: the second read may be served by the task the first started
        // (with the first's function), so two different functions made this test racy.
        let batcher = Arc::new(ReadIndexBatcher::default());
        let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let round = move || {
            let n = rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(Error::NoLeader)
                } else {
                    Ok(7)
                }
            }
        };
        assert!(matches!(batcher.read_index(round.clone()).await, Err(Error::NoLeader)));
        assert_eq!(batcher.read_index(round).await.unwrap(), 7, "a fresh round, not the failed one's answer");
    }
}
