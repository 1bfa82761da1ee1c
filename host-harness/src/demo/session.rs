//! A running demo: start the simulators and the connector, place orders, wait for their
//! invoices, stop and clean up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use rand::Rng as _;
use serde_json::Value;

use super::LABEL;
use super::credentials::SIMULATED_VARIABLES;
use super::orders::{
    DemoOrder, DemoReport, FIRST_ORDER_ID, TERMINAL_STATES, describe, initial_orders, money,
};
use crate::config::{EnvSource, Overrides};
use crate::kv::SqliteBackend;
use crate::manifest::Manifest;
use crate::server::{self, AppConfig, Harness, Running, ServeOptions};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, BcSimHandle, OrderShape, generate, shapes};
use ml_sim::quickbooks::{QboSim, QboSimConfig, QboSimHandle};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The Spin manifest (variables, outbound hosts, component source).
    pub manifest: PathBuf,
    /// A `.wasm` to run instead of the manifest's `source`.
    pub component: Option<PathBuf>,
    /// Where the connector listens (port 0 picks a free port).
    pub listen: String,
    /// How long to wait for the demo orders to become invoices.
    pub wait: Duration,
    /// How often the host calls `POST /admin/retry-due` (None: never).
    pub retry_interval: Option<Duration>,
    /// Print progress and results to stdout (tests turn it off).
    pub print: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            manifest: PathBuf::from("spin.toml"),
            component: None,
            listen: "127.0.0.1:0".to_string(),
            wait: Duration::from_secs(30),
            // Short, so a transient failure during the demo is retried while the user watches.
            retry_interval: Some(Duration::from_secs(2)),
            print: true,
        }
    }
}

/// A running demo: both simulators, the connector, and the generated secrets.
pub struct DemoSession {
    pub(super) bc: BcSimHandle,
    pub(super) qbo: QboSimHandle,
    pub(super) running: Option<Running>,
    pub(super) client: reqwest::Client,
    pub(super) connector_url: String,
    pub(super) admin_token: String,
    pub(super) webhook_secret: String,
    pub(super) data_dir: PathBuf,
    pub(super) next_order_id: u64,
    pub(super) extra_shapes: Vec<OrderShape>,
    pub(super) orders: Vec<DemoOrder>,
    pub(super) wait: Duration,
    pub(super) print: bool,
}

impl std::fmt::Debug for DemoSession {
    // The session holds secrets; show where it runs, not what it knows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSession")
            .field("connector_url", &self.connector_url)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

fn alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// The variables that point the connector at running simulators: store hash, token and API
/// base of the BigCommerce simulator; client credentials, realm, a freshly issued refresh
/// token and the API/OAuth/consent URLs of the QuickBooks simulator. Callers add their own
/// secrets (admin token, webhook secret, encryption key) and tuning.
pub fn simulator_variables(bc: &BcSimHandle, qbo: &QboSimHandle) -> BTreeMap<String, String> {
    [
        ("bigcommerce_store_hash", bc.store_hash().to_string()),
        ("bigcommerce_access_token", bc.token().to_string()),
        ("bigcommerce_api_base", bc.base_url()),
        ("qbo_client_id", qbo.client_id().to_string()),
        ("qbo_client_secret", qbo.client_secret().to_string()),
        ("qbo_realm_id", qbo.realm_id().to_string()),
        ("qbo_refresh_token", qbo.issue_refresh_token()),
        ("qbo_api_base", qbo.base_url()),
        ("qbo_oauth_base", qbo.base_url()),
        ("qbo_authorize_url", qbo.authorize_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn random_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill(&mut key[..]);
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn fresh_data_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ml-harness-demo-{}-{}",
        std::process::id(),
        alnum(8).to_lowercase()
    ));
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create the demo data directory {}: check that the temp directory is writable",
            dir.display()
        )
    })?;
    Ok(dir)
}

