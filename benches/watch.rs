//! Watch benchmark: `cargo bench --bench watch [-- --quick]`.
//!
//! - memory per watch with 100,000 watches on one node (resident set growth / watches),
//!   both as 1,000 streams of 100 watches (etcd's gRPC streams) and as 100,000 single
//!   watchers; each figure is measured in a fresh process so freed memory is not reused;
//! - one event fanned out to 10,000 watchers: time from the put until every watcher's
//!   consumer task has the event;
//! - put-to-event latency on a 3-node cluster with 10 watchers spread over the nodes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumkv::{PutRequest, WatchRequest};

mod common;
use common::*;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Bytes of resident memory per watch for `count` watches, `per_stream` on each stream.
async fn memory_per_watch(dir: &std::path::Path, count: usize, per_stream: usize) -> f64 {
    let nodes = cluster(dir, 1).await;
    let node = &nodes[0];
    node.put(PutRequest::new("warm", "up")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let mut streams = Vec::with_capacity(count / per_stream);
    let mut watchers = Vec::new();
    for s in 0..count / per_stream {
        if per_stream == 1 {
            watchers.push(node.watch(WatchRequest::key(format!("key/{s:07}"))).unwrap());
        } else {
            let stream = node.watch_stream().unwrap();
            for w in 0..per_stream {
                stream.create(WatchRequest::key(format!("key/{:07}", s * per_stream + w))).unwrap();
            }
            streams.push(stream);
        }
    }
    let after = rss_bytes();
    assert_eq!(node.status().unwrap().watch_count, count);
    drop((streams, watchers));
    node.stop().await.unwrap();
    (after.saturating_sub(before)) as f64 / count as f64
}

/// Time from a put until all `count` watchers' consumer tasks received its event.
async fn fan_out(dir: &std::path::Path, count: usize) -> Duration {
    let nodes = cluster(dir, 1).await;
    let node = nodes[0].clone();
    let got = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..count {
        let mut w = node.watch(WatchRequest::key("fan")).unwrap();
        let (got, done) = (got.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            if let Some(Ok(_)) = w.next().await {
                if got.fetch_add(1, Ordering::AcqRel) + 1 == count {
                    done.notify_one();
                }
            }
            w // dropped after the measurement
        }));
    }
    let t = Instant::now();
    node.put(PutRequest::new("fan", "out")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), done.notified()).await.expect("every watcher got the event");
    let took = t.elapsed();
    drop(futures::future::join_all(tasks).await);
    node.stop().await.unwrap();
    took
}

/// Put-to-event latencies on a 3-node cluster with `watchers` watchers over the nodes.
async fn put_to_event(dir: &std::path::Path, watchers: usize, puts: usize) -> Vec<Duration> {
    let nodes = cluster(dir, 3).await;
    let leader = leader(&nodes);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let mut tasks = Vec::new();
    for i in 0..watchers {
        let mut w = nodes[i % 3].watch(WatchRequest::prefix("lat/")).unwrap();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(resp)) = w.next().await {
                let at = Instant::now();
                for e in &resp.events {
                    let _ = tx.send((e.kv.mod_revision, at));
                }
            }
        }));
    }
    let mut sent = std::collections::HashMap::new();
    for i in 0..puts {
        let t = Instant::now();
        let rev = leader.put(PutRequest::new(format!("lat/{}", i % 64), vec![1u8; 256])).await.unwrap().header.revision;
        sent.insert(rev, t);
    }
    let mut lat = Vec::with_capacity(puts * watchers);
    let deadline = Instant::now() + Duration::from_secs(20);
    while lat.len() < puts * watchers && Instant::now() < deadline {
        if let Ok(Some((rev, at))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            lat.push(at - sent[&rev]);
        }
    }
    assert_eq!(lat.len(), puts * watchers, "every watcher saw every put");
    for t in tasks {
        t.abort();
    }
    stop(nodes).await;
    lat.sort();
    lat
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir =
        tempfile::tempdir_in(std::env::var_os("QKV_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into())).unwrap();
    if let Some(pos) = args.iter().position(|a| a == "--memory") {
        let per_stream: usize = args[pos + 1].parse().unwrap();
        println!("{:.0}", memory_per_watch(dir.path(), 100_000, per_stream).await);
        return;
    }
    if args.iter().any(|a| a == "--fan-out") {
        for i in 0..5 {
            println!("{}", ms(fan_out(&dir.path().join(format!("fan{i}")), 10_000).await));
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    println!("| measurement | result |\n|---|---|");
    for (per_stream, label) in [(100usize, "1,000 streams x 100 watches"), (1, "100,000 single watchers")] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--memory", &per_stream.to_string()])
            .output()
            .unwrap();
        let bytes = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("| memory per watch, 100,000 watches ({label}) | {bytes} B |");
    }
    let fan = fan_out(&dir.path().join("fan"), 10_000).await;
    println!("| one event to 10,000 watchers, all delivered | {} |", ms(fan));
    let puts = if quick { 200 } else { 1000 };
    let lat = put_to_event(&dir.path().join("lat"), 10, puts).await;
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!("| put-to-event latency, 3 nodes, 10 watchers, p50 / p99 | {} / {} |", ms(p50), ms(p99));
}
