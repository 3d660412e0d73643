//! A follower's write forwarding: concurrent writes reach the leader in one request.
//!
//! Like the leader's proposer (see `propose.rs`), with no task of its own: the first
//! write to find the queue empty yields once, so the tasks that are ready now can queue
//! theirs, then sends everything queued as one [`ForwardRequest::WriteBatch`] (split as
//! the proposer splits entries, so one batch fits one entry), from a task of its own so
//! no caller's cancellation can lose another caller's answer. An idle follower forwards
//! each write alone, at once; a busy one pays one peer round trip per batch, not per
//! write (etcd's followers likewise pipeline proposals to the leader).
//!
//! Outcomes are those of forwarding each write alone: a leader that no longer leads
//! proposed nothing, and the batch is sent again to the new leader; a batch whose answer
//! was lost on the way fails every write in it with `Timeout` (each may have committed).

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use super::forward::{ForwardReply, ForwardRequest};
use super::propose::split_by;
use super::Node;
use crate::error::{Error, Result};
use crate::mvcc::{WriteCommand, WriteResponse};
use crate::raft::{Request, Response};

/// A write's answer: the outer error is the forwarding's, the inner one the command's.
type Answer = Result<Result<WriteResponse>>;

struct Pending {
    cmd: WriteCommand,
    size_bytes: usize,
    reply: oneshot::Sender<Answer>,
}

/// Writes waiting to be forwarded together (see the module docs).
#[derive(Default)]
pub(crate) struct WriteForwarder {
    queue: Mutex<Vec<Pending>>,
}

impl Node {
    /// Forwards `cmd` (`size_bytes` encoded) to the leader together with the writes
    /// queued alongside it, and waits for the state machine's answer.
    pub(super) async fn forward_write(&self, cmd: WriteCommand, size_bytes: usize, timeout: Duration) -> Answer {
        self.inner.forward_stats.writes.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let leads = {
            let mut queue = self.inner.forwarder.queue.lock().expect("forwarder lock");
            queue.push(Pending { cmd, size_bytes, reply });
            queue.len() == 1
        };
        if leads {
            // Sends the queue even if this future is dropped while it yields.
            let guard = Flush { node: self, timeout };
            tokio::task::yield_now().await;
            drop(guard);
        }
        rx.await.map_err(|_| Error::Stopped)?
    }
}

/// Sends the forwarder's queue when dropped.
struct Flush<'a> {
    node: &'a Node,
    timeout: Duration,
}

impl Drop for Flush<'_> {
    fn drop(&mut self) {
        let queued = std::mem::take(&mut *self.node.inner.forwarder.queue.lock().expect("forwarder lock"));
        if queued.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // dropped outside any runtime: the node is going away
        };
        for batch in split_by(queued, |p| p.size_bytes) {
            rt.spawn(send_batch(self.node.clone(), batch, self.timeout));
        }
    }
}

async fn send_batch(node: Node, mut batch: Vec<Pending>, timeout: Duration) {
    node.inner.forward_stats.write_batches.fetch_add(1, Ordering::Relaxed);
    if batch.len() == 1 {
        let p = batch.pop().expect("one write");
        let answer = match node.to_leader(ForwardRequest::Write(Request::Kv(p.cmd)), timeout).await {
            Ok(ForwardReply::Write(Response::Kv(result))) => Ok(result),
            Ok(other) => Err(Error::internal(format!("unexpected reply to a write: {other:?}"))),
            Err(e) => Err(e),
        };
        let _ = p.reply.send(answer);
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
