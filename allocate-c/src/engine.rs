//! The engine handle and every function that drives it.

use crate::args::{non_null, opt_text, out, text};
use crate::policy::{allocate_score_fn, allocate_veto_fn, CPolicy};
use crate::result::{allocate_result, guard, Failure};
use crate::types::{
    allocate_config, allocate_output, allocate_output_kind, allocate_request, allocate_uuid,
};
use allocate_core::{
    parse_json, parse_resources, Config, Connection, Engine, Output, ProvisionResult, Recipient,
    Requirements, SeededIds, Snapshot, Timestamp,
};
use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

/// An engine. Opaque: create with `allocate_engine_new`, free with `allocate_engine_free`.
///
/// A handle may be used from several threads: every call takes the handle's internal lock.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct allocate_engine {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    /// The NUL-terminated strings of the last polled output, kept alive for the caller
    /// (buffers reused from output to output).
    output_strings: [Vec<u8>; 3],
}

impl allocate_engine {
    fn boxed(engine: Engine) -> *mut allocate_engine {
        Box::into_raw(Box::new(allocate_engine {
            inner: Mutex::new(Inner {
                engine,
                output_strings: Default::default(),
            }),
        }))
    }
}

/// Locks a handle. A lock poisoned by a caught panic is taken over: the panic was reported then.
fn lock<'a>(engine: *const allocate_engine) -> Result<MutexGuard<'a, Inner>, Failure> {
    let engine = non_null(engine, "engine")?;
    // SAFETY: the caller passes a handle from `allocate_engine_new` that is not yet freed.
    let engine = unsafe { &*engine };
    Ok(engine.inner.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Reads a required id argument.
fn uuid_arg(p: *const allocate_uuid, name: &str) -> Result<Uuid, Failure> {
    // SAFETY: checked non-null; the caller promises it points to an allocate_uuid.
    Ok(Uuid::from(unsafe { &*non_null(p, name)? }))
}

/// Runs `f` on the engine with the time and one id argument: the shape of most calls.
fn with_id<T>(
    engine: *mut allocate_engine,
    now_ms: u64,
    id: *const allocate_uuid,
    name: &str,
    f: impl FnOnce(&mut Engine, Timestamp, Uuid) -> allocate_core::Result<T>,
) -> Result<T, Failure> {
    let id = uuid_arg(id, name)?;
    Ok(f(
        &mut lock(engine)?.engine,
        Timestamp::from_millis(now_ms),
        id,
    )?)
}

/// Hands a string to the caller, who frees it with `allocate_string_free`.
fn give_string(s: String, out_ptr: *mut *mut c_char, name: &str) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller's contract for the out-parameter.
    let slot = unsafe { out(out_ptr, name) }?;
    let c = CString::new(s).map_err(|_| {
        Failure::new(
            allocate_result::ALLOCATE_INTERNAL,
            "string holds a NUL byte",
        )
    })?;
    *slot = c.into_raw();
    Ok(())
}

fn json_string(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map_err(|e| Failure::new(allocate_result::ALLOCATE_INTERNAL, e.to_string()))
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

/// Creates an engine. `config` may be null for the defaults; allocation ids come from a
/// deterministic stream seeded with `seed`. The caller owns `*engine_out` and frees it with
/// `allocate_engine_free`.
///
/// # Safety
/// `config` must be null or readable; `engine_out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_new(
    config: *const allocate_config,
    seed: u64,
    engine_out: *mut *mut allocate_engine,
) -> allocate_result {
    guard(|| {
        // SAFETY: the caller's contract.
        let slot = unsafe { out(engine_out, "engine_out") }?;
        // SAFETY: null or readable, per the caller's contract.
        let config = unsafe { config.as_ref() }.map_or_else(Config::default, Config::from);
        *slot = allocate_engine::boxed(Engine::new(config, Box::new(SeededIds::new(seed))));
        Ok(())
    })
}

/// Frees an engine and everything it owns (including strings of its last output). Null is a no-op.
///
/// # Safety
/// `engine` must be null or a handle from this library not freed before, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_free(engine: *mut allocate_engine) {
    if !engine.is_null() {
        // SAFETY: the caller hands back ownership of a handle from `Box::into_raw`.
        drop(unsafe { Box::from_raw(engine) });
    }
}

