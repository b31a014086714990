//! The HTTP answers that show state, read by clients: `GET /inventory/` (and its query),
//! `GET /inventory/{id}`, `GET /allocate/` and `GET /allocate/{id}` (also the answer to
//! `PATCH`), and the plain sentences of `DELETE /allocate/{id}` and `GET /healthz`.
//!
//! The server writes these with [`Envelope::write`] over the [`crate::view`] types; here they
//! are read back leniently (fields a newer server adds are ignored).

use super::{quote, Envelope, WireError};
use crate::error::Error;
use crate::filter::InventoryFilter;
use crate::usage::{UsageQuery, UsageRow};
use crate::view::{AllocationInfo, InventoryEntry};
use serde::de::DeserializeOwned;

/// The query pairs of `GET /inventory/` for `filter` (what [`InventoryFilter::from_query`]
/// reads): `tags` comma-separated, `state`; a default filter gives none.
pub fn inventory_query(filter: &InventoryFilter) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if !filter.tags.is_empty() {
        pairs.push(("tags", filter.tags.join(",")));
    }
    if let Some(state) = filter.state {
        pairs.push(("state", state.as_str().to_owned()));
    }
    pairs
}

/// The query string pairs of `GET /usage` for `query` (what is `None` is left out).
pub fn usage_query(query: &UsageQuery) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(from) = query.from {
        pairs.push(("from", from.to_string()));
    }
    if let Some(to) = query.to {
        pairs.push(("to", to.to_string()));
    }
    pairs.push(("by", query.by.as_str().to_owned()));
    pairs
}

/// Reads the answer to `GET /usage`.
pub fn parse_usage(text: &str) -> Result<Envelope<Vec<UsageRow>>, WireError> {
    parse_as(text, "usage")
}

/// Reads the answer to `GET /inventory/` (and `GET /inventory/{id}`, a list of one).
pub fn parse_inventory(text: &str) -> Result<Envelope<Vec<InventoryEntry>>, WireError> {
    parse_as(text, "inventory")
}

/// Reads the answer to `GET /inventory/{id}` (a list of one) or `PATCH /inventory/{id}`
/// (the entry itself).
pub fn parse_resource(text: &str) -> Result<Envelope<InventoryEntry>, WireError> {
    let envelope = Envelope::parse(text)?;
    envelope.try_map(|data| match data {
        serde_json::Value::Array(mut items) if items.len() == 1 => {
            read("resource", items.remove(0))
        }
        data => read("resource", data),
    })
}

/// Reads the answer to `GET /allocate/{id}` or `PATCH /allocate/{id}`.
pub fn parse_allocation(text: &str) -> Result<Envelope<AllocationInfo>, WireError> {
    parse_as(text, "allocation")
}

/// Reads the answer to `GET /allocate/`.
pub fn parse_allocations(text: &str) -> Result<Envelope<Vec<AllocationInfo>>, WireError> {
    parse_as(text, "allocations")
}

/// Reads an answer whose data is a sentence: `"deleted allocation"`, `"ok"`.
pub fn parse_sentence(text: &str) -> Result<Envelope<String>, WireError> {
    parse_as(text, "sentence")
}

fn parse_as<T: DeserializeOwned>(text: &str, kind: &str) -> Result<Envelope<T>, WireError> {
    Envelope::parse(text)?.try_map(|data| read(kind, data))
}

fn read<T: DeserializeOwned>(kind: &str, data: serde_json::Value) -> Result<T, WireError> {
    let shown = quote(&data.to_string());
    serde_json::from_value(data).map_err(|e| WireError::Malformed {
        kind: kind.to_owned(),
        allocation_id: None,
        source: Error::invalid(format!("data: {e} in {shown}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::view::{AllocationState, ResourceState};
    use crate::Timestamp;
    use uuid::Uuid;

    fn entry() -> InventoryEntry {
        InventoryEntry {
            inventory_id: Uuid::from_u128(1),
            labels: vec!["nvidia".into(), "cuda".into()],
            cpu_count: 12,
            memory_gb: 32,
            gpu: vec![],
            kind: "VM".into(),
            agent_id: Uuid::from_u128(2),
            state: ResourceState::Free,
            reason: None,
        }
    }

    #[test]
    fn inventory_queries_read_back_as_the_filter() {
        let limits = Limits::default();
        let filters = [
            InventoryFilter::default(),
            InventoryFilter {
                tags: vec!["nvidia".into(), "cuda".into()],
                state: Some(ResourceState::Maintenance),
            },
            InventoryFilter {
                tags: vec![],
                state: Some(ResourceState::Free),
            },
        ];
        for filter in filters {
            let pairs = inventory_query(&filter);
            let back =
                InventoryFilter::from_query(pairs.iter().map(|(k, v)| (*k, v.as_str())), &limits);
            assert_eq!(back.unwrap(), filter);
        }
    }

    #[test]
    fn usage_queries_read_back_as_the_query() {
        use crate::usage::UsageBy;
        for query in [
            UsageQuery::default(),
            UsageQuery {
                from: Some(1_700_000_000),
                to: Some(1_700_086_400),
                by: UsageBy::Resource,
            },
            UsageQuery {
                from: None,
                to: Some(5),
                by: UsageBy::Label,
            },
        ] {
            let pairs = usage_query(&query);
            let back = UsageQuery::from_query(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            assert_eq!(back.unwrap(), query);
        }
    }

    #[test]
    fn listings_read_back_as_what_was_written() {
        let info = AllocationInfo {
            allocation_id: Uuid::from_u128(3),
            inventory_id: None,
            inventory_ids: vec![],
            username: "ci".into(),
            state: AllocationState::Queued,
            created: 10,
            expires: 20,
            connection: None,
            position: Some(2),
            created_at: Timestamp::default(),
        };
        let list = Envelope::Ok(vec![entry()]);
        assert_eq!(parse_inventory(&list.to_text()).unwrap(), list);
        let one = Envelope::Ok(entry());
        assert_eq!(parse_resource(&list.to_text()).unwrap(), one);
        assert_eq!(parse_resource(&one.to_text()).unwrap(), one);
        let sent = Envelope::Ok(info.clone());
        assert_eq!(parse_allocation(&sent.to_text()).unwrap(), sent);
        let all = Envelope::Ok(vec![info]);
        assert_eq!(parse_allocations(&all.to_text()).unwrap(), all);
        let usage = Envelope::Ok(vec![UsageRow {
            key: "alice".into(),
            allocations: 2,
            resource_seconds: 7200,
            gpu_seconds: 14_400,
        }]);
        assert_eq!(parse_usage(&usage.to_text()).unwrap(), usage);
        let deleted = Envelope::Ok("deleted allocation".to_owned());
        assert_eq!(parse_sentence(&deleted.to_text()).unwrap(), deleted);
    }

    #[test]
    fn newer_fields_are_ignored_and_wrong_shapes_name_the_kind() {
        let text = r#"{"status": 200, "data": {"allocation_id": "00000000-0000-0000-0000-000000000003",
            "inventory_id": null, "username": "ci", "state": "queued", "created": 1,
            "expires": 2, "newer": true}}"#;
        assert!(parse_allocation(text).is_ok());
        let err = parse_allocation(r#"{"status": 200, "data": {"state": "queued"}}"#).unwrap_err();
        assert!(matches!(&err, WireError::Malformed { kind, .. } if kind == "allocation"));
        let refused = r#"{"status": 404, "error": {"code": "not_found", "message": "no"}}"#;
        assert!(matches!(
            parse_inventory(refused).unwrap(),
            Envelope::Refused(r) if r.status == 404
        ));
    }
}
