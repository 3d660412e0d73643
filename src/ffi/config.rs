//! `qkv_config`: the node configuration, built with setters so it can grow without
//! breaking the ABI.

use std::ffi::c_char;

use super::{boundary, out_arg, ref_arg, text_arg, Failure, FfiResult};
use crate::ffi::qkv_result;
use crate::node::{Bootstrap, NodeConfig};
use crate::tls::TlsFiles;
use crate::LocalNetwork;

/// A node configuration under construction (opaque). Create it with `qkv_config_new`,
/// set what differs from etcd's defaults, pass it to `qkv_node_start` (which copies it:
/// the config may be freed or reused right after), free it with `qkv_config_free`.
///
/// Thread-safety: a config may be used from any thread, but not from two at once.
pub struct qkv_config {
    pub(crate) node: NodeConfig,
    /// The etcd v3 gRPC client port to serve, if any.
    pub(crate) client_addr: Option<String>,
    pub(crate) client_tls: Option<TlsFiles>,
    initial: Vec<(String, String)>,
    join: Vec<String>,
}

impl qkv_config {
    /// The node config with the bootstrap the setters chose.
    pub(crate) fn node_config(&self) -> NodeConfig {
        let mut c = self.node.clone();
        c.client_addrs = self.client_addr.iter().cloned().collect();
        c.bootstrap = if !self.initial.is_empty() {
            Bootstrap::InitialCluster(self.initial.clone())
        } else if !self.join.is_empty() {
            Bootstrap::Join(self.join.clone())
        } else {
            Bootstrap::Single
        };
        c
    }
}

unsafe fn config_arg<'a>(config: *mut qkv_config) -> FfiResult<&'a mut qkv_config> {
    // SAFETY: NULL or a config from `qkv_config_new`, used by one thread at a time.
    unsafe { out_arg(config, "config") }
}

unsafe fn optional_text(ptr: *const c_char, what: &str) -> FfiResult<Option<String>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: a NUL-terminated string.
    Ok(Some(unsafe { text_arg(ptr, what) }?.to_owned()))
}

/// Creates a config for a node called `name` (unique in its cluster) keeping its data in
/// `data_dir` (created if missing) and listening for peers on `peer_addr` (`host:port`),
/// with etcd's defaults for the rest: a node started with it alone forms a one-node
/// cluster, unless `qkv_config_add_initial_member` or `qkv_config_add_join_peer` say
/// otherwise. All three strings are NUL-terminated UTF-8, copied.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (not UTF-8, empty name).
/// On success `*out` owns a new config (free it with `qkv_config_free`).
#[no_mangle]
pub unsafe extern "C" fn qkv_config_new(
    name: *const c_char,
    data_dir: *const c_char,
    peer_addr: *const c_char,
    out: *mut *mut qkv_config,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: NUL-terminated strings and a writable out-pointer, per the contract.
        let (name, data_dir, peer_addr, out) = unsafe {
            (
                text_arg(name, "name")?,
                text_arg(data_dir, "data_dir")?,
                text_arg(peer_addr, "peer_addr")?,
                out_arg(out, "out")?,
            )
        };
        if name.is_empty() {
            return Err(Failure::invalid("name must not be empty"));
        }
        let config = qkv_config {
            node: NodeConfig::new(name, data_dir, peer_addr),
            client_addr: None,
            client_tls: None,
            initial: Vec::new(),
            join: Vec::new(),
        };
        *out = Box::into_raw(Box::new(config));
        Ok(())
    })
}

/// Frees a config. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_free(config: *mut qkv_config) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(config) }
}

/// Nodes of this process that reach each other through memory instead of loopback TCP
/// (opaque). Give the same network to the config of each node this process hosts
/// (`qkv_config_set_local_network`): their Raft messages and forwarded requests then skip
/// encoding, HTTP/2 and sockets. Every node still serves its peer port, so nodes in other
/// processes reach it over TCP; nodes with peer TLS do not use the network.
///
/// Ownership: create with `qkv_local_network_new`, free with `qkv_local_network_free`.
/// Configs and nodes keep their own reference: the network may be freed while nodes on
/// it run, and they keep using it. Thread-safety: usable from any thread at once.
pub struct qkv_local_network {
    network: LocalNetwork,
}

/// Creates an empty local network.
///
/// Errors: `QKV_NULL_PARAMETER` (`out`). On success `*out` owns the new network.
#[no_mangle]
pub unsafe extern "C" fn qkv_local_network_new(out: *mut *mut qkv_local_network) -> qkv_result {
    boundary(None, || {
        // SAFETY: a writable out-pointer, per the contract.
        let out = unsafe { out_arg(out, "out") }?;
        *out = Box::into_raw(Box::new(qkv_local_network { network: LocalNetwork::new() }));
        Ok(())
    })
}

