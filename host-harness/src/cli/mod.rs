//! The operator's CLI against a running connector (on either host): `ml-harness backfill`
//! starts a backfill and watches it with a progress bar, `ml-harness status` prints
//! `/admin/status` as a table.
//!
//! The admin token comes from `ML_ADMIN_TOKEN` only (a flag would land in shell history and
//! process lists). Every failure ends the command with a non-zero exit and the reason.
//!
//! HTTP goes through the host's own outbound stack (hyper with rustls on ring and the webpki
//! roots, [`crate::outbound`]), not reqwest: enabling reqwest's TLS would either build aws-lc
//! or require a crypto provider in every process of the workspace (its features unify).

mod backfill;
mod status;

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

pub use backfill::{BackfillArgs, backfill};
pub use status::{StatusArgs, status};

/// The environment variable holding the connector's `admin_token`.
pub const TOKEN_VAR: &str = "ML_ADMIN_TOKEN";

/// A client for one connector's admin routes.
pub struct Admin {
    base: String,
    token: String,
    http: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
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
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Admin {
            base: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http,
        })
    }

    /// Sends one admin request; a transport failure is an error naming the URL.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(b)?)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .with_context(|| format!("`{url}` is not a valid request URL"))?;
        let exchange = async {
            let resp = self.http.request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, text) = tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| anyhow!("the connector at {url} did not answer within 30 s"))?
            .with_context(|| format!("cannot reach the connector at {url}"))?;
        let text = String::from_utf8_lossy(&text).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == 401 {
            bail!(
                "the connector refused {TOKEN_VAR} (HTTP 401): set it to the connector's admin_token"
            );
        }
        Ok(Answer { status, body })
    }
}
