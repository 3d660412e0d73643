//! `quorumkv`: run one node as a process.
//!
//! Flags follow Go's flag parsing, as etcd's do: `--flag value`, `--flag=value`, and the
//! same with one dash. Run `quorumkv --help` for the list.

/// `--features mimalloc`: cheaper allocation and, above all, cheaper frees of memory
/// another thread allocated (the runtime's workers hand requests and responses to each
/// other), for about 0.5 MiB more resident memory when idle.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::time::Duration;

use quorumkv::local::{local_member, LocalCluster, LOCAL_NODES_MAX};
use quorumkv::metrics::Metrics;
use quorumkv::server::{addr_of_url, ClientServer, ServeOptions};
use quorumkv::tls::TlsFiles;
use quorumkv::{Bootstrap, Node, NodeConfig};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

const HELP: &str = "\
quorumkv: a Raft-replicated, etcd-compatible key-value node

USAGE:
    quorumkv --name NAME --data-dir DIR --peer-addr HOST:PORT [--client-addr HOST:PORT] [OPTIONS]
    quorumkv local [--nodes N] [--data-dir DIR]    a whole cluster in one process
    quorumkv bench --help                           the etcd v3 load generator

OPTIONS (one or two dashes; `--flag value` or `--flag=value`):
    --name NAME                 member name, unique in the cluster (default: default)
    --data-dir DIR              data directory (default: NAME.quorumkv)
    --peer-addr HOST:PORT       address peers reach this node on (default: 127.0.0.1:7001)
    --client-addr HOST:PORT     serve etcd's v3 gRPC API here, and advertise it to the
                                cluster (alias: --addr; an http:// prefix is accepted)
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
    --cert-file FILE            client port TLS certificate (PEM)
    --key-file FILE             client port TLS private key (PEM)
    --trusted-ca-file FILE      CA bundle that client certificates must chain to
    --client-cert-auth          require client certificates on the client port
    --peer-cert-file FILE       peer port TLS certificate (PEM); also presented when dialing peers
    --peer-key-file FILE        peer port TLS private key (PEM)
    --peer-trusted-ca-file FILE CA bundle peers' certificates must chain to (required with peer TLS)
    --peer-client-cert-auth     mutual TLS on the peer port: a peer's certificate must cover its member's host
    --metrics-addr HOST:PORT    serve Prometheus /metrics and /health there (default: off)
    --log-level LEVEL           error, warn, info, debug, trace or off (default: info)
    -h, --help                  print this help

With neither --initial-cluster nor --peers a new node forms a one-node cluster. A data dir
that already holds a node restarts it with its identity; a changed --peer-addr is taken
as the new one. The node stops (handing leadership over first) on SIGINT or SIGTERM.
";

const LOCAL_HELP: &str = "\
quorumkv local: host a whole cluster in one process

USAGE:
    quorumkv local [--nodes N] [--data-dir DIR] [--log-level LEVEL]

OPTIONS:
    --nodes N           members, 1 to 6 (default: 3)
    --data-dir DIR      directory holding every member's data dir (default: quorumkv-local)
    --log-level LEVEL   error, warn, info, debug, trace or off (default: warn)
    -h, --help          print this help

Members are infra1, infra2, ... with client ports 2379, 22379, 32379, ... and peer ports
12380, 22380, 32380, ... (etcd's local-cluster layout). The members talk to each other in
memory; their peer ports still take members from elsewhere. Ctrl-C stops the cluster;
starting again on the same directory brings it back with its data.
";

struct Args {
    config: NodeConfig,
    log_level: LevelFilter,
    /// TLS of the client port (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`).
    client_tls: Option<TlsFiles>,
    metrics_addr: Option<String>,
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

/// A flag argument as (name, inline value): `--flag`, `-flag`, `--flag=v`, `-flag=v`.
fn split_flag(arg: &str) -> Result<(&str, Option<&str>), String> {
    let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
        return Err(format!("unexpected argument {arg:?}"));
    };
    Ok(match stripped.split_once('=') {
        Some((f, v)) => (f, Some(v)),
        None => (stripped, None),
    })
}

/// A boolean flag: `--flag`, `--flag=true` or `--flag=false`.
fn boolean(flag: &str, inline: Option<&str>) -> Result<bool, String> {
    match inline {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(format!("flag --{flag}: {v:?} is not true or false")),
    }
}

/// The TLS files of one port from its flags (`prefix`: "" or "peer-"); `None` when none was given.
fn tls_files(
    prefix: &str,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
    auth: bool,
) -> Result<Option<TlsFiles>, String> {
    match (cert, key) {
        (None, None) if ca.is_none() && !auth => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            trusted_ca_file: ca.map(Into::into),
            client_cert_auth: auth,
            ..TlsFiles::new(cert, key)
        })),
        _ => Err(format!("TLS needs both --{prefix}cert-file and --{prefix}key-file")),
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
    let mut log_level = LevelFilter::INFO;
    let mut metrics_addr = None;
    let mut tunables: Vec<(String, String)> = Vec::new();
    // [cert, key, trusted CA] of the client port, then of the peer port.
    let mut tls_paths: [Option<String>; 6] = Default::default();
    let (mut client_cert_auth, mut peer_client_cert_auth) = (false, false);
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = split_flag(arg)?;
        match flag {
            "h" | "help" => return Ok(None),
            "name" => name = value(flag, inline, &mut it)?,
            "data-dir" => data_dir = Some(value(flag, inline, &mut it)?),
            "peer-addr" => peer_addr = value(flag, inline, &mut it)?,
            "client-addr" | "addr" => {
                let v = value(flag, inline, &mut it)?;
                client_addrs.push(addr_of_url(&v).ok_or_else(|| format!("--{flag} {v:?}: expected host:port"))?);
            }
            "learner" => learner = inline.is_none_or(|v| v == "true"),
            "log-level" => log_level = level(flag, &value(flag, inline, &mut it)?)?,
            "cert-file" => tls_paths[0] = Some(value(flag, inline, &mut it)?),
            "key-file" => tls_paths[1] = Some(value(flag, inline, &mut it)?),
            "trusted-ca-file" => tls_paths[2] = Some(value(flag, inline, &mut it)?),
            "client-cert-auth" => client_cert_auth = boolean(flag, inline)?,
            "peer-cert-file" => tls_paths[3] = Some(value(flag, inline, &mut it)?),
            "peer-key-file" => tls_paths[4] = Some(value(flag, inline, &mut it)?),
            "peer-trusted-ca-file" => tls_paths[5] = Some(value(flag, inline, &mut it)?),
            "peer-client-cert-auth" => peer_client_cert_auth = boolean(flag, inline)?,
            "metrics-addr" => metrics_addr = Some(value(flag, inline, &mut it)?),
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
    let [cert, key, ca, peer_cert, peer_key, peer_ca] = tls_paths;
    let client_tls = tls_files("", cert, key, ca, client_cert_auth)?;
    config.peer_tls = tls_files("peer-", peer_cert, peer_key, peer_ca, peer_client_cert_auth)?;
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
    Ok(Some(Args { config, log_level, client_tls, metrics_addr }))
}

/// Parsed arguments, or the exit code after printing the help (`--help`) or a usage
/// error (exit code 2, as Go's flag package).
fn parsed<T>(args: Result<Option<T>, String>, help: &str, program: &str) -> Result<T, ExitCode> {
    match args {
        Ok(Some(a)) => Ok(a),
        Ok(None) => {
            print!("{help}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// A `--log-level` value: error, warn, info, debug or trace (any case), or off.
fn level(flag: &str, v: &str) -> Result<LevelFilter, String> {
    v.parse().map_err(|_| format!("--{flag} {v:?}: expected error, warn, info, debug, trace or off"))
}

/// Logs of this program (`quorumkv` at `level`, openraft quieter) to stderr.
///
/// A plain target filter, not an `EnvFilter`: that one compiles its directives with a
/// regex engine, 250 KiB of code and some heap that every process paid for at start. It is
/// installed without a `log` bridge: the filter shows none of the dependencies that log
/// through the `log` crate (fjall, lsm-tree), and a bridge raises `log`'s global level to
/// trace, so each of their trace lines would be built only to be dropped.
fn init_logging(level: LevelFilter) {
    // openraft warns about every unreachable peer while members start and stop; at the
    // quiet levels only its errors are shown.
    let raft_level = if level <= LevelFilter::WARN { level.min(LevelFilter::ERROR) } else { LevelFilter::WARN };
    let filter = Targets::new().with_target("quorumkv", level).with_target("openraft", raft_level);
    let subscriber =
        tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).with(filter);
    tracing::subscriber::set_global_default(subscriber).expect("logging is set up once, first thing");
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("local") {
        return local(&argv[1..]);
    }
    if argv.first().is_some_and(|a| a == "bench") {
        return quorumkv::bench::main(&argv[1..]);
    }
    let args = match parsed(parse(&argv), HELP, "quorumkv") {
        Ok(a) => a,
        Err(code) => return code,
    };
    init_logging(args.log_level);
    let options = match args.client_tls.as_ref().map(TlsFiles::server_tls).transpose() {
        Ok(tls) => ServeOptions { tls, ..ServeOptions::default() },
        Err(e) => {
            eprintln!("quorumkv: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let client_addr = args.config.client_addrs.first().cloned();
        let node = match Node::start(args.config).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("quorumkv: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let metrics = Metrics::new();
        // Kept until the node has stopped, so /health reports the stop.
        let _metrics_server = match &args.metrics_addr {
            Some(addr) => match quorumkv::metrics::serve(addr, node.clone(), metrics.clone()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("quorumkv: {e}");
                    let _ = node.stop().await;
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let options = ServeOptions { metrics: Some(metrics), ..options };
        let server = match client_addr {
            Some(addr) => match ClientServer::serve(node.clone(), &addr, options).await {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("quorumkv: cannot serve clients: {e}");
                    let _ = node.stop().await;
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        println!("quorumkv: {} ({:016x}) ready, cluster {:016x}", node.name(), node.id(), node.cluster_id());
        if let Some(s) = &server {
            println!("quorumkv: etcd v3 API on {}", s.local_addr());
        }
        shutdown_signal().await;
        if let Some(s) = server {
            s.stop().await;
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

struct LocalArgs {
    nodes: usize,
    dir: String,
    log_level: LevelFilter,
}

fn parse_local(argv: &[String]) -> Result<Option<LocalArgs>, String> {
    let mut args = LocalArgs { nodes: 3, dir: "quorumkv-local".into(), log_level: LevelFilter::WARN };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = split_flag(arg)?;
        match flag {
            "h" | "help" => return Ok(None),
            "nodes" => args.nodes = number(flag, &value(flag, inline, &mut it)?)?,
            "data-dir" => args.dir = value(flag, inline, &mut it)?,
            "log-level" => args.log_level = level(flag, &value(flag, inline, &mut it)?)?,
            other => return Err(format!("unknown flag --{other} (see quorumkv local --help)")),
        }
    }
    if args.nodes == 0 || args.nodes > LOCAL_NODES_MAX {
        return Err(format!("--nodes must be 1 to {LOCAL_NODES_MAX}"));
    }
    Ok(Some(args))
}

/// `quorumkv local`: a whole cluster in this process until Ctrl-C.
fn local(argv: &[String]) -> ExitCode {
    let args = match parsed(parse_local(argv), LOCAL_HELP, "quorumkv local") {
        Ok(a) => a,
        Err(code) => return code,
    };
    init_logging(args.log_level);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let dir = std::path::PathBuf::from(&args.dir);
        let cluster = match LocalCluster::start(&dir, args.nodes, |_| {}).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("quorumkv local: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("quorumkv local: {} nodes, data in {}", args.nodes, dir.display());
        for (i, endpoint) in cluster.endpoints().iter().enumerate() {
            let (name, _, peer) = local_member(i);
            println!("  {name}  client http://{endpoint}  peer 127.0.0.1:{peer}");
        }
        println!("try:  etcdctl --endpoints={} put greeting hello", cluster.endpoints().join(","));
        println!("Ctrl-C stops the cluster.");
        shutdown_signal().await;
        println!("quorumkv local: stopping");
        match tokio::time::timeout(Duration::from_secs(20), cluster.stop()).await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("quorumkv local: stop: {e}");
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
        assert_eq!(b.metrics_addr, None);
        let m = parse(&args("--metrics-addr=127.0.0.1:2381")).unwrap().unwrap();
        assert_eq!(m.metrics_addr.as_deref(), Some("127.0.0.1:2381"));
        let c = parse(&args("--initial-cluster a=127.0.0.1:1,b=127.0.0.1:2")).unwrap().unwrap();
        assert!(matches!(c.config.bootstrap, Bootstrap::InitialCluster(ref m) if m.len() == 2));
        assert!(parse(&args("--bogus 1")).is_err());
        assert!(parse(&args("--name")).is_err());
        assert!(parse(&args("--help")).unwrap().is_none());
        let d = parse(&args("--client-addr http://127.0.0.1:2379/")).unwrap().unwrap();
        assert_eq!(d.config.client_addrs, vec!["127.0.0.1:2379".to_string()]);
    }

    #[test]
    fn local_flags() {
        let a = parse_local(&args("--nodes 5 -data-dir=x")).unwrap().unwrap();
        assert_eq!((a.nodes, a.dir.as_str()), (5, "x"));
        assert!(parse_local(&args("--nodes 0")).is_err());
        assert!(parse_local(&args("--nodes 7")).is_err());
        assert!(parse_local(&args("-h")).unwrap().is_none());
        assert_eq!(parse_local(&args("")).unwrap().unwrap().log_level, LevelFilter::WARN);
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse(&args("")).unwrap().unwrap().log_level, LevelFilter::INFO);
        assert_eq!(parse(&args("--log-level debug")).unwrap().unwrap().log_level, LevelFilter::DEBUG);
        assert_eq!(parse(&args("-log-level=WARN")).unwrap().unwrap().log_level, LevelFilter::WARN);
        assert_eq!(parse_local(&args("--log-level off")).unwrap().unwrap().log_level, LevelFilter::OFF);
        // A typo is a usage error, not a silent fall-back to some other level.
        let e = parse(&args("--log-level loud")).err().unwrap();
        assert!(e.contains("--log-level") && e.contains("loud"), "{e}");
        assert!(parse_local(&args("--log-level verbose")).is_err());
    }

    #[test]
    fn tls_flags() {
        let a = parse(&args(
            "--cert-file s.pem --key-file s-key.pem --trusted-ca-file ca.pem --client-cert-auth \
             --peer-cert-file p.pem --peer-key-file=p-key.pem --peer-trusted-ca-file ca.pem --peer-client-cert-auth=true",
        ))
        .unwrap()
        .unwrap();
        let client = TlsFiles::new("s.pem", "s-key.pem").trusted_ca("ca.pem").client_cert_auth(true);
        assert_eq!(a.client_tls, Some(client));
        let peer = TlsFiles::new("p.pem", "p-key.pem").trusted_ca("ca.pem").client_cert_auth(true);
        assert_eq!(a.config.peer_tls, Some(peer));

        let b = parse(&args("--peer-cert-file p.pem --peer-key-file p-key.pem --peer-client-cert-auth=false"))
            .unwrap()
            .unwrap();
        assert_eq!(b.client_tls, None);
        assert_eq!(b.config.peer_tls, Some(TlsFiles::new("p.pem", "p-key.pem")));
        assert_eq!(parse(&args("--name n")).unwrap().unwrap().config.peer_tls, None);

        assert!(parse(&args("--client-cert-auth=yes")).is_err());
        let e = parse(&args("--cert-file s.pem")).err().unwrap();
        assert!(e.contains("--cert-file and --key-file"), "{e}");
        let e = parse(&args("--peer-key-file k.pem")).err().unwrap();
        assert!(e.contains("--peer-cert-file and --peer-key-file"), "{e}");
    }
}
