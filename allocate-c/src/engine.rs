//! The engine handle: its lifecycle (new, restore, free), snapshots, and the lock every call
//! on it takes.

use crate::args::{out, text};
use crate::config::allocate_config;
use crate::ownership::{free_box, to_boxed_mut_ptr, try_ref_from_ptr, Castable, OwnershipBox};
use crate::panic::{boundary, guard};
use crate::result::{allocate_result, Failure};
use crate::strings::{give_json, LentStrings};
use crate::uuid::{allocate_uuid, uuid_arg};
use allocate_core::{Config, Engine, SeededIds, Snapshot, Timestamp};
use std::cell::RefCell;
use std::ffi::c_char;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// An engine. Opaque: create with `allocate_engine_new`, free with `allocate_engine_free`.
///
/// A handle may be used from several threads: every call takes the handle's internal lock.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct allocate_engine {
    // Never constructed: C only sees pointers to an `EngineCell` (see `Castable`).
    _private: [u8; 0],
}

/// What an `allocate_engine` pointer points to.
pub(crate) type EngineCell = Mutex<EngineState>;

impl Castable for allocate_engine {
    type Ownership = OwnershipBox;
    type RustType = EngineCell;
}

/// The engine and what it lends to C.
#[derive(Debug)]
pub(crate) struct EngineState {
    /// The engine itself.
    pub engine: Engine,
    /// The strings of the last polled output, kept alive for the caller.
    pub output_strings: LentStrings,
}

fn new_handle(engine: Engine) -> *mut allocate_engine {
    to_boxed_mut_ptr(Mutex::new(EngineState {
        engine,
        output_strings: LentStrings::default(),
    }))
}

thread_local! {
    /// The engines this thread holds locked, innermost last: a policy callback runs while its
    /// engine is locked, and locking it again from there would wait forever.
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A locked engine; unlocks (and forgets that this thread holds it) when dropped.
pub(crate) struct EngineGuard<'a> {
    state: MutexGuard<'a, EngineState>,
    address: usize,
}

impl Deref for EngineGuard<'_> {
    type Target = EngineState;
    fn deref(&self) -> &EngineState {
        &self.state
    }
}

impl DerefMut for EngineGuard<'_> {
    fn deref_mut(&mut self) -> &mut EngineState {
        &mut self.state
    }
}

impl Drop for EngineGuard<'_> {
    fn drop(&mut self) {
        HELD.with_borrow_mut(|held| {
            if let Some(i) = held.iter().rposition(|&a| a == self.address) {
                held.remove(i);
            }
        });
    }
}

/// Locks a handle. A lock poisoned by a caught panic is taken over: the panic was reported then.
/// A thread that already holds it (a policy callback calling back into its engine) gets
/// `ALLOCATE_REENTERED` instead of a deadlock.
///
/// # Safety
/// `engine` must be null or a live handle from this library.
pub(crate) unsafe fn lock<'a>(engine: *const allocate_engine) -> Result<EngineGuard<'a>, Failure> {
    // SAFETY: forwarded from the caller.
    let cell = unsafe { try_ref_from_ptr(engine, "engine") }?;
    let address = engine as usize;
    if HELD.with_borrow(|held| held.contains(&address)) {
        return Err(Failure::new(
            allocate_result::ALLOCATE_REENTERED,
            "a policy callback may not call into the engine that is calling it",
        ));
    }
    let state = cell.lock().unwrap_or_else(|e| e.into_inner());
    HELD.with_borrow_mut(|held| held.push(address));
    Ok(EngineGuard { state, address })
}

/// Runs `f` on the engine with the time and one id argument: the shape of most calls.
///
/// # Safety
/// `engine` must be null or a live handle; `id` null or readable.
pub(crate) unsafe fn with_id<T>(
    engine: *mut allocate_engine,
    now_ms: u64,
    id: *const allocate_uuid,
    name: &str,
    f: impl FnOnce(&mut Engine, Timestamp, Uuid) -> allocate_core::Result<T>,
) -> Result<T, Failure> {
    // SAFETY (both): forwarded from the caller.
    let id = unsafe { uuid_arg(id, name) }?;
    let mut state = unsafe { lock(engine) }?;
    Ok(f(&mut state.engine, Timestamp::from_millis(now_ms), id)?)
}

/// [`with_id`] for the calls that name one allocation (`allocation_id`).
///
/// # Safety
/// As for [`with_id`].
pub(crate) unsafe fn with_allocation<T>(
    engine: *mut allocate_engine,
    now_ms: u64,
    allocation_id: *const allocate_uuid,
    f: impl FnOnce(&mut Engine, Timestamp, Uuid) -> allocate_core::Result<T>,
) -> Result<T, Failure> {
    // SAFETY: forwarded from the caller.
    unsafe { with_id(engine, now_ms, allocation_id, "allocation_id", f) }
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
        // Null is allowed here (the defaults), so not `try_ref_from_ptr`.
        // SAFETY: null or readable, per the caller's contract.
        let config = unsafe { config.as_ref() }.map_or_else(Config::default, Config::from);
        *slot = new_handle(Engine::new(config, Box::new(SeededIds::new(seed))));
        Ok(())
    })
}

/// Frees an engine and everything it owns (including strings of its last output). Null is a no-op.
///
/// Leaves the last error alone, unless a panic is caught inside: then it says so.
///
/// # Safety
/// `engine` must be null or a handle from this library not freed before, not in use by another
/// thread, and not the engine calling the policy callback this is called from.
#[no_mangle]
pub unsafe extern "C" fn allocate_engine_free(engine: *mut allocate_engine) {
    // SAFETY: the caller hands back ownership of a handle from `allocate_engine_new`.
    boundary(|| unsafe { free_box(engine) })
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
        // SAFETY (both): the caller's contract.
        let slot = unsafe { out(json_out, "json_out") }?;
        let snapshot = unsafe { lock(engine) }?.engine.snapshot();
        give_json(&snapshot, slot)
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
        let snapshot = Snapshot::from_stored(text.as_bytes()).map_err(|e| {
            Failure::new(
                allocate_result::ALLOCATE_INVALID_REQUEST,
                format!("snapshot_json is not a snapshot: {e}"),
            )
        })?;
        let engine = Engine::restore(&snapshot, Box::new(SeededIds::new(seed)))?;
        *slot = new_handle(engine);
        Ok(())
    })
}
