//! The leader's proposer: concurrent writes are gathered into one Raft entry.
//!
//! Every write the leader proposes (its own, and those forwarded by followers) goes
//! through one queue, and whatever has queued up is proposed as one entry
//! ([`Request::Batch`]) without waiting for the previous entry to commit. An idle leader
//! therefore proposes each write alone, at once; a busy one pays Raft's per-entry costs
//! (log append and its fsync, replication framing, responders) once per batch.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::forward::write_error;
use crate::error::{Error, Result};
use crate::mvcc::{WriteCommand, WriteResponse};
use crate::raft::{Raft, Request, Response};

/// Most writes in one entry.
const BATCH_WRITES_MAX: usize = 256;
/// Most encoded bytes in one entry (a larger single write still goes alone).
const BATCH_BYTES_MAX: usize = 1 << 20;

/// A queued write and where its answer goes.
pub(super) struct Pending {
    pub cmd: WriteCommand,
    pub size_bytes: usize,
    pub reply: oneshot::Sender<Answer>,
}

/// A write's answer: the outer error is Raft's or the forwarding's (`NotLeader`: nothing
/// was proposed; `Fatal`, `Stopped`, `Timeout`), the inner one the command's own.
pub(super) type Answer = Result<Result<WriteResponse>>;

/// Concurrent writes gathered to go out together: the leader's proposer queues them for
/// Raft entries, a follower for requests to the leader (`forward_writes.rs`).
///
/// No task of its own: the first write to find the queue empty leads the next batch.
/// It lets the tasks that are ready right now (typically writers just woken by the
/// previous commit) queue their writes, then hands everything queued on; writes
/// arriving after that find the queue empty again and lead the next batch, so batches
/// stay pipelined.
#[derive(Default)]
pub(super) struct WriteQueue {
    queue: Mutex<Vec<Pending>>,
}

impl WriteQueue {
    /// Queues `cmd` (`size_bytes` encoded) and waits for its answer. The leader of a
    /// batch yields once, then hands everything queued to `send` in batches of at most
    /// `BATCH_WRITES_MAX` writes and about `BATCH_BYTES_MAX` bytes, each sent by a task
    /// of its own (so no caller's cancellation can lose another caller's answer).
    pub async fn submit<S, F>(&self, cmd: WriteCommand, size_bytes: usize, send: S) -> Answer
    where
        S: Fn(Vec<Pending>) -> F + Sync,
        F: Future<Output = ()> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let leads = {
            let mut queue = self.queue.lock().expect("write queue lock");
            queue.push(Pending { cmd, size_bytes, reply });
            queue.len() == 1
        };
        if leads {
            let send_all = |queued: Vec<Pending>| {
                let Ok(rt) = tokio::runtime::Handle::try_current() else {
                    return; // dropped outside any runtime: the node is going away
                };
                for batch in split(queued) {
                    rt.spawn(send(batch));
                }
            };
            // Sends the queue even if this future is dropped while it yields.
            let guard = Flush { queue: self, send_all: &send_all };
            // Costs nothing on an idle node: no other task is ready.
            tokio::task::yield_now().await;
            drop(guard);
        }
        rx.await.map_err(|_| Error::Stopped)?
    }
}

/// Sends the queue when dropped.
struct Flush<'a> {
    queue: &'a WriteQueue,
    send_all: &'a (dyn Fn(Vec<Pending>) + Sync),
}

impl Drop for Flush<'_> {
    fn drop(&mut self) {
        let queued = std::mem::take(&mut *self.queue.queue.lock().expect("write queue lock"));
        if !queued.is_empty() {
            (self.send_all)(queued);
        }
    }
}

/// Gathers a node's concurrent writes into Raft entries (see the module docs and
/// [`WriteQueue`]).
pub(crate) struct Proposer {
    raft: Raft,
    queue: WriteQueue,
}

impl Proposer {
    pub fn new(raft: Raft) -> Self {
        Proposer { raft, queue: WriteQueue::default() }
    }

    /// Proposes `cmd` and waits for the state machine's answer (see [`Answer`]).
    pub async fn propose(&self, cmd: WriteCommand) -> Answer {
        let size_bytes = postcard::experimental::serialized_size(&cmd).map_err(Error::internal)?;
        self.queue.submit(cmd, size_bytes, |batch| propose_batch(self.raft.clone(), batch)).await
    }
}

