//! The Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{Metrics, RequestKind, BUCKET_LABELS, RESULTS};
use crate::node::{Node, NodeStatus};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const REQUESTS: &str = "quorumkv_requests_total";
const DURATION: &str = "quorumkv_request_duration_seconds";

impl Metrics {
    /// This node's metrics in the Prometheus text format: the request counters and
    /// histograms recorded on `self`, and gauges read from `node.status()` now. A stopped
    /// node contributes no gauges (its counters are still rendered).
    ///
    /// `node.status()` measures the data dir on disk: call this off async worker threads
    /// when the data dir is large (the HTTP server of [`super::serve`] does).
    ///
    /// Thread-safety: may run concurrently with recording; each sample is read atomically,
    /// samples of one scrape are not a single snapshot.
    pub fn render(&self, node: &Node) -> String {
        self.render_status(node.status().ok().as_ref())
    }

    pub(crate) fn render_status(&self, status: Option<&NodeStatus>) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        if let Some(s) = status {
            render_node(&mut out, s);
        }
        out
    }

    fn render_requests(&self, out: &mut String) {
        header(
            out,
            REQUESTS,
            "counter",
            "Requests handled, by etcd RPC (type) and result (ok, or the gRPC code name of the error).",
        );
        let other = self.other_results();
        for kind in RequestKind::ALL {
            let counts = &self.inner.requests[kind.index()];
            for (result, count) in RESULTS.iter().zip(counts) {
                let n = count.load(Ordering::Relaxed);
                if n > 0 {
                    request_sample(out, kind, result, n);
                }
            }
            for (_, result, n) in other.iter().filter(|(k, _, _)| *k == kind) {
                request_sample(out, kind, result, *n);
            }
        }

        header(out, DURATION, "histogram", "Time to handle a request, by etcd RPC (type), whatever its result.");
        for kind in RequestKind::ALL {
            let h = &self.inner.latency[kind.index()];
            let buckets: Vec<u64> = h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            let count: u64 = buckets.iter().sum();
            if count == 0 {
                continue;
            }
            let ty = kind.as_str();
            let mut cumulative = 0;
            for (le, n) in BUCKET_LABELS.iter().chain(["+Inf"].iter()).zip(&buckets) {
                cumulative += n;
                let _ = writeln!(out, "{DURATION}_bucket{{type=\"{ty}\",le=\"{le}\"}} {cumulative}");
            }
            let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{DURATION}_sum{{type=\"{ty}\"}} {sum}");
            let _ = writeln!(out, "{DURATION}_count{{type=\"{ty}\"}} {count}");
        }
    }
}

