//! On-disk encodings of the MVCC keyspaces.
//!
//! - `kv`:   user key → [`KeyMeta`] (the revisions, version and lease of every live key;
//!   its value is in `hist`, at its mod revision)
//! - `hist`: `escape(user key) ++ 00 01 ++ revision(be64)` → [`HistRecord`] (every version,
//!   tombstones included, until compaction removes it; compaction always keeps a live
//!   key's current version, so `kv` never points at a removed one)
//! - `revs`: `revision(be64) ++ sub(be32)` → user key (the change log in revision order; the
//!   watch hub replays history from it)
//!
//! `escape` doubles every `00` byte as `00 ff`, and `00 01` terminates the key, so the
//! byte order of encoded keys is the byte order of user keys and a key range maps to one
//! contiguous range of `hist`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mvcc::types::KeyValue;

/// The latest state of a live key: its `kv` record ([`KeyMeta`]) with the value of its
/// current version, read from `hist`. Each value is stored once, in `hist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveRecord {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
}

impl LiveRecord {
    /// `meta` with `value`.
    pub fn of(meta: KeyMeta, value: Vec<u8>) -> Self {
        LiveRecord {
            create_revision: meta.create_revision,
            mod_revision: meta.mod_revision,
            version: meta.version,
            lease: meta.lease,
            value,
        }
    }

    pub fn meta(&self) -> KeyMeta {
        KeyMeta {
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }

    pub fn to_key_value(&self, key: &[u8], keys_only: bool) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: if keys_only { Vec::new() } else { self.value.clone() },
            lease: self.lease,
        }
    }
}

/// A live key's revisions and lease without its value: its `kv` record, and what applying
/// a write needs to know of the key's previous state unless the value itself is asked
/// for. The applier keeps one per live key in memory (see `MvccStore::index`), as etcd
/// keeps its key index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyMeta {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// One version of a key (the `hist` keyspace). The mod revision is in the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HistRecord {
    /// `None` for a tombstone (the key was deleted at this revision).
    pub live: Option<HistLive>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HistLive {
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl HistRecord {
    /// The value of a version that is not a tombstone (a tombstone has none).
    pub fn into_value(self) -> Option<Vec<u8>> {
        self.live.map(|l| l.value)
    }

    pub fn to_live(&self, mod_revision: i64) -> Option<LiveRecord> {
        self.live.as_ref().map(|l| LiveRecord {
            create_revision: l.create_revision,
            mod_revision,
            version: l.version,
            lease: l.lease,
            value: l.value.clone(),
        })
    }
}

/// [`HistRecord`]'s encoding written from a [`LiveRecord`] without copying its value:
/// postcard writes `&[u8]` and `Vec<u8>` (both through `serde_bytes`) the same way, so
/// the bytes decode as a `HistRecord`.
#[derive(Serialize)]
pub(crate) struct HistRecordRef<'a> {
    live: Option<HistLiveRef<'a>>,
}

#[derive(Serialize)]
struct HistLiveRef<'a> {
    create_revision: i64,
    version: i64,
    lease: i64,
    #[serde(with = "serde_bytes")]
    value: &'a [u8],
}

impl<'a> HistRecordRef<'a> {
    pub fn from_live(live: Option<&'a LiveRecord>) -> Self {
        HistRecordRef {
            live: live.map(|l| HistLiveRef {
                create_revision: l.create_revision,
                version: l.version,
                lease: l.lease,
                value: &l.value,
            }),
        }
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard encoding into a Vec cannot fail")
}

/// Encodes `v` into `buf` (cleared first) and returns the bytes: the apply loop reuses
/// one buffer instead of allocating a `Vec` per record.
pub(crate) fn encode_into<'b, T: Serialize>(v: &T, buf: &'b mut Vec<u8>) -> &'b [u8] {
    buf.clear();
    *buf = postcard::to_extend(v, std::mem::take(buf)).expect("postcard encoding into a Vec cannot fail");
    buf
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Storage(format!("corrupt {what} record: {e}")))
}

const TERMINATOR: [u8; 2] = [0x00, 0x01];

/// `escape(key) ++ 00 01`: the prefix of every `hist` entry of `key`.
pub(crate) fn hist_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + 8);
    push_hist_prefix(key, &mut out);
    out
}

fn push_hist_prefix(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&TERMINATOR);
}

/// The `hist` key of `key` at `revision`.
pub(crate) fn hist_key(key: &[u8], revision: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + 8);
    hist_key_into(key, revision, &mut out);
    out
}

