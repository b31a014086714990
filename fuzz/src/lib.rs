//! The checks behind allocate's fuzz targets, one public function per target, so that the
//! targets in `fuzz_targets/` are one line each and `cargo test` here can run the committed
//! seeds and regressions through the same checks without libFuzzer.
//!
//! Every function takes the raw input and panics when it finds a bug; see docs/fuzzing.md.

mod parsers;
mod sequence;
mod snapshot;
mod vocab;

pub use parsers::{agent_message, allocate_request, inventory_query, patch_bodies, server_message};
pub use sequence::{engine_sequence, run_scenario, Scenario};
pub use snapshot::snapshot_restore;
