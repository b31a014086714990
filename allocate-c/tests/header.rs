//! The committed header must be exactly what cbindgen generates from the current source.

use std::path::Path;

/// The header's version macros, from the crate's version (the one `allocate_version()` says).
fn version_macros() -> String {
    format!(
        "\n/** The version of this header; `allocate_version()` says the library's at run time. */\n\
         #define ALLOCATE_VERSION_MAJOR {}\n\
         #define ALLOCATE_VERSION_MINOR {}\n\
         #define ALLOCATE_VERSION_PATCH {}\n\
         #define ALLOCATE_VERSION_STRING \"{}\"\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    )
}

#[test]
fn committed_header_matches_a_fresh_generation() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .with_after_include(version_macros())
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let header = crate_dir.join("../include/allocate.h");
    if std::env::var_os("ALLOCATE_BLESS").is_some() {
        std::fs::write(&header, &fresh).expect("write include/allocate.h");
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/allocate.h differs from a fresh cbindgen run: run `make header` and commit it"
    );
}
