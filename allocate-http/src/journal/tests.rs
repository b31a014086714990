//! Recovery from the files the journal leaves, including torn and damaged ones.

use super::format::{push_frame, HEADER_BYTES};
use super::*;
use allocate_core::{
    Connection, Input, ProvisionResult, Requirements, ResourceSpec, ResourceState,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const AGENT: Uuid = Uuid::from_u128(7);

/// A one-CPU machine labelled `x`, reachable at `host` when one is given (shared with the
/// driver's tests).
pub(crate) fn machine(host: Option<&str>) -> ResourceSpec {
    ResourceSpec {
        inventory_id: None,
        labels: vec!["x".into()],
        cpu_count: 1,
        memory_gb: 1,
        gpu: vec![],
        kind: "VM".into(),
        connection: host.map(|h| {
            Arc::new(Connection {
                host: h.into(),
                username: "lab".into(),
                password: Some("pw".into()),
                port: None,
            })
        }),
    }
}

fn config(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir.join("data"))
}

/// The data directory of a journal in one.
fn dir_of(config: &JournalConfig) -> &Path {
    match &config.store {
        JournalStore::Dir(dir) => dir,
        JournalStore::Postgres(_) => panic!("these tests keep the journal in a directory"),
    }
}

fn open_ok(config: &JournalConfig) -> (Engine, Journal) {
    open(config, &Config::default(), &Waiting::default()).unwrap_or_else(|e| panic!("open: {e}"))
}

/// Hands the engine's records to the journal and waits until they are on disk.
async fn sync(engine: &mut Engine, journal: &mut Journal) {
    while engine.poll_output().is_some() {}
    let seq = journal.append(engine.take_records());
    let mut progress = journal.progress();
    progress.wait_for(|p| p.durable >= seq).await.unwrap();
}

/// A journal holding: an agent with two static machines, one allocation ready on the
/// first, and then a second allocation ready on the other. Returns both allocation ids.
async fn two_allocations(config: &JournalConfig) -> (Uuid, Uuid) {
    let (mut engine, mut journal) = open_ok(config);
    let now = clock::now();
    engine
        .register_agent(now, AGENT, vec![machine(Some("a")), machine(Some("b"))])
        .unwrap();
    let first = engine.request(now, Requirements::for_user("u")).unwrap();
    sync(&mut engine, &mut journal).await;
    let second = engine.request(now, Requirements::for_user("v")).unwrap();
    sync(&mut engine, &mut journal).await;
    journal.close().await;
    (first, second)
}

fn segments(config: &JournalConfig) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir_of(config))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    found.sort();
    found
}

/// The offsets at which the records of a segment start.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    format::scan(bytes, false)
        .unwrap()
        .records
        .into_iter()
        .map(|(at, _)| at)
        .collect()
}

#[tokio::test]
async fn allocations_survive_a_restart_and_resources_wait_offline_for_their_agent() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (mut engine, mut journal) = open_ok(&config);
    let now = clock::now();
    let ids = engine
        .register_agent(now, AGENT, vec![machine(Some("h"))])
        .unwrap();
    let ready = engine.request(now, Requirements::for_user("u")).unwrap();
    let queued = engine.request(now, Requirements::for_user("w")).unwrap();
    let before = engine.allocation(&ready).unwrap();
    sync(&mut engine, &mut journal).await;
    journal.close().await;

    let (engine, journal) = open_ok(&config);
    let after = engine.allocation(&ready).unwrap();
    assert_eq!(after.state, AllocationState::Ready);
    assert_eq!(after.inventory_id, Some(ids[0]));
    assert_eq!(after.expires, before.expires);
    assert_eq!(after.connection, before.connection);
    assert_eq!(
        engine.allocation(&queued).unwrap().state,
        AllocationState::Cancelled,
        "its client left with the old server"
    );
    assert_eq!(
        engine.resource(&ids[0]).unwrap().state,
        ResourceState::Offline
    );
    journal.close().await;
}