/// Splits queued writes into batches of at most `BATCH_WRITES_MAX` writes and about
/// `BATCH_BYTES_MAX` bytes (never empty; a large write goes alone), so one batch fits
/// one entry.
fn split(queued: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut out: Vec<Vec<Pending>> = vec![Vec::new()];
    let mut bytes = 0;
    for p in queued {
        let last = out.last_mut().expect("never empty");
        if !last.is_empty() && (last.len() >= BATCH_WRITES_MAX || bytes + p.size_bytes > BATCH_BYTES_MAX) {
            bytes = 0;
            out.push(Vec::new());
        }
        bytes += p.size_bytes;
        out.last_mut().expect("never empty").push(p);
    }
    out
}

async fn propose_batch(raft: Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one write");
        let result = match raft.client_write(Request::Kv(p.cmd)).await {
            Ok(resp) => match resp.data {
                Response::Kv(r) => Ok(r),
                other => Err(Error::internal(format!("unexpected answer to a write: {other:?}"))),
            },
            Err(e) => Err(write_error(e)),
        };
        let _ = p.reply.send(result);
        return;
    }
    let (cmds, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    match raft.client_write(Request::Batch(cmds)).await {
        Ok(resp) => match resp.data {
            Response::Batch(results) if results.len() == replies.len() => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            other => {
                let e = Error::internal(format!("unexpected answer to a batch: {other:?}"));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        },
        Err(e) => {
            let e = write_error(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::PutRequest;

    fn pending(size_bytes: usize) -> Pending {
        let (reply, _) = oneshot::channel();
        Pending { cmd: WriteCommand::Put(PutRequest::new("k", "v")), size_bytes, reply }
    }

    /// A `send` that answers each write of a batch with "<batch size> writes from task
    /// <id of the task that sent it>".
    async fn tagging_send(batch: Vec<Pending>) {
        let tag = format!("{} writes from task {:?}", batch.len(), tokio::task::try_id());
        for p in batch {
            let _ = p.reply.send(Ok(Err(Error::Internal(tag.clone()))));
        }
    }

    fn tag_of(answer: Answer) -> String {
        match answer {
            Ok(Err(Error::Internal(tag))) => tag,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn put() -> WriteCommand {
        WriteCommand::Put(PutRequest::new("k", "v"))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_write_goes_alone() {
        let tag = tag_of(WriteQueue::default().submit(put(), 10, tagging_send).await);
        assert!(tag.starts_with("1 writes"), "{tag}");
    }

    /// Writes queued while the first one's task yields go with it, in one batch sent by
    /// a task of its own (no caller's task, whose cancellation would lose the others).
    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_writes_go_as_one_batch_from_a_task_of_its_own() {
        let queue = std::sync::Arc::new(WriteQueue::default());
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let q = queue.clone();
                tokio::spawn(async move { (tag_of(q.submit(put(), 10, tagging_send).await), tokio::task::id()) })
            })
            .collect();
        let mut tags = Vec::new();
        for t in tasks {
            let (tag, own) = t.await.unwrap();
            assert!(!tag.ends_with(&format!("{:?}", Some(own))), "sent from a caller's task: {tag}");
            tags.push(tag);
        }
        assert!(tags.iter().all(|t| t == &tags[0] && t.starts_with("3 writes")), "{tags:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_leader_dropped_while_gathering_still_sends_the_others() {
        let queue = std::sync::Arc::new(WriteQueue::default());
        // The leader queues its write and yields; a second write queues behind it.
        let mut leader = Box::pin(queue.submit(put(), 10, tagging_send));
        assert!(futures::poll!(&mut leader).is_pending());
        let q = queue.clone();
        let other = tokio::spawn(async move { tag_of(q.submit(put(), 10, tagging_send).await) });
        tokio::task::yield_now().await; // the other write queues
        drop(leader);
        let tag = tokio::time::timeout(std::time::Duration::from_secs(5), other).await.unwrap().unwrap();
        assert!(tag.starts_with("2 writes"), "{tag}");
    }

    #[test]
    fn split_respects_write_and_byte_limits() {
        let sizes = |v: &Vec<Vec<Pending>>| v.iter().map(|b| b.len()).collect::<Vec<_>>();
        let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![10], vec![1]),
            (vec![10; 300], vec![256, 44]),
            (vec![BATCH_BYTES_MAX / 2; 5], vec![2, 2, 1]),
            (vec![BATCH_BYTES_MAX * 2, 10, 10], vec![1, 2]), // a large write goes alone
            (vec![10, BATCH_BYTES_MAX * 2], vec![1, 1]),
        ];
        for (input, want) in cases {
            let got = split(input.iter().map(|s| pending(*s)).collect());
            assert_eq!(sizes(&got), want, "sizes {input:?}");
        }
    }
}
