//! The MVCC store: etcd's revisioned key space on fjall keyspaces.
//!
//! One writer (the Raft apply loop, through [`Applier`]) and many concurrent readers.
//! Readers get a consistent view through a sequence lock around each committed batch:
//! a read sees either all or none of one apply batch, and the revision it reports is
//! exactly the revision of the data it read.
//!
//! Installing a Raft snapshot replaces every keyspace in many batches. For that time
//! ([`MvccStore::begin_replace`] to [`MvccStore::end_replace`]) readers are served from a
//! fjall snapshot of the state before the install, so a read never sees a half-loaded
//! store: it sees the old state until the new one is complete.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{fence, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fjall::{Database, Keyspace, Readable};

use crate::error::{Error, Result};
use crate::mvcc::encoding::{
    decode, encode, encode_into, hist_key, hist_key_into, hist_prefix, rev_key, split_hist_key, HistRecord,
    HistRecordRef, KeyMeta, LiveRecord,
};
use crate::mvcc::leases::{LeaseChange, LeaseRecord};
use crate::mvcc::types::*;

const META_REVISION: &[u8] = b"mvcc/revision";
const META_COMPACT: &[u8] = b"mvcc/compact_revision";
/// Set in the sequence while a snapshot install replaces the keyspaces.
const REPLACING: u64 = 1 << 63;
/// Compaction deletes in batches of this many entries so memory stays bounded.
const COMPACT_CHUNK_ENTRIES: usize = 4096;

/// A key range as etcd defines it (see [`RangeRequest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// One key.
    Single(Vec<u8>),
    /// `[start, end)`; `end == None` is unbounded.
    Span(Vec<u8>, Option<Vec<u8>>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::Span(key.to_vec(), None),
            end => KeyRange::Span(key.to_vec(), Some(end.to_vec())),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Span(s, Some(e)) if e <= s)
    }

    fn bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            KeyRange::Single(k) => (Bound::Included(k.clone()), Bound::Included(k.clone())),
            KeyRange::Span(s, None) => (Bound::Included(s.clone()), Bound::Unbounded),
            KeyRange::Span(s, Some(e)) => (Bound::Included(s.clone()), Bound::Excluded(e.clone())),
        }
    }

    fn hist_bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            KeyRange::Single(k) => {
                let p = hist_prefix(k);
                let mut end = p.clone();
                end.extend_from_slice(&[0xff; 8]);
                (Bound::Included(p), Bound::Included(end))
            }
            KeyRange::Span(s, None) => (Bound::Included(hist_prefix(s)), Bound::Unbounded),
            KeyRange::Span(s, Some(e)) => (Bound::Included(hist_prefix(s)), Bound::Excluded(hist_prefix(e))),
        }
    }
}

/// The fjall keyspaces that hold MVCC data.
#[derive(Clone)]
pub(crate) struct MvccKeyspaces {
    pub kv: Keyspace,
    pub hist: Keyspace,
    pub revs: Keyspace,
    pub meta: Keyspace,
    /// lease id (be64) → [`LeaseRecord`](super::leases::LeaseRecord)
    pub lease: Keyspace,
    /// lease id (be64) ++ user key → empty: the keys attached to each lease
    pub lease_keys: Keyspace,
}

impl MvccKeyspaces {
    pub fn open(db: &Database) -> Result<Self> {
        let opts = crate::mvcc::keyspace_options;
        Ok(MvccKeyspaces {
            kv: db.keyspace("mvcc_kv", opts)?,
            hist: db.keyspace("mvcc_hist", opts)?,
            revs: db.keyspace("mvcc_revs", opts)?,
            meta: db.keyspace("sm_meta", opts)?,
            lease: db.keyspace("lease", opts)?,
            lease_keys: db.keyspace("lease_keys", opts)?,
        })
    }

    /// The keyspaces a state-machine snapshot carries, with their one-byte tags.
    pub fn tagged(&self) -> [(u8, &Keyspace); 6] {
        [(1, &self.kv), (2, &self.hist), (3, &self.revs), (4, &self.meta), (5, &self.lease), (6, &self.lease_keys)]
    }
}

/// The MVCC store. `Send + Sync`; reads may run on any thread at any time.
pub struct MvccStore {
    db: Database,
    ks: MvccKeyspaces,
    /// Sequence lock: odd while a batch is being committed; [`REPLACING`] set while a
    /// snapshot install replaces the keyspaces.
    pub(super) seq: AtomicU64,
    revision: AtomicI64,
    compact_revision: AtomicI64,
    /// Every live key's [`KeyMeta`], as committed (etcd's in-memory key index plays the
    /// same part): a put whose response needs no previous value finds the key's create
    /// revision, version and lease here instead of reading the `kv` keyspace, and a
    /// one-key get finds the revision of the version to read from `hist`. Changed with
    /// each committed batch inside the sequence lock's odd window (so a reader that
    /// validates the sequence saw the index and the keyspaces of one state) and rebuilt
    /// from `kv` on open and after a snapshot install; 100–150 bytes per live key of up
    /// to 24 bytes (the table and the boxed key), the longer keys' extra bytes on top.
    index: RwLock<HashMap<Box<[u8]>, KeyMeta>>,
    /// The state before a snapshot install, which readers see until the install ends.
    frozen: Mutex<Option<Frozen>>,
}

/// A point-in-time state of the store, kept while a snapshot install runs.
#[derive(Clone)]
struct Frozen {
    snap: fjall::Snapshot,
    revision: i64,
    compact: i64,
}

/// What a read under the sequence lock observed.
enum Seen<T> {
    /// The live state, at this revision.
    Live(T, i64),
    /// A snapshot install is replacing the keyspaces: read the frozen state instead.
    Replacing,
}

impl MvccStore {
    /// Opens the MVCC keyspaces of `db`, recovering revision and compaction point.
    pub(crate) fn open(db: Database) -> Result<Self> {
        let ks = MvccKeyspaces::open(&db)?;
        let store = MvccStore {
            db,
            ks,
            seq: AtomicU64::new(0),
            revision: AtomicI64::new(1),
            compact_revision: AtomicI64::new(0),
            index: RwLock::new(HashMap::new()),
            frozen: Mutex::new(None),
        };
        store.reload()?;
        // A crash may have cut a compaction's physical deletion short; finish it (when
        // it is complete this is one empty range scan).
        let compact = store.compact_revision();
        if compact > 0 {
            store.compact_physically(compact)?;
        }
        Ok(store)
    }

    /// A fjall snapshot that holds no half-committed apply batch (during a snapshot
    /// install, the state from before it).
    pub(crate) fn consistent_snapshot(&self) -> Result<fjall::Snapshot> {
        Ok(self.read_view()?.snap)
    }

