//! `quorumkv bench`: a load generator for any etcd v3 gRPC endpoint.
//!
//! It speaks only etcd's public client API (the stubs in [`crate::server::pb`]), so the same
//! client measures a quorumkv cluster and an etcd cluster alike; `scripts/bench-vs-etcd`
//! runs it against both. Workloads: `put`, `range`, `txn-cas` and `watch`. See [`HELP`] or
//! `quorumkv bench --help` for the options, and `docs/benchmarks.md` for how to read the
//! report.

mod options;
mod run;
mod stats;
mod watch;

use std::process::ExitCode;

pub use options::{Consistency, Options, Workload};
pub use stats::{percentile, Latency};

/// The text of `quorumkv bench --help`.
pub const HELP: &str = "\
quorumkv bench: load generator for etcd v3 gRPC endpoints (quorumkv or etcd)

USAGE:
    quorumkv bench [OPTIONS] <put|range|txn-cas|watch>

WORKLOADS:
    put         each request puts one key of the key space
    range       each request reads one key (the key space is written once first, not timed)
    txn-cas     compare-and-swap: read the key's mod_revision (a range), then a Txn that
                puts the key if its mod_revision is unchanged; one op = both RPCs, counted
                as succeeded or failed (another client changed the key in between)
    watch       --watchers streams watch the key prefix, then --clients writers do --total
                puts; every watcher must see every put exactly once, in revision order

OPTIONS (one or two dashes; `--flag value` or `--flag=value`):
    --endpoints LIST        host:port,... of the cluster (default: 127.0.0.1:2379); gRPC
                            connection i goes to endpoint i mod the number of endpoints
    --clients N             concurrent requesters (default: 1)
    --conns N               gRPC connections (HTTP/2) to spread the clients over (default: 1)
    --total N               requests (ops) in the run (default: 10000)
    --key-size N            key length in bytes, at least 2: a workload prefix byte and
                            N-1 decimal digits (default: 8)
    --val-size N            value length in bytes (default: 256)
    --key-space-size N      keys are drawn from N distinct keys (default: 10000)
    --sequential-keys       walk the key space in order instead of drawing keys at random
    --consistency l|s       range and txn-cas reads: l linearizable, s serializable (default: l)
    --watchers N            watch workload: watch streams (default: 10)
    --timeout SECS          per-request deadline (default: 10)
    --json                  print the report as one JSON object on stdout
    -h, --help              print this help

REPORT:
    total requests, successes and errors (by gRPC code and message), wall time of the
    measured phase, throughput (successful ops/s), latency p50/p90/p99/p99.9/max/mean in
    ms (successful requests only, timed around the RPCs), txn-cas succeeded/failed, and
    for watch the events expected/received and the missing, duplicate, out-of-order and
    unexpected counts. While running, a progress line goes to stderr.

EXIT STATUS:
    0 all requests succeeded (and, for watch, every watcher saw every event once, in
    order); 1 errors or watch anomalies, or the endpoints cannot be reached; 2 bad usage.
";

/// Runs `quorumkv bench` with `args` (the words after `bench`) and returns the exit code.
pub fn main(args: &[String]) -> ExitCode {
    let opts = match Options::parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("quorumkv bench: {e}");
            eprintln!("(see quorumkv bench --help)");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quorumkv bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match rt.block_on(run::run(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quorumkv bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if opts.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
