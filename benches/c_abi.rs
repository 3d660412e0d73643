//! The C ABI against the Rust API, in one run:
//! `cargo bench --bench c_abi [-- --rounds N] [--get-threads N]` (get threads: default 2).
//!
//! The same workload — one node, 16 threads putting 256-byte values, then 2 threads
//! getting them serializably and linearizably — runs through the Rust API's blocking
//! calls in this process, and through `libquorumkv.so` in a C program
//! (benches/c_abi/bench.c, compiled here with the system C compiler against the
//! library this bench was built with). Rounds alternate between the two; the medians
//! and their ratio are printed as Markdown (the source of docs/benchmarks.md). Then the
//! resident set of an idle C process hosting one node and three nodes, and the sizes
//! of the stripped `.so` and of the `.a`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use quorumkv::{Node, NodeConfig, PutRequest, RangeRequest};

mod common;
use common::free_addr;

// Keep in step with benches/c_abi/bench.c.
const PUT_THREADS: u32 = 16;
const PUTS_PER_THREAD: u32 = 1000;
const LOCAL_GETS_PER_THREAD: u32 = 1_000_000;
const LINEAR_GETS_PER_THREAD: u32 = 50_000;
const KEYS: u32 = PUT_THREADS * PUTS_PER_THREAD;
const VALUE_BYTES: usize = 256;
const WORKLOADS: [&str; 3] = ["put", "get_serializable", "get_linearizable"];

/// The keys, formatted before the clock starts (as on the C side): the loops time the calls.
fn keys() -> Arc<Vec<Vec<u8>>> {
    Arc::new((0..KEYS).map(|k| format!("key/{k:08}").into_bytes()).collect())
}

/// Runs `threads` copies of `work(thread)` at once; returns operations per second.
fn run(threads: u32, ops: u32, work: impl Fn(u32) + Send + Sync + 'static) -> f64 {
    let work = Arc::new(work);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let work = work.clone();
            std::thread::spawn(move || work(t))
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    f64::from(ops) / start.elapsed().as_secs_f64()
}

fn gets(node: &Node, keys: &[Vec<u8>], thread: u32, count: u32, serializable: bool) {
    let mut bytes = 0;
    for i in 0..count {
        let mut req = RangeRequest::key(keys[((thread * 7919 + i) % KEYS) as usize].clone());
        req.serializable = serializable;
        let resp = if serializable { node.range_local(&req) } else { node.range_blocking(req) }.unwrap();
        bytes += resp.kvs.first().map_or(0, |kv| kv.value.len());
    }
    std::hint::black_box(bytes);
}

/// The workload through the Rust API, on a fresh node under `dir`.
fn rust_round(dir: &Path, get_threads: u32) -> BTreeMap<&'static str, f64> {
    let node = Node::start_blocking(NodeConfig::new("bench", dir, free_addr())).unwrap();
    let mut out = BTreeMap::new();
    let (n, k) = (node.clone(), keys());
    out.insert(
        "put",
        run(PUT_THREADS, KEYS, move |t| {
            for i in 0..PUTS_PER_THREAD {
                let key = k[(t * PUTS_PER_THREAD + i) as usize].clone();
                n.put_blocking(PutRequest::new(key, vec![b'v'; VALUE_BYTES])).unwrap();
            }
        }),
    );
    for (name, count, serializable) in
        [("get_serializable", LOCAL_GETS_PER_THREAD, true), ("get_linearizable", LINEAR_GETS_PER_THREAD, false)]
    {
        let (n, k) = (node.clone(), keys());
        out.insert(name, run(get_threads, get_threads * count, move |t| gets(&n, &k, t, count, serializable)));
    }
    node.stop_blocking().unwrap();
    out
}

/// Parses the C program's "<workload> <value>" lines.
fn parse(stdout: &[u8]) -> BTreeMap<String, f64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.trim().parse().unwrap())))
        .collect()
}

fn c_program(args: &[&std::ffi::OsStr], lib_dir: &Path, exe: &Path) -> BTreeMap<String, f64> {
    let out = Command::new(exe).args(args).env("LD_LIBRARY_PATH", lib_dir).output().unwrap();
    assert!(out.status.success(), "C bench failed: {}", String::from_utf8_lossy(&out.stderr));
    parse(&out.stdout)
}

