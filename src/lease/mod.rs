//! The lessor: lease deadlines, kept in memory on every node and acted on by the leader.
//!
//! Which leases exist, their TTLs and their keys are replicated state (the MVCC store);
//! deadlines are not. Every node tracks a deadline per lease from the moment it applies
//! the grant, but only the leader renews them (keep-alives go to the leader) and expires
//! them, by proposing a revoke through Raft, so every node deletes the same keys at the
//! same revision. A node that becomes leader first pushes every deadline to
//! `now + TTL` (etcd's `Promote`), so a leader change never expires a lease early.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mvcc::{LeaseChange, LeaseRecord};

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    ttl: i64,
}

/// Lease deadlines of one node. Thread-safe; every method is quick (no I/O).
#[derive(Debug, Default)]
pub(crate) struct Lessor {
    leases: Mutex<HashMap<i64, Deadline>>,
    /// Signalled when a lease is granted, so the expiry task recomputes its sleep.
    pub(crate) changed: tokio::sync::Notify,
    /// The term in which this node last took over the deadlines as leader.
    primary_term: Mutex<u64>,
}

fn after(now: Instant, ttl_secs: i64) -> Instant {
    now + Duration::from_secs(ttl_secs.max(0) as u64)
}

/// Deadlines starting now for `leases`.
fn deadlines_from_now(leases: &[(i64, LeaseRecord)]) -> HashMap<i64, Deadline> {
    let now = Instant::now();
    leases.iter().map(|(id, r)| (*id, Deadline { at: after(now, r.ttl), ttl: r.ttl })).collect()
}

impl Lessor {
    /// A lessor for the leases found in the store at start (deadlines from now).
    pub(crate) fn new(leases: &[(i64, LeaseRecord)]) -> Self {
        Lessor {
            leases: Mutex::new(deadlines_from_now(leases)),
            changed: tokio::sync::Notify::new(),
            primary_term: Mutex::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Deadline>> {
        self.leases.lock().expect("lessor lock")
    }

    /// Follows the grants and revocations an apply batch made.
    pub(crate) fn apply(&self, changes: &[LeaseChange]) {
        if changes.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut leases = self.lock();
        if changes.iter().any(|c| matches!(c, LeaseChange::Granted { .. })) {
            self.changed.notify_one();
        }
        for c in changes {
            match *c {
                LeaseChange::Granted { id, ttl } => {
                    leases.insert(id, Deadline { at: after(now, ttl), ttl });
                }
                LeaseChange::Revoked { id } => {
                    leases.remove(&id);
                }
            }
        }
    }

    /// Replaces everything with the leases of a freshly installed snapshot.
    pub(crate) fn reset(&self, leases: &[(i64, LeaseRecord)]) {
        *self.lock() = deadlines_from_now(leases);
    }

    /// Called by the leader before it acts on deadlines: the first call in a new term
    /// refreshes every deadline (see [`Lessor::refresh_all`]).
    pub(crate) fn ensure_primary(&self, term: u64) {
        let mut primary = self.primary_term.lock().expect("lessor term lock");
        if *primary != term {
            self.refresh_all();
            *primary = term;
        }
    }

    /// A new leader's first act: every deadline becomes `now + TTL`.
    pub(crate) fn refresh_all(&self) {
        let now = Instant::now();
        for d in self.lock().values_mut() {
            d.at = after(now, d.ttl);
        }
    }

    /// Renews a lease (a keep-alive on the leader); returns its TTL, or `None` when the
    /// lease does not exist or has already expired (its revoke is under way).
    pub(crate) fn renew(&self, id: i64) -> Option<i64> {
        let now = Instant::now();
        let mut leases = self.lock();
        let d = leases.get_mut(&id)?;
        if d.at <= now {
            return None;
        }
        d.at = after(now, d.ttl);
        Some(d.ttl)
    }

    /// Seconds left (rounded up, as etcd reports them; 0 once expired) and the granted TTL.
    pub(crate) fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let now = Instant::now();
        let leases = self.lock();
        let d = leases.get(&id)?;
        let left = d.at.saturating_duration_since(now);
        Some((left.as_millis().div_ceil(1000) as i64, d.ttl))
    }

    /// The earliest deadline, if any lease exists.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lock().values().map(|d| d.at).min()
    }

    /// Leases whose deadline has passed, at most `max` of them, earliest first.
    pub(crate) fn expired(&self, max: usize) -> Vec<i64> {
        let now = Instant::now();
        let leases = self.lock();
        let mut due: Vec<(Instant, i64)> =
            leases.iter().filter(|(_, d)| d.at <= now).map(|(id, d)| (d.at, *id)).collect();
        due.sort_unstable();
        due.truncate(max);
        due.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_renew_expire_and_refresh() {
        let l = Lessor::new(&[(1, LeaseRecord { ttl: 0 }), (2, LeaseRecord { ttl: 100 })]);
        assert_eq!(l.expired(10), vec![1], "a zero TTL is due at once");
        assert_eq!(l.renew(1), None, "an expired lease cannot be renewed");
        assert_eq!(l.renew(2), Some(100));
        let (left, ttl) = l.remaining(2).unwrap();
        assert!((99..=100).contains(&left) && ttl == 100);
        l.apply(&[LeaseChange::Revoked { id: 1 }, LeaseChange::Granted { id: 3, ttl: 5 }]);
        assert_eq!(l.remaining(1), None);
        assert!(l.remaining(3).is_some());
        l.refresh_all();
        assert!(l.expired(10).is_empty());
        l.reset(&[]);
        assert_eq!(l.remaining(2), None);
    }
}
