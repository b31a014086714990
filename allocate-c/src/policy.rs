//! Matching policy from C: a veto and a score callback with a `void *userdata`, installed on
//! an engine as an ordinary `MatchPolicy`.

use crate::engine::{allocate_engine, lock};
use crate::panic::guard;
use crate::result::allocate_result;
use crate::uuid::allocate_uuid;
use allocate_core::{Candidate, MatchPolicy, Requirements};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

/// One GPU of a candidate resource.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct allocate_gpu_view {
    /// Its model name.
    pub label: *const c_char,
    /// Its memory in GB.
    pub memory_gb: u64,
}

/// A resource the engine is considering, as a callback sees it (borrowed for the call only).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct allocate_candidate {
    /// The resource.
    pub inventory_id: allocate_uuid,
    /// Its agent.
    pub agent_id: allocate_uuid,
    /// Its labels.
    pub labels: *const *const c_char,
    /// Number of `labels`.
    pub labels_len: usize,
    /// CPUs.
    pub cpu_count: u64,
    /// Memory in GB.
    pub memory_gb: u64,
    /// GPUs.
    pub gpus: *const allocate_gpu_view,
    /// Number of `gpus`.
    pub gpus_len: usize,
    /// Its `type`.
    pub kind: *const c_char,
}

/// The request being placed, as a callback sees it (borrowed for the call only).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct allocate_request_view {
    /// Who asks.
    pub username: *const c_char,
    /// Required tags.
    pub tags: *const *const c_char,
    /// Number of `tags`.
    pub tags_len: usize,
    /// Required `type`, or null.
    pub kind: *const c_char,
    /// Minimum CPUs (0 when none).
    pub min_cpu_count: u64,
    /// Minimum memory in GB (0 when none).
    pub min_memory_gb: u64,
    /// GPUs needed (0 when none).
    pub gpu_count: u32,
}

/// Returns true to forbid giving `candidate` to `request`.
#[allow(non_camel_case_types)]
pub type allocate_veto_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        request: *const allocate_request_view,
        candidate: *const allocate_candidate,
    ) -> bool,
>;

/// Writes a score (higher wins) to `score_out` and returns true, or returns false for no opinion.
#[allow(non_camel_case_types)]
pub type allocate_score_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        request: *const allocate_request_view,
        candidate: *const allocate_candidate,
        score_out: *mut i64,
    ) -> bool,
>;

/// The callbacks and their userdata, as an ordinary [`MatchPolicy`].
#[derive(Debug)]
struct CPolicy {
    veto: allocate_veto_fn,
    score: allocate_score_fn,
    userdata: *mut c_void,
}

// SAFETY: the header documents that callbacks run on whichever thread calls into the engine
// (one at a time, under the engine's lock), and that `userdata` must allow that.
unsafe impl Send for CPolicy {}
// SAFETY: as above; the engine's lock serialises every call.
unsafe impl Sync for CPolicy {}

/// C strings built for one callback: kept alive until the callback returns.
struct Views {
    strings: Vec<CString>,
}

impl Views {
    fn ptr(&mut self, s: &str) -> *const c_char {
        // Interior NULs cannot come from the core's parsers, but a Rust caller could pass one.
        let c = CString::new(s.replace('\0', "")).unwrap_or_default();
        let p = c.as_ptr();
        self.strings.push(c);
        p
    }

    fn list(&mut self, items: &[String]) -> Vec<*const c_char> {
        items.iter().map(|s| self.ptr(s)).collect()
    }
}

impl CPolicy {
    fn call<T>(
        &self,
        request: &Requirements,
        candidate: &Candidate<'_>,
        f: impl FnOnce(&allocate_request_view, &allocate_candidate) -> T,
    ) -> T {
        let mut views = Views {
            strings: Vec::new(),
        };
        let tags = views.list(&request.tags);
        let labels = views.list(&candidate.spec.labels);
        let gpus: Vec<allocate_gpu_view> = candidate
            .spec
            .gpu
            .iter()
            .map(|g| allocate_gpu_view {
                label: views.ptr(&g.label),
                memory_gb: g.memory_gb,
            })
            .collect();
        let request_view = allocate_request_view {
            username: views.ptr(&request.username),
            tags: tags.as_ptr(),
            tags_len: tags.len(),
            kind: request
                .kind
                .as_deref()
                .map_or(std::ptr::null(), |k| views.ptr(k)),
            min_cpu_count: request.min_cpu_count.unwrap_or(0),
            min_memory_gb: request.min_memory_gb.unwrap_or(0),
            gpu_count: request.gpu.as_ref().map_or(0, |g| g.count),
        };
        let candidate_view = allocate_candidate {
            inventory_id: candidate.inventory_id.into(),
            agent_id: candidate.agent_id.into(),
            labels: labels.as_ptr(),
            labels_len: labels.len(),
            cpu_count: candidate.spec.cpu_count,
            memory_gb: candidate.spec.memory_gb,
            gpus: gpus.as_ptr(),
            gpus_len: gpus.len(),
            kind: views.ptr(&candidate.spec.kind),
        };
        f(&request_view, &candidate_view)
    }
}

impl MatchPolicy for CPolicy {
    fn veto(&self, request: &Requirements, candidate: &Candidate<'_>) -> bool {
        let Some(veto) = self.veto else { return false };
        // SAFETY: the views live until `call` returns; the callback's contract is in the header.
        self.call(request, candidate, |r, c| unsafe {
            veto(self.userdata, r, c)
        })
    }

    fn score(&self, request: &Requirements, candidate: &Candidate<'_>) -> Option<i64> {
        let score = self.score?;
        let mut out = 0i64;
        // SAFETY: as for `veto`; `out` is a valid local.
        let has = self.call(request, candidate, |r, c| unsafe {
            score(self.userdata, r, c, &mut out)
        });
        has.then_some(out)
    }
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
        // SAFETY: the caller's contract.
        unsafe { lock(engine) }?.engine.set_policy(policy);
        Ok(())
    })
}