    /// Starts replacing the keyspaces' contents (a snapshot install): from now until
    /// [`MvccStore::end_replace`], reads see the state as it is now. Called by the apply
    /// loop's owner only, never while an apply batch is open.
    pub(crate) fn begin_replace(&self) -> Result<()> {
        let view = self.read_view()?;
        let frozen = Frozen { snap: view.snap, revision: view.revision, compact: view.compact };
        *self.frozen_state() = Some(frozen);
        // Changes the sequence, so a read that began before fails its check and retries.
        self.seq.fetch_or(REPLACING, Ordering::AcqRel);
        Ok(())
    }

    /// Ends a replacement begun by [`MvccStore::begin_replace`], once the new contents are
    /// written and [`MvccStore::reload`]ed: reads see the new state from now on.
    pub(crate) fn end_replace(&self) {
        // A new sequence value, so a read that began before the replacement and read a
        // half-loaded keyspace cannot find the sequence unchanged.
        self.seq.fetch_add(2, Ordering::AcqRel);
        self.seq.fetch_and(!REPLACING, Ordering::AcqRel);
        self.frozen_state().take();
    }

    // Only a clone or a swap runs under the lock; neither panics.
    fn frozen_state(&self) -> std::sync::MutexGuard<'_, Option<Frozen>> {
        self.frozen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Re-reads the revision counters and rebuilds the key index from disk (after open or
    /// a snapshot install).
    pub(crate) fn reload(&self) -> Result<()> {
        let read = |k: &[u8], default: i64| -> Result<i64> {
            Ok(match self.ks.meta.get(k)? {
                Some(v) => decode(&v, "revision")?,
                None => default,
            })
        };
        self.revision.store(read(META_REVISION, 1)?, Ordering::Release);
        self.compact_revision.store(read(META_COMPACT, 0)?, Ordering::Release);
        let mut index = HashMap::new();
        for g in self.ks.kv.iter() {
            let (k, v) = g.into_inner()?;
            index.insert(Box::<[u8]>::from(&*k), decode::<KeyMeta>(&v, "kv")?);
        }
        *self.index_mut() = index;
        Ok(())
    }

    // Only lookups, inserts and removes run under the lock, and they do not panic.
    fn index(&self) -> RwLockReadGuard<'_, HashMap<Box<[u8]>, KeyMeta>> {
        self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn index_mut(&self) -> RwLockWriteGuard<'_, HashMap<Box<[u8]>, KeyMeta>> {
        self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn keyspaces(&self) -> &MvccKeyspaces {
        &self.ks
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// The current revision (1 for an empty store, as in etcd).
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The revision the store is compacted to (0: never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision.load(Ordering::Acquire)
    }

    /// Runs `f` so that it observes no half-committed batch; returns its result with the
    /// revision of the state it observed, or [`Seen::Replacing`] (without running `f` to
    /// completion) while a snapshot install replaces the keyspaces. An error of `f` is
    /// returned only if no batch committed meanwhile (one that did may have caused it).
    fn consistent<T>(&self, f: impl Fn() -> Result<T>) -> Result<Seen<T>> {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & REPLACING != 0 {
                return Ok(Seen::Replacing);
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let rev = self.revision.load(Ordering::Acquire);
            let out = f();
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Acquire) == s1 {
                return out.map(|o| Seen::Live(o, rev));
            }
        }
    }

    /// A point-in-time view of the whole store.
    pub(crate) fn read_view(&self) -> Result<SnapshotView<'_>> {
        loop {
            match self.consistent(|| Ok((self.db.snapshot(), self.compact_revision.load(Ordering::Acquire))))? {
                Seen::Live((snap, compact), revision) => {
                    return Ok(SnapshotView { store: self, snap, revision, compact })
                }
                Seen::Replacing => {
                    if let Some(view) = self.frozen_view() {
                        return Ok(view);
                    }
                }
            }
        }
    }

