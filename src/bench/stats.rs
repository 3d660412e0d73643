//! Latency summaries and the report of a run, as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The `p`th percentile (0 < p ≤ 100) of ascending `sorted` samples, by nearest rank:
/// the smallest sample that at least `p` % of the samples are less than or equal to.
/// Zero for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    // The epsilon keeps binary fractions (99.9 % of 1000 = 999.0000000000001) on their rank.
    let rank = (p / 100.0 * n as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// A latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples summarised.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(rename = "p99_9")]
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Latency {
    /// Summarises samples in microseconds (sorts them).
    pub fn from_micros(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Latency {
            count: samples.len() as u64,
            p50: ms(percentile(samples, 50.0)),
            p90: ms(percentile(samples, 90.0)),
            p99: ms(percentile(samples, 99.0)),
            p999: ms(percentile(samples, 99.9)),
            max: ms(samples.last().copied().unwrap_or(0)),
            mean: if samples.is_empty() { 0.0 } else { sum as f64 / samples.len() as f64 / 1000.0 },
        }
    }
}

/// Counts of the txn-cas workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TxnCounts {
    /// Txns whose compare held: the put was applied.
    pub succeeded: u64,
    /// Txns whose compare failed: the key changed between the read and the Txn.
    pub failed: u64,
}

/// What the watchers of the watch workload received, against what was written.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WatchCheck {
    /// Watch streams.
    pub watchers: u64,
    /// Events every watcher should have seen: the writer's successful puts.
    pub expected_per_watcher: u64,
    /// Events received, all watchers together.
    pub received: u64,
    /// Expected events a watcher never received, all watchers together.
    pub missing: u64,
    /// Events a watcher received again (same revision), all watchers together.
    pub duplicate: u64,
    /// Events that came after an event of a higher revision on the same stream.
    pub out_of_order: u64,
    /// Events of revisions the writer did not report (e.g. a put that timed out but was
    /// applied, or another client writing under the prefix).
    pub unexpected: u64,
    /// Watch streams that ended with an error or a cancellation, by message.
    pub stream_errors: BTreeMap<String, u64>,
    /// Events delivered per second, all watchers together, from the first put until the
    /// last watcher had everything.
    pub events_per_sec: f64,
}

impl WatchCheck {
    /// Adds one watcher's `received` revisions, in arrival order, checked against the
    /// ascending, distinct revisions of the puts in `expected`.
    pub fn add_watcher(&mut self, expected: &[i64], received: &[i64]) {
        let mut seen = std::collections::HashSet::with_capacity(received.len());
        let mut highest = i64::MIN;
        for &rev in received {
            if !seen.insert(rev) {
                self.duplicate += 1;
                continue;
            }
            if rev < highest {
                self.out_of_order += 1;
            }
            highest = highest.max(rev);
            if expected.binary_search(&rev).is_err() {
                self.unexpected += 1;
            }
        }
        self.watchers += 1;
        self.expected_per_watcher = expected.len() as u64;
        self.received += received.len() as u64;
        self.missing += expected.iter().filter(|r| !seen.contains(r)).count() as u64;
    }

    /// True when every watcher saw every expected event once, in order, and no stream failed.
    pub fn clean(&self) -> bool {
        self.missing == 0
            && self.duplicate == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.stream_errors.is_empty()
    }
}

/// The outcome of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Workload name.
    pub workload: String,
    /// Endpoints connected to.
    pub endpoints: Vec<String>,
    /// Concurrent requesters.
    pub clients: u64,
    /// gRPC connections.
    pub conns: u64,
    /// Key length in bytes.
    pub key_size: u64,
    /// Value length in bytes.
    pub val_size: u64,
    /// Distinct keys.
    pub key_space_size: u64,
    /// Read consistency ("l" or "s") of range and txn-cas.
    pub consistency: String,
    /// Requests issued in the measured phase.
    pub total: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Failed requests by "gRPC code: message".
    pub error_counts: BTreeMap<String, u64>,
    /// Wall time of the measured phase, in seconds.
    pub duration_s: f64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Latency of the successful requests.
    pub latency_ms: Latency,
    /// txn-cas only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnCounts>,
    /// watch only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchCheck>,
}

