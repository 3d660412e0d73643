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

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::errors::{LinearizableReadError, RaftError};
use openraft::ReadPolicy;
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

    /// A failed round fails every read it serves; the next read starts a fresh round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_round_fails_its_reads_only() {
        let batcher = Arc::new(ReadIndexBatcher::default());
        let fail = || async { Err::<u64, _>(Error::NoLeader) };
        assert!(matches!(batcher.read_index(fail).await, Err(Error::NoLeader)));
        assert_eq!(batcher.read_index(|| async { Ok(7) }).await.unwrap(), 7);
    }
}
