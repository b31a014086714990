//! The parser targets: each reads arbitrary bytes as a client (or, for `server_message`, the
//! server) would send them, must never panic, and checks that what it accepted is consistent
//! with the rest of the system.

use allocate_core::wire::explain::{match_request_text, parse_match_request};
use allocate_core::wire::{Envelope, ServerMessage, WireError};
use allocate_core::{
    parse_allocate_request, parse_expires_patch, parse_maintenance_patch, parse_uuid, AgentMessage,
    Config, Engine, Error, ErrorCode, Explanation, InventoryEntry, InventoryFilter, Limits, Output,
    ProvisionResult, Requirements, ResourceSpec, ResourceState, SeededIds, Timestamp,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// Longest error message a parser may produce: messages name the field, never echo the input.
const MESSAGE_CHARS_MAX: usize = 512;

/// Limits much smaller than the defaults, so that every limit is reached by short inputs.
pub fn tiny_limits() -> Limits {
    Limits {
        string_chars_max: 8,
        list_len_max: 3,
        resources_per_registration_max: 3,
        ssh_keys_max: 2,
        ssh_key_bytes_max: 32,
        provision_bytes_max: 32,
        count_max: 3,
    }
}

/// A refusal of client input: `invalid_request`, with a bounded message.
fn check_refusal(err: &Error) {
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    let message = err.to_string();
    assert!(
        message.chars().count() <= MESSAGE_CHARS_MAX,
        "an error message of {} characters: {message:?}",
        message.chars().count()
    );
}

/// Parses with the tiny and the default limits: the default limits accept whatever the tiny
/// ones accept, with the same result.
fn with_both_limits<T: PartialEq + std::fmt::Debug>(
    parse: impl Fn(&Limits) -> Result<T, Error>,
) -> Option<T> {
    let tiny = parse(&tiny_limits());
    let default = parse(&Limits::default());
    if let Err(e) = &tiny {
        check_refusal(e);
    }
    match (tiny, default) {
        (Ok(t), Ok(d)) => {
            assert_eq!(t, d, "the same input parses differently under other limits");
            Some(d)
        }
        (Ok(t), Err(e)) => panic!("accepted under tiny limits ({t:?}), refused by default: {e}"),
        (Err(_), Ok(d)) => Some(d),
        (Err(_), Err(e)) => {
            check_refusal(&e);
            None
        }
    }
}

/// An engine whose settings accept any lease and wait, at time 0.
fn engine() -> Engine {
    let config = Config {
        wait_secs_max: u64::MAX,
        ..Config::default()
    };
    Engine::new(config, Box::new(SeededIds::new(1)))
}

/// A value survives serde_json unchanged.
fn serde_round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).expect("serialises");
    let back: T = serde_json::from_str(&text).expect("deserialises");
    assert_eq!(&back, value, "serde_json round trip of {text}");
}

/// The agent message that `msg` was read from, in canonical form.
fn render_agent_message(msg: &AgentMessage) -> Value {
    match msg {
        AgentMessage::Register {
            agent_id,
            resources,
        } => json!({"agent_id": agent_id, "resources": resources}),
        AgentMessage::Provisioned {
            allocation_id,
            result: ProvisionResult::Connection(c),
        } => json!({"allocation_id": allocation_id, "connection": c}),
        AgentMessage::Provisioned {
            allocation_id,
            result: ProvisionResult::Failed(why),
        } => json!({"allocation_id": allocation_id, "error": why}),
        AgentMessage::Released { allocation_id } => {
            json!({"allocation_id": allocation_id, "released": true})
        }
    }
}

/// `AgentMessage::parse`: what `/agent/` reads from every agent message.
pub fn agent_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(msg) = with_both_limits(|limits| AgentMessage::parse(text, limits)) else {
        return;
    };
    let limits = Limits::default();
    let rendered = render_agent_message(&msg);
    let again = AgentMessage::from_json(&rendered, &limits)
        .unwrap_or_else(|e| panic!("{rendered} does not parse again: {e}"));
    assert_eq!(again, msg, "re-rendered as {rendered}");
    if let AgentMessage::Register {
        agent_id,
        resources,
    } = msg
    {
        serde_round_trip(&resources);
        // The engine's own checks accept every list the parser accepts; only a list that
        // names one inventory_id twice is left for the engine to refuse.
        let count = resources.len();
        match engine().register_agent(Timestamp::from_secs(1), agent_id, resources) {
            Ok(ids) => assert_eq!(ids.len(), count),
            Err(e) => assert!(e.to_string().contains("appears twice"), "{e}"),
        }
    }
}

