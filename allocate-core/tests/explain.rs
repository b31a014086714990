//! `Engine::explain` against a brute-force scan of the inventory, on random diverse and
//! catalogue labs with some resources held, offline or in maintenance, and random requests
//! (satisfiable ones from the lab generators, then bent: a typo in the GPU model, a tag nobody
//! carries, an excluded label, floors above anything registered).

use allocate_core::{
    Engine, Explanation, GpuRequirement, InventoryEntry, Reason, Requirements, ResourceState,
};
use testkit::labs::{
    agent_id, diverse_engine, fill_with, lab_engine, request_mix, DiverseRequests, T0,
};
use testkit::rng::Rng;

/// Whether `r` (each requirement judged alone) rules `e` out, per reason.
fn ruled_out(r: &Requirements, e: &InventoryEntry, reason: Reason) -> bool {
    let has = |t: &String| e.labels.contains(t);
    let gpu = r.gpu.as_ref();
    let label_ok = |l: &str| {
        gpu.and_then(|g| g.label.as_ref())
            .is_none_or(|want| l.to_lowercase().contains(&want.to_lowercase()))
    };
    let min_gpu = gpu.map_or(0, |g| g.min_memory_gb);
    let no_label =
        gpu.is_some_and(|g| g.label.is_some()) && !e.gpu.iter().any(|g| label_ok(&g.label));
    let no_memory = min_gpu > 0 && !e.gpu.iter().any(|g| g.memory_gb >= min_gpu);
    let suitable = e
        .gpu
        .iter()
        .filter(|g| g.memory_gb >= min_gpu && label_ok(&g.label))
        .count();
    match reason {
        Reason::Tags => !r.tags.iter().all(has),
        Reason::ExcludeTags => r.exclude_tags.iter().any(has),
        Reason::Type => r.kind.as_ref().is_some_and(|k| *k != e.kind),
        Reason::MinCpuCount => e.cpu_count < r.min_cpu_count.unwrap_or(0),
        Reason::MinMemoryGb => e.memory_gb < r.min_memory_gb.unwrap_or(0),
        Reason::GpuLabel => no_label,
        Reason::GpuMinMemoryGb => no_memory,
        Reason::GpuCount => {
            gpu.is_some_and(|g| suitable < g.count as usize) && !no_label && !no_memory
        }
        _ => false,
    }
}

/// The explanation a scan of every resource gives (states as inventory shows them: the lab's
/// resources have static connections, so none is ever provisioning).
fn brute_force(engine: &Engine, r: &Requirements) -> Explanation {
    let entries: Vec<InventoryEntry> = engine.inventory().collect();
    let matching: Vec<&InventoryEntry> = entries
        .iter()
        .filter(|e| Reason::ALL[..8].iter().all(|&why| !ruled_out(r, e, why)))
        .collect();
    let in_state = |s: ResourceState| matching.iter().filter(|e| e.state == s).count() as u64;
    let mut findings = Vec::new();
    for why in Reason::ALL[..8].iter().copied() {
        let count = entries.iter().filter(|e| ruled_out(r, e, why)).count() as u64;
        findings.push((why, count));
    }
    for (why, state) in [
        (Reason::Allocated, ResourceState::Allocated),
        (Reason::Offline, ResourceState::Offline),
        (Reason::Maintenance, ResourceState::Maintenance),
        (Reason::Error, ResourceState::Error),
        (Reason::Reserved, ResourceState::Reserved),
    ] {
        findings.push((why, in_state(state)));
    }
    Explanation {
        findings: findings
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .map(|(reason, count)| allocate_core::Finding {
                count,
                message: String::new(),
                reason,
            })
            .collect(),
        free: in_state(ResourceState::Free),
        matching_resources: matching.len() as u64,
    }
}

/// A request from `base`, bent at random.
fn bend(mut r: Requirements, rng: &mut Rng) -> Requirements {
    match rng.below(8) {
        0 => {
            let g = r.gpu.get_or_insert(GpuRequirement {
                label: None,
                min_memory_gb: 0,
                count: 1,
            });
            g.label = Some("RTX 2090".into());
        }
        1 => r.tags.push("no-such-tag".into()),
        2 => {
            r.exclude_tags = r
                .tags
                .iter()
                .take(1)
                .cloned()
                .chain(["cuda".into()])
                .collect()
        }
        3 => r.min_cpu_count = Some(10_000),
        4 => {
            r.gpu = Some(GpuRequirement {
                label: None,
                min_memory_gb: 1 + rng.below(200) as u64,
                count: 1 + rng.below(9) as u32,
            })
        }
        5 => r.kind = Some("device".into()),
        _ => {}
    }
    r
}

