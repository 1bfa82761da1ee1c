//! The operator's CLI against a running connector (on either host): `ml-harness backfill`
//! starts a backfill and watches it with a progress bar, `ml-harness status` prints
//! `/admin/status` as a table.
//!
//! The admin token comes from `ML_ADMIN_TOKEN` only (a flag would land in shell history and
//! process lists). Every failure ends the command with a non-zero exit and the reason.

mod backfill;
mod status;

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

pub use backfill::{BackfillArgs, backfill};
pub use status::{StatusArgs, status};

/// The environment variable holding the connector's `admin_token`.
pub const TOKEN_VAR: &str = "ML_ADMIN_TOKEN";

/// A client for one connector's admin routes.
pub struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("base", &self.base).finish()
    }
}

/// What the connector answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The connector's own explanation of an error (`message`, else the body).
    pub fn reason(&self) -> String {
        match self.body.get("message").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => self.body.to_string(),
        }
    }
}

impl Admin {
    /// From `--url` and `ML_ADMIN_TOKEN`.
    pub fn from_env(url: &str) -> anyhow::Result<Admin> {
        let token = std::env::var(TOKEN_VAR)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "{TOKEN_VAR} is not set: export {TOKEN_VAR}=<the connector's admin_token> (it is never taken as a flag)"
                )
            })?;
        let parsed = url::Url::parse(url)
            .with_context(|| format!("--url `{url}` is not a URL: write it as https://host"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--url `{url}` must start with https:// (or http:// for a local connector)");
        }
        // reqwest's rustls needs a process-wide crypto provider; ring, as the host uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Admin {
            base: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http,
        })
    }

    /// Sends one admin request; a transport failure is an error naming the URL.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the connector at {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == 401 {
            bail!(
                "the connector refused {TOKEN_VAR} (HTTP 401): set it to the connector's admin_token"
            );
        }
        Ok(Answer { status, body })
    }
}
