//! The core's layers: imports point down only.
//!
//! `routes` → `jobs` → `sync` → `books` → `models` → base (`host`, `http`, `secret`, `crypto`,
//! `settings`, `testing`: the files at the root of `src`). A file's layer is its folder under
//! `plugin/core/src` (or, for a file at the root, its own name); it may name modules of its
//! own layer or a lower one. Every `crate::<module>` reference counts — `use` lines (including
//! `use crate::{a, b}` groups), inline paths, and paths inside string literals such as
//! `#[serde(with = "crate::models::money::opt")]` — except in comments (doc links are prose).
//! `#[cfg(test)]` modules are checked like the rest. `super::` paths are not followed: within
//! a folder they stay in the layer, and the core does not use `super::super::`.
//!
//! A top-level module this file does not know is an error too, so a new module must be
//! given a layer here before it can be used.

use std::path::Path;

/// Layers from the bottom up; a file may import its own rank or lower.
const LAYERS: &[(&str, u8)] = &[
    ("host", 0),
    ("http", 0),
    ("secret", 0),
    ("crypto", 0),
    ("settings", 0),
    ("testing", 0),
    ("models", 1),
    ("books", 2),
    ("sync", 3),
    ("jobs", 4),
    ("routes", 5),
];

/// `lib.rs` declares the modules; it may name any of them.
const ROOT_RANK: u8 = u8::MAX;

fn rank_of_module(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The layer of a file, from its path relative to `src` (`sync/record.rs` → `sync`).
fn layer_of_file(rel: &str) -> Result<(String, u8), String> {
    let rel = rel.replace('\\', "/");
    if rel == "lib.rs" {
        return Ok(("lib".into(), ROOT_RANK));
    }
    let top = match rel.split_once('/') {
        Some((dir, _)) => dir.to_string(),
        None => rel.trim_end_matches(".rs").to_string(),
    };
    match rank_of_module(&top) {
        Some(r) => Ok((top, r)),
        None => Err(format!(
            "src/{rel}: top-level module `{top}` has no layer; add it to LAYERS in tests/layers.rs"
        )),
    }
}

/// One `crate::<module>` reference: the line it is on and the top-level module it names.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    line: usize,
    module: String,
}

/// The source with comments blanked out (newlines kept, so line numbers still match).
/// String and character literals are kept: a `//` inside a string is not a comment.
fn strip_comments(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(&b[i..j.min(b.len())]);
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            let end = (j + 1).min(b.len());
            out.extend(&b[i..end]);
            i = end;
        } else if c == '\'' {
            // A char literal ('"', '\'', 'x') is copied whole; a lifetime is just a quote.
            let len = if next == Some('\\') {
                b[i + 2..].iter().position(|&ch| ch == '\'').map(|p| p + 3)
            } else if b.get(i + 2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            let len = len.unwrap_or(1);
            out.extend(&b[i..(i + len).min(b.len())]);
            i += len;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `crate::<module>` (and `crate::{a, b::c}`) reference outside comments.
fn scan(src: &str) -> Vec<Reference> {
    let text = strip_comments(src);
    let b: Vec<char> = text.chars().collect();
    let line_at = |pos: usize| b[..pos].iter().filter(|&&c| c == '\n').count() + 1;
    let ident_at = |mut j: usize| {
        while j < b.len() && b[j].is_whitespace() {
            j += 1;
        }
        let start = j;
        while j < b.len() && is_ident(b[j]) {
            j += 1;
        }
        (start, b[start..j].iter().collect::<String>())
    };
    let needle: Vec<char> = "crate::".chars().collect();
    let mut refs = Vec::new();
    let mut i = 0;
    while i + needle.len() <= b.len() {
        let at_boundary = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == ':');
        if !(at_boundary && b[i..i + needle.len()] == needle[..]) {
            i += 1;
            continue;
        }
        let mut j = i + needle.len();
        while j < b.len() && b[j].is_whitespace() {
            j += 1;
        }
        if b.get(j) == Some(&'{') {
            // A group: the first name of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            while j < b.len() {
                match b[j] {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            item_start = true;
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && is_ident(c) => {
                        let (start, name) = ident_at(j);
                        if name != "self" {
                            refs.push(Reference {
                                line: line_at(start),
                                module: name.clone(),
                            });
                        }
                        item_start = false;
                        j = start + name.chars().count();
                        continue;
                    }
                    _ => {}
                }
                j += 1;
            }
        } else {
            let (start, name) = ident_at(j);
            if !name.is_empty() {
                refs.push(Reference {
                    line: line_at(start),
                    module: name,
                });
            }
        }
        i += needle.len();
    }
    refs
}