#[tokio::test]
async fn a_lease_that_ended_while_down_expires_at_once_and_is_released_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (mut engine, mut journal) = open_ok(&config);
    let now = clock::now();
    let ids = engine
        .register_agent(now, AGENT, vec![machine(None)])
        .unwrap();
    let mut wants = Requirements::for_user("u");
    wants.expires = Some(now.as_secs() + 1);
    let id = engine.request(now, wants).unwrap();
    let connection = ProvisionResult::Connection(Connection {
        host: "h".into(),
        username: "u".into(),
        password: Some("pw".into()),
        port: None,
    });
    engine.provisioned(now, AGENT, id, connection).unwrap();
    sync(&mut engine, &mut journal).await;
    journal.close().await;
    let expires = Timestamp::from_secs(now.as_secs() + 1);
    tokio::time::sleep(clock::until(clock::now(), expires) + Duration::from_millis(20)).await;

    let (mut engine, journal) = open_ok(&config);
    assert_eq!(
        engine.allocation(&id).unwrap().state,
        AllocationState::Expired
    );
    engine
        .register_agent(clock::now(), AGENT, vec![machine(None)])
        .unwrap();
    let release =
        std::iter::from_fn(|| engine.poll_output()).find(|o| matches!(o, Output::Release { .. }));
    assert_eq!(
        release,
        Some(Output::Release {
            agent_id: AGENT,
            allocation_id: id,
            inventory_id: ids[0],
        })
    );
    journal.close().await;
}

#[tokio::test]
async fn snapshots_replace_the_journal_files_they_cover() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        snapshot_every_records: 3,
        ..config(dir.path())
    };
    let (mut engine, mut journal) = open_ok(&config);
    engine
        .register_agent(clock::now(), AGENT, vec![machine(Some("h"))])
        .unwrap();
    let mut last = Uuid::nil();
    for _ in 0..10 {
        last = engine
            .request(clock::now(), Requirements::for_user("u"))
            .unwrap();
        engine.release(clock::now(), last).unwrap();
        sync(&mut engine, &mut journal).await;
        if journal.snapshot_due() {
            journal.snapshot(engine.snapshot());
        }
    }
    sync(&mut engine, &mut journal).await;
    journal.close().await;
    let names: Vec<String> = fs::read_dir(dir_of(&config))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let snapshots = names.iter().filter(|n| n.ends_with(".snap")).count();
    assert_eq!(snapshots, 1, "{names:?}");
    assert_eq!(segments(&config).len(), 1, "{names:?}");

    let (engine, journal) = open_ok(&config);
    assert_eq!(
        engine.allocation(&last).unwrap().state,
        AllocationState::Released
    );
    assert_eq!(engine.allocations().len(), 10);
    journal.close().await;
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_the_rest_kept() {
    for keep in [1, 3, 9] {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (first, second) = two_allocations(&config).await;
        let segment = segments(&config).pop().unwrap();
        let bytes = fs::read(&segment).unwrap();
        let last = *record_offsets(&bytes).last().unwrap();
        fs::write(&segment, &bytes[..last + keep]).unwrap();

        let (engine, journal) = open_ok(&config);
        assert_eq!(
            engine.allocation(&first).unwrap().state,
            AllocationState::Ready
        );
        assert!(
            engine.allocation(&second).is_none(),
            "the torn request is gone"
        );
        journal.close().await;
        let (engine, journal) = open_ok(&config);
        assert!(engine.allocation(&first).is_some(), "and stays cut off");
        journal.close().await;
    }
}

