//! `quorumkv._native._bench_rust`: the Python benchmark's Rust-API side, in the same process.
//!
//! `python/bench.py` compares Python's throughput with the Rust API's. To compare them in
//! one run (same node, same machine state, alternating rounds) the Rust side runs here:
//! the same workload and key scheme as bench.py, through the Rust API only — OS threads
//! calling the blocking twins (as Python threads do), or tasks on the library's runtime
//! awaiting the async methods (as asyncio tasks do). Not part of the public API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use quorumkv as q;

use crate::errors::{core_error, invalid};
use crate::node::PyNode;

/// Who drives the workload: OS threads on the blocking twins, or runtime tasks.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Threads,
    Tasks,
}

#[derive(Clone, Copy)]
enum Workload {
    Put,
    GetLinearizable,
    GetSerializable,
}

/// bench.py's `key(i)`: 8 bytes, big-endian.
fn key(i: u64) -> Vec<u8> {
    (i % 100_000_000).to_be_bytes().to_vec()
}

/// The number of keys bench.py writes before the runs (its `KEYS`): gets read these.
const KEYS: u64 = 1_000;

/// bench.py's key for operation `i` of worker `t`: puts write new keys, gets read the
/// keys written before the run.
fn key_for(w: Workload, t: u64, i: u64) -> Vec<u8> {
    match w {
        Workload::Put => key(t * 1_000_000 + i),
        _ => key((t + 7 * i) % KEYS),
    }
}

fn get_request(w: Workload, t: u64, i: u64) -> q::RangeRequest {
    q::RangeRequest { serializable: matches!(w, Workload::GetSerializable), ..q::RangeRequest::key(key_for(w, t, i)) }
}

fn blocking_op(node: &q::Node, w: Workload, value: &[u8], t: u64, i: u64) -> q::Result<()> {
    match w {
        Workload::Put => node.put_blocking(q::PutRequest::new(key_for(w, t, i), value.to_vec())).map(drop),
        Workload::GetLinearizable => node.range_blocking(get_request(w, t, i)).map(drop),
        Workload::GetSerializable => node.range_local(&get_request(w, t, i)).map(drop),
    }
}

async fn async_op(node: &q::Node, w: Workload, value: &[u8], t: u64, i: u64) -> q::Result<()> {
    match w {
        Workload::Put => node.put(q::PutRequest::new(key_for(w, t, i), value.to_vec())).await.map(drop),
        Workload::GetLinearizable => node.range(get_request(w, t, i)).await.map(drop),
        Workload::GetSerializable => node.range_local(&get_request(w, t, i)).map(drop),
    }
}

/// Counts of a closed-loop run, and its first error.
struct Tally {
    stop: AtomicBool,
    ops: AtomicU64,
    error: std::sync::Mutex<Option<q::Error>>,
}

impl Tally {
    fn finish(&self, n: u64, r: q::Result<()>) {
        self.ops.fetch_add(n, Ordering::Relaxed);
        if let Err(e) = r {
            self.stop.store(true, Ordering::Relaxed);
            self.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
        }
    }
}

fn run(
    node: q::Node,
    w: Workload,
    mode: Mode,
    workers: u64,
    secs: Duration,
    value: Vec<u8>,
) -> (f64, Option<q::Error>) {
    let tally = Arc::new(Tally { stop: AtomicBool::new(false), ops: AtomicU64::new(0), error: Default::default() });
    let value = Arc::new(value);
    let start = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    for t in 0..workers {
        let (node, tally, value, done) = (node.clone(), tally.clone(), value.clone(), done_tx.clone());
        if mode == Mode::Threads {
            std::thread::spawn(move || {
                let mut i = 0;
                let mut r = Ok(());
                while r.is_ok() && !tally.stop.load(Ordering::Relaxed) {
                    r = blocking_op(&node, w, &value, t, i);
                    i += 1;
                }
                tally.finish(i - r.is_err() as u64, r);
                drop(done);
            });
        } else {
            node.clone().spawn_detached(async move {
                let mut i = 0;
                let mut r = Ok(());
                while r.is_ok() && !tally.stop.load(Ordering::Relaxed) {
                    r = async_op(&node, w, &value, t, i).await;
                    i += 1;
                    if i % 64 == 0 {
                        // Serializable reads never wait: let the runtime's other tasks run.
                        tokio::task::yield_now().await;
                    }
                }
                tally.finish(i - r.is_err() as u64, r);
                drop(done);
            });
        }
    }
    drop(done_tx);
    std::thread::sleep(secs);
    tally.stop.store(true, Ordering::Relaxed);
    while done_rx.recv().is_ok() {}
    let rate = tally.ops.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    let err = tally.error.lock().unwrap_or_else(|p| p.into_inner()).take();
    (rate, err)
}

/// Runs `workload` ("put", "get_linearizable" or "get_serializable") on `node` for
/// `seconds` with `workers` closed-loop workers of `mode` ("threads": OS threads calling
/// the blocking API; "tasks": tasks on the library's runtime awaiting the async API) and
/// returns operations/s. The GIL is released for the whole run.
#[pyfunction]
#[pyo3(name = "_bench_rust")]
pub fn bench_rust(
    py: Python<'_>,
    node: &PyNode,
    workload: &str,
    mode: &str,
    workers: u64,
    seconds: f64,
    value: Vec<u8>,
) -> PyResult<f64> {
    let w = match workload {
        "put" => Workload::Put,
        "get_linearizable" => Workload::GetLinearizable,
        "get_serializable" => Workload::GetSerializable,
        _ => return Err(invalid(py, format!("unknown workload {workload:?}"))),
    };
    let mode = match mode {
        "threads" => Mode::Threads,
        "tasks" => Mode::Tasks,
        _ => return Err(invalid(py, format!("mode must be 'threads' or 'tasks', not {mode:?}"))),
    };
    if workers == 0 || !(seconds.is_finite() && seconds > 0.0) {
        return Err(invalid(py, "workers and seconds must be positive"));
    }
    let n = node.node(py)?;
    let (rate, err) = py.detach(move || run(n, w, mode, workers, Duration::from_secs_f64(seconds), value));
    match err {
        Some(e) => Err(core_error(py, &e)),
        None => Ok(rate),
    }
}
