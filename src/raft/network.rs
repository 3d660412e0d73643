//! Peer transport: openraft's RPCs (and forwarded client requests) over tonic/HTTP2.
//!
//! One lazily connected channel per peer, reused by every RPC. Forwarded client requests
//! share one long-lived `ForwardStream` per peer ([`ForwardMux`]), falling back to unary
//! `Forward` calls to a peer that does not offer it. Payloads are postcard
//! encoded inside an [`Envelope`] that carries the sender's cluster id; a node refuses
//! requests from another cluster. Snapshots travel as a client stream of 1 MiB chunks read
//! from the snapshot file, and are written to a file on the receiving side: neither side
//! holds a snapshot in memory.
//!
//! With TLS on the peer port ([`PeerTls`]) every channel dials `https` with the node's
//! trusted CA (the dialed host must be covered by the peer's certificate) and presents the
//! node's peer certificate. With mutual TLS, [`PeerService`] also checks that the client
//! certificate of every request covers the host of the member the request says it comes
//! from (the envelope's `sender_id`, which must also be the node a Raft message names).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::BoxFuture;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request as TonicRequest, Response as TonicResponse, Status, Streaming};

use super::codec::{decode, encode};
use super::snapshot::SnapshotFile;
use super::state_machine::StateMachine;
use super::{MemberAddrs, Raft, RaftSnapshot, TypeConfig, Vote};
use crate::error::Error;
use crate::tls::{cert_covers, host_of, LoadedTls};

/// Generated protobuf code for the peer protocol.
#[allow(missing_docs, clippy::all)]
pub(crate) mod pb {
    tonic::include_proto!("quorumkv.peer");
}

use pb::peer_client::PeerClient;
use pb::peer_server::{Peer, PeerServer};
use pb::{Envelope, SnapshotChunk};

const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest peer message: an append of many entries, or a forwarded request.
pub(crate) const MAX_PEER_MESSAGE_BYTES: usize = 64 << 20;

/// The cluster id every envelope carries; 0 until the node knows it.
pub(crate) type ClusterId = Arc<AtomicU64>;

/// The peer port's TLS, loaded once at start.
pub(crate) struct PeerTls {
    /// The node's peer certificate, key and trusted CA.
    pub files: LoadedTls,
    /// The server side of the peer port (handshakes done by the node's accept loop).
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl PeerTls {
    pub fn load(files: &crate::tls::TlsFiles) -> Result<Arc<Self>, Error> {
        let files = files.load()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(files.rustls_server_config()?);
        Ok(Arc::new(PeerTls { files, acceptor }))
    }

    /// Whether peers must present a certificate matching their member.
    pub fn mutual(&self) -> bool {
        self.files.client_cert_auth
    }
}

/// Opens a channel to a peer (connected lazily, on first use): `https` when the peer
/// port uses TLS, verifying that the peer's certificate covers the host of `addr`.
pub(crate) fn peer_channel(addr: &str, tls: Option<&PeerTls>) -> Result<Channel, Error> {
    let endpoint = match tls {
        Some(tls) => tls.files.client_endpoint(addr)?,
        None => Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad peer address {addr:?}: {e}")))?,
    };
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(endpoint.connect_lazy())
}

pub(crate) fn peer_client(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel)
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
}

/// One reusable channel per peer address, and one forward stream per peer.
#[derive(Default)]
pub(crate) struct PeerClients {
    channels: Mutex<HashMap<String, Channel>>,
    /// Open forward streams by peer address (`None`: the peer has no `ForwardStream`, an
    /// older version; its requests go as unary `Forward` calls).
    muxes: Mutex<HashMap<String, Option<Arc<ForwardMux>>>>,
    tls: Option<Arc<PeerTls>>,
}

/// Why a forwarded request got no answer.
#[derive(Debug)]
pub(crate) enum ForwardCallError {
    /// No channel to the peer could be made (a bad address, TLS settings); nothing was sent.
    Channel(Error),
    /// The call or the stream failed with this status.
    Status(Status),
}

impl From<Status> for ForwardCallError {
    fn from(s: Status) -> Self {
        ForwardCallError::Status(s)
    }
}

/// Removes a call from the pending table if its caller gives up (a timeout) before the
/// answer came; disarmed once the answer is in.
struct PendingCall<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        self.pending.lock().expect("pending calls lock").remove(&self.id);
    }
}

/// Calls waiting for their answer on a forward stream, by call id.
type Pending = Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Result<bytes::Bytes, Status>>>>>;

/// Forwarded requests to one peer multiplexed over one `ForwardStream`: each request is
/// one message with a call id, and its answer comes back with the same id, in any order.
/// A unary call costs an HTTP/2 stream (headers both ways, trailers, a task on the
/// server); a message on an open stream costs one data frame each way.
pub(crate) struct ForwardMux {
    tx: tokio::sync::mpsc::UnboundedSender<Envelope>,
    pending: Pending,
    next: AtomicU64,
    /// Set when the stream ended; the next call opens a new one.
    dead: Arc<std::sync::atomic::AtomicBool>,
}

impl PeerClients {
    pub fn new(tls: Option<Arc<PeerTls>>) -> Self {
        PeerClients { channels: Mutex::default(), muxes: Mutex::default(), tls }
    }

