//! The `wasm32-wasip2` target the component is built for, and the command that builds it.
//!
//! Two places use this, so it depends on `std` alone: the harness's build script (`build.rs`,
//! which needs no build-dependencies this way, and checks during a release build of the
//! harness) and `--build` (the authoritative check, right before the manifest's build command
//! runs).
//!
//! `rust-toolchain.toml` lists the target, but rustup only installs what that file lists when
//! it installs the toolchain itself; a toolchain that is already installed keeps its targets.
//! So the target may be missing, and then the component build fails after everything else has
//! been compiled. Here we find out early and either add it with rustup or say exactly what to do.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The component's target triple.
pub const TARGET: &str = "wasm32-wasip2";

/// `cargo` arguments that build the component; `spin.toml`'s build command is `cargo` followed
/// by exactly these (a test keeps the two in step).
pub const COMPONENT_BUILD_ARGS: &[&str] = &[
    "build",
    "--target",
    TARGET,
    "--profile",
    "component",
    "-p",
    "ml-connector",
];

/// The command that adds the target with rustup.
pub const RUSTUP_ADD: &str = "rustup target add wasm32-wasip2";

/// What is known about the toolchain that will build the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `rustc --print sysroot` of the toolchain in effect in the workspace.
    pub sysroot: PathBuf,
    /// Whether that toolchain has the standard library for [`TARGET`].
    pub has_target: bool,
    /// Whether `rustup` runs (it can add the target).
    pub rustup: bool,
    /// The rustup toolchain in effect (`RUSTUP_TOOLCHAIN`, set by rustup's proxies), if known.
    pub toolchain: Option<String>,
}

/// What to do before building the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The target is installed.
    Ready,
    /// Run [`RUSTUP_ADD`] in the workspace (so rustup picks the same toolchain), then build.
    AddWithRustup,
    /// Nothing here can fix it: stop, and show this message.
    Stop(String),
}

/// Where a toolchain keeps the standard library for [`TARGET`].
pub fn target_libdir(sysroot: &Path) -> PathBuf {
    sysroot.join("lib").join("rustlib").join(TARGET).join("lib")
}

