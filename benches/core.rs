//! In-process API benchmark: `cargo bench --bench core [-- --quick]`.
//! Single parts: `-- --seq3` (3-node latency, local network and TCP alternating),
//! `-- --profile-puts [--local]` (a steady 64-writer
//! load for a profiler), `-- --idle` (idle processes' RSS and CPU over 20 s).
//!
//! 8-byte keys, 256-byte values, real data dirs in the system temp dir, clusters on
//! 127.0.0.1. Prints a Markdown table (the source of docs/benchmarks.md).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumkv::{LocalNetwork, Node, PutRequest, RangeRequest};

/// `--features mimalloc`: mimalloc as this program's allocator (as a program embedding
/// nodes may choose, see docs/rust-api.md); otherwise the system's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::*;

const VALUE_BYTES: usize = 256;

fn key(i: u64) -> Vec<u8> {
    (i % 100_000_000).to_be_bytes().to_vec() // 8 bytes
}

/// Median time of one 256-byte write + fdatasync on the bench's disk.
fn fdatasync_time(dir: &std::path::Path) -> Duration {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let buf = [7u8; VALUE_BYTES];
    let mut times = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

async fn sequential_puts(node: &Node, count: u64) -> Vec<Duration> {
    let value = vec![1u8; VALUE_BYTES];
    let mut lat = Vec::with_capacity(count as usize);
    for i in 0..count {
        let t = Instant::now();
        node.put(PutRequest::new(key(i), value.clone())).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    lat
}

/// Runs `workers` tasks calling `op(node, worker, i)` for `secs`; returns operations/s.
async fn closed_loop<F, Fut>(node: &Node, workers: u64, secs: f64, op: F) -> f64
where
    F: Fn(Node, u64, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (node, stop, done, op) = (node.clone(), stop.clone(), done.clone(), op.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(node.clone(), w, i).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let rate = done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    rate
}

async fn concurrent_puts(node: &Node, writers: u64, secs: f64) -> f64 {
    closed_loop(node, writers, secs, |node, w, i| async move {
        node.put(PutRequest::new(key(w * 1_000_000 + i), vec![2u8; VALUE_BYTES])).await.unwrap();
    })
    .await
}

/// Serializable gets/s from `threads` OS threads calling the node's local read.
fn serializable_gets(node: &Node, threads: u64, keys: u64, secs: f64) -> f64 {
    let t = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                s.spawn(move || {
                    let mut n = 0u64;
                    let mut req = RangeRequest::key(key(0));
                    while t.elapsed().as_secs_f64() < secs {
                        for _ in 0..1000 {
                            req.key = key((w + 7 * n) % keys);
                            let r = node.range_local(&req).unwrap();
                            std::hint::black_box(r);
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / t.elapsed().as_secs_f64()
}

async fn linearizable_gets(node: &Node, readers: u64, keys: u64, secs: f64) -> f64 {
    closed_loop(node, readers, secs, move |node, r, i| async move {
        node.range(RangeRequest::key(key((r + 7 * i) % keys))).await.unwrap();
    })
    .await
}

fn proc_stat(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (rss_kib, ticks)
}

/// Idle RSS of one single-node process, and idle CPU of a 3-process cluster.
fn idle_processes(dir: &std::path::Path, watch_secs: u64) -> (u64, f64, f64) {
    let bin = env!("CARGO_BIN_EXE_quorumkv");
    let spawn = |name: &str, addr: &str, extra: &[String]| {
        Command::new(bin)
            .args(["--name", name, "--peer-addr", addr, "--log-level", "error"])
            .arg("--data-dir")
            .arg(dir.join(format!("idle-{name}")))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut single = spawn("solo", &free_addr(), &[]);
    std::thread::sleep(Duration::from_secs(3));
    let (rss_kib, _) = proc_stat(single.id());
    let _ = single.kill();
    let _ = single.wait();
    let members: Vec<(String, String)> = (1..=3).map(|i| (format!("i{i}"), free_addr())).collect();
    let list = members.iter().map(|(n, a)| format!("{n}={a}")).collect::<Vec<_>>().join(",");
    let mut procs: Vec<_> =
        members.iter().map(|(n, a)| spawn(n, a, &["--initial-cluster".into(), list.clone()])).collect();
    std::thread::sleep(Duration::from_secs(3));
    let before: u64 = procs.iter().map(|p| proc_stat(p.id()).1).sum();
    std::thread::sleep(Duration::from_secs(watch_secs));
    let after: u64 = procs.iter().map(|p| proc_stat(p.id()).1).sum();
    // Then with one member down: the survivors must not spin reconnecting.
    let _ = procs[2].kill();
    let _ = procs[2].wait();
    std::thread::sleep(Duration::from_secs(2));
    let before_down: u64 = procs[..2].iter().map(|p| proc_stat(p.id()).1).sum();
    std::thread::sleep(Duration::from_secs(watch_secs));
    let after_down: u64 = procs[..2].iter().map(|p| proc_stat(p.id()).1).sum();
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let percent = |ticks: u64| ticks as f64 / ticks_per_sec / watch_secs as f64 * 100.0;
    (rss_kib, percent(after - before), percent(after_down - before_down))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1.0 } else { 3.0 };
    let seq = if quick { 300 } else { 2000 };
    let dir =
        tempfile::tempdir_in(std::env::var_os("QKV_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into())).unwrap();
    if std::env::args().any(|a| a == "--seq3") {
        // Both transports, alternating, three rounds.
        for _ in 0..3 {
            for (transport, network) in [("local network", Some(LocalNetwork::new())), ("TCP", None)] {
                let sub = tempfile::tempdir_in(dir.path()).unwrap();
                let nodes = cluster_on(sub.path(), 3, network).await;
                let lat = sequential_puts(&leader(&nodes), 300).await;
                let lin = linearizable_gets(&leader(&nodes), 16, 300, 1.0).await;
                println!(
                    "3 nodes ({transport}): sequential p50 {} p99 {}, linearizable gets {lin:.0}/s",
                    ms(percentile(&lat, 0.5)),
                    ms(percentile(&lat, 0.99))
                );
                stop(nodes).await;
            }
        }
        return;
    }
    if std::env::args().any(|a| a == "--gets") {
        // Gets on one node: serializable from 1 and 16 threads, linearizable from 16
        // tasks; three rounds.
        let nodes = cluster(dir.path(), 1).await;
        let l = leader(&nodes);
        let value = vec![1u8; VALUE_BYTES];
        for i in 0..1000 {
            l.put(PutRequest::new(key(i), value.clone())).await.unwrap();
        }
        for _ in 0..3 {
            for threads in [1, 16] {
                println!("serializable gets, {threads} thread(s): {:.0}/s", serializable_gets(&l, threads, 1000, 2.0));
            }
            println!("linearizable gets, 16 readers: {:.0}/s", linearizable_gets(&l, 16, 1000, 2.0).await);
        }
        stop(nodes).await;
        return;
    }
    if std::env::args().any(|a| a == "--idle") {
        let (rss_kib, cpu, cpu_one_down) = idle_processes(dir.path(), 20);
        println!("idle RSS {:.1} MiB, 3-node CPU {cpu:.2} %, one down {cpu_one_down:.2} %", rss_kib as f64 / 1024.0);
        return;
    }
    if std::env::args().any(|a| a == "--profile-puts") {
        // A steady 3-node, 64-writer put load to run under a profiler (`--local`: the
        // nodes on a local network, else TCP).
        let network = std::env::args().any(|a| a == "--local").then(LocalNetwork::new);
        let nodes = cluster_on(dir.path(), 3, network).await;
        let ops = concurrent_puts(&leader(&nodes), 64, 8.0).await;
        println!("3 nodes, 64 writers: {ops:.0} puts/s");
        for n in &nodes {
            let s = n.status().unwrap();
            let mean_fsync_us = s.fsync_total_us as f64 / s.fsync_count.max(1) as f64;
            println!(
                "{}: leader={} fsyncs={} (mean {mean_fsync_us:.0} µs) appends={} entries={}",
                s.name, s.is_leader, s.fsync_count, s.log_appends, s.log_entries
            );
        }
        stop(nodes).await;
        return;
    }
    println!("| measurement | result |\n|---|---|");
    let fsync = fdatasync_time(dir.path());
    println!("| fdatasync of 256 B on this disk, median | {} |", ms(fsync));

    // One node, then three over TCP, then three on a local network (in memory).
    for (n, network) in [(1usize, None), (3, None), (3, Some(LocalNetwork::new()))] {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let local = network.is_some();
        let nodes = cluster_on(sub.path(), n, network).await;
        let l = leader(&nodes);
        let label = match (n, local) {
            (1, _) => "1 node".to_string(),
            (n, false) => format!("{n} nodes, TCP"),
            (n, true) => format!("{n} nodes, local network"),
        };
        let lat = sequential_puts(&l, seq).await;
        let p50 = percentile(&lat, 0.5);
        println!(
            "| {label}: sequential put latency p50 / p99 | {} / {} ({:.1}x one fdatasync) |",
            ms(p50),
            ms(percentile(&lat, 0.99)),
            p50.as_secs_f64() / fsync.as_secs_f64()
        );
        for writers in [1u64, 16, 64] {
            let ops = concurrent_puts(&l, writers, secs).await;
            println!("| {label}: puts/s with {writers} writers | {ops:.0} |");
        }
        if n == 1 {
            for threads in [1, 16] {
                let gets = serializable_gets(&l, threads, seq, secs);
                println!("| serializable get, {threads} thread(s) | {gets:.0}/s |");
            }
        }
        let lin = linearizable_gets(&l, 16, seq, secs).await;
        println!("| {label}: linearizable get, 16 readers | {lin:.0}/s |");
        let s = l.status().unwrap();
        println!("| {label}: log fsyncs / appends during the run | {} / {} |", s.fsync_count, s.log_appends);
        stop(nodes).await;
    }
    let (rss_kib, cpu, cpu_one_down) = idle_processes(dir.path(), if quick { 3 } else { 10 });
    println!("| idle single-node process RSS | {:.1} MiB |", rss_kib as f64 / 1024.0);
    println!("| idle 3-node cluster (3 processes) CPU | {cpu:.2} % of one core |");
    println!("| idle cluster with one of 3 members down: the 2 survivors' CPU | {cpu_one_down:.2} % of one core |");
}