    /// Sends a forwarded request to the peer at `addr` and returns the reply's payload:
    /// over the peer's forward stream (opened on first use, and again after it ended), or
    /// as a unary `Forward` call to a peer without one. A stream that ends fails the
    /// calls waiting on it with `Unavailable` ("forward stream ended": they may have
    /// been executed); a stream that cannot be opened fails like a unary call would.
    pub async fn forward_call(&self, addr: &str, mut env: Envelope) -> Result<bytes::Bytes, ForwardCallError> {
        let Some(mux) = self.mux(addr).await? else {
            let mut client = peer_client(self.get(addr).map_err(ForwardCallError::Channel)?);
            return Ok(client.forward(env).await?.into_inner().payload);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = mux.next.fetch_add(1, Ordering::Relaxed);
        env.call_id = id;
        mux.pending.lock().expect("pending calls lock").insert(id, tx);
        let call = PendingCall { pending: &mux.pending, id };
        if mux.tx.send(env).is_err() {
            return Err(Status::unavailable("forward stream closed").into());
        }
        let answer = rx.await;
        // The reader took the call out of the table to answer it.
        std::mem::forget(call);
        Ok(answer.unwrap_or_else(|_| Err(Status::unavailable("forward stream ended")))?)
    }

    /// The open forward stream to `addr` (`None`: the peer has none).
    async fn mux(&self, addr: &str) -> Result<Option<Arc<ForwardMux>>, ForwardCallError> {
        match self.muxes.lock().expect("forward streams lock").get(addr) {
            Some(None) => return Ok(None),
            Some(Some(m)) if !m.dead.load(Ordering::Acquire) => return Ok(Some(m.clone())),
            _ => {}
        }
        let channel = self.get(addr).map_err(ForwardCallError::Channel)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut client = peer_client(channel);
        let opened = client.forward_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await;
        let mut stream = match opened {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                self.muxes.lock().expect("forward streams lock").insert(addr.to_string(), None);
                return Ok(None);
            }
            Err(status) => return Err(status.into()),
        };
        let pending: Pending = Arc::default();
        let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mux = Arc::new(ForwardMux { tx, pending: pending.clone(), next: AtomicU64::new(1), dead: dead.clone() });
        tokio::spawn(async move {
            while let Ok(Some(env)) = stream.message().await {
                let waiter = pending.lock().expect("pending calls lock").remove(&env.call_id);
                if let Some(w) = waiter {
                    let _ = w.send(Ok(env.payload));
                }
            }
            dead.store(true, Ordering::Release);
            for (_, w) in pending.lock().expect("pending calls lock").drain() {
                let _ = w.send(Err(Status::unavailable("forward stream ended")));
            }
        });
        self.muxes.lock().expect("forward streams lock").insert(addr.to_string(), Some(mux.clone()));
        Ok(Some(mux))
    }

    pub fn get(&self, addr: &str) -> Result<Channel, Error> {
        let mut map = self.channels.lock().expect("peer clients lock");
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let c = peer_channel(addr, self.tls.as_deref())?;
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub fn clear(&self) {
        self.channels.lock().expect("peer clients lock").clear();
        self.muxes.lock().expect("forward streams lock").clear();
    }
}

/// Current peer address of every member, kept up to date from the membership, so a
/// member that moved is reached at its new address by connections made before the move.
pub(crate) type AddressBook = Arc<std::sync::RwLock<std::collections::BTreeMap<u64, String>>>;

/// Nodes of one process that reach each other through memory instead of loopback TCP.
///
/// Give one `LocalNetwork` to the [`NodeConfig`](crate::NodeConfig)s of nodes hosted in
/// the same process (`NodeConfig::local_network`). A node then hands its Raft messages
/// (replication streams, votes, leader transfers) and the client requests it forwards to
/// another node on the same `LocalNetwork` straight to that node's Raft: no encoding, no
/// HTTP/2, no loopback TCP, and no wake-ups of connection tasks on either side. Every node
/// still serves its peer port: nodes of other processes reach it over TCP as before, and
/// snapshots to a lagging member always travel over it.
///
/// A node is on the network from the moment it serves its peer port until it stops, under
/// its configured `peer_addr`; members are found by the peer address the membership
/// lists for them, so a member missing from the network (another process, or stopped) is
/// reached over TCP. The same checks apply as over TCP: a node refuses messages from
/// another cluster. Nodes with peer TLS never use the network, in either direction: the
/// peer certificate checks need a TLS connection.
///
/// Cheap to clone (clones share one table); safe to use from any thread. It holds no
/// node alive: a stopped node leaves it.
#[derive(Clone, Default)]
pub struct LocalNetwork {
    nodes: Arc<std::sync::RwLock<HashMap<String, PeerService>>>,
    deliveries: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The peer addresses of the nodes on the network now.
    pub fn addresses(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.nodes.read().expect("local network").keys().cloned().collect();
        addrs.sort();
        addrs
    }

    /// How many times a node reached another through the network so far: a Raft RPC, a
    /// replication stream opened (openraft opens one per heartbeat too, so an idle
    /// cluster's count grows with its heartbeats) or a forwarded request.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// How many client requests a node forwarded to another (its leader) through the
    /// network so far; also counted in [`deliveries`](Self::deliveries).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    pub(crate) fn join(&self, addr: &str, service: PeerService) {
        self.nodes.write().expect("local network").insert(addr.to_string(), service);
    }

    /// Takes `service` off the network (not a node that took its address since).
    pub(crate) fn leave(&self, addr: &str, service: &PeerService) {
        let mut nodes = self.nodes.write().expect("local network");
        if nodes.get(addr).is_some_and(|s| Arc::ptr_eq(&s.parts, &service.parts)) {
            nodes.remove(addr);
        }
    }

    /// The node at `addr`, counted as a delivery when it is on the network.
    pub(crate) fn get(&self, addr: &str) -> Option<PeerService> {
        let node = self.nodes.read().expect("local network").get(addr).cloned();
        if node.is_some() {
            self.deliveries.fetch_add(1, Ordering::Relaxed);
        }
        node
    }

    /// The node at `addr` to forward a client request to, counted as one.
    pub(crate) fn forward_to(&self, addr: &str) -> Option<PeerService> {
        let node = self.get(addr);
        if node.is_some() {
            self.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        node
    }
}

impl std::fmt::Debug for LocalNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNetwork")
            .field("nodes", &self.addresses())
            .field("deliveries", &self.deliveries())
            .field("forwarded", &self.forwarded())
            .finish()
    }
}

/// Creates peer connections for openraft.
#[derive(Clone)]
pub(crate) struct NetworkFactory {
    /// This node's member id, sent as every envelope's `sender_id`.
    pub member_id: u64,
    pub cluster_id: ClusterId,
    pub addresses: AddressBook,
    /// Shared with the node: one HTTP/2 connection per peer for every RPC and stream.
    pub channels: Arc<PeerClients>,
    /// Peers reached through memory (`None` with peer TLS).
    pub local: Option<LocalNetwork>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberAddrs) -> PeerConnection {
        let addr = node.peer_addrs.first().cloned().unwrap_or_default();
        self.addresses.write().expect("address book").entry(target).or_insert(addr);
        PeerConnection {
            me: self.member_id,
            target,
            addr: String::new(),
            client: None,
            cluster_id: self.cluster_id.clone(),
            addresses: self.addresses.clone(),
            channels: self.channels.clone(),
            local: self.local.clone(),
            stream_backoff: Duration::ZERO,
            retry_at: None,
        }
    }
}

