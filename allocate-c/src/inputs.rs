//! What agents and clients tell the engine, and the clock: every mutating call but the policy.

use crate::args::{opt_text, out, text};
use crate::engine::{allocate_engine, lock, with_allocation, with_id};
use crate::ownership::try_ref_from_ptr;
use crate::panic::guard;
use crate::request::allocate_request;
use crate::result::{allocate_result, Failure};
use crate::strings::give_json;
use crate::uuid::{allocate_uuid, uuid_arg};
use allocate_core::wire::parse_policy;
use allocate_core::{
    parse_json, parse_resources, Connection, Engine, Error, ProvisionResult, Requirements,
    Timestamp,
};
use std::ffi::c_char;

/// Registers (or replaces) an agent's resources, given as the contract's JSON list of resources.
/// If `inventory_ids_json_out` is not null it receives a JSON list of the ids, in order (free it
/// with `allocate_string_free`).
///
/// # Safety
/// `engine` must be a live handle; `agent_id` readable; `resources_json` a NUL-terminated string;
/// `inventory_ids_json_out` null or writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_register(
    engine: *mut allocate_engine,
    now_ms: u64,
    agent_id: *const allocate_uuid,
    resources_json: *const c_char,
    inventory_ids_json_out: *mut *mut c_char,
) -> allocate_result {
    guard(|| {
        // SAFETY (ids and engine): the caller's contract.
        let agent_id = unsafe { uuid_arg(agent_id, "agent_id") }?;
        // SAFETY: the caller's contract.
        let text = unsafe { text(resources_json, "resources_json") }?;
        let mut inner = unsafe { lock(engine) }?;
        let limits = inner.engine.config().limits.clone();
        let resources = parse_resources(&parse_json(text)?, &limits)?;
        let ids =
            inner
                .engine
                .register_agent(Timestamp::from_millis(now_ms), agent_id, resources)?;
        // SAFETY: the caller promises null or writable.
        if let Some(slot) = unsafe { inventory_ids_json_out.as_mut() } {
            give_json(&ids, slot)?;
        }
        Ok(())
    })
}

/// Sets the quotas from the policy's JSON (README, "Quotas": `default`, `groups`, `users`),
/// or removes them with a null `policy_json`. Waiting requests that the new limits could never
/// fit end at once (`ALLOCATE_OUTPUT_QUOTA_REFUSED`); those they allow are placed. A policy
/// that does not parse changes nothing and the error names its line and field.
///
/// # Safety
/// `engine` must be a live handle; `policy_json` null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_set_quotas(
    engine: *mut allocate_engine,
    now_ms: u64,
    policy_json: *const c_char,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let policy = unsafe { opt_text(policy_json, "policy_json") }?
            .map(parse_policy)
            .transpose()
            .map_err(|e| Error::Invalid(format!("policy_json: {e}")))?;
        // SAFETY: the caller's contract.
        let mut inner = unsafe { lock(engine) }?;
        Ok(inner
            .engine
            .set_quotas(Timestamp::from_millis(now_ms), policy)?)
    })
}

/// An agent's connection closed: its resources go offline.
///
/// # Safety
/// `engine` must be a live handle; `agent_id` readable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_disconnect(
    engine: *mut allocate_engine,
    now_ms: u64,
    agent_id: *const allocate_uuid,
) -> allocate_result {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        with_id(
            engine,
            now_ms,
            agent_id,
            "agent_id",
            Engine::disconnect_agent,
        )
    })
}

/// Places `requirements` and writes the new allocation's id.
///
/// # Safety
/// `engine` null or live; `id_out` null or writable.
unsafe fn request_with(
    engine: *mut allocate_engine,
    now_ms: u64,
    requirements: Requirements,
    id_out: *mut allocate_uuid,
) -> Result<(), Failure> {
    // SAFETY: the caller's contract.
    let slot = unsafe { out(id_out, "allocation_id_out") }?;
    let id = unsafe { lock(engine) }?
        .engine
        .request(Timestamp::from_millis(now_ms), requirements)?;
    *slot = id.into();
    Ok(())
}

/// Asks for an allocation; its id goes to `allocation_id_out`. Outputs say what became of it.
///
/// # Safety
/// `engine` must be a live handle; `request` readable with valid fields; `allocation_id_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_request(
    engine: *mut allocate_engine,
    now_ms: u64,
    request: *const allocate_request,
    allocation_id_out: *mut allocate_uuid,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller promises `request` is null or readable with valid fields.
        let requirements = unsafe { try_ref_from_ptr(request, "request")?.requirements() }?;
        // SAFETY: the caller's contract.
        unsafe { request_with(engine, now_ms, requirements, allocation_id_out) }
    })
}

/// Asks for an allocation described by the contract's `requirements` JSON object.
///
/// # Safety
/// As for `allocate_engine_request`, with `requirements_json` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_request_json(
    engine: *mut allocate_engine,
    now_ms: u64,
    requirements_json: *const c_char,
    allocation_id_out: *mut allocate_uuid,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let text = unsafe { text(requirements_json, "requirements_json") }?;
        let limits = unsafe { lock(engine) }?.engine.config().limits.clone();
        let requirements = Requirements::from_json(&parse_json(text)?, "requirements", &limits)?;
        // SAFETY: the caller's contract.
        unsafe { request_with(engine, now_ms, requirements, allocation_id_out) }
    })
}