/// Builds benches/c_abi/bench.c against this profile's libquorumkv.so; returns the
/// executable and a directory that holds the library under its soname.
fn build_c(scratch: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let so = profile_dir.join("libquorumkv.so");
    assert!(so.exists(), "{} is missing: run `cargo build --release --lib` first", so.display());
    let lib_dir = scratch.join("lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    std::os::unix::fs::symlink(&so, lib_dir.join("libquorumkv.so")).unwrap();
    std::os::unix::fs::symlink(&so, lib_dir.join("libquorumkv.so.1")).unwrap();
    let exe = scratch.join("bench");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{}", root.join("include").display()))
        .arg(root.join("benches/c_abi/bench.c"))
        .arg(format!("-L{}", lib_dir.display()))
        .args(["-lquorumkv", "-lpthread", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "compiling benches/c_abi/bench.c failed");
    (exe, lib_dir, profile_dir)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn stripped_size(file: &Path, scratch: &Path) -> f64 {
    let copy = scratch.join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    let ok = Command::new("strip").arg("--strip-unneeded").arg(&copy).status().is_ok_and(|s| s.success());
    assert!(ok, "strip failed");
    std::fs::metadata(&copy).unwrap().len() as f64 / (1 << 20) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u32| {
        args.iter().position(|a| a == name).map_or(default, |i| args[i + 1].parse().unwrap())
    };
    let (rounds, get_threads) = (flag("--rounds", 5) as usize, flag("--get-threads", 2));
    let scratch = tempfile::tempdir().unwrap();
    let (exe, lib_dir, profile_dir) = build_c(scratch.path());

    let mut rust: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut c: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        // Alternate which side goes first, so neither always meets a warmer or busier machine.
        for side in if round % 2 == 0 { ["rust", "c"] } else { ["c", "rust"] } {
            let dir = scratch.path().join(format!("{side}-{round}"));
            if side == "rust" {
                for (k, v) in rust_round(&dir, get_threads) {
                    rust.entry(k).or_default().push(v);
                }
            } else {
                let addr = free_addr();
                let threads = get_threads.to_string();
                let res = c_program(&[dir.as_os_str(), addr.as_ref(), threads.as_ref()], &lib_dir, &exe);
                for w in WORKLOADS {
                    c.entry(w).or_default().push(res[w]);
                }
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    println!(
        "| workload (1 node, {get_threads} get threads, ops/s, median of {rounds} [min–max]) | Rust API | C ABI | C / Rust | C / Rust, median of the rounds' ratios [min–max] |"
    );
    println!("|---|---:|---:|---:|---:|");
    let min_max = |v: &[f64]| v.iter().fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    let spread = |v: &[f64]| {
        let (lo, hi) = min_max(v);
        format!("{:.0} [{lo:.0}–{hi:.0}]", median(v.to_vec()))
    };
    for w in WORKLOADS {
        let (r, cv) = (median(rust[w].clone()), median(c[w].clone()));
        // Each round's two sides ran back to back, so their ratio cancels most of the
        // machine's drift between rounds.
        let ratios: Vec<f64> = c[w].iter().zip(&rust[w]).map(|(c, r)| c / r).collect();
        let (lo, hi) = min_max(&ratios);
        println!(
            "| {w} | {} | {} | {:.3} | {:.3} [{lo:.3}–{hi:.3}] |",
            spread(&rust[w]),
            spread(&c[w]),
            cv / r,
            median(ratios)
        );
    }

    println!();
    println!("| idle C process (20 s after one write) | RSS |");
    println!("|---|---:|");
    for nodes in [1, 3] {
        let dir = scratch.path().join(format!("idle-{nodes}"));
        // Three consecutive ports from a free one (the C program adds 0, 1, 2).
        let port = free_addr().rsplit_once(':').unwrap().1.parse::<u32>().unwrap().min(60_000).to_string();
        let res =
            c_program(&["--idle".as_ref(), dir.as_os_str(), port.as_ref(), nodes.to_string().as_ref()], &lib_dir, &exe);
        println!(
            "| {nodes} node{} | {:.1} MiB |",
            if nodes == 1 { "" } else { "s" },
            res[&format!("idle_rss_kib_{nodes}_nodes")] / 1024.0
        );
    }
    println!();
    let so = profile_dir.join("libquorumkv.so");
    let a = profile_dir.join("libquorumkv.a");
    let mib = |p: &Path| std::fs::metadata(p).unwrap().len() as f64 / (1 << 20) as f64;
    println!("| library | size | stripped |");
    println!("|---|---:|---:|");
    println!("| libquorumkv.so | {:.1} MiB | {:.1} MiB |", mib(&so), stripped_size(&so, scratch.path()));
    println!("| libquorumkv.a | {:.1} MiB | {:.1} MiB |", mib(&a), stripped_size(&a, scratch.path()));
}
