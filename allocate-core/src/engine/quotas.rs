//! Quotas in the engine: what each user holds, which waiting requests the limits hold back,
//! and which requests they refuse (see [`crate::quota`]).

use super::{held_ids, Allocation, Engine};
use crate::config::Order;
use crate::error::{Error, Result};
use crate::explain::QuotaHold;
use crate::inventory::{Inventory, Resource};
use crate::model::Requirements;
use crate::output::Output;
use crate::quota::{Policy, QuotaExceeded, QuotaLimit, QuotaLimits, Quotas};
use crate::time::Timestamp;
use crate::view::AllocationState;
use uuid::Uuid;

impl Engine {
    pub(super) fn do_set_quotas(&mut self, policy: Option<Policy>) {
        self.quotas = policy.map(|p| Box::new(Quotas::new(p)));
        self.count_holdings();
        self.refuse_waiting();
        // The new limits may allow waiting requests: each is tried, in arrival order.
        self.retry_waiting(None);
    }

    /// After a policy change: ends each waiting request that could never fit its user's new
    /// limits, its client told why as a new request would be (`403 quota_exceeded`, naming
    /// the limit), in arrival order; a waiting request that named no lease gets the default
    /// lease capped anew.
    fn refuse_waiting(&mut self) {
        let waiting: Vec<Uuid> = self.queue.in_order().collect();
        for id in waiting {
            let a = &self.allocations[&id];
            let named = a.requirements.duration_seconds.is_some();
            let lease = match a.lease_secs {
                // A lease counted from `ready`: the one asked (capped by the server's longest).
                Some(secs) if named => secs,
                Some(_) => 0,
                // An absolute end: the lease left from now.
                None => a.expires.as_secs().saturating_sub(self.now.as_secs()),
            };
            match self.quota_fit(&a.requirements, lease) {
                Ok(cap) if a.lease_secs.is_some() && !named => {
                    let secs = self.default_lease(cap);
                    let a = self.allocations.get_mut(&id).expect("waiting allocation");
                    a.lease_secs = Some(secs);
                    // As when it was queued: the upper bound of a lease counted from `ready`.
                    a.expires = a.wait_until.add_secs(secs);
                }
                Ok(_) => {}
                Err(refusal) => {
                    self.outputs.push_back(Output::QuotaRefused {
                        allocation_id: id,
                        refusal,
                    });
                    self.end(id, AllocationState::Cancelled, false);
                }
            }
        }
    }

    /// The lease of a request that names none: the default, capped by the server's longest
    /// lease and by `quota_cap`, its user's longest, if limited.
    pub(super) fn default_lease(&self, quota_cap: Option<u64>) -> u64 {
        self.config
            .lease_secs_default
            .min(self.config.lease_secs_max)
            .min(quota_cap.unwrap_or(u64::MAX))
    }

    /// Counts what every live allocation holds, afresh (a new policy, a restored engine),
    /// for quotas and for fair-share order.
    pub(super) fn count_holdings(&mut self) {
        self.held.clear();
        let holders: Vec<(String, u32)> = self
            .allocations
            .values()
            .filter(|a| holds(a.state))
            .map(|a| {
                (
                    a.requirements.username.clone(),
                    holding(&self.inventory, a).0,
                )
            })
            .collect();
        for (user, resources) in holders {
            self.held_change(&user, resources, true);
        }
        let Some(quotas) = self.quotas.as_deref_mut() else {
            return;
        };
        quotas.clear_held();
        for a in self.allocations.values() {
            if holds(a.state) {
                let (resources, gpus) = holding(&self.inventory, a);
                quotas.change(&a.requirements.username, resources, gpus, true);
            }
        }
    }