    /// The view of the state frozen by a snapshot install; `None` if the install has
    /// ended since the caller read the sequence (it looks again).
    #[cold]
    #[inline(never)]
    fn frozen_view(&self) -> Option<SnapshotView<'_>> {
        let f = self.frozen_state().clone()?;
        Some(SnapshotView { store: self, snap: f.snap, revision: f.revision, compact: f.compact })
    }

    /// A range served from the state frozen by a snapshot install.
    #[cold]
    #[inline(never)]
    fn range_during_replace(&self, req: &RangeRequest) -> Result<RangeResponse> {
        execute_range(&self.read_view()?, req)
    }

    /// Serves a range from the local state (no Raft round).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if req.range_end.is_empty() && req.revision <= 0 && !req.count_only {
            return self.get_fast(req);
        }
        let view = self.read_view()?;
        execute_range(&view, req)
    }

    /// One key at the current revision: its [`KeyMeta`] from the key index and (unless
    /// `keys_only`) its current version from `hist`, one point read, both under the
    /// sequence lock.
    fn get_fast(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let seen = self.consistent(|| {
            let Some(meta) = self.index().get(req.key.as_slice()).copied() else {
                return Ok(None);
            };
            let value = match req.keys_only {
                true => Some(Vec::new()),
                false => value_at(|k| self.ks.hist.get(k), &req.key, meta.mod_revision)?,
            };
            Ok(Some((meta, value)))
        })?;
        let (found, revision) = match seen {
            Seen::Live(found, revision) => (found, revision),
            // The key index describes the state being replaced: read the frozen view.
            Seen::Replacing => return self.range_during_replace(req),
        };
        let mut resp =
            RangeResponse { header: ResponseHeader { revision, ..Default::default() }, ..Default::default() };
        if let Some((meta, value)) = found {
            // No batch committed during the reads, so a missing version is damage.
            let rec = LiveRecord::of(meta, value.ok_or_else(|| missing_version(&req.key, meta.mod_revision))?);
            resp.count = 1;
            // One key: any limit (negative means none) keeps it.
            if filters_pass(req, &rec) {
                resp.kvs.push(rec.to_key_value(&req.key, req.keys_only));
            }
        }
        Ok(resp)
    }

    /// Serves a read-only transaction from the local state.
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse> {
        debug_assert!(req.is_read_only());
        self.txn_read_only_in(&self.read_view()?, req)
    }

    fn txn_read_only_in(&self, view: &SnapshotView<'_>, req: &TxnRequest) -> Result<TxnResponse> {
        let succeeded = compares_hold(view, &req.compare)?;
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(execute_range(view, r)?),
                RequestOp::Txn(t) => ResponseOp::Txn(self.txn_read_only_in(view, t)?),
                _ => return Err(Error::internal("write op in read-only txn")),
            });
        }
        Ok(TxnResponse { header: header_at(view.revision), succeeded, responses })
    }

    /// Starts an apply batch. Only the Raft apply loop calls this, one batch at a time.
    /// With `collect_events`, the batch records the [`Event`]s it writes (for watchers).
    pub(crate) fn applier(&self, collect_events: bool) -> Applier<'_> {
        Applier {
            store: self,
            batch: self.db.batch(),
            overlay: BTreeMap::new(),
            lease_overlay: BTreeMap::new(),
            revision: self.revision(),
            compact: self.compact_revision(),
            writes: 0,
            events: collect_events.then(Vec::new),
            lease_changes: Vec::new(),
            done_marker: None,
            pending_compaction: None,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Commits a batch and publishes it (its counters and the key index's changes,
    /// `changed`: `None` for a deleted key) under the sequence lock.
    fn commit_batch(
        &self,
        batch: fjall::OwnedWriteBatch,
        revision: i64,
        compact: i64,
        changed: BTreeMap<Vec<u8>, Option<LiveRecord>>,
    ) -> Result<()> {
        self.seq.fetch_add(1, Ordering::AcqRel);
        let result = batch.commit();
        if result.is_ok() {
            if !changed.is_empty() {
                let mut index = self.index_mut();
                for (key, rec) in changed {
                    match rec {
                        Some(r) => index.insert(key.into_boxed_slice(), r.meta()),
                        None => index.remove(key.as_slice()),
                    };
                }
            }
            debug_assert!(revision >= self.revision(), "revisions only grow");
            self.revision.store(revision, Ordering::Release);
            self.compact_revision.store(compact, Ordering::Release);
        }
        self.seq.fetch_add(1, Ordering::AcqRel);
        result.map_err(Error::from)
    }

    /// Removes every version that no read at or after `compact` can see, in bounded chunks.
    fn compact_physically(&self, compact: i64) -> Result<()> {
        let end = rev_key(compact, 0);
        loop {
            let mut entries = Vec::with_capacity(COMPACT_CHUNK_ENTRIES);
            for g in self.ks.revs.range(..end.to_vec()).take(COMPACT_CHUNK_ENTRIES) {
                entries.push(g.into_inner()?);
            }
            if entries.is_empty() {
                return Ok(());
            }
            let mut batch = self.db.batch();
            let mut seen = std::collections::BTreeSet::new();
            for (k, user_key) in &entries {
                batch.remove(&self.ks.revs, k.clone());
                if seen.insert(user_key.to_vec()) {
                    self.compact_key_history(&mut batch, user_key, compact)?;
                }
            }
            batch.commit()?;
        }
    }

    /// Keeps the newest version of `key` at or below `compact` (unless it is a tombstone)
    /// and removes the older ones.
    fn compact_key_history(&self, batch: &mut fjall::OwnedWriteBatch, key: &[u8], compact: i64) -> Result<()> {
        let versions: Vec<_> = self
            .ks
            .hist
            .range(hist_key(key, 0)..=hist_key(key, compact))
            .map(|g| g.into_inner())
            .collect::<std::result::Result<_, _>>()?;
        let Some((last_key, last_value)) = versions.last() else {
            return Ok(());
        };
        let last_is_tombstone = decode::<HistRecord>(last_value, "hist")?.live.is_none();
        for (k, _) in &versions[..versions.len() - 1] {
            batch.remove(&self.ks.hist, k.clone());
        }
        if last_is_tombstone {
            batch.remove(&self.ks.hist, last_key.clone());
        }
        Ok(())
    }
}

pub(super) fn header_at(revision: i64) -> ResponseHeader {
    ResponseHeader { revision, ..Default::default() }
}

/// The value of `key`'s version at `mod_revision`, read with `get` from `hist` (`None`:
/// no such version, or a tombstone).
fn value_at(
    get: impl FnOnce(&[u8]) -> std::result::Result<Option<fjall::Slice>, fjall::Error>,
    key: &[u8],
    mod_revision: i64,
) -> Result<Option<Vec<u8>>> {
    thread_local! {
        /// Each thread's buffer for the `hist` key of a point read: no allocation per
        /// get. 16 async readers of one node in one process: ~1.12M gets/s without it,
        /// ~1.47M with it (docs/benchmarks.md, 2026-12-08).
        static HIST_KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let found = HIST_KEY.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => get(hist_key_into(key, mod_revision, &mut buf)),
        // Only if `get` itself read a value on this thread; it does not, but a fresh
        // key is always correct.
        Err(_) => get(&hist_key(key, mod_revision)),
    })?;
    match found {
        Some(v) => Ok(decode::<HistRecord>(&v, "hist")?.into_value()),
        None => Ok(None),
    }
}

/// The error for a `kv` record whose current version is not in `hist`.
fn missing_version(key: &[u8], mod_revision: i64) -> Error {
    Error::Storage(format!(
        "the current version of key {:?} (revision {mod_revision}) is missing from the history",
        String::from_utf8_lossy(key)
    ))
}

/// [`value_at`] for a version that must exist: a live key's current one, read from a
/// consistent view (missing, it is damage).
fn current_value_at(
    get: impl FnOnce(&[u8]) -> std::result::Result<Option<fjall::Slice>, fjall::Error>,
    key: &[u8],
    mod_revision: i64,
) -> Result<Vec<u8>> {
    value_at(get, key, mod_revision)?.ok_or_else(|| missing_version(key, mod_revision))
}

/// A live key's `kv` record with its current value read by `get` (or an empty value
/// without `with_value`).
fn live_record(
    get: impl FnOnce(&[u8]) -> std::result::Result<Option<fjall::Slice>, fjall::Error>,
    key: &[u8],
    kv_record: &[u8],
    with_value: bool,
) -> Result<LiveRecord> {
    let meta: KeyMeta = decode(kv_record, "kv")?;
    let value = match with_value {
        true => current_value_at(get, key, meta.mod_revision)?,
        false => Vec::new(),
    };
    Ok(LiveRecord::of(meta, value))
}