/// Frees a local network (nodes on it keep theirs). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_local_network_free(network: *mut qkv_local_network) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(network) }
}

/// How many times a node reached another through the network so far (a Raft message, a
/// replication stream opened, one per heartbeat too, or a forwarded request), into `*out`.
///
/// Errors: `QKV_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn qkv_local_network_deliveries(network: *const qkv_local_network, out: *mut u64) -> qkv_result {
    boundary(None, || {
        // SAFETY: a network from `qkv_local_network_new` and a writable out-pointer.
        let (network, out) = unsafe { (ref_arg(network, "network")?, out_arg(out, "out")?) };
        *out = network.network.deliveries();
        Ok(())
    })
}

/// How many client requests a node forwarded to another (its leader) through the
/// network so far (also counted by `qkv_local_network_deliveries`), into `*out`.
///
/// Errors: `QKV_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn qkv_local_network_forwarded(network: *const qkv_local_network, out: *mut u64) -> qkv_result {
    boundary(None, || {
        // SAFETY: a network from `qkv_local_network_new` and a writable out-pointer.
        let (network, out) = unsafe { (ref_arg(network, "network")?, out_arg(out, "out")?) };
        *out = network.network.forwarded();
        Ok(())
    })
}

/// Puts the node on `network` (shared with other nodes of this process; see
/// `qkv_local_network`). NULL `network`: every peer over TCP (the default).
///
/// Errors: `QKV_NULL_PARAMETER` (`config`).
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_local_network(
    config: *mut qkv_config,
    network: *const qkv_local_network,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract; `network` is NULL or from `qkv_local_network_new`.
        let (config, network) = unsafe { (config_arg(config)?, network.as_ref()) };
        config.node.local_network = network.map(|n| n.network.clone());
        Ok(())
    })
}

/// Static bootstrap: adds one member (`name`, `peer_addr`) of the initial cluster. Every
/// member, this node included, is started with the same list; they form one cluster in
/// any start order. Ignored when the data dir already holds a node (it rejoins).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_add_initial_member(
    config: *mut qkv_config,
    name: *const c_char,
    peer_addr: *const c_char,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let (config, name, addr) =
            unsafe { (config_arg(config)?, text_arg(name, "name")?, text_arg(peer_addr, "peer_addr")?) };
        config.initial.push((name.to_owned(), addr.to_owned()));
        Ok(())
    })
}

/// Join: adds the peer address of a running member to join through (any one reachable
/// is enough). Ignored when the data dir already holds a node, and when initial members
/// were added.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_add_join_peer(config: *mut qkv_config, peer_addr: *const c_char) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let (config, addr) = unsafe { (config_arg(config)?, text_arg(peer_addr, "peer_addr")?) };
        config.join.push(addr.to_owned());
        Ok(())
    })
}

/// When joining, stay a non-voting learner instead of becoming a voter.
///
/// Errors: `QKV_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_join_as_learner(config: *mut qkv_config, learner: bool) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        unsafe { config_arg(config) }?.node.join_as_learner = learner;
        Ok(())
    })
}

/// Serves etcd's v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance) for this node on
/// `client_addr` (`host:port`, port 0 picks one) from the same process, and advertises
/// it in the member list. NULL removes a previous setting.
///
/// Errors: `QKV_NULL_PARAMETER` (config), `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_client_addr(config: *mut qkv_config, client_addr: *const c_char) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let (config, addr) = unsafe { (config_arg(config)?, optional_text(client_addr, "client_addr")?) };
        config.client_addr = addr;
        Ok(())
    })
}

/// Raft timing: heartbeat interval and minimum election timeout (the maximum is twice
/// it), milliseconds. Defaults 200 and 1000. The election timeout must exceed the
/// heartbeat interval (checked by `qkv_node_start`).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (a zero value).
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_timeouts(
    config: *mut qkv_config,
    heartbeat_interval_ms: u64,
    election_timeout_ms: u64,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let config = unsafe { config_arg(config) }?;
        if heartbeat_interval_ms == 0 || election_timeout_ms == 0 {
            return Err(Failure::invalid("timeouts must be positive"));
        }
        config.node.heartbeat_interval_ms = heartbeat_interval_ms;
        config.node.election_timeout_ms = election_timeout_ms;
        Ok(())
    })
}

