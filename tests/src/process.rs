//! Running the real `ml-harness` binary as a subprocess, configured the way users configure it:
//! `SPIN_VARIABLE_*` environment variables and command-line flags.
//!
//! Cargo only exposes `CARGO_BIN_EXE_*` to a package's own tests, so [`harness_binary`] builds
//! `ml-harness` once per test binary (or benchmark binary) with the same cargo, profile and
//! target directory as the caller itself (cargo releases its build lock while tests run, and
//! before `cargo run` starts the program). Set `ML_HARNESS_BIN` to
//! use a binary built elsewhere.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::env::{component_wasm_path, manifest_path, workspace_root};

/// What `ml-harness serve` prints on stdout once it listens: `... on http://ADDR`.
const SERVING_MARKER: &str = " on http://";

/// The `ml-harness` executable, built on first use.
pub fn harness_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_harness_binary().unwrap_or_else(|e| panic!("{e:#}")))
}

fn build_harness_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ML_HARNESS_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "ML_HARNESS_BIN={} is not a file: build it or unset ML_HARNESS_BIN",
                path.display()
            );
        }
        return Ok(path);
    }
    // A test executable is `<target>/<profile dir>/deps/<name>-<hash>`; a binary of this
    // package (a benchmark) is `<target>/<profile dir>/<name>`.
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    let exe_dir = exe
        .parent()
        .context("the test executable is not in <target>/<profile>")?;
    let profile_dir = if exe_dir.file_name().is_some_and(|n| n == "deps") {
        exe_dir
            .parent()
            .context("the deps directory has no parent")?
    } else {
        exe_dir
    }
    .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .context("the profile directory has no parent")?
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        // Selecting ml-e2e too gives the same feature unification as `cargo test -p ml-e2e`,
        // so shared dependencies are not rebuilt with other features on every run.
        .args([
            "build",
            "-p",
            "ml-e2e",
            "-p",
            "ml-harness",
            "--bin",
            "ml-harness",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .context("cannot run cargo to build ml-harness")?;
    if !out.status.success() {
        bail!(
            "building the ml-harness binary failed ({}); reproduce with `cargo build -p ml-harness`:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = profile_dir.join(format!("ml-harness{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "cargo built ml-harness but {} does not exist",
            bin.display()
        );
    }
    Ok(bin)
}

/// How to run the binary.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Application variables, passed as `SPIN_VARIABLE_<UPPER_NAME>`. Inherited `SPIN_VARIABLE_*`
    /// are removed first, so only these apply.
    pub variables: BTreeMap<String, String>,
    /// `--manifest` (default: the repository's `spin.toml`).
    pub manifest: PathBuf,
    /// `--component` (default: the e2e build of the component).
    pub component: PathBuf,
    /// More arguments after `serve` (default `--retry-interval 0 --no-demo`).
    pub extra_args: Vec<String>,
}

impl ProcessOptions {
    /// Options for serving the repository's manifest and e2e component with `variables`.
    pub fn new(data_dir: &Path, variables: BTreeMap<String, String>) -> Self {
        ProcessOptions {
            data_dir: data_dir.to_path_buf(),
            variables,
            manifest: manifest_path(),
            component: component_wasm_path().to_path_buf(),
            extra_args: vec!["--retry-interval".into(), "0".into(), "--no-demo".into()],
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(harness_binary());
        cmd.arg("serve")
            .arg("--manifest")
            .arg(&self.manifest)
            .arg("--component")
            .arg(&self.component)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                cmd.env_remove(&key);
            }
        }
        for (name, value) in &self.variables {
            cmd.env(ml_harness::config::env_name(name), value);
        }
        cmd
    }
}

/// Everything a process wrote, collected by background threads (so its pipes never fill up).
#[derive(Debug, Clone, Default)]
pub struct Output {
    lines: Arc<Mutex<String>>,
}

impl Output {
    fn push(&self, line: &str) {
        let mut text = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        text.push_str(line);
        text.push('\n');
    }

    /// The text so far.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn drain(
    reader: impl Read + Send + 'static,
    output: Output,
    on_line: impl Fn(&str) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            output.push(&line);
        }
    });
}

/// A running `ml-harness serve`. Dropping it kills the process.
#[derive(Debug)]
pub struct HarnessProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout.
    pub stdout: Output,
    /// Its stderr (the log).
    pub stderr: Output,
}

impl HarnessProcess {
    /// Starts the binary and waits (up to `ready_within`, generously) for it to print its
    /// address. Fails with the process's output if it exits or never gets ready.
    pub async fn spawn(
        options: &ProcessOptions,
        ready_within: Duration,
    ) -> anyhow::Result<HarnessProcess> {
        tokio::task::spawn_blocking(harness_binary).await?;
        let mut child = options
            .command()
            .spawn()
            .context("cannot start ml-harness")?;
        let stdout = Output::default();
        let stderr = Output::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let tx = Mutex::new(Some(tx));
        drain(
            child.stdout.take().context("stdout is piped")?,
            stdout.clone(),
            move |line| {
                if let Some((_, addr)) = line.split_once(SERVING_MARKER)
                    && let Ok(addr) = addr.trim().parse::<SocketAddr>()
                    && let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take()
                {
                    let _ = tx.send(addr);
                }
            },
        );
        drain(
            child.stderr.take().context("stderr is piped")?,
            stderr.clone(),
            |_| {},
        );
        let addr = match tokio::time::timeout(ready_within, rx).await {
            Ok(Ok(addr)) => addr,
            outcome => {
                let _ = child.kill();
                let status = child.wait().ok();
                let why = if outcome.is_err() {
                    "did not print its address in time"
                } else {
                    "exited"
                };
                bail!(
                    "ml-harness {why} (status {status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
        };
        Ok(HarnessProcess {
            child,
            addr,
            stdout,
            stderr,
        })
    }

    /// Runs the binary expecting it to exit by itself (a startup error), within `timeout`.
    /// Returns the exit status, stdout and stderr.
    pub async fn run_to_exit(
        options: &ProcessOptions,
        timeout: Duration,
    ) -> anyhow::Result<(ExitStatus, String, String)> {
        tokio::task::spawn_blocking(harness_binary).await?;
        let mut cmd = options.command();
        let child = cmd.spawn().context("cannot start ml-harness")?;
        let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
        match tokio::time::timeout(timeout, waited).await {
            Ok(out) => {
                let out = out??;
                Ok((
                    out.status,
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ))
            }
            Err(_) => bail!("ml-harness did not exit within {timeout:?}"),
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM (a graceful shutdown, as `docker stop` or Ctrl-C would) and waits for
    /// the exit, killing the process if it does not exit within `within`.
    pub async fn terminate(mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("cannot run `kill`")?;
        if !sent.success() {
            bail!("`kill -TERM {pid}` failed ({sent})");
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!(
                    "ml-harness did not exit within {within:?} of SIGTERM\n{}",
                    self.stderr.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process at once (SIGKILL: a crash) and reaps it.
    pub fn kill(mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for HarnessProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
