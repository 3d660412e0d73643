//! Watches: delivered to a callback on a thread of the watch's own, or pulled with a
//! timeout.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::kv::{key_range, qkv_header, qkv_kv};
use super::node::{qkv_node, with_node};
use super::{
    boundary, bytes_arg, infallible, options_arg, out_arg, ref_arg, Failure, FfiResult, LastError, SizedOptions,
};
use crate::error::Error;
use crate::ffi::qkv_result;
use crate::mvcc::{Event, EventType, ResponseHeader};
use crate::watch::{WatchCanceler, WatchRequest, WatchResponse, Watcher};

/// Options of a watch; NULL means all zero (changes after now, puts and deletes, no
/// previous key-values). Set `size = sizeof(qkv_watch_options)` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_watch_options {
    /// `sizeof(qkv_watch_options)`.
    pub size: usize,
    /// First revision to report; 0: changes after now. A past revision replays the
    /// stored history first (no gap, no duplicate), then live changes follow.
    pub start_revision: i64,
    /// Watch every key starting with `key` (`range_end` is ignored).
    pub prefix: bool,
    /// Report each event's previous key-value.
    pub prev_kv: bool,
    /// Do not report puts.
    pub no_put: bool,
    /// Do not report deletes.
    pub no_delete: bool,
    /// Send periodic progress notifications (responses with no events) while idle.
    pub progress_notify: bool,
}

// SAFETY: integers and bools only.
unsafe impl SizedOptions for qkv_watch_options {
    fn zeroed() -> Self {
        qkv_watch_options {
            size: std::mem::size_of::<Self>(),
            start_revision: 0,
            prefix: false,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
        }
    }
}

/// One watch response's events (opaque; one or more whole revisions, or none for a
/// progress notification), owned by whoever received it: the puller frees it with
/// `qkv_events_free`; in a callback it is borrowed for the call only. Immutable.
pub struct qkv_events {
    header: ResponseHeader,
    events: Vec<Event>,
}

/// What happened to a key.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum qkv_event_type {
    /// Created or modified.
    QKV_EVENT_PUT = 0,
    /// Deleted (by a delete, a transaction or a lease revocation).
    QKV_EVENT_DELETE = 1,
}

/// One event, borrowed from its `qkv_events` (valid as long as that is).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_event {
    /// A `qkv_event_type` value.
    pub kind: i32,
    /// The key after the change; for a delete only `key` and `mod_revision` (the
    /// deleting revision) are set.
    pub kv: qkv_kv,
    /// Whether `prev_kv` is set (asked for, and the key existed before).
    pub has_prev_kv: bool,
    /// The key before the change (zeroes unless `has_prev_kv`).
    pub prev_kv: qkv_kv,
}

/// Number of events (0 for a progress notification, or NULL).
#[no_mangle]
pub unsafe extern "C" fn qkv_events_len(events: *const qkv_events) -> usize {
    // SAFETY: NULL or a live events object.
    infallible(0, || unsafe { events.as_ref() }.map_or(0, |e| e.events.len()))
}

/// Event `index` (borrowed; see `qkv_event`).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (index out of range).
#[no_mangle]
pub unsafe extern "C" fn qkv_events_get(events: *const qkv_events, index: usize, out: *mut qkv_event) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live events object and a writable out-pointer.
        let (events, out) = unsafe { (ref_arg(events, "events")?, out_arg(out, "out")?) };
        let e = events.events.get(index).ok_or_else(|| Failure::invalid(format!("index {index} out of range")))?;
        *out = qkv_event {
            kind: match e.kind {
                EventType::Put => qkv_event_type::QKV_EVENT_PUT as i32,
                EventType::Delete => qkv_event_type::QKV_EVENT_DELETE as i32,
            },
            kv: qkv_kv::of(&e.kv),
            has_prev_kv: e.prev_kv.is_some(),
            prev_kv: e.prev_kv.as_ref().map_or(qkv_kv::EMPTY, qkv_kv::of),
        };
        Ok(())
    })
}

/// The response's header: its `revision` is the store revision the watch has seen
/// everything up to (zeroes for NULL).
#[no_mangle]
pub unsafe extern "C" fn qkv_events_header(events: *const qkv_events) -> qkv_header {
    // SAFETY: NULL or a live events object.
    infallible(qkv_header::default(), || {
        unsafe { events.as_ref() }.map_or_else(qkv_header::default, |e| e.header.into())
    })
}

