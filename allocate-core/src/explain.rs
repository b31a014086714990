//! Why a request is not served (API.md, "Why not"): for each requirement, how many registered
//! resources it rules out, whether fewer match than its `count` asks for together, and for the
//! resources that match, why they cannot be used now (a state, or its user's quota).
//!
//! An explanation is a dry run over the inventory: one pass that judges every resource against
//! each requirement on its own (so a resource ruled out by two requirements counts in both
//! findings), then sorts the resources that pass them all by their state. Nothing changes, and
//! the same inventory and request always give the same findings, in the same order, with the
//! same sentences (seen values are sorted and at most [`SEEN_MAX`] are named).

use crate::criteria::{contains_ignoring_case, Criteria};
use crate::hash::FxHasher;
use crate::model::{Requirements, ResourceSpec};
use crate::quota::QuotaLimit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;

/// Most distinct values a finding's sentence names (labels, types, GPU models seen).
pub const SEEN_MAX: usize = 10;

/// Why some resources cannot serve a request: a requirement that rules them out, or the state
/// of matching ones. More codes may follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// A required tag is not among the resource's labels.
    Tags,
    /// An excluded tag is among the resource's labels.
    ExcludeTags,
    /// The resource's type differs.
    Type,
    /// Too few CPUs.
    MinCpuCount,
    /// Too little memory.
    MinMemoryGb,
    /// No GPU whose label contains the one asked for.
    GpuLabel,
    /// No GPU with enough memory.
    GpuMinMemoryGb,
    /// Fewer GPUs than asked for meet the label and memory asked for.
    GpuCount,
    /// Fewer resources match than the request's `count` asks for together.
    Count,
    /// Matching, but held by an allocation.
    Allocated,
    /// Matching, but being provisioned for an allocation.
    Provisioning,
    /// Matching, but its agent is disconnected.
    Offline,
    /// Matching, but taken out of service by an admin.
    Maintenance,
    /// Matching, but its provisioning or release failed.
    Error,
    /// Matching and free, but taking it would put the request's user over a quota limit.
    Quota,
    /// Matching and free, but held for the request at the front of the queue.
    Reserved,
}

impl Reason {
    /// Every reason, in a fixed order: the requirements, then the states.
    pub const ALL: [Reason; 16] = [
        Reason::Tags,
        Reason::ExcludeTags,
        Reason::Type,
        Reason::MinCpuCount,
        Reason::MinMemoryGb,
        Reason::GpuLabel,
        Reason::GpuMinMemoryGb,
        Reason::GpuCount,
        Reason::Count,
        Reason::Allocated,
        Reason::Provisioning,
        Reason::Offline,
        Reason::Maintenance,
        Reason::Error,
        Reason::Quota,
        Reason::Reserved,
    ];

    /// The reason's code in the contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Tags => "tags",
            Reason::ExcludeTags => "exclude_tags",
            Reason::Type => "type",
            Reason::MinCpuCount => "min_cpu_count",
            Reason::MinMemoryGb => "min_memory_gb",
            Reason::GpuLabel => "gpu_label",
            Reason::GpuMinMemoryGb => "gpu_min_memory_gb",
            Reason::GpuCount => "gpu_count",
            Reason::Count => "count",
            Reason::Allocated => "allocated",
            Reason::Provisioning => "provisioning",
            Reason::Offline => "offline",
            Reason::Maintenance => "maintenance",
            Reason::Error => "error",
            Reason::Quota => "quota",
            Reason::Reserved => "reserved",
        }
    }

    /// Parses a reason code.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One reason, how many resources it concerns, and a sentence saying it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How many resources it concerns: registered ones ruled out by a requirement, or
    /// matching ones in a state.
    pub count: u64,
    /// One sentence, such as `0 of 40 registered resources have a GPU whose label contains "RTX 2090"; GPU labels seen: Tesla T4`.
    pub message: String,
    /// The reason.
    pub reason: Reason,
}

/// Why a request is or is not served now: the answer of `POST /match`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The findings: requirements that rule resources out (most first), then the states of
    /// matching resources that cannot be used now (most first). Only reasons with a count.
    #[serde(rename = "explain")]
    pub findings: Vec<Finding>,
    /// Matching resources that could be allocated now.
    pub free: u64,
    /// Registered resources that could ever satisfy the request.
    pub matching_resources: u64,
}