    /// Counts what `id` holds now as taken (`true`) or given back by its user.
    /// Also counts it for fair-share order.
    pub(super) fn quota_change(&mut self, id: Uuid, taken: bool) {
        if self.quotas.is_none() && self.config.order == Order::Arrival {
            return;
        }
        let a = &self.allocations[&id];
        let (resources, gpus) = holding(&self.inventory, a);
        let user = a.requirements.username.clone();
        self.held_change(&user, resources, taken);
        if let Some(quotas) = self.quotas.as_deref_mut() {
            quotas.change(&user, resources, gpus, taken);
            // Fewer GPUs left to the front's user: what was held for it and now has too many
            // GPUs for it goes round again when the input ends.
            let front = self.front.as_ref().filter(|f| {
                let mine = self.allocations.get(&f.id);
                taken && mine.is_some_and(|a| a.requirements.username == user)
            });
            if let Some(f) = front.filter(|f| !self.interim.contains(&f.criteria)) {
                self.interim.push(f.criteria.clone());
            }
        }
    }

    /// Whether allocation `id`, ending from `prior`, gave back what it held; if so its user's
    /// waiting requests are tried again by [`Engine::retry_waiting`].
    pub(super) fn holds_quota(&self, prior: AllocationState) -> bool {
        self.quotas.is_some() && holds(prior)
    }

    /// Tries to place each waiting request (of `user` only, if given), in order: one
    /// that its quota held back may fit now. Only called with quotas set (or just removed).
    pub(super) fn retry_waiting(&mut self, user: Option<&str>) {
        // The queue, not every allocation: the ended ones kept for queries (10,000 by
        // default) made each release cost a walk over all of them.
        let mut waiting: Vec<Uuid> = self
            .queue
            .in_order()
            .filter(|id| user.is_none_or(|u| self.allocations[id].requirements.username == u))
            .collect();
        if self.config.order == Order::FairShare {
            waiting.sort_by_cached_key(|id| self.rank(&self.allocations[id]));
        }
        for id in waiting {
            let a = &self.allocations[&id];
            if a.state == AllocationState::Queued && a.give_up() > self.now {
                self.try_place(id, true);
            }
        }
    }

    /// The limit that holds `req` back now, if any (`None` without quotas).
    pub(super) fn quota_block(&self, req: &Requirements) -> Option<QuotaLimit> {
        self.quotas.as_deref().and_then(|q| q.blocks(req))
    }

    /// How many more GPUs the user of `req` may take (`None`: no limit, or no quotas).
    pub(super) fn gpus_left(&self, req: &Requirements) -> Option<u32> {
        self.quotas
            .as_deref()
            .and_then(|q| q.gpus_left(&req.username))
    }

    /// Refuses a request that could never fit its user's quota; returns the user's longest
    /// lease (seconds), if limited, which caps the default lease.
    pub(super) fn check_quota(&self, req: &Requirements) -> Result<Option<u64>> {
        let lease = match (req.expires, req.duration_seconds) {
            (Some(expires), _) => expires.saturating_sub(self.now.as_secs()),
            (None, Some(secs)) => secs,
            (None, None) => 0,
        };
        Ok(self.quota_fit(req, lease)?)
    }

    /// The limit that `req`, asking a lease of `lease` seconds (0: none named), could never
    /// fit; else its user's longest lease (seconds), if limited (`None` without quotas).
    fn quota_fit(&self, req: &Requirements, lease: u64) -> Result<Option<u64>, QuotaExceeded> {
        let Some(quotas) = self.quotas.as_deref() else {
            return Ok(None);
        };
        let refuse = |limit, max, asked| QuotaExceeded {
            user: req.username.clone(),
            limit,
            max,
            asked,
        };
        if let Some((limit, max, asked)) = quotas.never_fits(req) {
            return Err(refuse(limit, max, asked));
        }
        let Some(max) = quotas.limits(&req.username).lease_secs_max else {
            return Ok(None);
        };
        if lease.min(self.config.lease_secs_max) > max {
            return Err(refuse(QuotaLimit::Lease, max, lease));
        }
        Ok(Some(max))
    }
}

/// What the quota of a request's user keeps from it now, as explanations say it.
pub(super) struct QuotaCheck {
    /// The limit the `quota` finding names.
    pub hold: QuotaHold,
    /// Whether every free resource is kept (placing the request at all would exceed a limit).
    all: bool,
    /// Otherwise the GPUs its user may still take: a resource with more is kept.
    gpus_left: Option<u32>,
}