/// A connection to one peer.
pub(crate) struct PeerConnection {
    me: u64,
    target: u64,
    /// The address `client` is connected to.
    addr: String,
    client: Option<PeerClient<Channel>>,
    cluster_id: ClusterId,
    addresses: AddressBook,
    channels: Arc<PeerClients>,
    local: Option<LocalNetwork>,
    /// Wait before opening the next replication stream after a failed one. openraft
    /// retries opening a stream at once when it fails, which against a dead peer is a
    /// busy loop of connection attempts (thousands per second); this bounds it.
    stream_backoff: Duration,
    /// When the next stream may be opened: the last failure plus `stream_backoff`. A
    /// deadline, not a sleep of `stream_backoff` per call, because openraft's heartbeat
    /// worker puts a timeout of its heartbeat interval around the whole call: a full sleep
    /// at least that long was cancelled every time, the backoff was never reset, and a
    /// member that had been down for a second never heard a heartbeat again. Each
    /// cancelled call now waits only for what is left of the same deadline.
    retry_at: Option<tokio::time::Instant>,
}

const STREAM_BACKOFF_MIN: Duration = Duration::from_millis(20);
const STREAM_BACKOFF_MAX: Duration = Duration::from_millis(500);

fn unreachable<E: std::fmt::Display>(e: E) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.to_string())))
}

fn network_err<E: std::fmt::Display>(e: E) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
}

fn status_error(s: Status) -> RPCError<TypeConfig> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => unreachable(s),
        _ => network_err(s),
    }
}

fn remote_error(e: Error) -> RPCError<TypeConfig> {
    match e {
        Error::Stopped | Error::ClusterMismatch { .. } => unreachable(e),
        e => network_err(e),
    }
}

type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;
type AppendResultStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send + 'static>>;

impl PeerConnection {
    /// The client for the target's current address (reconnecting if it moved).
    fn client(&mut self) -> Option<PeerClient<Channel>> {
        let current = self.addresses.read().expect("address book").get(&self.target).cloned();
        let current = current?;
        if current != self.addr || self.client.is_none() {
            self.client = self.channels.get(&current).ok().map(peer_client);
            self.addr = current;
        }
        self.client.clone()
    }

    fn envelope<T: Serialize>(&self, msg: &T) -> Envelope {
        Envelope {
            cluster_id: self.cluster_id.load(Ordering::Acquire),
            payload: encode(msg).into(),
            sender_id: self.me,
            call_id: 0,
        }
    }

    /// The target's node when it is on this node's [`LocalNetwork`].
    fn local_peer(&self) -> Option<PeerService> {
        let local = self.local.as_ref()?;
        let addr = self.addresses.read().expect("address book").get(&self.target).cloned()?;
        local.get(&addr)
    }

    /// One Raft RPC: handed to the target's Raft in memory when it is on the local
    /// network (`local`), sent over gRPC otherwise (`grpc`).
    async fn call<Req, Resp, F, Fut, L, LFut, E>(
        &mut self,
        req: Req,
        option: &RPCOption,
        grpc: F,
        local: L,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize + RaftSender,
        Resp: DeserializeOwned,
        F: FnOnce(PeerClient<Channel>, Envelope) -> Fut,
        Fut: Future<Output = Result<TonicResponse<Envelope>, Status>>,
        L: FnOnce(Raft, Req) -> LFut,
        LFut: Future<Output = Result<Resp, E>>,
        E: std::fmt::Display,
    {
        let target = self.target;
        let timed_out = move || unreachable(format!("rpc to node {target} timed out"));
        if let Some(peer) = self.local_peer() {
            let cluster_id = self.cluster_id.load(Ordering::Acquire);
            return tokio::time::timeout(option.hard_ttl(), peer.local_raft_call(cluster_id, req, local))
                .await
                .map_err(|_| timed_out())?
                .map_err(remote_error);
        }
        let client = self.client().ok_or_else(|| unreachable(format!("no address for node {}", self.target)))?;
        let env = self.envelope(&req);
        let reply = tokio::time::timeout(option.hard_ttl(), grpc(client, env))
            .await
            .map_err(|_| timed_out())?
            .map_err(status_error)?;
        let result: Result<Resp, Error> = decode(&reply.into_inner().payload, "peer reply").map_err(network_err)?;
        result.map_err(remote_error)
    }

    /// Waits out the backoff after a failed stream open; `ok` says how this open went.
    fn stream_opened(&mut self, ok: bool) {
        if ok {
            self.stream_backoff = Duration::ZERO;
            self.retry_at = None;
        } else {
            self.stream_backoff = (self.stream_backoff * 2).clamp(STREAM_BACKOFF_MIN, STREAM_BACKOFF_MAX);
            self.retry_at = Some(tokio::time::Instant::now() + self.stream_backoff);
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            rpc,
            &option,
            |mut c, env| async move { c.append_entries(env).await },
            |raft, rpc| async move { raft.append_entries(rpc).await },
        )
        .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + openraft::OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
            }
            if let Some(peer) = self.local_peer() {
                let opened = peer.local_stream_append(self.cluster_id.clone(), input);
                self.stream_opened(opened.is_ok());
                let results = opened.map_err(remote_error)?.map(|r| r.map_err(remote_error));
                return Ok(Box::pin(results) as BoxStream<'s, _>);
            }
            let mut client =
                self.client().ok_or_else(|| unreachable(format!("no address for node {}", self.target)))?;
            let cluster_id = self.cluster_id.clone();
            let me = self.me;
            let requests = input.map(move |r| Envelope {
                cluster_id: cluster_id.load(Ordering::Acquire),
                payload: encode(&r).into(),
                sender_id: me,
                call_id: 0,
            });
            let opened = client.stream_append(requests).await;
            self.stream_opened(opened.is_ok());
            let responses = opened.map_err(status_error)?.into_inner();
            let results = responses.map(|item| {
                let env = item.map_err(status_error)?;
                let result: Result<StreamAppendResult<TypeConfig>, Error> =
                    decode(&env.payload, "stream append reply").map_err(network_err)?;
                result.map_err(remote_error)
            });
            Ok(Box::pin(results) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            rpc,
            &option,
            |mut c, env| async move { c.vote(env).await },
            |raft, rpc| async move { raft.vote(rpc).await },
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            rpc,
            &option,
            |mut c, env| async move { c.pre_vote(env).await },
            |raft, rpc| async move { raft.pre_vote(rpc).await },
        )
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            req,
            &option,
            |mut c, env| async move { c.transfer_leader(env).await },
            |raft, req| async move { raft.handle_transfer_leader(req).await },
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: RaftSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self
            .client()
            .ok_or_else(|| StreamingError::Unreachable(Unreachable::new(&std::io::Error::other("no peer address"))))?;
        let header = self.envelope(&(vote, snapshot.meta.clone()));
        let file = tokio::fs::File::open(&snapshot.snapshot.path)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let chunks = snapshot_chunks(header, file);
        let send = async move {
            let reply = client.install_snapshot(chunks).await?;
            Ok::<_, Status>(reply.into_inner())
        };
        let ttl = option.hard_ttl().max(Duration::from_secs(60));
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, send) => r,
        };
        let reply = reply
            .map_err(|_| {
                StreamingError::Unreachable(Unreachable::new(&std::io::Error::other("snapshot send timed out")))
            })?
            .map_err(|s| StreamingError::Unreachable(Unreachable::new(&std::io::Error::other(s.to_string()))))?;
        let result: Result<SnapshotResponse<TypeConfig>, Error> = decode(&reply.payload, "snapshot reply")
            .map_err(|e| StreamingError::Network(NetworkError::new(&std::io::Error::other(e.to_string()))))?;
        result.map_err(|e| StreamingError::Network(NetworkError::new(&std::io::Error::other(e.to_string()))))
    }
}

