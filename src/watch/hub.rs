//! The watch hub of one node: which watches exist, which are synced (fed live by the
//! apply loop) and which are unsynced (fed from the stored history by a catch-up task).
//!
//! Invariants, all under the hub lock:
//! - `current` is the revision through which every synced watch has been offered its
//!   events; a synced watch has seen every event below `max(next_rev, current + 1)`.
//! - an unsynced watch has seen every event below `next_rev` and nothing at or above it;
//!   the catch-up task reads `next_rev..` from history and makes it synced once it has
//!   passed `current`.
//!
//! Lock order: hub, then sink. Consumers only take sink locks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{flags, WatchRequest, WatchResponse};
use crate::error::{Error, Result};
use crate::mvcc::{Event, EventType, MvccStore, ResponseHeader};

/// Events a stream may hold unread before its watches fall back to the unsynced group.
pub const SINK_EVENTS_MAX: usize = 1024;
/// Events read from history per catch-up round.
const CATCHUP_EVENTS: usize = 1000;
/// Set on a watch that was sent events since the last progress tick.
const SENT: u8 = 16;

/// The response queue of one [`WatchStream`](super::WatchStream).
pub(crate) struct Sink {
    state: Mutex<SinkState>,
    ready: Notify,
    hub_wake: Arc<Notify>,
}

#[derive(Default)]
struct SinkState {
    queue: VecDeque<Result<WatchResponse>>,
    queued_events: usize,
    /// Watches of this stream in the unsynced group.
    unsynced: u32,
    progress_pending: bool,
    stopped: bool,
    /// A watch of this stream waits for room: wake the hub once the queue is half empty.
    wanted: bool,
}

impl Sink {
    /// Events that may still be queued (unbounded while the queue is empty). A stream
    /// without room is marked, so the reader wakes the hub when it has drained half.
    fn room(&self) -> usize {
        let mut st = self.state.lock().expect("sink lock");
        if st.queued_events == 0 {
            return usize::MAX;
        }
        let room = SINK_EVENTS_MAX.saturating_sub(st.queued_events);
        if room == 0 {
            st.wanted = true;
        }
        room
    }

    fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// Queues `resp` unless the queue is full (an empty queue takes any size, so one
    /// huge revision still gets through). Returns whether it was queued.
    fn push(&self, resp: WatchResponse) -> bool {
        let mut st = self.state.lock().expect("sink lock");
        let n = resp.events.len();
        if st.queued_events > 0 && st.queued_events + n > SINK_EVENTS_MAX {
            st.wanted = true;
            return false;
        }
        st.queued_events += n;
        st.queue.push_back(Ok(resp));
        drop(st);
        self.ready.notify_one();
        true
    }

    /// Queues a control response (cancel, progress) regardless of room.
    fn push_control(&self, resp: WatchResponse) {
        self.state.lock().expect("sink lock").queue.push_back(Ok(resp));
        self.ready.notify_one();
    }

    fn stop(&self) {
        let mut st = self.state.lock().expect("sink lock");
        if !st.stopped {
            st.stopped = true;
            st.queue.push_back(Err(Error::Stopped));
        }
        drop(st);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Result<WatchResponse>> {
        let mut st = self.state.lock().expect("sink lock");
        let item = st.queue.pop_front()?;
        if let Ok(r) = &item {
            st.queued_events -= r.events.len();
            if st.wanted && st.queued_events < SINK_EVENTS_MAX / 2 {
                // Watches of this stream wait for room in the unsynced group.
                st.wanted = false;
                self.hub_wake.notify_one();
            }
        }
        Some(item)
    }

    /// The next queued response (cancel-safe: nothing is lost if the future is dropped).
    pub(crate) async fn recv(&self) -> Result<WatchResponse> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = self.pop() {
                return item;
            }
            notified.await;
        }
    }

    pub(crate) fn try_recv(&self) -> Option<Result<WatchResponse>> {
        self.pop()
    }

    /// Events queued and not yet read (for tests and metrics).
    pub(crate) fn queued_events(&self) -> usize {
        self.state.lock().expect("sink lock").queued_events
    }
}

