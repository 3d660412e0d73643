//! `quorumkv._native.Node`: one in-process node (the public `quorumkv.Node` derives from it).

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyMapping, PyString};
use pyo3::IntoPyObjectExt;
use quorumkv as q;
use quorumkv::server::{ClientServer, ServeOptions};

use crate::aio::{spawn, Completer, LoopCall};
use crate::errors::{core_error, guard, invalid, invalid_type, wait};
use crate::lease::PyLease;
use crate::requests::{delete_request, get_request, put_request, txn_request, Op, RangeArgs, Request};
use crate::types::{
    header, kv_opt_owned, Bytes, DeleteResult, Flag, Int, Member, PutResult, RangeResult, Status, Text, TxnResult, UInt,
};
use crate::watch::PyWatch;

#[derive(Default)]
struct Running {
    node: Option<q::Node>,
    server: Option<ClientServer>,
}

/// Nodes of this process that reach each other through memory instead of loopback TCP:
/// give the same network to each of them (`Node(..., local_network=net)`). Thread-safe.
#[pyclass(module = "quorumkv._native", name = "LocalNetwork", frozen)]
pub struct PyLocalNetwork(q::LocalNetwork);

#[pymethods]
impl PyLocalNetwork {
    #[new]
    fn new() -> Self {
        PyLocalNetwork(q::LocalNetwork::new())
    }

    /// The peer addresses of the running nodes on the network, sorted.
    fn addresses(&self) -> Vec<String> {
        self.0.addresses()
    }

    /// How many times a node reached another through the network so far (Raft messages,
    /// heartbeats included, and forwarded requests).
    #[getter]
    fn deliveries(&self) -> u64 {
        self.0.deliveries()
    }

    /// How many client requests a node forwarded to its leader through the network so far.
    #[getter]
    fn forwarded(&self) -> u64 {
        self.0.forwarded()
    }

    fn __repr__(&self) -> String {
        format!(
            "LocalNetwork(addresses={:?}, deliveries={}, forwarded={})",
            self.0.addresses(),
            self.0.deliveries(),
            self.0.forwarded()
        )
    }
}

/// A quorumkv node hosted in this process. Thread-safe: share it between threads.
#[pyclass(module = "quorumkv._native", name = "Node", subclass, frozen)]
pub struct PyNode {
    config: q::NodeConfig,
    client_addr: Option<String>,
    running: Mutex<Running>,
}

impl PyNode {
    /// The running node's handle (cheap clone), or `NodeStoppedError`.
    pub fn node(&self, py: Python<'_>) -> PyResult<q::Node> {
        let r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match &r.node {
            Some(n) => Ok(n.clone()),
            None => Err(core_error(py, &q::Error::Stopped)),
        }
    }
}

fn cluster_members(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let pairs: Bound<'_, PyAny> = if let Ok(m) = obj.cast::<PyMapping>() { m.items()?.into_any() } else { obj.clone() };
    let bad = || invalid_type(py, "initial_cluster must map member names to peer addresses ({'n1': '127.0.0.1:7001'})");
    let iter = pairs.try_iter().map_err(|_| bad())?;
    let mut out = Vec::new();
    for item in iter {
        let item = item?;
        let (name, addr): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract().map_err(|_| bad())?;
        out.push((name.extract::<Text>()?.0, addr.extract::<Text>()?.0));
    }
    Ok(out)
}

fn path_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let fspath = py.import("os")?.getattr("fspath")?;
    let p = fspath.call1((obj,)).map_err(|_| invalid_type(py, "data_dir must be a str or os.PathLike"))?;
    match p.cast::<PyString>() {
        Ok(s) => Ok(PathBuf::from(s.to_cow()?.into_owned())),
        Err(_) => Err(invalid_type(py, "data_dir must be a str path")),
    }
}

fn seconds(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<std::time::Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(std::time::Duration::from_secs_f64(t))),
        Some(_) => Err(invalid(py, "timeout must be a non-negative number of seconds")),
    }
}