/// The chunk stream of one snapshot file: the header first, then the file in 1 MiB pieces.
fn snapshot_chunks(header: Envelope, file: tokio::fs::File) -> impl Stream<Item = SnapshotChunk> + Send + 'static {
    let first = futures::stream::once(async move { SnapshotChunk { header: Some(header), data: Default::default() } });
    let rest = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    tracing::warn!(error = %e, "reading snapshot file failed");
                    return None;
                }
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((SnapshotChunk { header: None, data: buf.into() }, Some(file)))
    });
    first.chain(rest)
}

/// Whether a message from cluster `remote` may reach a node of cluster `local`: the same
/// cluster, or either side does not know its cluster id yet (0).
fn same_cluster(remote: u64, local: u64) -> bool {
    remote == 0 || local == 0 || remote == local
}

/// Handles requests forwarded from followers (defined by the node layer).
pub(crate) trait ForwardHandler: Send + Sync + 'static {
    /// Handles one encoded request and returns the encoded reply. `peer` is the sender as
    /// mutual TLS proved it (`None` without mutual TLS).
    fn handle(
        &self,
        payload: Vec<u8>,
        peer: Option<VerifiedPeer>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + 'static>>;
}

/// The sender of a request on a mutual-TLS peer port, checked against its certificate.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedPeer {
    /// The member id the sender gave.
    pub sender_id: u64,
    /// Whether `sender_id` is a known member (its certificate then covers its peer host;
    /// otherwise it covers the address the connection comes from).
    pub is_member: bool,
    /// Where the connection comes from.
    pub remote: String,
    cert: CertificateDer<'static>,
}

impl VerifiedPeer {
    /// Whether the sender's certificate covers the host of `addr` (`host:port`).
    pub fn covers(&self, addr: &str) -> Result<(), Error> {
        cert_covers(&self.cert, host_of(addr)).map_err(|reason| {
            let e = refused(&self.remote, self.sender_id, &format!("{reason} (claimed peer address {addr})"));
            tracing::warn!(error = %e, "peer request refused");
            e
        })
    }
}

fn refused(remote: &str, sender: u64, reason: &str) -> Error {
    Error::Transport(format!("peer certificate refused: {remote} (member {sender:016x}): {reason}"))
}