impl Report {
    /// True when no request failed and the watch check (if any) found nothing wrong.
    pub fn clean(&self) -> bool {
        self.errors == 0 && self.watch.as_ref().is_none_or(WatchCheck::clean)
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report serialises")
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "workload:    {} ({} B keys, {} B values, {} keys)",
            self.workload, self.key_size, self.val_size, self.key_space_size
        );
        let _ = writeln!(s, "endpoints:   {}", self.endpoints.join(","));
        let _ = writeln!(s, "clients:     {} over {} connection(s)", self.clients, self.conns);
        let _ = writeln!(s, "requests:    {} ({} ok, {} errors)", self.total, self.ok, self.errors);
        let _ = writeln!(s, "duration:    {:.3} s", self.duration_s);
        let _ = writeln!(s, "throughput:  {:.1} ops/s", self.ops_per_sec);
        let _ = writeln!(
            s,
            "latency ms:  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        if let Some(t) = &self.txn {
            let _ = writeln!(s, "txn-cas:     {} succeeded, {} failed compares", t.succeeded, t.failed);
        }
        if let Some(w) = &self.watch {
            let _ = writeln!(
                s,
                "watch:       {} watchers x {} events expected; {} received ({:.0} events/s)",
                w.watchers, w.expected_per_watcher, w.received, w.events_per_sec
            );
            let _ = writeln!(
                s,
                "watch check: {} missing, {} duplicate, {} out of order, {} unexpected{}",
                w.missing,
                w.duplicate,
                w.out_of_order,
                w.unexpected,
                if w.clean() { " (OK)" } else { " (FAILED)" }
            );
            for (e, n) in &w.stream_errors {
                let _ = writeln!(s, "  stream error x{n}: {e}");
            }
        }
        if !self.error_counts.is_empty() {
            let _ = writeln!(s, "errors:");
            for (e, n) in &self.error_counts {
                let _ = writeln!(s, "  {n:>8}  {e}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[7], 99.9), 7);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 99.9), 100);
        assert_eq!(percentile(&v, 100.0), 100);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 51.0), 3);
    }

    #[test]
    fn latency_summary_in_ms() {
        let mut v: Vec<u64> = (1..=1000).rev().map(|i| i * 10).collect(); // 10 us .. 10 ms, unsorted
        let l = Latency::from_micros(&mut v);
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50, 5.0);
        assert_eq!(l.p90, 9.0);
        assert_eq!(l.p99, 9.9);
        assert_eq!(l.p999, 9.99);
        assert_eq!(l.max, 10.0);
        assert!((l.mean - 5.005).abs() < 1e-9);
        assert_eq!(Latency::from_micros(&mut []), Latency::default());
    }

    #[test]
    fn watch_check_counts() {
        let expected = [10, 11, 12, 13, 14];
        let mut w = WatchCheck::default();
        w.add_watcher(&expected, &[10, 11, 12, 13, 14]);
        assert!(w.clean());
        w.add_watcher(&expected, &[10, 12, 11, 11, 14, 99]);
        assert_eq!((w.watchers, w.expected_per_watcher, w.received), (2, 5, 11));
        assert_eq!(w.missing, 1); // 13
        assert_eq!(w.duplicate, 1); // the second 11
        assert_eq!(w.out_of_order, 1); // 11 after 12
        assert_eq!(w.unexpected, 1); // 99
        assert!(!w.clean());
        let mut e = WatchCheck::default();
        e.add_watcher(&expected, &expected);
        e.stream_errors.insert("Unavailable: gone".into(), 1);
        assert!(!e.clean());
    }

    #[test]
    fn report_json_and_text() {
        let mut r = Report {
            workload: "txn-cas".into(),
            total: 10,
            ok: 9,
            errors: 1,
            txn: Some(TxnCounts { succeeded: 8, failed: 1 }),
            ..Report::default()
        };
        r.error_counts.insert("Unavailable: etcdserver: request timed out".into(), 1);
        assert!(!r.clean());
        let j: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(j["ok"], 9);
        assert_eq!(j["txn"]["succeeded"], 8);
        assert_eq!(j["error_counts"]["Unavailable: etcdserver: request timed out"], 1);
        assert!(j["latency_ms"]["p99_9"].is_number());
        assert!(j.get("watch").is_none());
        let t = r.to_text();
        assert!(t.contains("8 succeeded, 1 failed"), "{t}");
        assert!(t.contains("request timed out"), "{t}");
        r.errors = 0;
        r.watch = Some(WatchCheck::default());
        assert!(r.clean());
    }
}
