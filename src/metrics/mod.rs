//! Per-node Prometheus metrics and the `/metrics` + `/health` HTTP endpoint.
//!
//! There is no process-global registry: every node gets its own [`Metrics`] (several nodes
//! in one process keep separate counts), and [`serve`] exposes one node's metrics on one
//! address. Request counters and latency histograms are recorded by the caller (the gRPC
//! layer) through [`Metrics::observe`], [`Metrics::track`] or [`Metrics::start`]; the
//! node's gauges (Raft term, indexes, leader, watchers, fsync, db size, revisions) are
//! read from [`Node::status`] at scrape time, so nothing on the write path updates them.
//!
//! ```no_run
//! # async fn demo(node: quorumkv::Node) -> quorumkv::Result<()> {
//! use quorumkv::metrics::{self, Metrics, RequestKind};
//! let m = Metrics::new();
//! let server = metrics::serve("127.0.0.1:2381", node.clone(), m.clone()).await?;
//! // In a request handler:
//! let _ = m.track(RequestKind::Put, node.put(quorumkv::PutRequest::new("k", "v"))).await;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod http;
mod render;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;

pub use http::{health, serve, MetricsServer};
pub use render::CONTENT_TYPE;

/// The etcd v3 RPC a request belongs to (the `type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `KV.Range`.
    Range,
    /// `KV.Put`.
    Put,
    /// `KV.DeleteRange`.
    DeleteRange,
    /// `KV.Txn`.
    Txn,
    /// `KV.Compact`.
    Compact,
    /// `Lease.LeaseGrant`.
    LeaseGrant,
    /// `Lease.LeaseRevoke`.
    LeaseRevoke,
    /// `Lease.LeaseKeepAlive` (one per keep-alive request on the stream).
    LeaseKeepAlive,
    /// `Lease.LeaseTimeToLive`.
    LeaseTimeToLive,
    /// `Lease.LeaseLeases`.
    LeaseLeases,
    /// A create request on `Watch.Watch`.
    WatchCreate,
    /// `Cluster.MemberAdd`.
    MemberAdd,
    /// `Cluster.MemberRemove`.
    MemberRemove,
    /// `Cluster.MemberUpdate`.
    MemberUpdate,
    /// `Cluster.MemberList`.
    MemberList,
    /// `Cluster.MemberPromote`.
    MemberPromote,
    /// `Maintenance.Status`.
    Status,
    /// `Maintenance.Hash`.
    Hash,
    /// `Maintenance.HashKV`.
    HashKv,
    /// `Maintenance.Defragment`.
    Defragment,
    /// `Maintenance.Snapshot`.
    Snapshot,
    /// `Maintenance.MoveLeader`.
    MoveLeader,
    /// `Maintenance.Alarm`.
    Alarm,
}

const KINDS: usize = 23;

impl RequestKind {
    /// Every kind, in label order.
    pub const ALL: [RequestKind; KINDS] = [
        RequestKind::Range,
        RequestKind::Put,
        RequestKind::DeleteRange,
        RequestKind::Txn,
        RequestKind::Compact,
        RequestKind::LeaseGrant,
        RequestKind::LeaseRevoke,
        RequestKind::LeaseKeepAlive,
        RequestKind::LeaseTimeToLive,
        RequestKind::LeaseLeases,
        RequestKind::WatchCreate,
        RequestKind::MemberAdd,
        RequestKind::MemberRemove,
        RequestKind::MemberUpdate,
        RequestKind::MemberList,
        RequestKind::MemberPromote,
        RequestKind::Status,
        RequestKind::Hash,
        RequestKind::HashKv,
        RequestKind::Defragment,
        RequestKind::Snapshot,
        RequestKind::MoveLeader,
        RequestKind::Alarm,
    ];