/// Checks the sender of a request on a mutual-TLS peer port: its certificate must cover
/// the host of the peer address of the member it says it is (`sender_id`); a sender that is
/// no known member yet (a joining node, or a leader not yet known to a new learner) must
/// present a certificate covering the address its connection comes from. `claimed` is the
/// node a Raft message names as its sender (leader or candidate): it must be `sender_id`.
pub(crate) fn verify_peer(
    certs: Option<&[CertificateDer<'static>]>,
    remote: Option<std::net::SocketAddr>,
    sender_id: u64,
    claimed: Option<u64>,
    addresses: &AddressBook,
) -> Result<VerifiedPeer, Error> {
    let remote_s = remote.map_or_else(|| "unknown address".to_string(), |r| r.to_string());
    let check = || {
        if let Some(c) = claimed.filter(|c| *c != sender_id) {
            return Err(format!("sent as member {sender_id:016x} a message of member {c:016x}"));
        }
        let cert = certs.and_then(|c| c.first()).ok_or("no client certificate presented")?;
        let member_addr =
            if sender_id == 0 { None } else { addresses.read().expect("address book").get(&sender_id).cloned() };
        let host = match (&member_addr, remote) {
            (Some(a), _) => host_of(a).to_string(),
            (None, Some(r)) => r.ip().to_string(),
            (None, None) => return Err("not a member, and the connection's address is unknown".into()),
        };
        cert_covers(cert, &host).map_err(|reason| match &member_addr {
            Some(a) => format!("{reason}, the host of the member's peer address {a}"),
            None => format!("{reason}, the address of a sender that is no member yet"),
        })?;
        Ok(VerifiedPeer { sender_id, is_member: member_addr.is_some(), remote: remote_s.clone(), cert: cert.clone() })
    };
    check().map_err(|reason: String| {
        let e = refused(&remote_s, sender_id, &reason);
        tracing::warn!(error = %e, "peer request refused");
        e
    })
}

/// What mutual TLS tells about a request's connection.
#[derive(Clone)]
struct ConnInfo {
    certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    remote: Option<std::net::SocketAddr>,
}

impl ConnInfo {
    fn of<T>(req: &TonicRequest<T>) -> Self {
        ConnInfo { certs: req.peer_certs(), remote: req.remote_addr() }
    }
}

/// The Raft node a message says it comes from.
trait RaftSender {
    fn sender(&self) -> u64;

    /// Whether the message shows that a leader is alive ([`LeaderContact`]).
    fn shows_live_leader(&self) -> bool {
        false
    }
}

impl RaftSender for AppendEntriesRequest<TypeConfig> {
    fn sender(&self) -> u64 {
        self.vote.leader_id().node_id
    }

    fn shows_live_leader(&self) -> bool {
        true
    }
}

impl RaftSender for VoteRequest<TypeConfig> {
    fn sender(&self) -> u64 {
        self.vote.leader_id().node_id
    }
}

impl RaftSender for TransferLeaderRequest<TypeConfig> {
    fn sender(&self) -> u64 {
        self.from_leader().leader_id().node_id
    }
}

/// What the peer service reaches while its node runs.
struct PeerParts {
    raft: Raft,
    state_machine: StateMachine,
}

/// The server side of the peer protocol. tonic clones it into every connection task,
/// and those may outlive the node briefly: they reach Raft and storage only through
/// `parts`, which [`PeerService::detach`] empties when the node stops, so no connection
/// keeps the data dir open.
/// When this node last heard from a leader (an append or a heartbeat). Raft keeps
/// naming the last leader while a pre-vote round fails, so "has a live leader" is
/// decided from this.
#[derive(Debug)]
pub(crate) struct LeaderContact {
    base: std::time::Instant,
    /// Milliseconds after `base` of the last contact, plus one (0: never).
    last_ms: AtomicU64,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact { base: std::time::Instant::now(), last_ms: AtomicU64::new(0) }
    }
}

impl LeaderContact {
    fn touch(&self) {
        self.last_ms.store(self.base.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }

    /// Time since the last contact; `None` if there was none.
    pub(crate) fn since(&self) -> Option<Duration> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.base.elapsed().saturating_sub(Duration::from_millis(ms - 1))),
        }
    }
}

#[derive(Clone)]
pub(crate) struct PeerService {
    parts: Arc<std::sync::RwLock<Option<PeerParts>>>,
    cluster_id: ClusterId,
    /// Members' peer addresses: with `mutual_tls`, a sender's certificate must cover its host.
    addresses: AddressBook,
    mutual_tls: bool,
    forward: Arc<dyn ForwardHandler>,
    /// Becomes `true` when the node stops; ends open replication streams.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    leader_contact: Arc<LeaderContact>,
}

impl PeerService {
    pub fn new(
        raft: Raft,
        state_machine: StateMachine,
        cluster_id: ClusterId,
        forward: Arc<dyn ForwardHandler>,
        addresses: AddressBook,
        mutual_tls: bool,
        leader_contact: Arc<LeaderContact>,
    ) -> Self {
        PeerService {
            parts: Arc::new(std::sync::RwLock::new(Some(PeerParts { raft, state_machine }))),
            cluster_id,
            addresses,
            mutual_tls,
            forward,
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            leader_contact,
        }
    }

    /// Cuts the service off from Raft and storage and ends open streams.
    pub fn detach(&self) {
        self.parts.write().expect("peer parts").take();
        self.stopping.send_replace(true);
    }

    fn raft(&self) -> Result<Raft, Status> {
        let parts = self.parts.read().expect("peer parts");
        parts.as_ref().map(|p| p.raft.clone()).ok_or_else(|| Status::unavailable("node is stopped"))
    }

    fn state_machine(&self) -> Result<StateMachine, Status> {
        let parts = self.parts.read().expect("peer parts");
        parts.as_ref().map(|p| p.state_machine.clone()).ok_or_else(|| Status::unavailable("node is stopped"))
    }

    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    pub fn into_server(self) -> PeerServer<Self> {
        PeerServer::new(self)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }

    fn check_cluster(&self, remote: u64) -> Result<(), Error> {
        let local = self.cluster_id.load(Ordering::Acquire);
        if !same_cluster(remote, local) {
            return Err(Error::ClusterMismatch { local, remote });
        }
        Ok(())
    }

    /// With mutual TLS, checks the sender (see [`verify_peer`]); `None` without.
    fn verify(&self, conn: &ConnInfo, sender_id: u64, claimed: Option<u64>) -> Result<Option<VerifiedPeer>, Error> {
        if !self.mutual_tls {
            return Ok(None);
        }
        verify_peer(conn.certs.as_deref().map(|c| c.as_slice()), conn.remote, sender_id, claimed, &self.addresses)
            .map(Some)
    }

    fn reply<T: Serialize>(&self, result: Result<T, Error>) -> Result<TonicResponse<Envelope>, Status> {
        Ok(TonicResponse::new(Envelope {
            cluster_id: self.cluster_id.load(Ordering::Acquire),
            payload: encode(&result).into(),
            sender_id: 0,
            call_id: 0,
        }))
    }

    async fn raft_call<Req, Resp, F, Fut, E>(
        &self,
        req: TonicRequest<Envelope>,
        f: F,
    ) -> Result<TonicResponse<Envelope>, Status>
    where
        Req: DeserializeOwned + RaftSender,
        Resp: Serialize,
        F: FnOnce(Raft, Req) -> Fut,
        Fut: Future<Output = Result<Resp, E>>,
        E: std::fmt::Display,
    {
        let conn = ConnInfo::of(&req);
        let env = req.into_inner();
        if let Err(e) = self.check_cluster(env.cluster_id) {
            return self.reply::<Resp>(Err(e));
        }
        let msg: Req = decode(&env.payload, "peer request").map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Err(e) = self.verify(&conn, env.sender_id, Some(msg.sender())) {
            return self.reply::<Resp>(Err(e));
        }
        if msg.shows_live_leader() {
            self.leader_contact.touch();
        }
        let result = f(self.raft()?, msg).await.map_err(|e| Error::Fatal(e.to_string()));
        self.reply(result)
    }