impl Explanation {
    /// The first finding, the one a refusal names.
    pub fn first(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

/// What a matching resource is doing: `None` when it could be allocated now.
pub(crate) type Availability = Option<Reason>;

/// The requirements judged on each resource on its own: the first reasons of [`Reason::ALL`].
const JUDGED: usize = 8;

/// The states of matching resources: the reasons of [`Reason::ALL`] from `Allocated` on.
const STATES: usize = Reason::ALL.len() - Reason::Allocated as usize;

/// The quota limit that keeps free matching resources from a request (the `quota` finding):
/// taking one would put `user` over `limit`, whose value is `max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QuotaHold {
    /// The request's user.
    pub user: String,
    /// The limit.
    pub limit: QuotaLimit,
    /// Its value for the user.
    pub max: u64,
}

/// A set of the values seen, hashed while gathering (a sorted set cost more than the rest of
/// the pass at 100,000 resources); sorted once a sentence names them.
type Seen<'a> = HashSet<&'a str, BuildHasherDefault<FxHasher>>;

/// Per-requirement counts, gathered in one pass, and the values seen, gathered in a second
/// pass only for the findings whose sentences name them.
#[derive(Default)]
struct Tally<'a> {
    ruled_out: [u64; JUDGED],
    states: [u64; STATES],
    matching: u64,
    free: u64,
    total: u64,
    labels: BTreeSet<&'a str>,
    kinds: BTreeSet<&'a str>,
    gpu_labels: BTreeSet<&'a str>,
    cpu_max: u64,
    memory_max: u64,
    gpu_memory_max: u64,
    suitable_gpus_max: u64,
}

/// Calls `fail` with each requirement of `criteria` that `spec` fails, in [`Reason::ALL`] order;
/// returns the number of GPUs that meet both the label and the memory asked for.
fn judge(criteria: &Criteria, spec: &ResourceSpec, mut fail: impl FnMut(Reason)) -> u64 {
    let has = |tag: &String| spec.labels.contains(tag);
    if !criteria.tags.iter().all(has) {
        fail(Reason::Tags);
    }
    if criteria.exclude_tags.iter().any(has) {
        fail(Reason::ExcludeTags);
    }
    if criteria.kind.as_ref().is_some_and(|k| *k != spec.kind) {
        fail(Reason::Type);
    }
    if spec.cpu_count < criteria.min_cpu_count {
        fail(Reason::MinCpuCount);
    }
    if spec.memory_gb < criteria.min_memory_gb {
        fail(Reason::MinMemoryGb);
    }
    let Some(want) = &criteria.gpu else {
        return 0;
    };
    let label_ok = |label: &str| {
        want.label_lower
            .as_ref()
            .is_none_or(|l| contains_ignoring_case(label, l))
    };
    // One look at each GPU: its model's name is searched once.
    let (mut no_label, mut no_memory, mut suitable) = (true, true, 0u64);
    for g in &spec.gpu {
        let (label, memory) = (label_ok(&g.label), g.memory_gb >= want.min_memory_gb);
        no_label &= !label;
        no_memory &= !memory;
        suitable += u64::from(label && memory);
    }
    let label_failed = want.label_lower.is_some() && no_label;
    let memory_failed = want.min_memory_gb > 0 && no_memory;
    if label_failed {
        fail(Reason::GpuLabel);
    }
    if memory_failed {
        fail(Reason::GpuMinMemoryGb);
    }
    // Fewer suitable GPUs than asked for, where neither the label nor the memory alone
    // already ruled the resource out: with `count: 1`, a resource without any GPU.
    let alone = !label_failed && !memory_failed;
    if alone && suitable < u64::from(want.count) {
        fail(Reason::GpuCount);
    }
    suitable
}

impl<'a> Tally<'a> {
    /// Counts one resource; `availability` is asked only of a matching one.
    fn add(
        &mut self,
        criteria: &Criteria,
        spec: &'a ResourceSpec,
        availability: impl FnOnce() -> Availability,
    ) {
        self.total += 1;
        let mut fails = false;
        let ruled_out = &mut self.ruled_out;
        let suitable = judge(criteria, spec, |r| {
            fails = true;
            ruled_out[r as usize] += 1;
        });
        self.cpu_max = self.cpu_max.max(spec.cpu_count);
        self.memory_max = self.memory_max.max(spec.memory_gb);
        if criteria.gpu.is_some() {
            let most = spec.gpu.iter().map(|g| g.memory_gb).max().unwrap_or(0);
            self.gpu_memory_max = self.gpu_memory_max.max(most);
            self.suitable_gpus_max = self.suitable_gpus_max.max(suitable);
        }
        if fails {
            return;
        }
        self.matching += 1;
        match availability() {
            None => self.free += 1,
            Some(state) => {
                let i = state as usize - Reason::Allocated as usize;
                self.states[i] += 1;
            }
        }
    }
}

