//! A quorumkv node: lifecycle, identity, routing and the public Rust API.
//!
//! [`Node`] is a cheap-to-clone handle (an `Arc`); every clone talks to the same node.
//! Async methods may be awaited on any tokio runtime: work that needs the network or
//! timers runs on the library's own runtime. Every async method has a `_blocking` twin
//! for threads that are not inside an async runtime (the C ABI and Python use those).

mod config;
mod datadir;
mod forward;
mod forward_writes;
mod heartbeat;
mod kv;
mod lease;
mod maintenance;
mod propose;
mod read_index;
mod routing;
mod watch;

use openraft::type_config::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace};
use openraft::{Config as RaftConfig, ServerState, SnapshotPolicy};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;

pub use config::{Bootstrap, NodeConfig};
pub use forward::Member;
pub use lease::KeepAlive;
pub use maintenance::KvHash;

use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::{AppliedBatch, MvccStore, ResponseHeader};
use crate::raft::log_store::{FsyncStats, LogStore};
use crate::raft::network::{AddressBook, ClusterId, LeaderContact, NetworkFactory, PeerClients, PeerService, PeerTls};
use crate::raft::state_machine::{ApplyObserver, StateMachine};
use crate::raft::{MemberAddrs, Raft};
use crate::watch::WatchHub;
use datadir::Identity;

/// A snapshot of one node's state (etcd's endpoint status, and more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This member's id.
    pub id: u64,
    /// This member's name.
    pub name: String,
    /// The cluster id (0 while a joining node has not been accepted).
    pub cluster_id: u64,
    /// Current Raft term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Whether this node is a non-voting learner.
    pub is_learner: bool,
    /// Highest log index known committed.
    pub commit_index: u64,
    /// Highest log index applied to the state machine.
    pub applied_index: u64,
    /// Highest log index in the local log.
    pub last_log_index: u64,
    /// Current MVCC revision.
    pub revision: i64,
    /// MVCC compaction point.
    pub compact_revision: i64,
    /// Size of the data on disk, bytes.
    pub db_size_bytes: u64,
    /// fsyncs of the Raft log so far.
    pub fsync_count: u64,
    /// Time spent in those fsyncs, microseconds.
    pub fsync_total_us: u64,
    /// Raft log appends acknowledged (each covers one or more entries).
    pub log_appends: u64,
    /// Raft log entries appended.
    pub log_entries: u64,
    /// Set when Raft stopped on an unrecoverable error (a failed fsync, a full disk):
    /// the node takes no more writes until restarted.
    pub fatal_error: Option<String>,
    /// Watches open on this node.
    pub watch_count: usize,
    /// Whether this node knows of a leader (`leader.is_some()`).
    pub has_leader: bool,
    /// How often this node saw the leader change to a new, known leader since it started
    /// (the first election counts; etcd's `leader_changes_seen_total`).
    pub leader_changes: u64,
    /// Writes this node forwarded to the leader (as a follower).
    pub forwarded_writes: u64,
    /// Requests those writes took: a follower's concurrent writes share one.
    pub forwarded_write_batches: u64,
    /// Linearizable reads this node asked the leader a read index for (as a follower).
    pub forwarded_reads: u64,
    /// Read-index requests those reads took: concurrent reads share one.
    pub forwarded_read_rounds: u64,
    /// Of those, the ones the leader answered without a heartbeat round because this node
    /// vouched for it (a follower that makes a quorum with the leader, as in any 3-voter
    /// cluster).
    pub forwarded_vouched_rounds: u64,
    /// Leadership rounds this node ran as leader for its own linearizable reads that a
    /// follower's vote confirmed with one call, instead of a heartbeat round.
    pub vouched_read_rounds: u64,
}

/// Counters behind [`NodeStatus`]'s `forwarded_*` fields.
#[derive(Debug, Default)]
pub(crate) struct ForwardStats {
    pub writes: AtomicU64,
    pub write_batches: AtomicU64,
    pub reads: AtomicU64,
    pub read_rounds: AtomicU64,
    pub vouched_rounds: AtomicU64,
    pub leader_vouched_rounds: AtomicU64,
}