    /// A Raft RPC from a node of this process on the same [`LocalNetwork`]: the gRPC
    /// path's checks, with no encoding (and no TLS, which the local network excludes).
    async fn local_raft_call<Req, Resp, F, Fut, E>(&self, cluster_id: u64, msg: Req, f: F) -> Result<Resp, Error>
    where
        Req: RaftSender,
        F: FnOnce(Raft, Req) -> Fut,
        Fut: Future<Output = Result<Resp, E>>,
        E: std::fmt::Display,
    {
        self.check_cluster(cluster_id)?;
        let raft = self.raft().map_err(|_| Error::Stopped)?;
        if msg.shows_live_leader() {
            self.leader_contact.touch();
        }
        f(raft, msg).await.map_err(|e| Error::Fatal(e.to_string()))
    }

    /// A replication stream from a node of this process on the same [`LocalNetwork`].
    /// As over gRPC, the stream ends at the first request from another cluster (the
    /// sender's cluster id, `sender_cluster`, is read per request: it may be learnt while
    /// the stream runs) and when this node stops.
    fn local_stream_append<S>(
        &self,
        sender_cluster: ClusterId,
        input: S,
    ) -> Result<BoxStream<'static, Result<StreamAppendResult<TypeConfig>, Error>>, Error>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + 'static,
    {
        self.check_cluster(sender_cluster.load(Ordering::Acquire))?;
        let (local, contact) = (self.cluster_id.clone(), self.leader_contact.clone());
        // openraft moves the requests into a task of this node that waits for the next
        // one. Over gRPC the connection's end ends them; here they end when this node
        // stops or the sender drops the results (`dropped` closes with them), so that task
        // does not keep waiting on the sender's replication state.
        let (results_alive, dropped) = tokio::sync::oneshot::channel::<()>();
        let stopped = self.stopped();
        let ended = async move {
            tokio::select! {
                _ = dropped => {}
                _ = stopped => {}
            }
        };
        let requests = input
            .take_until(ended)
            .take_while(move |_| {
                futures::future::ready(same_cluster(
                    sender_cluster.load(Ordering::Acquire),
                    local.load(Ordering::Acquire),
                ))
            })
            .inspect(move |_| contact.touch());
        // Boxed: the stream captures the borrow of `raft` in its type (openraft is edition
        // 2024), though it holds none; only a trait object lets it outlive `raft`.
        let raft = self.raft().map_err(|_| Error::Stopped)?;
        let results = raft.stream_append(requests).take_until(self.stopped());
        Ok(Box::pin(results.map(move |r| {
            let _ = &results_alive; // Dropped with the results stream.
            r.map_err(|f| Error::Fatal(f.to_string()))
        })))
    }

    /// A forwarded request from the peer port, checked as every forwarded request is
    /// (cluster id; with mutual TLS, the sender): the future gives the encoded reply.
    fn checked_forward(
        &self,
        conn: &ConnInfo,
        env: Envelope,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + 'static>> {
        match self.check_cluster(env.cluster_id).and_then(|_| self.verify(conn, env.sender_id, None)) {
            Ok(peer) => self.forward.handle(env.payload.to_vec(), peer),
            Err(e) => {
                let refusal = encode(&Err::<(), Error>(e));
                Box::pin(async move { refusal })
            }
        }
    }

