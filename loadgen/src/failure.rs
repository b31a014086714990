//! What went wrong in a simulated client, and the tally of it: every failure counts as an
//! error in the report, grouped by kind, with the first few details kept for the reader.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

/// Details kept per kind of failure; later ones are only counted.
const DETAILS_MAX: usize = 3;

/// One failure: a short kind (the report's grouping) and what happened.
#[derive(Debug)]
pub struct Failure {
    /// A short snake_case name such as `ws_connect` or `unexpected_message`.
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
}

impl Failure {
    /// A failure of this kind.
    pub fn new(kind: &'static str, detail: impl fmt::Display) -> Failure {
        Failure {
            kind,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// Failures counted by kind, shared by every simulated client of a scenario.
#[derive(Debug)]
pub struct Tally {
    started: Instant,
    kinds: Mutex<BTreeMap<&'static str, (u64, Vec<String>)>>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            started: Instant::now(),
            kinds: Mutex::default(),
        }
    }
}

impl Tally {
    /// Counts one failure.
    pub fn record(&self, failure: &Failure) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let (count, details) = kinds.entry(failure.kind).or_default();
        *count += 1;
        if details.len() < DETAILS_MAX {
            let at = self.started.elapsed().as_secs_f64();
            details.push(format!("at {at:.1} s: {}", failure.detail));
        }
    }

    /// How many failures were counted.
    pub fn total(&self) -> u64 {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds.values().map(|(n, _)| n).sum()
    }

    /// One line per kind: its count and first details.
    pub fn lines(&self) -> Vec<String> {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds
            .iter()
            .map(|(kind, (n, details))| format!("{n} x {kind}: {}", details.join(" | ")))
            .collect()
    }
}
