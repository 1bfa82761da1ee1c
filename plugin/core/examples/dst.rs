//! Long runs of the deterministic simulation (the CI test runs a few thousand seeds; this
//! runs as many as you like, on every core):
//!
//! ```text
//! cargo run --release -p ml-core --example dst -- --seeds 1000000 [--start 0] [--profile full|bounded]
//! cargo run --release -p ml-core --example dst -- --seed 4242 --verbose     # one seed, traced
//! cargo run --release -p ml-core --example dst -- --seeds 5000 --list       # every violation, one a line
//! ```
//!
//! Prints progress, a tally of broken checks with their first seeds, and a report for the
//! first few failures; exits non-zero if any seed broke a check.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/sim/mod.rs"]
mod sim;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sim::{Check, Options, Profile};

/// Per check: seeds that broke it, the first of them, the first message.
type Tally = BTreeMap<Check, (u64, Vec<u64>, String)>;

struct Args {
    start: u64,
    seeds: u64,
    profile: Profile,
    verbose: bool,
    reports: usize,
    threads: usize,
    list: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        start: 0,
        seeds: 10_000,
        profile: Profile::FULL,
        verbose: false,
        reports: 3,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match arg.as_str() {
            "--start" => a.start = num(value()?)?,
            "--seeds" => a.seeds = num(value()?)?,
            "--seed" => {
                a.start = num(value()?)?;
                a.seeds = 1;
            }
            "--profile" => {
                let v = value()?;
                a.profile =
                    Profile::by_name(&v).ok_or(format!("--profile {v}: full or bounded"))?;
            }
            "--verbose" => a.verbose = true,
            "--list" => a.list = true,
            "--reports" => a.reports = num(value()?)? as usize,
            "--threads" => a.threads = num(value()?)?.max(1) as usize,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "dst: {e}\nusage: dst [--seeds N] [--start S] [--seed S] [--profile full|bounded] [--verbose] [--list] [--reports N] [--threads N]"
            );
            std::process::exit(2);
        }
    };
    let opts = Options {
        profile: args.profile,
        verbose: args.verbose,
    };
    let end = args.start + args.seeds;
    let next = AtomicU64::new(args.start);
    let done = AtomicU64::new(0);
    let steps = AtomicU64::new(0);
    let tally: Mutex<Tally> = Mutex::new(BTreeMap::new());
    let reports = Mutex::new(Vec::new());
    let failed = AtomicU64::new(0);
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let out = sim::run(seed, &opts);
                    steps.fetch_add(out.steps, Ordering::Relaxed);
                    if !out.violations.is_empty() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if args.list {
                            for v in &out.violations {
                                let what: String = v.what.chars().take(1000).collect();
                                println!("seed {seed}: [{:?}] {what}", v.check);
                            }
                        }
                        let mut t = tally.lock().unwrap();
                        let mut seen = Vec::new();
                        for v in &out.violations {
                            if seen.contains(&v.check) {
                                continue;
                            }
                            seen.push(v.check);
                            let e = t.entry(v.check).or_insert((0, Vec::new(), v.what.clone()));
                            e.0 += 1;
                            if e.1.len() < 12 {
                                e.1.push(seed);
                            }
                        }
                        let mut r = reports.lock().unwrap();
                        if r.len() < args.reports {
                            r.push(out.report());
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(10_000) {
                        eprintln!(
                            "{n} seeds, {} failed, {:.0} s",
                            failed.load(Ordering::Relaxed),
                            began.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    let secs = began.elapsed().as_secs_f64();
    for r in reports.into_inner().unwrap() {
        println!("{r}");
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "{n} seeds ({}..{end}, profile {}) in {secs:.1} s on {} threads: {} ms per seed, {} host calls; {} seed(s) broke a check",
        args.start,
        args.profile.name(),
        args.threads,
        began.elapsed().as_micros() as u64 * args.threads as u64 / n.max(1) / 1000,
        steps.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    for (check, (count, seeds, first)) in tally.into_inner().unwrap() {
        let first: String = first.chars().take(160).collect();
        println!("  {check:?}: {count} seed(s), e.g. {seeds:?}: {first}");
    }
    if failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}