/// Frees an events object received from `qkv_watch_next`. NULL is a no-op. (Never
/// free the one passed to a callback.)
#[no_mangle]
pub unsafe extern "C" fn qkv_events_free(events: *mut qkv_events) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(events) }
}

/// Called with each response of a callback watch, on the watch's own thread (one
/// thread per callback watch, named `qkv-watch`), one call at a time, in revision order.
///
/// `status` is `QKV_OK` with `events` (borrowed for this call only) for a response;
/// the last call has `events` NULL and tells why the watch ended: `QKV_WATCH_CANCELED`
/// (after `qkv_watch_cancel`), `QKV_COMPACTED` (history it needed was compacted;
/// `compact_revision` says to where: restart from it), or `QKV_STOPPED` (the node
/// stopped). `compact_revision` is 0 otherwise.
///
/// The callback may call any `qkv_` function, blocking ones included (`qkv_put`, ...),
/// and may free its own watch (no call follows then). It must not unwind (throw a C++
/// exception) into the library. While it runs, this watch's next responses wait
/// (memory stays bounded; the watch catches up from history afterwards).
pub type qkv_watch_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, status: qkv_result, events: *const qkv_events, compact_revision: i64),
>;

enum Delivery {
    Pull(Mutex<Watcher>),
    Callback(Mutex<Option<JoinHandle<()>>>),
}

/// A watch (opaque): made by `qkv_watch_new` (pull) or `qkv_watch_start` (callback),
/// released by `qkv_watch_free`.
///
/// Thread-safety: `qkv_watch_next`, `qkv_watch_cancel` and `qkv_watch_compact_revision`
/// may be called from any thread at any time (`qkv_watch_next` calls on one watch wait
/// for each other); `qkv_watch_free` must be the last call.
pub struct qkv_watch {
    delivery: Delivery,
    canceler: WatchCanceler,
    compact_revision: Arc<AtomicI64>,
    /// Set by `qkv_watch_free`: the callback thread makes no more calls.
    freed: Arc<AtomicBool>,
    /// How a pulled watch ended (returned again by later pulls).
    ended: Mutex<Option<(qkv_result, String)>>,
    errors: LastError,
}

fn watch_request(key: &[u8], range_end: &[u8], o: &qkv_watch_options) -> WatchRequest {
    let (key, range_end) = key_range(key, range_end, o.prefix);
    WatchRequest {
        key,
        range_end,
        start_revision: o.start_revision,
        progress_notify: o.progress_notify,
        no_put: o.no_put,
        no_delete: o.no_delete,
        prev_kv: o.prev_kv,
        watch_id: 0,
    }
}

unsafe fn create(
    h: &qkv_node,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    options: *const qkv_watch_options,
) -> FfiResult<Watcher> {
    // SAFETY: buffers of the given lengths; NULL or valid options.
    let (key, end, o) = unsafe {
        (
            bytes_arg(key, key_len, "key")?,
            bytes_arg(range_end, range_end_len, "range_end")?,
            options_arg(options, "qkv_watch_options")?,
        )
    };
    Ok(h.node.watch(watch_request(key, end, &o))?)
}

fn ended_by(e: &Error) -> (qkv_result, i64) {
    match e {
        Error::Compacted { compact_revision } => (qkv_result::QKV_COMPACTED, *compact_revision),
        e => (qkv_result::of_error(e), 0),
    }
}

/// Creates a watch of `[key, range_end)` (as in `qkv_range`; `options->prefix`: every
/// key starting with `key`) whose responses the caller pulls with `qkv_watch_next`, for
/// event-loop programs. Events are queued (bounded) from now on. On success `*out` owns
/// the watch (free with `qkv_watch_free`). Thread-safe; works on every node, followers
/// and learners included.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`, `QKV_EMPTY_KEY`,
/// `QKV_COMPACTED` (start revision below the compaction point), `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_watch_new(
    node: *const qkv_node,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    options: *const qkv_watch_options,
    out: *mut *mut qkv_watch,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a writable out-pointer; the rest per `create`.
        let out = unsafe { out_arg(out, "out") }?;
        // SAFETY: per the contract.
        let watcher = unsafe { create(h, key, key_len, range_end, range_end_len, options) }?;
        let canceler = watcher.canceler();
        *out = Box::into_raw(Box::new(qkv_watch {
            delivery: Delivery::Pull(Mutex::new(watcher)),
            canceler,
            compact_revision: Arc::default(),
            freed: Arc::default(),
            ended: Mutex::new(None),
            errors: LastError::default(),
        }));
        Ok(())
    })
}

