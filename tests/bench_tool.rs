//! `quorumkv bench` (the built binary) against a real one-node etcd, when `/usr/bin/etcd`
//! is installed: every workload's counts add up, and the watch check finds nothing wrong.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

/// A one-node etcd in a temp dir, killed on drop.
struct Etcd {
    child: Child,
    client: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (common::addr(), common::addr());
        let child = Command::new(ETCD)
            .args(["--name", "bt1", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("bt1=http://{peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let etcd = Etcd { child, client, _dir: dir };
        // Ready once a put goes through (the bench exits 0).
        let deadline = Instant::now() + Duration::from_secs(30);
        while bench(&etcd.client, &["--total", "1", "put"]).0 != Some(0) {
            assert!(Instant::now() < deadline, "etcd did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `quorumkv bench --json` against `endpoint`: the exit code and the parsed report.
fn bench(endpoint: &str, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_quorumkv"))
        .args(["bench", "--json", "--endpoints", endpoint])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run quorumkv bench");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), report)
}

fn assert_adds_up(r: &serde_json::Value, total: u64) {
    assert_eq!(r["total"], total, "{r}");
    assert_eq!(r["ok"], total, "no errors expected: {r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["latency_ms"]["count"], total, "{r}");
    let l = &r["latency_ms"];
    let (p50, p99, max) = (l["p50"].as_f64().unwrap(), l["p99"].as_f64().unwrap(), l["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{r}");
    assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn workloads_against_etcd() {
    if !Path::new(ETCD).exists() {
        println!("skipped: {ETCD} is not installed");
        return;
    }
    let etcd = Etcd::start();
    let ep = etcd.client.as_str();

    let (code, r) = bench(ep, &["--clients", "8", "--conns", "2", "--total", "400", "put"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["workload"], "put");
    assert_adds_up(&r, 400);

    let (code, r) =
        bench(ep, &["--clients", "8", "--total", "400", "--key-space-size", "50", "--consistency", "s", "range"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["consistency"], "s");
    assert_adds_up(&r, 400);
    let (code, r) = bench(ep, &["--clients", "4", "--total", "200", "--key-space-size", "50", "range"]);
    assert_eq!(code, Some(0), "{r}");
    assert_adds_up(&r, 200);

    // A small key space makes clients collide: some compares must fail, and every op is
    // one or the other.
    let (code, r) =
        bench(ep, &["--clients", "10", "--conns", "3", "--total", "400", "--key-space-size", "3", "txn-cas"]);
    assert_eq!(code, Some(0), "{r}");
    assert_adds_up(&r, 400);
    let (ok, failed) = (r["txn"]["succeeded"].as_u64().unwrap(), r["txn"]["failed"].as_u64().unwrap());
    assert_eq!(ok + failed, 400, "{r}");
    assert!(ok > 0, "{r}");

    let (code, r) =
        bench(ep, &["--watchers", "5", "--clients", "4", "--conns", "2", "--total", "300", "--timeout", "5", "watch"]);
    assert_eq!(code, Some(0), "{r}");
    assert_adds_up(&r, 300);
    let w = &r["watch"];
    assert_eq!(w["watchers"], 5, "{r}");
    assert_eq!(w["expected_per_watcher"], 300, "{r}");
    assert_eq!(w["received"], 5 * 300, "{r}");
    for count in ["missing", "duplicate", "out_of_order", "unexpected"] {
        assert_eq!(w[count], 0, "{count}: {r}");
    }
}

#[test]
fn unreachable_endpoint_and_bad_usage() {
    let port = common::free_port();
    let (code, _) = bench(&format!("127.0.0.1:{port}"), &["--total", "1", "put"]);
    assert_eq!(code, Some(1));
    let (code, _) = bench("127.0.0.1:1", &["--clients", "0", "put"]);
    assert_eq!(code, Some(2));
    let (code, _) = bench("127.0.0.1:1", &["scan"]);
    assert_eq!(code, Some(2));
}
