//! Property tests: random input sequences against the engine's invariants.
//!
//! Each case builds a few agents with a few resources each, sends requests, and drives the
//! engine as a shell would (`testkit::sim`, strict): agents answer provisions and releases (or not), clients
//! leave, admins toggle maintenance, and the clock moves in jumps, exactly to `poll_timeout()`
//! among them. The invariants of `testkit::invariants` are checked after every step; then the run is driven
//! until idle, its journal is replayed from a snapshot taken at a random step, and the whole
//! run is repeated to check it is deterministic.
//!
//! The default is 128 cases per property, to keep `cargo test` quick; `PROPTEST_CASES` sets
//! another count and `PROPTEST_RNG_SEED` the seed. For a longer hunt:
//! `PROPTEST_CASES=5000 cargo test --release -p allocate-core --test properties`.

use allocate_core::{
    Config, Connection, Gpu, GpuRequirement, Group, Order, Policy as QuotaPolicy, QuotaLimits,
    Requirements, ResourceSpec,
};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use std::sync::Arc;
use testkit::labs::vocab::{GPUS, GPU_WANTS, KINDS, LABELS, USERNAMES};
use testkit::policy::Policy;
use testkit::sim::{Action, Answer, Expires, Garbage, Op, Run, Scenario, Sim};
use uuid::Uuid;

/// How many agents a simulation has.
const AGENTS: usize = 4;

fn labels(max: usize) -> impl Strategy<Value = Vec<String>> {
    subsequence(LABELS, 0..=max).prop_map(|l| l.into_iter().map(str::to_owned).collect())
}

/// A resource with up to `labels_max` labels, CPUs and memory from the strategies given, and up
/// to `gpus_max` GPUs.
fn resource(
    labels_max: usize,
    cpus: BoxedStrategy<u64>,
    memory: BoxedStrategy<u64>,
    gpus_max: usize,
) -> BoxedStrategy<ResourceSpec> {
    (
        labels(labels_max),
        cpus,
        memory,
        prop::collection::vec(select(GPUS), 0..=gpus_max),
        select(KINDS),
        any::<bool>(),
        prop::option::weighted(0.1, 0u128..3),
    )
        .prop_map(
            |(labels, cpu_count, memory_gb, gpus, kind, fixed, own_id)| ResourceSpec {
                // A small pool of agent-chosen ids: some registrations clash and are refused.
                inventory_id: own_id.map(|n| Uuid::from_u128(0x1D00 + n)),
                labels,
                cpu_count,
                memory_gb,
                gpu: gpus
                    .into_iter()
                    .map(|(label, memory_gb)| Gpu {
                        label: label.to_owned(),
                        memory_gb,
                    })
                    .collect(),
                kind: kind.to_owned(),
                connection: fixed
                    .then(|| static_connection(format!("static-{cpu_count}-{memory_gb}"))),
            },
        )
        .boxed()
}

/// A resource of a lab with few shapes: CPUs and memory from short lists.
fn catalogue_resource() -> BoxedStrategy<ResourceSpec> {
    resource(
        4,
        select(&[1u64, 4, 8, 16][..]).boxed(),
        select(&[8u64, 16, 64][..]).boxed(),
        2,
    )
}

/// A resource of a diverse lab: many labels, CPUs, memory sizes and GPU mixes, so that
/// nearly every resource differs from every other.
fn diverse_resource() -> BoxedStrategy<ResourceSpec> {
    resource(5, (1u64..=64).boxed(), (1u64..=256).boxed(), 4)
}

fn gpu_requirement() -> impl Strategy<Value = GpuRequirement> {
    (
        prop::option::of(select(GPU_WANTS)),
        select(&[0u64, 8, 16][..]),
        1u32..=2,
    )
        .prop_map(|(label, min_memory_gb, count)| GpuRequirement {
            label: label.map(str::to_owned),
            min_memory_gb,
            count,
        })
}

