//! Real etcdctl 3.4 against a 3-node quorumkv cluster (in this process, each node with
//! its etcd v3 client port): the KV, watch, lease, maintenance and membership commands
//! an etcd user runs, with etcdctl's own output checked.
//!
//! Needs Debian's `etcd-client` (CI installs it); without it the tests fail unless
//! `QKV_SKIP_ETCD_INTEROP=1` is set.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use quorumkv::server::{ClientServer, ServeOptions};
use quorumkv::{Bootstrap, Node, NodeConfig};
use sha2::{Digest, Sha256};

/// Whether etcdctl is installed; without it the test fails, unless
/// `QKV_SKIP_ETCD_INTEROP=1` asks to skip (the same rule as the other interop tests).
fn etcdctl_available() -> bool {
    if Command::new("etcdctl").arg("version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    let skip = std::env::var_os("QKV_SKIP_ETCD_INTEROP").is_some_and(|v| v == "1");
    assert!(skip, "etcdctl not found: install Debian's etcd-client (or set QKV_SKIP_ETCD_INTEROP=1)");
    eprintln!("etcdctl not found and QKV_SKIP_ETCD_INTEROP=1: skipping");
    false
}

/// A cluster whose nodes each serve etcd's API on a client port.
struct Cluster {
    rt: tokio::runtime::Runtime,
    _spec: ClusterSpec,
    nodes: Vec<Node>,
    servers: Vec<Option<ClientServer>>,
    endpoints: Vec<String>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let spec = ClusterSpec::new(n);
        let endpoints: Vec<String> = (0..n).map(|_| addr()).collect();
        let configs = (0..n)
            .map(|i| {
                let mut c = spec.config(i);
                c.client_addrs = vec![endpoints[i].clone()];
                c
            })
            .collect();
        let (nodes, servers) = rt.block_on(async {
            let nodes = start_configs(configs).await;
            let mut servers = Vec::new();
            for (node, ep) in nodes.iter().zip(&endpoints) {
                servers.push(Some(ClientServer::serve(node.clone(), ep, ServeOptions::default()).await.unwrap()));
            }
            (nodes, servers)
        });
        Cluster { rt, _spec: spec, nodes, servers, endpoints }
    }

    fn all(&self) -> String {
        self.endpoints.join(",")
    }

    fn leader_index(&self) -> usize {
        let leader = self.rt.block_on(wait_for_leader(&self.nodes, Duration::from_secs(10)));
        leader_index(&self.nodes, leader)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let servers: Vec<_> = self.servers.iter_mut().filter_map(Option::take).collect();
        let nodes = self.nodes.clone();
        self.rt.block_on(async move {
            for s in servers {
                s.stop().await;
            }
            for n in nodes {
                let _ = n.stop().await;
            }
        });
    }
}

fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    etcdctl_stdin(endpoints, args, None)
}

fn etcdctl_stdin(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=3s", "--command-timeout=15s"])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run etcdctl");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs etcdctl, asserts it succeeded, returns its stdout.
#[track_caller]
fn ok(endpoints: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "etcdctl {args:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Runs etcdctl, asserts it failed, returns its stderr.
#[track_caller]
fn fails(endpoints: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    assert!(!out.status.success(), "etcdctl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(endpoints: &str, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-w", "json"]);
    serde_json::from_str(&ok(endpoints, &a)).expect("etcdctl json")
}

fn revision_of(endpoints: &str) -> i64 {
    json(endpoints, &["get", "nothing-here"])["header"]["revision"].as_i64().unwrap()
}

/// A running `etcdctl watch`, its output read line by line.
struct WatchCmd {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl WatchCmd {
    fn spawn(endpoints: &str, args: &[&str]) -> WatchCmd {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        WatchCmd { child, lines }
    }

    /// The next `want` lines (fewer if none come for 15 s).
    fn read(&mut self, want: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut lines = Vec::new();
        while lines.len() < want {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        lines
    }
}

impl Drop for WatchCmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kv_commands() {
    if !etcdctl_available() {
        return;
    }
    let c = Cluster::start(3);
    let all = c.all();
    let follower = &c.endpoints[(c.leader_index() + 1) % 3];