#[tokio::test]
async fn damage_before_the_last_record_refuses_to_start_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    two_allocations(&config).await;
    let segment = segments(&config).pop().unwrap();
    let pristine = fs::read(&segment).unwrap();
    let first = record_offsets(&pristine)[0];
    for (flip, why) in [
        (first + 3, "over the limit"),
        (first + 5, "checksum mismatch"),
        (first + 20, "checksum mismatch"),
    ] {
        let mut bytes = pristine.clone();
        bytes[flip] ^= 0x08;
        fs::write(&segment, &bytes).unwrap();
        match open(&config, &Config::default(), &Waiting::default()) {
            Err(JournalError::Damaged {
                path,
                offset,
                why: found,
            }) => {
                assert_eq!(path, segment);
                assert_eq!(offset, first as u64);
                assert!(found.contains(why), "{found}");
                assert!(found.contains("an intact record follows"), "{found}");
            }
            other => panic!("flipping byte {flip}: {other:?}"),
        }
        assert_eq!(fs::read(&segment).unwrap(), bytes, "nothing was cut");
    }
    let mut bytes = pristine.clone();
    bytes[0] = b'X';
    fs::write(&segment, &bytes).unwrap();
    assert!(matches!(
        open(&config, &Config::default(), &Waiting::default()),
        Err(JournalError::Damaged { offset: 0, .. })
    ));
}

#[tokio::test]
async fn a_damaged_snapshot_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    two_allocations(&config).await;
    let snapshot = fs::read_dir(dir_of(&config))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    let mut bytes = fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&snapshot, &bytes).unwrap();
    match open(&config, &Config::default(), &Waiting::default()) {
        Err(JournalError::Damaged { path, offset, why }) => {
            assert_eq!(path, snapshot);
            assert_eq!(offset, HEADER_BYTES as u64);
            assert_eq!(why, "checksum mismatch");
        }
        other => panic!("{other:?}"),
    }
    fs::write(&snapshot, &bytes[..middle]).unwrap();
    assert!(matches!(
        open(&config, &Config::default(), &Waiting::default()),
        Err(JournalError::Damaged { .. })
    ));
}