/// [`hist_key`] written into `buf` (cleared first), for a caller reusing one buffer.
pub(crate) fn hist_key_into<'b>(key: &[u8], revision: i64, buf: &'b mut Vec<u8>) -> &'b [u8] {
    buf.clear();
    push_hist_prefix(key, buf);
    buf.extend_from_slice(&(revision as u64).to_be_bytes());
    buf
}

/// Splits a `hist` key into (user key, revision).
pub(crate) fn split_hist_key(encoded: &[u8]) -> Result<(Vec<u8>, i64)> {
    let corrupt = || Error::Storage("corrupt hist key".into());
    if encoded.len() < 10 {
        return Err(corrupt());
    }
    let (body, rev) = encoded.split_at(encoded.len() - 8);
    let revision = u64::from_be_bytes(rev.try_into().map_err(|_| corrupt())?) as i64;
    let body = body.strip_suffix(&TERMINATOR).ok_or_else(corrupt)?;
    let mut key = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        key.push(body[i]);
        if body[i] == 0 {
            if body.get(i + 1) != Some(&0xff) {
                return Err(corrupt());
            }
            i += 1;
        }
        i += 1;
    }
    Ok((key, revision))
}

/// The `revs` key of a change.
pub(crate) fn rev_key(revision: i64, sub: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&(revision as u64).to_be_bytes());
    out[8..].copy_from_slice(&sub.to_be_bytes());
    out
}

/// Splits a `revs` key into (revision, sub).
pub(crate) fn split_rev_key(encoded: &[u8]) -> Result<(i64, u32)> {
    if encoded.len() != 12 {
        return Err(Error::Storage("corrupt revs key".into()));
    }
    let rev = u64::from_be_bytes(encoded[..8].try_into().expect("length checked")) as i64;
    let sub = u32::from_be_bytes(encoded[8..].try_into().expect("length checked"));
    Ok((rev, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_keys_round_trip_and_keep_order() {
        let keys: Vec<&[u8]> =
            vec![b"", b"\x00", b"\x00\x00", b"\x00\x01", b"a", b"a\x00", b"a\x00b", b"a\x01", b"b", b"\xff"];
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(|k| hist_key(k, 7)).collect();
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(split_hist_key(e).unwrap(), (k.to_vec(), 7));
        }
        let sorted = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, sorted, "encoding must preserve user key order");
        assert!(hist_key(b"a", u64::MAX as i64 >> 1) < hist_key(b"a\x00", 0));
    }

    #[test]
    fn reused_buffers_encode_the_same_bytes() {
        let mut buf = b"left over from an earlier record".to_vec();
        for key in [&b"a\x00b"[..], b"k", b"\x00"] {
            assert_eq!(hist_key_into(key, 42, &mut buf), &hist_key(key, 42)[..]);
            assert!(buf.starts_with(&hist_prefix(key)) && buf.len() == hist_prefix(key).len() + 8);
            assert_eq!(split_hist_key(&buf).unwrap(), (key.to_vec(), 42));
        }
        let live = LiveRecord { create_revision: 3, mod_revision: 9, version: 4, lease: 77, value: vec![1, 2, 0, 255] };
        let bytes = encode_into(&HistRecordRef::from_live(Some(&live)), &mut buf).to_vec();
        let hist: HistRecord = decode(&bytes, "hist").unwrap();
        assert_eq!(hist.to_live(9), Some(live.clone()));
        let bytes = encode_into(&HistRecordRef::from_live(None), &mut buf).to_vec();
        assert_eq!(decode::<HistRecord>(&bytes, "hist").unwrap(), HistRecord { live: None });
        assert_eq!(encode_into(&live.meta(), &mut buf), &encode(&live.meta())[..]);
    }

    #[test]
    fn a_kv_record_is_the_meta_alone() {
        let live =
            LiveRecord { create_revision: 3, mod_revision: -9, version: 1 << 40, lease: 77, value: vec![7; 300] };
        let bytes = encode(&live.meta());
        assert!(bytes.len() < 32, "no value in a kv record: {} bytes", bytes.len());
        assert_eq!(decode::<KeyMeta>(&bytes, "kv").unwrap(), live.meta());
        assert_eq!(LiveRecord::of(live.meta(), live.value.clone()), live);
        assert!(matches!(decode::<KeyMeta>(&[0x80], "kv"), Err(Error::Storage(_))));
    }

    #[test]
    fn rev_keys_sort_by_revision_then_sub() {
        assert!(rev_key(1, 5) < rev_key(2, 0));
        assert!(rev_key(2, 0) < rev_key(2, 1));
        assert_eq!(split_rev_key(&rev_key(300, 9)).unwrap(), (300, 9));
    }
}
