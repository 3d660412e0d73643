//! State-machine snapshots as files, written and read as streams.
//!
//! Layout: `QKVSNAP\x01`, `u32` meta length, meta (postcard [`SnapshotMeta`]), then records
//! `tag u8, key_len u32, value_len u32, key, value` (tag = keyspace), then tag `0` and a
//! CRC32 of every byte before it. Building iterates a fjall snapshot and never holds the
//! state in memory; loading checks the CRC in a first pass before touching the store.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fjall::{Database, Readable};

use super::codec::{decode_io, encode};
use super::SnapshotMeta;
use crate::mvcc::MvccKeyspaces;

const MAGIC: &[u8; 8] = b"QKVSNAP\x02";
/// Bytes per fjall batch when loading.
const LOAD_BATCH_BYTES: usize = 4 << 20;

/// A snapshot on disk: the data openraft moves around for us.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// The file; it is never modified after it is complete.
    pub path: PathBuf,
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R: Read> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

fn corrupt(path: &Path, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snapshot {} is damaged: {what}", path.display()))
}

/// Writes a snapshot of `snap` (a consistent fjall view) with `meta` to `path`, fsynced.
pub(crate) fn write(path: &Path, meta: &SnapshotMeta, ks: &MvccKeyspaces, snap: &fjall::Snapshot) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp)?;
    let mut w = CrcWriter { inner: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    w.write_all(MAGIC)?;
    let meta_bytes = encode(meta);
    w.write_all(&(meta_bytes.len() as u32).to_le_bytes())?;
    w.write_all(&meta_bytes)?;
    for (tag, keyspace) in ks.tagged() {
        for g in snap.iter(keyspace) {
            let (k, v) = g.into_inner().map_err(super::io_err)?;
            w.write_all(&[tag])?;
            w.write_all(&(k.len() as u32).to_le_bytes())?;
            w.write_all(&(v.len() as u32).to_le_bytes())?;
            w.write_all(&k)?;
            w.write_all(&v)?;
        }
    }
    w.write_all(&[0])?;
    let crc = w.crc.clone().finalize();
    let mut buf = w.inner;
    buf.write_all(&crc.to_le_bytes())?;
    let file = buf.into_inner().map_err(|e| e.into_error())?;
    file.sync_data()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_header<R: Read>(r: &mut R, path: &Path) -> io::Result<SnapshotMeta> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| corrupt(path, "too short"))?;
    if &magic != MAGIC {
        return Err(corrupt(path, "bad magic (not a quorumkv snapshot, or another version)"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut meta = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut meta).map_err(|_| corrupt(path, "truncated meta"))?;
    decode_io(&meta, "snapshot meta")
}

/// Reads only the meta of a snapshot file.
pub(crate) fn read_meta(path: &Path) -> io::Result<SnapshotMeta> {
    read_header(&mut BufReader::new(File::open(path)?), path)
}

/// Streams every record of a snapshot to `f`, then checks the CRC.
fn for_each_record(path: &Path, mut f: impl FnMut(u8, Vec<u8>, Vec<u8>) -> io::Result<()>) -> io::Result<SnapshotMeta> {
    let file = File::open(path)?;
    let mut r = CrcReader { inner: BufReader::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    let meta = read_header(&mut r, path)?;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(|_| corrupt(path, "truncated"))?;
        if tag[0] == 0 {
            break;
        }
        let mut lens = [0u8; 8];
        r.read_exact(&mut lens).map_err(|_| corrupt(path, "truncated"))?;
        let klen = u32::from_le_bytes(lens[..4].try_into().expect("4 bytes")) as usize;
        let vlen = u32::from_le_bytes(lens[4..].try_into().expect("4 bytes")) as usize;
        if klen > 1 << 16 || vlen > 1 << 30 {
            return Err(corrupt(path, "record length out of range"));
        }
        let mut k = vec![0u8; klen];
        let mut v = vec![0u8; vlen];
        r.read_exact(&mut k).map_err(|_| corrupt(path, "truncated"))?;
        r.read_exact(&mut v).map_err(|_| corrupt(path, "truncated"))?;
        f(tag[0], k, v)?;
    }
    let expected = r.crc.clone().finalize();
    let mut crc = [0u8; 4];
    r.inner.read_exact(&mut crc).map_err(|_| corrupt(path, "missing checksum"))?;
    if u32::from_le_bytes(crc) != expected {
        return Err(corrupt(path, "checksum mismatch"));
    }
    Ok(meta)
}

/// Checks a snapshot file end to end without loading it.
pub(crate) fn verify(path: &Path) -> io::Result<SnapshotMeta> {
    for_each_record(
        path,
        |tag, _, _| {
            if (1..=4).contains(&tag) {
                Ok(())
            } else {
                Err(corrupt(path, "unknown record tag"))
            }
        },
    )
}

/// Replaces the contents of the MVCC keyspaces with the snapshot's, in bounded batches.
/// The caller verified the file first and guards against a crash half-way.
pub(crate) fn load(path: &Path, db: &Database, ks: &MvccKeyspaces) -> io::Result<SnapshotMeta> {
    for (_, keyspace) in ks.tagged() {
        keyspace.clear().map_err(super::io_err)?;
    }
    let mut batch = db.batch();
    let mut pending = 0usize;
    let meta = for_each_record(path, |tag, k, v| {
        let keyspace = ks.tagged().into_iter().find(|(t, _)| *t == tag).map(|(_, k)| k.clone());
        let keyspace = keyspace.ok_or_else(|| corrupt(path, "unknown record tag"))?;
        pending += k.len() + v.len();
        batch.insert(&keyspace, k, v);
        if pending >= LOAD_BATCH_BYTES {
            std::mem::replace(&mut batch, db.batch()).commit().map_err(super::io_err)?;
            pending = 0;
        }
        Ok(())
    })?;
    batch.commit().map_err(super::io_err)?;
    Ok(meta)
}