#[tokio::test]
async fn missing_records_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    two_allocations(&config).await;
    // Restart once, so that the journal starts after a snapshot, then lose the snapshot.
    let (_, journal) = open_ok(&config);
    journal.close().await;
    for entry in fs::read_dir(dir_of(&config)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snap") {
            fs::remove_file(path).unwrap();
        }
    }
    match open(&config, &Config::default(), &Waiting::default()) {
        Err(e @ JournalError::Missing { first: 1, .. }) => {
            assert!(e.to_string().contains("records 1 to"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_record_the_engine_refuses_on_replay_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    two_allocations(&config).await;
    let segment = segments(&config).pop().unwrap();
    let record = Record {
        now: clock::now(),
        input: Input::Release {
            allocation_id: Uuid::from_u128(99),
        },
    };
    let mut bytes = fs::read(&segment).unwrap();
    let at = bytes.len();
    push_frame(&mut bytes, &serde_json::to_vec(&record).unwrap()).unwrap();
    fs::write(&segment, &bytes).unwrap();
    match open(&config, &Config::default(), &Waiting::default()) {
        Err(JournalError::Replay { path, offset, .. }) => {
            assert_eq!(path, segment);
            assert_eq!(offset, at as u64);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn new_settings_apply_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    two_allocations(&config).await;
    let changed = Config {
        lease_secs_max: 60,
        ..Config::default()
    };
    let (engine, journal) = open(&config, &changed, &Waiting::default()).unwrap();
    assert_eq!(engine.config().lease_secs_max, 60);
    assert!(engine.config().record_inputs);
    journal.close().await;
}

/// The committed data directory of format version `version`: a snapshot and records after
/// it, and the state they rebuild (`tests/fixtures/journal-v1`, ...). Every later build must
/// read each.
fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("journal-v{version}"))
}

/// Writes a data directory through the real journal: an agent with three machines (two
/// static, one provisioned), allocations ready on each (with keys, provision data and a
/// lease length), one waiting; a snapshot; then a release that hands the waiting one a
/// machine, a lease extended, a machine put in maintenance. Returns the state at the end.
async fn write_the_fixture_story(config: &JournalConfig) -> Snapshot {
    let (mut engine, mut journal) = open_ok(config);
    let now = clock::now();
    let machines = vec![machine(Some("a")), machine(Some("b")), machine(None)];
    let ids = engine.register_agent(now, AGENT, machines).unwrap();
    let first = engine.request(now, Requirements::for_user("u")).unwrap();
    let mut keyed = Requirements::for_user("v");
    keyed.ssh_keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture v@laptop".into()];
    keyed.duration_seconds = Some(7200);
    let second = engine.request(now, keyed).unwrap();
    let mut provisioned = Requirements::for_user("w");
    provisioned.provision = serde_json::from_str(r#"{"image": "ubuntu-24.04"}"#).unwrap();
    let third = engine.request(now, provisioned).unwrap();
    let connection = ProvisionResult::Connection(Connection {
        host: "c".into(),
        username: String::new(),
        password: None,
        port: Some(2222),
    });
    engine.provisioned(now, AGENT, third, connection).unwrap();
    let waiting = engine.request(now, Requirements::for_user("x")).unwrap();
    sync(&mut engine, &mut journal).await;
    journal.snapshot(engine.snapshot());

    let later = Timestamp::from_millis(now.as_millis() + 1_000);
    engine.release(later, first).unwrap();
    engine
        .set_expires(later, second, now.as_secs() + 3 * 3600)
        .unwrap();
    engine
        .set_maintenance(later, ids[2], Some("fan noise".into()))
        .unwrap();
    sync(&mut engine, &mut journal).await;
    assert_eq!(
        engine.allocation(&waiting).unwrap().state,
        AllocationState::Ready
    );
    journal.close().await;
    engine.snapshot()
}

/// The data directory's files, but not its lock.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "LOCK"))
        .collect();
    files.sort();
    files
}

/// Rebuilds the engine from the committed data directory of format version `version` and
/// returns its state and the committed one (see [`rebuild_fixture_in`]); the current
/// version's is written by `write_the_fixture_story` when blessed.
async fn rebuild_fixture(version: u32) -> (serde_json::Value, serde_json::Value) {
    let blessed = version == allocate_core::SCHEMA;
    let story = |c: JournalConfig| async move { write_the_fixture_story(&c).await };
    rebuild_fixture_in(&fixture_dir(version), blessed.then_some(story)).await
}

/// Rebuilds the engine from the committed data directory in `fixture` and returns its state
/// and the committed one, settings left out (a later build may add some, with defaults).
/// `ALLOCATE_BLESS=1` writes them with `story` where there are none (how they were made; a
/// new format version gets a new directory): it refuses to overwrite them.
async fn rebuild_fixture_in<F: std::future::Future<Output = Snapshot>>(
    fixture: &Path,
    story: Option<impl FnOnce(JournalConfig) -> F>,
) -> (serde_json::Value, serde_json::Value) {
    let expected_path = fixture.join("state.json");
    if let (Some(story), Some(_)) = (story, std::env::var_os("ALLOCATE_BLESS")) {
        assert!(
            !fixture.join("data").exists(),
            "{} exists: a new format version gets a new directory",
            fixture.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let data = dir_of(&config).to_owned();
        let state = story(config).await;
        fs::create_dir_all(fixture.join("data")).unwrap();
        for file in data_files(&data) {
            fs::copy(&file, fixture.join("data").join(file.file_name().unwrap())).unwrap();
        }
        let text = serde_json::to_string_pretty(&state).unwrap();
        fs::write(&expected_path, text + "\n").unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    let files = data_files(&fixture.join("data"));
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "snap"))
            && files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "log")),
        "the fixture has a snapshot and a journal: {files:?}"
    );
    for file in &files {
        fs::copy(file, copy.path().join(file.file_name().unwrap())).unwrap();
    }
    let dir = DataDir::open(copy.path()).unwrap();
    let config = Config {
        record_inputs: true,
        ..Config::default()
    };
    let recovered = recover::recover(&dir, &config).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        recovered.replayed >= 2,
        "records after the snapshot are replayed"
    );
    let state = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("config");
        v
    };
    let expected =
        state(serde_json::from_str(&fs::read_to_string(&expected_path).unwrap()).unwrap());
    (
        state(serde_json::to_value(recovered.engine.snapshot()).unwrap()),
        expected,
    )
}

