//! What the engine asks to be done: the output struct, and polling outputs and deadlines.

use crate::args::out;
use crate::engine::{allocate_engine, lock};
use crate::panic::guard;
use crate::result::{allocate_result, Failure};
use crate::strings::{give_string, lend, LentStrings};
use crate::uuid::allocate_uuid;
use allocate_core::{Output, Recipient};
use std::ffi::c_char;

/// What kind of output an `allocate_output` is.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum allocate_output_kind {
    /// Tell a waiting client its queue position (`position`, `matching_resources`, `eta`).
    ALLOCATE_OUTPUT_QUEUED = 1,
    /// The allocation is ready (`inventory_id`, `host`, `username`, `password`, `expires`).
    ALLOCATE_OUTPUT_READY = 2,
    /// The wait ended with nothing free (HTTP 408).
    ALLOCATE_OUTPUT_TIMED_OUT = 3,
    /// The lease ended.
    ALLOCATE_OUTPUT_EXPIRED = 4,
    /// The allocation was released or the request cancelled.
    ALLOCATE_OUTPUT_RELEASED = 5,
    /// The resource's agent went away during the lease.
    ALLOCATE_OUTPUT_OFFLINE = 6,
    /// The resource's agent came back.
    ALLOCATE_OUTPUT_ONLINE = 7,
    /// Ask agent `agent_id` to provision `inventory_id` for `username` until `expires`.
    ALLOCATE_OUTPUT_PROVISION = 8,
    /// Ask agent `agent_id` to release `inventory_id`.
    ALLOCATE_OUTPUT_RELEASE = 9,
    /// A new quota policy refused the waiting request: it could never fit its user's limit
    /// (HTTP 403 `quota_exceeded`; `allocate_engine_poll_output_json` names the limit).
    ALLOCATE_OUTPUT_QUOTA_REFUSED = 10,
}

/// One output of the engine. Fields that do not apply to `kind` are zero or null.
///
/// The strings are owned by the engine and stay valid until the next
/// `allocate_engine_poll_output` on the same engine, or until it is freed.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct allocate_output {
    /// What this output is.
    pub kind: allocate_output_kind,
    /// The allocation it concerns.
    pub allocation_id: allocate_uuid,
    /// The resource (ready, provision, release).
    pub inventory_id: allocate_uuid,
    /// The agent to tell (provision, release).
    pub agent_id: allocate_uuid,
    /// 1-based queue position (queued).
    pub position: u32,
    /// Resources that could ever satisfy the request (queued).
    pub matching_resources: u64,
    /// Whether `eta` is known (queued).
    pub has_eta: bool,
    /// Earliest known lease end among matching held resources, unix seconds (queued).
    pub eta: u64,
    /// Lease end, unix seconds (ready, provision).
    pub expires: u64,
    /// Host to connect to (ready).
    pub host: *const c_char,
    /// Login name (ready) or the holder's username (provision).
    pub username: *const c_char,
    /// Password (ready).
    pub password: *const c_char,
    /// How many resources were granted (ready): 1, or the request's `count`. The fields above
    /// are the first one's; `allocate_engine_poll_output_json` lists every one (`resources`).
    pub resource_count: u32,
}

/// Writes the next deadline (unix ms) to `deadline_ms_out`; `ALLOCATE_EMPTY` when none is pending.
///
/// # Safety
/// `engine` live; `deadline_ms_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_poll_timeout(
    engine: *mut allocate_engine,
    deadline_ms_out: *mut u64,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let slot = unsafe { out(deadline_ms_out, "deadline_ms_out") }?;
        // SAFETY: the caller's contract.
        let deadline = unsafe { lock(engine) }?
            .engine
            .poll_timeout()
            .ok_or_else(|| Failure::empty("no deadline is pending"))?;
        *slot = deadline.as_millis();
        Ok(())
    })
}

/// Takes the next output into `output_out`; `ALLOCATE_EMPTY` when there is none. Its strings
/// belong to the engine and stay valid until the next call of this function on the same engine,
/// from any thread, or `allocate_engine_free`: a program that polls one engine from several
/// threads copies them before another thread may poll. Nothing else invalidates them.
///
/// # Safety
/// `engine` live; `output_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_poll_output(
    engine: *mut allocate_engine,
    output_out: *mut allocate_output,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let slot = unsafe { out(output_out, "output_out") }?;
        // SAFETY: the caller's contract.
        let mut state = unsafe { lock(engine) }?;
        let output = state
            .engine
            .poll_output()
            .ok_or_else(|| Failure::empty("no output is pending"))?;
        *slot = flatten(&output, &mut state.output_strings);
        Ok(())
    })
}

