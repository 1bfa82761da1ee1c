//! Builds the real `ml-connector` component for the end-to-end tests and hands its path to
//! them as `ML_COMPONENT_WASM`.
//!
//! The nested cargo gets its own target directory (`<workspace>/target/e2e-component`): the
//! outer cargo holds the lock on the normal target directory while build scripts run, so
//! building into it from here would wait forever. Set `ML_E2E_COMPONENT=/path/to.wasm` to use
//! an already-built component instead (the build is then skipped).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables the outer cargo (or the user) sets that would change what the nested cargo
/// builds or where: flags meant for the host build, the outer target dir/target triple, and
/// the outer jobserver (its file descriptors are not ours to use).
const CLEARED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("the tests crate lives in <workspace>/tests")
        .to_path_buf();

    println!("cargo:rustc-env=ML_WORKSPACE_ROOT={}", root.display());
    println!("cargo:rerun-if-env-changed=ML_E2E_COMPONENT");
    if let Some(prebuilt) = std::env::var_os("ML_E2E_COMPONENT") {
        let prebuilt = PathBuf::from(prebuilt);
        assert!(
            prebuilt.is_file(),
            "ML_E2E_COMPONENT={} is not a file: build the component or unset ML_E2E_COMPONENT",
            prebuilt.display()
        );
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        println!("cargo:rustc-env=ML_COMPONENT_WASM={}", prebuilt.display());
        return;
    }

    for watched in ["plugin", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let target_dir = root.join("target").join("e2e-component");
    let wasm = build_component(&root, &target_dir);
    println!("cargo:rustc-env=ML_COMPONENT_WASM={}", wasm.display());
}

fn build_component(root: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "component",
            "-p",
            "ml-connector",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    // Per-package variables (CARGO_PKG_*, CARGO_CFG_*, CARGO_FEATURE_*) describe *this* build
    // script's package; none of them are read by cargo itself, but clear them to be safe.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the ml-connector component: {e}"));
    if !output.status.success() {
        panic!(
            "building the ml-connector component for the e2e tests failed ({}); fix the build error below \
             (reproduce with `cargo build --target wasm32-wasip2 --profile component -p ml-connector`)\n\
             --- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("component")
        .join("ml_connector.wasm");
    assert!(
        wasm.is_file(),
        "cargo reported success but {} does not exist; was the package or profile renamed?",
        wasm.display()
    );
    wasm
}