/// The key range of a watch.
enum End {
    Single,
    Unbounded,
    Before(Box<[u8]>),
}

struct Entry {
    key: Box<[u8]>,
    end: End,
    next_rev: i64,
    watch_id: i64,
    sink: Arc<Sink>,
    generation: u32,
    flags: u8,
    synced: bool,
}

impl Entry {
    fn matches(&self, key: &[u8]) -> bool {
        match &self.end {
            End::Single => *self.key == *key,
            End::Unbounded => key >= &*self.key,
            End::Before(e) => key >= &*self.key && key < &**e,
        }
    }

    /// The event as this watch reports it, if it reports it at all.
    fn view(&self, ev: &Event) -> Option<Event> {
        let skip = match ev.kind {
            EventType::Put => self.flags & flags::NO_PUT != 0,
            EventType::Delete => self.flags & flags::NO_DELETE != 0,
        };
        if skip || ev.kv.mod_revision < self.next_rev || !self.matches(&ev.kv.key) {
            return None;
        }
        let mut out = ev.clone();
        if self.flags & flags::PREV_KV == 0 {
            out.prev_kv = None;
        }
        Some(out)
    }

    fn response(&self, revision: i64, events: Vec<Event>) -> WatchResponse {
        WatchResponse { header: header(revision), watch_id: self.watch_id, events, ..Default::default() }
    }
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader { revision, ..Default::default() }
}

/// Single-key watches of one key hash: almost always one.
// Boxed so the common `One` case keeps the index entry at 16 bytes.
#[allow(clippy::box_collection)]
enum Slots {
    One(u32),
    Many(Box<HashSet<u32>>),
}

#[derive(Default)]
struct HubState {
    current: i64,
    /// Highest header revision sent from history (it may run ahead of `current`);
    /// progress responses never report less, so headers never go backwards.
    sent_rev: i64,
    slots: Vec<Option<Entry>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    /// Synced single-key watches by key hash (a collision only costs a key compare).
    singles: HashMap<u64, Slots>,
    hasher: std::hash::RandomState,
    ranges: HashSet<u32>,
    unsynced: HashSet<u32>,
    sinks: Vec<Weak<Sink>>,
    count: usize,
    stopped: bool,
}

impl HubState {
    fn entry(&self, slot: u32) -> &Entry {
        self.slots[slot as usize].as_ref().expect("indexed slot holds a watch")
    }

    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize].as_mut().expect("indexed slot holds a watch")
    }

    fn index(&mut self, slot: u32) {
        let e = self.slots[slot as usize].as_mut().expect("slot holds a watch");
        e.synced = true;
        if matches!(e.end, End::Single) {
            let h = self.hasher.hash_one(&*e.key);
            match self.singles.get_mut(&h) {
                None => {
                    self.singles.insert(h, Slots::One(slot));
                }
                Some(Slots::One(other)) => {
                    let both = HashSet::from([*other, slot]);
                    self.singles.insert(h, Slots::Many(Box::new(both)));
                }
                Some(Slots::Many(v)) => {
                    v.insert(slot);
                }
            }
        } else {
            self.ranges.insert(slot);
        }
    }

    fn unindex(&mut self, slot: u32) {
        let e = self.slots[slot as usize].as_mut().expect("slot holds a watch");
        e.synced = false;
        if matches!(e.end, End::Single) {
            let h = self.hasher.hash_one(&*e.key);
            let now_empty = match self.singles.get_mut(&h) {
                Some(Slots::One(s)) => *s == slot,
                Some(Slots::Many(v)) => {
                    v.remove(&slot);
                    if v.len() == 1 {
                        let last = *v.iter().next().expect("one left");
                        self.singles.insert(h, Slots::One(last));
                    }
                    false
                }
                None => false,
            };
            if now_empty {
                self.singles.remove(&h);
            }
        } else {
            self.ranges.remove(&slot);
        }
    }

    /// Moves a synced watch to the unsynced group; it has seen every event below `from`.
    fn unsync(&mut self, slot: u32, from: i64) {
        self.unindex(slot);
        let e = self.entry_mut(slot);
        e.next_rev = e.next_rev.max(from);
        e.sink.state.lock().expect("sink lock").unsynced += 1;
        self.unsynced.insert(slot);
    }

    /// Moves an unsynced watch to the synced group, answering a pending progress request
    /// of its stream once the whole stream is synced.
    fn sync(&mut self, slot: u32) {
        self.unsynced.remove(&slot);
        self.index(slot);
        let current = self.progress_rev();
        let sink = self.entry(slot).sink.clone();
        let mut st = sink.state.lock().expect("sink lock");
        st.unsynced -= 1;
        if st.unsynced == 0 && st.progress_pending {
            st.progress_pending = false;
            drop(st);
            sink.push_control(progress(-1, current));
        }
    }

    /// The revision a progress response reports.
    fn progress_rev(&self) -> i64 {
        self.current.max(self.sent_rev)
    }

    fn remove(&mut self, slot: u32) -> Option<Entry> {
        let e = self.slots[slot as usize].as_ref()?;
        if e.synced {
            self.unindex(slot);
        } else if self.unsynced.remove(&slot) {
            let sink = e.sink.clone();
            let mut st = sink.state.lock().expect("sink lock");
            st.unsynced -= 1;
            if st.unsynced == 0 && st.progress_pending {
                st.progress_pending = false;
                drop(st);
                sink.push_control(progress(-1, self.progress_rev()));
            }
        }
        let e = self.slots[slot as usize].take();
        self.generations[slot as usize] = self.generations[slot as usize].wrapping_add(1);
        self.free.push(slot);
        self.count -= 1;
        e
    }
}