/// Asks `rustc` (run in `workdir`, so rustup honours `rust-toolchain.toml` there) for its
/// sysroot, checks it for the target, and checks whether `rustup` runs.
pub fn probe(workdir: &Path, rustc: &OsStr, rustup: &OsStr) -> Result<Probe, String> {
    let shown = Path::new(rustc).display();
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run `{shown} --print sysroot` in {}: {e}; is Rust installed and on PATH?",
                workdir.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{shown} --print sysroot` failed in {} ({}): {}",
            workdir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let rustup = Command::new(rustup)
        .arg("--version")
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty());
    Ok(Probe::new(sysroot, rustup, toolchain))
}

impl Probe {
    /// What a toolchain with this sysroot has: the target when its standard library is there.
    pub fn new(sysroot: PathBuf, rustup: bool, toolchain: Option<String>) -> Probe {
        Probe {
            has_target: target_libdir(&sysroot).is_dir(),
            sysroot,
            rustup,
            toolchain,
        }
    }

    /// The toolchain as people know it: rustup's name for it, else its sysroot.
    pub fn toolchain_name(&self) -> String {
        self.toolchain
            .clone()
            .unwrap_or_else(|| self.sysroot.display().to_string())
    }

    /// Ready when the target is there; add it when rustup can; otherwise stop with what to do.
    pub fn plan(&self) -> Plan {
        if self.has_target {
            Plan::Ready
        } else if self.rustup {
            Plan::AddWithRustup
        } else {
            Plan::Stop(format!(
                "the Rust toolchain at {} has no standard library for {TARGET} ({} is missing), \
                 and rustup is not on PATH to add it. The component cannot be built until it is \
                 installed: with rustup, run `{RUSTUP_ADD}` in this repository (install rustup \
                 from https://rustup.rs first); with a toolchain from your system's packages, \
                 install its {TARGET} standard library package. To run an already-built \
                 component instead, pass --component <file.wasm> without --build.",
                self.sysroot.display(),
                target_libdir(&self.sysroot).display(),
            ))
        }
    }
}

/// Runs [`RUSTUP_ADD`] in `workdir`. `quiet` sends rustup's output nowhere (the build script
/// has no terminal to show it on); otherwise it goes to this process's stderr.
pub fn add_with_rustup(workdir: &Path, rustup: &OsStr, quiet: bool) -> Result<(), String> {
    let mut cmd = Command::new(rustup);
    cmd.args(["target", "add", TARGET])
        .current_dir(workdir)
        .stdin(Stdio::null());
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        // rustup reports progress on stderr; keep stdout for the harness's own output.
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "`{RUSTUP_ADD}` failed in {} ({s}); run it yourself to see why (is the network \
             reachable? is this toolchain managed by rustup?)",
            workdir.display()
        )),
        Err(e) => Err(format!("cannot run `{RUSTUP_ADD}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(has_target: bool, rustup: bool) -> Probe {
        Probe {
            sysroot: PathBuf::from("/opt/rust"),
            has_target,
            rustup,
            toolchain: Some("1.95.0-x86_64-unknown-linux-gnu".into()),
        }
    }

    #[test]
    fn an_installed_target_needs_nothing() {
        assert_eq!(probe(true, true).plan(), Plan::Ready);
        assert_eq!(probe(true, false).plan(), Plan::Ready);
    }

    #[test]
    fn a_missing_target_with_rustup_present_is_added_with_rustup() {
        assert_eq!(probe(false, true).plan(), Plan::AddWithRustup);
        assert_eq!(RUSTUP_ADD, format!("rustup target add {TARGET}"));
    }

    #[test]
    fn a_missing_target_without_rustup_stops_naming_the_command_and_the_alternatives() {
        let Plan::Stop(message) = probe(false, false).plan() else {
            panic!("expected Stop");
        };
        for needle in [
            "`rustup target add wasm32-wasip2`",
            "/opt/rust/lib/rustlib/wasm32-wasip2/lib is missing",
            "https://rustup.rs",
            "--component",
        ] {
            assert!(message.contains(needle), "{needle:?} not in: {message}");
        }
    }

    #[test]
    fn the_manifest_build_command_is_cargo_with_the_component_build_arguments() {
        let manifest = crate::manifest::Manifest::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml"),
        )
        .unwrap();
        let build = manifest
            .component
            .build
            .expect("spin.toml has a build command");
        assert_eq!(
            build.command,
            format!("cargo {}", COMPONENT_BUILD_ARGS.join(" "))
        );
    }

    #[test]
    fn the_target_is_found_where_a_toolchain_keeps_its_standard_libraries() {
        let sysroot = std::env::temp_dir().join(format!(
            "ml-harness-wasm-target-sysroot-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&sysroot);
        std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
        let without = Probe::new(sysroot.clone(), true, None);
        assert!(!without.has_target);
        assert_eq!(without.plan(), Plan::AddWithRustup);
        assert_eq!(without.toolchain_name(), sysroot.display().to_string());
        std::fs::create_dir_all(sysroot.join("lib/rustlib/wasm32-wasip2/lib")).unwrap();
        let with = Probe::new(sysroot.clone(), false, None);
        assert!(with.has_target);
        assert_eq!(with.plan(), Plan::Ready);
        std::fs::remove_dir_all(sysroot).unwrap();
    }

    #[test]
    fn probing_the_real_toolchain_finds_its_sysroot_and_whether_rustup_runs() {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let workdir = Path::new(env!("CARGO_MANIFEST_DIR"));
        // `true` and `false` stand in for a rustup that runs and one that does not.
        let found = super::probe(workdir, &rustc, OsStr::new("true")).unwrap();
        assert!(found.sysroot.join("lib/rustlib").is_dir(), "{found:?}");
        assert!(found.rustup);
        assert_eq!(found.has_target, target_libdir(&found.sysroot).is_dir());
        let found = super::probe(workdir, &rustc, OsStr::new("false")).unwrap();
        assert!(!found.rustup);
        let found = super::probe(workdir, &rustc, OsStr::new("/nonexistent/rustup")).unwrap();
        assert!(!found.rustup);
    }

    #[test]
    fn a_failing_rustup_is_reported_with_the_command_to_run_by_hand() {
        let err = add_with_rustup(Path::new("."), OsStr::new("false"), true).unwrap_err();
        assert!(
            err.contains("`rustup target add wasm32-wasip2` failed"),
            "{err}"
        );
        let err =
            add_with_rustup(Path::new("."), OsStr::new("/nonexistent/rustup"), true).unwrap_err();
        assert!(
            err.contains("cannot run `rustup target add wasm32-wasip2`"),
            "{err}"
        );
    }

    #[test]
    fn a_rustc_that_cannot_run_is_an_error_saying_so() {
        let err = super::probe(
            Path::new("."),
            OsStr::new("/nonexistent/rustc"),
            OsStr::new("rustup"),
        )
        .unwrap_err();
        assert!(
            err.contains("cannot run `/nonexistent/rustc --print sysroot`"),
            "{err}"
        );
    }
}