/// Checks one request; returns the reasons of its findings.
fn check(engine: &mut Engine, r: &Requirements) -> Vec<Reason> {
    let before: Vec<InventoryEntry> = engine.inventory().collect();
    let got = engine.explain(r).expect("a valid request");
    assert_eq!(got, engine.explain(r).expect("valid"), "deterministic");
    assert_eq!(engine.inventory().collect::<Vec<_>>(), before, "a dry run");
    let want = brute_force(engine, r);
    let counts = |e: &Explanation| {
        let mut c: Vec<(Reason, u64)> = e.findings.iter().map(|f| (f.reason, f.count)).collect();
        c.sort();
        c
    };
    assert_eq!(counts(&got), counts(&want), "{r:?}");
    assert_eq!(
        (got.matching_resources, got.free),
        (want.matching_resources, want.free),
        "{r:?}"
    );
    let total = engine.resource_count() as u64;
    for f in &got.findings {
        assert!(!f.message.is_empty());
        let head = if matches!(
            f.reason,
            Reason::Allocated
                | Reason::Offline
                | Reason::Maintenance
                | Reason::Error
                | Reason::Provisioning
                | Reason::Reserved
        ) {
            format!(
                "{} of {} matching resources",
                f.count, got.matching_resources
            )
        } else {
            format!("{} of {total} registered resources", total - f.count)
        };
        assert!(f.message.starts_with(&head), "{}", f.message);
    }
    let counts_in_order: Vec<u64> = got.findings.iter().map(|f| f.count).collect();
    let split = got
        .findings
        .iter()
        .position(|f| f.reason >= Reason::Allocated)
        .unwrap_or(got.findings.len());
    assert!(counts_in_order[..split].windows(2).all(|w| w[0] >= w[1]));
    assert!(counts_in_order[split..].windows(2).all(|w| w[0] >= w[1]));
    got.findings.iter().map(|f| f.reason).collect()
}

/// Takes a few agents offline and a few resources out of service.
fn disturb(engine: &mut Engine, rng: &mut Rng, agents: usize) {
    for _ in 0..2 {
        let _ = engine.disconnect_agent(T0, agent_id(rng.below(agents)));
    }
    let ids: Vec<_> = engine.inventory().map(|e| e.inventory_id).collect();
    for _ in 0..3 {
        let id = ids[rng.below(ids.len())];
        engine
            .set_maintenance(T0, id, Some("fan".into()))
            .expect("a known resource");
    }
    while engine.poll_output().is_some() {}
}

#[test]
fn explanations_agree_with_a_brute_force_scan_on_diverse_labs() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed);
        let n = 20 + rng.below(400);
        let mut engine = diverse_engine(n);
        fill_with(&mut engine, n / 3, DiverseRequests::new(n, seed), 50);
        disturb(&mut engine, &mut rng, n.div_ceil(10));
        for r in DiverseRequests::new(n, seed + 1000).take(40) {
            let r = bend(r, &mut rng);
            seen.extend(check(&mut engine, &r));
        }
    }
    // The labs and the bending reach every reason they can (nothing is provisioning or in error;
    // no request asks for several resources and no quota is set: `count`, `quota` and
    // `reserved` have their own tests beside the engine).
    let never = [
        Reason::Provisioning,
        Reason::Error,
        Reason::Count,
        Reason::Quota,
        Reason::Reserved,
    ];
    let want: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| !never.contains(r))
        .collect();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
}

#[test]
fn explanations_agree_with_a_brute_force_scan_on_catalogue_labs() {
    for seed in 0..6u64 {
        let mut rng = Rng::new(seed);
        let n = 10 + rng.below(200);
        let mut engine = lab_engine(n);
        fill_with(&mut engine, n / 4, request_mix().into_iter().cycle(), 20);
        disturb(&mut engine, &mut rng, n.div_ceil(10));
        for r in request_mix() {
            let r = bend(r, &mut rng);
            check(&mut engine, &r);
        }
    }
}

#[test]
fn provisioning_and_error_states_are_findings_and_bad_requirements_are_refused() {
    use allocate_core::{Config, ProvisionResult, ResourceSpec, SeededIds};
    let mut engine = Engine::new(Config::default(), Box::new(SeededIds::new(1)));
    let agent = agent_id(0);
    let machine = ResourceSpec {
        inventory_id: None,
        labels: vec!["nvidia".into()],
        cpu_count: 4,
        memory_gb: 8,
        gpu: vec![],
        kind: "VM".into(),
        connection: None,
    };
    engine
        .register_agent(T0, agent, vec![machine.clone(), machine])
        .unwrap();
    let first = engine.request(T0, Requirements::for_user("a")).unwrap();
    let _second = engine.request(T0, Requirements::for_user("b")).unwrap();
    while engine.poll_output().is_some() {}
    let anything = Requirements::for_user("c");
    let e = engine.explain(&anything).unwrap();
    assert_eq!((e.matching_resources, e.free), (2, 0));
    assert_eq!(e.findings[0].reason, Reason::Provisioning);
    assert_eq!(
        e.findings[0].message,
        "2 of 2 matching resources are being provisioned for an allocation"
    );
    engine
        .provisioned(T0, agent, first, ProvisionResult::Failed("disk".into()))
        .unwrap();
    while engine.poll_output().is_some() {}
    let got: Vec<(Reason, u64)> = engine
        .explain(&anything)
        .unwrap()
        .findings
        .iter()
        .map(|f| (f.reason, f.count))
        .collect();
    assert_eq!(got, [(Reason::Provisioning, 1), (Reason::Error, 1)]);
    let mut bad = Requirements::for_user("");
    assert!(engine.explain(&bad).is_ok(), "a dry run needs no username");
    bad.tags = vec![String::new()];
    let err = engine.explain(&bad).unwrap_err().to_string();
    assert!(err.contains("requirements.tags[0]"), "{err}");
}
