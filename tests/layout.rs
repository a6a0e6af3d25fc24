//! The source tree keeps the shape docs/architecture.md draws: each folder of `src/` imports
//! only the folders before it in [`LAYERS`], so there is no circle and no import upward, and
//! every folder says in its `mod.rs` what it owns.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The folders of `src/`, lowest first: each may import only those before it.
const LAYERS: [&str; 11] = [
    "provenance",
    "verdict",
    "model",
    "decode",
    "sink",
    "source",
    "pipeline",
    "measure",
    "report",
    "serve",
    "cli",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names through `crate::`, outside comments; grouped imports
/// (`crate::{a, b::c}`) name each of their members.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Members are split at the group's own commas, not those of nested groups.
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    // A trailing comma in a group leaves an empty member.
    found.remove("");
    found
}

#[test]
fn folders_import_only_the_layers_below_them() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(src()).unwrap();
        let Some(folder) = rel.components().next().and_then(|c| c.as_os_str().to_str()) else {
            continue;
        };
        if rel.components().count() == 1 {
            assert!(
                ["lib.rs", "main.rs"].contains(&folder),
                "{folder} sits at the root of src/; it belongs in one of its folders"
            );
            continue;
        }
        let level = LAYERS
            .iter()
            .position(|l| *l == folder)
            .unwrap_or_else(|| panic!("src/{folder}/ is not in LAYERS (tests/layout.rs)"));
        for import in crate_imports(&fs::read_to_string(file).unwrap()) {
            if import == folder {
                continue;
            }
            match LAYERS.iter().position(|l| *l == import) {
                Some(i) if i < level => {}
                _ => upward.push(format!("{} imports crate::{import}", rel.display())),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layering:\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_folder_says_what_it_owns() {
    for layer in LAYERS {
        let text = fs::read_to_string(src().join(layer).join("mod.rs")).unwrap();
        assert!(
            text.starts_with("//!"),
            "src/{layer}/mod.rs must open with a comment saying what the folder owns"
        );
    }
}

#[test]
fn the_import_scan_sees_plain_grouped_and_inline_paths() {
    let text = "use crate::verdict::Status;\n\
                // crate::cli in a comment does not count\n\
                use crate::{decode, model::{manifest, infer}, measure,};\n\
                let x = crate::sink::create();\n";
    let found: Vec<String> = crate_imports(text).into_iter().collect();
    assert_eq!(found, ["decode", "measure", "model", "sink", "verdict"]);
}
