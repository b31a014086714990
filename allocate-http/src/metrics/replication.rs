//! The role of a server on a PostgreSQL store and, on a standby, how far behind the leader
//! its warm engine is: set by the thread that waits, follows and takes over
//! (`journal::postgres`), read by `/metrics` on either role.

use super::family;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What a server on a shared store knows of its role and of the journal it follows.
#[derive(Debug)]
pub struct Replication {
    /// Whether this server is the writer.
    leader: AtomicBool,
    /// Leader changes seen: new epochs, this server's own takeover included.
    changes: AtomicU64,
    /// The last epoch seen (0: none yet).
    epoch: AtomicU64,
    /// Records the leader committed that this standby has not applied.
    behind: AtomicU64,
    /// The start of the last catch-up after which this standby had applied every record the
    /// leader had committed (the server's start until it first has).
    caught_up: Mutex<Instant>,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            leader: AtomicBool::new(false),
            changes: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            behind: AtomicU64::new(0),
            caught_up: Mutex::new(Instant::now()),
        }
    }
}

impl Replication {
    /// Records a standby's catch-up that `began` then: the leader, at `epoch`, had committed
    /// up to record `committed`, and this server has applied up to `applied`. Caught up, the
    /// standby has everything committed before `began` (what it read was of a later moment).
    pub fn followed(&self, epoch: u64, committed: u64, applied: u64, began: Instant) {
        let seen = self.epoch.swap(epoch, Ordering::Relaxed);
        if seen != 0 {
            self.changes
                .fetch_add(epoch.saturating_sub(seen), Ordering::Relaxed);
        }
        let behind = committed.saturating_sub(applied);
        self.behind.store(behind, Ordering::Relaxed);
        if behind == 0 {
            if let Ok(mut at) = self.caught_up.lock() {
                *at = (*at).max(began);
            }
        }
    }

    /// Records that this server became the writer, at `epoch`: one leader change at least.
    pub fn lead(&self, epoch: u64) {
        let seen = self.epoch.swap(epoch, Ordering::Relaxed);
        let changes = if seen == 0 {
            1
        } else {
            epoch.saturating_sub(seen).max(1)
        };
        self.changes.fetch_add(changes, Ordering::Relaxed);
        self.behind.store(0, Ordering::Relaxed);
        self.leader.store(true, Ordering::Relaxed);
    }

    /// Appends the role and replication families.
    pub fn render(&self, out: &mut String) {
        let leader = self.leader.load(Ordering::Relaxed);
        let roles = [("leader", leader), ("standby", !leader)]
            .map(|(role, is)| (format!("role=\"{role}\""), u8::from(is)));
        family(
            out,
            "allocate_role",
            "gauge",
            "1 for this server's role on the store (leader or standby), 0 for the other.",
            roles,
        );
        let one = |n| [(String::new(), n)];
        family(
            out,
            "allocate_leader_changes_total",
            "counter",
            "Changes of the store's leader (new epochs) this server saw, its own takeover included.",
            one(self.changes.load(Ordering::Relaxed)),
        );
        family(
            out,
            "allocate_store_epoch",
            "gauge",
            "The epoch of the store's leader, as this server last saw it.",
            one(self.epoch.load(Ordering::Relaxed)),
        );
        family(
            out,
            "allocate_replication_lag_records",
            "gauge",
            "Records the leader committed that this standby had not applied at its last catch-up (0 on the leader).",
            one(self.behind.load(Ordering::Relaxed)),
        );
        let lag_secs = match self.caught_up.lock() {
            Ok(at) if !leader => at.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        family(
            out,
            "allocate_replication_lag_seconds",
            "gauge",
            "Seconds since the start of the last catch-up that left this standby with every record the leader had committed (0 on the leader).",
            [(String::new(), format!("{lag_secs:.3}"))],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` in `text`.
    fn sample<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    #[test]
    fn a_standby_counts_new_epochs_and_records_behind_then_leads() {
        let r = Replication::default();
        r.followed(3, 10, 7, Instant::now());
        r.followed(5, 12, 12, Instant::now());
        let mut text = String::new();
        r.render(&mut text);
        assert_eq!(sample(&text, "allocate_role{role=\"standby\"}"), "1");
        assert_eq!(sample(&text, "allocate_role{role=\"leader\"}"), "0");
        assert_eq!(sample(&text, "allocate_leader_changes_total"), "2");
        assert_eq!(sample(&text, "allocate_store_epoch"), "5");
        assert_eq!(sample(&text, "allocate_replication_lag_records"), "0");
        let lag: f64 = sample(&text, "allocate_replication_lag_seconds")
            .parse()
            .expect("a number");
        assert!(lag < 60.0, "{text}");
        r.lead(6);
        let mut text = String::new();
        r.render(&mut text);
        assert_eq!(sample(&text, "allocate_role{role=\"leader\"}"), "1");
        assert_eq!(sample(&text, "allocate_leader_changes_total"), "3");
        assert_eq!(sample(&text, "allocate_replication_lag_seconds"), "0.000");
    }

    #[test]
    fn a_server_that_starts_as_the_writer_saw_one_change() {
        let r = Replication::default();
        r.lead(4);
        let mut text = String::new();
        r.render(&mut text);
        assert_eq!(sample(&text, "allocate_leader_changes_total"), "1");
    }
}
