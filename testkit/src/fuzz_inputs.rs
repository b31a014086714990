//! The fuzz targets' committed inputs (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`),
//! for the plain tests that replay them without libFuzzer.

use std::path::{Path, PathBuf};

/// Where the committed inputs are kept, under `fuzz/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Hand-written valid inputs (`seeds/`).
    Seeds,
    /// The minimized input of every crash found, after its fix (`regressions/`).
    Regressions,
}

/// The files of `fuzz/<kind>/<target>/` with their contents, sorted by path; none when the
/// folder does not exist.
pub fn inputs(kind: Kind, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = match kind {
        Kind::Seeds => "seeds",
        Kind::Regressions => "regressions",
    };
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable entry").path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("a readable input");
            (p, data)
        })
        .collect()
}
