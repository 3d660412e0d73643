//! Starts a 3-node cluster in this process, writes, stops the leader, shows that a new
//! leader took over and that every key survived, then restarts the stopped node and
//! shows it catch up.
//!
//! `cargo run --release --example local_cluster [DATA_DIR]` (default: a temporary dir).

use std::time::{Duration, Instant};

use quorumkv::{Bootstrap, Node, NodeConfig, PutRequest, RangeRequest};

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

async fn agreed_leader(nodes: &[&Node]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|n| n.leader()).collect();
        if let Some(Some(l)) = leaders.first() {
            if leaders.iter().all(|x| *x == Some(*l)) && nodes.iter().any(|n| n.id() == *l) {
                return *l;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn name_of(nodes: &[&Node], id: u64) -> String {
    nodes.iter().find(|n| n.id() == id).map(|n| n.name().to_string()).unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> quorumkv::Result<()> {
    let tmp = tempfile_dir();
    let base = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(|| tmp.clone());
    let members: Vec<(String, String)> = (1..=3).map(|i| (format!("node{i}"), free_addr())).collect();
    let config = |i: usize| {
        let (name, addr) = &members[i];
        NodeConfig::new(name.clone(), base.join(name), addr.clone())
            .bootstrap(Bootstrap::InitialCluster(members.clone()))
    };
    println!("starting 3 nodes under {}", base.display());
    let started = futures::future::join_all((0..3).map(|i| Node::start(config(i)))).await;
    let nodes: Vec<Node> = started.into_iter().collect::<Result<_, _>>()?;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = agreed_leader(&all).await;
    println!("leader: {} (term {})", name_of(&all, leader), nodes[0].status()?.term);

    let mut revision = 0;
    for i in 0..100 {
        let via = &nodes[i % 3]; // any node takes any request
        revision = via.put(PutRequest::new(format!("demo/key{i:03}"), format!("value {i}"))).await?.header.revision;
    }
    println!("wrote 100 keys through all three nodes (revision {revision})");

    let li = nodes.iter().position(|n| n.id() == leader).expect("leader is one of ours");
    let t = Instant::now();
    nodes[li].stop().await?;
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.is_running()).collect();
    let new_leader = agreed_leader(&survivors).await;
    println!(
        "stopped {}; new leader {} after {:?} (term {})",
        name_of(&all, leader),
        name_of(&all, new_leader),
        t.elapsed(),
        survivors[0].status()?.term
    );
    let r = survivors[0].range(RangeRequest::prefix("demo/")).await?;
    println!("{} of 100 keys readable after the leader stopped", r.count);
    survivors[1].put(PutRequest::new("demo/after", "written while a node was down")).await?;

    let back = Node::start(config(li)).await?;
    let kv = back.get("demo/after").await?.expect("caught up");
    println!("{} restarted and caught up: demo/after = {:?}", back.name(), String::from_utf8_lossy(&kv.value));
    for n in [&back].into_iter().chain(survivors) {
        n.stop().await?;
    }
    if base == tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    println!("done");
    Ok(())
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("quorumkv-demo-{}", std::process::id()))
}