fn requirements() -> impl Strategy<Value = Requirements> {
    (
        prop_oneof![labels(0), labels(1), labels(2)],
        prop_oneof![2 => labels(0), 1 => labels(1)],
        prop::option::weighted(0.2, select(KINDS)),
        prop::option::weighted(0.3, select(&[2u64, 8, 16][..])),
        prop::option::weighted(0.2, select(&[16u64, 32][..])),
        prop::option::weighted(0.4, gpu_requirement()),
        select(&[0u64, 1, 5, 30, 120, 600][..]),
        any::<bool>(),
        select(USERNAMES),
        // Several resources at once, now and then (all or none, never one held twice).
        prop_oneof![6 => Just(1u32), 1 => 2u32..=3],
    )
        .prop_map(
            |(tags, exclude, kind, cpu, mem, gpu, wait, rod, user, count)| {
                let mut r = Requirements::for_user(user);
                r.count = count;
                // An excluded tag that is also required can never match: keep them apart mostly.
                r.exclude_tags = exclude.into_iter().filter(|t| !tags.contains(t)).collect();
                r.tags = tags;
                r.kind = kind.map(str::to_owned);
                r.min_cpu_count = cpu;
                r.min_memory_gb = mem;
                r.gpu = gpu;
                r.allocation_timeout_seconds = wait;
                r.release_on_disconnect = rod;
                r
            },
        )
}

fn expires() -> impl Strategy<Value = Expires> {
    prop_oneof![
        3 => Just(Expires::Default),
        6 => select(&[1u64, 10, 45, 300, 100_000][..]).prop_map(Expires::InSecs),
        1 => Just(Expires::Past),
    ]
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        any::<u8>().prop_map(|input| Garbage::UnknownAllocation { input }),
        (any::<usize>(), any::<bool>()).prop_map(|(pick, ack)| Garbage::WrongAgent { pick, ack }),
        any::<usize>().prop_map(|pick| Garbage::OversizedConnection { pick }),
        any::<u8>().prop_map(|rule| Garbage::BadRequest { rule }),
        any::<u8>().prop_map(|rule| Garbage::AbsurdRequest { rule }),
        (0..AGENTS, any::<u8>()).prop_map(|(agent, rule)| Garbage::BadRegistration { agent, rule }),
        (0..AGENTS).prop_map(|agent| Garbage::AbsurdRegistration { agent }),
        Just(Garbage::UnknownAgent),
        (any::<usize>(), any::<bool>())
            .prop_map(|(pick, long_reason)| Garbage::BadMaintenance { pick, long_reason }),
        (any::<usize>(), any::<u8>())
            .prop_map(|(pick, which)| Garbage::WildExpires { pick, which }),
    ]
}

fn action(
    resource: BoxedStrategy<ResourceSpec>,
    per_agent: usize,
) -> impl Strategy<Value = Action> {
    let agent = 0..AGENTS;
    prop_oneof![
        4 => (agent.clone(), prop::collection::vec(resource, 0..=per_agent))
            .prop_map(|(agent, resources)| Action::Register { agent, resources }),
        3 => agent.clone().prop_map(|agent| Action::Reconnect { agent }),
        3 => agent.prop_map(|agent| Action::Disconnect { agent }),
        10 => (requirements(), expires())
            .prop_map(|(requirements, expires)| Action::Request { requirements, expires }),
        8 => (any::<usize>(), prop_oneof![3 => Just(Answer::Ok), 1 => Just(Answer::Fail)], any::<bool>())
            .prop_map(|(pick, answer, keep)| Action::AnswerProvision { pick, answer, keep: keep && pick % 4 == 0, from: None }),
        5 => (any::<usize>(), any::<bool>())
            .prop_map(|(pick, keep)| Action::AckRelease { pick, keep: keep && pick % 4 == 0, from: None }),
        3 => any::<usize>().prop_map(|pick| Action::Delete { pick }),
        2 => any::<usize>().prop_map(|pick| Action::ClientGone { pick }),
        2 => (any::<usize>(), expires()).prop_map(|(pick, expires)| Action::SetExpires { pick, expires }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, on)| Action::Maintenance { pick, reason: on.then(|| "fan broken".to_owned()) }),
        4 => prop_oneof![0u64..2_000, 0u64..60_000, 0u64..400_000].prop_map(|ms| Action::Advance { ms }),
        1 => (0u64..120_000).prop_map(|ms| Action::Sleep { ms }),
        5 => Just(Action::JumpToTimeout),
        1 => Just(Action::JustBeforeTimeout),
        3 => garbage().prop_map(Action::Garbage),
    ]
}

