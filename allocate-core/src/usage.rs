//! Usage over time (API.md, "Usage"): what each ended allocation held and for how long, and
//! the `GET /usage` summary of resource-seconds and GPU-seconds per user, label or resource.

use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::validate;
use crate::view::AllocationState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// What one allocation held, from `ready` to its end: kept for the retention period after it
/// ends (and shown while it is held, ending now).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// The allocation.
    pub allocation_id: Uuid,
    /// Who held it.
    pub username: String,
    /// The resource it held.
    pub inventory_id: Uuid,
    /// That resource's labels.
    pub labels: Vec<String>,
    /// That resource's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The labels of that resource's GPUs (one entry per GPU).
    pub gpu: Vec<String>,
    /// When it became ready.
    pub ready: Timestamp,
    /// When it ended (or now, while it is held).
    pub ended: Timestamp,
    /// How it ended (`ready` while it is held).
    pub outcome: AllocationState,
}

/// How `GET /usage` groups allocations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UsageBy {
    /// By username.
    #[default]
    User,
    /// By each label of the resource held (an allocation counts under each of its labels).
    Label,
    /// By the resource held (its `inventory_id`).
    Resource,
}

/// The query of `GET /usage`: a window in unix seconds and a grouping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageQuery {
    /// Start of the window (unix seconds); `None`: everything still kept.
    pub from: Option<u64>,
    /// End of the window (unix seconds); `None`: now.
    pub to: Option<u64>,
    /// The grouping.
    pub by: UsageBy,
}

/// One group of the summary (a user, a label or a resource). Read leniently: a newer server
/// may add fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The username, label or `inventory_id`.
    pub key: String,
    /// Allocations that overlapped the window.
    pub allocations: u64,
    /// Seconds resources were held within the window.
    pub resource_seconds: u64,
    /// Seconds GPUs were held within the window (each GPU counts).
    pub gpu_seconds: u64,
}

impl UsageQuery {
    /// Reads `from`, `to` and `by` from a query string's pairs; each at most once, and no
    /// other name. Errors name the field.
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut query = UsageQuery::default();
        let mut seen = [false; 3];
        for (name, value) in pairs {
            let index = match name {
                "from" => 0,
                "to" => 1,
                "by" => 2,
                other => {
                    return Err(Error::invalid(format!(
                        "unknown query parameter `{}`; expected one of: from, to, by",
                        validate::clip(other, 64)
                    )))
                }
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(Error::invalid(format!(
                    "query parameter `{name}` is given more than once"
                )));
            }
            match index {
                0 => query.from = Some(unix_secs(name, value)?),
                1 => query.to = Some(unix_secs(name, value)?),
                _ => query.by = UsageBy::parse(value)?,
            }
        }
        if let (Some(from), Some(to)) = (query.from, query.to) {
            if to < from {
                return Err(Error::invalid(format!(
                    "to ({to}) must not be before from ({from})"
                )));
            }
        }
        Ok(query)
    }
}

impl UsageBy {
    /// Its name in the query: `user`, `label` or `resource`.
    pub const fn as_str(self) -> &'static str {
        match self {
            UsageBy::User => "user",
            UsageBy::Label => "label",
            UsageBy::Resource => "resource",
        }
    }

    fn parse(value: &str) -> Result<Self> {
        match value {
            "user" => Ok(UsageBy::User),
            "label" => Ok(UsageBy::Label),
            "resource" => Ok(UsageBy::Resource),
            other => Err(Error::invalid(format!(
                "by must be one of user, label, resource; got {:?}",
                validate::clip(other, 64)
            ))),
        }
    }
}

fn unix_secs(name: &str, value: &str) -> Result<u64> {
    value.parse().map_err(|_| {
        Error::invalid(format!(
            "{name} must be unix seconds (a non-negative integer); got {:?}",
            validate::clip(value, 64)
        ))
    })
}

/// What the summary reads of one allocation's usage, borrowed from a [`Usage`], from the
/// engine's compact record of it or from an allocation held now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UsageRef<'a> {
    pub username: &'a str,
    pub inventory_id: Uuid,
    pub labels: &'a [String],
    /// How many GPUs the resource has.
    pub gpus: usize,
    pub ready: Timestamp,
    pub ended: Timestamp,
}

impl Usage {
    /// What the summary reads of it.
    #[cfg(test)]
    fn view(&self) -> UsageRef<'_> {
        UsageRef {
            username: &self.username,
            inventory_id: self.inventory_id,
            labels: &self.labels,
            gpus: self.gpu.len(),
            ready: self.ready,
            ended: self.ended,
        }
    }
}

