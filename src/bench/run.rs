//! Connections, the request loops of the put, range and txn-cas workloads, and the
//! progress line.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use super::options::{Consistency, Options, Workload};
use super::stats::{Latency, Report, TxnCounts};
use crate::server::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::server::pb::etcdserverpb::kv_client::KvClient;
use crate::server::pb::etcdserverpb::request_op::Request;
use crate::server::pb::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// Runs the workload of `opts` and reports on it.
pub(super) async fn run(opts: &Options) -> Result<Report, String> {
    if opts.workload == Workload::Watch {
        return super::watch::run(opts).await;
    }
    let chans = connect(opts, true).await?;
    if opts.workload == Workload::Range {
        // Reads of absent keys would skip the value path: write every key once, untimed.
        let mut fill = opts.clone();
        fill.workload = Workload::Put;
        fill.sequential_keys = true;
        eprintln!("writing the {} keys of the key space first", opts.key_space_size);
        let phase = run_phase(&fill, &chans, opts.key_space_size, "fill").await;
        if phase.errors > 0 {
            return Err(format!("writing the key space failed: {:?}", phase.error_counts));
        }
    }
    let phase = run_phase(opts, &chans, opts.total, opts.workload.name()).await;
    Ok(phase.report(opts))
}

/// A `Display` of an error and its sources: tonic's transport errors say little on top.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `--conns` channels, connection `i` to endpoint `i mod n`. With `deadline` every unary
/// request gets `--timeout` (watch streams must not).
pub(super) async fn connect(opts: &Options, deadline: bool) -> Result<Vec<Channel>, String> {
    let mut chans = Vec::with_capacity(opts.conns);
    for i in 0..opts.conns {
        let ep = &opts.endpoints[i % opts.endpoints.len()];
        let uri = if ep.contains("://") { ep.clone() } else { format!("http://{ep}") };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| format!("bad endpoint {ep:?}: {}", error_chain(&e)))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if deadline {
            endpoint = endpoint.timeout(opts.timeout);
        }
        let chan = endpoint.connect().await.map_err(|e| format!("cannot connect to {ep}: {}", error_chain(&e)))?;
        chans.push(chan);
    }
    Ok(chans)
}

/// How a failed request is counted: "code: message".
pub(super) fn status_key(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Counters the progress line reads.
#[derive(Default)]
pub(super) struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
}

/// Prints the progress line to stderr until aborted: every second on a terminal
/// (overwriting itself), every 5 s otherwise.
fn spawn_progress(label: String, total: u64, progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    let tty = std::io::stderr().is_terminal();
    let every = Duration::from_secs(if tty { 1 } else { 5 });
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = (start, 0u64);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let done = progress.done.load(Ordering::Relaxed);
            let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, done);
            let line = format!(
                "{label}: {done}/{total} requests, {rate:.0} ops/s, {} errors, {:.0} s",
                progress.errors.load(Ordering::Relaxed),
                now.duration_since(start).as_secs_f64()
            );
            let mut err = std::io::stderr().lock();
            let _ = if tty { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
            let _ = err.flush();
        }
    })
}

/// What the request loops of one phase gathered.
#[derive(Default)]
pub(super) struct Phase {
    /// Latency of each successful request, in microseconds.
    pub micros: Vec<u64>,
    /// Requests issued.
    pub total: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed requests by [`status_key`].
    pub error_counts: BTreeMap<String, u64>,
    /// txn-cas outcomes.
    pub txn: TxnCounts,
    /// Revisions of the successful puts (put and watch workloads).
    pub revisions: Vec<i64>,
    /// Wall time of the phase.
    pub duration: Duration,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.micros.extend(other.micros);
        self.total += other.total;
        self.errors += other.errors;
        for (k, n) in other.error_counts {
            *self.error_counts.entry(k).or_default() += n;
        }
        self.txn.succeeded += other.txn.succeeded;
        self.txn.failed += other.txn.failed;
        self.revisions.extend(other.revisions);
    }

    /// The report of the phase (consumes the latency samples).
    pub fn report(mut self, opts: &Options) -> Report {
        let ok = self.total - self.errors;
        let secs = self.duration.as_secs_f64();
        Report {
            workload: opts.workload.name().to_string(),
            endpoints: opts.endpoints.clone(),
            clients: opts.clients as u64,
            conns: opts.conns as u64,
            key_size: opts.key_size as u64,
            val_size: opts.val_size as u64,
            key_space_size: opts.key_space_size,
            consistency: match opts.consistency {
                Consistency::Linearizable => "l".to_string(),
                Consistency::Serializable => "s".to_string(),
            },
            total: self.total,
            ok,
            errors: self.errors,
            error_counts: std::mem::take(&mut self.error_counts),
            duration_s: secs,
            ops_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            latency_ms: Latency::from_micros(&mut self.micros),
            txn: (opts.workload == Workload::TxnCas).then(|| self.txn.clone()),
            watch: None,
        }
    }
}

/// State the clients of a phase share.
struct Shared {
    opts: Options,
    total: u64,
    next: AtomicU64,
    progress: Arc<Progress>,
    value: Vec<u8>,
}

