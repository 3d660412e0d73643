//! The data directory: lock, format marker, and the node's persisted identity.
//!
//! Layout: `LOCK` (held with `flock` while a node uses the dir), `FORMAT` (the format
//! marker), `db/` (the fjall database), `snapshots/` (state-machine snapshot files).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The format marker this build writes and reads.
pub(crate) const FORMAT: &str = "quorumkv-data-v2";

/// An exclusive lock on a data dir, released when dropped.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

/// Locks `dir` (creating it), checks its format marker and returns the lock.
pub(crate) fn lock_and_check(dir: &Path) -> Result<DataDirLock> {
    fs::create_dir_all(dir)?;
    let lock_path = dir.join("LOCK");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(Error::DataDirLocked { path: dir.display().to_string() });
        }
        Err(fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    check_format(dir)?;
    Ok(DataDirLock { _file: file })
}

fn check_format(dir: &Path) -> Result<()> {
    let marker = dir.join("FORMAT");
    let path = dir.display().to_string();
    match fs::read_to_string(&marker) {
        Ok(found) => {
            let found = found.trim().to_string();
            if found != FORMAT {
                return Err(Error::DataDirIncompatible { path, found, expected: FORMAT.into() });
            }
            let db = dir.join("db");
            // db/ missing: the first start was interrupted before anything was stored.
            if db.is_dir() && !db.join("version").is_file() {
                return Err(Error::DataDirCorrupted { path, detail: "the database has no version file".into() });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let foreign = fs::read_dir(dir)?.flatten().any(|e| e.file_name() != "LOCK");
            if foreign {
                return Err(Error::DataDirCorrupted {
                    path,
                    detail: "the directory is not empty but has no FORMAT marker (not a quorumkv data dir?)".into(),
                });
            }
            let tmp = dir.join("FORMAT.tmp");
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{FORMAT}\n").as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &marker)?;
            File::open(dir)?.sync_all()?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the fjall database of a locked data dir. Damage fjall reports (or panics on) is
/// returned as [`Error::DataDirCorrupted`].
///
/// The caller holds the data dir's `LOCK`, so a locked fjall database can only be the
/// previous instance of this node in this process, whose storage threads are still
/// finishing a flush or compaction after it stopped: wait for them (a few seconds at most).
pub(crate) fn open_db(dir: &Path, cache_size_bytes: u64) -> Result<Database> {
    let db_path = dir.join("db");
    let path = dir.display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let opened = loop {
        let opened = std::panic::catch_unwind(|| {
            Database::builder(&db_path)
                .cache_size(cache_size_bytes)
                .worker_threads(1)
                .max_cached_files(Some(128))
                .open()
        });
        match opened {
            Ok(Err(fjall::Error::Locked)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other,
        }
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(fjall::Error::Locked)) => Err(Error::DataDirLocked { path }),
        Ok(Err(e @ (fjall::Error::InvalidVersion(_) | fjall::Error::JournalRecovery(_)))) => {
            Err(Error::DataDirCorrupted { path, detail: format!("{e:?}") })
        }
        Ok(Err(e)) => Err(Error::DataDirCorrupted { path, detail: e.to_string() }),
        Err(_) => Err(Error::DataDirCorrupted { path, detail: "the storage engine could not read it".into() }),
    }
}

/// Bytes the data dir occupies on disk (allocated blocks, so the journal's sparse
/// preallocation is not counted).
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Where snapshot files live.
pub(crate) fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// The persisted identity of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub name: String,
    pub member_id: u64,
    /// 0 while a joining node has not been accepted yet.
    pub cluster_id: u64,
    /// The peer address the node last started with.
    pub peer_addr: String,
}

const KEY_IDENTITY: &[u8] = b"identity";

/// The keyspace holding the identity.
pub(crate) fn identity_keyspace(db: &Database) -> Result<Keyspace> {
    Ok(db.keyspace("node_meta", KeyspaceCreateOptions::default)?)
}

pub(crate) fn load_identity(ks: &Keyspace) -> Result<Option<Identity>> {
    match ks.get(KEY_IDENTITY)? {
        Some(v) => {
            Ok(Some(postcard::from_bytes(&v).map_err(|e| Error::Storage(format!("corrupt node identity: {e}")))?))
        }
        None => Ok(None),
    }
}

/// Writes the identity and syncs it to disk.
pub(crate) fn save_identity(db: &Database, ks: &Keyspace, id: &Identity) -> Result<()> {
    ks.insert(KEY_IDENTITY, postcard::to_allocvec(id).expect("encoding cannot fail"))?;
    db.persist(PersistMode::SyncData)?;
    Ok(())
}

/// A 64-bit FNV-1a hash: member and cluster ids derived from names and addresses must be
/// the same on every node and in every build, so no randomly seeded hasher is used.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xffu8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    if h == 0 {
        1
    } else {
        h
    }
}

/// etcd-style member id: derived from the member's name, peer address and cluster token.
pub(crate) fn member_id_of(name: &str, peer_addr: &str, token: &str) -> u64 {
    stable_hash(&[name.as_bytes(), peer_addr.as_bytes(), token.as_bytes()])
}

/// etcd-style cluster id: derived from the sorted initial member ids and the token.
pub(crate) fn cluster_id_of(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    stable_hash(&[&bytes, token.as_bytes()])
}

#[cfg(test)]
mod tests {
    use fjall::{KeyspaceCreateOptions, PersistMode};

    /// Length of the database's active (highest-numbered) journal file.
    fn active_journal_len(db_dir: &std::path::Path) -> u64 {
        let newest = std::fs::read_dir(db_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
            .max_by_key(|p| p.file_stem().unwrap().to_str().unwrap().parse::<u64>().unwrap())
            .expect("a journal file");
        std::fs::metadata(newest).unwrap().len()
    }

    /// A reopened database's active journal is pre-allocated again (the vendored fjall's
    /// `restore_preallocation`, so its syncs need not write a growing file size), and
    /// what is written after each reopen is found by the next one: the writer continues
    /// right after the valid entries, whose end the zeros after them still mark.
    #[test]
    fn a_reopened_journal_is_preallocated_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let value = vec![7u8; 300];
        for round in 0..4u32 {
            let db = super::open_db(dir.path(), 1 << 20).unwrap();
            let ks = db.keyspace("t", KeyspaceCreateOptions::default).unwrap();
            for i in 0..round * 100 {
                assert_eq!(ks.get(i.to_be_bytes()).unwrap().as_deref(), Some(&value[..]), "round {round}, key {i}");
            }
            assert_eq!(
                active_journal_len(&dir.path().join("db")),
                64 << 20,
                "round {round}: the active journal is not pre-allocated"
            );
            for i in round * 100..(round + 1) * 100 {
                ks.insert(i.to_be_bytes(), &value).unwrap();
            }
            db.persist(PersistMode::SyncData).unwrap();
        }
    }
}