fn op(resource: BoxedStrategy<ResourceSpec>, per_agent: usize) -> impl Strategy<Value = Op> {
    let lag = prop_oneof![9 => Just(0u64), 1 => 1u64..10_000];
    (action(resource, per_agent), lag).prop_map(|(action, lag_ms)| Op { action, lag_ms })
}

fn config() -> impl Strategy<Value = Config> {
    (
        select(&[1_000u64, 5_000, 30_000][..]),
        select(&[1_000u64, 5_000, 30_000][..]),
        select(&[30u64, 600, 3_600][..]),
        select(&[60u64, 3_600, 7 * 24 * 3_600][..]),
        prop_oneof![4 => Just(10_000usize), 1 => 1usize..=4],
        prop_oneof![2 => Just(Order::Arrival), 1 => Just(Order::FairShare)],
    )
        .prop_map(
            |(provision, release, lease, lease_max, ended, order)| Config {
                provision_timeout_ms: provision,
                release_timeout_ms: release,
                lease_secs_default: lease,
                lease_secs_max: lease_max,
                ended_allocations_max: ended,
                order,
                ..Config::default()
            },
        )
}

fn scenario(
    resource: BoxedStrategy<ResourceSpec>,
    per_agent: usize,
) -> impl Strategy<Value = Scenario> {
    (
        config(),
        any::<u64>(),
        prop::bool::weighted(0.3),
        prop::collection::vec(op(resource, per_agent), 1..120),
        any::<usize>(),
    )
        .prop_map(|(config, seed, policy, ops, at)| Scenario {
            config,
            seed,
            agents: AGENTS,
            policy: policy.then_some(Policy::Picky),
            strict: true,
            quotas: None,
            replay_at: at % (ops.len() + 1),
            ops,
        })
}

/// Small limits, or none.
fn quota_limits() -> impl Strategy<Value = QuotaLimits> {
    let small = || prop::option::of(0u32..4);
    (small(), small(), small()).prop_map(|(allocations_max, resources_max, gpus_max)| QuotaLimits {
        allocations_max,
        resources_max,
        gpus_max,
        lease_secs_max: None,
    })
}

/// Quotas over the vocabulary's users: a default, a group of some of them, and one user's own.
fn quotas() -> impl Strategy<Value = QuotaPolicy> {
    let members = subsequence(USERNAMES, 0..=USERNAMES.len());
    let user = select(USERNAMES);
    (
        quota_limits(),
        members,
        quota_limits(),
        user,
        quota_limits(),
    )
        .prop_map(|(default, members, group, user, own)| QuotaPolicy {
            default,
            groups: [(
                "group".to_owned(),
                Group {
                    members: members.into_iter().map(str::to_owned).collect(),
                    limits: group,
                },
            )]
            .into(),
            users: [(user.to_owned(), own)].into(),
        })
}

/// [`scenario`] with quotas, not strict: the safety invariants, no user over a limit among
/// them, hold at every step, and the journal replays.
fn scenario_with_quotas() -> impl Strategy<Value = Scenario> {
    (scenario(catalogue_resource(), 4), quotas()).prop_map(|(scenario, quotas)| Scenario {
        strict: false,
        quotas: Some(quotas),
        ..scenario
    })
}

