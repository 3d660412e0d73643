//! Read-index batching: concurrent linearizable reads share one leadership confirmation.
//!
//! A read may use a read index only if the leadership round that produced it started
//! after the read arrived. Requests that arrive while a round is in flight wait for the
//! next round, which one task runs for all of them; so under load one heartbeat round
//! serves every read that queued during the previous one.

use std::sync::Mutex;

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

/// Coalesces read-index requests on the leader.
#[derive(Default)]
pub(crate) struct ReadIndexBatcher {
    state: Mutex<State>,
}

impl ReadIndexBatcher {
    /// The log index a linearizable read must wait for, confirmed by a leadership round
    /// that started after this call.
    pub async fn read_index(self: &std::sync::Arc<Self>, raft: &Raft) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        let start_round = {
            let mut s = self.state.lock().expect("read index state");
            s.waiting.push(tx);
            !std::mem::replace(&mut s.round_running, true)
        };
        if start_round {
            let (me, raft) = (self.clone(), raft.clone());
            tokio::spawn(async move { me.run_rounds(raft).await });
        }
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Runs rounds until nobody waits.
    async fn run_rounds(&self, raft: Raft) {
        loop {
            let batch = {
                let mut s = self.state.lock().expect("read index state");
                if s.waiting.is_empty() {
                    s.round_running = false;
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            let result = confirm(&raft).await;
            for w in batch {
                let _ = w.send(result.clone());
            }
        }
    }
}

async fn confirm(raft: &Raft) -> Result<u64> {
    let lin = raft.get_read_linearizer(ReadPolicy::ReadIndex).await.map_err(|e| match e {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => Error::NotLeader { leader: f.leader_id },
        RaftError::APIError(_) => Error::NoLeader,
        RaftError::Fatal(f) => Error::Fatal(f.to_string()),
    })?;
    Ok(lin.read_log_id().index())
}