    /// The `type` label value (snake case: `range`, `lease_keep_alive`, `hash_kv`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Range => "range",
            RequestKind::Put => "put",
            RequestKind::DeleteRange => "delete_range",
            RequestKind::Txn => "txn",
            RequestKind::Compact => "compact",
            RequestKind::LeaseGrant => "lease_grant",
            RequestKind::LeaseRevoke => "lease_revoke",
            RequestKind::LeaseKeepAlive => "lease_keep_alive",
            RequestKind::LeaseTimeToLive => "lease_time_to_live",
            RequestKind::LeaseLeases => "lease_leases",
            RequestKind::WatchCreate => "watch_create",
            RequestKind::MemberAdd => "member_add",
            RequestKind::MemberRemove => "member_remove",
            RequestKind::MemberUpdate => "member_update",
            RequestKind::MemberList => "member_list",
            RequestKind::MemberPromote => "member_promote",
            RequestKind::Status => "status",
            RequestKind::Hash => "hash",
            RequestKind::HashKv => "hash_kv",
            RequestKind::Defragment => "defragment",
            RequestKind::Snapshot => "snapshot",
            RequestKind::MoveLeader => "move_leader",
            RequestKind::Alarm => "alarm",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result label of a successful request.
pub const OK: &str = "ok";

/// Result labels with a fixed counter slot: `ok`, then the gRPC code names in code order
/// (index = numeric gRPC code).
const RESULTS: [&str; 17] = [
    OK,
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The result label of a request whose future was dropped before it finished (the client
/// went away), as gRPC servers report it.
pub const CANCELED: &str = RESULTS[1];

/// The result label for a gRPC status code: `ok` for `Ok`, else the code's name
/// (`Unavailable`, `InvalidArgument`, ...).
pub fn code_label(code: tonic::Code) -> &'static str {
    RESULTS.get(code as usize).copied().unwrap_or("Unknown")
}

/// Upper bounds of the latency buckets, seconds (as printed in the `le` label).
const BUCKET_LABELS: [&str; 16] = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10",
];
/// The same bounds in nanoseconds.
const BUCKET_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Maps a request's outcome to its result label.
///
/// Implemented for [`Error`] (etcd's gRPC code for each error), [`tonic::Status`] (its
/// code) and `Result`s of those (`ok` for `Ok`). The gRPC layer should label from the
/// `Status` it actually returns, so the metrics agree with what clients saw.
pub trait ResultLabel {
    /// `ok`, or the gRPC code name of the error.
    fn result_label(&self) -> &'static str;
}

impl ResultLabel for tonic::Status {
    fn result_label(&self) -> &'static str {
        code_label(self.code())
    }
}

impl ResultLabel for Error {
    /// The gRPC code etcd answers this error with (see [`crate::server::grpc_code`]).
    fn result_label(&self) -> &'static str {
        code_label(crate::server::grpc_code(self))
    }
}

impl<T, E: ResultLabel> ResultLabel for Result<T, E> {
    fn result_label(&self) -> &'static str {
        match self {
            Ok(_) => OK,
            Err(e) => e.result_label(),
        }
    }
}

/// A cumulative-on-read latency histogram: one atomic per bucket (non-cumulative; the
/// last slot is `+Inf`) and the sum in nanoseconds.
struct Histogram {
    buckets: [AtomicU64; BUCKET_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Histogram { buckets: [const { AtomicU64::new(0) }; BUCKET_NS.len() + 1], sum_ns: AtomicU64::new(0) }
    }

    fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKET_NS.partition_point(|&bound| bound < ns);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

struct Inner {
    /// Requests by kind and result slot (see `RESULTS`).
    requests: [[AtomicU64; RESULTS.len()]; KINDS],
    /// Requests whose result label is not in `RESULTS`; rare, so a locked list.
    other_results: Mutex<Vec<(RequestKind, &'static str, u64)>>,
    latency: [Histogram; KINDS],
}

/// One node's request metrics: counters by request kind and result, and a latency
/// histogram per kind.
///
/// Cloning is cheap (an `Arc`); all clones share the counts. Thread-safety: `Send + Sync`;
/// recording is a few relaxed atomic adds in fixed arrays (no lock, no allocation) and may
/// run concurrently with other recordings and with [`Metrics::render`].
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = RequestKind::ALL.iter().map(|k| self.latency_count(*k)).sum();
        f.debug_struct("Metrics").field("requests", &total).finish()
    }
}

