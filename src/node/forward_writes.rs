//! A follower's write forwarding: concurrent writes reach the leader in one request.
//!
//! The writes gather in the same `WriteQueue` the leader's proposer uses (`propose.rs`):
//! the first write to find the queue empty yields once, so the tasks that are ready now
//! can queue theirs, then everything queued goes as one [`ForwardRequest::WriteBatch`]
//! (split as the proposer splits entries, so one batch fits one entry), from a task of
//! its own so no caller's cancellation can lose another caller's answer. An idle follower forwards
//! each write alone, at once; a busy one pays one peer round trip per batch, not per
//! write (etcd's followers likewise pipeline proposals to the leader).
//!
//! Outcomes are those of forwarding each write alone: a leader that no longer leads
//! proposed nothing, and the batch is sent again to the new leader; a batch whose answer
//! was lost on the way fails every write in it with `Timeout` (each may have committed).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::forward::{ForwardReply, ForwardRequest};
use super::propose::{Answer, Pending};
use super::Node;
use crate::error::{Error, Result};
use crate::mvcc::WriteCommand;
use crate::raft::{Request, Response};

impl Node {
    /// Forwards `cmd` (`size_bytes` encoded) to the leader together with the writes
    /// queued alongside it, and waits for the state machine's answer.
    pub(super) async fn forward_write(&self, cmd: WriteCommand, size_bytes: usize, timeout: Duration) -> Answer {
        self.inner.forward_stats.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.forwarder.submit(cmd, size_bytes, |batch| send_batch(self.clone(), batch, timeout)).await
    }

    /// Sends one write to the leader (or proposes it here when this node leads).
    pub(super) async fn write_via_leader(&self, cmd: WriteCommand, timeout: Duration) -> Answer {
        match self.to_leader(ForwardRequest::Write(Request::Kv(cmd)), timeout).await? {
            ForwardReply::Write(Response::Kv(result)) => Ok(result),
            other => Err(Error::internal(format!("unexpected reply to a write: {other:?}"))),
        }
    }
}

async fn send_batch(node: Node, mut batch: Vec<Pending>, timeout: Duration) {
    node.inner.forward_stats.write_batches.fetch_add(1, Ordering::Relaxed);
    if batch.len() == 1 {
        let p = batch.pop().expect("one write");
        let _ = p.reply.send(node.write_via_leader(p.cmd, timeout).await);
        return;
    }
    let (cmds, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    match node.to_leader(ForwardRequest::WriteBatch(cmds), timeout).await {
        Ok(ForwardReply::WriteBatch(answers)) if answers.len() == replies.len() => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        Ok(other) => {
            let e = Error::internal(format!("unexpected reply to a write batch: {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// The leader's side of a [`ForwardRequest::WriteBatch`]: every write goes to the
/// proposer at once (so they share entries). When none was proposed because this node
/// does not lead, the batch as a whole fails with `NotLeader`, and the follower sends it
/// to the new leader.
pub(super) async fn propose_forwarded(node: &Node, cmds: Vec<WriteCommand>) -> Result<ForwardReply> {
    let proposer = node.running()?.proposer.clone();
    let answers: Vec<Answer> = futures::future::join_all(cmds.into_iter().map(|c| proposer.propose(c))).await;
    if let Some(Err(Error::NotLeader { leader })) = answers.first() {
        if answers.iter().all(|a| matches!(a, Err(Error::NotLeader { .. }))) {
            return Err(Error::NotLeader { leader: *leader });
        }
    }
    Ok(ForwardReply::WriteBatch(answers))
}