    assert_eq!(ok(&all, &["put", "foo", "bar"]), "OK\n");
    let first_rev = revision_of(&all);
    assert_eq!(ok(follower, &["put", "foo2", "bar2"]), "OK\n");
    ok(&all, &["put", "fop", "x"]);
    assert_eq!(ok(&all, &["get", "foo", "--prefix"]), "foo\nbar\nfoo2\nbar2\n");
    assert_eq!(ok(&all, &["get", "foo", "--prefix", "--limit", "1"]), "foo\nbar\n");
    assert_eq!(
        ok(&all, &["get", "f", "--prefix", "--keys-only", "--sort-by=KEY", "--order=DESCEND"]),
        "fop\n\nfoo2\n\nfoo\n\n"
    );
    assert_eq!(
        ok(&all, &["get", "f", "--prefix", "--print-value-only", "--sort-by=VALUE", "--order=ASCEND"]),
        "bar\nbar2\nx\n"
    );
    assert_eq!(ok(follower, &["get", "foo", "--consistency=s"]), "foo\nbar\n");
    ok(&all, &["put", "foo", "bar3"]);
    assert_eq!(ok(&all, &["get", "foo", &format!("--rev={first_rev}")]), "foo\nbar\n");
    assert_eq!(ok(&all, &["get", "foo", "--print-value-only"]), "bar3\n");
    let count = json(&all, &["get", "f", "--prefix", "--keys-only", "--limit=1"]);
    assert_eq!((count["count"].as_i64(), count["more"].as_bool()), (Some(3), Some(true)));
    let kv = &json(&all, &["get", "foo"])["kvs"][0];
    assert_eq!((kv["version"].as_i64(), kv["create_revision"].as_i64()), (Some(2), Some(first_rev)));
    let header = &json(&all, &["get", "foo"])["header"];
    assert!(header["cluster_id"].as_u64().unwrap() != 0 && header["raft_term"].as_u64().unwrap() > 0);

    // Deletes.
    assert_eq!(ok(&all, &["del", "foo2"]), "1\n");
    assert_eq!(ok(&all, &["del", "fo", "--prefix", "--prev-kv"]), "2\nfoo\nbar3\nfop\nx\n");
    assert_eq!(ok(&all, &["get", "f", "--prefix"]), "");

    // Transactions (etcdctl's interactive format on stdin).
    ok(&all, &["put", "k1", "v1"]);
    let txn = "value(\"k1\") = \"v1\"\n\nput k1 v2\nget k1\n\nput k1 never\n\n";
    let out = etcdctl_stdin(&all, &["txn"], Some(txn));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SUCCESS\n\nOK\n\nk1\nv2\n");
    let out = etcdctl_stdin(&all, &["txn"], Some(txn));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "FAILURE\n\nOK\n");
    assert_eq!(ok(&all, &["get", "k1", "--print-value-only"]), "never\n");
    let cmp = "mod(\"k1\") > \"0\"\nversion(\"k1\") = \"3\"\n\ndel k1\n\n\n";
    let out = etcdctl_stdin(&all, &["txn"], Some(cmp));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SUCCESS\n\n1\n");

    // etcd's errors, with etcd's text.
    assert!(fails(&all, &["get", "k1", "--rev=100000"]).contains("required revision is a future revision"));
    assert!(fails(&all, &["put", "", "v"]).contains("key is not provided"));
    let big = "x".repeat(1_600_000); // over 1.5 MiB, under etcdctl's own 2 MiB send limit
    let out = etcdctl_stdin(&all, &["put", "big"], Some(&big));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("request is too large"));

    // Compaction: older revisions are gone, newer ones readable.
    ok(&all, &["put", "c", "1"]);
    ok(&all, &["put", "c", "2"]);
    let rev = revision_of(&all);
    assert_eq!(ok(&all, &["compaction", &rev.to_string()]), format!("compacted revision {rev}\n"));
    assert!(fails(&all, &["get", "c", &format!("--rev={}", rev - 1)]).contains("required revision has been compacted"));
    assert_eq!(ok(&all, &["get", "c", &format!("--rev={rev}"), "--print-value-only"]), "2\n");
}