/// Longest quote of the server's text that a [`WireError`] carries (the wire's 200 characters
/// and the `…` that marks the cut).
const QUOTE_CHARS_MAX: usize = 201;

/// `ServerMessage::parse`: what an agent reads from every message on `/agent/`. The server's
/// text is read leniently, so there are no limits to vary; instead what it accepts is written
/// again, by the same writer and by the server's own ([`Output`], `registered_text`).
pub fn server_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let message = match ServerMessage::parse(text) {
        Ok(message) => message,
        Err(e) => return check_wire_error(&e),
    };
    let rendered = message.to_text();
    assert_eq!(message.to_value().to_string(), rendered);
    let again = ServerMessage::parse(&rendered)
        .unwrap_or_else(|e| panic!("{rendered} does not parse again: {e}"));
    assert_eq!(again, message, "re-rendered as {rendered}");
    let server = match message {
        Envelope::Refused(_) => return,
        Envelope::Ok(ServerMessage::Registered { inventory_ids }) => {
            ServerMessage::registered_text(&inventory_ids)
        }
        Envelope::Ok(ServerMessage::Provision(order)) => Output::Provision {
            agent_id: Uuid::from_u128(1),
            allocation_id: order.allocation_id,
            inventory_id: order.inventory_id,
            username: order.username,
            expires: order.expires,
            ssh_keys: order.ssh_keys,
            provision: order.provision,
        }
        .to_text(),
        Envelope::Ok(ServerMessage::Release(order)) => Output::Release {
            agent_id: Uuid::from_u128(1),
            allocation_id: order.allocation_id,
            inventory_id: order.inventory_id,
        }
        .to_text(),
    };
    assert_eq!(server, rendered, "the server writes it otherwise");
}

/// A refused server message: the error names a kind the reader knows and quotes little.
fn check_wire_error(error: &WireError) {
    match error {
        WireError::NotEnvelope { text, .. } | WireError::Unrecognized(text) => {
            assert!(text.chars().count() <= QUOTE_CHARS_MAX, "{error}");
        }
        WireError::Malformed { kind, .. } => {
            assert!(
                ["ok", "provision", "release"].contains(&kind.as_str()),
                "{error}"
            );
        }
        WireError::Unknown { key, value } => {
            assert_eq!(*key, "action", "{error}");
            assert!(value.chars().count() <= QUOTE_CHARS_MAX, "{error}");
        }
    }
}

/// `parse_allocate_request`: what `/allocate/` reads from a client's first message; and
/// `parse_match_request`, `POST /match`'s reader of the same body (see [`match_request`]).
pub fn allocate_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dry_run = match_request(text);
    let Some(req) = with_both_limits(|limits| parse_allocate_request(text, limits)) else {
        return;
    };
    assert_eq!(
        dry_run.as_ref(),
        Some(&req),
        "POST /match takes what /allocate/ takes"
    );
    serde_round_trip(&req);
    let rendered = json!({ "requirements": req }).to_string();
    let again = parse_allocate_request(&rendered, &Limits::default())
        .unwrap_or_else(|e| panic!("{rendered} does not parse again: {e}"));
    assert_eq!(again, req, "re-rendered as {rendered}");
    check_engine_takes(req);
}