/// An agent answers a provision: with connection details (`host`, `username`, `password` all
/// non-null, `error` null) or with a failure (`error` non-null, the others ignored).
///
/// # Safety
/// `engine` live; ids readable; strings null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_provisioned(
    engine: *mut allocate_engine,
    now_ms: u64,
    agent_id: *const allocate_uuid,
    allocation_id: *const allocate_uuid,
    host: *const c_char,
    username: *const c_char,
    password: *const c_char,
    error: *const c_char,
) -> allocate_result {
    guard(|| {
        // SAFETY (ids and engine): the caller's contract.
        let agent_id = unsafe { uuid_arg(agent_id, "agent_id") }?;
        let allocation_id = unsafe { uuid_arg(allocation_id, "allocation_id") }?;
        // SAFETY (all four): the caller's contract.
        let result = match unsafe { opt_text(error, "error") }? {
            Some(why) => ProvisionResult::Failed(why.to_owned()),
            None => ProvisionResult::Connection(Connection {
                host: unsafe { text(host, "host") }?.to_owned(),
                username: unsafe { text(username, "username") }?.to_owned(),
                password: Some(unsafe { text(password, "password") }?.to_owned()),
                port: None,
            }),
        };
        let now = Timestamp::from_millis(now_ms);
        Ok(unsafe { lock(engine) }?
            .engine
            .provisioned(now, agent_id, allocation_id, result)?)
    })
}

/// An agent acknowledges a release: the resource is free again.
///
/// # Safety
/// `engine` live; ids readable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_release_acknowledged(
    engine: *mut allocate_engine,
    now_ms: u64,
    agent_id: *const allocate_uuid,
    allocation_id: *const allocate_uuid,
) -> allocate_result {
    guard(|| {
        // SAFETY (ids and engine): the caller's contract.
        let agent_id = unsafe { uuid_arg(agent_id, "agent_id") }?;
        let allocation_id = unsafe { uuid_arg(allocation_id, "allocation_id") }?;
        let now = Timestamp::from_millis(now_ms);
        Ok(unsafe { lock(engine) }?
            .engine
            .release_acknowledged(now, agent_id, allocation_id)?)
    })
}

/// Frees an allocation or cancels a waiting request (the contract's DELETE).
///
/// # Safety
/// `engine` live; `allocation_id` readable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_release(
    engine: *mut allocate_engine,
    now_ms: u64,
    allocation_id: *const allocate_uuid,
) -> allocate_result {
    // SAFETY: the caller's contract.
    guard(|| unsafe { with_allocation(engine, now_ms, allocation_id, Engine::release) })
}

/// The requesting client went away: cancels a waiting request, and ends a held allocation
/// that asked for `release_on_disconnect`.
///
/// # Safety
/// `engine` live; `allocation_id` readable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_client_gone(
    engine: *mut allocate_engine,
    now_ms: u64,
    allocation_id: *const allocate_uuid,
) -> allocate_result {
    // SAFETY: the caller's contract.
    guard(|| unsafe { with_allocation(engine, now_ms, allocation_id, Engine::client_gone) })
}

/// Moves a live allocation's lease end to `expires` (unix seconds, capped by the maximum lease);
/// the effective value goes to `expires_out` when it is not null.
///
/// # Safety
/// `engine` live; `allocation_id` readable; `expires_out` null or writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_set_expires(
    engine: *mut allocate_engine,
    now_ms: u64,
    allocation_id: *const allocate_uuid,
    expires: u64,
    expires_out: *mut u64,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let effective = unsafe {
            with_allocation(engine, now_ms, allocation_id, |e, now, id| {
                e.set_expires(now, id, expires)
            })
        }?;
        // SAFETY: the caller promises null or writable.
        if let Some(slot) = unsafe { expires_out.as_mut() } {
            *slot = effective;
        }
        Ok(())
    })
}

/// Takes a resource out of service once its lease ends (`reason` non-null), or returns it to
/// service and clears any error (`reason` null).
///
/// # Safety
/// `engine` live; `inventory_id` readable; `reason` null or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_set_maintenance(
    engine: *mut allocate_engine,
    now_ms: u64,
    inventory_id: *const allocate_uuid,
    reason: *const c_char,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let reason = unsafe { opt_text(reason, "reason") }?.map(str::to_owned);
        // SAFETY: the caller's contract.
        unsafe {
            with_id(
                engine,
                now_ms,
                inventory_id,
                "inventory_id",
                |e, now, id| e.set_maintenance(now, id, reason),
            )
        }
    })
}

/// Advances time to `now_ms` and fires every deadline due by then.
///
/// # Safety
/// `engine` live.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_handle_timeout(
    engine: *mut allocate_engine,
    now_ms: u64,
) -> allocate_result {
    guard(|| {
        unsafe { lock(engine) }?
            .engine
            .handle_timeout(Timestamp::from_millis(now_ms));
        Ok(())
    })
}
