//! The etcd v3 gRPC client port: etcd's KV, Watch, Lease, Cluster and Maintenance
//! services served for one [`Node`], so etcdctl and every etcd v3 client library work
//! against quorumkv unchanged.
//!
//! Wire compatibility: the messages are etcd's own (`proto/etcd`), errors carry etcd's
//! gRPC codes and message strings (etcd's Go client turns the text back into typed
//! errors), and every response header carries the node's stable cluster and member ids,
//! the revision and the Raft term. Addresses appear as URLs (`http://host:port`) in
//! member lists, as etcd shows them.
//!
//! ```no_run
//! # async fn demo(node: quorumkv::Node) -> quorumkv::Result<()> {
//! use quorumkv::server::{ClientServer, ServeOptions};
//! let server = ClientServer::serve(node, "127.0.0.1:2379", ServeOptions::default()).await?;
//! println!("etcdctl --endpoints {} put k v", server.local_addr());
//! server.stop().await;
//! # Ok(()) }
//! ```

mod cluster;
mod convert;
pub use convert::addr_of_url;
mod kv;
mod lease;
mod maintenance;
pub mod pb;
mod watch;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::sync::oneshot;
use tonic::{Code, Status};

use crate::error::{Error, Result};
use crate::metrics::{Metrics, RequestKind};
use crate::Node;
use pb::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};

/// gRPC framing overhead allowed on top of `max_request_bytes`, as etcd allows it: a
/// request slightly over the limit is decoded and refused with etcd's "request is too
/// large" error instead of a transport error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Options of a client port beyond its address.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// TLS for the client port (rustls); `None` serves plain HTTP/2. Build it from
    /// files with [`crate::tls::TlsFiles::server_tls`].
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Where requests are counted and timed (share it with
    /// [`crate::metrics::serve`] to export them); `None` keeps private counts.
    pub metrics: Option<Metrics>,
}

/// A running client port. Dropping it stops serving (like [`ClientServer::stop`],
/// without waiting).
///
/// Thread-safety: `Send + Sync`. The services run on the node's runtime.
#[derive(Debug)]
pub struct ClientServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ClientServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and serves etcd's v3 API for
    /// `node` on it until stopped. The node's own lifecycle is not tied to the server:
    /// stop the server, then the node.
    ///
    /// Errors: `InvalidArgument` (unparsable address), `Transport` (cannot bind).
    pub async fn serve(node: Node, addr: &str, options: ServeOptions) -> Result<ClientServer> {
        let addr: SocketAddr =
            addr.parse().map_err(|_| Error::InvalidArgument(format!("client address {addr:?} is not host:port")))?;
        let runtime = node.runtime().clone();
        let listener = runtime
            .spawn(async move { tokio::net::TcpListener::bind(addr).await })
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::Transport(format!("cannot listen on client address {addr}: {e}")))?;
        let local_addr = listener.local_addr().map_err(|e| Error::Transport(e.to_string()))?;
        let shared = Shared::new(node, options.tls.is_some(), options.metrics.unwrap_or_default());
        let max_decode = shared.node.config().max_request_bytes + GRPC_OVERHEAD_BYTES;
        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if let Some(tls) = options.tls {
            builder = builder.tls_config(tls).map_err(|e| Error::InvalidConfig(format!("client TLS: {e}")))?;
        }
        let router = builder
            .add_service(KvServer::new(shared.clone()).max_decoding_message_size(max_decode))
            .add_service(WatchServer::new(shared.clone()).max_decoding_message_size(max_decode))
            .add_service(LeaseServer::new(shared.clone()).max_decoding_message_size(max_decode))
            .add_service(ClusterServer::new(shared.clone()).max_decoding_message_size(max_decode))
            .add_service(MaintenanceServer::new(shared).max_decoding_message_size(max_decode));
        let (tx, rx) = oneshot::channel::<()>();
        // The builder's tcp_nodelay does not reach sockets from a custom incoming stream;
        // without it every small response waits for Nagle + delayed ACK (~40 ms).
        let incoming = futures::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
            s.inspect(|sock| {
                let _ = sock.set_nodelay(true);
            })
        });
        let task = runtime.spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown).await {
                tracing::error!(error = %e, "client port stopped");
            }
        });
        tracing::info!(addr = %local_addr, "serving etcd v3 gRPC");
        Ok(ClientServer { local_addr, shutdown: Some(tx), task: Some(task) })
    }

    /// The address served (with the actual port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting requests and waits for the server task to end. Open streams
    /// (watches, keep-alives) are closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Streams that never end on their own (watches) would hold a graceful
            // shutdown forever: give them a moment, then cut them.
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for ClientServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What every service shares: the node and the client port's settings.
#[derive(Clone)]
pub(crate) struct Shared {
    node: Node,
    /// URL schemes members' addresses are shown with (`http` or `https`): the client
    /// port's for client URLs, the peer port's for peer URLs.
    schemes: convert::Schemes,
    /// Alarms raised with `Alarm(ACTIVATE)` on this node: (member id, alarm type).
    alarms: Arc<Mutex<Vec<(u64, i32)>>>,
    metrics: Metrics,
}

