//! Reading the engine's state on demand, as the contract's JSON.

use crate::args::{out, text};
use crate::engine::{allocate_engine, lock};
use crate::panic::guard;
use crate::result::{allocate_result, Failure};
use crate::strings::give_json;
use crate::uuid::{allocate_uuid, uuid_arg};
use allocate_core::wire::explain::match_requirements;
use allocate_core::{parse_json, Engine};
use serde::Serialize;
use std::ffi::c_char;
use uuid::Uuid;

/// The whole inventory as the contract's JSON list (never with credentials), into `json_out`
/// (free with `allocate_string_free`).
///
/// # Safety
/// `engine` live; `json_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_inventory_json(
    engine: *mut allocate_engine,
    json_out: *mut *mut c_char,
) -> allocate_result {
    guard(|| {
        // SAFETY (both): the caller's contract.
        let slot = unsafe { out(json_out, "json_out") }?;
        let entries: Vec<_> = unsafe { lock(engine) }?.engine.inventory().collect();
        give_json(&entries, slot)
    })
}

/// One allocation as JSON (with its connection once ready), into `json_out` (free with
/// `allocate_string_free`); `ALLOCATE_NOT_FOUND` when unknown or forgotten.
///
/// # Safety
/// `engine` live; `allocation_id` readable; `json_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_allocation_json(
    engine: *mut allocate_engine,
    allocation_id: *const allocate_uuid,
    json_out: *mut *mut c_char,
) -> allocate_result {
    // SAFETY: the caller's contract.
    unsafe {
        allocation_query(engine, allocation_id, json_out, |engine, id| {
            engine.allocation(&id).ok_or_else(|| not_found(id))
        })
    }
}

/// What following an allocation sees first (the contract's *Following an allocation*): a JSON
/// list of the messages its creating socket saw last (`queued`, or `ready` with its
/// connection), each the contract's envelope, into `json_out` (free with
/// `allocate_string_free`); `ALLOCATE_NOT_FOUND` when ended or unknown.
///
/// # Safety
/// `engine` live; `allocation_id` readable; `json_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_current_json(
    engine: *mut allocate_engine,
    allocation_id: *const allocate_uuid,
    json_out: *mut *mut c_char,
) -> allocate_result {
    // SAFETY: the caller's contract.
    unsafe {
        allocation_query(engine, allocation_id, json_out, |engine, id| {
            let outputs = engine.current_outputs(&id);
            if outputs.is_empty() {
                return Err(not_found(id));
            }
            Ok(outputs.iter().map(|o| o.to_wire()).collect::<Vec<_>>())
        })
    }
}

/// Why requirements would or would not be served now (the contract's *Why not*; a dry run
/// that changes nothing): the contract's `requirements` JSON object (`username` optional), and
/// into `json_out` (free with `allocate_string_free`) the answer's data,
/// `{"explain": [{"count", "message", "reason"}, ...], "free", "matching_resources"}`.
/// `ALLOCATE_INVALID_REQUEST` names the bad field, as a request would.
///
/// # Safety
/// `engine` live; `requirements_json` a NUL-terminated string; `json_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_explain_json(
    engine: *mut allocate_engine,
    requirements_json: *const c_char,
    json_out: *mut *mut c_char,
) -> allocate_result {
    guard(|| {
        // SAFETY (all three): the caller's contract.
        let text = unsafe { text(requirements_json, "requirements_json") }?;
        let slot = unsafe { out(json_out, "json_out") }?;
        let held = unsafe { lock(engine) }?;
        let limits = &held.engine.config().limits;
        let requirements = match_requirements(&parse_json(text)?, "requirements", limits)?;
        give_json(&held.engine.explain(&requirements)?, slot)
    })
}

/// The shape of the calls that answer one allocation's JSON: reads `allocation_id`, asks
/// `answer` with the engine locked, and gives its JSON to `json_out`.
///
/// # Safety
/// `engine` live; `allocation_id` readable; `json_out` writable.
unsafe fn allocation_query<T: Serialize>(
    engine: *mut allocate_engine,
    allocation_id: *const allocate_uuid,
    json_out: *mut *mut c_char,
    answer: impl FnOnce(&mut Engine, Uuid) -> Result<T, Failure>,
) -> allocate_result {
    guard(|| {
        // SAFETY (all three): forwarded from the caller.
        let id = unsafe { uuid_arg(allocation_id, "allocation_id") }?;
        let slot = unsafe { out(json_out, "json_out") }?;
        let value = answer(&mut unsafe { lock(engine) }?.engine, id)?;
        give_json(&value, slot)
    })
}

/// `ALLOCATE_NOT_FOUND` for allocation `id`.
fn not_found(id: Uuid) -> Failure {
    Failure::from(allocate_core::Error::NotFound {
        kind: "allocation",
        id: id.to_string(),
    })
}
