//! Helpers shared by the integration tests: real nodes on loopback, real data dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quorumkv::{Bootstrap, LocalNetwork, Node, NodeConfig};

/// Logs to stderr when `RUST_LOG` is set (cargo test shows it for failing tests).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A free loopback port below the kernel's ephemeral range (32768 and up), so the
/// outgoing connections of tests running in parallel cannot take it before its node
/// binds it. A port is handed out at most once per test process: tests running in
/// parallel hold ports that are free for a while (picked but not yet bound, or kept for
/// a node that is down and will restart on it), and a probe alone would hand such a
/// port to a second test (CI once failed that way: "cannot listen on peer address").
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = 10_000 + (rand_u32() % 22_000) as u16;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish() as u32
}

pub fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Fast timeouts so tests do not wait on elections for long.
pub fn fast(mut c: NodeConfig) -> NodeConfig {
    init_logs();
    c.heartbeat_interval_ms = 50;
    c.election_timeout_ms = 300;
    c.request_timeout_ms = 5_000;
    c
}

/// Timeouts for tests that assert no election happens while a cluster idles: heartbeats
/// every 100 ms, elections after 1–2 s of silence. Heartbeats share the library's one
/// runtime with every other test of the binary, so a busy machine can stall them for a
/// few hundred milliseconds: longer than [`fast`]'s 300 ms election timeout.
pub fn idle_tolerant(mut c: NodeConfig) -> NodeConfig {
    c.heartbeat_interval_ms = 100;
    c.election_timeout_ms = 1_000;
    c
}

pub struct ClusterSpec {
    pub dir: tempfile::TempDir,
    pub members: Vec<(String, String)>,
    /// The members' local network; `None`: they talk over TCP.
    pub network: Option<LocalNetwork>,
}

impl ClusterSpec {
    /// `n` members talking over loopback TCP.
    pub fn new(n: usize) -> Self {
        let members = (1..=n).map(|i| (format!("n{i}"), addr())).collect();
        ClusterSpec { dir: tempfile::tempdir().unwrap(), members, network: None }
    }

    /// `n` members on one local network (in memory).
    pub fn on_local_network(n: usize) -> Self {
        ClusterSpec { network: Some(LocalNetwork::new()), ..Self::new(n) }
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].0)
    }

    pub fn config(&self, i: usize) -> NodeConfig {
        let (name, peer) = &self.members[i];
        let mut c = fast(NodeConfig::new(name.clone(), self.data_dir(i), peer.clone()))
            .bootstrap(Bootstrap::InitialCluster(self.members.clone()));
        c.local_network = self.network.clone();
        c
    }
}

/// Starts every member of `spec` concurrently (as separate processes would).
pub async fn start_cluster(spec: &ClusterSpec) -> Vec<Node> {
    start_configs((0..spec.members.len()).map(|i| spec.config(i)).collect()).await
}

/// Starts nodes from `configs` concurrently and waits for an agreed leader.
pub async fn start_configs(configs: Vec<NodeConfig>) -> Vec<Node> {
    let starts = configs.into_iter().map(Node::start);
    let nodes: Vec<Node> = futures::future::join_all(starts).await.into_iter().map(|r| r.unwrap()).collect();
    wait_for_leader(&nodes, Duration::from_secs(10)).await;
    nodes
}

/// Stops every node.
pub async fn stop_all<'a>(nodes: impl IntoIterator<Item = &'a Node>) {
    for n in nodes {
        n.stop().await.unwrap();
    }
}

/// Waits until every running node agrees on one leader; returns its id.
pub async fn wait_for_leader(nodes: &[Node], timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let leaders: Vec<Option<u64>> = nodes.iter().filter(|n| n.is_running()).map(|n| n.leader()).collect();
        if let Some(Some(l)) = leaders.first() {
            let agreed = leaders.iter().all(|x| *x == Some(*l));
            let alive = nodes.iter().any(|n| n.is_running() && n.id() == *l);
            if agreed && alive {
                return *l;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader within {timeout:?}: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn leader_index(nodes: &[Node], leader: u64) -> usize {
    nodes.iter().position(|n| n.id() == leader).unwrap()
}

/// Polls `f` until it returns true.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn single_config(dir: &Path, name: &str) -> NodeConfig {
    fast(NodeConfig::new(name, dir.join(name), addr()))
}
pub mod linearizability;