struct Userdata(*mut c_void);
// SAFETY: the caller promises `userdata` may be used from the watch's thread.
unsafe impl Send for Userdata {}

/// Creates a watch like `qkv_watch_new` whose responses go to `callback` (see
/// `qkv_watch_callback`) with `userdata`, from a thread the watch owns. `userdata` must
/// stay valid until the watch is freed (or its final call was made). On success `*out`
/// owns the watch (free with `qkv_watch_free`).
///
/// Errors: as `qkv_watch_new`; `QKV_NULL_PARAMETER` for a NULL callback; `QKV_INTERNAL`
/// when no thread can be started.
#[no_mangle]
pub unsafe extern "C" fn qkv_watch_start(
    node: *const qkv_node,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    options: *const qkv_watch_options,
    callback: qkv_watch_callback,
    userdata: *mut c_void,
    out: *mut *mut qkv_watch,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a writable out-pointer.
        let out = unsafe { out_arg(out, "out") }?;
        let callback = callback.ok_or_else(|| Failure::null("callback"))?;
        // SAFETY: per the contract.
        let watcher = unsafe { create(h, key, key_len, range_end, range_end_len, options) }?;
        let canceler = watcher.canceler();
        let compact_revision = Arc::new(AtomicI64::new(0));
        let freed = Arc::new(AtomicBool::new(false));
        let (rev, gone, ud) = (compact_revision.clone(), freed.clone(), Userdata(userdata));
        let thread = std::thread::Builder::new()
            .name("qkv-watch".into())
            .spawn(move || deliver(watcher, callback, ud, rev, gone))
            .map_err(|e| Failure::with_code(qkv_result::QKV_INTERNAL, format!("cannot start a watch thread: {e}")))?;
        *out = Box::into_raw(Box::new(qkv_watch {
            delivery: Delivery::Callback(Mutex::new(Some(thread))),
            canceler,
            compact_revision,
            freed,
            ended: Mutex::new(None),
            errors: LastError::default(),
        }));
        Ok(())
    })
}

type Callback = unsafe extern "C" fn(*mut c_void, qkv_result, *const qkv_events, i64);

/// The callback watch's thread: one call per response, then the final one.
fn deliver(mut watcher: Watcher, callback: Callback, userdata: Userdata, rev: Arc<AtomicI64>, freed: Arc<AtomicBool>) {
    let call = |status, events: *const qkv_events, compact| {
        if !freed.load(Ordering::Acquire) {
            // SAFETY: the caller's callback with the caller's userdata.
            unsafe { callback(userdata.0, status, events, compact) };
        }
    };
    loop {
        let (status, compact) = match watcher.next_blocking(Duration::from_secs(3600)) {
            Some(Ok(resp)) => {
                let events = events_of(resp);
                call(qkv_result::QKV_OK, &events, 0);
                continue;
            }
            Some(Err(Error::Timeout)) => continue,
            Some(Err(e)) => ended_by(&e),
            None => (qkv_result::QKV_WATCH_CANCELED, 0),
        };
        rev.store(compact, Ordering::Release);
        call(status, std::ptr::null(), compact);
        return;
    }
}

fn events_of(resp: WatchResponse) -> qkv_events {
    qkv_events { header: resp.header, events: resp.events }
}

