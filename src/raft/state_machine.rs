//! The Raft state machine: committed entries applied to the MVCC store.
//!
//! Each `apply` call becomes one fjall batch holding the data of every entry *and* the
//! last applied log id, committed without fsync. After a crash the store may be behind
//! the log; openraft replays the missing entries from the (fsynced) log at start.
//!
//! Snapshots are files (see [`super::snapshot`]). Installing one is crash-safe: a marker
//! naming the file is persisted first, and a node that finds the marker at start installs
//! the file again before serving anything.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fjall::{Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

use super::codec::{decode_io, encode};
use super::snapshot::{self, SnapshotFile};
use super::{io_err, LogId, RaftSnapshot, Request, Response, SnapshotMeta, StoredMembership, TypeConfig};
use crate::error::Error;
use crate::mvcc::{AppliedBatch, MvccStore};

const KEY_APPLIED: &[u8] = b"sm/applied";
const KEY_MEMBERSHIP: &[u8] = b"sm/membership";
const KEY_INSTALLING: &[u8] = b"installing";
const KEY_CURRENT: &[u8] = b"current";

/// Told what the apply loop commits (the watch hub and the lessor listen). Called on
/// the apply task: implementations must be quick and must not block on Raft.
pub(crate) trait ApplyObserver: Send + Sync {
    /// Whether the next apply batch should collect its events.
    fn wants_events(&self) -> bool;
    /// After a batch committed, with the store revision it reached.
    fn applied(&self, revision: i64, batch: AppliedBatch);
    /// After a snapshot replaced the whole state.
    fn replaced(&self, revision: i64);
}

pub(crate) type ApplyHook = Arc<dyn ApplyObserver>;

pub(crate) struct SmInner {
    store: Arc<MvccStore>,
    /// Keyspace for snapshot bookkeeping (never part of a snapshot).
    snap_meta: Keyspace,
    snapshot_dir: PathBuf,
    /// Serializes snapshot building and installing.
    snapshot_lock: Mutex<()>,
    snapshot_seq: AtomicU64,
    on_applied: Option<ApplyHook>,
}

/// The state machine handle given to openraft. Cheap to clone.
#[derive(Clone)]
pub(crate) struct StateMachine {
    inner: Arc<SmInner>,
}

impl StateMachine {
    /// Opens the state machine, finishing a snapshot install a crash interrupted.
    pub fn open(store: Arc<MvccStore>, snapshot_dir: PathBuf, on_applied: Option<ApplyHook>) -> crate::Result<Self> {
        std::fs::create_dir_all(&snapshot_dir)?;
        let snap_meta = store.db().keyspace("snapshot_meta", KeyspaceCreateOptions::default)?;
        let sm = StateMachine {
            inner: Arc::new(SmInner {
                store,
                snap_meta,
                snapshot_dir,
                snapshot_lock: Mutex::new(()),
                snapshot_seq: AtomicU64::new(0),
                on_applied,
            }),
        };
        if let Some(path) = sm.inner.snap_meta.get(KEY_INSTALLING)? {
            let path = PathBuf::from(String::from_utf8_lossy(&path).into_owned());
            tracing::warn!(path = %path.display(), "finishing an interrupted snapshot install");
            sm.load_snapshot_file(&path).map_err(Error::from)?;
        }
        Ok(sm)
    }

    fn load_snapshot_file(&self, path: &Path) -> io::Result<()> {
        let inner = &self.inner;
        snapshot::verify(path)?;
        inner.snap_meta.insert(KEY_INSTALLING, path.to_string_lossy().as_bytes()).map_err(io_err)?;
        inner.store.db().persist(PersistMode::SyncData).map_err(io_err)?;
        // Readers see the state from before the install until the new one is complete. A
        // failure below leaves them there: the node stops on the storage error, and the
        // marker makes it finish the install when it opens again.
        inner.store.begin_replace().map_err(io_err)?;
        snapshot::load(path, inner.store.db(), inner.store.keyspaces())?;
        inner.store.reload().map_err(io_err)?;
        inner.store.end_replace();
        let mut batch = inner.store.db().batch();
        batch.insert(&inner.snap_meta, KEY_CURRENT, path.to_string_lossy().as_bytes());
        batch.remove(&inner.snap_meta, KEY_INSTALLING);
        batch.commit().map_err(io_err)?;
        inner.store.db().persist(PersistMode::SyncData).map_err(io_err)?;
        self.remove_stale_snapshots(path);
        if let Some(hook) = &inner.on_applied {
            hook.replaced(inner.store.revision());
        }
        Ok(())
    }

