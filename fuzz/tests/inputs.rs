//! Every committed seed and crash regression, through the same checks as the fuzz targets,
//! without libFuzzer: `cargo test` in fuzz/ (`make fuzz` runs it first).

use testkit::fuzz_inputs::{inputs, Kind};

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("agent_message", allocate_fuzz::agent_message),
    ("allocate_request", allocate_fuzz::allocate_request),
    ("patch_bodies", allocate_fuzz::patch_bodies),
    ("inventory_query", allocate_fuzz::inventory_query),
    ("snapshot_restore", allocate_fuzz::snapshot_restore),
    ("engine_sequence", allocate_fuzz::engine_sequence),
];

#[test]
fn seeds_and_regressions_pass_every_check() {
    let mut count = 0;
    for (target, check) in TARGETS {
        for kind in [Kind::Seeds, Kind::Regressions] {
            for (path, data) in inputs(kind, target) {
                eprintln!("{target}: {}", path.display());
                check(&data);
                count += 1;
            }
        }
    }
    assert!(count > 0, "no seeds found");
}
