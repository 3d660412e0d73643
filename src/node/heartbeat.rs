//! The leader's heartbeat clock, kept apart from openraft's election tick.
//!
//! openraft drives both elections and heartbeats from one tick that fires every
//! `heartbeat_interval * 13 / 64`: 40 ms for the default 200 ms heartbeat, 25 wakeups a
//! second on every member, idle or not. On this project's 2-core machine each wakeup costs a
//! context switch or two, and those ticks were most of an idle cluster's CPU.
//!
//! So the node gives openraft a longer heartbeat interval ([`raft_heartbeat_interval`], half
//! the election timeout), which only paces the election tick and a few timeouts, switches
//! openraft's own heartbeats off, and runs this task instead:
//!
//! - on the leader it sends a heartbeat every configured `heartbeat_interval_ms` and turns the
//!   tick off: a leader does not check an election timer. A leader with no other member
//!   (voter or learner) sends none, so an idle one-node cluster has no heartbeat timer;
//! - on every other member it turns the tick back on, so followers, candidates and learners
//!   keep their election timers, at a granularity of a tenth of the election timeout.
//!
//! It watches only the server metrics (state, vote, leader, membership), which change on
//! elections and membership changes, so it costs nothing between them.

use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;
use openraft::ServerState;
use tokio::time::{Instant, MissedTickBehavior};

use super::NodeConfig;
use crate::raft::Raft;

/// The heartbeat interval handed to openraft. It sets openraft's tick (13/64 of it) and the
/// timeouts of its AppendEntries and heartbeat RPCs; heartbeats themselves come from
/// [`drive`] at the configured interval. Half the election timeout keeps the tick at about a
/// tenth of it, and never below the configured heartbeat interval; it is below
/// `election_timeout_ms`, as openraft requires, because `NodeConfig::validate` checks that
/// the heartbeat interval is.
pub(super) fn raft_heartbeat_interval(cfg: &NodeConfig) -> u64 {
    cfg.heartbeat_interval_ms.max(cfg.election_timeout_ms / 2)
}

/// Sends the leader's heartbeats every `every`, and switches openraft's tick off while this
/// node leads and on while it does not. Returns when Raft shuts down. openraft's own
/// heartbeats are off in its config (`enable_heartbeat: false`); `trigger().heartbeat()`
/// sends one regardless.
pub(super) async fn drive(raft: Raft, every: Duration) {
    let mut rx = raft.server_metrics();
    loop {
        let (leading, alone) = {
            let m = rx.borrow_watched();
            // Learners count: they too watch for the leader's contact. A leader that a
            // membership change removed still heartbeats the others until it steps down.
            let others = m.membership_config.membership().nodes().any(|(id, _)| *id != m.id);
            (m.state == ServerState::Leader, !others)
        };
        raft.runtime_config().tick(!leading);
        // A lone member has nobody to send heartbeats to; a membership change wakes it.
        if !leading || alone {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut beat = tokio::time::interval_at(Instant::now() + every, every);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    if raft.trigger().heartbeat().await.is_err() {
                        return;
                    }
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every timing `NodeConfig::validate` accepts gives openraft a heartbeat interval it
    /// accepts too, never below the configured one and below the election timeout, so the
    /// tick stays under 13/64 of the election timeout (a tenth with the default heartbeat).
    #[test]
    fn every_valid_timing_gives_openraft_a_valid_config() {
        let mut checked = 0;
        for election in [2, 3, 10, 300, 1000, 1001, 5000] {
            for heartbeat in [1, 2, election / 3, election / 2, election / 2 + 1, election - 1] {
                let mut cfg = NodeConfig::new("n", "/nonexistent", "127.0.0.1:1");
                cfg.heartbeat_interval_ms = heartbeat.max(1);
                cfg.election_timeout_ms = election;
                if cfg.validate().is_err() {
                    continue;
                }
                let interval = raft_heartbeat_interval(&cfg);
                assert!(interval >= cfg.heartbeat_interval_ms && interval < election, "{heartbeat}/{election}");
                let raft = openraft::Config {
                    heartbeat_interval: interval,
                    election_timeout_min: election,
                    election_timeout_max: election * 2,
                    ..Default::default()
                };
                raft.validate().unwrap_or_else(|e| panic!("{heartbeat}/{election}: {e}"));
                checked += 1;
            }
        }
        assert!(checked >= 35, "only {checked} timings were valid");
        let defaults = NodeConfig::new("n", "/nonexistent", "127.0.0.1:1");
        assert_eq!(raft_heartbeat_interval(&defaults), 500, "a tick every ~100 ms by default");
    }
}