/// A future handed to [`Node::spawn_detached_all`].
pub type DetachedFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// The library's shared runtime (two worker threads: sized for small machines). Nodes may
/// share it; they share nothing else.
///
/// Its threads block SIGPIPE: a write to a peer connection the other side has closed
/// then fails with `EPIPE` instead of killing the process. Rust programs ignore SIGPIPE
/// at start-up, but a C, C++ or Python host may not, and sockets written with `writev`
/// cannot ask for `MSG_NOSIGNAL`.
fn shared_runtime() -> Handle {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2).thread_name("qkv-rt").on_thread_start(block_sigpipe).enable_all();
        // Without tokio's LIFO slot, a task woken by the running one waits its turn in
        // the queue instead of running next. When an applied entry answers a few dozen
        // gRPC requests at once, their stream tasks then all queue their responses before
        // the connection task runs, and it writes them with one `writev` instead of one
        // each (docs/benchmarks.md, 2026-12-07 evening: +7 % puts/s, +12–34 % linearizable
        // ranges/s, 8–14 % less server CPU). The switch is one of tokio's unstable APIs:
        // this workspace builds with `--cfg tokio_unstable` (.cargo/config.toml).
        #[cfg(tokio_unstable)]
        b.disable_lifo_slot();
        b.build().expect("cannot start the quorumkv runtime")
    })
    .handle()
    .clone()
}

/// Blocks SIGPIPE on the calling thread (see [`shared_runtime`]). A SIGPIPE raised by a
/// write on this thread then stays pending, harmlessly, and the write returns `EPIPE`.
fn block_sigpipe() {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// What a running node owns; dropped as a whole when the node stops.
pub(crate) struct Running {
    raft: Raft,
    /// Raft's metrics, kept so the read fast path borrows them without cloning a receiver.
    metrics: openraft::alias::WatchReceiverOf<crate::raft::TypeConfig, openraft::RaftMetrics<crate::raft::TypeConfig>>,
    store: Arc<MvccStore>,
    log_store: LogStore,
    db: Database,
    identity_ks: Keyspace,
    server_stop: Option<oneshot::Sender<()>>,
    peer_service: PeerService,
    server_task: Option<tokio::task::JoinHandle<()>>,
    watcher_task: tokio::task::JoinHandle<()>,
    /// The leader's heartbeat clock (`heartbeat::drive`).
    heartbeat_task: tokio::task::JoinHandle<()>,
    hub: Arc<WatchHub>,
    hub_task: tokio::task::JoinHandle<()>,
    proposer: Arc<propose::Proposer>,
    lessor: Arc<Lessor>,
    expiry_task: tokio::task::JoinHandle<()>,
    _lock: datadir::DataDirLock,
}

/// Hands what the apply loop commits to the watch hub and the lessor.
struct Observer {
    hub: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    store: Arc<MvccStore>,
}

impl ApplyObserver for Observer {
    fn wants_events(&self) -> bool {
        self.hub.wants_events()
    }

    fn applied(&self, revision: i64, batch: AppliedBatch) {
        self.lessor.apply(&batch.lease_changes);
        self.hub.publish(revision, batch.events.as_deref());
    }

    fn replaced(&self, revision: i64) {
        match self.store.leases() {
            Ok(leases) => self.lessor.reset(&leases),
            Err(e) => tracing::error!(error = %e, "cannot read the leases of an installed snapshot"),
        }
        self.hub.publish(revision, None);
    }
}

/// Fields the hot paths read without locks, refreshed from Raft metrics.
#[derive(Default)]
struct Observed {
    term: AtomicU64,
    /// 0: no known leader.
    leader: AtomicU64,
    /// Times `leader` changed to a known leader other than the previous value.
    leader_changes: AtomicU64,
    members: RwLock<BTreeMap<u64, (MemberAddrs, bool)>>,
}

pub(crate) struct NodeInner {
    config: NodeConfig,
    runtime: Handle,
    member_id: u64,
    cluster_id: ClusterId,
    running: RwLock<Option<Arc<Running>>>,
    stopped: AtomicBool,
    observed: Observed,
    fsync: Arc<FsyncStats>,
    peers: Arc<PeerClients>,
    /// The peer port's TLS, if configured.
    peer_tls: Option<Arc<PeerTls>>,
    addresses: AddressBook,
    /// Leadership rounds for linearizable reads, while this node leads.
    read_index: Arc<read_index::ReadIndexBatcher>,
    /// Read-index requests this node forwards to the leader, batched likewise.
    forwarded_reads: Arc<read_index::ReadIndexBatcher>,
    /// Writes this node forwards to the leader, batched.
    forwarder: propose::WriteQueue,
    forward_stats: ForwardStats,
    /// As leader: no follower is asked to vouch until then (one failed to answer).
    vouch_pause_until: std::sync::Mutex<Option<std::time::Instant>>,
    leader_contact: Arc<LeaderContact>,
    /// Background chores of this incarnation (publishing addresses), aborted on stop.
    chores: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl NodeInner {
    /// The local network this node is on: none with peer TLS (see [`LocalNetwork`]).
    fn local_network(&self) -> Option<&crate::LocalNetwork> {
        self.config.local_network.as_ref().filter(|_| self.peer_tls.is_none())
    }
}

/// A handle to a running (or stopped) node. Cloning is cheap; all clones are the same node.
///
/// Thread-safety: `Send + Sync`; call any method from any thread. Errors are [`Error`].
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &self.inner.config.name).field("id", &self.inner.member_id).finish()
    }
}

