//! The matching policies the simulations install: deterministic, with opinions, so that vetoes
//! and scores are exercised.

use allocate_core::{Candidate, MatchPolicy, Requirements};
use std::sync::Arc;

/// Which policy a simulation installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// [`Picky`], whose choices [`crate::reference`] predicts.
    Picky,
    /// [`Quirky`], whose choices nothing predicts (only the safety invariants are checked).
    Quirky,
}

impl Policy {
    /// The policy as the engine takes it.
    pub fn install(self) -> Arc<dyn MatchPolicy> {
        match self {
            Policy::Picky => Arc::new(Picky),
            Policy::Quirky => Arc::new(Quirky),
        }
    }
}

/// Whether [`Picky`] forbids a resource with `cpu_count` CPUs to `req`: "bob" never takes a
/// one-CPU box.
pub fn picky_veto(req: &Requirements, cpu_count: u64) -> bool {
    req.username == "bob" && cpu_count == 1
}

/// [`Picky`]'s score: "alice" prefers devices; everyone else has no opinion.
pub fn picky_score(req: &Requirements, kind: &str) -> Option<i64> {
    (req.username == "alice").then(|| i64::from(kind == "device"))
}

/// A policy of two plain rules ([`picky_veto`], [`picky_score`]) that the reference scan
/// applies too.
#[derive(Debug)]
pub struct Picky;

impl MatchPolicy for Picky {
    fn veto(&self, request: &Requirements, candidate: &Candidate<'_>) -> bool {
        picky_veto(request, candidate.spec.cpu_count)
    }

    fn score(&self, request: &Requirements, candidate: &Candidate<'_>) -> Option<i64> {
        picky_score(request, &candidate.spec.kind)
    }
}

/// A policy whose veto and score depend on ids and sizes in ways no reference models.
#[derive(Debug)]
pub struct Quirky;

impl MatchPolicy for Quirky {
    fn veto(&self, request: &Requirements, candidate: &Candidate<'_>) -> bool {
        (candidate.inventory_id.as_u128() % 7) as usize == request.username.len() % 7
    }

    fn score(&self, _request: &Requirements, candidate: &Candidate<'_>) -> Option<i64> {
        (candidate.spec.cpu_count % 3 != 0).then_some((candidate.spec.memory_gb % 5) as i64)
    }
}
