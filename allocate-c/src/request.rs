//! A request from C without JSON: `allocate_request`, read into the core's `Requirements`.

use crate::args::{opt_text, text, text_list};
use crate::ownership::{Castable, OwnershipRef};
use crate::result::Failure;
use allocate_core::{GpuRequirement, Requirements};
use std::ffi::c_char;

/// What a user asks for (the contract's `requirements`), without JSON.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct allocate_request {
    /// Who holds the allocation (required).
    pub username: *const c_char,
    /// Every tag must be among the resource's labels; may be null when `tags_len` is 0.
    pub tags: *const *const c_char,
    /// Number of `tags`.
    pub tags_len: usize,
    /// None of these may be among the resource's labels; may be null when the length is 0.
    pub exclude_tags: *const *const c_char,
    /// Number of `exclude_tags`.
    pub exclude_tags_len: usize,
    /// How long to wait in the queue; 0 means only if something is free now.
    pub allocation_timeout_seconds: u64,
    /// Lease end in unix seconds; 0 for a lease counted from `ready` (`duration_seconds`,
    /// or the default lease).
    pub expires: u64,
    /// Lease length in seconds counted from `ready`; 0 for none (at most one of this and
    /// `expires` may be set).
    pub duration_seconds: u64,
    /// Required `type` (the contract's field), or null for any.
    pub kind: *const c_char,
    /// Minimum CPUs.
    pub min_cpu_count: u64,
    /// Minimum memory in GB.
    pub min_memory_gb: u64,
    /// Number of GPUs needed; 0 means no GPU requirement.
    pub gpu_count: u32,
    /// GPU label substring (ignoring case), or null for any.
    pub gpu_label: *const c_char,
    /// Minimum memory of each of those GPUs, in GB.
    pub gpu_min_memory_gb: u64,
    /// End the allocation when the client goes away (see `allocate_engine_client_gone`).
    pub release_on_disconnect: bool,
    /// How many distinct resources, each satisfying the rest, are granted together; 0 means
    /// 1. The `ready` output then says how many (`resource_count`); the JSON forms list them.
    pub count: u32,
}

impl Castable for allocate_request {
    type Ownership = OwnershipRef;
    type RustType = allocate_request;
}

impl allocate_request {
    /// The core's requirements for this request.
    ///
    /// # Safety
    /// Every pointer field must be null or valid as documented on the field.
    pub(crate) unsafe fn requirements(&self) -> Result<Requirements, Failure> {
        // SAFETY (all calls): the caller promises the fields are valid.
        let username = unsafe { text(self.username, "request.username") }?;
        let gpu_label = unsafe { opt_text(self.gpu_label, "request.gpu_label") }?;
        Ok(Requirements {
            tags: unsafe { text_list(self.tags, self.tags_len, "request.tags") }?,
            username: username.to_owned(),
            allocation_timeout_seconds: self.allocation_timeout_seconds,
            expires: (self.expires != 0).then_some(self.expires),
            duration_seconds: (self.duration_seconds != 0).then_some(self.duration_seconds),
            kind: unsafe { opt_text(self.kind, "request.kind") }?.map(str::to_owned),
            min_cpu_count: (self.min_cpu_count != 0).then_some(self.min_cpu_count),
            min_memory_gb: (self.min_memory_gb != 0).then_some(self.min_memory_gb),
            gpu: (self.gpu_count != 0).then(|| GpuRequirement {
                label: gpu_label.map(str::to_owned),
                min_memory_gb: self.gpu_min_memory_gb,
                count: self.gpu_count,
            }),
            exclude_tags: unsafe {
                text_list(
                    self.exclude_tags,
                    self.exclude_tags_len,
                    "request.exclude_tags",
                )
            }?,
            release_on_disconnect: self.release_on_disconnect,
            // Not fields of the C struct: a C caller that needs `ssh_keys` or `provision`
            // uses `allocate_engine_request_json`, whose requirements object carries both.
            ssh_keys: Vec::new(),
            provision: None,
            count: self.count.max(1),
        })
    }
}