/// Waits up to `timeout_ms` (0: do not wait) for the next response of a pulled watch.
/// `QKV_OK`: `*out` receives it (events of one or more whole revisions in order, or
/// none for a progress notification), owned by the caller (free with
/// `qkv_events_free`). Blocking; thread-safe.
///
/// Errors: `QKV_TIMEOUT` (nothing within the timeout; the watch goes on),
/// `QKV_WATCH_CANCELED` (cancelled, and every earlier response was delivered),
/// `QKV_COMPACTED` (history the watch needed was compacted; see
/// `qkv_watch_compact_revision`), `QKV_STOPPED` (the node stopped): these three end the
/// watch and are returned again by later calls. `QKV_NULL_PARAMETER`,
/// `QKV_INVALID_ARGUMENT` (a callback watch).
#[no_mangle]
pub unsafe extern "C" fn qkv_watch_next(
    watch: *const qkv_watch,
    timeout_ms: u32,
    out: *mut *mut qkv_events,
) -> qkv_result {
    // SAFETY: NULL or a live watch.
    let handle = unsafe { watch.as_ref() };
    boundary(handle.map(|w| &w.errors), || {
        let w = handle.ok_or_else(|| Failure::null("watch"))?;
        // SAFETY: a writable out-pointer.
        let out = unsafe { out_arg(out, "out") }?;
        let Delivery::Pull(watcher) = &w.delivery else {
            return Err(Failure::invalid("qkv_watch_next on a callback watch"));
        };
        let mut watcher = watcher.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((code, detail)) = &*w.ended.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Failure::with_code(*code, detail.clone()));
        }
        let (code, compact, detail) = match watcher.next_blocking(Duration::from_millis(timeout_ms.into())) {
            Some(Ok(resp)) => {
                *out = Box::into_raw(Box::new(events_of(resp)));
                return Ok(());
            }
            Some(Err(Error::Timeout)) => {
                return Err(Failure::with_code(
                    qkv_result::QKV_TIMEOUT,
                    format!("no watch response within {timeout_ms} ms"),
                ))
            }
            Some(Err(e)) => {
                let (code, compact) = ended_by(&e);
                (code, compact, e.to_string())
            }
            None => (qkv_result::QKV_WATCH_CANCELED, 0, "the watch was cancelled".to_string()),
        };
        w.compact_revision.store(compact, Ordering::Release);
        *w.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some((code, detail.clone()));
        Err(Failure::with_code(code, detail))
    })
}

/// Cancels the watch: responses already queued are still delivered, then the watch
/// ends with `QKV_WATCH_CANCELED` (a callback watch gets that as its final call).
/// Idempotent; thread-safe; never blocks.
///
/// Errors: `QKV_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn qkv_watch_cancel(watch: *const qkv_watch) -> qkv_result {
    boundary(None, || {
        // SAFETY: NULL or a live watch.
        unsafe { ref_arg(watch, "watch") }?.canceler.cancel();
        Ok(())
    })
}

/// The revision the store was compacted to, once the watch ended with `QKV_COMPACTED`
/// (a watch restarted from it misses nothing still stored); 0 before that, or for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_watch_compact_revision(watch: *const qkv_watch) -> i64 {
    // SAFETY: NULL or a live watch.
    infallible(0, || unsafe { watch.as_ref() }.map_or(0, |w| w.compact_revision.load(Ordering::Acquire)))
}

/// Copies the detail of the watch's last failure (as `qkv_node_last_error` does).
#[no_mangle]
pub unsafe extern "C" fn qkv_watch_last_error(
    watch: *const qkv_watch,
    buf: *mut std::ffi::c_char,
    len: usize,
) -> usize {
    // SAFETY: NULL or a live watch.
    infallible(0, || unsafe { watch.as_ref() }.map_or(0, |w| w.errors.copy_to(buf, len)))
}

/// Cancels the watch and releases it. For a callback watch: a callback running on
/// another thread is waited for, and no call follows once this returns (no final call
/// is made); called from the watch's own callback, it returns at once and the thread
/// ends after the callback returns. NULL is a no-op. Must be the last call on the watch.
#[no_mangle]
pub unsafe extern "C" fn qkv_watch_free(watch: *mut qkv_watch) {
    infallible((), || {
        if watch.is_null() {
            return;
        }
        // SAFETY: made by `qkv_watch_new`/`qkv_watch_start`, freed once.
        let w = unsafe { Box::from_raw(watch) };
        w.freed.store(true, Ordering::Release);
        w.canceler.cancel();
        if let Delivery::Callback(thread) = &w.delivery {
            let thread = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            // Freed from its own callback: the thread ends once the callback returns.
            if let Some(thread) = thread.filter(|t| t.thread().id() != std::thread::current().id()) {
                let _ = thread.join();
            }
        }
    })
}
