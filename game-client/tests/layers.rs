//! The import rule of the client crate (its map is in `src/lib.rs`): every top-level module has a
//! layer, and a module may use only modules of lower layers. Reads the sources, so a new import
//! that breaks the rule (and with it any cycle) fails here before review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer, as `src/lib.rs` documents them.
const LAYERS: &[(&str, u8)] = &[
    ("util", 0),
    ("config", 0),
    ("frame", 0),
    ("ports", 1),
    ("net", 2),
    ("identity", 3),
    ("chat", 4),
    ("contacts", 4),
    ("call", 4),
    ("storage", 4),
    ("api", 4),
    ("transfer", 5),
    ("platform", 6),
    ("room", 6),
    ("headless", 6),
    ("ui", 7),
    ("app", 8),
];

/// Modules only the composition root may name.
const ONLY_FOR_APP: &[&str] = &["platform"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `ui/panels.rs` is `["ui", "panels"]`, `chat/mod.rs` is
/// `["chat"]`.
fn module_path(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments (doc links name other modules without using them).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // Not inside a string on that line (URLs, `//!` in strings are rare; good enough
            // for paths, which never follow a `"` before the comment).
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a file's code names: `crate::x`, `use crate::{x, y::z}`, and `super::`
/// chains that climb out of the file's own top-level module.
fn named_modules(file: &Path, text: &str) -> BTreeSet<String> {
    let code = code(text);
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident_at(item.trim());
                if !name.is_empty() {
                    named.insert(name.to_owned());
                }
            }
        } else {
            named.insert(ident_at(rest).to_owned());
        }
    }
    let path = module_path(file);
    for (at, _) in code.match_indices("super::") {
        // Count the whole chain once, from its first `super::`.
        if code[..at].ends_with("super::") {
            continue;
        }
        let mut rest = &code[at..];
        let mut ups = 0;
        while let Some(next) = rest.strip_prefix("super::") {
            ups += 1;
            rest = next;
        }
        // `super` from a `mod tests` inside the file is the file itself: one level more.
        let depth = path.len();
        if ups >= depth {
            let name = ident_at(rest);
            if !name.is_empty() && name != "*" {
                named.insert(name.to_owned());
            }
        }
    }
    named
}

/// Which top-level modules each top-level module uses.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let path = module_path(&file);
        let Some(top) = path.first().cloned() else {
            continue;
        };
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let uses = graph.entry(top.clone()).or_default();
        for name in named_modules(&file, &text) {
            if name != top && LAYERS.iter().any(|(m, _)| *m == name) {
                uses.insert(name);
            }
        }
    }
    graph
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("module {module} has no layer: add it to LAYERS and lib.rs"))
}

#[test]
fn every_top_level_module_has_a_layer() {
    for module in imports().keys() {
        layer(module);
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let mut broken = Vec::new();
    for (module, uses) in imports() {
        for used in uses {
            if layer(&used) >= layer(&module) {
                broken.push(format!(
                    "{module} (layer {}) uses {used} (layer {})",
                    layer(&module),
                    layer(&used)
                ));
            }
            if ONLY_FOR_APP.contains(&used.as_str()) && module != "app" {
                broken.push(format!("{module} names {used}, which only app may"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the rule:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_every_kind_of_import() {
    let file = src().join("ui/panels.rs");
    let named = named_modules(
        &file,
        "use crate::{chat::X, net};\nuse crate::room::Y;\nfn f() { super::super::app::main(); }\n\
         // crate::transfer in a comment does not count\nlet s = super::theme::X;",
    );
    let expected: BTreeSet<String> = ["chat", "net", "room", "app"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(named, expected);
}