/// Frees a string this library returned. Null is a no-op.
///
/// # Safety
/// `s` must be null or a string from this library not freed before.
#[no_mangle]
pub unsafe extern "C" fn allocate_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: the caller hands back a string from `CString::into_raw`.
        drop(unsafe { CString::from_raw(s) });
    }
}

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
        let agent_id = uuid_arg(agent_id, "agent_id")?;
        // SAFETY: the caller's contract.
        let text = unsafe { text(resources_json, "resources_json") }?;
        let mut inner = lock(engine)?;
        let limits = inner.engine.config().limits.clone();
        let resources = parse_resources(&parse_json(text)?, &limits)?;
        let ids =
            inner
                .engine
                .register_agent(Timestamp::from_millis(now_ms), agent_id, resources)?;
        if !inventory_ids_json_out.is_null() {
            give_string(
                json_string(&ids)?,
                inventory_ids_json_out,
                "inventory_ids_json_out",
            )?;
        }
        Ok(())
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
    guard(|| {
        with_id(
            engine,
            now_ms,
            agent_id,
            "agent_id",
            Engine::disconnect_agent,
        )
    })
}

fn request_with(
    engine: *mut allocate_engine,
    now_ms: u64,
    requirements: Requirements,
    id_out: *mut allocate_uuid,
) -> Result<(), Failure> {
    // SAFETY: the caller's contract.
    let slot = unsafe { out(id_out, "allocation_id_out") }?;
    let id = lock(engine)?
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
        // SAFETY: checked non-null; the caller promises valid fields.
        let requirements = unsafe { (*non_null(request, "request")?).requirements() }?;
        request_with(engine, now_ms, requirements, allocation_id_out)
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
        let limits = lock(engine)?.engine.config().limits.clone();
        let requirements = Requirements::from_json(&parse_json(text)?, "requirements", &limits)?;
        request_with(engine, now_ms, requirements, allocation_id_out)
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
        let agent_id = uuid_arg(agent_id, "agent_id")?;
        let allocation_id = uuid_arg(allocation_id, "allocation_id")?;
        // SAFETY (all four): the caller's contract.
        let result = match unsafe { opt_text(error, "error") }? {
            Some(why) => ProvisionResult::Failed(why.to_owned()),
            None => ProvisionResult::Connection(Connection {
                host: unsafe { text(host, "host") }?.to_owned(),
                username: unsafe { text(username, "username") }?.to_owned(),
                password: unsafe { text(password, "password") }?.to_owned(),
            }),
        };
        let now = Timestamp::from_millis(now_ms);
        Ok(lock(engine)?
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
        let agent_id = uuid_arg(agent_id, "agent_id")?;
        let allocation_id = uuid_arg(allocation_id, "allocation_id")?;
        let now = Timestamp::from_millis(now_ms);
        Ok(lock(engine)?
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
    guard(|| {
        with_id(
            engine,
            now_ms,
            allocation_id,
            "allocation_id",
            Engine::release,
        )
    })
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
    guard(|| {
        with_id(
            engine,
            now_ms,
            allocation_id,
            "allocation_id",
            Engine::client_gone,
        )
    })
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
        let effective = with_id(
            engine,
            now_ms,
            allocation_id,
            "allocation_id",
            |e, now, id| e.set_expires(now, id, expires),
        )?;
        if !expires_out.is_null() {
            // SAFETY: non-null and writable per the caller's contract.
            unsafe { *expires_out = effective };
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
        with_id(
            engine,
            now_ms,
            inventory_id,
            "inventory_id",
            |e, now, id| e.set_maintenance(now, id, reason),
        )
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
        lock(engine)?
            .engine
            .handle_timeout(Timestamp::from_millis(now_ms));
        Ok(())
    })
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
        let deadline = lock(engine)?
            .engine
            .poll_timeout()
            .ok_or_else(|| Failure::empty("no deadline is pending"))?;
        *slot = deadline.as_millis();
        Ok(())
    })
}