/// What range execution needs from a view of the store.
pub(crate) trait View {
    /// The view's current revision.
    fn revision(&self) -> i64;
    /// The compaction point.
    fn compact_revision(&self) -> i64;
    /// Calls `f` for each live key in `range` at the current revision, in key order,
    /// until it returns `false`. Without `with_value`, the records' values are left empty
    /// (each value is one more point read).
    fn scan_live(
        &self,
        range: &KeyRange,
        with_value: bool,
        f: &mut dyn FnMut(&[u8], &LiveRecord) -> bool,
    ) -> Result<()>;
    /// The value of live key `key`, whose current version is `mod_revision` (a record
    /// [`View::scan_live`] gave without its value).
    fn current_value(&self, key: &[u8], mod_revision: i64) -> Result<Vec<u8>>;
    /// The hist keyspace as seen by this view, over `bounds`.
    fn scan_hist(&self, range: &KeyRange, f: &mut dyn FnMut(&[u8], i64, &HistRecord) -> bool) -> Result<()>;
    /// One live key's revisions and lease at the current revision.
    fn key_meta(&self, key: &[u8]) -> Result<Option<KeyMeta>> {
        let mut meta = None;
        self.scan_live(&KeyRange::Single(key.to_vec()), false, &mut |_, rec| {
            meta = Some(rec.meta());
            false
        })?;
        Ok(meta)
    }
}

/// A consistent snapshot of the store for reads.
pub(crate) struct SnapshotView<'a> {
    pub(super) store: &'a MvccStore,
    pub(super) snap: fjall::Snapshot,
    pub(super) revision: i64,
    pub(super) compact: i64,
}

impl View for SnapshotView<'_> {
    fn revision(&self) -> i64 {
        self.revision
    }

    fn compact_revision(&self) -> i64 {
        self.compact
    }

    fn scan_live(
        &self,
        range: &KeyRange,
        with_value: bool,
        f: &mut dyn FnMut(&[u8], &LiveRecord) -> bool,
    ) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        for g in self.snap.range(&self.store.ks.kv, range.bounds()) {
            let (k, v) = g.into_inner()?;
            let rec = live_record(|hk| self.snap.get(&self.store.ks.hist, hk), &k, &v, with_value)?;
            if !f(&k, &rec) {
                break;
            }
        }
        Ok(())
    }

    fn current_value(&self, key: &[u8], mod_revision: i64) -> Result<Vec<u8>> {
        current_value_at(|hk| self.snap.get(&self.store.ks.hist, hk), key, mod_revision)
    }

    fn scan_hist(&self, range: &KeyRange, f: &mut dyn FnMut(&[u8], i64, &HistRecord) -> bool) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        visit_hist(self.snap.range(&self.store.ks.hist, range.hist_bounds()), f)
    }
}

/// Calls `f` with each decoded `hist` entry of `iter` until it returns `false`.
fn visit_hist(iter: fjall::Iter, f: &mut dyn FnMut(&[u8], i64, &HistRecord) -> bool) -> Result<()> {
    for g in iter {
        let (k, v) = g.into_inner()?;
        let (key, rev) = split_hist_key(&k)?;
        if !f(&key, rev, &decode(&v, "hist")?) {
            break;
        }
    }
    Ok(())
}

/// Visits the live keys of `range` as of `revision` (which must be readable). Without
/// `with_value`, the current revision's records may come without their values.
fn visit_at(
    view: &dyn View,
    range: &KeyRange,
    revision: i64,
    with_value: bool,
    f: &mut dyn FnMut(&[u8], &LiveRecord) -> bool,
) -> Result<()> {
    if revision >= view.revision() {
        return view.scan_live(range, with_value, f);
    }
    // Walk every version in key order; emit each key's newest version at or below `revision`.
    let mut current: Option<(Vec<u8>, Option<LiveRecord>)> = None;
    let mut stop = false;
    view.scan_hist(range, &mut |key, rev, rec| {
        if current.as_ref().is_some_and(|(k, _)| k.as_slice() != key) {
            if let Some((k, Some(live))) = current.take() {
                if !f(&k, &live) {
                    stop = true;
                    return false;
                }
            }
        }
        if current.is_none() {
            current = Some((key.to_vec(), None));
        }
        if rev <= revision {
            if let Some((_, state)) = current.as_mut() {
                *state = rec.to_live(rev);
            }
        }
        true
    })?;
    if !stop {
        if let Some((k, Some(live))) = current {
            f(&k, &live);
        }
    }
    Ok(())
}

fn filters_pass(r: &RangeRequest, kv: &LiveRecord) -> bool {
    (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
        && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
        && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
        && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
}

fn has_filters(r: &RangeRequest) -> bool {
    r.max_mod_revision != 0 || r.min_mod_revision != 0 || r.max_create_revision != 0 || r.min_create_revision != 0
}

/// Checks that `revision` (0: current) is readable in `view`.
fn check_read_revision(view: &dyn View, revision: i64) -> Result<i64> {
    let current = view.revision();
    if revision > current {
        return Err(Error::FutureRevision);
    }
    let rev = if revision <= 0 { current } else { revision };
    if rev < view.compact_revision() {
        return Err(Error::Compacted { compact_revision: view.compact_revision() });
    }
    Ok(rev)
}

/// etcd's range semantics: count before limit and filters, filters, sort, then limit.
pub(crate) fn execute_range(view: &dyn View, r: &RangeRequest) -> Result<RangeResponse> {
    let rev = check_read_revision(view, r.revision)?;
    let range = KeyRange::new(&r.key, &r.range_end);
    let default_order = r.sort_target == SortTarget::Key && matches!(r.sort_order, SortOrder::None | SortOrder::Ascend);
    let fetch_all = !default_order || has_filters(r);
    let fetch_limit = if r.limit > 0 && !fetch_all { r.limit as usize + 1 } else { usize::MAX };
    let mut count = 0i64;
    let mut kvs = Vec::new();
    // Values are returned unless the request asks for keys or a count only (a keys-only
    // response sorts by empty values, as its key-values have none). At the current
    // revision each value is a point read into `hist`, so unless the sort needs them all,
    // they are read after the limit, for the key-values returned only.
    let values = !r.count_only && !r.keys_only;
    let values_after = values && rev >= view.revision() && r.sort_target != SortTarget::Value;
    visit_at(view, &range, rev, values && !values_after, &mut |key, rec| {
        count += 1;
        if !r.count_only && kvs.len() < fetch_limit && filters_pass(r, rec) {
            kvs.push(rec.to_key_value(key, r.keys_only));
        }
        true
    })?;
    sort_kvs(&mut kvs, r.sort_order, r.sort_target);
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if values_after {
        for kv in &mut kvs {
            kv.value = view.current_value(&kv.key, kv.mod_revision)?;
        }
    }
    Ok(RangeResponse { header: header_at(view.revision()), kvs, more, count })
}

fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
        _ => kvs.sort_by(cmp),
    }
}

