//! Tests of the boundary itself: null handles, `_free` functions, and panics inside a call.
//!
//! They call the exported functions as C would. A panic that escaped an `extern "C"` function
//! would abort this test binary, so a passing run also shows that nothing unwound into C.

use crate::engine::lock;
use crate::panic::PANIC_MESSAGE;
use crate::*;
use allocate_core::{Candidate, MatchPolicy, Requirements};
use std::ffi::{c_char, CStr, CString};
use std::mem::MaybeUninit;
use std::ptr::{null, null_mut};
use std::sync::Arc;

const T0_MS: u64 = 1_700_000_000_000;
const RESOURCES: &CStr = c"[{\"labels\": [\"a\"], \"cpu_count\": 4, \"memory_gb\": 8, \"gpu\": [], \"type\": \"VM\", \"connection\": {\"host\": \"h\", \"username\": \"u\", \"password\": \"p\"}}]";
const REQUEST: &CStr = c"{\"username\": \"ci\"}";

fn last_error() -> String {
    let mut buf = [0 as c_char; 256];
    // SAFETY: `buf` has 256 writable bytes.
    let r = unsafe { allocate_last_error_message(buf.as_mut_ptr(), buf.len(), null_mut()) };
    assert_eq!(r, allocate_result::ALLOCATE_OK);
    // SAFETY: the call wrote a NUL-terminated string into `buf`.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A new engine with one registered agent and one free resource.
fn engine_with_a_resource() -> *mut allocate_engine {
    let mut engine = null_mut();
    let agent = allocate_uuid::from(::uuid::Uuid::from_u128(1));
    // SAFETY: valid arguments as the header documents them.
    unsafe {
        assert_eq!(
            allocate_engine_new(null(), 1, &mut engine),
            allocate_result::ALLOCATE_OK
        );
        assert_eq!(
            allocate_engine_register(engine, T0_MS, &agent, RESOURCES.as_ptr(), null_mut()),
            allocate_result::ALLOCATE_OK
        );
    }
    engine
}

/// Installs a Rust policy directly, as C cannot: a C callback cannot panic on the Rust side.
fn set_rust_policy(engine: *mut allocate_engine, policy: Arc<dyn MatchPolicy>) {
    // SAFETY: a live handle from `engine_with_a_resource`.
    unsafe { lock(engine) }
        .expect("live handle")
        .engine
        .set_policy(Some(policy));
}

fn request(engine: *mut allocate_engine) -> allocate_result {
    let mut id = allocate_uuid::default();
    // SAFETY: a live handle and valid arguments.
    unsafe { allocate_engine_request_json(engine, T0_MS, REQUEST.as_ptr(), &mut id) }
}

#[derive(Debug)]
struct PanickingScore;

impl MatchPolicy for PanickingScore {
    fn score(&self, _: &Requirements, _: &Candidate<'_>) -> Option<i64> {
        panic!("a bug in a policy");
    }
}

#[derive(Debug)]
struct PanicsWhenDropped;

impl MatchPolicy for PanicsWhenDropped {}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("a bug in a destructor");
    }
}

#[test]
fn free_of_null_is_a_no_op_that_keeps_the_last_error() {
    let mut id = allocate_uuid::default();
    // SAFETY: null is allowed for the frees; the parse gets a valid out-parameter.
    unsafe {
        assert_eq!(
            allocate_uuid_parse(c"nope".as_ptr(), &mut id),
            allocate_result::ALLOCATE_INVALID_REQUEST
        );
        let before = last_error();
        allocate_engine_free(null_mut());
        allocate_string_free(null_mut());
        assert_eq!(last_error(), before);
    }
}

#[test]
fn a_null_handle_is_null_parameter_in_every_call_on_it() {
    let e: *mut allocate_engine = null_mut();
    let id = allocate_uuid::from(::uuid::Uuid::from_u128(2));
    let text = c"x".as_ptr();
    let username = CString::new("ci").expect("no NUL");
    let req = allocate_request {
        username: username.as_ptr(),
        tags: null(),
        tags_len: 0,
        exclude_tags: null(),
        exclude_tags_len: 0,
        allocation_timeout_seconds: 0,
        expires: 0,
        duration_seconds: 0,
        kind: null(),
        min_cpu_count: 0,
        min_memory_gb: 0,
        gpu_count: 0,
        gpu_label: null(),
        gpu_min_memory_gb: 0,
        release_on_disconnect: false,
        count: 1,
    };
    let (mut id_out, mut u64_out) = (allocate_uuid::default(), 0u64);
    let mut json: *mut c_char = null_mut();
    let mut output = MaybeUninit::<allocate_output>::uninit();
    // SAFETY: every argument but the handle is valid.
    let results = unsafe {
        [
            allocate_engine_register(e, T0_MS, &id, RESOURCES.as_ptr(), null_mut()),
            allocate_engine_disconnect(e, T0_MS, &id),
            allocate_engine_request(e, T0_MS, &req, &mut id_out),
            allocate_engine_request_json(e, T0_MS, REQUEST.as_ptr(), &mut id_out),
            allocate_engine_provisioned(e, T0_MS, &id, &id, text, text, text, null()),
            allocate_engine_release_acknowledged(e, T0_MS, &id, &id),
            allocate_engine_release(e, T0_MS, &id),
            allocate_engine_client_gone(e, T0_MS, &id),
            allocate_engine_set_expires(e, T0_MS, &id, 1, &mut u64_out),
            allocate_engine_set_maintenance(e, T0_MS, &id, null()),
            allocate_engine_handle_timeout(e, T0_MS),
            allocate_engine_poll_timeout(e, &mut u64_out),
            allocate_engine_poll_output(e, output.as_mut_ptr()),
            allocate_engine_poll_output_json(e, &mut json),
            allocate_engine_inventory_json(e, &mut json),
            allocate_engine_allocation_json(e, &id, &mut json),
            allocate_engine_snapshot_json(e, &mut json),
            allocate_engine_set_policy(e, None, None, null_mut()),
        ]
    };
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r, allocate_result::ALLOCATE_NULL_PARAMETER, "call {i}");
    }
    assert_eq!(last_error(), "engine must not be null");
    assert!(json.is_null());
}

