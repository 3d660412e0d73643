//! The HTTP endpoint of one node: `GET /metrics` and `GET /health`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::render::CONTENT_TYPE;
use super::Metrics;
use crate::error::{Error, Result};
use crate::node::Node;

/// A running metrics endpoint (see [`serve`]). Dropping it stops the server too (the port
/// is then released shortly after, not necessarily by the time `drop` returns).
///
/// Thread-safety: `Send + Sync`.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MetricsServer {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes open connections and waits until the port is released.
    /// May be awaited on any tokio runtime.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // Dropping `stop` ends the accept loop, which closes the listener and connections.
        self.stop.take();
    }
}

/// Serves `node`'s metrics on `addr` (`host:port`; port 0 picks a free one):
///
/// - `GET /metrics`: [`Metrics::render`] in the Prometheus text format
///   (`text/plain; version=0.0.4`);
/// - `GET /health`: `{"health":"true"}` with 200 while the node runs and knows a leader,
///   else `{"health":"false","reason":"..."}` with 503 (etcd's shape; see [`health`]);
/// - 405 for other methods on those paths, 404 for other paths.
///
/// HTTP/1.1 with keep-alive. The server runs on the node's runtime, so `serve` may be
/// awaited on any tokio runtime and scrapes do not depend on the caller's runtime. It
/// keeps a handle to `node` and outlives [`Node::stop`] (then `/health` answers 503 and
/// `/metrics` only has the request counters); stop it with [`MetricsServer::shutdown`].
///
/// Errors: [`Error::Transport`] if `addr` cannot be bound.
pub async fn serve(addr: &str, node: Node, metrics: Metrics) -> Result<MetricsServer> {
    let addr = addr.to_string();
    let runtime = node.runtime().clone();
    let start = async move {
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::Transport(format!("cannot listen on metrics address {addr}: {e}")))?;
        let local_addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, node, metrics, stop_rx));
        tracing::info!(%local_addr, "metrics endpoint listening");
        Ok(MetricsServer { local_addr, stop: Some(stop_tx), task: Some(task) })
    };
    runtime.spawn(start).await.map_err(Error::internal)?
}

/// Whether `node` is healthy in etcd's sense: it runs, Raft has not stopped on an error,
/// and it knows a leader. `Err` carries the reason (`NODE STOPPED`, `RAFT STOPPED: ...`,
/// `RAFT NO LEADER`).
///
/// Local, no network round; reads [`Node::status`], which measures the data dir on disk
/// (a blocking file-system walk). Thread-safety: callable from any thread.
pub fn health(node: &Node) -> std::result::Result<(), String> {
    let status = match node.status() {
        Ok(s) => s,
        Err(Error::Stopped) => return Err("NODE STOPPED".into()),
        Err(e) => return Err(e.to_string()),
    };
    if let Some(e) = status.fatal_error {
        return Err(format!("RAFT STOPPED: {e}"));
    }
    if !status.has_leader {
        return Err("RAFT NO LEADER".into());
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, node: Node, metrics: Metrics, mut stop: oneshot::Receiver<()>) {
    // Dropping the set when the loop ends aborts the open connections.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, node.clone(), metrics.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "metrics endpoint cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, node: Node, metrics: Metrics) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let (node, metrics) = (node.clone(), metrics.clone());
        async move { Ok::<_, Infallible>(respond(req, node, metrics).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "metrics connection ended");
    }
}

async fn respond(req: Request<Incoming>, node: Node, metrics: Metrics) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/metrics" && path != "/health" {
        return reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "404 page not found\n".into());
    }
    if *req.method() != Method::GET && *req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed\n".into());
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // Both read `Node::status`, which walks the data dir: keep it off the async workers.
    if path == "/metrics" {
        match tokio::task::spawn_blocking(move || metrics.render(&node)).await {
            Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", format!("{e}\n")),
        }
    } else {
        let healthy = tokio::task::spawn_blocking(move || health(&node)).await.unwrap_or_else(|e| Err(e.to_string()));
        match healthy {
            Ok(()) => reply(StatusCode::OK, "application/json", "{\"health\":\"true\"}".into()),
            Err(reason) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                format!("{{\"health\":\"false\",\"reason\":\"{}\"}}", json_escape(&reason)),
            ),
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::json_escape;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_escape("plain"), "plain");
        assert_eq!(json_escape("a\"b\\c\nd\u{1}"), "a\\\"b\\\\c\\nd\\u0001");
    }
}