/// The labels and types of the registered resources, when the caller knows them (the
/// matcher's index does): the sentences then name them without a pass over every resource.
pub(crate) struct Known<'a> {
    /// Every label some resource carries.
    pub labels: Vec<&'a str>,
    /// Every type some resource is of.
    pub kinds: Vec<&'a str>,
}

/// Gathers the values the findings' sentences name (labels for `tags`, types for `type`, GPU
/// models for `gpu_label`), sorted: from `known` where given, else from `resources`.
fn gather_seen<'a>(
    tally: &mut Tally<'a>,
    resources: impl Iterator<Item = &'a ResourceSpec>,
    known: Option<Known<'a>>,
) {
    let wants = |r: Reason| tally.ruled_out[r as usize] > 0;
    let (mut labels, mut kinds, gpus) = (
        wants(Reason::Tags),
        wants(Reason::Type),
        wants(Reason::GpuLabel),
    );
    if let Some(known) = known {
        if labels {
            tally.labels = known.labels.into_iter().collect();
        }
        if kinds {
            tally.kinds = known.kinds.into_iter().collect();
        }
        (labels, kinds) = (false, false);
    }
    if !(labels || kinds || gpus) {
        return;
    }
    let (mut seen_labels, mut seen_kinds, mut seen_gpus) =
        (Seen::default(), Seen::default(), Seen::default());
    for spec in resources {
        if labels {
            seen_labels.extend(spec.labels.iter().map(String::as_str));
        }
        if kinds {
            seen_kinds.insert(&spec.kind);
        }
        if gpus {
            seen_gpus.extend(spec.gpu.iter().map(|g| g.label.as_str()));
        }
    }
    if labels {
        tally.labels = seen_labels.into_iter().collect();
    }
    if kinds {
        tally.kinds = seen_kinds.into_iter().collect();
    }
    tally.gpu_labels = seen_gpus.into_iter().collect();
}

/// `values` sorted, at most [`SEEN_MAX`] of them, joined with commas (`none` when empty).
fn seen(values: &BTreeSet<&str>) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    let mut out = String::new();
    for (i, v) in values.iter().take(SEEN_MAX).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(v);
    }
    if values.len() > SEEN_MAX {
        let _ = write!(out, " and {} more", values.len() - SEEN_MAX);
    }
    out
}

/// `"a", "b"`: a list of asked-for values, quoted.
fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sentence of a requirement's finding: `passing of total registered resources ...`.
fn requirement_message(
    reason: Reason,
    req: &Requirements,
    criteria: &Criteria,
    tally: &Tally<'_>,
    count: u64,
) -> String {
    let (total, passing) = (tally.total, tally.total - count);
    let head = format!("{passing} of {total} registered resources");
    let gpu = req.gpu.as_ref();
    match reason {
        Reason::Tags => format!(
            "{head} carry every tag of {}; labels seen: {}",
            quoted(&criteria.tags),
            seen(&tally.labels)
        ),
        Reason::ExcludeTags => format!(
            "{head} carry none of the excluded tags {}",
            quoted(&criteria.exclude_tags)
        ),
        Reason::Type => format!(
            "{head} are of type {:?}; types seen: {}",
            criteria.kind.as_deref().unwrap_or_default(),
            seen(&tally.kinds)
        ),
        Reason::MinCpuCount => format!(
            "{head} have at least {} CPUs; the most seen: {}",
            criteria.min_cpu_count, tally.cpu_max
        ),
        Reason::MinMemoryGb => format!(
            "{head} have at least {} GB of memory; the most seen: {} GB",
            criteria.min_memory_gb, tally.memory_max
        ),
        Reason::GpuLabel => format!(
            "{head} have a GPU whose label contains {:?}; GPU labels seen: {}",
            gpu.and_then(|g| g.label.as_deref()).unwrap_or_default(),
            seen(&tally.gpu_labels)
        ),
        Reason::GpuMinMemoryGb => format!(
            "{head} have a GPU with at least {} GB of memory; the most seen: {} GB",
            gpu.map_or(0, |g| g.min_memory_gb),
            tally.gpu_memory_max
        ),
        _ => format!(
            "{head} have {} GPUs that meet the label and memory asked for; the most seen on one resource: {}",
            gpu.map_or(0, |g| g.count),
            tally.suitable_gpus_max
        ),
    }
}