    /// A client request forwarded by a node of this process on the same [`LocalNetwork`]
    /// (`payload` encoded as over gRPC); returns the encoded reply.
    pub(crate) async fn local_forward(&self, cluster_id: u64, payload: Vec<u8>) -> Vec<u8> {
        if let Err(e) = self.check_cluster(cluster_id) {
            return encode(&Err::<(), Error>(e));
        }
        // In a task of its own, as a request over gRPC is: a handler that forwards again
        // (a join relayed while two nodes still disagree on the leader) must not nest on
        // the caller's stack. Aborted if the caller gives up (its timeout).
        struct AbortOnDrop(tokio::task::JoinHandle<Vec<u8>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let mut task = AbortOnDrop(tokio::spawn(self.forward.handle(payload, None)));
        match (&mut task.0).await {
            Ok(reply) => reply,
            Err(e) => encode(&Err::<(), Error>(Error::internal(e))),
        }
    }
}

/// The answers of a `ForwardStream`, tagged with their call ids.
type ForwardReplies = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Peer for PeerService {
    type StreamAppendStream = AppendResultStream;
    type ForwardStreamStream = ForwardReplies;

    /// Forwarded requests on one stream: each is checked as a unary `Forward` is (cluster
    /// id, and the sender's certificate with mutual TLS) and handled in a task of its own;
    /// the answers go back tagged with the request's call id as they complete.
    async fn forward_stream(
        &self,
        req: TonicRequest<Streaming<Envelope>>,
    ) -> Result<TonicResponse<Self::ForwardStreamStream>, Status> {
        let conn = ConnInfo::of(&req);
        let mut incoming = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Envelope, Status>>();
        let service = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(env)) = incoming.message().await {
                let call_id = env.call_id;
                let tx = tx.clone();
                let cluster_id = service.cluster_id.clone();
                let reply = move |payload: Vec<u8>| Envelope {
                    cluster_id: cluster_id.load(Ordering::Acquire),
                    payload: payload.into(),
                    sender_id: 0,
                    call_id,
                };
                let handling = service.checked_forward(&conn, env);
                tokio::spawn(async move {
                    let _ = tx.send(Ok(reply(handling.await)));
                });
            }
        });
        let replies = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).take_until(self.stopped());
        Ok(TonicResponse::new(Box::pin(replies)))
    }

    async fn stream_append(
        &self,
        req: TonicRequest<Streaming<Envelope>>,
    ) -> Result<TonicResponse<Self::StreamAppendStream>, Status> {
        let conn = ConnInfo::of(&req);
        let incoming = req.into_inner();
        let local = self.cluster_id.clone();
        // Requests from another cluster (or undecodable) end the stream.
        let requests = incoming.take_while(move |item| {
            let ok = match item {
                Ok(env) => same_cluster(env.cluster_id, local.load(Ordering::Acquire)),
                Err(_) => false,
            };
            futures::future::ready(ok)
        });
        let requests = requests.filter_map(|item| {
            futures::future::ready(item.ok().and_then(|env| {
                let msg = decode::<AppendEntriesRequest<TypeConfig>>(&env.payload, "append").ok()?;
                Some((env.sender_id, msg))
            }))
        });
        // With mutual TLS, a sender that fails the check ends the stream; a sender once
        // verified is checked again only if its id or leader changes.
        let service = self.clone();
        let requests = requests.scan(None, move |verified, (sender_id, msg)| {
            let who = (sender_id, msg.sender());
            let ok = *verified == Some(who) || service.verify(&conn, sender_id, Some(who.1)).is_ok();
            if ok {
                *verified = Some(who);
                service.leader_contact.touch();
            }
            futures::future::ready(ok.then_some(msg))
        });
        let cluster_id = self.cluster_id.clone();
        let results = self.raft()?.stream_append(requests).take_until(self.stopped()).map(move |r| {
            let r: Result<StreamAppendResult<TypeConfig>, Error> = r.map_err(|f| Error::Fatal(f.to_string()));
            Ok(Envelope {
                cluster_id: cluster_id.load(Ordering::Acquire),
                payload: encode(&r).into(),
                sender_id: 0,
                call_id: 0,
            })
        });
        Ok(TonicResponse::new(Box::pin(results)))
    }

    async fn append_entries(&self, req: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
        self.raft_call(req, |raft, msg: AppendEntriesRequest<TypeConfig>| async move { raft.append_entries(msg).await })
            .await
    }

    async fn vote(&self, req: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
        self.raft_call(req, |raft, msg: VoteRequest<TypeConfig>| async move { raft.vote(msg).await }).await
    }

    async fn pre_vote(&self, req: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
        self.raft_call(req, |raft, msg: VoteRequest<TypeConfig>| async move { raft.pre_vote(msg).await }).await
    }

    async fn transfer_leader(&self, req: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
        self.raft_call(req, |raft, msg: TransferLeaderRequest<TypeConfig>| async move {
            raft.handle_transfer_leader(msg).await
        })
        .await
    }

    async fn install_snapshot(
        &self,
        req: TonicRequest<Streaming<SnapshotChunk>>,
    ) -> Result<TonicResponse<Envelope>, Status> {
        let conn = ConnInfo::of(&req);
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let header = first.header.ok_or_else(|| Status::invalid_argument("snapshot stream without header"))?;
        if let Err(e) = self.check_cluster(header.cluster_id) {
            return self.reply::<SnapshotResponse<TypeConfig>>(Err(e));
        }
        let (vote, meta): (Vote, super::SnapshotMeta) =
            decode(&header.payload, "snapshot header").map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Err(e) = self.verify(&conn, header.sender_id, Some(vote.leader_id().node_id)) {
            return self.reply::<SnapshotResponse<TypeConfig>>(Err(e));
        }
        let path = self.state_machine()?.incoming_snapshot_path();
        let received = receive_snapshot(&path, first.data, &mut stream).await;
        if let Err(e) = received {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(Status::internal(format!("receiving snapshot failed: {e}")));
        }
        let snapshot = RaftSnapshot { meta, snapshot: SnapshotFile { path: path.clone() } };
        let result = self.raft()?.install_full_snapshot(vote, snapshot).await.map_err(|e| Error::Fatal(e.to_string()));
        let _ = tokio::fs::remove_file(&path).await; // Left over only if the install was refused.
        self.reply(result)
    }

    async fn forward(&self, req: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
        let conn = ConnInfo::of(&req);
        let payload = self.checked_forward(&conn, req.into_inner()).await;
        Ok(TonicResponse::new(Envelope {
            cluster_id: self.cluster_id.load(Ordering::Acquire),
            payload: payload.into(),
            sender_id: 0,
            call_id: 0,
        }))
    }
}

