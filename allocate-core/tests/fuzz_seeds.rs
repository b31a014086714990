//! The fuzz targets' committed inputs (fuzz/seeds/, fuzz/regressions/), run through the parsers
//! as plain tests, so that `cargo test` keeps them valid and keeps fixed crashes fixed without
//! libFuzzer. The full checks run under `make fuzz` (docs/fuzzing.md).

use allocate_core::wire::explain::parse_match_request;
use allocate_core::wire::ServerMessage;
use allocate_core::{
    parse_allocate_request, parse_expires_patch, parse_maintenance_patch, parse_uuid, AgentMessage,
    Engine, InventoryFilter, Limits, SeededIds, Snapshot,
};
use testkit::fuzz_inputs::{inputs, Kind};

/// Seeds must be accepted by `parse`; regressions must only not panic.
fn run(target: &str, parse: impl Fn(&str) -> bool) {
    let seeds = inputs(Kind::Seeds, target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    for (path, data) in seeds {
        let text = String::from_utf8(data).expect("seeds are UTF-8");
        assert!(parse(&text), "seed {} is refused", path.display());
    }
    for (_, data) in inputs(Kind::Regressions, target) {
        if let Ok(text) = std::str::from_utf8(&data) {
            parse(text);
        }
    }
}

#[test]
fn agent_messages() {
    run("agent_message", |text| {
        AgentMessage::parse(text, &Limits::default()).is_ok()
    });
}

#[test]
fn server_messages() {
    run("server_message", |text| ServerMessage::parse(text).is_ok());
}

#[test]
fn allocate_requests() {
    // The same body goes to `/allocate/` and, without its username, to `POST /match`.
    run("allocate_request", |text| {
        let limits = Limits::default();
        parse_allocate_request(text, &limits).is_ok() || parse_match_request(text, &limits).is_ok()
    });
}

#[test]
fn patch_bodies() {
    run("patch_bodies", |text| {
        let limits = Limits::default();
        let accepted = [
            parse_expires_patch(text, &limits).is_ok(),
            parse_maintenance_patch(text, &limits).is_ok(),
            parse_uuid(text, "allocation_id").is_ok(),
        ];
        accepted.iter().filter(|&&ok| ok).count() == 1
    });
}

/// Decodes `application/x-www-form-urlencoded` as axum's `Query` does (enough for the seeds).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn inventory_queries() {
    run("inventory_query", |text| {
        let pairs: Vec<(String, String)> = text
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        InventoryFilter::from_query(pairs, &Limits::default()).is_ok()
    });
}

#[test]
fn snapshots() {
    let seeds: Vec<_> = inputs(Kind::Seeds, "snapshot_restore")
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(!seeds.is_empty(), "no snapshot seeds");
    for (path, data) in seeds {
        // Read as stored snapshots are: a seed of an older format is held as this build's.
        let snapshot =
            Snapshot::from_stored(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let engine = Engine::restore(&snapshot, Box::new(SeededIds::new(0)))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(engine.snapshot(), snapshot, "{}", path.display());
    }
}
