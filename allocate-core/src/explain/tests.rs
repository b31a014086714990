use super::*;
use crate::model::{test_spec as spec, GpuRequirement};

fn gpu(label: Option<&str>, min_memory_gb: u64, count: u32) -> Requirements {
    let mut r = Requirements::for_user("u");
    r.gpu = Some(GpuRequirement {
        label: label.map(str::to_owned),
        min_memory_gb,
        count,
    });
    r
}

/// The contract's example: a typo'd GPU label rules out every registered resource.
#[test]
fn a_typo_in_the_gpu_label_rules_out_everything_and_names_the_labels_seen() {
    let lab: Vec<ResourceSpec> = (0..40)
        .map(|i| {
            let model = if i % 2 == 0 {
                "GeForce RTX 2080"
            } else {
                "Tesla T4"
            };
            spec(&["nvidia"], 8, 32, &[(model, 8)], "VM")
        })
        .collect();
    let e = explain(
        &gpu(Some("RTX 2090"), 0, 1),
        lab.iter().map(|s| (s, || None)),
    );
    assert_eq!(e.matching_resources, 0);
    assert_eq!(e.free, 0);
    assert_eq!(
        e.findings,
        [Finding {
            count: 40,
            message: "0 of 40 registered resources have a GPU whose label contains \"RTX 2090\"; GPU labels seen: GeForce RTX 2080, Tesla T4".into(),
            reason: Reason::GpuLabel,
        }]
    );
    assert_eq!(e.first().map(|f| f.reason), Some(Reason::GpuLabel));
}

#[test]
fn each_requirement_counts_on_its_own_most_first_then_states() {
    let lab = [
        spec(&["a"], 4, 8, &[], "VM"),
        spec(&["a", "b"], 16, 64, &[("T4", 16), ("T4", 16)], "VM"),
        spec(&["a", "b"], 16, 64, &[("T4", 16), ("T4", 16)], "VM"),
        spec(&["a", "b"], 16, 64, &[("T4", 16), ("T4", 16)], "VM"),
        spec(&["a", "b"], 16, 64, &[("T4", 16), ("T4", 16)], "VM"),
        spec(&["a", "b"], 16, 64, &[("T4", 16), ("T4", 16)], "VM"),
        spec(&["c"], 32, 8, &[("A100", 80)], "device"),
    ];
    let mut r = gpu(Some("t4"), 16, 2);
    r.tags = vec!["b".into()];
    r.kind = Some("VM".into());
    r.min_cpu_count = Some(8);
    r.min_memory_gb = Some(16);
    let states = [
        None,
        Some(Reason::Allocated),
        Some(Reason::Offline),
        Some(Reason::Allocated),
        None,
        Some(Reason::Maintenance),
        None,
    ];
    let e = explain(&r, lab.iter().zip(states).map(|(s, a)| (s, move || a)));
    assert_eq!(e.matching_resources, 5);
    assert_eq!(e.free, 1);
    let got: Vec<(Reason, u64)> = e.findings.iter().map(|f| (f.reason, f.count)).collect();
    assert_eq!(
        got,
        [
            (Reason::Tags, 2),
            (Reason::MinMemoryGb, 2),
            (Reason::GpuLabel, 2),
            (Reason::Type, 1),
            (Reason::MinCpuCount, 1),
            (Reason::GpuMinMemoryGb, 1),
            (Reason::Allocated, 2),
            (Reason::Offline, 1),
            (Reason::Maintenance, 1),
        ]
    );
    let messages: Vec<&str> = e.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "5 of 7 registered resources carry every tag of \"b\"; labels seen: a, b, c",
            "5 of 7 registered resources have at least 16 GB of memory; the most seen: 64 GB",
            "5 of 7 registered resources have a GPU whose label contains \"t4\"; GPU labels seen: A100, T4",
            "6 of 7 registered resources are of type \"VM\"; types seen: VM, device",
            "6 of 7 registered resources have at least 8 CPUs; the most seen: 32",
            "6 of 7 registered resources have a GPU with at least 16 GB of memory; the most seen: 80 GB",
            "2 of 5 matching resources are allocated",
            "1 of 5 matching resources are offline (their agent is disconnected)",
            "1 of 5 matching resources are in maintenance",
        ]
    );
}

#[test]
fn gpu_count_covers_what_label_and_memory_alone_do_not() {
    let lab = [
        spec(&[], 1, 1, &[], ""),
        spec(&[], 1, 1, &[("T4", 16)], ""),
        spec(&[], 1, 1, &[("T4", 16), ("T4", 16)], ""),
    ];
    let e = explain(&gpu(None, 0, 1), lab.iter().map(|s| (s, || None)));
    assert_eq!(e.findings.len(), 1);
    assert_eq!(e.findings[0].reason, Reason::GpuCount);
    assert_eq!(
        e.findings[0].message,
        "2 of 3 registered resources have 1 GPUs that meet the label and memory asked for; the most seen on one resource: 2"
    );
    let e = explain(&gpu(Some("t4"), 0, 2), lab.iter().map(|s| (s, || None)));
    let got: Vec<(Reason, u64)> = e.findings.iter().map(|f| (f.reason, f.count)).collect();
    assert_eq!(got, [(Reason::GpuLabel, 1), (Reason::GpuCount, 1)]);
    assert_eq!(e.matching_resources, 1);
}

#[test]
fn seen_values_are_sorted_and_capped() {
    let names: Vec<String> = (0..SEEN_MAX + 5)
        .rev()
        .map(|i| format!("l{i:02}"))
        .collect();
    let lab: Vec<ResourceSpec> = names
        .iter()
        .map(|n| spec(&[n.as_str()], 1, 1, &[], ""))
        .collect();
    let mut r = Requirements::for_user("u");
    r.tags = vec!["zz".into(), "missing".into()];
    let e = explain(&r, lab.iter().map(|s| (s, || None)));
    assert_eq!(
        e.findings[0].message,
        "0 of 15 registered resources carry every tag of \"missing\", \"zz\"; labels seen: l00, l01, l02, l03, l04, l05, l06, l07, l08, l09 and 5 more"
    );
    assert_eq!(seen(&BTreeSet::new()), "none");
}

#[test]
fn nothing_registered_explains_nothing_and_reason_codes_read_back() {
    let e = explain(
        &Requirements::for_user("u"),
        std::iter::empty::<(&ResourceSpec, fn() -> Availability)>(),
    );
    assert_eq!(e, Explanation::default());
    for reason in Reason::ALL {
        assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        let json = serde_json::to_value(reason).unwrap();
        assert_eq!(json, reason.as_str());
    }
    assert_eq!(Reason::parse("power"), None);
}