fn progress(watch_id: i64, revision: i64) -> WatchResponse {
    WatchResponse { header: header(revision), watch_id, ..Default::default() }
}

/// A handle naming one watch: slot and generation (slots are reused).
fn handle(slot: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(slot)
}

/// The watch hub of one node. See the module docs.
pub(crate) struct WatchHub {
    /// Weak: streams keep the hub alive after their node stopped, and must not keep
    /// its database open.
    store: Weak<MvccStore>,
    state: Mutex<HubState>,
    wake: Arc<Notify>,
    watching: AtomicBool,
    progress_interval: Duration,
    /// Held while a catch-up round reads the store, so a stopping node can wait until
    /// no round uses its database any more.
    round: Mutex<()>,
}

impl WatchHub {
    /// A hub whose watches start at the store's current revision; `spawn` its catch-up task.
    pub(crate) fn new(store: Arc<MvccStore>, progress_interval: Duration) -> Arc<Self> {
        let current = store.revision();
        Arc::new(WatchHub {
            store: Arc::downgrade(&store),
            state: Mutex::new(HubState { current, ..Default::default() }),
            wake: Arc::new(Notify::new()),
            watching: AtomicBool::new(false),
            progress_interval,
            round: Mutex::new(()),
        })
    }

    /// Starts the catch-up and progress task on the current runtime.
    pub(crate) fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(catch_up_task(Arc::downgrade(self), self.wake.clone(), self.progress_interval))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().expect("watch hub lock")
    }

    pub(crate) fn new_sink(&self) -> Arc<Sink> {
        let sink = Arc::new(Sink { state: Mutex::default(), ready: Notify::new(), hub_wake: self.wake.clone() });
        let mut st = self.lock();
        if st.stopped {
            sink.stop();
        }
        if st.sinks.len() >= 64 && st.sinks.len().is_power_of_two() {
            st.sinks.retain(|w| w.strong_count() > 0);
        }
        st.sinks.push(Arc::downgrade(&sink));
        sink
    }

    /// Whether the apply loop should collect events for live delivery.
    pub(crate) fn wants_events(&self) -> bool {
        self.watching.load(Ordering::Acquire)
    }

    /// Number of watches.
    pub(crate) fn len(&self) -> usize {
        self.lock().count
    }

    /// Adds a watch; returns its handle.
    pub(crate) fn add(&self, sink: &Arc<Sink>, watch_id: i64, req: &WatchRequest) -> Result<u64> {
        let mut st = self.lock();
        if st.stopped {
            return Err(Error::Stopped);
        }
        let store = self.store.upgrade().ok_or(Error::Stopped)?;
        let compact = store.compact_revision();
        if req.start_revision != 0 && req.start_revision < compact {
            return Err(Error::Compacted { compact_revision: compact });
        }
        let end = match req.range_end.as_slice() {
            [] => End::Single,
            [0] => End::Unbounded,
            e => End::Before(e.into()),
        };
        let mut fl = 0;
        for (on, bit) in [
            (req.prev_kv, flags::PREV_KV),
            (req.no_put, flags::NO_PUT),
            (req.no_delete, flags::NO_DELETE),
            (req.progress_notify, flags::PROGRESS),
        ] {
            if on {
                fl |= bit;
            }
        }
        // "Now" is the store's revision: `current` may lag it by a batch being published.
        let next_rev = if req.start_revision == 0 { store.revision().max(st.current) + 1 } else { req.start_revision };
        let slot = match st.free.pop() {
            Some(s) => s,
            None => {
                st.slots.push(None);
                st.generations.push(0);
                (st.slots.len() - 1) as u32
            }
        };
        let generation = st.generations[slot as usize];
        st.slots[slot as usize] = Some(Entry {
            key: req.key.as_slice().into(),
            end,
            next_rev,
            watch_id,
            sink: sink.clone(),
            generation,
            flags: fl,
            synced: false,
        });
        st.count += 1;
        if next_rev > st.current {
            st.index(slot);
        } else {
            sink.state.lock().expect("sink lock").unsynced += 1;
            st.unsynced.insert(slot);
            self.wake.notify_one();
        }
        self.watching.store(true, Ordering::Release);
        Ok(handle(slot, generation))
    }

    /// Removes a watch (no-op if it is already gone); with `send_cancel`, its stream gets
    /// a final `canceled` response.
    pub(crate) fn remove(&self, handle: u64, send_cancel: bool) {
        let (slot, generation) = ((handle & 0xffff_ffff) as u32, (handle >> 32) as u32);
        let mut st = self.lock();
        let live = st.slots.get(slot as usize).and_then(|e| e.as_ref()).is_some_and(|e| e.generation == generation);
        if !live {
            return;
        }
        let current = st.current;
        let Some(e) = st.remove(slot) else { return };
        if st.count == 0 {
            self.watching.store(false, Ordering::Release);
        }
        drop(st);
        if send_cancel {
            e.sink.push_control(WatchResponse {
                header: header(current),
                watch_id: e.watch_id,
                canceled: true,
                ..Default::default()
            });
        }
    }

    pub(crate) fn request_progress(&self, sink: &Arc<Sink>) {
        let st = self.lock();
        let mut ss = sink.state.lock().expect("sink lock");
        if ss.unsynced == 0 {
            drop(ss);
            sink.push_control(progress(-1, st.progress_rev()));
        } else {
            ss.progress_pending = true;
        }
    }

    /// Called by the apply loop after each committed batch that reached `revision`.
    /// `events: None` means they were not collected (or the state was replaced by a
    /// snapshot): synced watches then catch up from history.
    pub(crate) fn publish(&self, revision: i64, events: Option<&[Event]>) {
        let mut st = self.lock();
        let old = st.current;
        st.current = st.current.max(revision);
        if st.count == 0 {
            return;
        }
        let Some(events) = events else {
            let synced: Vec<u32> = st
                .slots
                .iter()
                .enumerate()
                .filter(|(_, e)| e.as_ref().is_some_and(|e| e.synced))
                .map(|(i, _)| i as u32)
                .collect();
            for s in synced {
                st.unsync(s, old + 1);
            }
            drop(st);
            self.wake.notify_one();
            return;
        };
        let mut out: Vec<(u32, Vec<Event>)> = Vec::new();
        let mut at: HashMap<u32, usize> = HashMap::new();
        // With one event, every watch matches at most once: no need to group.
        let single = events.len() == 1;
        let mut offer = |st: &HubState, slot: u32, ev: &Event| {
            if let Some(v) = st.entry(slot).view(ev) {
                if single {
                    out.push((slot, vec![v]));
                    return;
                }
                let i = *at.entry(slot).or_insert_with(|| {
                    out.push((slot, Vec::new()));
                    out.len() - 1
                });
                out[i].1.push(v);
            }
        };
        for ev in events {
            match st.singles.get(&st.hasher.hash_one(ev.kv.key.as_slice())) {
                Some(Slots::One(s)) => offer(&st, *s, ev),
                Some(Slots::Many(v)) => v.iter().for_each(|s| offer(&st, *s, ev)),
                None => {}
            }
            for s in &st.ranges {
                offer(&st, *s, ev);
            }
        }
        let mut fell_behind = false;
        for (slot, evs) in out {
            let e = st.entry_mut(slot);
            let resp = e.response(revision, evs);
            if e.sink.push(resp) {
                e.flags |= SENT;
            } else {
                st.unsync(slot, old + 1);
                fell_behind = true;
            }
        }
        drop(st);
        if fell_behind {
            self.wake.notify_one();
        }
    }

    /// One catch-up round; returns whether it made progress (call again then).
    fn catch_up_round(&self) -> bool {
        let _round = self.round.lock().expect("catch-up round lock");
        let (from, prev_kv) = {
            let st = self.lock();
            if st.stopped {
                return false;
            }
            let waiting = st.unsynced.iter().map(|s| st.entry(*s)).filter(|e| e.sink.has_room());
            let (mut from, mut prev) = (None::<i64>, false);
            for e in waiting {
                from = Some(from.map_or(e.next_rev, |f| f.min(e.next_rev)));
                prev |= e.flags & flags::PREV_KV != 0;
            }
            let Some(from) = from else { return false };
            (from, prev)
        };
        let Some(store) = self.store.upgrade() else { return false };
        let batch = match store.events_since(from, CATCHUP_EVENTS, prev_kv) {
            Ok(b) => b,
            Err(Error::Compacted { compact_revision }) => {
                self.cancel_compacted(compact_revision);
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch catch-up cannot read the history");
                return false;
            }
        };
        let mut st = self.lock();
        let revision = st.current.max(batch.through);
        st.sent_rev = st.sent_rev.max(revision);
        let mut progressed = false;
        for slot in st.unsynced.iter().copied().collect::<Vec<_>>() {
            let e = st.entry(slot);
            let wants_prev = e.flags & flags::PREV_KV != 0;
            if e.next_rev < from || e.next_rev > batch.through || (wants_prev && !prev_kv) {
                continue;
            }
            let room = e.sink.room();
            let mut evs: Vec<Event> = batch.events.iter().filter_map(|ev| e.view(ev)).collect();
            // Only what fits, cut at a revision boundary; the rest waits for room.
            let mut next_rev = batch.through + 1;
            if evs.len() > room {
                let mut cut = room;
                while cut > 0 && evs[cut].kv.mod_revision == evs[cut - 1].kv.mod_revision {
                    cut -= 1;
                }
                if cut == 0 {
                    continue;
                }
                evs.truncate(cut);
                next_rev = evs[cut - 1].kv.mod_revision + 1;
            }
            if !evs.is_empty() && !e.sink.push(e.response(revision, evs)) {
                continue;
            }
            let e = st.entry_mut(slot);
            e.next_rev = next_rev;
            e.flags |= SENT;
            progressed = true;
            if e.next_rev > st.current {
                st.sync(slot);
            }
        }
        // Watches starting beyond what history holds yet: synced once `current` is reached.
        for slot in st.unsynced.iter().copied().collect::<Vec<_>>() {
            if st.entry(slot).next_rev > st.current {
                st.sync(slot);
                progressed = true;
            }
        }
        progressed
    }

    /// Cancels every unsynced watch that needs history below `compact`.
    fn cancel_compacted(&self, compact: i64) {
        let mut st = self.lock();
        let current = st.current;
        let victims: Vec<u32> = st.unsynced.iter().copied().filter(|s| st.entry(*s).next_rev < compact).collect();
        for slot in victims {
            if let Some(e) = st.remove(slot) {
                e.sink.push_control(WatchResponse {
                    header: header(current),
                    watch_id: e.watch_id,
                    canceled: true,
                    compact_revision: compact,
                    cancel_reason: Error::Compacted { compact_revision: compact }.to_string(),
                    ..Default::default()
                });
            }
        }
        if st.count == 0 {
            self.watching.store(false, Ordering::Release);
        }
    }

    /// Sends a progress notification to every synced watch that asked for them and was
    /// sent nothing since the last tick.
    fn progress_tick(&self) {
        let mut st = self.lock();
        let current = st.progress_rev();
        for e in st.slots.iter_mut().flatten() {
            if e.synced && e.flags & flags::PROGRESS != 0 && e.flags & SENT == 0 {
                e.sink.push_control(progress(e.watch_id, current));
            }
            e.flags &= !SENT;
        }
    }

    /// Blocks until no catch-up round reads the store (call after [`WatchHub::close`]).
    pub(crate) fn wait_idle(&self) {
        drop(self.round.lock().expect("catch-up round lock"));
    }

    /// Stops every stream with `Error::Stopped` and ends the catch-up task.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.stopped = true;
        let sinks = std::mem::take(&mut st.sinks);
        *st = HubState { stopped: true, current: st.current, ..Default::default() };
        self.watching.store(false, Ordering::Release);
        drop(st);
        for s in sinks.iter().filter_map(Weak::upgrade) {
            s.stop();
        }
        self.wake.notify_one();
    }
}