/// A scenario where requests contend: every request matches almost every resource, one in
/// two asks for two or three at once, and most name a lease end, so that the front of the
/// queue holds resources and later requests backfill them (README, "Order and starvation").
fn contended_scenario() -> impl Strategy<Value = Scenario> {
    scenario(catalogue_resource(), 4).prop_map(|mut scenario| {
        for (i, op) in scenario.ops.iter_mut().enumerate() {
            if let Action::Request {
                requirements: r,
                expires,
            } = &mut op.action
            {
                *r = Requirements {
                    count: [1, 2, 1, 3][i % 4],
                    allocation_timeout_seconds: r.allocation_timeout_seconds.max(30),
                    ..Requirements::for_user(r.username.clone())
                };
                if matches!(expires, Expires::Default) && i % 3 != 0 {
                    *expires = Expires::InSecs([45, 300][i % 2]);
                }
            }
        }
        scenario
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every invariant holds where requests contend for the same resources, reservations and
    /// backfill included.
    #[test]
    fn invariants_hold_where_requests_contend(scenario in contended_scenario()) {
        check(&scenario)?;
    }

    /// Every invariant holds after every step, the journal replays from a mid-run snapshot,
    /// and the same inputs give bit-identical outputs and state.
    #[test]
    fn invariants_replay_and_determinism(scenario in scenario(catalogue_resource(), 4)) {
        check(&scenario)?;
    }

    /// With quotas, no user ever holds more than a limit allows (and every safety invariant
    /// holds, the journal replays, the runs are deterministic).
    #[test]
    fn no_user_is_ever_over_a_quota(scenario in scenario_with_quotas()) {
        check(&scenario)?;
    }

    /// The same on a diverse lab: every resource its own shape, and agents with enough of
    /// them that the matching index lays itself out and keeps a tail beside the layout.
    #[test]
    fn invariants_replay_and_determinism_on_a_diverse_lab(
        scenario in scenario(diverse_resource(), 24)
    ) {
        check(&scenario)?;
    }
}

/// Cases per property: `PROPTEST_CASES` if set, else 128 (a config set in `proptest!`
/// overrides the variable, so it is read here).
fn cases() -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(n) => n.parse().expect("PROPTEST_CASES is a number of cases"),
        Err(_) => 128,
    }
}

/// Runs a scenario twice: the invariants hold at every step, and the outputs and final state
/// are the same both times.
fn check(scenario: &Scenario) -> Result<(), TestCaseError> {
    let first = Sim::run(scenario, true);
    let second = Sim::run(scenario, false);
    prop_assert_eq!(&first.outputs, &second.outputs);
    let json = |r: &Run| serde_json::to_string(&r.snapshot).expect("snapshot serialises");
    prop_assert_eq!(json(&first), json(&second));
    Ok(())
}

/// The static connection of a lab resource at `host`.
fn static_connection(host: String) -> Arc<Connection> {
    Arc::new(Connection {
        host,
        username: "lab".into(),
        password: Some("pw".into()),
        port: None,
    })
}

/// A resource of `cpu_count` CPUs that only the number tells apart, with a static connection
/// if `fixed`.
fn plain(cpu_count: u64, fixed: bool) -> ResourceSpec {
    ResourceSpec {
        inventory_id: None,
        labels: vec![],
        cpu_count,
        memory_gb: 16,
        gpu: vec![],
        kind: "VM".into(),
        connection: fixed.then(|| static_connection(format!("static-{cpu_count}"))),
    }
}

