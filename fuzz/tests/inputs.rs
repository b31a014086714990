//! Every committed seed and crash regression, through the same checks as the fuzz targets,
//! without libFuzzer: `cargo test` in fuzz/ (`make fuzz` runs it first).

use std::path::Path;

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for (target, check) in TARGETS {
        for dir in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            let mut paths: Vec<_> = entries
                .map(|e| e.expect("a readable entry").path())
                .collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).expect("a readable input");
                eprintln!("{target}: {}", path.display());
                check(&data);
                count += 1;
            }
        }
    }
    assert!(count > 0, "no seeds found");
}
