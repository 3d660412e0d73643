//! Watch: streams of key changes with etcd's guarantees.
//!
//! A [`WatchStream`] carries any number of watches (like one etcd gRPC watch stream); a
//! [`Watcher`] is a stream with one watch, for the common case. Each watch names a key, a
//! range or a prefix and a start revision; it first replays the stored history from that
//! revision, then continues live.
//!
//! Guarantees, on every node: a watch's events arrive in revision order, with no gap and
//! no duplicate, and all events of one revision arrive in one response. Memory per stream
//! is bounded: a consumer that falls behind has its watches moved to the "unsynced"
//! group, which is fed from the stored history (as etcd's unsynced watcher group is) once
//! the consumer has room again. If history the watch still needs is compacted meanwhile,
//! the watch is cancelled with [`Error::Compacted`].

mod hub;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hub::SINK_EVENTS_MAX;
pub(crate) use hub::{Sink, WatchHub};

use crate::error::{Error, Result};
use crate::mvcc::{Event, ResponseHeader};
use crate::node::Node;

/// Create a watch (etcd `WatchCreateRequest`).
///
/// `range_end` follows [`RangeRequest`](crate::RangeRequest): empty watches `key` alone,
/// `"\0"` every key `>= key`, otherwise `[key, range_end)`; [`WatchRequest::prefix`]
/// builds a prefix watch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// First key (inclusive).
    pub key: Vec<u8>,
    /// End of the range (exclusive); see the type docs.
    pub range_end: Vec<u8>,
    /// First revision to report; 0 means "changes after now". Past revisions replay
    /// the history first.
    pub start_revision: i64,
    /// Send periodic progress notifications (empty responses carrying the revision)
    /// while the watch is idle.
    pub progress_notify: bool,
    /// Do not report puts.
    pub no_put: bool,
    /// Do not report deletes.
    pub no_delete: bool,
    /// Report each event's previous key-value.
    pub prev_kv: bool,
    /// The watch id to use on its stream; 0 lets the stream choose one.
    pub watch_id: i64,
}

impl WatchRequest {
    /// Watches one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        WatchRequest { key: key.into(), ..Default::default() }
    }

    /// Watches every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = crate::mvcc::prefix_end(&key);
        WatchRequest { key, range_end, ..Default::default() }
    }

    /// Sets the start revision.
    pub fn from_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Asks for previous key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// One message of a watch stream (etcd `WatchResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// Response header; `revision` is the store revision the response was sent at.
    pub header: ResponseHeader,
    /// The watch this response belongs to (-1: a progress response for the whole stream).
    pub watch_id: i64,
    /// The watch was cancelled; no more responses follow for it.
    pub canceled: bool,
    /// Set with `canceled` when the watch needed history that was compacted.
    pub compact_revision: i64,
    /// Why the watch was cancelled, if it was.
    pub cancel_reason: String,
    /// The events, in revision order (empty for a progress notification).
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// A response with no events that only reports progress (the revision the watch has
    /// seen everything up to).
    pub fn is_progress_notify(&self) -> bool {
        self.events.is_empty() && !self.canceled
    }
}

/// Flags of a watch, packed.
pub(crate) mod flags {
    pub const PREV_KV: u8 = 1;
    pub const NO_PUT: u8 = 2;
    pub const NO_DELETE: u8 = 4;
    pub const PROGRESS: u8 = 8;
}

/// A stream of watches on one node (etcd's gRPC watch stream, in Rust).
///
/// Create watches with [`WatchStream::create`], read their responses with
/// [`WatchStream::next`] (async) or [`WatchStream::next_blocking`]. Responses of all the
/// stream's watches arrive in one sequence; each carries its `watch_id`. Dropping the
/// stream cancels its watches.
///
/// Thread-safety: `Send + Sync`. `create`, `cancel` and `request_progress` may be called
/// from any thread while another reads responses. Memory: a bounded queue of responses
/// (about [`SINK_EVENTS_MAX`] events), plus about 100 bytes per watch.
pub struct WatchStream {
    node: Node,
    hub: Arc<WatchHub>,
    sink: Arc<Sink>,
    /// watch id → hub handle.
    watches: Mutex<HashMap<i64, u64>>,
    next_id: Mutex<i64>,
    finished: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").field("watches", &self.watches.lock().map(|w| w.len()).ok()).finish()
    }
}

impl WatchStream {
    pub(crate) fn new(node: Node, hub: Arc<WatchHub>) -> Self {
        let sink = hub.new_sink();
        WatchStream { node, hub, sink, watches: Mutex::default(), next_id: Mutex::new(0), finished: false }
    }