/// splitmix64: a small, seedable generator for picking keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Runs `total` requests of `opts.workload` (put, range or txn-cas; the watch workload's
/// writer puts) from `opts.clients` tasks, client `i` on `chans[i % len]`.
pub(super) async fn run_phase(opts: &Options, chans: &[Channel], total: u64, label: &str) -> Phase {
    let progress = Arc::new(Progress::default());
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        total,
        next: AtomicU64::new(0),
        progress: progress.clone(),
        value: (0..opts.val_size).map(|i| b'a' + (i % 26) as u8).collect(),
    });
    let ticker = spawn_progress(label.to_string(), total, progress.clone());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let start = Instant::now();
    let clients: Vec<_> = (0..opts.clients)
        .map(|i| {
            let kv = KvClient::new(chans[i % chans.len()].clone());
            let rng = Rng(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            tokio::spawn(client(shared.clone(), kv, rng))
        })
        .collect();
    let mut phase = Phase::default();
    for c in clients {
        match c.await {
            Ok(p) => phase.merge(p),
            Err(e) => {
                phase.errors += 1;
                *phase.error_counts.entry(format!("client task failed: {e}")).or_default() += 1;
            }
        }
    }
    phase.duration = start.elapsed();
    ticker.abort();
    if std::io::stderr().is_terminal() && phase.duration >= Duration::from_secs(1) {
        eprintln!(); // end the progress line
    }
    phase
}

/// What one request did, on success.
enum Outcome {
    Put(i64),
    Read,
    Cas(bool),
}

async fn client(shared: Arc<Shared>, mut kv: KvClient<Channel>, mut rng: Rng) -> Phase {
    let opts = &shared.opts;
    let serializable = opts.consistency == Consistency::Serializable;
    let mut out = Phase::default();
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= shared.total {
            break;
        }
        let index = if opts.sequential_keys { n % opts.key_space_size } else { rng.next() % opts.key_space_size };
        let key = opts.key(index);
        let put = PutRequest { key: key.clone(), value: shared.value.clone(), ..Default::default() };
        let start = Instant::now();
        let result = match opts.workload {
            Workload::Put | Workload::Watch => {
                kv.put(put).await.map(|r| Outcome::Put(r.into_inner().header.map_or(0, |h| h.revision)))
            }
            Workload::Range => {
                kv.range(RangeRequest { key, serializable, ..Default::default() }).await.map(|_| Outcome::Read)
            }
            Workload::TxnCas => cas(&mut kv, key, put, serializable).await.map(Outcome::Cas),
        };
        let micros = start.elapsed().as_micros() as u64;
        out.total += 1;
        match result {
            Ok(outcome) => {
                out.micros.push(micros);
                match outcome {
                    Outcome::Put(rev) => out.revisions.push(rev),
                    Outcome::Read => {}
                    Outcome::Cas(true) => out.txn.succeeded += 1,
                    Outcome::Cas(false) => out.txn.failed += 1,
                }
            }
            Err(status) => {
                out.errors += 1;
                shared.progress.errors.fetch_add(1, Ordering::Relaxed);
                *out.error_counts.entry(status_key(&status)).or_default() += 1;
            }
        }
        shared.progress.done.fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// Reads `key`'s mod_revision (0 when absent), then puts it in a Txn that holds only if the
/// mod_revision is unchanged. Returns whether the compare held.
async fn cas(
    kv: &mut KvClient<Channel>,
    key: Vec<u8>,
    put: PutRequest,
    serializable: bool,
) -> Result<bool, tonic::Status> {
    let read = kv.range(RangeRequest { key: key.clone(), serializable, ..Default::default() }).await?.into_inner();
    let rev = read.kvs.first().map_or(0, |kv| kv.mod_revision);
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key,
            range_end: Vec::new(),
            target_union: Some(TargetUnion::ModRevision(rev)),
        }],
        success: vec![RequestOp { request: Some(Request::RequestPut(put)) }],
        failure: Vec::new(),
    };
    Ok(kv.txn(txn).await?.into_inner().succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_covers_a_small_key_space() {
        let mut rng = Rng(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[(rng.next() % 10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn phase_report_adds_up() {
        let opts = Options { workload: Workload::TxnCas, ..Options::default() };
        let mut a = Phase { micros: vec![1000, 3000], total: 3, errors: 1, ..Phase::default() };
        a.error_counts.insert("Unavailable: x".into(), 1);
        a.txn = TxnCounts { succeeded: 1, failed: 1 };
        let mut b = Phase { micros: vec![2000], total: 1, ..Phase::default() };
        b.txn.succeeded = 1;
        a.merge(b);
        a.duration = Duration::from_secs(2);
        let r = a.report(&opts);
        assert_eq!((r.total, r.ok, r.errors), (4, 3, 1));
        assert_eq!(r.ops_per_sec, 1.5);
        assert_eq!(r.latency_ms.p50, 2.0);
        assert_eq!(r.latency_ms.max, 3.0);
        assert_eq!(r.txn, Some(TxnCounts { succeeded: 2, failed: 1 }));
        assert_eq!(r.error_counts["Unavailable: x"], 1);
    }
}
