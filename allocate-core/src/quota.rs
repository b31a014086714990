//! Quotas: limits on what one user holds at once (API.md, "Quotas and order").
//!
//! A [`Policy`] gives limits per user, per group of users and a default for everyone. Each
//! limit of a user is, in this order, the user's own (from `users`), else the smallest among
//! the groups that name the user, else the default; a group's limits apply to each member on
//! their own (not to the members together). A request that would take its user over a limit
//! waits; one that could never fit (more resources or GPUs than the limit, a lease longer than
//! it, or a limit of 0 allocations) is refused.

use crate::hash::FxMap;
use crate::model::Requirements;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Limits on what one user holds at once; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaLimits {
    /// Most allocations held at once (provisioning or ready).
    pub allocations_max: Option<u32>,
    /// Most resources held at once, over all of the user's allocations.
    pub resources_max: Option<u32>,
    /// Most GPUs held at once: the GPUs of the resources held.
    pub gpus_max: Option<u32>,
    /// Longest lease a request may ask for (seconds); the default lease is capped to it.
    pub lease_secs_max: Option<u64>,
}

/// A group of users held to the same limits, each member on their own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Group {
    /// The members' usernames.
    pub members: Vec<String>,
    /// The limits of each member.
    pub limits: QuotaLimits,
}

/// The operator's quotas: the default, groups and users (see the module docs for the rule).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The limits of everyone not named otherwise.
    pub default: QuotaLimits,
    /// Groups by name.
    pub groups: BTreeMap<String, Group>,
    /// Users by username; their own limits win over their groups'.
    pub users: BTreeMap<String, QuotaLimits>,
}

impl Policy {
    /// This policy with each group's members extended by `named` (group to usernames: the
    /// groups that the users' tokens name). A group the policy does not define sets no limit,
    /// so it is left out.
    pub fn with_members(&self, named: &BTreeMap<String, BTreeSet<String>>) -> Policy {
        let mut merged = self.clone();
        for (name, group) in &mut merged.groups {
            for user in named.get(name).into_iter().flatten() {
                if !group.members.contains(user) {
                    group.members.push(user.clone());
                }
            }
        }
        merged
    }

    /// The groups of `named` that this policy does not define (a typo in the tokens file, say).
    pub fn undefined_groups<'a>(
        &self,
        named: &'a BTreeMap<String, BTreeSet<String>>,
    ) -> Vec<&'a str> {
        named
            .keys()
            .filter(|name| !self.groups.contains_key(*name))
            .map(String::as_str)
            .collect()
    }
}

/// Which limit holds a request back or refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaLimit {
    /// `allocations_max`.
    Allocations,
    /// `resources_max`.
    Resources,
    /// `gpus_max`.
    Gpus,
    /// `lease_secs_max`.
    Lease,
}

impl QuotaLimit {
    /// Every limit, in a fixed order.
    pub const ALL: [QuotaLimit; 4] = [
        QuotaLimit::Allocations,
        QuotaLimit::Resources,
        QuotaLimit::Gpus,
        QuotaLimit::Lease,
    ];

    /// The limit in words, as the `queued` message's `limit` says it.
    pub const fn as_str(self) -> &'static str {
        match self {
            QuotaLimit::Allocations => "concurrent allocations",
            QuotaLimit::Resources => "resources held",
            QuotaLimit::Gpus => "GPUs held",
            QuotaLimit::Lease => "lease length",
        }
    }

    /// The limit named by its words ([`QuotaLimit::as_str`]).
    pub fn from_words(words: &str) -> Option<QuotaLimit> {
        QuotaLimit::ALL.into_iter().find(|l| l.as_str() == words)
    }
}

impl fmt::Display for QuotaLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit that a request could never fit: a new request is refused with it (`403
/// quota_exceeded`), and so is a waiting one when a policy change makes it so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("quota exceeded: {user} may hold at most {max} ({limit}), the request needs {asked}")]
pub struct QuotaExceeded {
    /// The user whose quota it is.
    pub user: String,
    /// The limit it could never fit.
    pub limit: QuotaLimit,
    /// The limit's value.
    pub max: u64,
    /// What the request needs of it.
    pub asked: u64,
}

/// What one user holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub allocations: u32,
    pub resources: u32,
    pub gpus: u32,
}

/// A policy in force, with each named user's limits worked out and what every user holds.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    pub policy: Policy,
    /// The limits of each user named in `users` or a group.
    limits: FxMap<String, QuotaLimits>,
    /// What each user holds; users holding nothing are absent.
    held: FxMap<String, Held>,
}

impl Quotas {
    pub fn new(policy: Policy) -> Self {
        let mut limits: FxMap<String, QuotaLimits> = FxMap::default();
        for group in policy.groups.values() {
            for member in &group.members {
                let mine = limits.entry(member.clone()).or_default();
                *mine = tightest(*mine, group.limits);
            }
        }
        for mine in limits.values_mut() {
            *mine = or_else(*mine, policy.default);
        }
        for (user, own) in &policy.users {
            let from_groups = limits.get(user).copied().unwrap_or(policy.default);
            limits.insert(user.clone(), or_else(*own, from_groups));
        }
        Quotas {
            policy,
            limits,
            held: FxMap::default(),
        }
    }

    /// The limits of `user`.
    pub fn limits(&self, user: &str) -> QuotaLimits {
        self.limits
            .get(user)
            .copied()
            .unwrap_or(self.policy.default)
    }

    /// What `user` holds now.
    pub fn held(&self, user: &str) -> Held {
        self.held.get(user).copied().unwrap_or_default()
    }