/// The diverse-lab property once failed its replay, and no run could make it fail again: two
/// static resources of one request came back from a re-registration, listed the other way
/// round, needing provisioning; released, both waited on one agent, and the snapshot taken
/// then replayed the agent's acknowledgement as freeing the other one, which the request
/// waiting behind was placed on. The same story, told step by step.
#[test]
fn a_replay_frees_the_release_that_the_run_freed() {
    let op = |action| Op { action, lag_ms: 0 };
    let request = |user, count| {
        let mut r = Requirements::for_user(user);
        (r.count, r.allocation_timeout_seconds) = (count, 60);
        Action::Request {
            requirements: r,
            expires: Expires::Default,
        }
    };
    let ops = vec![
        op(Action::Register {
            agent: 0,
            resources: vec![plain(4, true), plain(8, true)],
        }),
        op(request("alice", 2)),
        op(Action::Register {
            agent: 0,
            resources: vec![plain(8, false), plain(4, false)],
        }),
        op(request("bob", 1)),
        op(Action::Delete { pick: 0 }),
        op(Action::AckRelease {
            pick: 0,
            keep: false,
            from: None,
        }),
    ];
    let scenario = Scenario {
        config: Config::default(),
        seed: 0,
        agents: AGENTS,
        policy: None,
        strict: true,
        quotas: None,
        // The snapshot is taken while both releases wait, before the acknowledgement.
        replay_at: 5,
        ops,
    };
    check(&scenario).unwrap();
}

/// The diverse lab's property once failed in fair-share order: a request for two held a
/// static resource (it avoids the other agent until its abandoned provision there is cleaned
/// up), its user's new request took a free resource, so that user held one more and an
/// earlier request of another user became the front; the held resource went round, to that
/// other user's later request, and the request for two was the front again when the input
/// ended. The invariants read that as a backfill with a lease too long for the same front:
/// that front had lost its place meanwhile (README, "Order and starvation").
#[test]
fn a_front_that_its_own_user_displaces_lets_go_of_what_was_held_for_it() {
    let op = |action| Op { action, lag_ms: 0 };
    let request = |user, f: &dyn Fn(&mut Requirements)| {
        let mut r = Requirements::for_user(user);
        r.allocation_timeout_seconds = 30;
        f(&mut r);
        op(Action::Request {
            requirements: r,
            expires: Expires::Default,
        })
    };
    let resource = |kind: &str, cpu_count, gpu: Vec<Gpu>, host: Option<&str>| ResourceSpec {
        kind: kind.into(),
        cpu_count,
        gpu,
        connection: host.map(|h| static_connection(h.into())),
        ..plain(1, false)
    };
    let t4 = Gpu {
        label: "Tesla T4".into(),
        memory_gb: 16,
    };
    let ops = vec![
        // Only resource 0 of agent 0 serves it; it is in error once its provision times out.
        request("ci-runner-7", &|r| {
            r.gpu = Some(GpuRequirement {
                label: Some("t4".into()),
                min_memory_gb: 0,
                count: 1,
            });
        }),
        request("bob", &|r| {
            r.count = 2;
            r.kind = Some("server-onsite".into());
        }),
        op(Action::Register {
            agent: 2,
            resources: vec![resource("server-onsite", 1, vec![], Some("static-a"))],
        }),
        op(Action::Register {
            agent: 0,
            resources: vec![
                resource("VM", 1, vec![t4], None),
                resource("VM", 1, vec![], None),
                resource("VM", 1, vec![], None),
                resource("VM", 16, vec![], Some("static-b")),
                resource("server-onsite", 1, vec![], None),
            ],
        }),
        // What ci-runner-7 holds puts bob first.
        request("ci-runner-7", &|r| r.min_cpu_count = Some(16)),
        request("ci-runner-7", &|_| {}),
        // Every provision times out: bob's request for two is the front, holding static-a.
        op(Action::JumpToTimeout),
        request("bob", &|_| {}),
    ];
    let scenario = Scenario {
        config: Config {
            provision_timeout_ms: 1_000,
            order: Order::FairShare,
            ..Config::default()
        },
        seed: 0,
        agents: AGENTS,
        policy: None,
        strict: true,
        quotas: None,
        replay_at: 0,
        ops,
    };
    check(&scenario).unwrap();
}
