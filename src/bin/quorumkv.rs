//! `quorumkv`: run one node as a process.
//!
//! Flags follow Go's flag parsing, as etcd's do: `--flag value`, `--flag=value`, and the
//! same with one dash. Run `quorumkv --help` for the list.

use std::process::ExitCode;
use std::time::Duration;

use quorumkv::{Bootstrap, Node, NodeConfig};

const HELP: &str = "\
quorumkv: a Raft-replicated, etcd-compatible key-value node

USAGE:
    quorumkv --name NAME --data-dir DIR --peer-addr HOST:PORT [OPTIONS]

OPTIONS (one or two dashes; `--flag value` or `--flag=value`):
    --name NAME                 member name, unique in the cluster (default: default)
    --data-dir DIR              data directory (default: NAME.quorumkv)
    --peer-addr HOST:PORT       address peers reach this node on (default: 127.0.0.1:7001)
    --client-addr HOST:PORT     advertised client address (alias: --addr)
    --initial-cluster LIST      static bootstrap: name=host:port,name=host:port,...
    --peers LIST                join a running cluster through any of host:port,host:port
    --learner                   when joining, stay a non-voting learner
    --cluster-token TOKEN       mixed into member and cluster ids (default: quorumkv-cluster)
    --heartbeat-interval MS     Raft heartbeat interval (default: 200)
    --election-timeout MS       minimum election timeout (default: 1000)
    --snapshot-count N          entries between snapshots (default: 10000)
    --request-timeout MS        how long a request waits for a leader or a commit (default: 5000)
    --max-request-bytes N       largest request accepted (default: 1572864)
    --max-txn-ops N             most operations per transaction list (default: 128)
    --log-level LEVEL           error, warn, info, debug or trace (default: info)
    -h, --help                  print this help

With neither --initial-cluster nor --peers a new node forms a one-node cluster. A data dir
that already holds a node restarts it with its identity; a changed --peer-addr is taken
as the new one. The node stops (handing leadership over first) on SIGINT or SIGTERM.
";

struct Args {
    config: NodeConfig,
    log_level: String,
}

fn value<'a>(
    flag: &str,
    inline: Option<&'a str>,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<String, String> {
    match inline {
        Some(v) => Ok(v.to_string()),
        None => rest.next().cloned().ok_or_else(|| format!("flag --{flag} needs a value")),
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("flag --{flag}: {v:?} is not a number"))
}

fn parse(argv: &[String]) -> Result<Option<Args>, String> {
    let mut name = "default".to_string();
    let mut data_dir = None;
    let mut peer_addr = "127.0.0.1:7001".to_string();
    let mut client_addrs = Vec::new();
    let mut bootstrap = Bootstrap::Single;
    let mut learner = false;
    let mut log_level = "info".to_string();
    let mut tunables: Vec<(String, String)> = Vec::new();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (flag, inline) = match stripped.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (stripped, None),
        };
        match flag {
            "h" | "help" => return Ok(None),
            "name" => name = value(flag, inline, &mut it)?,
            "data-dir" => data_dir = Some(value(flag, inline, &mut it)?),
            "peer-addr" => peer_addr = value(flag, inline, &mut it)?,
            "client-addr" | "addr" => client_addrs.push(value(flag, inline, &mut it)?),
            "learner" => learner = inline.is_none_or(|v| v == "true"),
            "log-level" => log_level = value(flag, inline, &mut it)?,
            "initial-cluster" => {
                let list = value(flag, inline, &mut it)?;
                let members = list
                    .split(',')
                    .map(|m| m.split_once('=').map(|(n, a)| (n.to_string(), a.to_string())))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("--initial-cluster {list:?}: expected name=host:port,..."))?;
                bootstrap = Bootstrap::InitialCluster(members);
            }
            "peers" => {
                let list = value(flag, inline, &mut it)?;
                bootstrap = Bootstrap::Join(list.split(',').filter(|s| !s.is_empty()).map(String::from).collect());
            }
            "cluster-token" | "heartbeat-interval" | "election-timeout" | "snapshot-count" | "request-timeout"
            | "max-request-bytes" | "max-txn-ops" => tunables.push((flag.to_string(), value(flag, inline, &mut it)?)),
            other => return Err(format!("unknown flag --{other} (see --help)")),
        }
    }
    let data_dir = data_dir.unwrap_or_else(|| format!("{name}.quorumkv"));
    let mut config = NodeConfig::new(name, data_dir, peer_addr).bootstrap(bootstrap);
    config.client_addrs = client_addrs;
    config.join_as_learner = learner;
    for (flag, v) in tunables {
        match flag.as_str() {
            "cluster-token" => config.cluster_token = v,
            "heartbeat-interval" => config.heartbeat_interval_ms = number(&flag, &v)?,
            "election-timeout" => config.election_timeout_ms = number(&flag, &v)?,
            "snapshot-count" => config.snapshot_threshold_entries = number(&flag, &v)?,
            "request-timeout" => config.request_timeout_ms = number(&flag, &v)?,
            "max-request-bytes" => config.max_request_bytes = number(&flag, &v)?,
            "max-txn-ops" => config.max_txn_ops = number(&flag, &v)?,
            _ => unreachable!("listed above"),
        }
    }
    Ok(Some(Args { config, log_level }))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "bench") {
        return quorumkv::bench::main(&argv[1..]);
    }
    let args = match parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("quorumkv: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("quorumkv={0},openraft=warn", args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let node = match Node::start(args.config).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("quorumkv: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("quorumkv: {} ({:016x}) ready, cluster {:016x}", node.name(), node.id(), node.cluster_id());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let stopped = tokio::time::timeout(Duration::from_secs(10), node.stop()).await;
        match stopped {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("quorumkv: stop: {e}");
                ExitCode::FAILURE
            }
            Err(_) => ExitCode::FAILURE,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_style_flags() {
        let a =
            parse(&args("-peer-addr 127.0.0.1:7001 -addr 127.0.0.1:4001 -data-dir machines/machine1 -name machine1"))
                .unwrap()
                .unwrap();
        assert_eq!(a.config.name, "machine1");
        assert_eq!(a.config.peer_addr, "127.0.0.1:7001");
        assert_eq!(a.config.client_addrs, vec!["127.0.0.1:4001".to_string()]);
        assert_eq!(a.config.data_dir, std::path::PathBuf::from("machines/machine1"));
        let b =
            parse(&args("--name=m2 --peers=127.0.0.1:7001,127.0.0.1:7003 --election-timeout 500")).unwrap().unwrap();
        assert_eq!(b.config.bootstrap, Bootstrap::Join(vec!["127.0.0.1:7001".into(), "127.0.0.1:7003".into()]));
        assert_eq!(b.config.election_timeout_ms, 500);
        let c = parse(&args("--initial-cluster a=127.0.0.1:1,b=127.0.0.1:2")).unwrap().unwrap();
        assert!(matches!(c.config.bootstrap, Bootstrap::InitialCluster(ref m) if m.len() == 2));
        assert!(parse(&args("--bogus 1")).is_err());
        assert!(parse(&args("--name")).is_err());
        assert!(parse(&args("--help")).unwrap().is_none());
    }
}
