//! The Raft log and vote on fjall, with group commit.
//!
//! `append` writes entries into the journal (to the OS, no fsync) and hands the flush
//! callback to a dedicated flusher thread. The flusher takes every callback that is
//! waiting, issues one `fdatasync` for all of them, then acknowledges them in order. Under
//! load one fsync therefore covers many appends; idle, an append costs one fsync.
//!
//! The vote is written and synced before `save_vote` returns. A failed fsync poisons the
//! fjall database: every later write fails, the error reaches openraft as a storage error
//! and the node stops taking writes (it never acknowledges an entry that is not on disk).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;

use super::codec::{decode_io, encode};
use super::{io_err, Entry, LogId, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// Counters of the log's fsyncs, for status and benchmarks.
#[derive(Debug, Default)]
pub struct FsyncStats {
    /// Number of fsyncs issued.
    pub count: AtomicU64,
    /// Total time spent in fsync, microseconds.
    pub total_us: AtomicU64,
    /// Number of appends acknowledged.
    pub appends: AtomicU64,
    /// Number of log entries appended.
    pub entries: AtomicU64,
}

struct Inner {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    /// Callbacks waiting for the next fsync. `None` once the store is shut down.
    flush_tx: Mutex<Option<mpsc::Sender<IOFlushed<TypeConfig>>>>,
    stats: Arc<FsyncStats>,
}

/// The log store. Cheap to clone; clones share everything.
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Inner>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    /// Opens the log keyspaces of `db` and starts the flusher thread.
    pub fn open(db: Database, stats: Arc<FsyncStats>) -> crate::Result<Self> {
        let log = db.keyspace("raft_log", crate::mvcc::keyspace_options)?;
        let meta = db.keyspace("raft_meta", KeyspaceCreateOptions::default)?;
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let flusher_db = db.clone();
        let flusher_stats = stats.clone();
        std::thread::Builder::new()
            .name("qkv-log-fsync".into())
            .spawn(move || flusher(flusher_db, rx, flusher_stats))
            .map_err(crate::Error::from)?;
        Ok(LogStore { inner: Arc::new(Inner { db, log, meta, flush_tx: Mutex::new(Some(tx)), stats }) })
    }

    /// Stops the flusher thread once it has acknowledged what is queued.
    pub fn shutdown(&self) {
        self.inner.flush_tx.lock().expect("flush_tx lock").take();
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8], what: &str) -> io::Result<Option<T>> {
        match self.inner.meta.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(decode_io(&v, what)?)),
            None => Ok(None),
        }
    }

    fn write_meta_synced(&self, key: &[u8], value: Vec<u8>) -> io::Result<()> {
        self.inner.meta.insert(key, value).map_err(io_err)?;
        self.sync()
    }

    fn sync(&self) -> io::Result<()> {
        let t = Instant::now();
        self.inner.db.persist(PersistMode::SyncData).map_err(io_err)?;
        record_fsync(&self.inner.stats, t);
        Ok(())
    }
}

fn record_fsync(stats: &FsyncStats, started: Instant) {
    stats.count.fetch_add(1, Ordering::Relaxed);
    stats.total_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
}

/// The group-commit loop: one fsync per wake-up, for every callback queued by then.
fn flusher(db: Database, rx: mpsc::Receiver<IOFlushed<TypeConfig>>, stats: Arc<FsyncStats>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let t = Instant::now();
        let result = db.persist(PersistMode::SyncData);
        record_fsync(&stats, t);
        stats.appends.fetch_add(waiting.len() as u64, Ordering::Relaxed);
        for cb in waiting {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(format!("fsync of the raft log failed: {e}"))),
            };
            cb.io_completed(r);
        }
        if result.is_err() {
            tracing::error!("fsync of the raft log failed; the node stops taking writes");
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i).to_vec()),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i).to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for g in self.inner.log.range((Bound::Included(index_key(start).to_vec()), end)) {
            let (_, v) = g.into_inner().map_err(io_err)?;
            out.push(decode_io(&v, "log entry")?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.read_meta(KEY_VOTE, "vote")
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let purged: Option<LogId> = self.read_meta(KEY_PURGED, "purged log id")?;
        let last = match self.inner.log.last_key_value() {
            Some(g) => {
                let (_, v) = g.into_inner().map_err(io_err)?;
                let e: Entry = decode_io(&v, "log entry")?;
                Some(e.log_id())
            }
            None => purged,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.write_meta_synced(KEY_VOTE, encode(vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not synced: a lost value only makes the node re-apply fewer entries at start;
        // it learns the rest from the leader.
        self.inner.meta.insert(KEY_COMMITTED, encode(&committed)).map_err(io_err)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED, "committed log id")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = self.inner.db.batch();
        for entry in entries {
            batch.insert(&self.inner.log, index_key(entry.index()).to_vec(), encode(&entry));
        }
        let count = batch.len() as u64;
        batch.commit().map_err(io_err)?;
        self.inner.stats.entries.fetch_add(count, Ordering::Relaxed);
        let tx = self.inner.flush_tx.lock().expect("flush_tx lock").clone();
        match tx {
            Some(tx) => tx.send(callback).map_err(|_| io::Error::other("log flusher stopped")),
            None => Err(io::Error::other("log store is shut down")),
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index() + 1);
        let mut batch = self.inner.db.batch();
        for g in self.inner.log.range(index_key(from).to_vec()..) {
            batch.remove(&self.inner.log, g.key().map_err(io_err)?);
        }
        batch.commit().map_err(io_err)?;
        self.sync()
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let mut batch = self.inner.db.batch();
        batch.insert(&self.inner.meta, KEY_PURGED, encode(&log_id));
        for g in self.inner.log.range(..=index_key(log_id.index()).to_vec()) {
            batch.remove(&self.inner.log, g.key().map_err(io_err)?);
        }
        batch.commit().map_err(io_err)
    }
}