async fn receive_snapshot(
    path: &std::path::Path,
    first: bytes::Bytes,
    stream: &mut Streaming<SnapshotChunk>,
) -> std::io::Result<()> {
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(&first).await?;
    while let Some(chunk) = stream.message().await.map_err(std::io::Error::other)? {
        file.write_all(&chunk.data).await?;
    }
    file.flush().await?;
    file.sync_data().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn book(entries: &[(u64, &str)]) -> AddressBook {
        let book = AddressBook::default();
        book.write().unwrap().extend(entries.iter().map(|(id, a)| (*id, a.to_string())));
        book
    }

    /// A peer port with only the forwarding RPCs: `ForwardStream` if `streams` (else
    /// `Unimplemented`, as an older version answers), and unary `Forward`. Either answers a
    /// request with its payload, except `slow` (answered after 1 s), `hang` (never
    /// answered) and `end` (ends the stream of replies).
    #[derive(Clone)]
    struct FakePeer {
        streams: bool,
        opened: Arc<AtomicU64>,
        unary: Arc<AtomicU64>,
    }

    impl FakePeer {
        async fn serve(streams: bool) -> (Self, String) {
            let fake = FakePeer { streams, opened: Arc::default(), unary: Arc::default() };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let server = tonic::transport::Server::builder().add_service(PeerServer::new(fake.clone()));
            tokio::spawn(server.serve_with_incoming(incoming));
            (fake, addr)
        }
    }

    fn envelope(payload: &str) -> Envelope {
        Envelope { cluster_id: 7, payload: payload.as_bytes().to_vec().into(), sender_id: 1, call_id: 0 }
    }

    #[tonic::async_trait]
    impl Peer for FakePeer {
        type StreamAppendStream = AppendResultStream;
        type ForwardStreamStream = ForwardReplies;

        async fn forward_stream(
            &self,
            req: TonicRequest<Streaming<Envelope>>,
        ) -> Result<TonicResponse<Self::ForwardStreamStream>, Status> {
            if !self.streams {
                return Err(Status::unimplemented("no ForwardStream here"));
            }
            self.opened.fetch_add(1, Ordering::SeqCst);
            let mut incoming = req.into_inner();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Envelope, Status>>();
            tokio::spawn(async move {
                // Senders of unanswered calls: the replies end when the last goes.
                let mut held = Vec::new();
                while let Ok(Some(env)) = incoming.message().await {
                    let tx = tx.clone();
                    match &env.payload[..] {
                        b"end" => return,
                        b"hang" => held.push(tx),
                        b"slow" => {
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                let _ = tx.send(Ok(env));
                            });
                        }
                        _ => {
                            let _ = tx.send(Ok(env));
                        }
                    }
                }
            });
            Ok(TonicResponse::new(Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))))
        }

        async fn forward(&self, req: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
            self.unary.fetch_add(1, Ordering::SeqCst);
            Ok(TonicResponse::new(req.into_inner()))
        }

        async fn stream_append(
            &self,
            _: TonicRequest<Streaming<Envelope>>,
        ) -> Result<TonicResponse<Self::StreamAppendStream>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn append_entries(&self, _: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn vote(&self, _: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn pre_vote(&self, _: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn transfer_leader(&self, _: TonicRequest<Envelope>) -> Result<TonicResponse<Envelope>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn install_snapshot(
            &self,
            _: TonicRequest<Streaming<SnapshotChunk>>,
        ) -> Result<TonicResponse<Envelope>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    #[tokio::test]
    async fn forwarded_calls_share_one_stream_and_get_their_own_answers() {
        let (fake, addr) = FakePeer::serve(true).await;
        let clients = PeerClients::new(None);
        // Opened on first use.
        assert_eq!(&clients.forward_call(&addr, envelope("first")).await.unwrap()[..], b"first");
        // A slow answer does not hold up, or get mixed up with, those sent after it.
        let slow = clients.forward_call(&addr, envelope("slow"));
        let fast = async {
            let fast = clients.forward_call(&addr, envelope("fast")).await.unwrap();
            (fast, std::time::Instant::now())
        };
        let (slow, (fast, fast_at)) = tokio::join!(slow, fast);
        assert!(
            std::time::Instant::now() - fast_at >= Duration::from_millis(300),
            "the fast answer came before the slow one"
        );
        assert_eq!((&slow.unwrap()[..], &fast[..]), (&b"slow"[..], &b"fast"[..]));
        assert_eq!((fake.opened.load(Ordering::SeqCst), fake.unary.load(Ordering::SeqCst)), (1, 0));
    }

    #[tokio::test]
    async fn a_forward_stream_that_ends_fails_its_calls_and_the_next_call_reopens_it() {
        let (fake, addr) = FakePeer::serve(true).await;
        let clients = PeerClients::new(None);
        assert_eq!(&clients.forward_call(&addr, envelope("ping")).await.unwrap()[..], b"ping");
        let hang = clients.forward_call(&addr, envelope("hang"));
        let end = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            clients.forward_call(&addr, envelope("end")).await
        };
        let both = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(hang, end) });
        let (hang, end) = both.await.expect("the calls on the ended stream fail, not wait");
        for r in [hang, end] {
            match r {
                Err(ForwardCallError::Status(s)) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s}"),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        assert!(clients.muxes.lock().unwrap()[&addr].as_ref().unwrap().pending.lock().unwrap().is_empty());
        assert_eq!(&clients.forward_call(&addr, envelope("again")).await.unwrap()[..], b"again");
        assert_eq!(fake.opened.load(Ordering::SeqCst), 2);
        // A caller that gives up leaves no entry behind.
        let gave_up = tokio::time::timeout(Duration::from_millis(100), clients.forward_call(&addr, envelope("hang")));
        assert!(gave_up.await.is_err());
        assert!(clients.muxes.lock().unwrap()[&addr].as_ref().unwrap().pending.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_peer_without_forward_streams_gets_unary_calls() {
        let (fake, addr) = FakePeer::serve(false).await;
        let clients = PeerClients::new(None);
        for p in ["one", "two", "three"] {
            assert_eq!(&clients.forward_call(&addr, envelope(p)).await.unwrap()[..], p.as_bytes());
        }
        assert_eq!(fake.unary.load(Ordering::SeqCst), 3);
        assert!(clients.muxes.lock().unwrap()[&addr].is_none(), "the peer is remembered as one without streams");
        // Dropping the connections (a membership change) forgets that: the peer may have
        // been upgraded.
        clients.clear();
        assert_eq!(&clients.forward_call(&addr, envelope("four")).await.unwrap()[..], b"four");
        assert_eq!(fake.unary.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn peer_certificate_must_cover_its_members_host() {
        let book = book(&[(1, "127.0.0.1:7001"), (2, "10.1.2.3:7001"), (3, "n3.example:7001")]);
        let local = Some("127.0.0.1:50000".parse().unwrap());
        let c1 = [cert(&["127.0.0.1"])];
        let c3 = [cert(&["n3.example"])];
        let check = |certs: &[CertificateDer<'static>], sender, claimed| {
            verify_peer(Some(certs), local, sender, claimed, &book).map(|p| p.is_member)
        };
        // A member whose certificate covers its peer host.
        assert!(check(&c1, 1, Some(1)).unwrap());
        assert!(check(&c3, 3, None).unwrap());
        // The same certificates claiming other members are refused, even from an address they cover.
        let e = check(&c1, 2, Some(2)).unwrap_err().to_string();
        assert!(e.contains("do not cover 10.1.2.3") && e.contains("10.1.2.3:7001"), "{e}");
        assert!(check(&c1, 3, None).is_err());
        assert!(check(&c3, 1, None).is_err());
        // A Raft message must come from the node it names.
        let e = check(&c1, 1, Some(2)).unwrap_err().to_string();
        assert!(e.contains("a message of member"), "{e}");
        // No member yet: the certificate must cover the address the connection comes from.
        assert!(!check(&c1, 9, None).unwrap());
        assert!(!check(&c1, 0, None).unwrap());
        assert!(check(&c3, 9, None).is_err());
        assert!(verify_peer(Some(&c1), None, 9, None, &book).is_err());
        // No certificate at all.
        assert!(verify_peer(None, local, 1, None, &book).unwrap_err().to_string().contains("no client certificate"));
        // A verified peer checks the addresses a joining node claims.
        let joiner = verify_peer(Some(&c1), local, 9, None, &book).unwrap();
        assert!(joiner.covers("127.0.0.1:7009").is_ok());
        assert!(joiner.covers("10.9.9.9:7009").is_err());
    }
}
