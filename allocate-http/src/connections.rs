//! How many connections the server holds open, in total and per peer address, and the
//! refusals beyond those caps.
//!
//! Bounds, and what happens at each:
//! - Open connections: at most [`Caps::total_max`] (plain HTTP and websockets alike, since
//!   each holds a file descriptor) and at most [`Caps::per_peer_max`] from one address. The
//!   next connection is answered `503` and closed ([`Refusal`]).
//! - Peers tracked: one counter per address with an open connection, so at most
//!   `total_max` of them; an address's counter goes with its last connection.
//! - The log: one line per cap and per [`LOG_EVERY`] at most, counting the refusals it stood
//!   for, so a flood cannot flood the log too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The shortest time between two log lines about the same cap.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connection caps in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Open connections at most, from everyone together.
    pub total_max: usize,
    /// Open connections at most from one peer address.
    pub per_peer_max: usize,
}

/// Why a connection was turned away. The message is the `503` answer's sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The server holds `total_max` connections already.
    #[error("the server holds {0} connections, its limit (--connections-max); try again later")]
    Total(usize),
    /// This address holds `per_peer_max` connections already.
    #[error(
        "{peer} holds {max} connections, the limit per address \
         (--connections-per-peer-max); close some and try again"
    )]
    Peer {
        /// The address.
        peer: IpAddr,
        /// The cap.
        max: usize,
    },
}

/// What the gate counted, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections open now.
    pub open: u64,
    /// Connections refused because of the total cap, since start.
    pub refused_total: u64,
    /// Connections refused because of the per-address cap, since start.
    pub refused_peer: u64,
}

/// Counts open connections against the [`Caps`]. Cheap to clone; clones share the counts.
#[derive(Clone, Debug)]
pub struct Gate(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    caps: Caps,
    /// Locked once per accept and once per close, never across an `.await`.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    per_peer: HashMap<IpAddr, usize>,
    refused_total: u64,
    refused_peer: u64,
    log_total: LogLimiter,
    log_peer: LogLimiter,
}

/// One open connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    gate: Gate,
    peer: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        state.open -= 1;
        if let Some(n) = state.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                state.per_peer.remove(&self.peer);
            }
        }
    }
}

/// A refusal, and whether (and for how many refusals) to log it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub refusal: Refusal,
    /// `Some(n)`: log it now, standing for `n` refusals of this cap since the last line.
    pub log: Option<u64>,
}

impl Gate {
    /// A gate with nothing open.
    pub fn new(caps: Caps) -> Gate {
        Gate(Arc::new(Inner {
            caps,
            state: Mutex::default(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while held leaves plain counters behind.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection from `peer`, or why there is none.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Result<Permit, Refused> {
        let peer = peer.to_canonical();
        let caps = self.0.caps;
        let mut state = self.state();
        let state = &mut *state;
        let from_peer = state.per_peer.get(&peer).copied().unwrap_or(0);
        let refusal = if state.open >= caps.total_max {
            state.refused_total += 1;
            Refusal::Total(caps.total_max)
        } else if from_peer >= caps.per_peer_max {
            state.refused_peer += 1;
            Refusal::Peer {
                peer,
                max: caps.per_peer_max,
            }
        } else {
            state.open += 1;
            *state.per_peer.entry(peer).or_insert(0) += 1;
            return Ok(Permit {
                gate: self.clone(),
                peer,
            });
        };
        let limiter = match refusal {
            Refusal::Total(_) => &mut state.log_total,
            Refusal::Peer { .. } => &mut state.log_peer,
        };
        Err(Refused {
            refusal,
            log: limiter.hit(now),
        })
    }

    /// What was counted so far.
    pub fn counts(&self) -> Counts {
        let state = self.state();
        Counts {
            open: state.open as u64,
            refused_total: state.refused_total,
            refused_peer: state.refused_peer,
        }
    }
}

/// Lets one log line through per [`LOG_EVERY`], counting the events in between.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last: Option<Instant>,
    /// Events since the last line, this one included once it is let through.
    pending: u64,
}

impl LogLimiter {
    /// Counts an event; `Some(n)` when a line is due now, standing for `n` events.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < LOG_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_hold_in_total_and_per_address_and_places_come_back() {
        let gate = Gate::new(Caps {
            total_max: 3,
            per_peer_max: 2,
        });
        let now = Instant::now();
        let a1 = gate.admit(ip(1), now).expect("room");
        let _a2 = gate.admit(ip(1), now).expect("room");
        let refused = gate.admit(ip(1), now).expect_err("per address");
        assert_eq!(
            refused.refusal,
            Refusal::Peer {
                peer: ip(1),
                max: 2
            }
        );
        assert_eq!(refused.log, Some(1));
        let _b1 = gate.admit(ip(2), now).expect("another address");
        let refused = gate.admit(ip(3), now).expect_err("in total");
        assert_eq!(refused.refusal, Refusal::Total(3));
        assert!(refused.refusal.to_string().contains("--connections-max"));
        drop(a1);
        let _a3 = gate.admit(ip(1), now).expect("a place came back");
        assert_eq!(
            gate.counts(),
            Counts {
                open: 3,
                refused_total: 1,
                refused_peer: 1
            }
        );
    }

    #[test]
    fn an_address_seen_as_ipv6_counts_as_its_ipv4_self() {
        let gate = Gate::new(Caps {
            total_max: 10,
            per_peer_max: 1,
        });
        let now = Instant::now();
        let _v4 = gate.admit(ip(1), now).expect("room");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(gate.admit(mapped, now).is_err());
    }

    #[test]
    fn the_log_speaks_once_per_interval_for_every_refusal_in_between() {
        let mut limiter = LogLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.hit(start), Some(1));
        assert_eq!(limiter.hit(start + Duration::from_secs(1)), None);
        assert_eq!(limiter.hit(start + Duration::from_secs(2)), None);
        assert_eq!(limiter.hit(start + LOG_EVERY), Some(3));
        assert_eq!(limiter.hit(start + LOG_EVERY), None);
    }
}