/// Takes the next output as JSON: `{"to": "client"|"agent", "id": ..., "final": bool, "message":
/// <the contract's envelope>}`, into `json_out` (free with `allocate_string_free`); `ALLOCATE_EMPTY`
/// when there is none.
///
/// # Safety
/// `engine` live; `json_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_poll_output_json(
    engine: *mut allocate_engine,
    json_out: *mut *mut c_char,
) -> allocate_result {
    guard(|| {
        // SAFETY (both): the caller's contract.
        let slot = unsafe { out(json_out, "json_out") }?;
        let output = unsafe { lock(engine) }?
            .engine
            .poll_output()
            .ok_or_else(|| Failure::empty("no output is pending"))?;
        let (to, id) = match output.recipient() {
            Recipient::Client(id) => ("client", id),
            Recipient::Agent(id) => ("agent", id),
        };
        let value = serde_json::json!({"to": to, "id": id, "final": output.is_final(), "message": output.to_wire()});
        give_string(value.to_string(), slot)
    })
}

/// The C form of `output`, its strings lent from `strings`.
fn flatten(output: &Output, strings: &mut LentStrings) -> allocate_output {
    let mut o = allocate_output {
        kind: allocate_output_kind::ALLOCATE_OUTPUT_RELEASED,
        allocation_id: allocate_uuid::default(),
        inventory_id: allocate_uuid::default(),
        agent_id: allocate_uuid::default(),
        position: 0,
        matching_resources: 0,
        has_eta: false,
        eta: 0,
        expires: 0,
        host: std::ptr::null(),
        username: std::ptr::null(),
        password: std::ptr::null(),
        resource_count: 0,
    };
    use allocate_output_kind as K;
    match output {
        Output::Queued {
            allocation_id,
            position,
            matching_resources,
            eta,
            // `explain` is in `allocate_engine_poll_output_json` only.
            ..
        } => {
            o.kind = K::ALLOCATE_OUTPUT_QUEUED;
            o.allocation_id = (*allocation_id).into();
            o.position = *position;
            o.matching_resources = *matching_resources;
            o.has_eta = eta.is_some();
            o.eta = eta.unwrap_or(0);
        }
        Output::Ready {
            allocation_id,
            inventory_id,
            connection,
            expires,
            resources,
        } => {
            o.kind = K::ALLOCATE_OUTPUT_READY;
            o.resource_count = resources.len().max(1) as u32;
            o.allocation_id = (*allocation_id).into();
            o.inventory_id = (*inventory_id).into();
            o.expires = *expires;
            o.host = lend(&mut strings.host, &connection.host);
            o.username = lend(&mut strings.username, &connection.username);
            // No password (a key login) is an empty string: C has no absent string here.
            o.password = lend(
                &mut strings.password,
                connection.password.as_deref().unwrap_or(""),
            );
        }
        Output::Provision {
            agent_id,
            allocation_id,
            inventory_id,
            username,
            expires,
            // `ssh_keys` and `provision` are in `allocate_engine_poll_output_json` only.
            ..
        } => {
            o.kind = K::ALLOCATE_OUTPUT_PROVISION;
            o.agent_id = (*agent_id).into();
            o.allocation_id = (*allocation_id).into();
            o.inventory_id = (*inventory_id).into();
            o.expires = *expires;
            o.username = lend(&mut strings.username, username);
        }
        Output::Release {
            agent_id,
            allocation_id,
            inventory_id,
        } => {
            o.kind = K::ALLOCATE_OUTPUT_RELEASE;
            o.agent_id = (*agent_id).into();
            o.allocation_id = (*allocation_id).into();
            o.inventory_id = (*inventory_id).into();
        }
        Output::TimedOut { allocation_id, .. }
        | Output::QuotaRefused { allocation_id, .. }
        | Output::Expired { allocation_id }
        | Output::Released { allocation_id }
        | Output::Offline { allocation_id }
        | Output::Online { allocation_id } => {
            o.kind = match output {
                Output::TimedOut { .. } => K::ALLOCATE_OUTPUT_TIMED_OUT,
                Output::QuotaRefused { .. } => K::ALLOCATE_OUTPUT_QUOTA_REFUSED,
                Output::Expired { .. } => K::ALLOCATE_OUTPUT_EXPIRED,
                Output::Released { .. } => K::ALLOCATE_OUTPUT_RELEASED,
                Output::Offline { .. } => K::ALLOCATE_OUTPUT_OFFLINE,
                _ => K::ALLOCATE_OUTPUT_ONLINE,
            };
            o.allocation_id = (*allocation_id).into();
        }
    }
    o
}
