//! etcd's Watch service: one bidirectional stream carries many watches.
//!
//! Each gRPC stream is one [`WatchStream`]. A single task per stream reads the client's
//! requests (create, cancel, progress) and forwards the stream's responses, so a
//! `created` response always precedes the watch's first events. Responses go out through
//! a small bounded queue: a slow client slows its own stream (whose watches then wait in
//! the hub's unsynced group), never the node.

use std::collections::HashSet;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::pb::etcdserverpb::{self as pb, watch_request::RequestUnion, watch_server::Watch};
use super::{async_stream, status, Shared};
use crate::error::Error;
use crate::node::Node;
use crate::watch::WatchStream;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;
type Sender = tokio::sync::mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// Metadata key etcd's clients set (`clientv3.WithRequireLeader`) to ask that the stream
/// fail when the member loses its leader.
const REQUIRE_LEADER_KEY: &str = "hasleader";

#[tonic::async_trait]
impl Watch for Shared {
    type WatchStream = ResponseStream;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = req.metadata().get(REQUIRE_LEADER_KEY).is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && !self.node.has_live_leader() {
            return Err(status(Error::NoLeader));
        }
        let stream = self.node.watch_stream().map_err(status)?;
        let session = Session {
            node: self.node.clone(),
            stream,
            fragmented: HashSet::new(),
            max_response_bytes: self.node.config().max_request_bytes,
            require_leader,
            metrics: self.metrics.clone(),
        };
        let inbound = req.into_inner();
        Ok(Response::new(async_stream(move |tx| session.run(inbound, tx))))
    }
}

struct Session {
    node: Node,
    stream: WatchStream,
    /// Watches that asked for large responses to be split (`fragment`).
    fragmented: HashSet<i64>,
    /// Responses of fragmenting watches are split to stay under this size.
    max_response_bytes: usize,
    require_leader: bool,
    metrics: crate::metrics::Metrics,
}

enum Step {
    Continue,
    End,
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>, tx: Sender) {
        let mut leader_check = tokio::time::interval(Duration::from_millis(self.node.config().election_timeout_ms));
        loop {
            let step = tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(req)) => self.handle(req, &tx).await,
                    Ok(None) => Step::End,
                    Err(e) => {
                        tracing::debug!(error = %e, "watch stream broken");
                        Step::End
                    }
                },
                resp = self.stream.next() => match resp {
                    Some(Ok(resp)) => self.forward(resp, &tx).await,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(status(e))).await;
                        Step::End
                    }
                    None => Step::End,
                },
                _ = leader_check.tick(), if self.require_leader => {
                    if !self.node.has_live_leader() {
                        let _ = tx.send(Err(status(Error::NoLeader))).await;
                        Step::End
                    } else {
                        Step::Continue
                    }
                }
                _ = tx.closed() => Step::End,
            };
            if let Step::End = step {
                return;
            }
        }
    }

    async fn handle(&mut self, req: pb::WatchRequest, tx: &Sender) -> Step {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => return self.create(c, tx).await,
            Some(RequestUnion::CancelRequest(c)) => {
                // The final `canceled` response comes through the stream, after any
                // events still queued for the watch.
                let _ = self.stream.cancel(c.watch_id);
                self.fragmented.remove(&c.watch_id);
            }
            Some(RequestUnion::ProgressRequest(_)) => self.stream.request_progress(),
            None => {}
        }
        Step::Continue
    }

    async fn create(&mut self, c: pb::WatchCreateRequest, tx: &Sender) -> Step {
        let fragment = c.fragment;
        let mut req = convert::watch_request(c);
        // As etcd: an empty key is the smallest key.
        if req.key.is_empty() {
            req.key = vec![0];
        }
        let header = convert::header(self.node.header_now());
        let timer = self.metrics.start(crate::metrics::RequestKind::WatchCreate);
        let created = self.stream.create(req.clone());
        match &created {
            Ok(_) => timer.finish(crate::metrics::OK),
            Err(e) => timer.finish_with(e),
        }
        match created {
            Ok(id) => {
                if fragment {
                    self.fragmented.insert(id);
                }
                send(tx, pb::WatchResponse { header, watch_id: id, created: true, ..Default::default() }).await
            }
            // etcd announces the watch, then cancels it with the compaction revision,
            // which clients turn into their "compacted" error.
            Err(Error::Compacted { compact_revision }) => {
                let id = if req.watch_id > 0 { req.watch_id } else { self.stream.unused_id() };
                let created = pb::WatchResponse { header, watch_id: id, created: true, ..Default::default() };
                if let Step::End = send(tx, created).await {
                    return Step::End;
                }
                let reason = Error::Compacted { compact_revision }.to_string();
                let canceled = pb::WatchResponse {
                    header,
                    watch_id: id,
                    canceled: true,
                    compact_revision,
                    cancel_reason: reason,
                    ..Default::default()
                };
                send(tx, canceled).await
            }
            // A watch that cannot be created (id in use, bad request): etcd's answer is a
            // created-and-canceled response with watch id -1 and the reason.
            Err(e) => {
                let resp = pb::WatchResponse {
                    header,
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: e.to_string(),
                    ..Default::default()
                };
                send(tx, resp).await
            }
        }
    }

    async fn forward(&mut self, resp: crate::watch::WatchResponse, tx: &Sender) -> Step {
        let id = resp.watch_id;
        let canceled = resp.canceled;
        let resp = convert::watch_response(resp);
        let fragment = self.fragmented.contains(&id);
        if canceled {
            self.fragmented.remove(&id);
        }
        if !fragment || resp.encoded_len() <= self.max_response_bytes {
            return send(tx, resp).await;
        }
        for part in fragments(resp, self.max_response_bytes) {
            if let Step::End = send(tx, part).await {
                return Step::End;
            }
        }
        Step::Continue
    }
}

async fn send(tx: &Sender, resp: pb::WatchResponse) -> Step {
    match tx.send(Ok(resp)).await {
        Ok(()) => Step::Continue,
        Err(_) => Step::End,
    }
}

/// Splits a response into parts of at most `max_bytes` of events each (a single event
/// larger than that travels alone), all but the last flagged `fragment`, as etcd does.
fn fragments(resp: pb::WatchResponse, max_bytes: usize) -> Vec<pb::WatchResponse> {
    let template = pb::WatchResponse { events: Vec::new(), ..resp.clone() };
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for e in resp.events {
        let n = e.encoded_len();
        if !current.is_empty() && size + n > max_bytes {
            parts.push(pb::WatchResponse { events: std::mem::take(&mut current), fragment: true, ..template.clone() });
            size = 0;
        }
        size += n;
        current.push(e);
    }
    parts.push(pb::WatchResponse { events: current, fragment: false, ..template });
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::pb::mvccpb;

    #[test]
    fn fragments_keep_every_event_in_order() {
        let events: Vec<mvccpb::Event> = (0..10)
            .map(|i| mvccpb::Event {
                kv: Some(mvccpb::KeyValue { key: vec![b'k', i], value: vec![0; 100], ..Default::default() }),
                ..Default::default()
            })
            .collect();
        let resp = pb::WatchResponse { watch_id: 3, events: events.clone(), ..Default::default() };
        let parts = fragments(resp, 350);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment && p.watch_id == 3));
        assert!(!parts.last().unwrap().fragment);
        let joined: Vec<_> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, events);
    }
}