impl Shared {
    fn new(node: Node, tls: bool, metrics: Metrics) -> Self {
        let schemes = convert::Schemes::new(tls, node.config().peer_tls.is_some());
        Shared { node, schemes, alarms: Arc::default(), metrics }
    }

    /// Runs one unary request: maps its error to etcd's status, records how it went.
    async fn unary<T, F>(&self, kind: RequestKind, fut: F) -> std::result::Result<tonic::Response<T>, Status>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        self.metrics.track(kind, fut).await.map(tonic::Response::new).map_err(status)
    }
}

/// The gRPC code etcd answers an error with (`api/v3rpc/rpctypes/error.go`).
pub fn grpc_code(e: &Error) -> Code {
    match e {
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::TooManyOps { .. }
        | Error::DuplicateKey
        | Error::RequestTooLarge { .. }
        | Error::InvalidArgument(_)
        | Error::InvalidConfig(_) => Code::InvalidArgument,
        Error::Compacted { .. } | Error::FutureRevision | Error::LeaseTtlTooLarge => Code::OutOfRange,
        Error::LeaseNotFound | Error::MemberNotFound => Code::NotFound,
        Error::LeaseExists
        | Error::NotLeader { .. }
        | Error::PeerAddrExists
        | Error::MemberNotLearner
        | Error::BadLeaderTransferee
        | Error::ClusterMismatch { .. }
        | Error::MembershipChange(_) => Code::FailedPrecondition,
        Error::NoLeader | Error::Timeout | Error::Stopped | Error::Transport(_) => Code::Unavailable,
        Error::Storage(_) | Error::DataDirCorrupted { .. } => Code::DataLoss,
        _ => Code::Internal,
    }
}

/// The gRPC status etcd answers an error with: etcd's code and etcd's message text,
/// which etcd's clients map back to typed errors.
pub(crate) fn status(e: Error) -> Status {
    let message = match &e {
        Error::Stopped => "etcdserver: server stopped".to_string(),
        e => e.to_string(),
    };
    Status::new(grpc_code(&e), message)
}

/// A response stream fed by a task: `f` gets the sending end of a small bounded queue
/// (so a slow client slows its producer down) and runs on the current runtime.
pub(crate) fn async_stream<T, F, Fut>(f: F) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_etcds_codes_and_text() {
        let cases = [
            (Error::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (
                Error::Compacted { compact_revision: 3 },
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (Error::FutureRevision, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (Error::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (Error::LeaseExists, Code::FailedPrecondition, "etcdserver: lease already exists"),
            (Error::TooManyOps { max: 128 }, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (Error::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (
                Error::RequestTooLarge { size_bytes: 2, max_bytes: 1 },
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (Error::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (Error::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (Error::Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (Error::MemberNotFound, Code::NotFound, "etcdserver: member not found"),
            (Error::PeerAddrExists, Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
            (Error::MemberNotLearner, Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
            (Error::BadLeaderTransferee, Code::FailedPrecondition, "etcdserver: bad leader transferee"),
            (Error::LeaseTtlTooLarge, Code::OutOfRange, "etcdserver: too large lease TTL"),
        ];
        for (e, code, text) in cases {
            let s = status(e);
            assert_eq!((s.code(), s.message()), (code, text));
        }
    }
}
