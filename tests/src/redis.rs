//! A real `redis-server` for tests: started on a free loopback port with its own temporary
//! directory and no persistence, stopped (killed) when dropped.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let redis = ml_e2e::redis::RedisServer::start().await?;
//! let url = redis.url(); // redis://127.0.0.1:PORT
//! # Ok(()) }
//! ```
//!
//! Needs the `redis-server` binary (Debian: `apt-get install redis-server`; `.ci/run` installs
//! it); `ML_REDIS_SERVER` names another binary (e.g. `valkey-server`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running `redis-server` owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// The server binary: `ML_REDIS_SERVER`, else `redis-server` on the PATH.
fn binary() -> PathBuf {
    std::env::var_os("ML_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub async fn start() -> anyhow::Result<RedisServer> {
        let bin = binary();
        match Command::new(&bin).arg("--version").output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "`{}` is not installed: the Redis tests start their own server; install it (Debian: `apt-get install redis-server`) or set ML_REDIS_SERVER to a redis-server/valkey-server binary",
                bin.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot run {}", bin.display())),
            Ok(_) => {}
        }
        let mut last = None;
        // The port is free when picked, but another process may take it before the server
        // binds it: then try another.
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port()?,
                dir: tempfile::Builder::new().prefix("ml-redis-").tempdir()?,
            };
            match server.spawn().await {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = binary();
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        self.child = Some(child.with_context(|| format!("cannot start {}", bin.display()))?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                bail!(
                    "redis-server exited ({status}) on port {}:\n{log}",
                    self.port
                );
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "redis-server did not answer PING on port {} within 10 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the server answers `PING` now.
    pub async fn ping(&self) -> bool {
        let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"+PONG\r\n"
        )
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A runtime config file's text pointing the `default` store at this server.
    pub fn runtime_config(&self) -> String {
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            self.url()
        )
    }

    /// Kills the server at once (SIGKILL): Redis is down until [`RedisServer::restart`].
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill_now();
        self.spawn().await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_now();
    }
}