#[test]
fn a_panic_inside_a_call_is_contained_and_the_engine_stays_usable() {
    let engine = engine_with_a_resource();
    set_rust_policy(engine, Arc::new(PanickingScore));
    assert_eq!(request(engine), allocate_result::ALLOCATE_PANIC);
    assert_eq!(last_error(), PANIC_MESSAGE);
    // The panic poisoned the handle's lock; the next call takes it over.
    // SAFETY: a live handle; both callbacks null restores best fit.
    let r = unsafe { allocate_engine_set_policy(engine, None, None, null_mut()) };
    assert_eq!(r, allocate_result::ALLOCATE_OK);
    assert_eq!(request(engine), allocate_result::ALLOCATE_OK);
    // SAFETY: a live handle, not used again.
    unsafe { allocate_engine_free(engine) };
}

#[test]
fn a_panic_inside_free_is_contained() {
    let engine = engine_with_a_resource();
    set_rust_policy(engine, Arc::new(PanicsWhenDropped));
    // SAFETY: a live handle, not used again.
    unsafe { allocate_engine_free(engine) };
    assert_eq!(last_error(), PANIC_MESSAGE);
}

/// The kinds of the outputs waiting, in order.
fn drain_kinds(engine: *mut allocate_engine) -> Vec<allocate_output_kind> {
    let mut kinds = Vec::new();
    loop {
        let mut output = MaybeUninit::<allocate_output>::uninit();
        // SAFETY: a live handle and a writable output.
        match unsafe { allocate_engine_poll_output(engine, output.as_mut_ptr()) } {
            allocate_result::ALLOCATE_OK => {
                // SAFETY: the call filled it.
                kinds.push(unsafe { output.assume_init() }.kind);
            }
            allocate_result::ALLOCATE_EMPTY => return kinds,
            other => panic!("poll_output: {other:?}"),
        }
    }
}

fn set_quotas(engine: *mut allocate_engine, policy: Option<&CStr>) -> allocate_result {
    let policy = policy.map_or(null(), CStr::as_ptr);
    // SAFETY: a live handle and a NUL-terminated policy or null.
    unsafe { allocate_engine_set_quotas(engine, T0_MS, policy) }
}

#[test]
fn quotas_set_from_json_refuse_what_could_never_fit_and_a_bad_policy_names_its_field() {
    let engine = engine_with_a_resource();
    let bad = c"{\"default\":\n {\"gpu_max\": 1}}";
    assert_eq!(
        set_quotas(engine, Some(bad)),
        allocate_result::ALLOCATE_INVALID_REQUEST
    );
    let message = last_error();
    assert!(
        message.starts_with("policy_json: line 2, field default.gpu_max: unknown field"),
        "{message}"
    );
    // A request that the policy could never fit is refused at once, naming the limit.
    let one = c"{\"default\": {\"resources_max\": 1}}";
    assert_eq!(set_quotas(engine, Some(one)), allocate_result::ALLOCATE_OK);
    let mut id = allocate_uuid::default();
    let two = c"{\"username\": \"ci\", \"count\": 2}";
    // SAFETY: a live handle and valid arguments.
    let r = unsafe { allocate_engine_request_json(engine, T0_MS, two.as_ptr(), &mut id) };
    assert_eq!(r, allocate_result::ALLOCATE_QUOTA_EXCEEDED);
    assert!(last_error().contains("resources held"), "{}", last_error());
    // The one resource goes to a first request; a second waits for it, until a tighter
    // policy means it could never be served.
    assert_eq!(request(engine), allocate_result::ALLOCATE_OK);
    assert_eq!(request(engine), allocate_result::ALLOCATE_OK);
    let kinds = drain_kinds(engine);
    assert_eq!(
        kinds,
        [
            allocate_output_kind::ALLOCATE_OUTPUT_READY,
            allocate_output_kind::ALLOCATE_OUTPUT_QUEUED
        ]
    );
    let none = c"{\"users\": {\"ci\": {\"allocations_max\": 0}}}";
    assert_eq!(set_quotas(engine, Some(none)), allocate_result::ALLOCATE_OK);
    assert_eq!(
        drain_kinds(engine),
        [allocate_output_kind::ALLOCATE_OUTPUT_QUOTA_REFUSED]
    );
    assert_eq!(
        set_quotas(engine, None),
        allocate_result::ALLOCATE_OK,
        "no quotas"
    );
    // SAFETY: a live handle, not used again.
    unsafe { allocate_engine_free(engine) };
}

#[test]
fn fair_share_order_is_a_setting_that_round_trips() {
    let mut config = MaybeUninit::<allocate_config>::uninit();
    // SAFETY: a writable config.
    let r = unsafe { allocate_config_default(config.as_mut_ptr()) };
    assert_eq!(r, allocate_result::ALLOCATE_OK);
    // SAFETY: the call filled it.
    let mut config = unsafe { config.assume_init() };
    assert!(!config.fair_share, "arrival order by default");
    config.fair_share = true;
    let core = allocate_core::Config::from(&config);
    assert_eq!(core.order, allocate_core::Order::FairShare);
    assert!(allocate_config::from(&core).fair_share);
}
