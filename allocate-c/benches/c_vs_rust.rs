//! Allocate+release cycles through the C API against the same through Rust, in one run.
//!
//! Each cycle asks for a resource (free ones exist), takes the `ready` output, releases it and
//! drains the `released` output. The C path is measured with the struct request (the hot path)
//! and with the JSON request, to show what JSON costs.

#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

use allocate::{
    allocate_engine, allocate_engine_free, allocate_engine_new, allocate_engine_poll_output,
    allocate_engine_register, allocate_engine_release, allocate_engine_request,
    allocate_engine_request_json, allocate_output, allocate_output_kind, allocate_request,
    allocate_result, allocate_uuid,
};
use allocate_core::{Config, Engine, Requirements, SeededIds, Timestamp};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::ffi::{c_char, CString};
use std::hint::black_box;
use uuid::Uuid;

const NOW_MS: u64 = 1_700_000_000_000;
const RESOURCES: usize = 10_000;

fn resources_json() -> String {
    let items: Vec<String> = (0..RESOURCES)
        .map(|i| {
            format!(
                r#"{{"labels": ["lab", "rack-{}"], "cpu_count": {}, "memory_gb": 64, "gpu": [{{"label": "RTX {}", "memory_gb": 8}}],
                     "type": "VM", "connection": {{"host": "10.0.{}.{}", "username": "lab", "password": "pw"}}}}"#,
                i % 16,
                8 << (i % 3),
                2080 + (i % 4) * 10,
                i / 256,
                i % 256
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn c_engine() -> *mut allocate_engine {
    let mut engine = std::ptr::null_mut();
    let agent = allocate_uuid::from(Uuid::from_u128(1));
    let json = CString::new(resources_json()).expect("no NUL");
    // SAFETY: valid arguments per the header.
    unsafe {
        assert_eq!(
            allocate_engine_new(std::ptr::null(), 1, &mut engine),
            allocate_result::ALLOCATE_OK
        );
        assert_eq!(
            allocate_engine_register(engine, NOW_MS, &agent, json.as_ptr(), std::ptr::null_mut()),
            allocate_result::ALLOCATE_OK
        );
    }
    engine
}

fn rust_engine() -> Engine {
    let mut engine = Engine::new(Config::default(), Box::new(SeededIds::new(1)));
    let specs = allocate_core::parse_resources(
        &allocate_core::parse_json(&resources_json()).expect("json"),
        &allocate_core::Limits::default(),
    )
    .expect("resources");
    engine
        .register_agent(Timestamp::from_millis(NOW_MS), Uuid::from_u128(1), specs)
        .expect("register");
    engine
}

/// One C cycle; `request` makes the request and returns its id.
///
/// # Safety
/// `engine` is a live handle.
unsafe fn c_cycle(
    engine: *mut allocate_engine,
    request: impl Fn(&mut allocate_uuid) -> allocate_result,
) {
    let mut id = allocate_uuid::default();
    let mut out = std::mem::MaybeUninit::<allocate_output>::uninit();
    assert_eq!(request(&mut id), allocate_result::ALLOCATE_OK);
    // SAFETY: live handle and a writable output.
    unsafe {
        while allocate_engine_poll_output(engine, out.as_mut_ptr()) == allocate_result::ALLOCATE_OK
        {
            black_box(out.assume_init_ref().kind == allocate_output_kind::ALLOCATE_OUTPUT_READY);
        }
        assert_eq!(
            allocate_engine_release(engine, NOW_MS, &id),
            allocate_result::ALLOCATE_OK
        );
        while allocate_engine_poll_output(engine, out.as_mut_ptr()) == allocate_result::ALLOCATE_OK
        {
        }
    }
}

fn cycles(c: &mut Criterion) {
    let mut group = c.benchmark_group("cycle");
    group.throughput(Throughput::Elements(1));
    let tags: [*const c_char; 1] = [c"lab".as_ptr()];

    let mut rust = rust_engine();
    let mut wants = Requirements::for_user("ci");
    wants.tags = vec!["lab".into()];
    wants.min_cpu_count = Some(16);
    group.bench_function(BenchmarkId::new("rust", RESOURCES), |b| {
        b.iter(|| {
            let now = Timestamp::from_millis(NOW_MS);
            let id = rust.request(now, wants.clone()).expect("request");
            while black_box(rust.poll_output()).is_some() {}
            rust.release(now, id).expect("release");
            while rust.poll_output().is_some() {}
        })
    });

    let engine = c_engine();
    let request = allocate_request {
        username: c"ci".as_ptr(),
        tags: tags.as_ptr(),
        tags_len: 1,
        exclude_tags: std::ptr::null(),
        exclude_tags_len: 0,
        allocation_timeout_seconds: 60,
        expires: 0,
        duration_seconds: 0,
        kind: std::ptr::null(),
        min_cpu_count: 16,
        min_memory_gb: 0,
        gpu_count: 0,
        gpu_label: std::ptr::null(),
        gpu_min_memory_gb: 0,
        release_on_disconnect: false,
        count: 1,
    };
    group.bench_function(BenchmarkId::new("c_struct", RESOURCES), |b| {
        // SAFETY: live handle, valid request.
        b.iter(|| unsafe {
            c_cycle(engine, |id| {
                allocate_engine_request(engine, NOW_MS, &request, id)
            })
        })
    });
    let json = c"{\"username\": \"ci\", \"tags\": [\"lab\"], \"min_cpu_count\": 16}";
    group.bench_function(BenchmarkId::new("c_json", RESOURCES), |b| {
        // SAFETY: live handle, NUL-terminated JSON.
        b.iter(|| unsafe {
            c_cycle(engine, |id| {
                allocate_engine_request_json(engine, NOW_MS, json.as_ptr(), id)
            })
        })
    });
    group.finish();
    // SAFETY: the handle is not used after this.
    unsafe { allocate_engine_free(engine) };
}

criterion_group!(benches, cycles);
criterion_main!(benches);
