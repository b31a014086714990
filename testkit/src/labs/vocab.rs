//! The small vocabulary that generated resources and requests draw from (the property tests'
//! strategies and the fuzz targets' `arbitrary` inputs), so that they often match each other.

/// Labels a resource carries and a request asks for or excludes.
pub const LABELS: &[&str] = &["nvidia", "cuda", "rocm", "arm", "x86", "lab-a"];

/// Resource types.
pub const KINDS: &[&str] = &["VM", "device", "server-onsite"];

/// GPU models: (label, memory in GB).
pub const GPUS: &[(&str, u64)] = &[
    ("NVIDIA GeForce RTX 2080", 8),
    ("NVIDIA GeForce RTX 4090", 24),
    ("Tesla T4", 16),
    ("AMD Radeon VII", 16),
];

/// GPU labels a request asks for (parts of [`GPUS`]' names, in other cases).
pub const GPU_WANTS: &[&str] = &["rtx", "RTX 2080", "t4", "radeon", "4090"];

/// Users; the simulations' policies have opinions about "alice" and "bob".
pub const USERNAMES: &[&str] = &["ci-runner-7", "alice", "bob"];