async fn catch_up_task(hub: Weak<WatchHub>, wake: Arc<Notify>, progress_interval: Duration) {
    let mut next_progress = Instant::now() + progress_interval;
    loop {
        let waiting = {
            let Some(hub) = hub.upgrade() else { return };
            if hub.lock().stopped {
                return;
            }
            let h = hub.clone();
            // History reads hit the disk: keep them off the async workers.
            let progressed = tokio::task::spawn_blocking(move || h.catch_up_round()).await.unwrap_or(false);
            if progressed {
                tokio::task::yield_now().await;
                continue;
            }
            if Instant::now() >= next_progress {
                hub.progress_tick();
                next_progress = Instant::now() + progress_interval;
            }
            let waiting = !hub.lock().unsynced.is_empty();
            waiting
        };
        // Unsynced watches whose streams are full are retried when a consumer reads
        // (it wakes us); the timer is a backstop.
        let nap = if waiting { Duration::from_millis(100) } else { next_progress - Instant::now() };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{PutRequest, WriteCommand};

    fn put(store: &MvccStore, key: &str, collect: bool) -> crate::mvcc::AppliedBatch {
        let mut a = store.applier(collect);
        a.apply(&WriteCommand::Put(PutRequest::new(key, "v"))).unwrap();
        a.commit().unwrap()
    }

    /// A batch whose events were not collected (the first watch arrived mid-batch, or a
    /// snapshot replaced the state) sends synced watches to the history: nothing is lost.
    #[test]
    fn uncollected_batches_are_caught_up_from_history() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).worker_threads(1).open().unwrap();
        let store = Arc::new(MvccStore::open(db).unwrap());
        let hub = WatchHub::new(store.clone(), Duration::from_secs(600));
        let sink = hub.new_sink();
        hub.add(&sink, 1, &WatchRequest::prefix("k")).unwrap();
        let b = put(&store, "k1", false);
        assert!(b.events.is_none());
        hub.publish(store.revision(), None);
        assert!(sink.try_recv().is_none(), "nothing delivered live");
        let b = put(&store, "k2", hub.wants_events());
        hub.publish(store.revision(), b.events.as_deref());
        assert!(sink.try_recv().is_none(), "an unsynced watch gets nothing live");
        while hub.catch_up_round() {}
        let resp = sink.try_recv().unwrap().unwrap();
        let keys: Vec<&[u8]> = resp.events.iter().map(|e| e.kv.key.as_slice()).collect();
        assert_eq!(keys, vec![b"k1".as_slice(), b"k2".as_slice()]);
        // Synced again: the next batch arrives live.
        let b = put(&store, "k3", hub.wants_events());
        hub.publish(store.revision(), b.events.as_deref());
        assert_eq!(sink.try_recv().unwrap().unwrap().events[0].kv.key, b"k3");
        hub.close();
        assert_eq!(sink.try_recv().unwrap().unwrap_err(), Error::Stopped);
    }
}