/// etcd's `applyCompares`: every compare must hold.
pub(crate) fn compares_hold(view: &dyn View, compares: &[Compare]) -> Result<bool> {
    for c in compares {
        if !compare_holds(view, c)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn compare_holds(view: &dyn View, c: &Compare) -> Result<bool> {
    if c.range_end.is_empty() && !matches!(c.target, CompareTarget::Value(_)) {
        // The common compare-and-swap: one key's version or revision, no value needed.
        return Ok(compare_fields(c, view.key_meta(&c.key)?, None));
    }
    let range = KeyRange::new(&c.key, &c.range_end);
    let mut any = false;
    let mut all = true;
    view.scan_live(&range, matches!(c.target, CompareTarget::Value(_)), &mut |_, rec| {
        any = true;
        all = compare_one(c, Some(rec));
        all
    })?;
    if !any {
        return Ok(!matches!(c.target, CompareTarget::Value(_)) && compare_one(c, None));
    }
    Ok(all)
}

fn compare_one(c: &Compare, rec: Option<&LiveRecord>) -> bool {
    compare_fields(c, rec.map(LiveRecord::meta), rec.map(|r| r.value.as_slice()))
}

/// `c` against a key's fields (`meta` `None`: no such key, every field 0); `value` is
/// read only by a value compare.
fn compare_fields(c: &Compare, meta: Option<KeyMeta>, value: Option<&[u8]>) -> bool {
    use std::cmp::Ordering as O;
    let ord = match &c.target {
        CompareTarget::Version(v) => meta.map_or(0, |m| m.version).cmp(v),
        CompareTarget::Create(v) => meta.map_or(0, |m| m.create_revision).cmp(v),
        CompareTarget::Mod(v) => meta.map_or(0, |m| m.mod_revision).cmp(v),
        CompareTarget::Lease(v) => meta.map_or(0, |m| m.lease).cmp(v),
        CompareTarget::Value(v) => value.unwrap_or_default().cmp(v.as_slice()),
    };
    match c.result {
        CompareResult::Equal => ord == O::Equal,
        CompareResult::NotEqual => ord != O::Equal,
        CompareResult::Greater => ord == O::Greater,
        CompareResult::Less => ord == O::Less,
    }
}

/// A state-changing command, as replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteCommand {
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A transaction (possibly read-only when it must be linearized with writes).
    Txn(TxnRequest),
    /// A compaction.
    Compact(CompactionRequest),
    /// Grant a lease (the id is chosen before proposing, so every node agrees).
    LeaseGrant(LeaseGrantRequest),
    /// Revoke a lease, deleting its keys in one revision.
    LeaseRevoke(LeaseRevokeRequest),
}

/// The result of applying a [`WriteCommand`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteResponse {
    /// Result of a put.
    Put(PutResponse),
    /// Result of a delete.
    DeleteRange(DeleteRangeResponse),
    /// Result of a transaction.
    Txn(TxnResponse),
    /// Result of a compaction.
    Compact(CompactionResponse),
    /// Result of a lease grant.
    LeaseGrant(LeaseGrantResponse),
    /// Result of a lease revocation.
    LeaseRevoke(LeaseRevokeResponse),
}

impl WriteResponse {
    /// The header of the response.
    pub fn header_mut(&mut self) -> &mut ResponseHeader {
        match self {
            WriteResponse::Put(r) => &mut r.header,
            WriteResponse::DeleteRange(r) => &mut r.header,
            WriteResponse::Txn(r) => &mut r.header,
            WriteResponse::Compact(r) => &mut r.header,
            WriteResponse::LeaseGrant(r) => &mut r.header,
            WriteResponse::LeaseRevoke(r) => &mut r.header,
        }
    }
}

/// Applies commands into one fjall batch. Later commands in the batch see earlier ones
/// through an overlay; nothing is visible to readers until [`Applier::commit`].
pub(crate) struct Applier<'a> {
    pub(super) store: &'a MvccStore,
    pub(super) batch: fjall::OwnedWriteBatch,
    /// Latest state of keys written in this batch (`None`: deleted).
    overlay: BTreeMap<Vec<u8>, Option<LiveRecord>>,
    /// Leases granted (`Some`) or revoked (`None`) in this batch.
    pub(super) lease_overlay: BTreeMap<i64, Option<LeaseRecord>>,
    pub(super) revision: i64,
    compact: i64,
    writes: usize,
    /// The events written, in revision order, when a watcher may want them.
    events: Option<Vec<Event>>,
    pub(super) lease_changes: Vec<LeaseChange>,
    /// Written by every mid-batch flush: the caller's record of the commands fully
    /// applied so far (Raft's applied log id), so a crash after such a flush replays
    /// exactly the commands it did not cover.
    done_marker: Option<(Vec<u8>, Vec<u8>)>,
    /// A compaction whose physical deletion runs after the batch commits.
    pending_compaction: Option<i64>,
    /// Reused for each record's encoded key and value (see `write_live`).
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// What one committed apply batch changed, for the watch hub and the lessor.
#[derive(Debug, Default)]
pub(crate) struct AppliedBatch {
    /// The events, when the applier collected them (`None`: watchers must read them
    /// from the stored history).
    pub events: Option<Vec<Event>>,
    /// Leases granted and revoked, in order.
    pub lease_changes: Vec<LeaseChange>,
}

impl View for Applier<'_> {
    fn revision(&self) -> i64 {
        self.revision
    }

    fn compact_revision(&self) -> i64 {
        self.compact
    }

    fn scan_live(
        &self,
        range: &KeyRange,
        with_value: bool,
        f: &mut dyn FnMut(&[u8], &LiveRecord) -> bool,
    ) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        // Merge the committed keys with the overlay, the overlay winning.
        let over: Vec<(&Vec<u8>, &Option<LiveRecord>)> = self.overlay.range(range.bounds()).collect();
        let mut oi = 0;
        let emit = |f: &mut dyn FnMut(&[u8], &LiveRecord) -> bool, k: &[u8], rec: &Option<LiveRecord>| {
            rec.as_ref().is_none_or(|r| f(k, r))
        };
        for g in self.store.ks.kv.range(range.bounds()) {
            let (bk, bv) = g.into_inner()?;
            while oi < over.len() && over[oi].0.as_slice() < &*bk {
                if !emit(f, over[oi].0, over[oi].1) {
                    return Ok(());
                }
                oi += 1;
            }
            if oi < over.len() && over[oi].0.as_slice() == &*bk {
                if !emit(f, over[oi].0, over[oi].1) {
                    return Ok(());
                }
                oi += 1;
                continue;
            }
            let rec = live_record(|hk| self.store.ks.hist.get(hk), &bk, &bv, with_value)?;
            if !f(&bk, &rec) {
                return Ok(());
            }
        }
        while oi < over.len() {
            if !emit(f, over[oi].0, over[oi].1) {
                return Ok(());
            }
            oi += 1;
        }
        Ok(())
    }

    fn scan_hist(&self, range: &KeyRange, f: &mut dyn FnMut(&[u8], i64, &HistRecord) -> bool) -> Result<()> {
        // Past revisions are below every revision written in this batch, so the committed
        // history is complete for them.
        if range.is_empty() {
            return Ok(());
        }
        visit_hist(self.store.ks.hist.range(range.hist_bounds()), f)
    }

    fn current_value(&self, key: &[u8], mod_revision: i64) -> Result<Vec<u8>> {
        if let Some(Some(rec)) = self.overlay.get(key) {
            if rec.mod_revision == mod_revision {
                return Ok(rec.value.clone());
            }
        }
        current_value_at(|hk| self.store.ks.hist.get(hk), key, mod_revision)
    }

    fn key_meta(&self, key: &[u8]) -> Result<Option<KeyMeta>> {
        Ok(self.live_meta(key))
    }
}