/// Every layering problem in a set of files (`(path under src, source)`), as messages naming
/// the file, the line and the import.
fn check(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, src) in files {
        let (layer, rank) = match layer_of_file(rel) {
            Ok(l) => l,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for r in scan(src) {
            match rank_of_module(&r.module) {
                None => problems.push(format!(
                    "src/{rel}:{}: `crate::{}` is not a known top-level module; give it a layer \
                     in tests/layers.rs",
                    r.line, r.module
                )),
                Some(target) if target > rank => problems.push(format!(
                    "src/{rel}:{}: `crate::{}` points up: layer `{layer}` may not import from \
                     layer `{}` (imports point down: routes → jobs → sync → books → models → base)",
                    r.line, r.module, r.module
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

fn rust_files(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, base, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

fn core_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    files
}

#[test]
fn every_import_in_the_core_points_to_its_own_layer_or_a_lower_one() {
    let files = core_sources();
    assert!(
        files.len() > 20 && files.iter().any(|(p, _)| p.starts_with("routes")),
        "expected the core's sources, found {} files",
        files.len()
    );
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "layering violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_module_lib_rs_declares_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .chain(lib.lines().filter_map(|l| l.trim().strip_prefix("mod ")))
        .map(|m| m.trim_end_matches(';').trim())
        .collect();
    assert!(declared.contains(&"routes"), "lib.rs declares {declared:?}");
    let unknown: Vec<&&str> = declared
        .iter()
        .filter(|m| rank_of_module(m).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "lib.rs declares modules with no layer in tests/layers.rs: {unknown:?}"
    );
}

#[test]
fn the_scanner_finds_use_lines_groups_inline_paths_and_paths_in_strings() {
    let src = r#"use crate::sync::record::Failure;
use crate::{
    books::mapping,
    models::{money, token},
};
fn f() -> crate::jobs::run::RunResult { g() }
#[serde(with = "crate::models::money::opt")]
"#;
    let found: Vec<(usize, String)> = scan(src).into_iter().map(|r| (r.line, r.module)).collect();
    assert_eq!(
        found,
        vec![
            (1, "sync".into()),
            (3, "books".into()),
            (4, "models".into()),
            (6, "jobs".into()),
            (7, "models".into()),
        ]
    );
}

#[test]
fn the_scanner_ignores_comments_but_not_code_after_strings_with_slashes() {
    let src = r#"// use crate::routes::router;
/// See [`crate::jobs::run`].
/* crate::routes /* nested */ crate::jobs */
let url = "https://example.invalid/crate::"; let c = '"'; use crate::books::customer;
"#;
    let found: Vec<(usize, String)> = scan(src).into_iter().map(|r| (r.line, r.module)).collect();
    assert_eq!(found, vec![(4, "books".into())]);
}

#[test]
fn an_upward_import_fails_naming_the_file_the_line_and_the_import() {
    let files = vec![
        (
            "sync/upstream.rs".to_string(),
            "use crate::models::quickbooks;\n\nuse crate::jobs::run::connection_failure;\n"
                .to_string(),
        ),
        (
            "models/token.rs".to_string(),
            "fn f() { crate::books::customer::normalize_display_name(\"x\"); }\n".to_string(),
        ),
        (
            "routes/router.rs".to_string(),
            "use crate::jobs::run;\nuse crate::http::Request;\n".to_string(),
        ),
        (
            "http.rs".to_string(),
            "use crate::{host::Host, sync::store};\n".to_string(),
        ),
    ];
    let problems = check(&files);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].starts_with("src/sync/upstream.rs:3: `crate::jobs` points up"));
    assert!(problems[0].contains("layer `sync` may not import from layer `jobs`"));
    assert!(problems[1].starts_with("src/models/token.rs:1: `crate::books` points up"));
    assert!(problems[2].starts_with("src/http.rs:1: `crate::sync` points up"));
}

#[test]
fn an_unknown_top_level_module_fails_until_it_is_given_a_layer() {
    let files = vec![
        (
            "widgets/mod.rs".to_string(),
            "use crate::models::money::Money;\n".to_string(),
        ),
        (
            "jobs/order.rs".to_string(),
            "use crate::widgets::Widget;\n".to_string(),
        ),
    ];
    let problems = check(&files);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("src/widgets/mod.rs: top-level module `widgets` has no layer"));
    assert!(
        problems[1]
            .starts_with("src/jobs/order.rs:1: `crate::widgets` is not a known top-level module")
    );
}