    /// Creates a watch on this stream and returns its id.
    ///
    /// Errors: `EmptyKey`; `InvalidArgument` (a watch id already in use on this stream,
    /// or a negative start revision); `Compacted` when `start_revision` is below the
    /// compaction point; `Stopped`.
    pub fn create(&self, req: WatchRequest) -> Result<i64> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if req.start_revision < 0 {
            return Err(Error::InvalidArgument("a watch start revision cannot be negative".into()));
        }
        let mut watches = self.watches.lock().expect("watch stream lock");
        let id = if req.watch_id != 0 {
            if watches.contains_key(&req.watch_id) || req.watch_id < 0 {
                return Err(Error::InvalidArgument(format!("watch id {} is already in use", req.watch_id)));
            }
            req.watch_id
        } else {
            let mut next = self.next_id.lock().expect("watch id lock");
            while watches.contains_key(&*next) {
                *next += 1;
            }
            *next
        };
        let slot = self.hub.add(&self.sink, id, &req)?;
        watches.insert(id, slot);
        Ok(id)
    }

    /// Cancels a watch. Its pending responses may still be read; a final response with
    /// `canceled` set follows them.
    ///
    /// Errors: `InvalidArgument` when the stream has no such watch.
    pub fn cancel(&self, watch_id: i64) -> Result<()> {
        let slot = self.watches.lock().expect("watch stream lock").remove(&watch_id);
        let slot = slot.ok_or_else(|| Error::InvalidArgument(format!("no watch {watch_id} on this stream")))?;
        self.hub.remove(slot, true);
        Ok(())
    }

    /// Asks for a progress notification: a response with `watch_id` -1 and no events,
    /// sent once every watch of the stream has caught up, carrying the revision they have
    /// all seen everything up to.
    pub fn request_progress(&self) {
        self.hub.request_progress(&self.sink);
    }

    /// The next response; `None` once the stream is finished. `Some(Err(Stopped))` is
    /// delivered once when the node stops (unlike a cancel, which sends a response).
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        if self.finished {
            return None;
        }
        let item = self.sink.recv().await;
        self.finish_item(item)
    }

    /// Like [`WatchStream::next`], from a thread outside any async runtime, waiting at
    /// most `timeout` (`Some(Err(Timeout))` when it passes; the stream stays usable).
    pub fn next_blocking(&mut self, timeout: Duration) -> Option<Result<WatchResponse>> {
        if self.finished {
            return None;
        }
        if let Err(e) = crate::node::ensure_not_async() {
            return Some(Err(e));
        }
        let sink = self.sink.clone();
        let item = self.node.runtime().block_on(async move { tokio::time::timeout(timeout, sink.recv()).await });
        match item {
            Ok(item) => self.finish_item(item),
            Err(_) => Some(Err(Error::Timeout)),
        }
    }

    /// The next response if one is ready (never waits).
    pub fn try_next(&mut self) -> Option<Result<WatchResponse>> {
        if self.finished {
            return None;
        }
        let item = self.sink.try_recv()?;
        self.finish_item(item)
    }

    fn finish_item(&mut self, item: Result<WatchResponse>) -> Option<Result<WatchResponse>> {
        match item {
            Ok(mut resp) => {
                if resp.canceled {
                    self.watches.lock().expect("watch stream lock").remove(&resp.watch_id);
                }
                resp.header = self.node.header(resp.header.revision);
                Some(Ok(resp))
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }

    /// Events queued on this stream and not read yet (bounded by about
    /// [`SINK_EVENTS_MAX`], whatever the consumer does).
    pub fn queued_events(&self) -> usize {
        self.sink.queued_events()
    }

    /// Ids of the stream's live watches.
    pub fn watch_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.watches.lock().expect("watch stream lock").keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let watches = std::mem::take(&mut *self.watches.lock().unwrap_or_else(|p| p.into_inner()));
        for slot in watches.into_values() {
            self.hub.remove(slot, false);
        }
    }
}

/// One watch with its own stream: the simple way to follow a key, range or prefix.
///
/// [`Watcher::next`] yields responses (each holding the events of one or more whole
/// revisions, or a progress notification). It returns `Some(Err(Compacted))` when the
/// history the watch needs was compacted, `Some(Err(Stopped))` when the node stops, and
/// `None` after [`Watcher::cancel`] or either error. Dropping the watcher cancels it.
#[derive(Debug)]
pub struct Watcher {
    stream: WatchStream,
    id: i64,
    done: bool,
}

impl Watcher {
    pub(crate) fn new(stream: WatchStream, id: i64) -> Self {
        Watcher { stream, id, done: false }
    }

    /// The watch id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The next response (see the type docs).
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        if self.done {
            return None;
        }
        let item = self.stream.next().await;
        self.map(item)
    }

    /// Blocking [`Watcher::next`], waiting at most `timeout` (`Some(Err(Timeout))`
    /// when it passes; the watcher stays usable).
    pub fn next_blocking(&mut self, timeout: Duration) -> Option<Result<WatchResponse>> {
        if self.done {
            return None;
        }
        let item = self.stream.next_blocking(timeout);
        self.map(item)
    }

    /// The next response if one is ready (never waits).
    pub fn try_next(&mut self) -> Option<Result<WatchResponse>> {
        if self.done {
            return None;
        }
        let item = self.stream.try_next();
        self.map(item)
    }

    fn map(&mut self, item: Option<Result<WatchResponse>>) -> Option<Result<WatchResponse>> {
        match item {
            None => {
                self.done = true;
                None
            }
            Some(Err(Error::Timeout)) => Some(Err(Error::Timeout)),
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            Some(Ok(resp)) if resp.canceled => {
                self.done = true;
                if resp.compact_revision > 0 {
                    Some(Err(Error::Compacted { compact_revision: resp.compact_revision }))
                } else {
                    None
                }
            }
            Some(Ok(mut resp)) => {
                resp.watch_id = self.id;
                Some(Ok(resp))
            }
        }
    }

    /// Events queued and not read yet (see [`WatchStream::queued_events`]).
    pub fn queued_events(&self) -> usize {
        self.stream.queued_events()
    }

    /// Asks for a progress notification (see [`WatchStream::request_progress`]).
    pub fn request_progress(&self) {
        self.stream.request_progress();
    }

    /// Cancels the watch: responses already queued are still returned, then `None`.
    pub fn cancel(&self) {
        let _ = self.stream.cancel(self.id);
    }
}
