//! Node configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::raft::network::LocalNetwork;
use crate::tls::TlsFiles;

/// How a node with an empty data dir finds its cluster. Ignored when the data dir already
/// holds a node: a restarted node rejoins with its persisted identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Bootstrap {
    /// Form a one-node cluster of this node alone.
    #[default]
    Single,
    /// Static bootstrap: every listed member (`(name, peer_addr)`, this node included) is
    /// started with the same list and they form one cluster, in any start order.
    InitialCluster(Vec<(String, String)>),
    /// Join a running cluster through any of these member peer addresses.
    Join(Vec<String>),
}

/// Everything a node needs to start. `NodeConfig::new` gives etcd-like defaults.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Member name, unique in the cluster.
    pub name: String,
    /// Where the node keeps its data. Locked while the node runs.
    pub data_dir: PathBuf,
    /// Peer address: the node listens on it and advertises it (`host:port`).
    pub peer_addr: String,
    /// Client addresses advertised in the member list (the etcd gRPC port, if served).
    pub client_addrs: Vec<String>,
    /// How a new node finds its cluster.
    pub bootstrap: Bootstrap,
    /// Mixed into member and cluster ids so two clusters bootstrapped from the same
    /// member list get different ids (etcd's `--initial-cluster-token`).
    pub cluster_token: String,
    /// When joining, stay a non-voting learner instead of becoming a voter.
    pub join_as_learner: bool,
    /// How often the leader sends heartbeats (the node's own timer; openraft's election
    /// tick is paced by the election timeout instead; docs/architecture.md, "Threads").
    pub heartbeat_interval_ms: u64,
    /// Minimum election timeout; the maximum is twice this. Followers check their election
    /// timer every ~1/10 of it (up to 1/5 when the heartbeat interval is over half of it).
    pub election_timeout_ms: u64,
    /// Build a snapshot (and compact the Raft log) after this many applied entries.
    pub snapshot_threshold_entries: u64,
    /// Log entries kept behind a snapshot, so slightly lagging followers catch up from
    /// the log instead of a snapshot.
    pub snapshot_logs_to_keep: u64,
    /// How long a request may wait for a leader, a commit or a forward before it fails.
    pub request_timeout_ms: u64,
    /// Largest accepted request, encoded (etcd: 1.5 MiB).
    pub max_request_bytes: usize,
    /// Most operations per list in one transaction (etcd: 128).
    pub max_txn_ops: usize,
    /// fjall block cache size.
    pub cache_size_bytes: u64,
    /// Interval of the progress notifications sent to idle watches that asked for
    /// them (etcd: 10 minutes).
    pub watch_progress_notify_interval_ms: u64,
    /// TLS on the peer port (etcd's `--peer-cert-file`, `--peer-key-file`,
    /// `--peer-trusted-ca-file`, `--peer-client-cert-auth`); `None`: plain TCP.
    ///
    /// The node serves its peer port with `cert_file`, and dials other members over TLS,
    /// verifying that their certificate chains to `trusted_ca_file` (required) and covers
    /// the host of the peer address dialed; it presents `cert_file` as its client
    /// certificate. With `client_cert_auth`, a peer must present a certificate from
    /// `trusted_ca_file` whose subject alternative names (IP or DNS) cover the host of its
    /// member's peer address (for a node not yet a member: the address it connects from,
    /// and the peer address it asks to join with); other requests are refused and logged.
    /// A member that moves to another host is therefore refused until it is removed and
    /// added back with its new address. Every member of a cluster needs the same setting.
    pub peer_tls: Option<TlsFiles>,
    /// Nodes of this process to reach through memory instead of loopback TCP (see
    /// [`LocalNetwork`]): give the same network to every node a process hosts. `None`
    /// (the default): every peer is reached over TCP. Ignored with `peer_tls`.
    pub local_network: Option<LocalNetwork>,
}

impl NodeConfig {
    /// A config with etcd's defaults for everything but the identity.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>, peer_addr: impl Into<String>) -> Self {
        NodeConfig {
            name: name.into(),
            data_dir: data_dir.into(),
            peer_addr: peer_addr.into(),
            client_addrs: Vec::new(),
            bootstrap: Bootstrap::Single,
            cluster_token: "quorumkv-cluster".into(),
            join_as_learner: false,
            heartbeat_interval_ms: 200,
            election_timeout_ms: 1000,
            snapshot_threshold_entries: 10_000,
            snapshot_logs_to_keep: 5_000,
            request_timeout_ms: 5_000,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            cache_size_bytes: 4 << 20,
            watch_progress_notify_interval_ms: 600_000,
            peer_tls: None,
            local_network: None,
        }
    }

    /// Sets the bootstrap mode.
    pub fn bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    /// Puts the node on a [`LocalNetwork`] shared with the other nodes of this process.
    pub fn local_network(mut self, network: LocalNetwork) -> Self {
        self.local_network = Some(network);
        self
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The shortest lease TTL granted, seconds: etcd's `minLeaseTTL`, 1.5 election
    /// timeouts rounded up, so a lease cannot expire during a leader election.
    pub fn min_lease_ttl_secs(&self) -> i64 {
        (self.election_timeout_ms * 3 / 2).div_ceil(1000) as i64
    }

    /// Checks the config for mistakes that would only show later.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.name.is_empty() {
            return bad("name must not be empty".into());
        }
        if self.peer_addr.parse::<std::net::SocketAddr>().is_err() && !self.peer_addr.contains(':') {
            return bad(format!("peer_addr {:?} is not host:port", self.peer_addr));
        }
        if self.heartbeat_interval_ms == 0 || self.election_timeout_ms <= self.heartbeat_interval_ms {
            return bad("election_timeout_ms must be greater than heartbeat_interval_ms > 0".into());
        }
        if self.watch_progress_notify_interval_ms == 0 {
            return bad("watch_progress_notify_interval_ms must be positive".into());
        }
        if self.request_timeout_ms == 0 || self.max_txn_ops == 0 || self.max_request_bytes == 0 {
            return bad("request_timeout_ms, max_txn_ops and max_request_bytes must be positive".into());
        }
        if let Some(tls) = &self.peer_tls {
            if tls.cert_file.as_os_str().is_empty() || tls.trusted_ca_file.is_none() {
                return bad("peer_tls needs cert_file, key_file and trusted_ca_file".into());
            }
            tls.load().map_err(|e| match e {
                Error::InvalidConfig(m) => Error::InvalidConfig(format!("peer_tls: {m}")),
                e => e,
            })?;
        }
        match &self.bootstrap {
            Bootstrap::InitialCluster(members) => {
                if !members.iter().any(|(n, _)| n == &self.name) {
                    return bad(format!("initial cluster does not list this node ({})", self.name));
                }
                let mut names: Vec<_> = members.iter().map(|(n, _)| n).collect();
                names.sort();
                names.dedup();
                if names.len() != members.len() {
                    return bad("initial cluster lists a name twice".into());
                }
            }
            Bootstrap::Join(peers) if peers.is_empty() => return bad("join needs at least one peer address".into()),
            _ => {}
        }
        Ok(())
    }
}