impl Node {
    /// Starts a node: locks and opens its data dir, starts Raft and the peer port, and
    /// bootstraps or joins a cluster as `config.bootstrap` says (a data dir that already
    /// holds a node rejoins with its persisted identity).
    ///
    /// Returns once the node serves requests; a joining node returns once it is a member.
    ///
    /// Errors: [`Error::InvalidConfig`], [`Error::DataDirLocked`], [`Error::DataDirIncompatible`],
    /// [`Error::DataDirCorrupted`], [`Error::ClusterMismatch`] (data untouched),
    /// [`Error::Transport`] (peer port in use, or no member reachable to join).
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let rt = shared_runtime();
        rt.spawn(Self::start_on(config, rt.clone())).await.map_err(Error::internal)?
    }

    /// Blocking twin of [`Node::start`]; call it from a thread outside any async runtime.
    pub fn start_blocking(config: NodeConfig) -> Result<Node> {
        ensure_not_async()?;
        let rt = shared_runtime();
        rt.block_on(Self::start_on(config, rt.clone()))
    }

    async fn start_on(config: NodeConfig, runtime: Handle) -> Result<Node> {
        config.validate()?;
        let peer_tls = config.peer_tls.as_ref().map(PeerTls::load).transpose()?;
        let lock = datadir::lock_and_check(&config.data_dir)?;
        let db = {
            let dir = config.data_dir.clone();
            let cache = config.cache_size_bytes;
            tokio::task::spawn_blocking(move || datadir::open_db(&dir, cache)).await.map_err(Error::internal)??
        };
        let identity_ks = datadir::identity_keyspace(&db)?;
        let (identity, fresh) = match datadir::load_identity(&identity_ks)? {
            Some(id) => {
                if id.name != config.name {
                    return Err(Error::InvalidConfig(format!(
                        "data dir belongs to member {:?}, not {:?}",
                        id.name, config.name
                    )));
                }
                (id, false)
            }
            None => {
                let mut id = new_identity(&config);
                if let Bootstrap::Join(peers) = &config.bootstrap {
                    let clients = PeerClients::new(peer_tls.clone());
                    if let Some(added) = routing::preassigned_id(&clients, peers, &config.peer_addr).await {
                        tracing::info!(id = format_args!("{added:016x}"), "taking the member added for this address");
                        id.member_id = added;
                    }
                }
                datadir::save_identity(&db, &identity_ks, &id)?;
                (id, true)
            }
        };
        let inner = Arc::new(NodeInner {
            runtime,
            member_id: identity.member_id,
            cluster_id: Arc::new(AtomicU64::new(identity.cluster_id)),
            running: RwLock::new(None),
            stopped: AtomicBool::new(false),
            observed: Observed::default(),
            fsync: Arc::new(FsyncStats::default()),
            peers: Arc::new(PeerClients::new(peer_tls.clone())),
            peer_tls,
            addresses: AddressBook::default(),
            read_index: Arc::default(),
            forwarded_reads: Arc::default(),
            forwarder: Default::default(),
            forward_stats: ForwardStats::default(),
            vouch_pause_until: std::sync::Mutex::default(),
            leader_contact: Arc::default(),
            chores: std::sync::Mutex::default(),
            config,
        });
        let node = Node { inner };
        let running = node.open_raft(db, identity_ks, lock).await?;
        *node.inner.running.write().expect("running lock") = Some(Arc::new(running));
        if let Err(e) = node.bootstrap(&identity, fresh).await {
            let _ = node.stop().await;
            return Err(e);
        }
        tracing::info!(name = %node.inner.config.name, id = format_args!("{:016x}", node.inner.member_id), "node started");
        Ok(node)
    }

    async fn open_raft(&self, db: Database, identity_ks: Keyspace, lock: datadir::DataDirLock) -> Result<Running> {
        let cfg = &self.inner.config;
        let store = Arc::new(MvccStore::open(db.clone())?);
        let log_store = LogStore::open(db.clone(), self.inner.fsync.clone())?;
        let hub = WatchHub::new(store.clone(), Duration::from_millis(cfg.watch_progress_notify_interval_ms));
        let lessor = Arc::new(Lessor::new(&store.leases()?));
        let observer = Arc::new(Observer { hub: hub.clone(), lessor: lessor.clone(), store: store.clone() });
        let sm = StateMachine::open(store.clone(), datadir::snapshot_dir(&cfg.data_dir), Some(observer))?;
        let raft_config = RaftConfig {
            cluster_name: "quorumkv".into(),
            // Paces openraft's election tick and RPC timeouts only: the leader's heartbeats
            // come from `heartbeat::drive`, at `heartbeat_interval_ms`.
            heartbeat_interval: heartbeat::raft_heartbeat_interval(cfg),
            enable_heartbeat: false,
            election_timeout_min: cfg.election_timeout_ms,
            election_timeout_max: cfg.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_threshold_entries),
            max_in_snapshot_log_to_keep: cfg.snapshot_logs_to_keep,
            install_snapshot_timeout: 60_000,
            enable_pre_vote: Some(true),
            // Replicate entries while the leader's own fsync runs: commit then costs about
            // one fsync instead of two in a row.
            broadcast_submitted_on_append: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let network = NetworkFactory {
            member_id: self.inner.member_id,
            cluster_id: self.inner.cluster_id.clone(),
            addresses: self.inner.addresses.clone(),
            channels: self.inner.peers.clone(),
            local: self.inner.local_network().cloned(),
        };
        let raft = Raft::new(self.inner.member_id, Arc::new(raft_config), network, log_store.clone(), sm.clone())
            .await
            .map_err(|e| Error::Fatal(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(&cfg.peer_addr)
            .await
            .map_err(|e| Error::Transport(format!("cannot listen on peer address {}: {e}", cfg.peer_addr)));
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                let _ = raft.shutdown().await;
                log_store.shutdown();
                return Err(e);
            }
        };
        let service = PeerService::new(
            raft.clone(),
            sm,
            self.inner.cluster_id.clone(),
            Arc::new(forward::Handler { node: Arc::downgrade(&self.inner) }),
            self.inner.addresses.clone(),
            self.inner.peer_tls.as_ref().is_some_and(|t| t.mutual()),
            self.inner.leader_contact.clone(),
        );
        let peer_service = service.clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        // The builder's tcp_nodelay does not reach sockets from a custom incoming stream;
        // without it, small streamed replies wait for Nagle + delayed ACK (~40 ms).
        let incoming = futures::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
            s.inspect(|sock| {
                let _ = sock.set_nodelay(true);
            })
        });
        let stop = async {
            let _ = stop_rx.await;
        };
        if let Some(network) = self.inner.local_network() {
            network.join(&cfg.peer_addr, service.clone());
        }
        let server_task = match &self.inner.peer_tls {
            None => spawn_peer_server(service, incoming, stop),
            Some(tls) => spawn_peer_server(service, tls_incoming(incoming, tls.acceptor.clone()), stop),
        };
        let watcher_task = tokio::spawn(watch_metrics(Arc::downgrade(&self.inner), raft.clone()));
        let heartbeat_task =
            tokio::spawn(heartbeat::drive(raft.clone(), Duration::from_millis(cfg.heartbeat_interval_ms)));
        let hub_task = hub.spawn();
        let proposer = Arc::new(propose::Proposer::new(raft.clone()));
        let expiry_task = tokio::spawn(lease::expiry_task(Arc::downgrade(&self.inner), lessor.clone()));
        Ok(Running {
            hub,
            hub_task,
            proposer,
            lessor,
            expiry_task,
            metrics: raft.metrics(),
            raft,
            store,
            log_store,
            db,
            identity_ks,
            server_stop: Some(stop_tx),
            peer_service,
            server_task: Some(server_task),
            watcher_task,
            heartbeat_task,
            _lock: lock,
        })
    }

    async fn bootstrap(&self, identity: &Identity, fresh: bool) -> Result<()> {
        let cfg = &self.inner.config;
        let raft = self.running()?.raft.clone();
        if !fresh {
            if let Bootstrap::Join(peers) = &cfg.bootstrap {
                if identity.cluster_id != 0 {
                    self.verify_cluster(peers).await?;
                }
            }
            if identity.peer_addr != cfg.peer_addr || !cfg.client_addrs.is_empty() {
                self.spawn_address_update(identity.clone());
            }
            return Ok(());
        }
        let me = self.addrs();
        match &cfg.bootstrap {
            Bootstrap::Single => {
                let members = BTreeMap::from([(self.inner.member_id, me)]);
                initialize(&raft, members).await
            }
            Bootstrap::InitialCluster(list) => {
                let members: BTreeMap<u64, MemberAddrs> = list
                    .iter()
                    .map(|(name, addr)| {
                        let id = datadir::member_id_of(name, addr, &cfg.cluster_token);
                        let addrs = if name == &cfg.name {
                            me.clone()
                        } else {
                            MemberAddrs { name: name.clone(), peer_addrs: vec![addr.clone()], client_addrs: vec![] }
                        };
                        (id, addrs)
                    })
                    .collect();
                initialize(&raft, members).await?;
                // Members listed by the others carry no client addresses: add ours.
                self.spawn_address_update(identity.clone());
                Ok(())
            }
            Bootstrap::Join(peers) => self.join_through(peers, identity).await,
        }
    }

    /// This node's advertised addresses.
    fn addrs(&self) -> MemberAddrs {
        let cfg = &self.inner.config;
        MemberAddrs {
            name: cfg.name.clone(),
            peer_addrs: vec![cfg.peer_addr.clone()],
            client_addrs: cfg.client_addrs.clone(),
        }
    }

    pub(crate) fn running(&self) -> Result<Arc<Running>> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        self.inner.running.read().expect("running lock").clone().ok_or(Error::Stopped)
    }

    /// This node's member id (stable across restarts).
    pub fn id(&self) -> u64 {
        self.inner.member_id
    }

    /// The cluster id (0 while a joining node has not been accepted).
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id.load(Ordering::Acquire)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The leader this node currently knows of (no network round).
    pub fn leader(&self) -> Option<u64> {
        match self.inner.observed.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// Whether the node has a leader that is alive: it leads and a quorum acknowledged it
    /// recently, or it follows a leader it heard from recently (within three election
    /// timeouts). [`Node::leader`] may keep naming a leader that is gone while no new one
    /// can be elected; etcd's "no leader" is decided here.
    pub fn has_live_leader(&self) -> bool {
        let Some(leader) = self.leader() else { return false };
        let Ok(running) = self.running() else { return false };
        let window = Duration::from_millis(self.inner.config.election_timeout_ms.saturating_mul(3));
        if leader == self.inner.member_id {
            let acked = running.raft.metrics().borrow_watched().last_quorum_acked;
            return acked.is_some_and(|t| openraft::Instant::elapsed(&*t) < window);
        }
        self.inner.leader_contact.since().is_some_and(|d| d < window)
    }

    /// Whether the node is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.running().is_ok()
    }

    pub(crate) fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id(),
            member_id: self.inner.member_id,
            revision,
            raft_term: self.inner.observed.term.load(Ordering::Acquire),
        }
    }

    /// The node's status (local; no network round).
    pub fn status(&self) -> Result<NodeStatus> {
        let running = self.running()?;
        let m = running.raft.metrics().borrow_watched().clone();
        let is_learner = !m.membership_config.membership().voter_ids().any(|v| v == self.inner.member_id);
        Ok(NodeStatus {
            id: self.inner.member_id,
            name: self.inner.config.name.clone(),
            cluster_id: self.cluster_id(),
            term: m.current_term,
            leader: m.current_leader,
            is_leader: m.state == ServerState::Leader,
            is_learner,
            commit_index: m.local_committed.map_or(0, |l| l.index),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            revision: running.store.revision(),
            compact_revision: running.store.compact_revision(),
            db_size_bytes: datadir::disk_usage(&self.inner.config.data_dir),
            fatal_error: m.running_state.as_ref().err().map(|e| e.to_string()),
            fsync_count: self.inner.fsync.count.load(Ordering::Relaxed),
            fsync_total_us: self.inner.fsync.total_us.load(Ordering::Relaxed),
            log_appends: self.inner.fsync.appends.load(Ordering::Relaxed),
            log_entries: self.inner.fsync.entries.load(Ordering::Relaxed),
            watch_count: running.hub.len(),
            has_leader: self.has_live_leader(),
            leader_changes: self.inner.observed.leader_changes.load(Ordering::Relaxed),
            forwarded_writes: self.inner.forward_stats.writes.load(Ordering::Relaxed),
            forwarded_write_batches: self.inner.forward_stats.write_batches.load(Ordering::Relaxed),
            forwarded_reads: self.inner.forward_stats.reads.load(Ordering::Relaxed),
            forwarded_read_rounds: self.inner.forward_stats.read_rounds.load(Ordering::Relaxed),
            forwarded_vouched_rounds: self.inner.forward_stats.vouched_rounds.load(Ordering::Relaxed),
            vouched_read_rounds: self.inner.forward_stats.leader_vouched_rounds.load(Ordering::Relaxed),
        })
    }

    /// The members as this node knows them (local; no network round), by id: the
    /// membership in its Raft log, read from Raft's own metrics rather than the copy the
    /// node's observer task keeps, so a membership change this node has applied (or
    /// appended: a change takes effect once in the log) is always listed.
    pub fn members(&self) -> Result<Vec<Member>> {
        let running = self.running()?;
        let metrics = running.metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        Ok(membership
            .nodes()
            .map(|(id, addrs)| Member::from_addrs(*id, addrs, !membership.voter_ids().any(|v| v == *id)))
            .collect())
    }

    /// Stops the node: a leader first hands leadership to the most up-to-date voter (so
    /// the others pay no election timeout), then Raft, the peer port and the data dir are
    /// released. Idempotent; the same config may be started again afterwards.
    pub async fn stop(&self) -> Result<()> {
        let node = self.clone();
        self.inner.runtime.spawn(async move { node.stop_inner(true).await }).await.map_err(Error::internal)?
    }

    /// Blocking twin of [`Node::stop`].
    pub fn stop_blocking(&self) -> Result<()> {
        ensure_not_async()?;
        self.inner.runtime.block_on(self.stop_inner(true))
    }

    /// Stops the node like a crash would, as far as the cluster can tell: no leadership
    /// hand-over, so the others must detect the loss and elect a new leader. For fault
    /// tests, and for stopping a whole cluster at once (`LocalCluster::stop`), where a
    /// hand-over has nobody to go to; the data dir stays consistent (as after a SIGKILL,
    /// the log is replayed).
    #[doc(hidden)]
    pub async fn stop_abruptly(&self) -> Result<()> {
        let node = self.clone();
        self.inner.runtime.spawn(async move { node.stop_inner(false).await }).await.map_err(Error::internal)?
    }

    async fn stop_inner(&self, hand_over: bool) -> Result<()> {
        let Some(running) = self.inner.running.write().expect("running lock").take() else {
            return Ok(());
        };
        // New requests fail with `Stopped` from here on; leadership is handed over first.
        self.inner.stopped.store(true, Ordering::Release);
        for chore in self.inner.chores.lock().expect("chores lock").drain(..) {
            chore.abort();
        }
        if hand_over {
            self.transfer_leadership(&running).await;
        }
        if let Some(network) = self.inner.local_network() {
            network.leave(&self.inner.config.peer_addr, &running.peer_service);
        }
        running.peer_service.detach();
        let _ = running.raft.shutdown().await;
        running.log_store.shutdown();
        running.watcher_task.abort();
        running.heartbeat_task.abort();
        running.expiry_task.abort();
        // Watch consumers get `Stopped` (not a cancel) and no more events.
        running.hub.close();
        running.hub_task.abort();
        let hub = running.hub.clone();
        // Wait for requests still using the node to finish, then release everything.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut running = running;
        let mut owned = loop {
            match Arc::try_unwrap(running) {
                Ok(r) => break Some(r),
                Err(r) if Instant::now() < deadline => {
                    running = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => break None,
            }
        };
        if let Some(r) = owned.as_mut() {
            if let Some(tx) = r.server_stop.take() {
                let _ = tx.send(());
            }
            if let Some(mut task) = r.server_task.take() {
                // Peers keep replication streams open; give in-flight calls a moment,
                // then close every connection so the port is free at once.
                if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
                    task.abort();
                    let _ = task.await;
                }
            }
        }
        self.inner.peers.clear();
        // Dropping fjall waits for background work; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            hub.wait_idle();
            drop(owned)
        })
        .await
        .map_err(Error::internal)?;
        tracing::info!(name = %self.inner.config.name, "node stopped");
        Ok(())
    }

    /// Hands leadership to the voter with the most replicated log, if this node leads.
    async fn transfer_leadership(&self, running: &Running) {
        let m = running.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return;
        }
        let me = self.inner.member_id;
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().filter(|v| *v != me).collect();
        let matched =
            |id: &u64| m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map_or(0, |l| l.index);
        let Some(target) = voters.iter().copied().max_by_key(matched) else {
            return;
        };
        if running.raft.trigger().transfer_leader(target).await.is_err() {
            return;
        }
        let wait = Duration::from_millis(self.inner.config.election_timeout_ms * 2);
        let _ = running
            .raft
            .wait(Some(wait))
            .metrics(|m| m.current_leader.is_some() && m.current_leader != Some(me), "leadership transferred")
            .await;
    }

    /// Runs `fut` (any async method of this crate: [`Node`]'s, a
    /// [`ClientServer`](crate::server::ClientServer)'s) to completion on the calling
    /// thread, driving it with the library's runtime: the way foreign threads (the C ABI,
    /// Python) wait for async work.
    ///
    /// Errors: `InvalidArgument` when called from a thread inside an async runtime;
    /// otherwise whatever `fut` returns.
    pub fn block_on<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        ensure_not_async()?;
        self.inner.runtime.block_on(fut)
    }

    pub(crate) fn runtime(&self) -> &Handle {
        &self.inner.runtime
    }

    /// Runs `fut` to completion on the library's runtime, detached: the way a binding
    /// whose callers are not in an async runtime starts async work without a thread per
    /// call and delivers the result itself (Python's asyncio layer does). The node's own
    /// async methods then run without a hop between runtimes. `fut` must not block.
    pub fn spawn_detached(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        drop(self.inner.runtime.spawn(fut));
    }

    /// [`spawn_detached`](Self::spawn_detached) for many futures at once, with one
    /// hand-off to the runtime: a thread outside the runtime pays for waking a runtime
    /// worker once per call instead of once per future (the futures are then spawned
    /// from inside the runtime, where that is cheap). Each future still runs as a task
    /// of its own, so they run concurrently and in parallel.
    pub fn spawn_detached_all(&self, futs: Vec<DetachedFuture>) {
        let mut futs = futs.into_iter();
        let Some(first) = futs.next() else {
            return;
        };
        drop(self.inner.runtime.spawn(async move {
            for fut in futs {
                drop(tokio::spawn(fut));
            }
            first.await;
        }));
    }

    /// Spawns `f(node)` on the library runtime and awaits it from any runtime.
    pub(crate) async fn on_runtime<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Node) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        if Handle::try_current().is_ok_and(|h| h.id() == self.inner.runtime.id()) {
            return f(self.clone()).await;
        }
        self.inner.runtime.spawn(f(self.clone())).await.map_err(Error::internal)?
    }
}