/// Takes the next output into `output_out`; `ALLOCATE_EMPTY` when there is none. Its strings
/// belong to the engine and stay valid until the next call of this function or `allocate_engine_free`.
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
        let mut inner = lock(engine)?;
        let output = inner
            .engine
            .poll_output()
            .ok_or_else(|| Failure::empty("no output is pending"))?;
        *slot = flatten(&output, &mut inner.output_strings);
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
        non_null(json_out, "json_out")?;
        let output = lock(engine)?
            .engine
            .poll_output()
            .ok_or_else(|| Failure::empty("no output is pending"))?;
        let (to, id) = match output.recipient() {
            Recipient::Client(id) => ("client", id),
            Recipient::Agent(id) => ("agent", id),
        };
        let value = serde_json::json!({"to": to, "id": id, "final": output.is_final(), "message": output.to_wire()});
        give_string(value.to_string(), json_out, "json_out")
    })
}

/// Copies `s` into `buf` as a C string (dropping any NUL bytes) and returns a pointer to it.
fn c_string_in(buf: &mut Vec<u8>, s: &str) -> *const c_char {
    buf.clear();
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.push(0);
    buf.as_ptr().cast()
}

fn flatten(output: &Output, strings: &mut [Vec<u8>; 3]) -> allocate_output {
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
    };
    use allocate_output_kind as K;
    match output {
        Output::Queued {
            allocation_id,
            position,
            matching_resources,
            eta,
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
        } => {
            o.kind = K::ALLOCATE_OUTPUT_READY;
            o.allocation_id = (*allocation_id).into();
            o.inventory_id = (*inventory_id).into();
            o.expires = *expires;
            let [host, username, password] = strings;
            o.host = c_string_in(host, &connection.host);
            o.username = c_string_in(username, &connection.username);
            o.password = c_string_in(password, &connection.password);
        }
        Output::Provision {
            agent_id,
            allocation_id,
            inventory_id,
            username,
            expires,
        } => {
            o.kind = K::ALLOCATE_OUTPUT_PROVISION;
            o.agent_id = (*agent_id).into();
            o.allocation_id = (*allocation_id).into();
            o.inventory_id = (*inventory_id).into();
            o.expires = *expires;
            o.username = c_string_in(&mut strings[1], username);
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
        Output::TimedOut { allocation_id }
        | Output::Expired { allocation_id }
        | Output::Released { allocation_id }
        | Output::Offline { allocation_id }
        | Output::Online { allocation_id } => {
            o.kind = match output {
                Output::TimedOut { .. } => K::ALLOCATE_OUTPUT_TIMED_OUT,
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
        non_null(json_out, "json_out")?;
        let entries: Vec<_> = lock(engine)?.engine.inventory().collect();
        give_string(json_string(&entries)?, json_out, "json_out")
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
    guard(|| {
        let id = uuid_arg(allocation_id, "allocation_id")?;
        non_null(json_out, "json_out")?;
        let info = lock(engine)?.engine.allocation(&id).ok_or_else(|| {
            Failure::from(allocate_core::Error::NotFound {
                kind: "allocation",
                id: id.to_string(),
            })
        })?;
        give_string(json_string(&info)?, json_out, "json_out")
    })
}

/// The whole state as JSON, into `json_out` (free with `allocate_string_free`). Drain outputs first:
/// undelivered outputs are not part of it.
///
/// # Safety
/// `engine` live; `json_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_snapshot_json(
    engine: *mut allocate_engine,
    json_out: *mut *mut c_char,
) -> allocate_result {
    guard(|| {
        non_null(json_out, "json_out")?;
        let snapshot = lock(engine)?.engine.snapshot();
        give_string(json_string(&snapshot)?, json_out, "json_out")
    })
}

/// Creates an engine in the state a snapshot describes; new ids come from a stream seeded with
/// `seed`. The caller owns `*engine_out` and frees it with `allocate_engine_free`.
///
/// # Safety
/// `snapshot_json` NUL-terminated; `engine_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_restore_json(
    snapshot_json: *const c_char,
    seed: u64,
    engine_out: *mut *mut allocate_engine,
) -> allocate_result {
    guard(|| {
        // SAFETY (both): the caller's contract.
        let slot = unsafe { out(engine_out, "engine_out") }?;
        let text = unsafe { text(snapshot_json, "snapshot_json") }?;
        let snapshot: Snapshot = serde_json::from_str(text).map_err(|e| {
            Failure::new(
                allocate_result::ALLOCATE_INVALID_REQUEST,
                format!("snapshot_json is not a snapshot: {e}"),
            )
        })?;
        let engine = Engine::restore(&snapshot, Box::new(SeededIds::new(seed)))?;
        *slot = allocate_engine::boxed(engine);
        Ok(())
    })
}

/// Installs a matching policy: `veto` and/or `score` (either may be null), called with
/// `userdata` for each candidate the engine considers. Both null restores plain best fit.
///
/// Callbacks run on the thread that called into the engine, while it holds the engine's lock:
/// they must not call back into the same engine, and `userdata` must stay valid until the
/// policy is replaced or the engine freed. Pointers passed to them live for the call only.
/// Callbacks must be deterministic for snapshots and replay to reproduce the state.
///
/// # Safety
/// The callbacks must be safe to call with the documented arguments.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_set_policy(
    engine: *mut allocate_engine,
    veto: allocate_veto_fn,
    score: allocate_score_fn,
    userdata: *mut c_void,
) -> allocate_result {
    guard(|| {
        let policy: Option<Arc<dyn allocate_core::MatchPolicy>> =
            if veto.is_none() && score.is_none() {
                None
            } else {
                Some(Arc::new(CPolicy {
                    veto,
                    score,
                    userdata,
                }))
            };
        lock(engine)?.engine.set_policy(policy);
        Ok(())
    })
}