    /// Adds (`taken`) or removes what one allocation of `user` holds.
    pub fn change(&mut self, user: &str, resources: u32, gpus: u32, taken: bool) {
        let held = self.held.entry(user.to_owned()).or_default();
        if taken {
            held.allocations += 1;
            held.resources += resources;
            held.gpus += gpus;
        } else {
            held.allocations = held.allocations.saturating_sub(1);
            held.resources = held.resources.saturating_sub(resources);
            held.gpus = held.gpus.saturating_sub(gpus);
        }
        if held.allocations == 0 {
            self.held.remove(user);
        }
    }

    /// Forgets every holding (before they are counted again).
    pub fn clear_held(&mut self) {
        self.held.clear();
    }

    /// The limit that `req` could never fit, if any, with its value and what `req` needs.
    pub fn never_fits(&self, req: &Requirements) -> Option<(QuotaLimit, u64, u64)> {
        let limits = self.limits(&req.username);
        let needs = [
            (limits.allocations_max, 1, QuotaLimit::Allocations),
            (limits.resources_max, req.count, QuotaLimit::Resources),
            (limits.gpus_max, gpus_asked(req), QuotaLimit::Gpus),
        ];
        needs.into_iter().find_map(|(max, asked, limit)| {
            over(max, asked, limit).map(|(limit, max)| (limit, max, u64::from(asked)))
        })
    }

    /// The limit that placing `req` now would exceed, if any. GPUs are counted as the fewest
    /// it asks; each resource chosen is also held to the GPUs left ([`Quotas::gpus_left`]).
    pub fn blocks(&self, req: &Requirements) -> Option<QuotaLimit> {
        let (limits, held) = (self.limits(&req.username), self.held(&req.username));
        let after = |held: u32, more: u32| held.saturating_add(more);
        over(
            limits.allocations_max,
            after(held.allocations, 1),
            QuotaLimit::Allocations,
        )
        .or_else(|| {
            let resources = after(held.resources, req.count);
            over(limits.resources_max, resources, QuotaLimit::Resources)
        })
        .or_else(|| {
            over(
                limits.gpus_max,
                after(held.gpus, gpus_asked(req)),
                QuotaLimit::Gpus,
            )
        })
        .map(|(limit, _)| limit)
    }

    /// Whether `req` may take, now, a resource with `gpus` GPUs.
    pub fn allows(&self, req: &Requirements, gpus: u32) -> bool {
        self.blocks(req).is_none()
            && self
                .gpus_left(&req.username)
                .is_none_or(|left| gpus <= left)
    }

    /// How many more GPUs `user` may take (`None`: no limit).
    pub fn gpus_left(&self, user: &str) -> Option<u32> {
        let max = self.limits(user).gpus_max?;
        Some(max.saturating_sub(self.held(user).gpus))
    }
}

/// `Some((limit, max))` when `value` is above `max`.
fn over(max: Option<u32>, value: u32, limit: QuotaLimit) -> Option<(QuotaLimit, u64)> {
    max.filter(|&m| value > m).map(|m| (limit, u64::from(m)))
}

/// The fewest GPUs a request holds once placed.
fn gpus_asked(req: &Requirements) -> u32 {
    req.gpu
        .as_ref()
        .map_or(0, |g| g.count.saturating_mul(req.count))
}

/// Each limit set in `a` or `b`, the smaller where both are.
fn tightest(a: QuotaLimits, b: QuotaLimits) -> QuotaLimits {
    fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    QuotaLimits {
        allocations_max: min(a.allocations_max, b.allocations_max),
        resources_max: min(a.resources_max, b.resources_max),
        gpus_max: min(a.gpus_max, b.gpus_max),
        lease_secs_max: min(a.lease_secs_max, b.lease_secs_max),
    }
}

/// Each limit of `a`, or `b`'s where `a` sets none.
fn or_else(a: QuotaLimits, b: QuotaLimits) -> QuotaLimits {
    QuotaLimits {
        allocations_max: a.allocations_max.or(b.allocations_max),
        resources_max: a.resources_max.or(b.resources_max),
        gpus_max: a.gpus_max.or(b.gpus_max),
        lease_secs_max: a.lease_secs_max.or(b.lease_secs_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_groups_join_the_policy_groups_they_name() {
        let group = |members: &[&str], gpus_max| Group {
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            limits: QuotaLimits {
                gpus_max: Some(gpus_max),
                ..QuotaLimits::default()
            },
        };
        let policy = Policy {
            groups: [
                ("students".to_owned(), group(&["ann"], 1)),
                ("staff".to_owned(), group(&[], 8)),
            ]
            .into(),
            ..Policy::default()
        };
        let set = |users: &[&str]| users.iter().map(|u| (*u).to_owned()).collect();
        let named: BTreeMap<String, BTreeSet<String>> = [
            ("students".to_owned(), set(&["ann", "bob"])),
            ("nightly".to_owned(), set(&["carl"])),
        ]
        .into();
        let merged = policy.with_members(&named);
        assert_eq!(merged.groups["students"].members, ["ann", "bob"]);
        assert!(merged.groups["staff"].members.is_empty());
        assert!(!merged.groups.contains_key("nightly"), "sets no limit");
        assert_eq!(
            merged.groups["students"].limits,
            policy.groups["students"].limits
        );
        assert_eq!(merged.users, policy.users);
        assert_eq!(policy.undefined_groups(&named), ["nightly"]);
        assert_eq!(policy.with_members(&BTreeMap::new()), policy);
    }
}