impl Metrics {
    /// New, zeroed metrics for one node.
    pub fn new() -> Self {
        Metrics {
            inner: Arc::new(Inner {
                requests: [const { [const { AtomicU64::new(0) }; RESULTS.len()] }; KINDS],
                other_results: Mutex::new(Vec::new()),
                latency: [const { Histogram::new() }; KINDS],
            }),
        }
    }

    /// Records one finished request: its kind, its result label ([`OK`] or a gRPC code
    /// name, see [`code_label`] and [`ResultLabel`]) and how long it took.
    pub fn observe(&self, kind: RequestKind, result: &'static str, elapsed: Duration) {
        let k = kind.index();
        match RESULTS.iter().position(|r| *r == result) {
            Some(slot) => {
                self.inner.requests[k][slot].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut other = self.inner.other_results.lock().unwrap_or_else(|e| e.into_inner());
                match other.iter_mut().find(|(kd, r, _)| *kd == kind && *r == result) {
                    Some(entry) => entry.2 += 1,
                    None => other.push((kind, result, 1)),
                }
            }
        }
        self.inner.latency[k].observe(elapsed);
    }

    /// Starts timing one request; finish it with [`RequestTimer::finish`]. A timer dropped
    /// unfinished records the request as [`CANCELED`] (the handler's future was dropped).
    pub fn start(&self, kind: RequestKind) -> RequestTimer {
        RequestTimer { metrics: self.clone(), kind, started: Instant::now(), done: false }
    }

    /// Awaits `fut` and records it as one request of `kind`, labelled by its outcome (see
    /// [`ResultLabel`]). If the returned future is dropped before `fut` finishes, the
    /// request counts as [`CANCELED`].
    pub async fn track<T, E, F>(&self, kind: RequestKind, fut: F) -> Result<T, E>
    where
        E: ResultLabel,
        F: Future<Output = Result<T, E>>,
    {
        let timer = self.start(kind);
        let result = fut.await;
        timer.finish(result.result_label());
        result
    }

    /// Requests of `kind` recorded with `result` so far.
    pub fn request_count(&self, kind: RequestKind, result: &str) -> u64 {
        match RESULTS.iter().position(|r| *r == result) {
            Some(slot) => self.inner.requests[kind.index()][slot].load(Ordering::Relaxed),
            None => self.other_results().iter().find(|(k, r, _)| *k == kind && *r == result).map_or(0, |e| e.2),
        }
    }