/// Parses a hyphenated UUID string into `uuid_out`.
///
/// # Safety
/// `text` NUL-terminated; `uuid_out` writable.
#[no_mangle]
pub unsafe extern "C" fn allocate_uuid_parse(
    text_in: *const c_char,
    uuid_out: *mut allocate_uuid,
) -> allocate_result {
    guard(|| {
        // SAFETY (both): the caller's contract.
        let slot = unsafe { out(uuid_out, "uuid_out") }?;
        let s = unsafe { text(text_in, "text") }?;
        *slot = allocate_core::parse_uuid(s, "text")?.into();
        Ok(())
    })
}

/// Writes a UUID as 36 lower-case hyphenated characters plus a NUL into `buf` (at least 37 bytes).
///
/// # Safety
/// `uuid` readable; `buf` has `buf_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn allocate_uuid_format(
    uuid: *const allocate_uuid,
    buf: *mut c_char,
    buf_len: usize,
) -> allocate_result {
    guard(|| {
        let id = uuid_arg(uuid, "uuid")?;
        non_null(buf, "buf")?;
        if buf_len < 37 {
            return Err(Failure::new(
                allocate_result::ALLOCATE_BUFFER_TOO_SMALL,
                "buf needs 37 bytes",
            ));
        }
        let s = id.hyphenated().to_string();
        // SAFETY: `buf` has at least 37 writable bytes; `s` is 36 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), 36);
            *buf.add(36) = 0;
        }
        Ok(())
    })
}

/// The library's version, a static string (do not free).
#[no_mangle]
pub extern "C" fn allocate_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