/// Sums `records` that overlap `[from, to)`, clipped to it, grouped by `by`: the groups with
/// the most resource-seconds first, then by key.
pub(crate) fn summarize<'a>(
    records: impl IntoIterator<Item = UsageRef<'a>>,
    from: Timestamp,
    to: Timestamp,
    by: UsageBy,
) -> Vec<UsageRow> {
    // Milliseconds per group, rounded down to seconds once at the end.
    let mut groups: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for u in records {
        let (start, end) = (u.ready.max(from), u.ended.min(to));
        if u.ended < from || u.ready > to || (end <= start && u.ended > u.ready) {
            continue;
        }
        let held_ms = end.as_millis().saturating_sub(start.as_millis());
        let gpu_ms = held_ms.saturating_mul(u.gpus as u64);
        let keys = match by {
            UsageBy::User => vec![u.username.to_owned()],
            UsageBy::Label => u.labels.to_vec(),
            UsageBy::Resource => vec![u.inventory_id.to_string()],
        };
        for key in keys {
            let group = groups.entry(key).or_default();
            group.0 += 1;
            group.1 = group.1.saturating_add(held_ms);
            group.2 = group.2.saturating_add(gpu_ms);
        }
    }
    let mut rows: Vec<UsageRow> = groups
        .into_iter()
        .map(|(key, (allocations, held_ms, gpu_ms))| UsageRow {
            key,
            allocations,
            resource_seconds: held_ms / 1000,
            gpu_seconds: gpu_ms / 1000,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.resource_seconds
            .cmp(&a.resource_seconds)
            .then_with(|| a.key.cmp(&b.key))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(user: &str, labels: &[&str], gpus: usize, ready: u64, ended: u64) -> Usage {
        Usage {
            allocation_id: Uuid::from_u128(u128::from(ready)),
            username: user.into(),
            inventory_id: Uuid::from_u128(u128::from(ended)),
            labels: labels.iter().map(|&l| l.to_owned()).collect(),
            kind: "VM".into(),
            gpu: vec!["Tesla T4".into(); gpus],
            ready: Timestamp::from_secs(ready),
            ended: Timestamp::from_secs(ended),
            outcome: AllocationState::Released,
        }
    }

    #[test]
    fn allocations_overlapping_the_window_are_clipped_to_it_and_grouped() {
        let records = [
            usage("alice", &["nvidia", "cuda"], 2, 100, 200),
            usage("alice", &["nvidia"], 0, 150, 400),
            usage("bob", &["cuda"], 1, 500, 600),
            usage("carol", &[], 1, 0, 50),
        ];
        let (from, to) = (Timestamp::from_secs(120), Timestamp::from_secs(300));
        let by_user = summarize(records.iter().map(Usage::view), from, to, UsageBy::User);
        assert_eq!(
            by_user,
            vec![UsageRow {
                key: "alice".into(),
                allocations: 2,
                resource_seconds: 80 + 150,
                gpu_seconds: 2 * 80,
            }]
        );
        let by_label = summarize(records.iter().map(Usage::view), from, to, UsageBy::Label);
        let keys: Vec<_> = by_label
            .iter()
            .map(|r| (r.key.as_str(), r.resource_seconds))
            .collect();
        assert_eq!(keys, [("nvidia", 230), ("cuda", 80)]);
        let everything = summarize(
            records.iter().map(Usage::view),
            Timestamp::default(),
            Timestamp::MAX,
            UsageBy::Resource,
        );
        assert_eq!(everything.len(), 4);
    }

    #[test]
    fn the_query_names_the_bad_field() {
        let q = UsageQuery::from_query([("from", "10"), ("to", "20"), ("by", "label")]).unwrap();
        assert_eq!(
            q,
            UsageQuery {
                from: Some(10),
                to: Some(20),
                by: UsageBy::Label
            }
        );
        assert_eq!(UsageQuery::from_query([]).unwrap(), UsageQuery::default());
        for (pairs, names) in [
            (vec![("from", "yesterday")], "from must be unix seconds"),
            (vec![("to", "-1")], "to must be unix seconds"),
            (
                vec![("by", "team")],
                "by must be one of user, label, resource",
            ),
            (
                vec![("from", "20"), ("to", "10")],
                "to (10) must not be before from (20)",
            ),
            (vec![("form", "1")], "unknown query parameter `form`"),
            (
                vec![("by", "user"), ("by", "label")],
                "`by` is given more than once",
            ),
        ] {
            let err = UsageQuery::from_query(pairs).unwrap_err().to_string();
            assert!(err.contains(names), "{err}");
        }
    }
}