/// How long a request may wait for a leader, a commit or a forward before it fails with
/// `QKV_NO_LEADER` or `QKV_TIMEOUT`, milliseconds (default 5000).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (0).
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_request_timeout_ms(config: *mut qkv_config, timeout_ms: u64) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let config = unsafe { config_arg(config) }?;
        if timeout_ms == 0 {
            return Err(Failure::invalid("request timeout must be positive"));
        }
        config.node.request_timeout_ms = timeout_ms;
        Ok(())
    })
}

/// Log compaction: build a snapshot after `threshold_entries` applied entries (default
/// 10000), keeping `logs_to_keep` entries behind it for slightly lagging followers
/// (default 5000).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (a zero threshold).
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_snapshot_threshold(
    config: *mut qkv_config,
    threshold_entries: u64,
    logs_to_keep: u64,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let config = unsafe { config_arg(config) }?;
        if threshold_entries == 0 {
            return Err(Failure::invalid("snapshot threshold must be positive"));
        }
        config.node.snapshot_threshold_entries = threshold_entries;
        config.node.snapshot_logs_to_keep = logs_to_keep;
        Ok(())
    })
}

/// Request limits: the largest encoded request (default 1.5 MiB) and the most operations
/// per list of one transaction (default 128).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (a zero value).
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_limits(
    config: *mut qkv_config,
    max_request_bytes: usize,
    max_txn_ops: usize,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let config = unsafe { config_arg(config) }?;
        if max_request_bytes == 0 || max_txn_ops == 0 {
            return Err(Failure::invalid("limits must be positive"));
        }
        config.node.max_request_bytes = max_request_bytes;
        config.node.max_txn_ops = max_txn_ops;
        Ok(())
    })
}

/// Mixed into member and cluster ids, so two clusters bootstrapped from the same member
/// list get different ids (etcd's `--initial-cluster-token`).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_cluster_token(config: *mut qkv_config, token: *const c_char) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let (config, token) = unsafe { (config_arg(config)?, text_arg(token, "token")?) };
        config.node.cluster_token = token.to_owned();
        Ok(())
    })
}

unsafe fn tls_files(
    cert_file: *const c_char,
    key_file: *const c_char,
    trusted_ca_file: *const c_char,
    client_cert_auth: bool,
) -> FfiResult<TlsFiles> {
    // SAFETY: NUL-terminated strings (the CA may be NULL).
    let (cert, key, ca) = unsafe {
        (
            text_arg(cert_file, "cert_file")?,
            text_arg(key_file, "key_file")?,
            optional_text(trusted_ca_file, "trusted_ca_file")?,
        )
    };
    let mut files = TlsFiles::new(cert, key).client_cert_auth(client_cert_auth);
    if let Some(ca) = ca {
        files = files.trusted_ca(ca);
    }
    Ok(files)
}

/// TLS (rustls) on the peer port: PEM files of this node's certificate and key, and of
/// the CA peers' certificates must chain to (required). With `client_cert_auth`, peers
/// must present a certificate from that CA covering their member's host. Every member of
/// a cluster needs the same setting. The files are read by `qkv_node_start`.
///
/// Errors: `QKV_NULL_PARAMETER` (config, cert, key or CA), `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_peer_tls(
    config: *mut qkv_config,
    cert_file: *const c_char,
    key_file: *const c_char,
    trusted_ca_file: *const c_char,
    client_cert_auth: bool,
) -> qkv_result {
    boundary(None, || {
        if trusted_ca_file.is_null() {
            return Err(Failure::null("trusted_ca_file"));
        }
        // SAFETY: per the contract.
        let config = unsafe { config_arg(config) }?;
        // SAFETY: per the contract.
        config.node.peer_tls = Some(unsafe { tls_files(cert_file, key_file, trusted_ca_file, client_cert_auth) }?);
        Ok(())
    })
}

/// TLS (rustls) on the client port set with `qkv_config_set_client_addr`: this node's
/// certificate and key, and optionally (NULL: none) the CA that client certificates must
/// chain to, required with `client_cert_auth`.
///
/// Errors: `QKV_NULL_PARAMETER` (config, cert or key), `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_config_set_client_tls(
    config: *mut qkv_config,
    cert_file: *const c_char,
    key_file: *const c_char,
    trusted_ca_file: *const c_char,
    client_cert_auth: bool,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: per the contract.
        let config = unsafe { config_arg(config) }?;
        if client_cert_auth && trusted_ca_file.is_null() {
            return Err(Failure::invalid("client_cert_auth needs trusted_ca_file"));
        }
        // SAFETY: per the contract.
        config.client_tls = Some(unsafe { tls_files(cert_file, key_file, trusted_ca_file, client_cert_auth) }?);
        Ok(())
    })
}
