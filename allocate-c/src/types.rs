//! Plain C structs crossing the boundary: ids, settings, requests and outputs.

use crate::args::{opt_text, text, text_list};
use crate::result::Failure;
use allocate_core::{Config, GpuRequirement, Requirements};
use std::ffi::c_char;
use uuid::Uuid;

/// A UUID as its 16 bytes (big-endian, as printed).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct allocate_uuid {
    /// The bytes.
    pub bytes: [u8; 16],
}

impl From<Uuid> for allocate_uuid {
    fn from(id: Uuid) -> Self {
        allocate_uuid {
            bytes: *id.as_bytes(),
        }
    }
}

impl From<&allocate_uuid> for Uuid {
    fn from(id: &allocate_uuid) -> Self {
        Uuid::from_bytes(id.bytes)
    }
}

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
            ..Config::default()
        }
    }
}

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
    /// Lease end in unix seconds; 0 takes the default lease.
    pub expires: u64,
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
        })
    }
}

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
}
