//! Per-node metrics and the `/metrics` + `/health` endpoint, scraped over real TCP.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use quorumkv::metrics::{self, Metrics, MetricsServer, RequestKind, OK};
use quorumkv::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Http {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, read to the end).
async fn http(addr: SocketAddr, method: &str, path: &str) -> Http {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: HashMap<String, String> = lines
        .map(|l| l.split_once(':').unwrap())
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if method != "HEAD" {
        let len: usize = headers["content-length"].parse().unwrap();
        assert_eq!(len, body.len(), "Content-Length matches the body");
    }
    Http { status, headers, body: body.to_string() }
}

/// Parses the exposition format: every line is a `# HELP`/`# TYPE` comment or
/// `name{labels} value` / `name value` with a numeric value and a declared family.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut families = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                assert!(labels.ends_with("\"}"), "bad labels in {line:?}");
                name
            }
            None => series,
        };
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(name);
        assert!(families.contains(family), "{line:?} has no # TYPE line before it");
        assert!(samples.insert(series.to_string(), value).is_none(), "duplicate series {series}");
    }
    samples
}

struct Served {
    _dir: tempfile::TempDir,
    node: Node,
    metrics: Metrics,
    server: MetricsServer,
}

async fn start(name: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(common::single_config(dir.path(), name)).await.unwrap();
    common::wait_for_leader(std::slice::from_ref(&node), Duration::from_secs(10)).await;
    let metrics = Metrics::new();
    let server = metrics::serve(&common::addr(), node.clone(), metrics.clone()).await.unwrap();
    Served { _dir: dir, node, metrics, server }
}

