//! Helpers shared by the benchmark programs.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use quorumkv::{Bootstrap, LocalNetwork, Node, NodeConfig};

pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Starts an `n`-node cluster (one node: a single-node cluster) with data under `dir`,
/// and waits until every node knows the same leader. Its nodes talk over loopback TCP.
pub async fn cluster(dir: &std::path::Path, n: usize) -> Vec<Node> {
    cluster_on(dir, n, None).await
}

/// As [`cluster`]; with `network`, the nodes talk through it (in memory).
pub async fn cluster_on(dir: &std::path::Path, n: usize, network: Option<LocalNetwork>) -> Vec<Node> {
    let members: Vec<(String, String)> = (1..=n).map(|i| (format!("b{i}"), free_addr())).collect();
    let starts = (0..n).map(|i| {
        let (name, addr) = &members[i];
        let mut c = NodeConfig::new(name.clone(), dir.join(name), addr.clone());
        c.bootstrap = if n == 1 { Bootstrap::Single } else { Bootstrap::InitialCluster(members.clone()) };
        c.snapshot_threshold_entries = 100_000;
        c.local_network = network.clone();
        Node::start(c)
    });
    let nodes: Vec<Node> = futures::future::join_all(starts).await.into_iter().map(|r| r.unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|x| x.leader().is_some() && x.leader() == nodes[0].leader()) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes
}

pub fn leader(nodes: &[Node]) -> Node {
    let id = nodes[0].leader().unwrap();
    nodes.iter().find(|n| n.id() == id).unwrap().clone()
}

pub async fn stop(nodes: Vec<Node>) {
    for n in nodes {
        n.stop().await.unwrap();
    }
}