/// `parse_match_request`: the body `/allocate/` takes with `username` optional. What it accepts
/// reads back from its own writer, and the engine explains it: on an engine with nothing
/// registered, nothing matches and no finding is made.
fn match_request(text: &str) -> Option<Requirements> {
    let req = with_both_limits(|limits| parse_match_request(text, limits))?;
    let rendered = match_request_text(&req);
    let again = parse_match_request(&rendered, &Limits::default())
        .unwrap_or_else(|e| panic!("{rendered} does not parse again: {e}"));
    assert_eq!(again, req, "re-rendered as {rendered}");
    let explained = engine()
        .explain(&req)
        .unwrap_or_else(|e| panic!("the engine refuses to explain {rendered}: {e}"));
    assert_eq!(explained, Explanation::default());
    Some(req)
}

/// The engine accepts every request the parser accepts, unless its `expires` is not in the future.
fn check_engine_takes(req: Requirements) {
    let mut engine = engine();
    let past = req.expires == Some(0);
    let got = engine.request(Timestamp::default(), req);
    assert_eq!(got.is_err(), past, "{got:?}");
}

/// `parse_expires_patch` and `parse_maintenance_patch`, the bodies of the two PATCH endpoints,
/// and `parse_uuid`, which reads the id in their paths (and in GET and DELETE paths).
pub fn patch_bodies(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_uuid(text, "allocation_id") {
        Ok(id) => assert_eq!(
            id.hyphenated().to_string(),
            text.to_ascii_lowercase(),
            "only the hyphenated form is taken"
        ),
        Err(e) => check_refusal(&e),
    }
    if let Some(expires) = with_both_limits(|limits| parse_expires_patch(text, limits)) {
        let rendered = json!({ "expires": expires }).to_string();
        assert_eq!(
            parse_expires_patch(&rendered, &Limits::default()).ok(),
            Some(expires)
        );
    }
    if let Some(reason) = with_both_limits(|limits| parse_maintenance_patch(text, limits)) {
        let rendered = match &reason {
            Some(r) => json!({"maintenance": true, "reason": r}),
            None => json!({"maintenance": false}),
        }
        .to_string();
        assert_eq!(
            parse_maintenance_patch(&rendered, &Limits::default()).ok(),
            Some(reason.clone()),
            "re-rendered as {rendered}"
        );
        // The engine takes whatever reason the parser accepts.
        let mut engine = engine();
        let t = Timestamp::from_secs(1);
        let spec = ResourceSpec {
            inventory_id: None,
            labels: vec![],
            cpu_count: 1,
            memory_gb: 1,
            gpu: vec![],
            kind: "VM".into(),
            connection: None,
        };
        let ids = engine
            .register_agent(t, Uuid::from_u128(1), vec![spec])
            .expect("one plain resource registers");
        let on = reason.is_some();
        engine
            .set_maintenance(t, ids[0], reason)
            .expect("a parsed maintenance patch applies");
        let state = engine.resource(&ids[0]).expect("registered").state;
        assert_eq!(state == ResourceState::Maintenance, on);
    }
}

/// `InventoryFilter::from_query` over the query string decoded as axum's `Query` decodes it.
pub fn inventory_query(data: &[u8]) {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let parse = |pairs: &[(String, String)], limits: &Limits| {
        InventoryFilter::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), limits)
    };
    let Some(filter) = with_both_limits(|limits| parse(&pairs, limits)) else {
        return;
    };
    // The same filter, written back as a query string, reads the same.
    let mut query = form_urlencoded::Serializer::new(String::new());
    if !filter.tags.is_empty() {
        query.append_pair("tags", &filter.tags.join(","));
    }
    if let Some(state) = filter.state {
        query.append_pair("state", state.as_str());
    }
    let query = query.finish();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let again = parse(&pairs, &Limits::default())
        .unwrap_or_else(|e| panic!("{query:?} does not parse again: {e}"));
    assert_eq!(again, filter, "re-rendered as {query:?}");
    // A resource with exactly the filter's tags, in its state, is shown.
    let entry = InventoryEntry {
        inventory_id: Uuid::from_u128(1),
        labels: filter.tags.clone(),
        cpu_count: 1,
        memory_gb: 1,
        gpu: vec![],
        kind: "VM".into(),
        agent_id: Uuid::from_u128(2),
        state: filter.state.unwrap_or(ResourceState::Free),
        reason: None,
    };
    assert!(filter.matches(&entry), "{filter:?} hides {entry:?}");
}