    /// Requests of `kind` recorded so far, whatever their result (the histogram's count).
    pub fn latency_count(&self, kind: RequestKind) -> u64 {
        self.inner.latency[kind.index()].buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn other_results(&self) -> Vec<(RequestKind, &'static str, u64)> {
        self.inner.other_results.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Times one request from [`Metrics::start`] until [`RequestTimer::finish`] or drop.
///
/// Thread-safety: `Send + Sync`; it may be moved into another task (a stream) and
/// finished there.
#[must_use = "a dropped timer records the request as Canceled"]
#[derive(Debug)]
pub struct RequestTimer {
    metrics: Metrics,
    kind: RequestKind,
    started: Instant,
    done: bool,
}

impl RequestTimer {
    /// Records the request with `result` ([`OK`] or a gRPC code name) and the time since
    /// [`Metrics::start`].
    pub fn finish(mut self, result: &'static str) {
        self.done = true;
        self.metrics.observe(self.kind, result, self.started.elapsed());
    }

    /// Records the request labelled by its outcome (see [`ResultLabel`]).
    pub fn finish_with(self, outcome: &impl ResultLabel) {
        self.finish(outcome.result_label())
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.observe(self.kind, CANCELED, self.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_slots() {
        for (i, k) in RequestKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        let names: std::collections::HashSet<_> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), KINDS);
    }

    #[test]
    fn code_labels_are_grpc_names() {
        assert_eq!(code_label(tonic::Code::Ok), "ok");
        assert_eq!(code_label(tonic::Code::Unavailable), "Unavailable");
        assert_eq!(code_label(tonic::Code::Unauthenticated), "Unauthenticated");
        assert_eq!(code_label(tonic::Code::Cancelled), CANCELED);
        assert_eq!(tonic::Status::out_of_range("x").result_label(), "OutOfRange");
        assert_eq!(Error::Compacted { compact_revision: 3 }.result_label(), "OutOfRange");
        assert_eq!(Error::NoLeader.result_label(), "Unavailable");
        assert_eq!(Error::LeaseNotFound.result_label(), "NotFound");
        assert_eq!(Error::EmptyKey.result_label(), "InvalidArgument");
        assert_eq!(Error::NotLeader { leader: None }.result_label(), "FailedPrecondition");
        assert_eq!(Ok::<(), Error>(()).result_label(), OK);
    }

    #[test]
    fn observe_counts_by_kind_and_result() {
        let m = Metrics::new();
        m.observe(RequestKind::Put, OK, Duration::from_micros(50));
        m.observe(RequestKind::Put, OK, Duration::from_millis(3));
        m.observe(RequestKind::Put, "Unavailable", Duration::from_secs(20));
        m.observe(RequestKind::Range, "Custom", Duration::from_millis(1));
        m.observe(RequestKind::Range, "Custom", Duration::from_millis(1));
        assert_eq!(m.request_count(RequestKind::Put, OK), 2);
        assert_eq!(m.request_count(RequestKind::Put, "Unavailable"), 1);
        assert_eq!(m.request_count(RequestKind::Range, "Custom"), 2);
        assert_eq!(m.request_count(RequestKind::Range, OK), 0);
        assert_eq!(m.latency_count(RequestKind::Put), 3);
        assert_eq!(m.latency_count(RequestKind::Txn), 0);
        let h = &m.inner.latency[RequestKind::Put.index()];
        let b: Vec<u64> = h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        assert_eq!(b[0], 1, "50us is in the 0.0001 bucket");
        assert_eq!(b[5], 1, "3ms is in the 0.005 bucket");
        assert_eq!(b[16], 1, "20s is only in +Inf");
        // A clone shares the counts; a new Metrics does not.
        let c = m.clone();
        c.observe(RequestKind::Put, OK, Duration::ZERO);
        assert_eq!(m.request_count(RequestKind::Put, OK), 3);
        assert_eq!(Metrics::new().request_count(RequestKind::Put, OK), 0);
    }

    #[test]
    fn bucket_bounds_are_inclusive() {
        let h = Histogram::new();
        h.observe(Duration::from_nanos(BUCKET_NS[3]));
        h.observe(Duration::from_nanos(BUCKET_NS[3] + 1));
        assert_eq!(h.buckets[3].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[4].load(Ordering::Relaxed), 1);
        for (label, ns) in BUCKET_LABELS.iter().zip(BUCKET_NS) {
            let secs: f64 = label.parse().unwrap();
            assert_eq!((secs * 1e9).round() as u64, ns);
        }
    }

    #[tokio::test]
    async fn track_and_timers_label_outcomes() {
        let m = Metrics::new();
        let ok: Result<u8, Error> = m.track(RequestKind::Txn, async { Ok(1) }).await;
        assert_eq!(ok, Ok(1));
        let err: Result<u8, tonic::Status> =
            m.track(RequestKind::Txn, async { Err(tonic::Status::unavailable("x")) }).await;
        assert!(err.is_err());
        drop(m.start(RequestKind::WatchCreate));
        m.start(RequestKind::Alarm).finish_with(&Err::<(), _>(Error::Timeout));
        // A tracked future dropped before it finishes counts as Canceled.
        let pending = m.track(RequestKind::Range, futures::future::pending::<Result<(), Error>>());
        let _ = tokio::time::timeout(Duration::from_millis(1), pending).await;
        assert_eq!(m.request_count(RequestKind::Txn, OK), 1);
        assert_eq!(m.request_count(RequestKind::Txn, "Unavailable"), 1);
        assert_eq!(m.request_count(RequestKind::WatchCreate, CANCELED), 1);
        assert_eq!(m.request_count(RequestKind::Alarm, "Unavailable"), 1);
        assert_eq!(m.request_count(RequestKind::Range, CANCELED), 1);
    }
}
