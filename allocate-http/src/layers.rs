//! The layer order of `lib.rs`, checked: every `crate::` path in a module's files must name
//! a module of an earlier layer (or the module itself), so no module imports upward and no
//! two modules import each other.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// The layers, first to last, as `lib.rs` documents them.
const LAYERS: &[&[&str]] = &[
    &[
        "access", "clock", "events", "history", "metrics", "quotas", "tls",
    ],
    &["connections"],
    &["auth"],
    &["journal"],
    &["config"],
    &["driver"],
    &["error"],
    &["sockets"],
    &["dashboard"],
    &["state"],
    &["routes"],
    &["server"],
];

/// The driver's submodules, first to last: each may use `super::` items of `driver/mod.rs`
/// (the `Driver` they all work on) and the submodules before it.
const DRIVER_LAYERS: &[&str] = &["sockets", "delivery", "jobs", "run"];

/// The top-level module each file under `src` belongs to (`None`: the crate root, binaries).
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" | "layers.rs" | "bin" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// The first segment of every `crate::` path in `source`, outside comments; for
/// `crate::{a, b::c}` that is `a` and `b`.
fn crate_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                found.extend(group[..end].split(',').filter_map(|item| {
                    let name = item.trim().split("::").next()?.trim();
                    (!name.is_empty()).then(|| name.to_owned())
                }));
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        }
    }
    found
}

/// The first segment of every `super::` path in `source`, outside comments.
fn super_paths(source: &str) -> Vec<String> {
    crate_paths(&source.replace("super::", "crate::"))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_from_earlier_layers() {
    let rank: HashMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i)))
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let Some(module) = module_of(relative) else {
            continue;
        };
        let Some(&own) = rank.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module {module} is in no layer",
                relative.display()
            ));
            continue;
        };
        let source = fs::read_to_string(&file).expect("a readable source file");
        for used in crate_paths(&source) {
            if used == module {
                continue;
            }
            match rank.get(used.as_str()) {
                Some(&theirs) if theirs < own => {}
                Some(_) => wrong.push(format!(
                    "{}: {module} imports crate::{used}, which is not in an earlier layer",
                    relative.display()
                )),
                None => wrong.push(format!(
                    "{}: crate::{used} is in no layer",
                    relative.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn driver_submodules_import_only_from_earlier_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driver");
    let mut wrong = Vec::new();
    for (own, module) in DRIVER_LAYERS.iter().enumerate() {
        let file = dir.join(format!("{module}.rs"));
        let source = fs::read_to_string(&file).expect("a driver submodule");
        for used in super_paths(&source) {
            let sibling = DRIVER_LAYERS.iter().position(|m| *m == used);
            if sibling.is_some_and(|theirs| theirs >= own) {
                wrong.push(format!("driver/{module}.rs imports super::{used}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "driver layering broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn paths_are_read_from_plain_and_grouped_imports_but_not_comments() {
    let source = "use crate::driver::{Peer, Frame};\n\
                  use crate::{auth::Caller, error};\n\
                  // crate::server is only mentioned\n\
                  let x = crate::clock::now();";
    assert_eq!(crate_paths(source), ["driver", "auth", "error", "clock"]);
}