/// A state as version 1 wrote it: without its version and what version 2 added (usage,
/// and when each allocation became ready).
fn as_version_1(mut state: serde_json::Value) -> serde_json::Value {
    let object = state.as_object_mut().unwrap();
    object.remove("schema");
    object.remove("usage");
    for a in object["allocations"].as_array_mut().unwrap() {
        a.as_object_mut().unwrap().remove("ready_at");
    }
    state
}

/// Version 1 had no usage: a release replayed over its snapshot keeps the usage of an
/// allocation made ready before it, counted from the allocation's creation.
#[tokio::test]
async fn a_data_directory_of_format_version_1_is_read_by_this_build() {
    let (rebuilt, expected) = rebuild_fixture(1).await;
    assert_eq!(
        as_version_1(rebuilt.clone()),
        as_version_1(expected),
        "the state rebuilt from the version-1 files"
    );
    assert_eq!(rebuilt["schema"], allocate_core::SCHEMA);
    let usage = rebuilt["usage"].as_array().unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    let released = rebuilt["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["allocation_id"] == usage[0]["allocation_id"])
        .unwrap();
    assert_eq!(usage[0]["ready"], released["created"]);
    assert_eq!(usage[0]["outcome"], "released");
}

/// The current version's files rebuild exactly the state that wrote them.
#[tokio::test]
async fn a_data_directory_of_format_version_2_is_read_by_this_build() {
    let (rebuilt, expected) = rebuild_fixture(2).await;
    assert_eq!(
        rebuilt, expected,
        "the state rebuilt from the version-2 files"
    );
}

/// Writes a data directory through the real journal, with requests for several resources: an agent with two
/// static machines and three agents with one provisioned machine each; a request for two
/// ready on the static ones, one for two provisioned machines half answered, one for three
/// waiting; a snapshot; then the second answer, and the first released, which lets the
/// waiting one start (two static machines and one provisioned).
async fn write_the_story_of_several(config: &JournalConfig) -> Snapshot {
    let (mut engine, mut journal) = open_ok(config);
    let now = clock::now();
    let statics = vec![machine(Some("a")), machine(Some("b"))];
    engine.register_agent(now, AGENT, statics).unwrap();
    let agents: Vec<Uuid> = (8..=10).map(Uuid::from_u128).collect();
    for &agent in &agents {
        engine
            .register_agent(now, agent, vec![machine(None)])
            .unwrap();
    }
    let several = |count: u32| Requirements {
        count,
        ..Requirements::for_user("u")
    };
    let both_static = engine.request(now, several(2)).unwrap();
    let provisioned = engine.request(now, several(2)).unwrap();
    let waiting = engine.request(now, several(3)).unwrap();
    let answer = |host: &str| {
        ProvisionResult::Connection(Connection {
            host: host.into(),
            username: "lab".into(),
            password: None,
            port: None,
        })
    };
    engine
        .provisioned(now, agents[0], provisioned, answer("p1"))
        .unwrap();
    sync(&mut engine, &mut journal).await;
    journal.snapshot(engine.snapshot());

    let later = Timestamp::from_millis(now.as_millis() + 1_000);
    engine
        .provisioned(later, agents[1], provisioned, answer("p2"))
        .unwrap();
    engine.release(later, both_static).unwrap();
    sync(&mut engine, &mut journal).await;
    for (id, state) in [
        (provisioned, AllocationState::Ready),
        (waiting, AllocationState::Provisioning),
    ] {
        assert_eq!(engine.allocation(&id).unwrap().state, state);
    }
    journal.close().await;
    engine.snapshot()
}

/// Also at version 2: requests for several resources, in records and in a snapshot.
#[tokio::test]
async fn a_data_directory_of_format_version_2_with_requests_for_several_is_read_by_this_build() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v2-several");
    let story = |c: JournalConfig| async move { write_the_story_of_several(&c).await };
    let (rebuilt, expected) = rebuild_fixture_in(&fixture, Some(story)).await;
    assert_eq!(
        rebuilt,
        expected,
        "the state rebuilt from {}",
        fixture.display()
    );
}