    /// Deletes every snapshot file but `keep` (and files being received).
    fn remove_stale_snapshots(&self, keep: &Path) {
        let Ok(dir) = std::fs::read_dir(&self.inner.snapshot_dir) else {
            return;
        };
        for entry in dir.flatten() {
            let p = entry.path();
            if p != keep && p.extension().is_some_and(|e| e == "snap") {
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    /// A fresh path for a snapshot up to `last`; `origin` tells built ("b") from
    /// received ("r") ones, so the two never collide.
    fn new_snapshot_path(&self, last: Option<LogId>, origin: &str) -> PathBuf {
        let n = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let name = match last {
            Some(l) => format!("snap-{:020}-{}-{origin}{n}.snap", l.index(), l.committed_leader_id()),
            None => format!("snap-empty-{origin}{n}.snap"),
        };
        self.inner.snapshot_dir.join(name)
    }

    /// Where a snapshot being received from the leader is written.
    pub fn incoming_snapshot_path(&self) -> PathBuf {
        let n = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        self.inner.snapshot_dir.join(format!("incoming-{}-{n}.part", std::process::id()))
    }

    fn current_snapshot(&self) -> io::Result<Option<(SnapshotMeta, PathBuf)>> {
        let Some(path) = self.inner.snap_meta.get(KEY_CURRENT).map_err(io_err)? else {
            return Ok(None);
        };
        let path = PathBuf::from(String::from_utf8_lossy(&path).into_owned());
        match snapshot::read_meta(&path) {
            Ok(meta) => Ok(Some((meta, path))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn build(&self) -> io::Result<RaftSnapshot> {
        let inner = &self.inner;
        let _guard = inner.snapshot_lock.lock().expect("snapshot lock");
        let snap = inner.store.consistent_snapshot().map_err(io_err)?;
        let meta = snapshot_meta(&inner.store, &snap)?;
        let last_log_id = meta.last_log_id;
        let path = self.new_snapshot_path(last_log_id, "b");
        snapshot::write(&path, &meta, inner.store.keyspaces(), &snap)?;
        drop(snap);
        inner.snap_meta.insert(KEY_CURRENT, path.to_string_lossy().as_bytes()).map_err(io_err)?;
        inner.store.db().persist(PersistMode::SyncData).map_err(io_err)?;
        self.remove_stale_snapshots(&path);
        tracing::info!(path = %path.display(), last_log_id = ?meta.last_log_id, "built snapshot");
        Ok(RaftSnapshot { meta, snapshot: SnapshotFile { path } })
    }
}

/// The meta of a snapshot of `snap`: the applied log id and membership it holds.
fn snapshot_meta(store: &MvccStore, snap: &fjall::Snapshot) -> io::Result<SnapshotMeta> {
    let meta_ks = &store.keyspaces().meta;
    let last_log_id: Option<LogId> = match snap.get(meta_ks, KEY_APPLIED).map_err(io_err)? {
        Some(v) => decode_io(&v, "applied log id")?,
        None => None,
    };
    let last_membership: StoredMembership = match snap.get(meta_ks, KEY_MEMBERSHIP).map_err(io_err)? {
        Some(v) => decode_io(&v, "membership")?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta { last_log_id, last_membership })
}

/// Writes a backup of the whole state (a snapshot file, the same format Raft ships to
/// lagging members) to `path`, streamed from a consistent view and fsynced. Blocking.
pub(crate) fn write_backup(store: &MvccStore, path: &std::path::Path) -> io::Result<()> {
    let snap = store.consistent_snapshot().map_err(io_err)?;
    let meta = snapshot_meta(store, &snap)?;
    snapshot::write(path, &meta, store.keyspaces(), &snap)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<RaftSnapshot> {
        let sm = self.clone();
        tokio::task::spawn_blocking(move || sm.build()).await.map_err(io_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let meta = &self.inner.store.keyspaces().meta;
        let applied: Option<LogId> = match meta.get(KEY_APPLIED).map_err(io_err)? {
            Some(v) => decode_io(&v, "applied log id")?,
            None => None,
        };
        let membership: StoredMembership = match meta.get(KEY_MEMBERSHIP).map_err(io_err)? {
            Some(v) => decode_io(&v, "membership")?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let store = &self.inner.store;
        let mut applier = store.applier(self.inner.on_applied.as_ref().is_some_and(|h| h.wants_events()));
        let mut replies = Vec::new();
        let mut last_applied = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            if last_applied.is_some() {
                // A flush inside this entry (a revoke, a txn reading the past) records
                // only the entries before it as applied.
                applier.set_done_marker(KEY_APPLIED, encode(&last_applied));
            }
            last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::Empty,
                EntryPayload::Normal(Request::Kv(cmd)) => Response::Kv(apply_one(&mut applier, &cmd)?),
                EntryPayload::Normal(Request::Batch(cmds)) => {
                    let results = cmds.iter().map(|c| apply_one(&mut applier, c)).collect::<io::Result<_>>()?;
                    Response::Batch(results)
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    applier.put_meta(KEY_MEMBERSHIP, encode(&stored));
                    Response::Empty
                }
            };
            if let Some(r) = responder {
                replies.push((r, response));
            }
        }
        if last_applied.is_none() {
            return Ok(());
        }
        applier.put_meta(KEY_APPLIED, encode(&last_applied));
        let batch = applier.commit().map_err(|e| io::Error::other(e.to_string()))?;
        if let Some(hook) = &self.inner.on_applied {
            hook.applied(store.revision(), batch);
        }
        for (r, response) in replies {
            r.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> io::Result<()> {
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = sm.inner.snapshot_lock.lock().expect("snapshot lock");
            let path = sm.new_snapshot_path(meta.last_log_id, "r");
            std::fs::rename(&snapshot.path, &path)?;
            snapshot::sync_dir(&sm.inner.snapshot_dir)?;
            sm.load_snapshot_file(&path)?;
            tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
            Ok(())
        })
        .await
        .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<RaftSnapshot>> {
        Ok(self.current_snapshot()?.map(|(meta, path)| RaftSnapshot { meta, snapshot: SnapshotFile { path } }))
    }
}

/// Applies one command; a storage failure fails the whole apply (Raft stops the node).
fn apply_one(
    applier: &mut crate::mvcc::Applier<'_>,
    cmd: &crate::mvcc::WriteCommand,
) -> io::Result<crate::Result<crate::mvcc::WriteResponse>> {
    let result = applier.apply(cmd);
    if let Err(Error::Storage(e)) = &result {
        return Err(io::Error::other(e.clone()));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{PutRequest, RangeRequest, WriteCommand};

    fn open(dir: &Path) -> (Arc<MvccStore>, StateMachine) {
        let db = fjall::Database::builder(dir.join("db")).worker_threads(1).open().unwrap();
        let store = Arc::new(MvccStore::open(db).unwrap());
        let sm = StateMachine::open(store.clone(), dir.join("snapshots"), None).unwrap();
        (store, sm)
    }

    fn fill(store: &MvccStore, n: usize) {
        fill_with(store, n, 100);
    }

    /// Puts `k0000`, `k0001`, ... with values of `len` bytes, one revision each.
    fn fill_with(store: &MvccStore, n: usize, len: usize) {
        let mut a = store.applier(false);
        for i in 0..n {
            a.apply(&WriteCommand::Put(PutRequest::new(format!("k{i:04}"), vec![i as u8; len]))).unwrap();
        }
        a.commit().unwrap();
    }

    /// Reads while a snapshot install clears and reloads the keyspaces see the whole old
    /// state or the whole new one: never a half-loaded store, never an error.
    #[test]
    fn reads_during_an_install_see_the_old_state_or_the_new() {
        use std::sync::atomic::AtomicBool;
        const OLD_KEYS: i64 = 100;
        const NEW_KEYS: i64 = 40_000; // ~9 MB: the load takes several batches
        let src = tempfile::tempdir().unwrap();
        let (store, sm) = open(src.path());
        fill_with(&store, NEW_KEYS as usize, 200);
        let snap = sm.build().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (store2, sm2) = open(dst.path());
        fill_with(&store2, OLD_KEYS as usize, 100);
        let copy = dst.path().join("incoming.part");
        std::fs::copy(&snap.snapshot.path, &copy).unwrap();

        let started = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let installer = {
            let (started, done) = (started.clone(), done.clone());
            std::thread::spawn(move || {
                started.store(true, Ordering::SeqCst);
                sm2.load_snapshot_file(&copy).unwrap();
                done.store(true, Ordering::SeqCst);
            })
        };
        let mut during = 0;
        loop {
            let began_after_start = started.load(Ordering::SeqCst);
            let all = store2.range(&RangeRequest { keys_only: true, ..RangeRequest::prefix("k") }).unwrap();
            let one = store2.range(&RangeRequest::key("k0001")).unwrap();
            let lease_free = store2.leases().unwrap().is_empty();
            let finished = done.load(Ordering::SeqCst);
            let (rev, n) = (all.header.revision, all.count);
            assert!((rev, n) == (OLD_KEYS + 1, OLD_KEYS) || (rev, n) == (NEW_KEYS + 1, NEW_KEYS), "{rev} {n}");
            let value_len = one.kvs[0].value.len();
            match one.header.revision {
                r if r == OLD_KEYS + 1 => assert_eq!(value_len, 100),
                r if r == NEW_KEYS + 1 => assert_eq!(value_len, 200),
                r => panic!("get at revision {r}"),
            }
            assert!(lease_free);
            if began_after_start && !finished {
                during += 1;
            }
            if finished {
                break;
            }
        }
        installer.join().unwrap();
        assert!(during > 0, "no read ran during the install");
        assert_eq!(store2.range(&RangeRequest::prefix("k")).unwrap().count, NEW_KEYS);
        assert_eq!(store2.range(&RangeRequest::key("k0001")).unwrap().kvs[0].value.len(), 200);
        assert!(store2.consistent_snapshot().is_ok());
    }

    /// A flush inside a batch (here: a txn that reads a past revision) records only the
    /// commands before it as applied, so a crash right after it replays exactly the rest.
    #[test]
    fn a_mid_batch_flush_records_what_it_covers() {
        use crate::mvcc::{RequestOp, TxnRequest};
        let dir = tempfile::tempdir().unwrap();
        let (store, _sm) = open(dir.path());
        let mut a = store.applier(false);
        a.apply(&WriteCommand::Put(PutRequest::new("a", "1"))).unwrap();
        a.set_done_marker(KEY_APPLIED, b"after-first".to_vec());
        let past = RangeRequest { revision: 2, ..RangeRequest::key("a") };
        let txn = TxnRequest { success: vec![RequestOp::Range(past)], ..Default::default() };
        a.apply(&WriteCommand::Put(PutRequest::new("b", "2"))).unwrap(); // dirty batch
        a.apply(&WriteCommand::Txn(TxnRequest {
            success: vec![RequestOp::Put(PutRequest::new("c", "3")), txn.success[0].clone()],
            ..Default::default()
        }))
        .unwrap();
        drop(a); // a crash before the final commit
        let marker = store.keyspaces().meta.get(KEY_APPLIED).unwrap().unwrap();
        assert_eq!(&*marker, b"after-first", "the flush wrote the caller's record");
        assert_eq!(store.range(&RangeRequest::key("b")).unwrap().count, 1, "flushed with it");
        assert_eq!(store.range(&RangeRequest::key("c")).unwrap().count, 0, "the txn itself was not");
    }

    #[test]
    fn snapshot_round_trip_and_damage_is_detected() {
        let src = tempfile::tempdir().unwrap();
        let (store, sm) = open(src.path());
        fill(&store, 500);
        let snap = sm.build().unwrap();
        // Install into a fresh state machine.
        let dst = tempfile::tempdir().unwrap();
        let (store2, sm2) = open(dst.path());
        fill(&store2, 3); // replaced by the snapshot
        let copy = dst.path().join("incoming.part");
        std::fs::copy(&snap.snapshot.path, &copy).unwrap();
        sm2.load_snapshot_file(&copy).unwrap();
        assert_eq!(store2.revision(), store.revision());
        let all = store2.range(&RangeRequest::prefix("k")).unwrap();
        assert_eq!(all.count, 500);
        // A flipped byte is refused before anything is touched.
        let mut bytes = std::fs::read(&snap.snapshot.path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let bad = dst.path().join("bad.part");
        std::fs::write(&bad, &bytes).unwrap();
        let err = sm2.load_snapshot_file(&bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(store2.range(&RangeRequest::prefix("k")).unwrap().count, 500, "state untouched");
        // A truncated file too.
        std::fs::write(&bad, &bytes[..mid]).unwrap();
        assert!(sm2.load_snapshot_file(&bad).is_err());
    }

    #[test]
    fn an_interrupted_install_is_finished_at_open() {
        let src = tempfile::tempdir().unwrap();
        let (store, sm) = open(src.path());
        fill(&store, 50);
        let snap = sm.build().unwrap();
        let path = snap.snapshot.path.clone();
        drop((sm, snap));
        // Simulate a crash after the marker was written and the keyspaces cleared.
        let mut batch = store.db().batch();
        for (_, ks) in store.keyspaces().tagged() {
            ks.clear().unwrap();
        }
        let marker_ks = store.db().keyspace("snapshot_meta", KeyspaceCreateOptions::default).unwrap();
        batch.insert(&marker_ks, KEY_INSTALLING, path.to_string_lossy().as_bytes());
        batch.commit().unwrap();
        drop(marker_ks);
        let db = store.db().clone();
        drop(store);
        let store = Arc::new(MvccStore::open(db).unwrap());
        assert_eq!(store.range(&RangeRequest::prefix("k")).unwrap().count, 0, "half-installed state");
        let _sm = StateMachine::open(store.clone(), src.path().join("snapshots"), None).unwrap();
        assert_eq!(store.range(&RangeRequest::prefix("k")).unwrap().count, 50, "install finished at open");
    }
}