impl DemoSession {
    /// Starts both simulators and the connector, and registers the BigCommerce webhooks.
    pub async fn start(opts: &DemoOptions) -> anyhow::Result<DemoSession> {
        let manifest = Manifest::load(&opts.manifest)?;
        let source = opts
            .component
            .clone()
            .unwrap_or_else(|| manifest.component.source.clone());
        let engine = server::engine()?;
        let component = server::compile(&engine, &source)?;

        let bc = BcSim::start(BcSimConfig::default())
            .await
            .context("cannot start the simulated BigCommerce store")?;
        let qbo = QboSim::start(QboSimConfig::default())
            .await
            .context("cannot start the simulated QuickBooks company")?;
        let listener = tokio::net::TcpListener::bind(&opts.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: pick a free address with --listen",
                    opts.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let connector_url = format!("http://{addr}");

        let admin_token = format!("demo-admin-{}", alnum(24));
        let webhook_secret = format!("demo-whsec-{}", alnum(24));
        let mut values = simulator_variables(&bc, &qbo);
        values.extend(
            [
                ("bigcommerce_webhook_secret", webhook_secret.clone()),
                ("bigcommerce_client_secret", String::new()),
                (
                    "qbo_redirect_uri",
                    format!("{connector_url}/oauth/quickbooks/callback"),
                ),
                ("encryption_key", random_key()),
                ("encryption_key_previous", String::new()),
                ("admin_token", admin_token.clone()),
                // Retries within the demo's patience, not a production minute.
                ("retry_base_seconds", "1".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
        );
        debug_assert!(SIMULATED_VARIABLES.iter().all(|v| values.contains_key(*v)));
        let app = AppConfig::resolve(
            &manifest,
            &Overrides {
                values,
                fallback: EnvSource,
            },
        )?;

        let data_dir = fresh_data_dir()?;
        let kv = Arc::new(SqliteBackend::open_in(&data_dir)?);
        let harness = Arc::new(Harness::new(&engine, &component, app, kv)?);
        let running = server::serve(
            harness,
            listener,
            ServeOptions {
                retry_interval: opts.retry_interval,
            },
        )?;

        let hook_url = format!("{connector_url}/webhooks/bigcommerce");
        for scope in ["store/order/*", "store/customer/*"] {
            bc.add_hook(
                scope,
                &hook_url,
                &[("x-ml-webhook-secret", &webhook_secret)],
            );
        }

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // Idle keep-alive connections would hold up the connector's graceful stop.
            .pool_max_idle_per_host(0)
            .build()
            .context("cannot build the HTTP client for the connector's admin routes")?;
        let session = DemoSession {
            bc,
            qbo,
            running: Some(running),
            client,
            connector_url,
            admin_token,
            webhook_secret,
            data_dir,
            next_order_id: FIRST_ORDER_ID,
            extra_shapes: shapes(64, 7),
            orders: Vec::new(),
            wait: opts.wait,
            print: opts.print,
        };
        session.print_header(&manifest, &source);
        Ok(session)
    }

    /// `http://127.0.0.1:PORT` of the connector.
    pub fn connector_url(&self) -> &str {
        &self.connector_url
    }

    /// The generated admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The simulated BigCommerce store.
    pub fn bigcommerce(&self) -> &BcSimHandle {
        &self.bc
    }

    /// The simulated QuickBooks company.
    pub fn quickbooks(&self) -> &QboSimHandle {
        &self.qbo
    }

    /// Places the three standard demo orders and waits for their invoices.
    pub async fn place_initial_orders(&mut self) -> anyhow::Result<Vec<DemoOrder>> {
        let mut placed = Vec::new();
        for (label, shape) in initial_orders() {
            placed.push(self.place(label.to_string(), &shape).await?);
        }
        self.settle(placed).await
    }

    /// Places one more generated order (a different shape each time) and waits for its invoice.
    pub async fn place_another_order(&mut self) -> anyhow::Result<DemoOrder> {
        let index = usize::try_from(self.next_order_id - FIRST_ORDER_ID).unwrap_or(0)
            % self.extra_shapes.len();
        let shape = self.extra_shapes[index].clone();
        let placed = self.place(describe(&shape), &shape).await?;
        let mut done = self.settle(vec![placed]).await?;
        done.pop()
            .context("internal: the order just placed was not reported")
    }

    async fn place(&mut self, label: String, shape: &OrderShape) -> anyhow::Result<DemoOrder> {
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let generated = generate(order_id, shape);
        let order_total = money(&generated.order["total_inc_tax"])
            .context("internal: the generated order has no total_inc_tax")?;
        let report = self.bc.place_order(generated).await?;
        let delivered = if report.all_delivered() {
            format!("webhook delivered in {} attempt(s)", report.attempts())
        } else {
            format!(
                "WEBHOOK NOT DELIVERED: {:?}",
                report
                    .hooks
                    .iter()
                    .map(|h| &h.last_error)
                    .collect::<Vec<_>>()
            )
        };
        self.say(&format!(
            "placed order #{order_id} ({label}): total {order_total:.2}; {delivered}"
        ));
        Ok(DemoOrder {
            order_id,
            label,
            order_total,
            invoice: None,
            invoice_total: None,
            record: None,
        })
    }

    /// Polls until every order's record is terminal (or the wait is over), then fills in
    /// invoices and audit trails and prints them.
    async fn settle(&mut self, mut orders: Vec<DemoOrder>) -> anyhow::Result<Vec<DemoOrder>> {
        self.say(&format!(
            "waiting up to {} s for the connector to post {} invoice(s) to the simulated QuickBooks company...",
            self.wait.as_secs(),
            orders.len()
        ));
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let mut pending = false;
            for order in &mut orders {
                if order.invoiced() {
                    continue;
                }
                order.record = self.record(order.order_id).await;
                order.invoice = self.find_invoice(order);
                order.invoice_total = order.invoice.as_ref().and_then(|i| money(&i["TotalAmt"]));
                // `posted` without a visible invoice is still worth another look; the other
                // terminal states will not change by waiting.
                let given_up = order
                    .state()
                    .is_some_and(|s| s != "posted" && TERMINAL_STATES.contains(&s));
                if order.invoice.is_none() && !given_up {
                    pending = true;
                }
            }
            if !pending || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The audit trail is read after the invoice exists, so it ends with the post.
        for order in &mut orders {
            order.record = self.record(order.order_id).await;
            self.print_order(order);
        }
        self.orders.extend(orders.iter().cloned());
        Ok(orders)
    }

    async fn record(&self, order_id: u64) -> Option<Value> {
        let url = format!("{}/admin/records/order/{order_id}", self.connector_url);
        let resp = self
            .client
            .get(url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    fn find_invoice(&self, order: &DemoOrder) -> Option<Value> {
        let invoices = self.qbo.invoices();
        let qbo_id = order
            .record
            .as_ref()
            .and_then(|r| r["qbo_id"].as_str())
            .map(str::to_string);
        let doc_number = order.order_id.to_string();
        invoices
            .iter()
            .find(|i| qbo_id.is_some() && i["Id"].as_str() == qbo_id.as_deref())
            .or_else(|| {
                invoices
                    .iter()
                    .find(|i| i["DocNumber"].as_str() == Some(doc_number.as_str()))
            })
            .cloned()
    }

    /// What happened so far.
    pub fn report(&self) -> DemoReport {
        DemoReport {
            connector_url: self.connector_url.clone(),
            admin_token: self.admin_token.clone(),
            webhook_secret: self.webhook_secret.clone(),
            data_dir: self.data_dir.clone(),
            orders: self.orders.clone(),
            invoice_count: self.qbo.invoices().len(),
        }
    }

    /// Stops the connector and the simulators and removes the temporary data directory.
    pub async fn stop(self) -> anyhow::Result<()> {
        let DemoSession {
            bc,
            qbo,
            running,
            client,
            data_dir,
            print,
            ..
        } = self;
        // Clients first: their idle keep-alive connections to the connector would otherwise make
        // its graceful stop wait out its full drain timeout.
        drop(client);
        bc.shutdown().await;
        let stopped = match running {
            Some(r) => r.stop().await,
            None => Ok(()),
        };
        drop(qbo);
        if let Err(e) = std::fs::remove_dir_all(&data_dir) {
            tracing::warn!(
                "could not remove the demo data directory {}: {e}",
                data_dir.display()
            );
        } else if print {
            println!("{LABEL} demo stopped; removed {}", data_dir.display());
        }
        stopped
    }
}
