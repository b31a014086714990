//! Pluggable matching: a policy can veto candidates and score them, refining the default best fit.

use crate::model::{Requirements, ResourceSpec};
use std::fmt;
use uuid::Uuid;

/// A resource the engine is considering for a request.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The resource's id.
    pub inventory_id: Uuid,
    /// The agent that owns it.
    pub agent_id: Uuid,
    /// What the agent registered.
    pub spec: &'a ResourceSpec,
}

/// A matching policy. Both hooks default to "no opinion", so the default best fit stands.
///
/// The engine only shows a policy resources that already satisfy the request, best fit first,
/// at most [`crate::Config::policy_candidates_max`] of them. A policy must be deterministic
/// (same arguments, same answer) or replaying a journal will not reproduce the state.
pub trait MatchPolicy: Send + Sync + fmt::Debug {
    /// `true` to forbid giving `candidate` to `request`.
    fn veto(&self, request: &Requirements, candidate: &Candidate<'_>) -> bool {
        let _ = (request, candidate);
        false
    }

    /// A score (higher wins) or `None` for no opinion. Candidates with equal scores, or none,
    /// keep the default order; any score beats no score.
    fn score(&self, request: &Requirements, candidate: &Candidate<'_>) -> Option<i64> {
        let _ = (request, candidate);
        None
    }
}

/// The default policy: no vetoes, no scores, pure best fit.
#[derive(Clone, Copy, Debug, Default)]
pub struct BestFit;

impl MatchPolicy for BestFit {}