/// Serves the peer service on `incoming` until `stop` resolves.
fn spawn_peer_server<IO>(
    service: PeerService,
    incoming: impl futures::Stream<Item = std::io::Result<IO>> + Send + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
{
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, stop);
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "peer server failed");
        }
    })
}

/// TLS handshakes of accepted peer connections, run concurrently so a slow or silent
/// client holds up no other. A failed handshake (an untrusted or missing certificate, a
/// client that does not speak TLS) is logged and the connection dropped.
fn tls_incoming(
    tcp: impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> + Send + 'static
{
    use futures::StreamExt;
    tcp.map(move |sock| {
        let acceptor = acceptor.clone();
        async move {
            let sock = match sock {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let remote = sock.peer_addr().map_or_else(|_| "unknown address".to_string(), |a| a.to_string());
            match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                Ok(Ok(stream)) => Some(Ok(stream)),
                Ok(Err(e)) => {
                    tracing::warn!(peer = %remote, error = %e, "peer TLS handshake failed; connection refused");
                    None
                }
                Err(_) => {
                    tracing::warn!(peer = %remote, "peer TLS handshake timed out; connection dropped");
                    None
                }
            }
        }
    })
    .buffer_unordered(64)
    .filter_map(futures::future::ready)
}

pub(crate) fn ensure_not_async() -> Result<()> {
    if Handle::try_current().is_ok() {
        return Err(Error::InvalidArgument(
            "a blocking quorumkv call was made from an async runtime thread; use the async method".into(),
        ));
    }
    Ok(())
}

fn new_identity(cfg: &NodeConfig) -> Identity {
    let member_id = datadir::member_id_of(&cfg.name, &cfg.peer_addr, &cfg.cluster_token);
    let cluster_id = match &cfg.bootstrap {
        Bootstrap::Single => datadir::cluster_id_of(&[member_id], &cfg.cluster_token),
        Bootstrap::InitialCluster(list) => {
            let ids: Vec<u64> = list.iter().map(|(n, a)| datadir::member_id_of(n, a, &cfg.cluster_token)).collect();
            datadir::cluster_id_of(&ids, &cfg.cluster_token)
        }
        Bootstrap::Join(_) => 0,
    };
    Identity { name: cfg.name.clone(), member_id, cluster_id, peer_addr: cfg.peer_addr.clone() }
}

async fn initialize(raft: &Raft, members: BTreeMap<u64, MemberAddrs>) -> Result<()> {
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(openraft::errors::RaftError::APIError(openraft::errors::InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(Error::Fatal(e.to_string())),
    }
}

/// Mirrors Raft metrics into lock-free fields for the hot paths, until Raft stops.
///
/// It watches only the server metrics (vote, leader, membership), which change on
/// elections and membership changes, not on every heartbeat, so an idle node sleeps.
async fn watch_metrics(node: Weak<NodeInner>, raft: Raft) {
    let mut rx = raft.server_metrics();
    let mut membership_log = None;
    loop {
        {
            let Some(inner) = node.upgrade() else { return };
            let m = rx.borrow_watched().clone();
            inner.observed.term.store(m.vote.leader_id.term, Ordering::Release);
            let leader = m.current_leader.unwrap_or(0);
            let previous = inner.observed.leader.swap(leader, Ordering::AcqRel);
            if leader != 0 && leader != previous {
                inner.observed.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            let log_id = *m.membership_config.log_id();
            if membership_log != Some(log_id) {
                membership_log = Some(log_id);
                let mem = m.membership_config.membership();
                let voters: Vec<u64> = mem.voter_ids().collect();
                let map: BTreeMap<u64, (MemberAddrs, bool)> =
                    mem.nodes().map(|(id, n)| (*id, (n.clone(), voters.contains(id)))).collect();
                {
                    let mut book = inner.addresses.write().expect("address book");
                    for (id, (addrs, _)) in &map {
                        if let Some(a) = addrs.peer_addrs.first() {
                            book.insert(*id, a.clone());
                        }
                    }
                }
                *inner.observed.members.write().expect("members lock") = map;
                inner.peers.clear();
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