#[test]
fn watch_commands() {
    if !etcdctl_available() {
        return;
    }
    let c = Cluster::start(3);
    let all = c.all();
    let follower = &c.endpoints[(c.leader_index() + 1) % 3];
    let start = revision_of(&all) + 1;

    // From the next revision on: the events are the same whenever etcdctl connects.
    let mut live = WatchCmd::spawn(follower, &["w/", "--prefix", "--prev-kv", &format!("--rev={start}")]);
    ok(&all, &["put", "w/1", "a"]);
    ok(&all, &["put", "w/1", "b"]);
    ok(&all, &["put", "other", "z"]);
    ok(&all, &["del", "w/1"]);
    let lines = live.read(11);
    assert_eq!(lines, ["PUT", "w/1", "a", "PUT", "w/1", "a", "w/1", "b", "DELETE", "w/1", "b"].map(String::from));

    // Replay from a past revision, then live events.
    let mut replay = WatchCmd::spawn(&all, &["w/", "--prefix", &format!("--rev={start}")]);
    let lines = replay.read(7);
    assert_eq!(lines, ["PUT", "w/1", "a", "PUT", "w/1", "b", "DELETE"].map(String::from));
    ok(&all, &["put", "w/2", "c"]);
    let more = replay.read(5);
    assert_eq!(more, ["w/1", "", "PUT", "w/2", "c"].map(String::from));

    // A start revision below the compaction point: etcdctl reports the compaction.
    let rev = revision_of(&all);
    ok(&all, &["compaction", &rev.to_string()]);
    let out = Command::new("timeout")
        .args(["10", "etcdctl", &format!("--endpoints={all}"), "watch", "w/", "--prefix", "--rev=2"])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("required revision has been compacted"), "{text}");
}

