//! Watch guarantees on a 3-node cluster plus a learner while the leader is stopped and
//! nodes restart: every watcher, on every node, sees exactly the committed sequence
//! (ordered, no gap, no duplicate), resuming from its last revision + 1 after a restart.
//! Also: a property test of watchers against a model of the committed sequence.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use quorumkv::*;

const WAIT: Duration = Duration::from_secs(10);

/// (revision, key, value, is_put)
type Ev = (i64, Vec<u8>, Vec<u8>, bool);

fn evs(resp: &WatchResponse) -> Vec<Ev> {
    resp.events
        .iter()
        .map(|e| (e.kv.mod_revision, e.kv.key.clone(), e.kv.value.clone(), e.kind == EventType::Put))
        .collect()
}

/// Follows a watcher in the background, appending its events to a shared log and
/// checking that no revision is split over two responses. The task ends on `Stopped`
/// (its node stopped).
fn follow(mut w: Watcher, log: Arc<Mutex<Vec<Ev>>>) -> tokio::task::JoinHandle<Option<Error>> {
    tokio::spawn(async move {
        let mut last_rev = 0;
        while let Some(item) = w.next().await {
            match item {
                Ok(resp) => {
                    if let (Some(first), Some(last)) = (resp.events.first(), resp.events.last()) {
                        assert!(first.kv.mod_revision > last_rev, "revision {last_rev} split over two responses");
                        last_rev = last.kv.mod_revision;
                    }
                    log.lock().unwrap().extend(evs(&resp));
                }
                Err(e) => return Some(e),
            }
        }
        None
    })
}

fn last_rev(log: &Arc<Mutex<Vec<Ev>>>) -> i64 {
    log.lock().unwrap().last().map_or(0, |e| e.0)
}