async fn scrape(s: &Served) -> HashMap<String, f64> {
    let r = http(s.server.local_addr(), "GET", "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], metrics::CONTENT_TYPE);
    parse(&r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_one_process_keep_separate_metrics() {
    let a = start("a").await;
    let b = start("b").await;

    // Requests recorded on `a` only: real calls through `track`, plus direct observations.
    for i in 0..3 {
        a.metrics.track(RequestKind::Put, a.node.put(PutRequest::new(format!("k{i}"), "v"))).await.unwrap();
    }
    let _ = a.metrics.track(RequestKind::Range, a.node.get("k0")).await.unwrap();
    let compacted =
        a.metrics.track(RequestKind::Range, a.node.range(RangeRequest { revision: 99, ..RangeRequest::key("k0") }));
    assert!(compacted.await.is_err());
    a.metrics.observe(RequestKind::Txn, "Unavailable", Duration::from_secs(30));
    let _watcher = a.node.watch(WatchRequest::key("k0")).unwrap();

    let sa = scrape(&a).await;
    let get = |m: &HashMap<String, f64>, k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing: {m:#?}"));
    assert_eq!(get(&sa, r#"quorumkv_requests_total{type="put",result="ok"}"#), 3.0);
    assert_eq!(get(&sa, r#"quorumkv_requests_total{type="range",result="ok"}"#), 1.0);
    assert_eq!(get(&sa, r#"quorumkv_requests_total{type="range",result="OutOfRange"}"#), 1.0);
    assert_eq!(get(&sa, r#"quorumkv_requests_total{type="txn",result="Unavailable"}"#), 1.0);
    assert_eq!(get(&sa, r#"quorumkv_request_duration_seconds_count{type="put"}"#), 3.0);
    assert_eq!(get(&sa, r#"quorumkv_request_duration_seconds_bucket{type="put",le="+Inf"}"#), 3.0);
    assert_eq!(get(&sa, r#"quorumkv_request_duration_seconds_bucket{type="txn",le="10"}"#), 0.0);
    assert_eq!(get(&sa, r#"quorumkv_request_duration_seconds_bucket{type="txn",le="+Inf"}"#), 1.0);
    assert!(get(&sa, r#"quorumkv_request_duration_seconds_sum{type="txn"}"#) >= 30.0);
    // Buckets are cumulative.
    let put_buckets: Vec<f64> = ["0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf"]
        .iter()
        .map(|le| get(&sa, &format!(r#"quorumkv_request_duration_seconds_bucket{{type="put",le="{le}"}}"#)))
        .collect();
    assert!(put_buckets.windows(2).all(|w| w[0] <= w[1]), "{put_buckets:?}");
    // Gauges come from the node.
    let st = a.node.status().unwrap();
    assert!(st.has_leader && st.leader_changes >= 1, "{st:?}");
    assert_eq!(get(&sa, "quorumkv_server_is_leader"), 1.0);
    assert_eq!(get(&sa, "quorumkv_server_has_leader"), 1.0);
    assert!(get(&sa, "quorumkv_server_leader_changes_seen_total") >= 1.0);
    assert!(get(&sa, "quorumkv_server_raft_term") >= 1.0);
    assert!(get(&sa, "quorumkv_server_commit_index") >= 4.0);
    assert!(get(&sa, "quorumkv_server_applied_index") >= 4.0);
    assert_eq!(get(&sa, "quorumkv_mvcc_current_revision"), 4.0);
    assert_eq!(get(&sa, "quorumkv_mvcc_compact_revision"), 0.0);
    assert_eq!(get(&sa, "quorumkv_watchers"), 1.0);
    assert!(get(&sa, "quorumkv_disk_wal_fsync_total") >= 1.0);
    assert!(get(&sa, "quorumkv_disk_wal_fsync_seconds_total") > 0.0);
    assert!(get(&sa, "quorumkv_mvcc_db_total_size_in_bytes") > 0.0);

    // `b` runs in the same process and saw none of it.
    let sb = scrape(&b).await;
    assert!(!sb.keys().any(|k| k.starts_with("quorumkv_request")), "b has no request samples: {sb:#?}");
    assert_eq!(get(&sb, "quorumkv_mvcc_current_revision"), 1.0);
    assert_eq!(get(&sb, "quorumkv_watchers"), 0.0);
    assert_eq!(get(&sb, "quorumkv_server_is_leader"), 1.0);
    assert_eq!(b.metrics.request_count(RequestKind::Put, OK), 0);
    // The rendered text equals what the endpoint serves, modulo gauges that move.
    assert_eq!(parse(&a.metrics.render(&a.node)).len(), sa.len());

    for s in [a, b] {
        s.server.shutdown().await;
        s.node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_node() {
    let s = start("h").await;
    let addr = s.server.local_addr();
    let ok = http(addr, "GET", "/health").await;
    assert_eq!((ok.status, ok.body.as_str()), (200, r#"{"health":"true"}"#));
    assert_eq!(ok.headers["content-type"], "application/json");
    assert!(metrics::health(&s.node).is_ok());
    let head = http(addr, "HEAD", "/health").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(http(addr, "GET", "/nope").await.status, 404);
    assert_eq!(http(addr, "GET", "/health/x").await.status, 404);
    assert_eq!(http(addr, "POST", "/metrics").await.status, 405);
    assert_eq!(http(addr, "GET", "/health?serializable=true").await.status, 200);

    // One keep-alive connection serves several requests.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let two = "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    conn.write_all(two.as_bytes()).await.unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");

    s.node.stop().await.unwrap();
    let down = http(addr, "GET", "/health").await;
    assert_eq!((down.status, down.body.as_str()), (503, r#"{"health":"false","reason":"NODE STOPPED"}"#));
    assert_eq!(metrics::health(&s.node), Err("NODE STOPPED".to_string()));
    // A stopped node still serves its counters, without the node gauges.
    let scraped = scrape(&s).await;
    assert!(!scraped.contains_key("quorumkv_server_raft_term"));

    let served_at = s.server.local_addr();
    s.server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(served_at).await.is_err(), "the port is closed after shutdown");
    // And it can be bound again at once.
    let again = metrics::serve(&served_at.to_string(), s.node.clone(), s.metrics.clone()).await.unwrap();
    assert_eq!(again.local_addr(), served_at);
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_address_is_a_transport_error() {
    let s = start("busy").await;
    let taken = s.server.local_addr().to_string();
    match metrics::serve(&taken, s.node.clone(), Metrics::new()).await {
        Err(Error::Transport(msg)) => assert!(msg.contains(&taken), "{msg}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    s.node.stop().await.unwrap();
}

/// A node without a leader is unhealthy: one member of a two-member cluster whose other
/// member never starts cannot elect one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leader_is_unhealthy() {
    let spec = common::ClusterSpec::new(2);
    let node = Node::start(spec.config(0)).await.unwrap();
    let server = metrics::serve(&common::addr(), node.clone(), Metrics::new()).await.unwrap();
    let r = http(server.local_addr(), "GET", "/health").await;
    assert_eq!((r.status, r.body.as_str()), (503, r#"{"health":"false","reason":"RAFT NO LEADER"}"#));
    let m = parse(&http(server.local_addr(), "GET", "/metrics").await.body);
    assert_eq!(m["quorumkv_server_has_leader"], 0.0);
    assert_eq!(m["quorumkv_server_leader_changes_seen_total"], 0.0);
    server.shutdown().await;
    node.stop().await.unwrap();
}

/// Followers count a leader change when the leader goes away and another is elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_changes_are_counted() {
    let spec = common::ClusterSpec::new(3);
    let nodes = common::start_cluster(&spec).await;
    let first = common::wait_for_leader(&nodes, Duration::from_secs(10)).await;
    // A new leader reports a live leader once a quorum has acknowledged it, a moment
    // after the others agree on it.
    common::eventually("every member sees a live leader", Duration::from_secs(10), || {
        nodes.iter().all(|n| n.status().unwrap().has_leader)
    })
    .await;
    for n in &nodes {
        let s = n.status().unwrap();
        assert!(s.leader_changes >= 1, "{s:?}");
    }
    let before: Vec<u64> = nodes.iter().map(|n| n.status().unwrap().leader_changes).collect();
    nodes[common::leader_index(&nodes, first)].stop().await.unwrap();
    let second = common::wait_for_leader(&nodes, Duration::from_secs(10)).await;
    assert_ne!(first, second);
    for (n, before) in nodes.iter().zip(before).filter(|(n, _)| n.is_running()) {
        let after = n.status().unwrap().leader_changes;
        assert!(after > before, "{}: {before} -> {after}", n.name());
        let scraped = parse(&Metrics::new().render(n));
        assert_eq!(scraped["quorumkv_server_leader_changes_seen_total"], after as f64);
        assert_eq!(scraped["quorumkv_server_is_leader"], f64::from(u8::from(n.id() == second)));
    }
    common::stop_all(&nodes).await;
}
