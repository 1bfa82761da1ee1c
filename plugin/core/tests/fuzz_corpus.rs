//! The fuzz targets (`fuzzing/mod.rs`) on stable: every recorded fixture in the shared
//! folder (read in place), the committed seed corpus (`fuzz/corpus/<target>/`), and seeded
//! mutations of both. libFuzzer runs the same targets for as long as you like:
//! `cd plugin/core/fuzz && cargo +nightly fuzz run <target>` (see the README).

mod common;
mod fuzzing;

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The recorded fixtures (JSON only) and the target's own seed corpus.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut paths = Vec::new();
    files_under(Path::new(&common::shared("fixtures")), &mut paths);
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    let own = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    files_under(&own, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect()
}

/// The input as a target sees it: fixtures get a flag byte first (authentic, POST, admin
/// token) so that they reach the interesting code.
fn framed(target: &str, raw: &[u8]) -> Vec<u8> {
    match target {
        "webhook_intake" => [&[1u8][..], raw].concat(),
        "admin_route" => [&b"\x01/admin/mapping\n"[..], raw].concat(),
        _ => raw.to_vec(),
    }
}

/// Byte-level mutations, as a fuzzer would make: flips, deletions, insertions of JSON-ish
/// tokens, truncation, splices of two inputs.
fn mutate(rng: &mut SmallRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"null",
        b"-1",
        b"0",
        b"1e309",
        b"\"\"",
        b"[]",
        b"{}",
        b"\"9999999999999999999999\"",
        b"\"-0.0001\"",
        b"\"12.345678\"",
        b"true",
        b"\"\\u0000\"",
        b"18446744073709551616",
    ];
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..6) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                let j = (i + rng.random_range(1..16)).min(len);
                out.drain(i..j);
            }
            2 => {
                let i = rng.random_range(0..=len);
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => out.truncate(rng.random_range(0..len)),
            4 if !other.is_empty() => {
                let i = rng.random_range(0..=len);
                let j = rng.random_range(0..other.len());
                out.truncate(i);
                out.extend_from_slice(&other[j..]);
            }
            _ => {
                // Replace a number in the text by a token.
                if let Some(i) = out.iter().position(|b| b.is_ascii_digit()) {
                    let t = TOKENS[rng.random_range(0..TOKENS.len())];
                    out.splice(i..i + 1, t.iter().copied());
                }
            }
        }
    }
    out
}

fn run(target: &str) {
    let f = fuzzing::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, f)| *f)
        .expect("a target");
    let inputs = corpus(target);
    assert!(
        inputs.len() > 20,
        "{target}: only {} corpus inputs (is the shared folder there?)",
        inputs.len()
    );
    for (name, raw) in &inputs {
        let input = framed(target, raw);
        if let Err(e) = std::panic::catch_unwind(|| f(&input)) {
            panic!("{target} fails on {name}: {e:?}");
        }
    }
    let rounds: usize = std::env::var("FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let mut rng = SmallRng::seed_from_u64(0xF022);
    for round in 0..rounds {
        let (_, a) = &inputs[rng.random_range(0..inputs.len())];
        let (_, b) = &inputs[rng.random_range(0..inputs.len())];
        let input = framed(target, &mutate(&mut rng, a, b));
        if let Err(e) = std::panic::catch_unwind(|| f(&input)) {
            panic!(
                "{target} fails on mutation {round}: {e:?}\ninput: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn webhook_intake_holds_its_properties_on_the_corpus_and_mutations_of_it() {
    run("webhook_intake");
}

#[test]
fn order_mapping_holds_its_properties_on_the_corpus_and_mutations_of_it() {
    run("order_mapping");
}

#[test]
fn admin_routes_hold_their_properties_on_the_corpus_and_mutations_of_it() {
    run("admin_route");
}

#[test]
fn refund_mapping_holds_its_properties_on_the_corpus_and_mutations_of_it() {
    run("refund_mapping");
}