/// Writes `n` puts through the running nodes in turn, retrying through others; returns
/// the acknowledged (revision, key, value).
async fn write_some(nodes: &[Node], from: usize, n: usize) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let mut acked = Vec::new();
    let mut attempt = 0usize;
    for i in from..from + n {
        loop {
            attempt += 1;
            let running: Vec<&Node> = nodes.iter().filter(|n| n.is_running()).collect();
            let node = running[attempt % running.len()];
            let (k, v) = (format!("c/{}", i % 13), format!("{i}-{attempt}"));
            match node.put(PutRequest::new(k.clone(), v.clone())).await {
                Ok(r) => {
                    acked.push((r.header.revision, k.into_bytes(), v.into_bytes()));
                    break;
                }
                Err(e) => {
                    assert!(e.is_retryable() || e == Error::Stopped, "unexpected error {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_on_every_node_sees_the_committed_sequence_across_leader_kill_and_restarts() {
    let spec = ClusterSpec::new(3);
    let mut nodes = start_cluster(&spec).await;
    let lcfg = NodeConfig { join_as_learner: true, ..single_config(spec.dir.path(), "learner") }
        .bootstrap(Bootstrap::Join(vec![spec.members[0].1.clone()]));
    let learner = Node::start(lcfg).await.unwrap();
    assert!(learner.status().unwrap().is_learner);
    nodes.push(learner);
    let configs: Vec<NodeConfig> = nodes.iter().map(|n| n.config().clone()).collect();

    let logs: Vec<Arc<Mutex<Vec<Ev>>>> = (0..4).map(|_| Arc::default()).collect();
    let mut tasks: Vec<_> = nodes
        .iter()
        .zip(&logs)
        .map(|(n, log)| follow(n.watch(WatchRequest::prefix("c/").from_revision(1)).unwrap(), log.clone()))
        .collect();

    let mut acked = write_some(&nodes, 0, 150).await;
    // Kill the leader mid-stream; its watcher ends with `Stopped`.
    let leader = wait_for_leader(&nodes[..3], WAIT).await;
    let li = leader_index(&nodes, leader);
    let writer = {
        let nodes = nodes.clone();
        tokio::spawn(async move { write_some(&nodes, 150, 150).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // No leadership hand-over: the others must notice the loss and elect a new leader.
    nodes[li].stop_abruptly().await.unwrap();
    let ended = std::mem::replace(&mut tasks[li], tokio::spawn(async { None }));
    assert_eq!(ended.await.unwrap(), Some(Error::Stopped), "the consumer can tell a stop from a cancel");
    acked.extend(writer.await.unwrap());
    // Restart it; its watcher resumes from the last revision it saw + 1.
    nodes[li] = Node::start(configs[li].clone()).await.unwrap();
    let resume = last_rev(&logs[li]) + 1;
    tasks[li] = follow(nodes[li].watch(WatchRequest::prefix("c/").from_revision(resume)).unwrap(), logs[li].clone());
    // Restart a follower and the learner too, while writes go on.
    let writer = {
        let nodes = nodes.clone();
        tokio::spawn(async move { write_some(&nodes, 300, 150).await })
    };
    for i in [(li + 1) % 3, 3] {
        nodes[i].stop().await.unwrap();
        assert_eq!(std::mem::replace(&mut tasks[i], tokio::spawn(async { None })).await.unwrap(), Some(Error::Stopped));
        nodes[i] = Node::start(configs[i].clone()).await.unwrap();
        let resume = last_rev(&logs[i]) + 1;
        tasks[i] = follow(nodes[i].watch(WatchRequest::prefix("c/").from_revision(resume)).unwrap(), logs[i].clone());
    }
    acked.extend(writer.await.unwrap());

    // The reference: the committed history, replayed on one node.
    let final_rev = acked.iter().map(|a| a.0).max().unwrap();
    eventually("every watcher reached the last revision", Duration::from_secs(20), || {
        logs.iter().all(|l| last_rev(l) >= final_rev)
    })
    .await;
    let reference = Arc::new(Mutex::new(Vec::new()));
    let t = follow(nodes[0].watch(WatchRequest::prefix("c/").from_revision(1)).unwrap(), reference.clone());
    eventually("the replay", WAIT, || last_rev(&reference) >= final_rev).await;
    t.abort();
    let reference = reference.lock().unwrap().clone();
    let revs: Vec<i64> = reference.iter().map(|e| e.0).collect();
    assert!(revs.windows(2).all(|w| w[1] == w[0] + 1), "one put per revision, no gap");
    let by_rev: BTreeMap<i64, &Ev> = reference.iter().map(|e| (e.0, e)).collect();
    for (rev, k, v) in &acked {
        let e = by_rev.get(rev).unwrap_or_else(|| panic!("acknowledged revision {rev} missing"));
        assert_eq!((&e.1, &e.2), (k, v), "acknowledged write at {rev}");
    }
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let upto: Vec<Ev> = log.iter().filter(|e| e.0 <= final_rev).cloned().collect();
        assert_eq!(upto.len(), reference.len(), "watcher on node {i}: event count");
        assert!(upto == reference, "watcher on node {i} saw a different sequence");
    }
    for t in tasks {
        t.abort();
    }
    stop_all(&nodes).await;
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    DeletePrefix,
    Txn(u8, u8),
    Watch { lo: u8, hi: u8, back: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..6).prop_map(Op::Delete),
        1 => Just(Op::DeletePrefix),
        1 => (0u8..6, 0u8..6).prop_map(|(a, b)| Op::Txn(a, b)),
        2 => (0u8..6, 0u8..7, 0u8..10).prop_map(|(lo, hi, back)| Op::Watch { lo, hi, back }),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

/// The model: every committed event, by applying the ops to a map in order.
#[derive(Default)]
struct Model {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    rev: i64,
    events: Vec<Ev>,
}

impl Model {
    fn commit(&mut self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        if changes.is_empty() {
            return;
        }
        self.rev += 1;
        for (k, v) in changes {
            match v {
                Some(v) => {
                    self.kv.insert(k.clone(), v.clone());
                    self.events.push((self.rev, k, v, true));
                }
                None => {
                    self.kv.remove(&k);
                    self.events.push((self.rev, k, Vec::new(), false));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn watchers_see_exactly_the_committed_sequence_of_their_range(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let node = Node::start(single_config(dir.path(), "p1")).await.unwrap();
            let mut model = Model { rev: 1, ..Default::default() };
            let mut watchers = Vec::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        node.put(PutRequest::new(key(k), vec![v])).await.unwrap();
                        model.commit(vec![(key(k), Some(vec![v]))]);
                    }
                    Op::Delete(k) => {
                        node.delete_range(DeleteRangeRequest::key(key(k))).await.unwrap();
                        let present = model.kv.contains_key(&key(k));
                        model.commit(if present { vec![(key(k), None)] } else { vec![] });
                    }
                    Op::DeletePrefix => {
                        node.delete_range(DeleteRangeRequest::prefix("k")).await.unwrap();
                        let all: Vec<_> = model.kv.keys().map(|k| (k.clone(), None)).collect();
                        model.commit(all);
                    }
                    Op::Txn(a, b) => {
                        let mut ops = vec![RequestOp::Put(PutRequest::new(key(a), vec![a]))];
                        if a != b {
                            ops.push(RequestOp::DeleteRange(DeleteRangeRequest::key(key(b))));
                        }
                        node.txn(TxnRequest { success: ops, ..Default::default() }).await.unwrap();
                        let mut changes = vec![(key(a), Some(vec![a]))];
                        if a != b && model.kv.contains_key(&key(b)) {
                            changes.push((key(b), None));
                        }
                        model.commit(changes);
                    }
                    Op::Watch { lo, hi, back } => {
                        let start = (model.rev + 1 - i64::from(back)).max(1);
                        let (lo, hi) = (key(lo), if hi == 6 { vec![0] } else { key(hi) });
                        let req = WatchRequest { key: lo.clone(), range_end: hi.clone(), start_revision: start, ..Default::default() };
                        let log = Arc::new(Mutex::new(Vec::new()));
                        watchers.push((lo, hi, start, log.clone(), follow(node.watch(req).unwrap(), log)));
                    }
                }
            }
            for (lo, hi, start, log, task) in watchers {
                let in_range = |k: &Vec<u8>| if hi == [0] { *k >= lo } else { *k >= lo && *k < hi };
                let want: Vec<Ev> = model.events.iter().filter(|e| e.0 >= start && in_range(&e.1)).cloned().collect();
                let deadline = std::time::Instant::now() + WAIT;
                while log.lock().unwrap().len() < want.len() && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                task.abort();
                let got = log.lock().unwrap().clone();
                assert_eq!(got, want, "watch [{lo:?}, {hi:?}) from {start}");
            }
            node.stop().await.unwrap();
        });
    }
}
