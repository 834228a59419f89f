//! The layering rule of `docs/architecture.md`, checked: a module imports only from its own layer
//! or lower ones, and never through the crate root's re-exports.
//!
//! The table is the fenced `layers` block of `docs/architecture.md`; every top-level module of
//! `src/` must be in it. Every `crate::<module>` path in code (not only `use` lines; comments are
//! skipped) is checked against the importing module's layer.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Module name → layer number, from the `layers` block.
fn layer_table(doc: &str) -> BTreeMap<String, u32> {
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_default();
    let mut table = BTreeMap::new();
    for line in block.lines() {
        let mut words = line.split_whitespace();
        let Some(level) = words.next().and_then(|l| l.strip_prefix('L')) else {
            continue;
        };
        let Ok(level) = level.parse::<u32>() else {
            continue;
        };
        for module in words {
            table.insert(module.trim_end_matches(',').to_owned(), level);
        }
    }
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    // `lib.rs` is the table of contents; this file is the check itself.
    (name != "lib" && name != "layering").then(|| name.to_owned())
}

/// The `crate::<ident>` paths of a source text, with their line numbers, outside comments.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            let after = &rest[i + "crate::".len()..];
            rest = after;
            // `$crate::` (macros) and identifiers ending in `crate` are not the crate root.
            if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
                continue;
            }
            let ident: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                found.push((n + 1, ident));
            }
        }
    }
    found
}

/// Every import that breaks the rule, as readable lines.
fn violations(root: &Path) -> Vec<String> {
    let doc = fs::read_to_string(root.join("docs/architecture.md")).unwrap_or_default();
    let table = layer_table(&doc);
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    if table.is_empty() {
        bad.push("docs/architecture.md has no `layers` block".to_owned());
        return bad;
    }
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let Some(&own) = table.get(&module) else {
            bad.push(format!(
                "{shown}: module `{module}` is not in the layer table"
            ));
            continue;
        };
        let text = fs::read_to_string(file).unwrap_or_default();
        for (line, target) in crate_paths(&text) {
            if target == module {
                continue;
            }
            match table.get(&target) {
                Some(&theirs) if theirs <= own => {}
                Some(&theirs) => bad.push(format!(
                    "{shown}:{line}: `{module}` (L{own}) imports `crate::{target}` (L{theirs}), \
                     a higher layer"
                )),
                // Root re-exports hide where a name lives; only the top layer may use them.
                None if own >= 9 => {}
                None => bad.push(format!(
                    "{shown}:{line}: `{module}` (L{own}) uses `crate::{target}` through the crate \
                     root; name the defining module"
                )),
            }
        }
    }
    bad
}

#[test]
fn layering_no_module_imports_from_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bad = violations(root);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn layering_check_sees_upward_root_and_unknown_imports() {
    let table = layer_table("x\n```layers\nL0  low\nL3  high, other\n```\n");
    assert_eq!(table.get("low"), Some(&0));
    assert_eq!(table.get("other"), Some(&3));
    let paths = crate_paths(
        "use crate::high::X; // crate::ignored\nlet y = $crate::m::f(); foo(crate::Root);",
    );
    assert_eq!(
        paths,
        vec![(1, "high".to_owned()), (2, "Root".to_owned())],
        "comments and `$crate` are skipped"
    );
}
