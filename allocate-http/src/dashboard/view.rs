//! The feed's picture of the lab: every resource, the queue and the live allocations, in the
//! shapes the page draws. Connection details are never in it: allocations are written field
//! by field from [`AllocationInfo`], leaving its `connection` out.

use crate::auth::tokens::Role;
use crate::auth::Caller;
use crate::error::ApiError;
use allocate_core::wire::Envelope;
use allocate_core::{AllocationInfo, AllocationState, Engine, GpuRequirement, Requirements};
use serde::{Serialize, Serializer};
use std::cell::Cell;
use uuid::Uuid;

/// Who is looking, so that the page offers release buttons only where DELETE would succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallerView {
    /// `open` (no tokens configured: everyone is an admin), `admin` or `user`.
    pub role: &'static str,
    /// The admin's name or the user's username, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl CallerView {
    /// The view of `caller` (agents never get this far: the feed refuses them).
    pub fn of(caller: &Caller) -> CallerView {
        let (role, name) = match caller {
            Caller::Anyone => ("open", None),
            Caller::Bearer(Role::Admin(name)) => ("admin", name.clone()),
            Caller::Bearer(Role::User(name)) => ("user", Some(name.clone())),
            Caller::Bearer(Role::Agent(id)) => ("agent", id.map(|id| id.to_string())),
        };
        CallerView { role, name }
    }
}

/// The first message on a feed socket: who the server takes the caller for, and its clock
/// (unix seconds), from which the page counts down leases.
#[derive(Debug, Serialize)]
pub struct Hello {
    #[serde(rename = "type")]
    kind: &'static str,
    now: u64,
    caller: CallerView,
}

impl Hello {
    /// The hello for `caller` at `now`.
    pub fn new(caller: &Caller, now: u64) -> Hello {
        Hello {
            kind: "hello",
            now,
            caller: CallerView::of(caller),
        }
    }
}

/// What an allocation asked for: the matching fields of its requirements, not its
/// username (the allocation has that) nor anything a client sent about its lease.
#[derive(Debug, Serialize)]
struct Wants<'a> {
    tags: &'a [String],
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_cpu_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_memory_gb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu: Option<&'a GpuRequirement>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    exclude_tags: &'a [String],
    /// How long it is willing to wait in the queue, from `created`.
    allocation_timeout_seconds: u64,
}

impl<'a> From<&'a Requirements> for Wants<'a> {
    fn from(r: &'a Requirements) -> Self {
        Wants {
            tags: &r.tags,
            kind: r.kind.as_deref(),
            min_cpu_count: r.min_cpu_count,
            min_memory_gb: r.min_memory_gb,
            gpu: r.gpu.as_ref(),
            exclude_tags: &r.exclude_tags,
            allocation_timeout_seconds: r.allocation_timeout_seconds,
        }
    }
}

/// A live allocation as the page shows it. Deliberately not [`AllocationInfo`] itself,
/// which carries the connection.
#[derive(Debug, Serialize)]
struct Allocation<'a> {
    allocation_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory_id: Option<Uuid>,
    username: &'a str,
    state: AllocationState,
    created: u64,
    expires: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wants: Option<Wants<'a>>,
}

impl<'a> Allocation<'a> {
    fn new(info: &'a AllocationInfo, wants: Option<&'a Requirements>) -> Self {
        Allocation {
            allocation_id: info.allocation_id,
            inventory_id: info.inventory_id,
            username: &info.username,
            state: info.state,
            created: info.created,
            expires: info.expires,
            position: info.position,
            wants: wants.map(Wants::from),
        }
    }
}

/// Serializes what an iterator yields as a JSON array, without collecting it first.
struct OnePass<I>(Cell<Option<I>>);

impl<I: Iterator<Item: Serialize>> Serialize for OnePass<I> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.take().into_iter().flatten())
    }
}

fn one_pass<I: Iterator<Item: Serialize>>(items: I) -> OnePass<I> {
    OnePass(Cell::new(Some(items)))
}

/// The whole picture, as the feed and `GET /dashboard/feed` send it.
#[derive(Serialize)]
#[serde(bound = "OnePass<R>: Serialize, OnePass<A>: Serialize")]
struct Snapshot<R, A> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When it was taken (the server's clock, unix seconds).
    at: u64,
    /// The engine's change counter: a newer picture of the same server has a larger or
    /// equal one, so the page can ignore an older one that arrives late.
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller: Option<CallerView>,
    resources: OnePass<R>,
    allocations: OnePass<A>,
}

/// `{"status": 200, "data": {"type": "snapshot", ...}}` of `engine` as text, with the
/// caller when one is given (plain GET; the feed says it once, in its hello). Runs on the
/// engine task and copies nothing but the live allocations.
pub fn snapshot_text(
    engine: &Engine,
    at: u64,
    caller: Option<CallerView>,
) -> Result<String, ApiError> {
    let live: Vec<AllocationInfo> = engine
        .allocations()
        .into_iter()
        .take_while(|a| !a.state.is_terminal())
        .collect();
    let allocations = live
        .iter()
        .map(|a| Allocation::new(a, engine.requirements(&a.allocation_id)));
    let resources = engine.inventory_refs();
    let capacity = engine.resource_count() * RESOURCE_BYTES + live.len() * ALLOCATION_BYTES;
    envelope_text_sized(
        &Snapshot {
            kind: "snapshot",
            at,
            version: engine.changes(),
            caller,
            resources: one_pass(resources),
            allocations: one_pass(allocations),
        },
        capacity,
    )
}

/// Room reserved per resource and per allocation in a snapshot (typical entries are ~270
/// and ~250 bytes), so that a large one is not copied again at every doubling of its buffer.
const RESOURCE_BYTES: usize = 384;
const ALLOCATION_BYTES: usize = 320;

/// `{"status": 200, "data": data}` as text.
pub fn envelope_text(data: &impl Serialize) -> Result<String, ApiError> {
    envelope_text_sized(data, 128)
}

/// [`envelope_text`] into a buffer that starts with `capacity` bytes.
fn envelope_text_sized(data: &impl Serialize, capacity: usize) -> Result<String, ApiError> {
    let mut out = Vec::with_capacity(capacity);
    Envelope::Ok(data)
        .write(&mut out)
        .map_err(|_| ApiError::Internal("serializing a dashboard snapshot"))?;
    String::from_utf8(out).map_err(|_| ApiError::Internal("a dashboard snapshot is not UTF-8"))
}
