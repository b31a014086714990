//! Filters on the inventory listing: `GET /inventory/?tags=nvidia,cuda&state=free`.

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::validate;
use crate::view::{InventoryEntry, ResourceState};

/// Which resources an inventory listing shows; the default shows every one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryFilter {
    /// Every tag must be among the resource's labels (as a request's `tags` match).
    pub tags: Vec<String>,
    /// Only resources in this state.
    pub state: Option<ResourceState>,
}

impl InventoryFilter {
    /// Reads a query string's decoded `(name, value)` pairs: `tags` (comma-separated) and
    /// `state`. Unknown or repeated names, empty tags and unknown states are refused.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        limits: &Limits,
    ) -> Result<Self> {
        let mut filter = InventoryFilter::default();
        let (mut seen_tags, mut seen_state) = (false, false);
        for (name, value) in pairs {
            let seen = match name {
                "tags" => &mut seen_tags,
                "state" => &mut seen_state,
                other => {
                    return Err(Error::invalid(format!(
                        "unknown query parameter `{}`; expected one of: tags, state",
                        validate::clip(other, 64)
                    )))
                }
            };
            if std::mem::replace(seen, true) {
                return Err(Error::invalid(format!(
                    "query parameter `{name}` is given more than once"
                )));
            }
            if name == "tags" {
                if !value.is_empty() {
                    filter.tags = value.split(',').map(str::to_owned).collect();
                }
                validate::tags(&filter.tags, "tags", limits)?;
            } else {
                filter.state = Some(ResourceState::parse(value).ok_or_else(|| {
                    Error::invalid(format!(
                        "state must be one of free, allocated, offline, error, maintenance; got {:?}",
                        validate::clip(value, 64)
                    ))
                })?);
            }
        }
        Ok(filter)
    }

    /// Whether the listing shows this entry (what [`crate::Engine::inventory_filtered`] answers
    /// through the index).
    pub fn matches(&self, entry: &InventoryEntry) -> bool {
        self.state.is_none_or(|s| s == entry.state)
            && self.tags.iter().all(|t| entry.labels.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::InventoryEntryRef;
    use uuid::Uuid;

    fn entry(labels: &[&str], state: ResourceState) -> InventoryEntry {
        InventoryEntry {
            inventory_id: Uuid::from_u128(1),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            cpu_count: 1,
            memory_gb: 1,
            gpu: vec![],
            kind: "VM".into(),
            agent_id: Uuid::from_u128(2),
            state,
            reason: None,
        }
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<InventoryFilter> {
        InventoryFilter::from_query(pairs.iter().copied(), &Limits::default())
    }

    #[test]
    fn tags_and_state_narrow_the_listing() {
        let f = parse(&[("tags", "nvidia,cuda"), ("state", "free")]).unwrap();
        assert_eq!(f.tags, ["nvidia", "cuda"]);
        assert!(f.matches(&entry(&["cuda", "nvidia", "x"], ResourceState::Free)));
        assert!(!f.matches(&entry(&["nvidia"], ResourceState::Free)));
        assert!(!f.matches(&entry(&["cuda", "nvidia"], ResourceState::Offline)));
        let all = parse(&[("tags", "")]).unwrap();
        assert_eq!(all, InventoryFilter::default());
        assert!(all.matches(&entry(&[], ResourceState::Error)));
    }

    #[test]
    fn borrowed_entries_serialize_as_owned_ones() {
        let mut e = entry(&["nvidia", "cuda"], ResourceState::Error);
        e.gpu = vec![crate::model::Gpu {
            label: "RTX 2080".into(),
            memory_gb: 8,
        }];
        e.reason = Some("fan broken".into());
        let r = InventoryEntryRef {
            inventory_id: e.inventory_id,
            labels: &e.labels,
            cpu_count: e.cpu_count,
            memory_gb: e.memory_gb,
            gpu: &e.gpu,
            kind: &e.kind,
            agent_id: e.agent_id,
            state: e.state,
            reason: e.reason.as_deref(),
        };
        assert_eq!(r.to_entry(), e);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
    }

    #[test]
    fn bad_queries_are_named() {
        let cases = [
            (vec![("tag", "x")], "unknown query parameter `tag`"),
            (vec![("state", "busy")], "state must be one of free"),
            (vec![("tags", "a,,b")], "tags[1] must not be empty"),
            (
                vec![("state", "free"), ("state", "error")],
                "query parameter `state` is given more than once",
            ),
        ];
        for (pairs, want) in cases {
            let err = parse(&pairs).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }
}
