//! Requests that arrive right after a restart, before the node's own view of the leader
//! (mirrored from Raft's metrics by a background task) has caught up with Raft.
//!
//! Regression: such a request found no leader in the mirror and waited for a leader
//! change on Raft's metrics, which already named this node, so the wait returned at once
//! and the request looped without ever yielding. Two such requests kept both workers of
//! the library runtime busy, so the mirroring task (and Raft's own tick) never ran: the
//! requests failed with `NoLeader`/`Timeout` after the request timeout although the node
//! led all along.

mod common;
use common::*;
use quorumkv::{Node, PutRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_right_after_restart_find_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = single_config(dir.path(), "again");
    // A failure takes the whole request timeout; keep it short (a healthy round takes ms).
    cfg.request_timeout_ms = 2_000;
    for round in 0..25 {
        let n = Node::start(cfg.clone()).await.unwrap();
        // Several concurrent requests at once, before the node has settled: more than the
        // library runtime has workers.
        let barriers: Vec<_> = (0..3)
            .map(|_| {
                let n = n.clone();
                tokio::spawn(async move { n.read_barrier().await })
            })
            .collect();
        let put = n.put(PutRequest::new(format!("round{round}"), "x")).await;
        let mut barrier_results = Vec::new();
        for b in barriers {
            barrier_results.push(b.await.unwrap());
        }
        if put.is_err() || barrier_results.iter().any(|b| b.is_err()) {
            let s = n.status().unwrap();
            panic!(
                "round {round}: put {put:?}, barriers {barrier_results:?}; status: leader {:?}, is_leader {}, \
                 term {}, commit {}, applied {}, last log {}; node.leader() {:?}",
                s.leader,
                s.is_leader,
                s.term,
                s.commit_index,
                s.applied_index,
                s.last_log_index,
                n.leader()
            );
        }
        n.stop().await.unwrap();
    }
}