impl Applier<'_> {
    /// `key`'s state with its value: from this batch's writes, or the committed key
    /// index and one point read of the current version in `hist`.
    fn live(&self, key: &[u8]) -> Result<Option<LiveRecord>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        let Some(meta) = self.store.index().get(key).copied() else {
            return Ok(None);
        };
        Ok(Some(LiveRecord::of(meta, self.current_value(key, meta.mod_revision)?)))
    }

    /// `key`'s revisions and lease, from this batch's writes or the committed key index.
    fn live_meta(&self, key: &[u8]) -> Option<KeyMeta> {
        match self.overlay.get(key) {
            Some(v) => v.as_ref().map(LiveRecord::meta),
            None => self.store.index().get(key).copied(),
        }
    }

    /// Whether this batch holds writes not yet committed.
    pub fn is_dirty(&self) -> bool {
        self.writes > 0
    }

    /// Applies one command. On `Err` nothing of the command was written (errors are found
    /// before the first write); storage errors are fatal for the node.
    pub fn apply(&mut self, cmd: &WriteCommand) -> Result<WriteResponse> {
        match cmd {
            WriteCommand::Put(p) => {
                self.check_put(p)?;
                let mut tx = TxnWrite::new(self.revision + 1);
                let resp = tx.put(self, p)?;
                self.finish(tx);
                Ok(WriteResponse::Put(resp))
            }
            WriteCommand::DeleteRange(d) => {
                let mut tx = TxnWrite::new(self.revision + 1);
                let resp = tx.delete(self, d)?;
                self.finish(tx);
                Ok(WriteResponse::DeleteRange(resp))
            }
            WriteCommand::Txn(t) => {
                if self.is_dirty() && has_past_reads(t) {
                    // Past reads use committed history; publish this batch's writes first.
                    self.flush()?;
                }
                let mut path = Vec::new();
                compare_path(self, t, &mut path)?;
                self.check_txn_path(t, &path, &mut 0)?;
                let mut tx = TxnWrite::new(self.revision + 1);
                let mut resp = tx.txn(self, t, &path, &mut 0)?;
                self.finish(tx);
                set_txn_revision(&mut resp, self.revision);
                Ok(WriteResponse::Txn(resp))
            }
            WriteCommand::Compact(c) => self.compact(c),
            WriteCommand::LeaseGrant(g) => self.lease_grant(g).map(WriteResponse::LeaseGrant),
            WriteCommand::LeaseRevoke(r) => self.lease_revoke(r).map(WriteResponse::LeaseRevoke),
        }
    }

    fn check_put(&self, p: &PutRequest) -> Result<()> {
        if (p.ignore_value || p.ignore_lease) && self.live_meta(&p.key).is_none() {
            return Err(Error::KeyNotFound);
        }
        if p.lease != 0 && self.lease_record(p.lease)?.is_none() {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    /// etcd's `checkTxn` along the chosen path, against the pre-transaction state.
    fn check_txn_path(&self, t: &TxnRequest, path: &[bool], at: &mut usize) -> Result<()> {
        let ok = path[*at];
        *at += 1;
        for op in if ok { &t.success } else { &t.failure } {
            match op {
                RequestOp::Range(r) => {
                    check_read_revision(self, r.revision)?;
                }
                RequestOp::Put(p) => self.check_put(p)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(n) => self.check_txn_path(n, path, at)?,
            }
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, tx: TxnWrite) {
        if tx.sub > 0 {
            self.revision = tx.revision;
            self.writes += tx.sub as usize;
        }
    }

    fn compact(&mut self, c: &CompactionRequest) -> Result<WriteResponse> {
        if c.revision <= self.compact {
            return Err(Error::Compacted { compact_revision: self.compact });
        }
        if c.revision > self.revision {
            return Err(Error::FutureRevision);
        }
        self.compact = c.revision;
        self.batch.insert(&self.store.ks.meta, META_COMPACT, encode(&c.revision));
        // The unreachable versions are deleted once the batch (whose earlier writes may be
        // below the compaction point) has committed; see `commit`.
        self.pending_compaction = Some(c.revision);
        Ok(WriteResponse::Compact(CompactionResponse { header: header_at(self.revision) }))
    }

    /// Commits what is pending and starts a new batch.
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.writes > 0 {
            // Once per batch, not per command.
            self.batch.insert(&self.store.ks.meta, META_REVISION, encode(&self.revision));
        }
        if let Some((k, v)) = &self.done_marker {
            self.batch.insert(&self.store.ks.meta, k.clone(), v.clone());
        }
        let batch = std::mem::replace(&mut self.batch, self.store.db.batch());
        self.store.commit_batch(batch, self.revision, self.compact, std::mem::take(&mut self.overlay))?;
        self.lease_overlay.clear();
        self.writes = 0;
        Ok(())
    }

    /// Sets the record a mid-batch flush writes (see `done_marker`): the caller updates
    /// it before each command with what the commands before it completed.
    pub fn set_done_marker(&mut self, key: &[u8], value: Vec<u8>) {
        self.done_marker = Some((key.to_vec(), value));
    }

    /// Adds `(key, value)` pairs of the caller (Raft's applied log id and membership) to
    /// the batch, so they commit atomically with the data.
    pub fn put_meta(&mut self, key: &[u8], value: Vec<u8>) {
        self.batch.insert(&self.store.ks.meta, key.to_vec(), value);
    }

    /// Commits the batch and publishes it to readers. No fsync: the Raft log is the
    /// source of truth and is replayed after a crash. Returns what the batch changed.
    pub fn commit(mut self) -> Result<AppliedBatch> {
        // The caller's own record (`put_meta`) covers the whole batch.
        self.done_marker = None;
        self.flush()?;
        if let Some(compact) = self.pending_compaction {
            self.store.compact_physically(compact)?;
        }
        Ok(AppliedBatch { events: self.events.take(), lease_changes: std::mem::take(&mut self.lease_changes) })
    }

    /// Writes the new state of `key` (`None`: deleted) at `revision`. `prev_lease` is the
    /// lease it had before (0: none), kept up to date in the lease index; `prev` is its
    /// state before, reported to watchers, and must be given when this batch collects
    /// events.
    fn write_live(
        &mut self,
        key: &[u8],
        rec: Option<LiveRecord>,
        prev_lease: i64,
        prev: Option<&LiveRecord>,
        revision: i64,
        sub: u32,
    ) {
        // Keys and values go into the batch as slices of reused buffers: fjall copies
        // them once (short ones inline), so no `Vec` is allocated per record.
        let ks = &self.store.ks;
        match &rec {
            Some(r) => self.batch.insert(&ks.kv, key, encode_into(&r.meta(), &mut self.value_buf)),
            None => self.batch.remove(&ks.kv, key),
        }
        let hist = encode_into(&HistRecordRef::from_live(rec.as_ref()), &mut self.value_buf);
        self.batch.insert(&ks.hist, hist_key_into(key, revision, &mut self.key_buf), hist);
        self.batch.insert(&ks.revs, rev_key(revision, sub), key);
        let new_lease = rec.as_ref().map_or(0, |r| r.lease);
        if prev_lease != new_lease {
            self.update_lease_index(key, prev_lease, new_lease);
        }
        if let Some(events) = &mut self.events {
            let after = rec.as_ref().map(|r| r.to_key_value(key, false));
            events.push(Event::of_change(key, revision, after, prev.map(|p| p.to_key_value(key, false))));
        }
        self.overlay.insert(key.to_vec(), rec);
    }
}

fn has_past_reads(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match op {
        RequestOp::Range(r) => r.revision > 0,
        RequestOp::Txn(n) => has_past_reads(n),
        _ => false,
    })
}

