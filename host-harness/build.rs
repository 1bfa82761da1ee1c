//! Gets the component ready while the harness compiles, in release builds.
//!
//! `cargo run --profile quick -p ml-harness -- serve --build` (the README's run command; with
//! `--release` before) used to compile the harness for minutes, then run the component build,
//! which failed at once when the toolchain lacked the `wasm32-wasip2` target. This script runs
//! during that build -- cargo starts work that many other units wait for first, so a top-level
//! crate's script runs late in a cold build (55 % of the way in a measured `--release` build,
//! 89 % in a `quick` one), before the tail of wasmtime-wasi, the simulators and the harness
//! itself -- and:
//!
//! 1. checks that the toolchain in effect has `wasm32-wasip2`; when it does not, it runs
//!    `rustup target add wasm32-wasip2` if rustup is there, or else fails the build there and
//!    then with what to install;
//! 2. starts the manifest's build command (`cargo build --target wasm32-wasip2 --profile
//!    component -p ml-connector`) in the background, so the component compiles on whatever CPU
//!    the harness build leaves idle. `--build` later runs the same command; cargo's lock on
//!    `target/wasm32-wasip2/component` makes it wait for this one and then find it fresh.
//!
//! Build scripts normally touch nothing outside `OUT_DIR` and never the network. These two
//! exceptions are deliberate and bounded:
//! - only in release builds (cargo's `PROFILE` is `release` for `--release` and for profiles
//!   that inherit from it, such as `quick`): `cargo check`, clippy, rust-analyzer and the tests
//!   build with `dev`, so opening the project in an editor or running tests never triggers them;
//! - once per target directory: the script reruns only when it or `src/wasm_target.rs` changes,
//!   so ordinary rebuilds leave the component to `--build`, which rebuilds what changed;
//! - adding the target completes the toolchain `rust-toolchain.toml` already pins, with the
//!   target that file already lists (rustup installs it when it installs the toolchain itself,
//!   but not into a toolchain that is already installed), and `--build` would have to do the
//!   same a few minutes later anyway;
//! - the background build writes only what the manifest's build command writes, where it
//!   writes it;
//! - `ML_HARNESS_PREPARE_COMPONENT=0` turns both off (the harness still checks the target at
//!   `--build`).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[allow(dead_code)]
#[path = "src/wasm_target.rs"]
mod wasm_target;

use wasm_target::{COMPONENT_BUILD_ARGS, Plan, RUSTUP_ADD, TARGET};

const SWITCH: &str = "ML_HARNESS_PREPARE_COMPONENT";

/// Variables cargo sets for build scripts that would change what a nested cargo builds, or
/// how (the outer jobserver's descriptors are not the nested build's to use). Without them the
/// nested cargo sees what the user's shell would give `--build`, so both builds agree.
const CLEARED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_LINKER",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
];
const CLEARED_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_CFG_", "CARGO_FEATURE_", "DEP_"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/wasm_target.rs");
    println!("cargo:rerun-if-env-changed={SWITCH}");

    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var(SWITCH).is_ok_and(|v| v == "0")
    {
        return;
    }
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let Some(root) = manifest_dir.parent().map(Path::to_path_buf) else {
        return;
    };
    // Only inside this repository's workspace, where the component's sources are.
    if !root.join("plugin/component/Cargo.toml").is_file() || !root.join("spin.toml").is_file() {
        return;
    }

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let probe = match wasm_target::probe(&root, &rustc, "rustup".as_ref()) {
        Ok(p) => p,
        Err(e) => {
            println!("cargo:warning=could not check for the {TARGET} target: {e}");
            return;
        }
    };
    match probe.plan() {
        Plan::Ready => {}
        Plan::AddWithRustup => match wasm_target::add_with_rustup(&root, "rustup".as_ref(), true) {
            Ok(()) => println!(
                "cargo:warning=the toolchain {} had no {TARGET} target (the component's); \
                     added it with `{RUSTUP_ADD}`",
                probe.toolchain_name()
            ),
            Err(e) => {
                println!(
                    "cargo:warning=the toolchain {} has no {TARGET} target and adding it \
                         failed: {e}. `--build` will try again.",
                    probe.toolchain_name()
                );
                return;
            }
        },
        Plan::Stop(message) => {
            eprintln!(
                "error: {message}\n\nThis check runs in release builds of ml-harness so you \
                 find out now, not after the harness has compiled. To build the harness anyway \
                 (to serve an already-built component), set {SWITCH}=0."
            );
            std::process::exit(1);
        }
    }

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    match start_component_build(&root, &out_dir) {
        Ok(log) => println!(
            "cargo:rustc-env=ML_HARNESS_COMPONENT_BUILD_LOG={}",
            log.display()
        ),
        Err(e) => println!(
            "cargo:warning=could not start building the component in the background ({e}); \
             `--build` will build it"
        ),
    }
}

/// Starts the component build and returns without waiting for it; its output goes to a log
/// file (not to cargo, which would wait for the pipe to close). It stays in this process group,
/// so Ctrl-C on the outer build stops it too.
fn start_component_build(root: &Path, out_dir: &Path) -> std::io::Result<PathBuf> {
    let log_path = out_dir.join("component-build.log");
    let log = File::create(&log_path)?;
    let cargo: OsString = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(COMPONENT_BUILD_ARGS)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if CLEARED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key.as_ref());
        }
    }
    // Not waited for: it runs on while the harness compiles and after this script exits.
    cmd.spawn()?;
    Ok(log_path)
}