#[test]
fn lease_commands() {
    if !etcdctl_available() {
        return;
    }
    let c = Cluster::start(3);
    let all = c.all();
    let granted = ok(&all, &["lease", "grant", "100"]);
    // "lease 694d7b5b1d8e5a05 granted with TTL(100s)"
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert!(granted.ends_with("granted with TTL(100s)\n"), "{granted}");
    ok(&all, &["put", "lk", "lv", &format!("--lease={id}")]);
    let ttl = ok(&c.endpoints[2], &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("granted with TTL(100s)") && ttl.contains("attached keys([lk])"), "{ttl}");
    assert_eq!(ok(&all, &["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(100)\n"));
    assert!(ok(&all, &["lease", "list"]).contains(&id));
    assert_eq!(ok(&all, &["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ok(&all, &["get", "lk"]), "");
    assert!(ok(&all, &["lease", "timetolive", &id]).contains("already expired"));
    assert!(fails(&all, &["lease", "revoke", &id]).contains("requested lease not found"));

    // A short lease expires on its own and takes its key along.
    let granted = ok(&all, &["lease", "grant", "2"]);
    let short = granted.split_whitespace().nth(1).unwrap().to_string();
    ok(&all, &["put", "gone", "soon", &format!("--lease={short}")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok(&all, &["get", "gone"]).is_empty() {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn maintenance_commands() {
    if !etcdctl_available() {
        return;
    }
    let c = Cluster::start(3);
    let all = c.all();
    for i in 0..20 {
        ok(&all, &["put", &format!("m{i}"), &format!("value {i}")]);
    }
    // Client URLs reach the membership in the background after start.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = json(&all, &["member", "list"]);
        let urls = members["members"].as_array().unwrap().iter().filter(|m| m["clientURLs"].is_array()).count();
        if urls == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "client URLs missing: {members}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses = json(&all, &["endpoint", "status", "--cluster"]);
    let statuses = statuses.as_array().unwrap();
    assert_eq!(statuses.len(), 3);
    let leaders: Vec<u64> = statuses.iter().map(|s| s["Status"]["leader"].as_u64().unwrap()).collect();
    assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0), "{leaders:?}");
    let out = etcdctl(&all, &["endpoint", "health", "--cluster"]);
    let health = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{health}");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");

    // Every member hashes the same state at the same revision.
    let rev = revision_of(&all);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hashes = json(&all, &["endpoint", "hashkv", "--cluster", &format!("--rev={rev}")]);
        let hashes: Vec<u64> =
            hashes.as_array().unwrap().iter().map(|h| h["HashKV"]["hash"].as_u64().unwrap()).collect();
        if hashes.len() == 3 && hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "hashes differ: {hashes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let defrag = ok(&all, &["defrag", "--cluster"]);
    assert_eq!(defrag.matches("Finished defragmenting etcd member").count(), 3, "{defrag}");
    assert_eq!(ok(&all, &["get", "m7", "--print-value-only"]), "value 7\n");

    // Snapshot: the stream ends with etcd's SHA-256 trailer over everything before it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let saved = ok(&c.endpoints[0], &["snapshot", "save", file.to_str().unwrap()]);
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 32 + 20 * 10);
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    assert_eq!(body.len() % 512, 0, "padded to etcd's 512-byte alignment");
    assert_eq!(Sha256::digest(body).as_slice(), trailer);

    // Move the leadership to a follower, sent to the leader as etcdctl does.
    let leader = c.leader_index();
    let target = c.nodes[(leader + 1) % 3].id();
    let moved = ok(&c.endpoints[leader], &["move-leader", &format!("{target:x}")]);
    assert!(moved.contains("Leadership transferred"), "{moved}");
    // The old leader's view of the leader follows Raft's metrics a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.nodes[leader].leader() != Some(target) {
        assert!(Instant::now() < deadline, "the old leader still names {:?}", c.nodes[leader].leader());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fails(&all, &["move-leader", "1234"]).contains("bad leader transferee"));

    // Alarms: none raised.
    assert_eq!(ok(&all, &["alarm", "list"]), "");
}

#[test]
fn member_commands() {
    if !etcdctl_available() {
        return;
    }
    let c = Cluster::start(3);
    let all = c.all();
    let list = json(&all, &["member", "list"]);
    let names: Vec<&str> = list["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3);

    // etcd's add-then-start: add a learner by peer URL, start it, promote it, remove it.
    let peer = addr();
    let added = ok(&all, &["member", "add", "n4", &format!("--peer-urls=http://{peer}"), "--learner"]);
    let id = added.split_whitespace().nth(1).unwrap().to_string();
    assert!(added.contains("added to cluster"), "{added}");
    let unstarted = format!("{id}, unstarted, , http://{peer}, , true");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let table = ok(&all, &["member", "list"]);
        if table.contains(&unstarted) {
            break;
        }
        assert!(Instant::now() < deadline, "{table}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fails(&all, &["member", "add", "again", &format!("--peer-urls=http://{peer}")])
        .contains("Peer URLs already exists"));

    let dir = tempfile::tempdir().unwrap();
    let mut config = fast(NodeConfig::new("n4", dir.path().join("n4"), peer.clone()))
        .bootstrap(Bootstrap::Join(vec![c.nodes[0].config().peer_addr.clone()]));
    config.client_addrs = vec![addr()];
    let n4 = c.rt.block_on(Node::start(config)).unwrap();
    assert_eq!(format!("{:x}", n4.id()), id, "the new node takes the added member's id");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(&all, &["member", "list"]).contains(&format!("{id}, started, n4, http://{peer}")) {
        assert!(Instant::now() < deadline, "n4 never showed as started");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok(&all, &["member", "list"]).contains(&format!("{id}, started, n4, http://{peer}, http://")));
    let promoted = ok(&all, &["member", "promote", &id]);
    assert!(promoted.contains("promoted"), "{promoted}");
    assert!(json(&all, &["member", "list"])["members"].as_array().unwrap().iter().all(|m| m["isLearner"].is_null()));
    assert!(fails(&all, &["member", "promote", &id]).contains("can only promote a learner member"));

    let update_peer = addr();
    let updated = ok(&all, &["member", "update", &id, &format!("--peer-urls=http://{update_peer}")]);
    assert!(updated.contains("updated"), "{updated}");
    assert!(ok(&all, &["member", "list"]).contains(&format!("http://{update_peer}")));

    let removed = ok(&all, &["member", "remove", &id]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    assert!(!ok(&all, &["member", "list"]).contains(&id));
    assert!(fails(&all, &["member", "remove", &id]).contains("member not found"));
    c.rt.block_on(async {
        let _ = n4.stop().await;
    });
}