/// The sentence of a state's finding (`quota`: what holds the user back, if known).
fn state_message(reason: Reason, count: u64, matching: u64, quota: Option<&QuotaHold>) -> String {
    let quota_words;
    let what = match reason {
        Reason::Allocated => "are allocated",
        Reason::Provisioning => "are being provisioned for an allocation",
        Reason::Offline => "are offline (their agent is disconnected)",
        Reason::Maintenance => "are in maintenance",
        Reason::Quota => {
            quota_words = quota.map_or_else(
                || "are free but would put the user over a quota limit".to_owned(),
                |q| {
                    format!(
                        "are free but would put {} over the limit of {} ({})",
                        q.user, q.limit, q.max
                    )
                },
            );
            &quota_words
        }
        Reason::Reserved => "are free but held for the request at the front of the queue",
        _ => "are in error (a provision or release failed)",
    };
    format!("{count} of {matching} matching resources {what}")
}

/// The `count` finding, when some resources match but fewer than `req.count` asks for
/// together: it concerns the matching ones, none of which can serve it.
fn count_finding(req: &Requirements, tally: &Tally<'_>) -> Option<Finding> {
    let wanted = u64::from(req.count);
    (tally.matching > 0 && tally.matching < wanted).then(|| Finding {
        count: tally.matching,
        message: format!(
            "{} of {} registered resources satisfy every requirement, fewer than the {wanted} \
             the request asks for together",
            tally.matching, tally.total
        ),
        reason: Reason::Count,
    })
}

/// Explains `req` over `resources`: every registered resource, with a way to learn its
/// availability (asked only of matching ones: it costs a look-up of the allocation holding it).
#[cfg(test)]
pub(crate) fn explain<'a, I, A>(req: &Requirements, resources: I) -> Explanation
where
    I: IntoIterator<Item = (&'a ResourceSpec, A)>,
    I::IntoIter: Clone,
    A: FnOnce() -> Availability,
{
    explain_known(req, resources, None, None)
}

/// [`explain`], naming the labels and types seen from `known` where given, and in the `quota`
/// finding (resources whose availability is [`Reason::Quota`]) the limit `quota`.
pub(crate) fn explain_known<'a, I, A>(
    req: &Requirements,
    resources: I,
    known: Option<Known<'a>>,
    quota: Option<&QuotaHold>,
) -> Explanation
where
    I: IntoIterator<Item = (&'a ResourceSpec, A)>,
    I::IntoIter: Clone,
    A: FnOnce() -> Availability,
{
    let criteria = &Criteria::of(req);
    let mut tally = Tally::default();
    let resources = resources.into_iter();
    for (spec, availability) in resources.clone() {
        tally.add(criteria, spec, availability);
    }
    gather_seen(&mut tally, resources.map(|(spec, _)| spec), known);
    let mut requirements: Vec<Finding> = Reason::ALL[..JUDGED]
        .iter()
        .zip(tally.ruled_out)
        .filter(|&(_, count)| count > 0)
        .map(|(&reason, count)| Finding {
            count,
            message: requirement_message(reason, req, criteria, &tally, count),
            reason,
        })
        .chain(count_finding(req, &tally))
        .collect();
    let mut states: Vec<Finding> = Reason::ALL[Reason::Allocated as usize..]
        .iter()
        .zip(tally.states)
        .filter(|&(_, count)| count > 0)
        .map(|(&reason, count)| Finding {
            count,
            message: state_message(reason, count, tally.matching, quota),
            reason,
        })
        .collect();
    // Most first; ties keep the fixed order (the sort is stable).
    requirements.sort_by_key(|f| std::cmp::Reverse(f.count));
    states.sort_by_key(|f| std::cmp::Reverse(f.count));
    requirements.extend(states);
    Explanation {
        findings: requirements,
        free: tally.free,
        matching_resources: tally.matching,
    }
}

#[cfg(test)]
mod tests;