fn render_node(out: &mut String, s: &NodeStatus) {
    let flag = |b: bool| u64::from(b);
    let gauges: [(&str, &str, &str, String); 22] = [
        ("quorumkv_server_raft_term", "gauge", "The current Raft term.", s.term.to_string()),
        (
            "quorumkv_server_commit_index",
            "gauge",
            "The highest Raft log index known committed.",
            s.commit_index.to_string(),
        ),
        (
            "quorumkv_server_applied_index",
            "gauge",
            "The highest Raft log index applied to the state machine.",
            s.applied_index.to_string(),
        ),
        (
            "quorumkv_server_is_leader",
            "gauge",
            "1 if this member is the leader, else 0.",
            flag(s.is_leader).to_string(),
        ),
        ("quorumkv_server_has_leader", "gauge", "1 if a leader is known, else 0.", flag(s.has_leader).to_string()),
        (
            "quorumkv_server_is_learner",
            "gauge",
            "1 if this member is a non-voting learner, else 0.",
            flag(s.is_learner).to_string(),
        ),
        (
            "quorumkv_server_leader_changes_seen_total",
            "counter",
            "Times this member saw the leader change to a new, known leader since it started.",
            s.leader_changes.to_string(),
        ),
        ("quorumkv_watchers", "gauge", "Watches open on this member.", s.watch_count.to_string()),
        ("quorumkv_disk_wal_fsync_total", "counter", "fsyncs of the Raft log.", s.fsync_count.to_string()),
        (
            "quorumkv_disk_wal_fsync_seconds_total",
            "counter",
            "Time spent in fsyncs of the Raft log, seconds.",
            (s.fsync_total_us as f64 / 1e6).to_string(),
        ),
        (
            "quorumkv_disk_wal_appends_total",
            "counter",
            "Raft log appends acknowledged (each covers one or more entries).",
            s.log_appends.to_string(),
        ),
        ("quorumkv_disk_wal_entries_total", "counter", "Raft log entries appended.", s.log_entries.to_string()),
        (
            "quorumkv_forwarded_writes_total",
            "counter",
            "Writes this member forwarded to the leader as a follower.",
            s.forwarded_writes.to_string(),
        ),
        (
            "quorumkv_forwarded_write_batches_total",
            "counter",
            "Requests to the leader those writes took (concurrent writes share one).",
            s.forwarded_write_batches.to_string(),
        ),
        (
            "quorumkv_forwarded_reads_total",
            "counter",
            "Linearizable reads this member asked the leader a read index for as a follower.",
            s.forwarded_reads.to_string(),
        ),
        (
            "quorumkv_forwarded_read_rounds_total",
            "counter",
            "Read-index requests to the leader those reads took (concurrent reads share one).",
            s.forwarded_read_rounds.to_string(),
        ),
        (
            "quorumkv_forwarded_vouched_read_rounds_total",
            "counter",
            "Of those, the ones the leader answered without a heartbeat round, this member vouching for it.",
            s.forwarded_vouched_rounds.to_string(),
        ),
        (
            "quorumkv_vouched_read_rounds_total",
            "counter",
            "Read-index rounds this member ran as leader that a follower's vote confirmed, instead of a heartbeat round.",
            s.vouched_read_rounds.to_string(),
        ),
        (
            "quorumkv_mvcc_db_total_size_in_bytes",
            "gauge",
            "Size of the data dir on disk (allocated blocks), bytes.",
            s.db_size_bytes.to_string(),
        ),
        ("quorumkv_mvcc_current_revision", "gauge", "The current MVCC revision.", s.revision.to_string()),
        ("quorumkv_mvcc_compact_revision", "gauge", "The MVCC compaction point.", s.compact_revision.to_string()),
        (
            "quorumkv_server_raft_stopped",
            "gauge",
            "1 if Raft stopped on an unrecoverable error (the member takes no writes until restarted).",
            flag(s.fatal_error.is_some()).to_string(),
        ),
    ];
    for (name, ty, help, value) in gauges {
        header(out, name, ty, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

fn header(out: &mut String, name: &str, ty: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {ty}");
}

fn request_sample(out: &mut String, kind: RequestKind, result: &str, n: u64) {
    let _ = writeln!(out, "{REQUESTS}{{type=\"{}\",result=\"{}\"}} {n}", kind.as_str(), escape(result));
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::OK;
    use std::time::Duration;

    /// Checks the exposition format loosely: every sample line is `name{labels} value` or
    /// `name value`, its family has HELP and TYPE lines first, and values are numbers.
    /// Returns the samples as (name with labels, value).
    pub(crate) fn parse(text: &str) -> Vec<(String, f64)> {
        let mut typed = std::collections::HashSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE line");
                assert!(["counter", "gauge", "histogram"].contains(&ty), "{line}");
                typed.insert(name.to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line:?}"));
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    assert!(labels.ends_with('}'), "{line}");
                    let labels = &labels[..labels.len() - 1];
                    for pair in labels.split("\",") {
                        let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("label in {line:?}"));
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                        assert!(!v.is_empty(), "{line}");
                    }
                    name
                }
                None => series,
            };
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "{line}: no TYPE line before it");
            samples.push((series.to_string(), value));
        }
        samples
    }

    fn status() -> NodeStatus {
        NodeStatus {
            id: 7,
            name: "n1".into(),
            cluster_id: 9,
            term: 3,
            leader: Some(7),
            is_leader: true,
            is_learner: false,
            commit_index: 12,
            applied_index: 11,
            last_log_index: 12,
            revision: 5,
            compact_revision: 2,
            db_size_bytes: 4096,
            fsync_count: 10,
            fsync_total_us: 2_500_000,
            log_appends: 10,
            log_entries: 12,
            fatal_error: None,
            watch_count: 4,
            has_leader: true,
            leader_changes: 1,
            forwarded_writes: 40,
            forwarded_write_batches: 3,
            forwarded_reads: 50,
            forwarded_read_rounds: 4,
            forwarded_vouched_rounds: 3,
            vouched_read_rounds: 6,
        }
    }

    #[test]
    fn renders_parsable_text() {
        let m = Metrics::new();
        m.observe(RequestKind::Put, OK, Duration::from_micros(50));
        m.observe(RequestKind::Put, OK, Duration::from_millis(3));
        m.observe(RequestKind::Put, "Unavailable", Duration::from_secs(20));
        m.observe(RequestKind::Range, "we\"ird\\", Duration::from_millis(1));
        let text = m.render_status(Some(&status()));
        let samples: std::collections::HashMap<String, f64> = parse(&text).into_iter().collect();
        let get = |s: &str| *samples.get(s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
        assert_eq!(get("quorumkv_requests_total{type=\"put\",result=\"ok\"}"), 2.0);
        assert_eq!(get("quorumkv_requests_total{type=\"put\",result=\"Unavailable\"}"), 1.0);
        assert_eq!(get("quorumkv_requests_total{type=\"range\",result=\"we\\\"ird\\\\\"}"), 1.0);
        assert_eq!(get("quorumkv_request_duration_seconds_bucket{type=\"put\",le=\"0.0001\"}"), 1.0);
        assert_eq!(get("quorumkv_request_duration_seconds_bucket{type=\"put\",le=\"0.0025\"}"), 1.0);
        assert_eq!(get("quorumkv_request_duration_seconds_bucket{type=\"put\",le=\"0.005\"}"), 2.0);
        assert_eq!(get("quorumkv_request_duration_seconds_bucket{type=\"put\",le=\"10\"}"), 2.0);
        assert_eq!(get("quorumkv_request_duration_seconds_bucket{type=\"put\",le=\"+Inf\"}"), 3.0);
        assert_eq!(get("quorumkv_request_duration_seconds_count{type=\"put\"}"), 3.0);
        assert!((get("quorumkv_request_duration_seconds_sum{type=\"put\"}") - 20.00305).abs() < 1e-9);
        assert!(!text.contains("type=\"txn\""), "kinds never seen are left out");
        assert_eq!(get("quorumkv_server_raft_term"), 3.0);
        assert_eq!(get("quorumkv_server_commit_index"), 12.0);
        assert_eq!(get("quorumkv_server_applied_index"), 11.0);
        assert_eq!(get("quorumkv_server_is_leader"), 1.0);
        assert_eq!(get("quorumkv_server_has_leader"), 1.0);
        assert_eq!(get("quorumkv_server_leader_changes_seen_total"), 1.0);
        assert_eq!(get("quorumkv_watchers"), 4.0);
        assert_eq!(get("quorumkv_disk_wal_fsync_total"), 10.0);
        assert_eq!(get("quorumkv_disk_wal_fsync_seconds_total"), 2.5);
        assert_eq!(get("quorumkv_forwarded_writes_total"), 40.0);
        assert_eq!(get("quorumkv_forwarded_write_batches_total"), 3.0);
        assert_eq!(get("quorumkv_forwarded_reads_total"), 50.0);
        assert_eq!(get("quorumkv_forwarded_read_rounds_total"), 4.0);
        assert_eq!(get("quorumkv_forwarded_vouched_read_rounds_total"), 3.0);
        assert_eq!(get("quorumkv_vouched_read_rounds_total"), 6.0);
        assert_eq!(get("quorumkv_mvcc_db_total_size_in_bytes"), 4096.0);
        assert_eq!(get("quorumkv_mvcc_current_revision"), 5.0);
        assert_eq!(get("quorumkv_mvcc_compact_revision"), 2.0);
        assert_eq!(get("quorumkv_server_raft_stopped"), 0.0);
    }

    #[test]
    fn empty_metrics_without_a_node_still_parse() {
        let text = Metrics::new().render_status(None);
        assert!(parse(&text).is_empty());
        assert!(text.contains("# TYPE quorumkv_requests_total counter"));
    }
}