/// Sets the header revision of a txn response and its nested responses.
fn set_txn_revision(resp: &mut TxnResponse, revision: i64) {
    resp.header.revision = revision;
    for r in &mut resp.responses {
        match r {
            ResponseOp::Range(x) => x.header.revision = revision,
            ResponseOp::Put(x) => x.header.revision = revision,
            ResponseOp::DeleteRange(x) => x.header.revision = revision,
            ResponseOp::Txn(x) => set_txn_revision(x, revision),
        }
    }
}

/// etcd's `compareToPath`: every compare of the transaction and of the nested
/// transactions on the chosen path, evaluated before any write.
fn compare_path(view: &dyn View, t: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let ok = compares_hold(view, &t.compare)?;
    path.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let RequestOp::Txn(n) = op {
            compare_path(view, n, path)?;
        }
    }
    Ok(())
}

/// The writes of one command: all at one revision, numbered by `sub`.
pub(super) struct TxnWrite {
    revision: i64,
    sub: u32,
}

impl TxnWrite {
    pub(super) fn new(revision: i64) -> Self {
        TxnWrite { revision, sub: 0 }
    }

    fn put(&mut self, a: &mut Applier<'_>, p: &PutRequest) -> Result<PutResponse> {
        if !(p.prev_kv || p.ignore_value || a.events.is_some()) {
            return Ok(self.put_blind(a, p));
        }
        let prev = a.live(&p.key)?;
        let value =
            if p.ignore_value { prev.as_ref().map(|r| r.value.clone()).unwrap_or_default() } else { p.value.clone() };
        let lease = if p.ignore_lease { prev.as_ref().map_or(0, |r| r.lease) } else { p.lease };
        let rec = LiveRecord {
            create_revision: prev.as_ref().map_or(self.revision, |r| r.create_revision),
            mod_revision: self.revision,
            version: prev.as_ref().map_or(0, |r| r.version) + 1,
            lease,
            value,
        };
        a.write_live(&p.key, Some(rec), prev.as_ref().map_or(0, |r| r.lease), prev.as_ref(), self.revision, self.sub);
        self.sub += 1;
        Ok(PutResponse {
            header: header_at(self.revision),
            prev_kv: if p.prev_kv { prev.map(|r| r.to_key_value(&p.key, false)) } else { None },
        })
    }

    /// A put that needs nothing of the key's previous value (no `prev_kv`, no
    /// `ignore_value`, no watcher to tell): the previous state comes from the key index,
    /// so the apply reads nothing from disk.
    fn put_blind(&mut self, a: &mut Applier<'_>, p: &PutRequest) -> PutResponse {
        let prev = a.live_meta(&p.key);
        let rec = LiveRecord {
            create_revision: prev.map_or(self.revision, |m| m.create_revision),
            mod_revision: self.revision,
            version: prev.map_or(0, |m| m.version) + 1,
            lease: if p.ignore_lease { prev.map_or(0, |m| m.lease) } else { p.lease },
            value: p.value.clone(),
        };
        a.write_live(&p.key, Some(rec), prev.map_or(0, |m| m.lease), None, self.revision, self.sub);
        self.sub += 1;
        PutResponse { header: header_at(self.revision), prev_kv: None }
    }

    pub(super) fn delete(&mut self, a: &mut Applier<'_>, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&d.key, &d.range_end);
        let mut victims = Vec::new();
        // Values are needed for the response's previous key-values and for watchers.
        a.scan_live(&range, d.prev_kv || a.events.is_some(), &mut |k, rec| {
            victims.push((k.to_vec(), rec.clone()));
            true
        })?;
        for (k, prev) in &victims {
            a.write_live(k, None, prev.lease, Some(prev), self.revision, self.sub);
            self.sub += 1;
        }
        let revision = if self.sub > 0 { self.revision } else { a.revision };
        Ok(DeleteRangeResponse {
            header: header_at(revision),
            deleted: victims.len() as i64,
            prev_kvs: if d.prev_kv {
                victims.iter().map(|(k, r)| r.to_key_value(k, false)).collect()
            } else {
                Vec::new()
            },
        })
    }