impl QuotaCheck {
    /// Whether the quota keeps free resource `r` from the request.
    pub fn keeps(&self, r: &Resource) -> bool {
        self.all || self.gpus_left.is_some_and(|left| gpus_of(r) > left)
    }
}

impl Engine {
    /// What the quota of `req`'s user keeps from it now (`None`: nothing, no quotas, or a dry
    /// run without a username).
    pub(super) fn quota_check(&self, req: &Requirements) -> Option<QuotaCheck> {
        let quotas = self.quotas.as_deref()?;
        if req.username.is_empty() {
            return None;
        }
        let limits = quotas.limits(&req.username);
        let hold = |limit| QuotaHold {
            user: req.username.clone(),
            limit,
            max: limit_value(&limits, limit),
        };
        if let Some(limit) = quotas.blocks(req) {
            return Some(QuotaCheck {
                hold: hold(limit),
                all: true,
                gpus_left: None,
            });
        }
        let left = quotas.gpus_left(&req.username)?;
        Some(QuotaCheck {
            hold: hold(QuotaLimit::Gpus),
            all: false,
            gpus_left: Some(left),
        })
    }
}

/// The value of `limit` in `limits` (0 where unset: only a set limit holds a request back).
fn limit_value(limits: &QuotaLimits, limit: QuotaLimit) -> u64 {
    match limit {
        QuotaLimit::Allocations => limits.allocations_max.map(u64::from),
        QuotaLimit::Resources => limits.resources_max.map(u64::from),
        QuotaLimit::Gpus => limits.gpus_max.map(u64::from),
        QuotaLimit::Lease => limits.lease_secs_max,
    }
    .unwrap_or(0)
}

/// The limit that holds waiting `a` back, if any (`None` without quotas): one that placing it
/// would exceed, or the GPUs left to its user when a resource it could have is free but has
/// more GPUs than that.
pub(super) fn quota_reason(
    quotas: Option<&Quotas>,
    inventory: &mut Inventory,
    a: &Allocation,
) -> Option<QuotaLimit> {
    let quotas = quotas?;
    let req = &a.requirements;
    quotas.blocks(req).or_else(|| {
        quotas.gpus_left(&req.username)?;
        let free = inventory.candidates(&a.criteria, 1, |_| true);
        (!free.is_empty()).then_some(QuotaLimit::Gpus)
    })
}

impl Engine {
    /// Refuses moving the lease end of `a` to `at` when its lease, counted from `ready` (or
    /// now, before), would be longer than its user's `lease_secs_max`.
    pub(super) fn check_lease_quota(&self, a: &Allocation, at: Timestamp) -> Result<()> {
        let Some(quotas) = self.quotas.as_deref() else {
            return Ok(());
        };
        let user = &a.requirements.username;
        let Some(max) = quotas.limits(user).lease_secs_max else {
            return Ok(());
        };
        let asked = at
            .as_secs()
            .saturating_sub(a.ready_at.unwrap_or(self.now).as_secs());
        if asked > max {
            return Err(Error::QuotaExceeded(QuotaExceeded {
                user: user.clone(),
                limit: QuotaLimit::Lease,
                max,
                asked,
            }));
        }
        Ok(())
    }
}

/// Whether an allocation in `state` counts against its user's quota.
pub(super) fn holds(state: AllocationState) -> bool {
    matches!(
        state,
        AllocationState::Provisioning | AllocationState::Ready
    )
}

/// The resources and GPUs `a` holds.
fn holding(inventory: &Inventory, a: &Allocation) -> (u32, u32) {
    held_ids(a)
        .filter_map(|id| inventory.slot_of(&id))
        .fold((0, 0), |(resources, gpus), slot| {
            (resources + 1, gpus + gpus_of(inventory.get(slot)))
        })
}

/// The GPUs of a resource, as quotas count them.
pub(super) fn gpus_of(r: &Resource) -> u32 {
    u32::try_from(r.spec.gpu.len()).unwrap_or(u32::MAX)
}