impl Drop for PyNode {
    /// A node whose Python object is collected while it runs is stopped in the
    /// background (the data dir is then released), never left running unreachable.
    fn drop(&mut self) {
        let r = std::mem::take(self.running.get_mut().unwrap_or_else(|p| p.into_inner()));
        let Some(node) = r.node else { return };
        if !node.is_running() {
            return;
        }
        let server = r.server;
        let _ = std::thread::Builder::new().name("qkv-py-stop".into()).spawn(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Some(server) = server {
                    let _ = node.block_on(async move {
                        server.stop().await;
                        Ok(())
                    });
                }
                let _ = node.stop_blocking();
            }));
        });
    }
}

#[pymethods]
impl PyNode {
    #[new]
    #[pyo3(signature = (name, data_dir, peer_addr, *, initial_cluster=None, join=None, client_addr=None,
        advertise_client_addrs=None, cluster_token=None, join_as_learner=Flag(false), heartbeat_interval_ms=None,
        election_timeout_ms=None, request_timeout_ms=None, snapshot_threshold_entries=None,
        snapshot_logs_to_keep=None, max_request_bytes=None, max_txn_ops=None, cache_size_bytes=None,
        watch_progress_notify_interval_ms=None, local_network=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: Text,
        data_dir: &Bound<'_, PyAny>,
        peer_addr: Text,
        initial_cluster: Option<&Bound<'_, PyAny>>,
        join: Option<&Bound<'_, PyAny>>,
        client_addr: Option<Text>,
        advertise_client_addrs: Option<&Bound<'_, PyAny>>,
        cluster_token: Option<Text>,
        join_as_learner: Flag,
        heartbeat_interval_ms: Option<UInt>,
        election_timeout_ms: Option<UInt>,
        request_timeout_ms: Option<UInt>,
        snapshot_threshold_entries: Option<UInt>,
        snapshot_logs_to_keep: Option<UInt>,
        max_request_bytes: Option<UInt>,
        max_txn_ops: Option<UInt>,
        cache_size_bytes: Option<UInt>,
        watch_progress_notify_interval_ms: Option<UInt>,
        local_network: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut c = q::NodeConfig::new(name.0, path_arg(py, data_dir)?, peer_addr.0);
        c.bootstrap = match (initial_cluster, join) {
            (Some(_), Some(_)) => return Err(invalid(py, "give initial_cluster or join, not both")),
            (Some(ic), None) => q::Bootstrap::InitialCluster(cluster_members(py, ic)?),
            (None, Some(j)) => q::Bootstrap::Join(crate::types::texts(py, j, "join")?),
            (None, None) => q::Bootstrap::Single,
        };
        let client_addr = client_addr.map(|t| t.0);
        c.client_addrs = match advertise_client_addrs {
            Some(a) => crate::types::texts(py, a, "advertise_client_addrs")?,
            None => client_addr.iter().cloned().collect(),
        };
        if let Some(t) = cluster_token {
            c.cluster_token = t.0;
        }
        c.join_as_learner = join_as_learner.0;
        let set = |field: &mut u64, v: Option<UInt>| {
            if let Some(v) = v {
                *field = v.0;
            }
        };
        set(&mut c.heartbeat_interval_ms, heartbeat_interval_ms);
        set(&mut c.election_timeout_ms, election_timeout_ms);
        set(&mut c.request_timeout_ms, request_timeout_ms);
        set(&mut c.snapshot_threshold_entries, snapshot_threshold_entries);
        set(&mut c.snapshot_logs_to_keep, snapshot_logs_to_keep);
        set(&mut c.cache_size_bytes, cache_size_bytes);
        set(&mut c.watch_progress_notify_interval_ms, watch_progress_notify_interval_ms);
        if let Some(v) = max_request_bytes {
            c.max_request_bytes = v.0 as usize;
        }
        if let Some(v) = max_txn_ops {
            c.max_txn_ops = v.0 as usize;
        }
        if let Some(net) = local_network.filter(|n| !n.is_none()) {
            let net = net
                .cast::<PyLocalNetwork>()
                .map_err(|_| invalid_type(py, "local_network must be a quorumkv.LocalNetwork"))?;
            c.local_network = Some(net.get().0.clone());
        }
        guard(py, || c.validate())?;
        Ok(PyNode { config: c, client_addr, running: Mutex::new(Running::default()) })
    }

    /// Starts the node (opens the data dir, joins or forms the cluster, serves the client
    /// port if one was given). Starting a running node does nothing.
    fn start(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        let py = slf.py();
        let this = slf.get();
        {
            let r = this.running.lock().unwrap_or_else(|p| p.into_inner());
            if r.node.as_ref().is_some_and(|n| n.is_running()) {
                return Ok(slf.clone().unbind());
            }
        }
        let config = this.config.clone();
        let client_addr = this.client_addr.clone();
        let (node, server) = wait(py, move || {
            let node = q::Node::start_blocking(config)?;
            let server = match &client_addr {
                None => None,
                Some(addr) => match node.block_on(ClientServer::serve(node.clone(), addr, ServeOptions::default())) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        let _ = node.stop_blocking();
                        return Err(e);
                    }
                },
            };
            Ok((node, server))
        })?;
        let mut r = this.running.lock().unwrap_or_else(|p| p.into_inner());
        *r = Running { node: Some(node), server };
        Ok(slf.clone().unbind())
    }

    /// Stops the node (a leader hands leadership over first). Idempotent; `start()` may
    /// be called again afterwards.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let (node, server) = {
            let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
            (r.node.clone(), r.server.take())
        };
        let Some(node) = node else { return Ok(()) };
        wait(py, move || {
            if let Some(server) = server {
                node.block_on(async move {
                    server.stop().await;
                    Ok(())
                })?;
            }
            node.stop_blocking()
        })
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        Self::start(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.config.name
    }
    #[getter]
    fn peer_addr(&self) -> &str {
        &self.config.peer_addr
    }
    #[getter]
    fn data_dir(&self) -> String {
        self.config.data_dir.to_string_lossy().into_owned()
    }
    /// The etcd client port's bound address (`host:port`), if one is served.
    #[getter]
    fn client_addr(&self) -> Option<String> {
        let r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.server.as_ref().map(|s| s.local_addr().to_string()).or_else(|| self.client_addr.clone())
    }
    /// Whether the node runs.
    #[getter]
    fn is_running(&self) -> bool {
        let r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.node.as_ref().is_some_and(|n| n.is_running())
    }
    /// This member's id (stable across restarts).
    #[getter]
    fn id(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.node(py)?.id())
    }
    #[getter]
    fn cluster_id(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.node(py)?.cluster_id())
    }
    /// The minimum lease TTL of this node's cluster, seconds.
    #[getter]
    fn min_lease_ttl(&self) -> i64 {
        self.config.min_lease_ttl_secs()
    }

    fn status(&self, py: Python<'_>) -> PyResult<Status> {
        let node = self.node(py)?;
        Ok(guard(py, || node.status())?.into())
    }

    /// The leader's member id as this node knows it, or `None`.
    fn leader(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        let node = self.node(py)?;
        guard(py, || Ok(node.leader()))
    }

    fn is_leader(&self, py: Python<'_>) -> PyResult<bool> {
        let node = self.node(py)?;
        Ok(node.is_running() && node.leader() == Some(node.id()))
    }

    /// Whether a linearizable read here needs no Raft round: the node leads a cluster of
    /// which it is the only member (see `Node::reads_are_local` in the Rust API).
    fn reads_are_local(&self, py: Python<'_>) -> PyResult<bool> {
        let node = self.node(py)?;
        Ok(node.reads_are_local())
    }

    fn members(&self, py: Python<'_>) -> PyResult<Vec<Member>> {
        let node = self.node(py)?;
        Ok(guard(py, || node.members())?.into_iter().map(Member::from).collect())
    }

    #[pyo3(signature = (name, peer_addr, *, learner=Flag(false)))]
    fn add_member(&self, py: Python<'_>, name: Text, peer_addr: Text, learner: Flag) -> PyResult<Member> {
        let node = self.node(py)?;
        Ok(wait(py, move || node.add_member_blocking(&name.0, &peer_addr.0, learner.0))?.into())
    }

    fn remove_member(&self, py: Python<'_>, id: UInt) -> PyResult<()> {
        let node = self.node(py)?;
        wait(py, move || node.remove_member_blocking(id.0))
    }

    fn promote_member(&self, py: Python<'_>, id: UInt) -> PyResult<()> {
        let node = self.node(py)?;
        wait(py, move || node.promote_member_blocking(id.0))
    }

    /// Hands leadership to the member `id` (called on the leader).
    fn move_leader(&self, py: Python<'_>, id: UInt) -> PyResult<()> {
        let node = self.node(py)?;
        wait(py, move || node.move_leader_blocking(id.0))
    }

    /// Waits until local reads see every write committed before the call.
    fn read_barrier(&self, py: Python<'_>) -> PyResult<()> {
        let node = self.node(py)?;
        wait(py, move || node.read_barrier_blocking())
    }

    /// Waits until this node knows of a leader that is alive; `False` on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait_for_leader(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let node = self.node(py)?;
        let timeout = seconds(py, timeout)?;
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if node.has_live_leader() {
                return Ok(true);
            }
            if !node.is_running() {
                return Err(core_error(py, &q::Error::Stopped));
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            py.detach(|| std::thread::sleep(std::time::Duration::from_millis(20)));
            py.check_signals()?;
        }
    }

    // ----- KV -----

    #[pyo3(signature = (key, value, *, lease=None, prev_kv=Flag(false), ignore_value=Flag(false), ignore_lease=Flag(false)))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: Bytes,
        value: Bytes,
        lease: Option<Int>,
        prev_kv: Flag,
        ignore_value: Flag,
        ignore_lease: Flag,
    ) -> PyResult<PutResult> {
        let node = self.node(py)?;
        let req = put_request(key, value, lease, prev_kv, ignore_value, ignore_lease);
        Ok(PutResult(wait(py, move || node.put_blocking(req))?))
    }

    #[pyo3(signature = (key, *, serializable=Flag(false), revision=Int(0)))]
    fn get(&self, py: Python<'_>, key: Bytes, serializable: Flag, revision: Int) -> PyResult<Py<PyAny>> {
        let node = self.node(py)?;
        let req = get_request(key, serializable, revision);
        // A read that needs no wait (serializable, or linearizable on a one-member
        // cluster's leader) keeps the GIL: releasing it costs more than the read.
        let kv = if req.serializable || node.reads_are_local() {
            guard(py, || node.range_local(&req))?.kvs.pop()
        } else {
            wait(py, move || node.range_blocking(req))?.kvs.pop()
        };
        kv_opt_owned(py, kv)
    }

    #[pyo3(signature = (key=Bytes(Vec::new()), range_end=None, *, prefix=Flag(false), from_key=Flag(false),
        limit=Int(0), revision=Int(0), sort_order=None, sort_target=None, serializable=Flag(false),
        keys_only=Flag(false), count_only=Flag(false), min_mod_revision=Int(0), max_mod_revision=Int(0),
        min_create_revision=Int(0), max_create_revision=Int(0)))]
    #[allow(clippy::too_many_arguments)]
    fn range(
        &self,
        py: Python<'_>,
        key: Bytes,
        range_end: Option<Bytes>,
        prefix: Flag,
        from_key: Flag,
        limit: Int,
        revision: Int,
        sort_order: Option<Text>,
        sort_target: Option<Text>,
        serializable: Flag,
        keys_only: Flag,
        count_only: Flag,
        min_mod_revision: Int,
        max_mod_revision: Int,
        min_create_revision: Int,
        max_create_revision: Int,
    ) -> PyResult<RangeResult> {
        let node = self.node(py)?;
        let req = RangeArgs {
            key,
            range_end,
            prefix,
            from_key,
            limit,
            revision,
            sort_order,
            sort_target,
            serializable,
            keys_only,
            count_only,
            min_mod_revision,
            max_mod_revision,
            min_create_revision,
            max_create_revision,
        }
        .build(py)?;
        // `range_blocking` serves a read that needs no wait on this thread by itself.
        Ok(RangeResult(wait(py, move || node.range_blocking(req))?))
    }

    #[pyo3(signature = (key, range_end=None, *, prefix=Flag(false), from_key=Flag(false), prev_kv=Flag(false)))]
    fn delete(
        &self,
        py: Python<'_>,
        key: Bytes,
        range_end: Option<Bytes>,
        prefix: Flag,
        from_key: Flag,
        prev_kv: Flag,
    ) -> PyResult<DeleteResult> {
        let node = self.node(py)?;
        let req = delete_request(py, key, range_end, prefix, from_key, prev_kv)?;
        Ok(DeleteResult(wait(py, move || node.delete_range_blocking(req))?))
    }

    #[pyo3(signature = (compare=None, success=None, failure=None))]
    fn txn(
        &self,
        py: Python<'_>,
        compare: Option<&Bound<'_, PyAny>>,
        success: Option<&Bound<'_, PyAny>>,
        failure: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<TxnResult> {
        let node = self.node(py)?;
        let req = txn_request(py, compare, success, failure)?;
        Ok(TxnResult(wait(py, move || node.txn_blocking(req))?))
    }

    /// Compacts the history below `revision`; returns the response header.
    #[pyo3(signature = (revision, *, physical=Flag(false)))]
    fn compact(&self, py: Python<'_>, revision: Int, physical: Flag) -> PyResult<crate::types::Header> {
        let node = self.node(py)?;
        let req = q::CompactionRequest { revision: revision.0, physical: physical.0 };
        Ok(header(&wait(py, move || node.compact_blocking(req))?.header))
    }

    // ----- watch -----

    #[pyo3(signature = (key, range_end=None, *, prefix=Flag(false), from_key=Flag(false), start_revision=Int(0),
        prev_kv=Flag(false), no_put=Flag(false), no_delete=Flag(false), progress_notify=Flag(false)))]
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &self,
        py: Python<'_>,
        key: Bytes,
        range_end: Option<Bytes>,
        prefix: Flag,
        from_key: Flag,
        start_revision: Int,
        prev_kv: Flag,
        no_put: Flag,
        no_delete: Flag,
        progress_notify: Flag,
    ) -> PyResult<PyWatch> {
        let node = self.node(py)?;
        let (key, range_end) = crate::requests::key_range(py, key.0, range_end, prefix.0, from_key.0)?;
        let req = q::WatchRequest {
            key,
            range_end,
            start_revision: start_revision.0,
            progress_notify: progress_notify.0,
            no_put: no_put.0,
            no_delete: no_delete.0,
            prev_kv: prev_kv.0,
            watch_id: 0,
        };
        let watcher = guard(py, || node.watch(req))?;
        Ok(PyWatch::new(watcher))
    }

    // ----- leases -----

    /// Grants a lease of `ttl` seconds (raised to the cluster minimum).
    #[pyo3(signature = (ttl, *, id=Int(0)))]
    fn grant(&self, py: Python<'_>, ttl: Int, id: Int) -> PyResult<PyLease> {
        let node = self.node(py)?;
        let n = node.clone();
        let resp = wait(py, move || n.lease_grant_blocking(q::LeaseGrantRequest { ttl: ttl.0, id: id.0 }))?;
        Ok(PyLease::new(node, resp.id, resp.ttl, resp.header))
    }

    /// A handle to the existing lease `id` (`LeaseNotFoundError` if there is none).
    fn lease(&self, py: Python<'_>, id: Int) -> PyResult<PyLease> {
        let node = self.node(py)?;
        let n = node.clone();
        let resp = wait(py, move || n.lease_time_to_live_blocking(id.0, false))?;
        if resp.ttl < 0 {
            return Err(core_error(py, &q::Error::LeaseNotFound));
        }
        Ok(PyLease::new(node, id.0, resp.granted_ttl, resp.header))
    }

    /// Every lease id, ascending.
    fn leases(&self, py: Python<'_>) -> PyResult<Vec<i64>> {
        let node = self.node(py)?;
        Ok(wait(py, move || node.lease_leases_blocking())?.leases)
    }

    /// Revokes the lease `id`, deleting its keys; returns the response header.
    fn revoke(&self, py: Python<'_>, id: Int) -> PyResult<crate::types::Header> {
        let node = self.node(py)?;
        Ok(header(&wait(py, move || node.lease_revoke_blocking(id.0))?.header))
    }

    // ----- asyncio (private; see quorumkv.Node.aput and friends) -----

    /// Starts `op` without blocking; returns a future of the running event loop that
    /// its result resolves (`quorumkv.Node.aput` and friends await it).
    fn _start<'py>(&self, py: Python<'py>, op: &Bound<'py, Op>) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node(py)?;
        let call = LoopCall::new(py)?;
        let (c, fut) = (call.completer(), call.fut.clone().unbind());
        let on = crate::aio::On::Node(&node);
        let n = node.clone();
        let first = match op.get().0.clone() {
            Request::Put(r) => spawn(on, c, fut, async move { n.put(r).await }, |py, v| PutResult(v).into_py_any(py)),
            Request::Range(r) => {
                spawn(on, c, fut, async move { n.range(r).await }, |py, v| RangeResult(v).into_py_any(py))
            }
            Request::Get(r) => get_on(on, c, fut, n, r),
            Request::Delete(r) => {
                spawn(on, c, fut, async move { n.delete_range(r).await }, |py, v| DeleteResult(v).into_py_any(py))
            }
            Request::Txn(r) => spawn(on, c, fut, async move { n.txn(r).await }, |py, v| TxnResult(v).into_py_any(py)),
            Request::Compact(r) => {
                spawn(on, c, fut, async move { n.compact(r).await }, |py, v| header(&v.header).into_py_any(py))
            }
            Request::Grant(r) => {
                let handle = node.clone();
                spawn(on, c, fut, async move { n.lease_grant(r).await }, move |py, v| {
                    PyLease::new(handle, v.id, v.ttl, v.header).into_py_any(py)
                })
            }
        };
        call.finish(first)
    }

    /// The first half of `quorumkv.Node.aget`: a get that needs no wait (serializable, or
    /// linearizable on a one-member cluster's leader) is read here, under the GIL, and its
    /// `KeyValue` or `None` returned. A get that needs a wait returns `NotImplemented`: the
    /// caller awaits `_aget`. Once every `IMMEDIATE_BUDGET` consecutive immediate answers it
    /// returns `Ellipsis` without reading: the caller yields to its event loop and asks again.
    /// The budget is tokio's cooperative-scheduling idea: a task looping over reads that
    /// never suspend would otherwise starve the event loop (its timers, other tasks, I/O).
    fn _get_now(&self, py: Python<'_>, key: Bytes, serializable: Flag, revision: Int) -> PyResult<Py<PyAny>> {
        let node = self.node(py)?;
        if !(serializable.0 || node.reads_are_local()) {
            return Ok(py.NotImplemented());
        }
        if !crate::aio::take_immediate_budget() {
            return Ok(py.Ellipsis());
        }
        let req = get_request(key, serializable, revision);
        let kv = guard(py, || node.range_local(&req))?.kvs.pop();
        kv_opt_owned(py, kv)
    }

    /// `_start` of a get, without an `Op` (`quorumkv.Node.aget`, the most frequent call).
    fn _aget<'py>(
        &self,
        py: Python<'py>,
        key: Bytes,
        serializable: Flag,
        revision: Int,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node(py)?;
        let call = LoopCall::new(py)?;
        let fut = call.fut.clone().unbind();
        let first = get_on(
            crate::aio::On::Node(&node),
            call.completer(),
            fut,
            node.clone(),
            get_request(key, serializable, revision),
        );
        call.finish(first)
    }

    fn __repr__(&self) -> String {
        format!(
            "Node(name={:?}, peer_addr={:?}, running={})",
            self.config.name,
            self.config.peer_addr,
            if self.is_running() { "True" } else { "False" }
        )
    }
}

/// Spawns a get whose future resolves to a `KeyValue` or `None`.
fn get_on(on: crate::aio::On<'_>, c: &Completer, fut: Py<PyAny>, n: q::Node, r: q::RangeRequest) -> bool {
    spawn(on, c, fut, async move { n.range(r).await }, |py, mut v| kv_opt_owned(py, v.kvs.pop()))
}
