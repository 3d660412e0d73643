//! Reading the change history back as events (the watch hub's catch-up path).

use fjall::Readable;

use super::encoding::{decode, hist_key, rev_key, split_rev_key, HistRecord};
use super::store::MvccStore;
use super::types::*;
use crate::error::{Error, Result};

/// Events read from the stored history.
#[derive(Debug, Default)]
pub(crate) struct HistoryBatch {
    /// Events in revision order; a revision is never split.
    pub events: Vec<Event>,
    /// Every revision up to and including this one has been read (all of its events are
    /// in `events` or were read before).
    pub through: i64,
}

impl MvccStore {
    /// The events of revisions `from..`, about `max_events` of them (whole revisions only),
    /// read from one consistent view. `prev_kv` adds each event's previous version.
    ///
    /// Errors: `Compacted` when `from` is below the compaction point (etcd: a watch may
    /// start at the compact revision, not below it).
    pub(crate) fn events_since(&self, from: i64, max_events: usize, prev_kv: bool) -> Result<HistoryBatch> {
        let view = self.read_view()?;
        if from < view.compact {
            return Err(Error::Compacted { compact_revision: view.compact });
        }
        let ks = self.keyspaces();
        let mut out = HistoryBatch { events: Vec::new(), through: view.revision };
        if from > view.revision {
            return Ok(out);
        }
        let end = rev_key(view.revision + 1, 0);
        let mut last_rev = from - 1;
        for g in view.snap.range(&ks.revs, rev_key(from, 0).to_vec()..end.to_vec()) {
            let (k, key) = g.into_inner()?;
            let (rev, _) = split_rev_key(&k)?;
            if rev != last_rev {
                if out.events.len() >= max_events {
                    out.through = last_rev;
                    return Ok(out);
                }
                last_rev = rev;
            }
            // A missing version is a tombstone that compaction removed at the compact revision.
            let rec: Option<HistRecord> = match view.snap.get(&ks.hist, hist_key(&key, rev))? {
                Some(v) => Some(decode(&v, "hist")?),
                None => None,
            };
            let kv = rec.as_ref().and_then(|r| r.to_live(rev)).map(|l| l.to_key_value(&key, false));
            let prev = if prev_kv { previous_version(&view.snap, ks, &key, rev)? } else { None };
            out.events.push(Event::of_change(&key, rev, kv, prev));
        }
        Ok(out)
    }
}

/// The live version of `key` just before revision `rev`, if there is one.
fn previous_version(
    snap: &fjall::Snapshot,
    ks: &super::MvccKeyspaces,
    key: &[u8],
    rev: i64,
) -> Result<Option<KeyValue>> {
    let Some(g) = snap.range(&ks.hist, hist_key(key, 0)..hist_key(key, rev)).next_back() else {
        return Ok(None);
    };
    let (k, v) = g.into_inner()?;
    let prev_rev =
        u64::from_be_bytes(k[k.len() - 8..].try_into().map_err(|_| Error::Storage("corrupt hist key".into()))?);
    let rec: HistRecord = decode(&v, "hist")?;
    Ok(rec.to_live(prev_rev as i64).map(|l| l.to_key_value(key, false)))
}
