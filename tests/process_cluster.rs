//! A 3-node cluster of real `quorumkv` processes, killed with SIGKILL.
//!
//! The test process hosts a learner node that joins the cluster and serves as the client
//! (it forwards writes and read-index requests to the leader like any member would).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::linearizability::{check_register, Op, OpKind};
use quorumkv::*;

struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<(String, String)>,
    procs: Vec<Option<Child>>,
}

impl Cluster {
    fn new() -> Self {
        let members = (1..=3).map(|i| (format!("p{i}"), common::addr())).collect();
        Cluster { dir: tempfile::tempdir().unwrap(), members, procs: vec![None, None, None] }
    }

    fn start(&mut self, i: usize) {
        let list: Vec<String> = self.members.iter().map(|(n, a)| format!("{n}={a}")).collect();
        let (name, addr) = &self.members[i];
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorumkv"))
            .args(["--name", name, "--peer-addr", addr])
            .arg("--data-dir")
            .arg(self.dir.path().join(name))
            .args(["--initial-cluster", &list.join(",")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "300", "--log-level", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("ready"), "node {name} did not start: {line:?}");
        self.procs[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|(n, _)| n == name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

fn leader_process(client: &Node, cluster: &Cluster) -> Option<usize> {
    let leader = client.leader()?;
    let members = client.members().ok()?;
    let name = members.into_iter().find(|m| m.id == leader)?.name;
    cluster.index_of(&name)
}

struct History {
    start: Instant,
    ops: Mutex<BTreeMap<String, Vec<Op>>>,
    acknowledged: Mutex<Vec<String>>,
}

impl History {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

async fn client_loop(client: Node, id: usize, history: Arc<History>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("reg{}", n % 3);
        if n.is_multiple_of(2) {
            let value = format!("c{id}-{n}").into_bytes();
            let call = history.now();
            let result = client.put(PutRequest::new(key.clone(), value.clone())).await;
            let ret = result.is_ok().then(|| history.now());
            history.ops.lock().unwrap().entry(key).or_default().push(Op { call, ret, kind: OpKind::Put(value) });
        } else {
            let call = history.now();
            if let Ok(r) = client.range(RangeRequest::key(key.clone())).await {
                let ret = Some(history.now());
                let seen = r.kvs.first().map(|kv| kv.value.clone());
                history.ops.lock().unwrap().entry(key).or_default().push(Op { call, ret, kind: OpKind::Get(seen) });
            }
        }
        // A durable write to its own key: it must survive every crash once acknowledged.
        let durable = format!("dur/{id}/{n}");
        if client.put(PutRequest::new(durable.clone(), b"1".to_vec())).await.is_ok() {
            history.acknowledged.lock().unwrap().push(durable);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_leaders_and_whole_cluster_lose_nothing_and_stay_linearizable() {
    let mut cluster = Cluster::new();
    for i in 0..3 {
        cluster.start(i);
    }
    let peers: Vec<String> = cluster.members.iter().map(|(_, a)| a.clone()).collect();
    let mut cfg = common::single_config(cluster.dir.path(), "client").bootstrap(Bootstrap::Join(peers));
    cfg.join_as_learner = true;
    cfg.request_timeout_ms = 3_000;
    let client = Node::start(cfg).await.unwrap();
    assert!(client.status().unwrap().is_learner);

    // A second process on a data dir in use is refused with a clear error.
    let (name, _) = &cluster.members[0];
    let second = Command::new(env!("CARGO_BIN_EXE_quorumkv"))
        .args(["--name", name, "--peer-addr", &common::addr(), "--log-level", "error"])
        .arg("--data-dir")
        .arg(cluster.dir.path().join(name))
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("locked by another quorumkv node"), "{stderr}");

    let history = Arc::new(History { start: Instant::now(), ops: Mutex::default(), acknowledged: Mutex::default() });
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> =
        (0..4).map(|id| tokio::spawn(client_loop(client.clone(), id, history.clone(), stop.clone()))).collect();
    // Kill the leader process every ~2 s, restart it half a second later: at least
    // twice, for at least 5.5 s (an iteration finding no leader, mid-election, kills
    // nothing), then let the clients run 2.5 s more.
    let (min_end, deadline) = (Instant::now() + Duration::from_millis(5500), Instant::now() + Duration::from_secs(40));
    let mut kills = 0;
    while (kills < 2 || Instant::now() < min_end) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if let Some(i) = leader_process(&client, &cluster) {
            cluster.kill(i);
            kills += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            cluster.start(i);
        }
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(kills >= 2, "killed {kills} leaders");

    // Kill the whole cluster at once, restart it, and read back every acknowledged write.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in (0..3).rev() {
        cluster.start(i);
    }
    let acknowledged = history.acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "too few writes acknowledged: {}", acknowledged.len());
    let deadline = Instant::now() + Duration::from_secs(20);
    let present = loop {
        match client.range(RangeRequest { keys_only: true, ..RangeRequest::prefix("dur/") }).await {
            Ok(r) => break r.kvs.into_iter().map(|kv| String::from_utf8(kv.key).unwrap()).collect::<Vec<_>>(),
            Err(e) if Instant::now() < deadline => eprintln!("waiting for the restarted cluster: {e}"),
            Err(e) => panic!("restarted cluster did not serve: {e}"),
        }
    };
    for key in &acknowledged {
        assert!(present.contains(key), "acknowledged write {key} lost");
    }

    // Every register's history is linearizable.
    let ops: HashMap<String, Vec<Op>> = history.ops.lock().unwrap().clone().into_iter().collect();
    let mut total = 0;
    for (key, ops) in &ops {
        total += ops.len();
        assert!(check_register(ops, None), "history of {key} is not linearizable ({} ops)", ops.len());
    }
    eprintln!("{kills} leader kills, {} durable writes, {total} register ops checked", acknowledged.len());
    client.stop().await.unwrap();
}