    fn txn(&mut self, a: &mut Applier<'_>, t: &TxnRequest, path: &[bool], at: &mut usize) -> Result<TxnResponse> {
        let succeeded = path[*at];
        *at += 1;
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    // Reads inside a write txn see the txn's earlier writes (etcd: rev+1 once changed).
                    let mut view_rev = r.clone();
                    if r.revision <= 0 || r.revision >= a.revision {
                        view_rev.revision = 0;
                    }
                    let mut resp = execute_range(&*a, &view_rev)?;
                    resp.header.revision = a.revision;
                    ResponseOp::Range(resp)
                }
                RequestOp::Put(p) => ResponseOp::Put(self.put(a, p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete(a, d)?),
                RequestOp::Txn(n) => ResponseOp::Txn(self.txn(a, n, path, at)?),
            });
        }
        Ok(TxnResponse { header: header_at(a.revision), succeeded, responses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, MvccStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).worker_threads(1).open().unwrap();
        let store = MvccStore::open(db).unwrap();
        (dir, store)
    }

    fn apply(store: &MvccStore, cmd: WriteCommand) -> WriteResponse {
        let mut a = store.applier(true);
        let resp = a.apply(&cmd).unwrap();
        a.commit().unwrap();
        resp
    }

    fn values(resp: &RangeResponse) -> Vec<(&[u8], &[u8])> {
        resp.kvs.iter().map(|kv| (kv.key.as_slice(), kv.value.as_slice())).collect()
    }

    /// A live key's `kv` record holds no value: every read at the current revision finds
    /// the value in `hist`, before and after a compaction to the current revision.
    #[test]
    fn each_value_is_stored_once_and_every_read_finds_it() {
        let (_dir, store) = open();
        apply(&store, WriteCommand::Put(PutRequest::new("a", vec![b'1'; 300])));
        apply(&store, WriteCommand::Put(PutRequest::new("b", "b1")));
        let mut put = PutRequest::new("a", "a2");
        put.prev_kv = true;
        let WriteResponse::Put(resp) = apply(&store, WriteCommand::Put(put)) else { panic!() };
        assert_eq!(resp.prev_kv.unwrap().value, vec![b'1'; 300], "prev_kv from the history");
        let raw = store.keyspaces().kv.get("a").unwrap().unwrap();
        assert!(raw.len() < 32, "a kv record without the value: {} bytes", raw.len());

        for compacted in [false, true] {
            if compacted {
                let revision = store.revision();
                apply(&store, WriteCommand::Compact(CompactionRequest { revision, physical: true }));
            }
            let all = store.range(&RangeRequest::prefix("")).unwrap();
            assert_eq!(values(&all), vec![(&b"a"[..], &b"a2"[..]), (b"b", b"b1")], "compacted: {compacted}");
            let one = store.range(&RangeRequest::key("a")).unwrap();
            assert_eq!(values(&one), vec![(&b"a"[..], &b"a2"[..])]);
            let mut keys_only = RangeRequest::prefix("");
            keys_only.keys_only = true;
            let resp = store.range(&keys_only).unwrap();
            assert_eq!(values(&resp), vec![(&b"a"[..], &b""[..]), (b"b", b"")]);
            let mut count_only = RangeRequest::prefix("");
            count_only.count_only = true;
            assert_eq!(store.range(&count_only).unwrap().count, 2);
            let mut by_value = RangeRequest::prefix("");
            by_value.sort_target = SortTarget::Value;
            by_value.sort_order = SortOrder::Descend;
            assert_eq!(values(&store.range(&by_value).unwrap()), vec![(&b"b"[..], &b"b1"[..]), (b"a", b"a2")]);
            // Values read after the limit (key order) and before it (value order).
            for (target, order, want) in [
                (SortTarget::Key, SortOrder::None, (&b"a"[..], &b"a2"[..])),
                (SortTarget::Key, SortOrder::Descend, (b"b", b"b1")),
                (SortTarget::Mod, SortOrder::Ascend, (b"b", b"b1")),
                (SortTarget::Value, SortOrder::Ascend, (b"a", b"a2")),
            ] {
                let mut limited = RangeRequest::prefix("");
                (limited.limit, limited.sort_target, limited.sort_order) = (1, target, order);
                let resp = store.range(&limited).unwrap();
                assert_eq!((values(&resp), resp.more, resp.count), (vec![want], true, 2), "{target:?} {order:?}");
            }
            let cmp = |v: &str| TxnRequest {
                compare: vec![Compare::new("a", CompareResult::Equal, CompareTarget::Value(v.into()))],
                ..Default::default()
            };
            assert!(store.txn_read_only(&cmp("a2")).unwrap().succeeded);
            assert!(!store.txn_read_only(&cmp("a1")).unwrap().succeeded);
        }
        let mut del = DeleteRangeRequest::prefix("");
        del.prev_kv = true;
        let WriteResponse::DeleteRange(resp) = apply(&store, WriteCommand::DeleteRange(del)) else { panic!() };
        let prev: Vec<_> = resp.prev_kvs.iter().map(|kv| kv.value.as_slice()).collect();
        assert_eq!(prev, vec![&b"a2"[..], b"b1"]);
        assert_eq!(store.range(&RangeRequest::prefix("")).unwrap().count, 0);
    }

    /// A one-key get reads the key index and `hist` while batches commit and compact:
    /// under the sequence lock it always sees one state, never a stale index entry
    /// (its revision would be below the header's) or a compacted version.
    #[test]
    fn gets_during_commits_and_compactions_see_one_state() {
        let (_dir, store) = open();
        let store = std::sync::Arc::new(store);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Acquire) {
                    let resp = store.range(&RangeRequest::key("k")).unwrap();
                    if let Some(kv) = resp.kvs.first() {
                        // Only `k` changes, one revision per put: the header's revision
                        // is its mod revision, and the value names it.
                        assert_eq!(kv.mod_revision, resp.header.revision, "a stale index entry");
                        assert_eq!(kv.value, format!("v{}", kv.mod_revision).into_bytes());
                        reads += 1;
                    }
                }
                reads
            })
        };
        for i in 0..2000 {
            let revision = store.revision() + 1;
            apply(&store, WriteCommand::Put(PutRequest::new("k", format!("v{revision}"))));
            if i % 10 == 9 {
                let revision = store.revision();
                apply(&store, WriteCommand::Compact(CompactionRequest { revision, physical: true }));
                // A compaction takes no revision of its own: the next put's value still names it.
            }
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0, "the reader read nothing");
    }

    /// A `kv` record whose current version is gone from `hist` is damage: reads say so
    /// instead of answering with an empty value.
    #[test]
    fn a_missing_current_version_is_a_storage_error() {
        let (_dir, store) = open();
        apply(&store, WriteCommand::Put(PutRequest::new("k", "v")));
        let revision = store.revision();
        store.keyspaces().hist.remove(hist_key(b"k", revision)).unwrap();
        for req in [RangeRequest::key("k"), RangeRequest::prefix("k")] {
            let err = store.range(&req).unwrap_err();
            assert!(matches!(&err, Error::Storage(m) if m.contains("missing from the history")), "{err}");
        }
        let mut keys_only = RangeRequest::key("k");
        keys_only.keys_only = true;
        assert_eq!(store.range(&keys_only).unwrap().count, 1, "no value read, nothing missing");
    }
}
