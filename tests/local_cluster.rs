//! `quorumkv local`: a whole cluster in one process on etcd's local-cluster ports. It
//! serves etcd's API on all three client ports, stops cleanly on Ctrl-C (SIGINT) and
//! finds its data again when started on the same directory. Hosted in-process
//! (`LocalCluster`), its nodes share one local network.
//!
//! The only test in this binary: it takes the fixed ports 2379/22379/32379 and
//! 12380/22380/32380, and cargo runs test binaries one after another.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quorumkv::server::pb::etcdserverpb as pb;

const ENDPOINTS: [&str; 3] = ["127.0.0.1:2379", "127.0.0.1:22379", "127.0.0.1:32379"];

struct Local(Child);

impl Local {
    /// Starts `quorumkv local` and waits until it printed its endpoints.
    fn start(dir: &std::path::Path) -> Local {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quorumkv"))
            .args(["local", "--nodes", "3", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            printed.push_str(&line);
            if line.starts_with("Ctrl-C stops") {
                break;
            }
            line.clear();
        }
        // Keep reading: the process prints again when it stops.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        for ep in ENDPOINTS {
            assert!(printed.contains(&format!("client http://{ep}")), "{printed}");
        }
        assert!(printed.contains("etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"), "{printed}");
        Local(child)
    }

    /// SIGINT, as Ctrl-C; the process must exit cleanly within 20 s.
    fn interrupt(mut self) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "quorumkv local exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "quorumkv local did not stop on Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn kv(ep: &str) -> pb::kv_client::KvClient<tonic::transport::Channel> {
    pb::kv_client::KvClient::connect(format!("http://{ep}")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_serves_stops_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start(dir.path());
    for (i, ep) in ENDPOINTS.iter().enumerate() {
        let put = pb::PutRequest { key: format!("k{i}").into(), value: b"v".to_vec(), ..Default::default() };
        if let Err(e) = kv(ep).await.put(put).await {
            panic!("put through {ep}: {e}");
        }
    }
    let members = pb::cluster_client::ClusterClient::connect("http://127.0.0.1:2379")
        .await
        .unwrap()
        .member_list(pb::MemberListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    let mut names: Vec<String> = members.into_iter().map(|m| m.name).collect();
    names.sort();
    assert_eq!(names, ["infra1", "infra2", "infra3"]);
    local.interrupt();

    let again = Local::start(dir.path());
    for ep in ENDPOINTS {
        let all = pb::RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
        let resp = kv(ep).await.range(all).await.unwrap().into_inner();
        assert_eq!(resp.count, 3, "{ep} lost keys across the restart");
    }
    again.interrupt();

    // The same cluster hosted by this test (`LocalCluster`, what `quorumkv local` runs):
    // its nodes share one local network, and requests sent to followers reach the leader
    // through it.
    let cluster = quorumkv::local::LocalCluster::start(dir.path(), 3, |_| {}).await.unwrap();
    let nodes = cluster.nodes();
    let network = nodes[0].config().local_network.clone().expect("a local cluster's nodes share a network");
    assert_eq!(network.addresses(), ["127.0.0.1:12380", "127.0.0.1:22380", "127.0.0.1:32380"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.leader().is_some()) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = network.forwarded();
    for (i, n) in nodes.iter().enumerate() {
        n.put(quorumkv::PutRequest::new(format!("k{i}"), "again")).await.unwrap();
    }
    assert!(network.forwarded() > before, "the followers' puts went through the network");
    cluster.stop().await.unwrap();
    assert!(network.addresses().is_empty());
}
