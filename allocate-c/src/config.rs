//! Engine settings: `allocate_config` and its defaults.

use crate::args::out;
use crate::ownership::{Castable, OwnershipRef};
use crate::panic::guard;
use crate::result::allocate_result;
use allocate_core::{Config, Order};

/// Engine settings; fill with `allocate_config_default` and change what you need.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct allocate_config {
    /// Lease length when a request names no `expires`, in seconds.
    pub lease_secs_default: u64,
    /// Longest lease, in seconds.
    pub lease_secs_max: u64,
    /// Longest `allocation_timeout_seconds` a request may ask for.
    pub wait_secs_max: u64,
    /// How long an agent has to answer a provision, in milliseconds.
    pub provision_timeout_ms: u64,
    /// How long an agent has to acknowledge a release, in milliseconds.
    pub release_timeout_ms: u64,
    /// How many ended allocations stay queryable.
    pub ended_allocations_max: u64,
    /// How many candidates a matching policy is shown per placement.
    pub policy_candidates_max: u64,
    /// Serve waiting requests in fair-share order (the user holding least first) rather than
    /// in arrival order (README, "Order and starvation").
    pub fair_share: bool,
}

impl Castable for allocate_config {
    type Ownership = OwnershipRef;
    type RustType = allocate_config;
}

impl From<&Config> for allocate_config {
    fn from(c: &Config) -> Self {
        allocate_config {
            lease_secs_default: c.lease_secs_default,
            lease_secs_max: c.lease_secs_max,
            wait_secs_max: c.wait_secs_max,
            provision_timeout_ms: c.provision_timeout_ms,
            release_timeout_ms: c.release_timeout_ms,
            ended_allocations_max: c.ended_allocations_max as u64,
            policy_candidates_max: c.policy_candidates_max as u64,
            fair_share: c.order == Order::FairShare,
        }
    }
}

impl From<&allocate_config> for Config {
    fn from(c: &allocate_config) -> Self {
        Config {
            lease_secs_default: c.lease_secs_default,
            lease_secs_max: c.lease_secs_max,
            wait_secs_max: c.wait_secs_max,
            provision_timeout_ms: c.provision_timeout_ms,
            release_timeout_ms: c.release_timeout_ms,
            ended_allocations_max: usize::try_from(c.ended_allocations_max).unwrap_or(usize::MAX),
            policy_candidates_max: usize::try_from(c.policy_candidates_max).unwrap_or(usize::MAX),
            order: if c.fair_share {
                Order::FairShare
            } else {
                Order::Arrival
            },
            ..Config::default()
        }
    }
}

/// Fills `config_out` with the default settings.
///
/// # Safety
/// `config_out` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_config_default(
    config_out: *mut allocate_config,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        *unsafe { out(config_out, "config_out") }? = allocate_config::from(&Config::default());
        Ok(())
    })
}
