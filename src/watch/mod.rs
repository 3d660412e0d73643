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

/// The consuming end of a response queue: shared by [`WatchStream`] and [`Watcher`].
struct Receiver {
    node: Node,
    sink: Arc<Sink>,
    finished: bool,
}

impl Receiver {
    async fn next(&mut self) -> Option<Result<WatchResponse>> {
        if self.finished {
            return None;
        }
        let item = self.sink.recv().await;
        self.finish_item(item)
    }

    fn next_blocking(&mut self, timeout: Duration) -> Option<Result<WatchResponse>> {
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

    fn try_next(&mut self) -> Option<Result<WatchResponse>> {
        if self.finished {
            return None;
        }
        let item = self.sink.try_recv()?;
        self.finish_item(item)
    }

    fn finish_item(&mut self, item: Result<WatchResponse>) -> Option<Result<WatchResponse>> {
        match item {
            Ok(mut resp) => {
                resp.header = self.node.header(resp.header.revision);
                Some(Ok(resp))
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

#[derive(Default)]
struct Ids {
    /// watch id → hub handle.
    handles: HashMap<i64, u64>,
    /// Ids cancelled whose final `canceled` response has not been read yet: not
    /// reusable until then, so no response of the old watch passes for the new one's.
    canceling: std::collections::HashSet<i64>,
    next: i64,
}

impl Ids {
    fn taken(&self, id: i64) -> bool {
        self.handles.contains_key(&id) || self.canceling.contains(&id)
    }

    /// The lowest id from `next` on that no watch uses; later calls never return it again.
    fn next_free(&mut self) -> i64 {
        while self.taken(self.next) {
            self.next += 1;
        }
        self.next += 1;
        self.next - 1
    }
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
/// (about [`SINK_EVENTS_MAX`] events), plus about 170 bytes per watch.
pub struct WatchStream {
    rx: Receiver,
    hub: Arc<WatchHub>,
    ids: Mutex<Ids>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").field("watches", &self.watch_ids()).finish()
    }
}

impl WatchStream {
    pub(crate) fn new(node: Node, hub: Arc<WatchHub>) -> Self {
        let sink = hub.new_sink();
        WatchStream { rx: Receiver { node, sink, finished: false }, hub, ids: Mutex::default() }
    }

    /// Creates a watch on this stream and returns its id.
    ///
    /// Errors: `EmptyKey`; `InvalidArgument` (a watch id already in use on this stream,
    /// or a negative start revision); `Compacted` when `start_revision` is below the
    /// compaction point; `Stopped`.
    pub fn create(&self, req: WatchRequest) -> Result<i64> {
        check_request(&req)?;
        let mut ids = self.ids.lock().expect("watch stream lock");
        let id = if req.watch_id != 0 {
            if req.watch_id < 0 || ids.taken(req.watch_id) {
                return Err(Error::InvalidArgument(format!("watch id {} is already in use", req.watch_id)));
            }
            req.watch_id
        } else {
            ids.next_free()
        };
        let handle = self.hub.add(&self.rx.sink, id, &req)?;
        ids.handles.insert(id, handle);
        Ok(id)
    }

    /// Takes a watch id that no watch of the stream uses, without creating a watch: the
    /// etcd server announces a watch whose start revision is compacted under such an id
    /// before cancelling it, as etcd does.
    pub(crate) fn unused_id(&self) -> i64 {
        self.ids.lock().expect("watch stream lock").next_free()
    }

    /// Cancels a watch. Its pending responses may still be read; a final response with
    /// `canceled` set follows them.
    ///
    /// Errors: `InvalidArgument` when the stream has no such watch.
    pub fn cancel(&self, watch_id: i64) -> Result<()> {
        let mut ids = self.ids.lock().expect("watch stream lock");
        let handle = ids.handles.remove(&watch_id);
        let handle = handle.ok_or_else(|| Error::InvalidArgument(format!("no watch {watch_id} on this stream")))?;
        ids.canceling.insert(watch_id);
        drop(ids);
        self.hub.remove(handle, true);
        Ok(())
    }

    /// Asks for a progress notification: a response with `watch_id` -1 and no events,
    /// sent once every watch of the stream has caught up, carrying the revision they have
    /// all seen everything up to.
    pub fn request_progress(&self) {
        self.hub.request_progress(&self.rx.sink);
    }

    /// The next response; `None` once the stream is finished. `Some(Err(Stopped))` is
    /// delivered once when the node stops (unlike a cancel, which sends a response).
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        let item = self.rx.next().await;
        self.forget_canceled(item)
    }

    /// Like [`WatchStream::next`], from a thread outside any async runtime, waiting at
    /// most `timeout` (`Some(Err(Timeout))` when it passes; the stream stays usable).
    pub fn next_blocking(&mut self, timeout: Duration) -> Option<Result<WatchResponse>> {
        let item = self.rx.next_blocking(timeout);
        self.forget_canceled(item)
    }

    /// The next response if one is ready (never waits).
    pub fn try_next(&mut self) -> Option<Result<WatchResponse>> {
        let item = self.rx.try_next();
        self.forget_canceled(item)
    }

    fn forget_canceled(&mut self, item: Option<Result<WatchResponse>>) -> Option<Result<WatchResponse>> {
        if let Some(Ok(resp)) = &item {
            if resp.canceled {
                let mut ids = self.ids.lock().expect("watch stream lock");
                // A cancel of ours, or one by the node (compaction).
                if !ids.canceling.remove(&resp.watch_id) {
                    ids.handles.remove(&resp.watch_id);
                }
            }
        }
        item
    }

    /// Events queued on this stream and not read yet (bounded by about
    /// [`SINK_EVENTS_MAX`], whatever the consumer does).
    pub fn queued_events(&self) -> usize {
        self.rx.sink.queued_events()
    }

    /// Ids of the stream's live watches.
    pub fn watch_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.ids.lock().expect("watch stream lock").handles.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in ids.handles.into_values() {
            self.hub.remove(handle, false);
        }
    }
}

fn check_request(req: &WatchRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.start_revision < 0 {
        return Err(Error::InvalidArgument("a watch start revision cannot be negative".into()));
    }
    Ok(())
}

/// One watch with its own response queue: the simple way to follow a key, range or prefix.
///
/// [`Watcher::next`] yields responses (each holding the events of one or more whole
/// revisions, or a progress notification). It returns `Some(Err(Compacted))` when the
/// history the watch needs was compacted, `Some(Err(Stopped))` when the node stops, and
/// `None` after [`Watcher::cancel`] or either error. Dropping the watcher cancels it.
///
/// Thread-safety: `Send + Sync`; `cancel` and `request_progress` may be called while
/// another thread waits in `next`. Memory: about 330 bytes plus unread responses (at
/// most about [`SINK_EVENTS_MAX`] events); many watches are cheaper on a [`WatchStream`].
pub struct Watcher {
    rx: Receiver,
    hub: Arc<WatchHub>,
    handle: u64,
    id: i64,
    done: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("id", &self.id).field("done", &self.done).finish()
    }
}

impl Watcher {
    pub(crate) fn create(node: Node, hub: Arc<WatchHub>, req: WatchRequest) -> Result<Self> {
        check_request(&req)?;
        let sink = hub.new_sink();
        let id = if req.watch_id > 0 { req.watch_id } else { 0 };
        let handle = hub.add(&sink, id, &req)?;
        Ok(Watcher { rx: Receiver { node, sink, finished: false }, hub, handle, id, done: false })
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
        let item = self.rx.next().await;
        self.map(item)
    }

    /// Blocking [`Watcher::next`], waiting at most `timeout` (`Some(Err(Timeout))`
    /// when it passes; the watcher stays usable).
    pub fn next_blocking(&mut self, timeout: Duration) -> Option<Result<WatchResponse>> {
        if self.done {
            return None;
        }
        let item = self.rx.next_blocking(timeout);
        self.map(item)
    }

    /// The next response if one is ready (never waits): `None` when none is ready or the
    /// watch has ended.
    pub fn try_next(&mut self) -> Option<Result<WatchResponse>> {
        if self.done {
            return None;
        }
        // Nothing ready is not the end of the watch.
        let item = self.rx.try_next()?;
        self.map(Some(item))
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
        self.rx.sink.queued_events()
    }

    /// Asks for a progress notification (see [`WatchStream::request_progress`]).
    pub fn request_progress(&self) {
        self.hub.request_progress(&self.rx.sink);
    }

    /// Cancels the watch: responses already queued are still returned, then `None`.
    pub fn cancel(&self) {
        self.hub.remove(self.handle, true);
    }

    /// A handle that cancels this watch from another thread while one waits in
    /// [`Watcher::next`] (which borrows the watcher mutably). Cancelling twice, or
    /// after the watch ended, does nothing.
    pub fn canceler(&self) -> WatchCanceler {
        WatchCanceler { hub: self.hub.clone(), handle: self.handle }
    }
}

/// Cancels one [`Watcher`] from any thread (see [`Watcher::canceler`]).
///
/// Thread-safety: `Send + Sync + Clone`. Memory: it keeps the node's watch hub alive,
/// not the watcher.
#[derive(Clone)]
pub struct WatchCanceler {
    hub: Arc<WatchHub>,
    handle: u64,
}

impl std::fmt::Debug for WatchCanceler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCanceler").finish_non_exhaustive()
    }
}

impl WatchCanceler {
    /// Cancels the watch, as [`Watcher::cancel`] does.
    pub fn cancel(&self) {
        self.hub.remove(self.handle, true);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.hub.remove(self.handle, false);
    }
}
