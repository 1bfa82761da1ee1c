//! The no-credentials demo: the real component on this host, against in-process simulators of
//! BigCommerce and QuickBooks Online, so a newcomer sees an order become an invoice with nothing
//! configured.
//!
//! Everything the demo prints starts with `[SIMULATED]`: nothing here talks to a real store or a
//! real company, and a reader skimming a terminal must never mistake it for a live sync.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use rand::Rng as _;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::config::{EnvSource, Overrides, VariableSource, env_name};
use crate::kv::SqliteBackend;
use crate::manifest::Manifest;
use crate::server::{self, AppConfig, Harness, Running, ServeOptions};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, BcSimHandle, OrderShape, generate, shapes};
use ml_sim::quickbooks::{QboSim, QboSimConfig, QboSimHandle};

/// Prefix of every line the demo prints.
pub const LABEL: &str = "[SIMULATED]";

/// First order id the demo places (real BigCommerce stores start numbering at 100).
const FIRST_ORDER_ID: u64 = 100;

/// Record states after which waiting longer will not produce an invoice by itself.
const TERMINAL_STATES: &[&str] = &["posted", "failed", "skipped", "needs_reauth"];

/// Variables the demo supplies itself; a value for them in the environment is ignored.
const SIMULATED_VARIABLES: &[&str] = &[
    "bigcommerce_store_hash",
    "bigcommerce_access_token",
    "bigcommerce_api_base",
    "bigcommerce_webhook_secret",
    "bigcommerce_client_secret",
    "qbo_client_id",
    "qbo_client_secret",
    "qbo_realm_id",
    "qbo_refresh_token",
    "qbo_api_base",
    "qbo_oauth_base",
    "qbo_authorize_url",
    "qbo_redirect_uri",
    "encryption_key",
    "encryption_key_previous",
    "admin_token",
];

/// Whether the environment configures real credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No required variable has a value: run the demo.
    None,
    /// Every required variable has a value: serve for real.
    Complete,
    /// Some are set, some are not: neither a real run nor a demo would be what the user meant.
    Partial {
        /// Environment variable names that are set.
        set: Vec<String>,
        /// Environment variable names still missing.
        missing: Vec<String>,
    },
}

impl Credentials {
    /// The error to show for [`Credentials::Partial`]: what is missing and the two ways out.
    pub fn partial_message(&self) -> Option<String> {
        match self {
            Credentials::Partial { set, missing } => Some(format!(
                "some credentials are configured ({}) but these are missing: {}. \
                 Set the missing ones to run against your real store and company, or unset all of them \
                 to run the simulated demo.",
                set.join(", "),
                missing.join(", ")
            )),
            _ => None,
        }
    }
}

/// Classifies the manifest's required variables (those with no default) by whether `source`
/// has a non-empty value for them.
pub fn credential_status(manifest: &Manifest, source: &dyn VariableSource) -> Credentials {
    let mut set = Vec::new();
    let mut missing = Vec::new();
    for (name, decl) in &manifest.variables {
        if !decl.required || decl.default.is_some() {
            continue;
        }
        // `export SPIN_VARIABLE_X=` is how people "unset" in a shell script; treat it as unset.
        if source.get(name).is_some_and(|v| !v.trim().is_empty()) {
            set.push(env_name(name));
        } else {
            missing.push(env_name(name));
        }
    }
    match (set.is_empty(), missing.is_empty()) {
        (true, _) => Credentials::None,
        (false, true) => Credentials::Complete,
        (false, false) => Credentials::Partial { set, missing },
    }
}

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

/// One demo order and what became of it.
#[derive(Debug, Clone)]
pub struct DemoOrder {
    /// BigCommerce order id.
    pub order_id: u64,
    /// What kind of order it is ("registered customer", "guest", ...).
    pub label: String,
    /// The order's `total_inc_tax`.
    pub order_total: Decimal,
    /// The QuickBooks invoice, once it exists.
    pub invoice: Option<Value>,
    /// The invoice's `TotalAmt`.
    pub invoice_total: Option<Decimal>,
    /// The sync record with its audit trail (`GET /admin/records/order/{id}`), when the
    /// connector has one.
    pub record: Option<Value>,
}

impl DemoOrder {
    /// The order became an invoice for exactly its total.
    pub fn invoiced(&self) -> bool {
        self.invoice_total == Some(self.order_total)
    }

    /// The sync record's `state`, if any.
    pub fn state(&self) -> Option<&str> {
        self.record.as_ref().and_then(|r| r["state"].as_str())
    }
}

/// What a demo run did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// `http://127.0.0.1:PORT` of the connector.
    pub connector_url: String,
    /// The generated admin token (for `Authorization: Bearer ...`).
    pub admin_token: String,
    /// The generated webhook secret (header `x-ml-webhook-secret`).
    pub webhook_secret: String,
    /// The temporary data directory (removed when the demo stops).
    pub data_dir: PathBuf,
    /// The orders placed, in order.
    pub orders: Vec<DemoOrder>,
    /// Every invoice in the simulated company when the report was taken.
    pub invoice_count: usize,
}

impl DemoReport {
    /// Every order became an invoice for its exact total.
    pub fn all_invoiced(&self) -> bool {
        !self.orders.is_empty() && self.orders.iter().all(DemoOrder::invoiced)
    }
}

/// A running demo: both simulators, the connector, and the generated secrets.
pub struct DemoSession {
    bc: BcSimHandle,
    qbo: QboSimHandle,
    running: Option<Running>,
    client: reqwest::Client,
    connector_url: String,
    admin_token: String,
    webhook_secret: String,
    data_dir: PathBuf,
    next_order_id: u64,
    extra_shapes: Vec<OrderShape>,
    orders: Vec<DemoOrder>,
    wait: Duration,
    print: bool,
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

/// Reads a money value the APIs send as a string or a JSON number.
fn money(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
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

/// The three orders every demo starts with: what a newcomer wants to see mapped.
fn initial_orders() -> Vec<(&'static str, OrderShape)> {
    let base = OrderShape {
        lines: 2,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: false,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed: 20_260_105,
    };
    vec![
        (
            "registered customer, 8 % sales tax, paid shipping",
            base.clone(),
        ),
        (
            "guest checkout, 6.25 % sales tax",
            OrderShape {
                lines: 1,
                tax_rate_bp: 625,
                guest: true,
                seed: base.seed + 1,
                ..base.clone()
            },
        ),
        (
            "tax-inclusive prices (20 % VAT), coupon, paid shipping",
            OrderShape {
                lines: 3,
                tax_inclusive: true,
                tax_rate_bp: 2000,
                coupon: true,
                seed: base.seed + 2,
                ..base
            },
        ),
    ]
}

fn describe(shape: &OrderShape) -> String {
    let mut parts = vec![
        if shape.guest {
            "guest checkout".to_string()
        } else {
            "registered customer".to_string()
        },
        format!("{} line(s)", shape.lines),
    ];
    if shape.tax_inclusive {
        parts.push("tax-inclusive prices".into());
    }
    for (on, what) in [
        (shape.coupon, "coupon"),
        (shape.manual_discount, "manual discount"),
        (shape.shipping, "paid shipping"),
        (shape.handling, "handling"),
        (shape.wrapping, "gift wrapping"),
    ] {
        if on {
            parts.push(what.into());
        }
    }
    parts.join(", ")
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

    fn say(&self, text: &str) {
        if self.print {
            for line in text.lines() {
                println!("{LABEL} {line}");
            }
        }
    }

    fn print_header(&self, manifest: &Manifest, component: &Path) {
        let ignored: Vec<String> = SIMULATED_VARIABLES
            .iter()
            .map(|v| env_name(v))
            .filter(|v| std::env::var(v).is_ok_and(|x| !x.is_empty()))
            .collect();
        let mut text = format!(
            "DEMO MODE: ml-harness runs {app} against SIMULATED servers; no credentials needed.\n\
             Nothing here touches a real BigCommerce store or QuickBooks company.\n\
             \n\
             simulated BigCommerce store : {bc} (store hash {hash}, \"{store}\")\n\
             simulated QuickBooks company: {qbo} (realm {realm})\n\
             connector (real component)  : {url}  [{component}]\n\
             data directory (temporary)  : {dir}\n\
             admin token                 : {admin}\n\
             webhook secret              : {secret}\n\
             webhooks registered         : store/order/*, store/customer/* -> {url}/webhooks/bigcommerce\n",
            app = manifest.app_name,
            bc = self.bc.base_url(),
            hash = self.bc.store_hash(),
            store = ml_sim::bigcommerce::seed::STORE_NAME,
            qbo = self.qbo.base_url(),
            realm = self.qbo.realm_id(),
            url = self.connector_url,
            component = component.display(),
            dir = self.data_dir.display(),
            admin = self.admin_token,
            secret = self.webhook_secret,
        );
        if !ignored.is_empty() {
            text.push_str(&format!(
                "ignored in demo mode (the simulators supply them): {}\n",
                ignored.join(", ")
            ));
        }
        self.say(&text);
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

    fn print_order(&self, order: &DemoOrder) {
        let mut text = format!(
            "\norder #{} ({}): order total {:.2}\n",
            order.order_id, order.label, order.order_total
        );
        match &order.invoice {
            Some(inv) => {
                let total = order
                    .invoice_total
                    .map_or_else(|| "?".to_string(), |t| format!("{t:.2}"));
                let verdict = if order.invoiced() {
                    "matches the order total"
                } else {
                    "DOES NOT match the order total"
                };
                text.push_str(&format!(
                    "  invoice Id {} DocNumber {} customer \"{}\": TotalAmt {total} ({verdict})\n",
                    inv["Id"].as_str().unwrap_or("?"),
                    inv["DocNumber"].as_str().unwrap_or("-"),
                    inv["CustomerRef"]["name"]
                        .as_str()
                        .or(inv["CustomerRef"]["value"].as_str())
                        .unwrap_or("?"),
                ));
                for line in inv["Line"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(invoice_line)
                {
                    text.push_str(&format!("    {line}\n"));
                }
                if let Some(tax) = money(&inv["TxnTaxDetail"]["TotalTax"])
                    && !tax.is_zero()
                {
                    text.push_str(&format!("    TxnTaxDetail.TotalTax {tax}\n"));
                }
            }
            None => text.push_str(&format!(
                "  NO INVOICE (yet): sync state {}; the audit trail below says why\n",
                order
                    .state()
                    .unwrap_or("unknown: the connector has no record of this order")
            )),
        }
        match &order.record {
            Some(rec) => {
                text.push_str(&format!(
                    "  audit trail (GET /admin/records/order/{}): state {}, attempts {}{}\n",
                    order.order_id,
                    rec["state"].as_str().unwrap_or("?"),
                    rec["attempts"],
                    rec["last_error"]
                        .as_str()
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default(),
                ));
                for entry in rec["audit"].as_array().into_iter().flatten() {
                    text.push_str(&format!(
                        "    {} {:<16} {}\n",
                        entry["at"].as_str().unwrap_or("?"),
                        entry["step"].as_str().unwrap_or("?"),
                        entry
                            .get("detail")
                            .map(Value::to_string)
                            .unwrap_or_default()
                    ));
                }
            }
            None => text.push_str(
                "  no sync record: the webhook was not accepted (see the host log on stderr)\n",
            ),
        }
        self.say(&text);
    }

    /// Prints how to poke the running connector.
    pub fn print_next_steps(&self) {
        let url = &self.connector_url;
        let auth = format!("-H 'Authorization: Bearer {}'", self.admin_token);
        let id = self.orders.first().map_or(FIRST_ORDER_ID, |o| o.order_id);
        self.say(&format!(
            "\nwhat to try next (the connector keeps running; Ctrl-C stops it and deletes the demo data):\n\
             \x20 press Enter here              -> place another simulated order and watch it become an invoice\n\
             \x20 curl {auth} {url}/admin/status\n\
             \x20 curl {auth} '{url}/admin/records?entity=order'\n\
             \x20 curl {auth} {url}/admin/records/order/{id}\n\
             \x20 curl {auth} {url}/admin/preview/order/{id}\n\
             \x20 curl -X POST {auth} {url}/admin/replay/order/{id}   (re-checks, never duplicates)\n\
             \x20 curl {auth} {url}/admin/mapping\n\
             to run against your real store and company, set every SPIN_VARIABLE_* listed in spin.toml \
             (see the README) and run the same command again."
        ));
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

/// Money as people read it: two decimals, whatever the wire form was.
fn cents(v: &Value) -> String {
    money(v).map_or_else(|| v.to_string(), |d| format!("{d:.2}"))
}

/// One invoice line for the terminal; `None` for QuickBooks' own subtotal line, which only
/// repeats the sum and would read as a second total.
fn invoice_line(line: &Value) -> Option<String> {
    let amount = cents(&line["Amount"]);
    match line["DetailType"].as_str().unwrap_or("?") {
        "SalesItemLineDetail" => {
            let d = &line["SalesItemLineDetail"];
            let item = d["ItemRef"]["name"]
                .as_str()
                .or(d["ItemRef"]["value"].as_str())
                .unwrap_or("?");
            let desc = line["Description"]
                .as_str()
                .map(|s| format!(" \"{s}\""))
                .unwrap_or_default();
            Some(format!(
                "{item:<22} {} x {} = {amount}{desc}",
                d["Qty"],
                money(&d["UnitPrice"]).unwrap_or_default()
            ))
        }
        "DiscountLineDetail" => Some(format!("{:<22} -{amount}", "discount")),
        "SubTotalLineDetail" => None,
        other => Some(format!("{other:<22} {amount}")),
    }
}

/// Runs the demo once: start, place the three orders, wait for their invoices, print, stop.
pub async fn run_demo(opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let mut session = DemoSession::start(&opts).await?;
    let placed = session.place_initial_orders().await;
    let report = session.report();
    session.stop().await?;
    placed?;
    Ok(report)
}

/// Runs the demo and keeps serving until `shutdown` resolves; Enter on stdin places another order.
pub async fn serve_demo(
    opts: DemoOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DemoReport> {
    let mut session = DemoSession::start(&opts).await?;
    if let Err(e) = session.place_initial_orders().await {
        session.say(&format!("placing the demo orders failed: {e:#}"));
    }
    session.print_next_steps();
    let mut enter = stdin_lines();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            line = enter.recv() => match line {
                Some(()) => {
                    if let Err(e) = session.place_another_order().await {
                        session.say(&format!("placing another order failed: {e:#}"));
                    }
                }
                // stdin closed (not a terminal): keep serving until the signal.
                None => { shutdown.as_mut().await; break; }
            },
        }
    }
    session.say("shutting down");
    let report = session.report();
    session.stop().await?;
    Ok(report)
}

/// One message per line typed on stdin. A plain thread, because a blocking stdin read inside the
/// runtime would keep it from shutting down; the thread dies with the process.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("demo-stdin".into())
        .spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
                if tx.blocking_send(()).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read stdin ({e}); pressing Enter will not place orders");
    }
    rx
}

/// Fails with what to do when [`run_demo`] did not turn every order into a matching invoice.
pub fn check(report: &DemoReport) -> anyhow::Result<()> {
    let bad: Vec<String> = report
        .orders
        .iter()
        .filter(|o| !o.invoiced())
        .map(|o| match (&o.invoice_total, o.state()) {
            (Some(t), _) => format!(
                "order #{} total {} but invoice TotalAmt {t}",
                o.order_id, o.order_total
            ),
            (None, state) => format!(
                "order #{} has no invoice (sync state {})",
                o.order_id,
                state.unwrap_or("none")
            ),
        })
        .collect();
    if report.orders.is_empty() {
        bail!("{LABEL} demo placed no orders");
    }
    if !bad.is_empty() {
        bail!(
            "{LABEL} demo failed: {} of {} orders did not become matching invoices: {}. The audit trails printed above say why.",
            bad.len(),
            report.orders.len(),
            bad.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
store = { required = true }
token = { required = true, secret = true }
base = { default = "http://x" }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
[component.c.variables]
store = "{{ store }}"
token = "{{ token }}"
base = "{{ base }}"
"#,
            Path::new("/"),
            Path::new("/spin.toml"),
        )
        .unwrap()
    }

    struct Map(BTreeMap<String, String>);
    impl VariableSource for Map {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }
    fn source(pairs: &[(&str, &str)]) -> Map {
        Map(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    #[test]
    fn no_required_variable_set_means_demo_even_when_optional_ones_are() {
        assert_eq!(
            credential_status(&manifest(), &source(&[("base", "http://y")])),
            Credentials::None
        );
        assert_eq!(
            credential_status(&manifest(), &source(&[("store", " ")])),
            Credentials::None
        );
    }

    #[test]
    fn every_required_variable_set_means_real_credentials() {
        let s = source(&[("store", "abc"), ("token", "t")]);
        assert_eq!(credential_status(&manifest(), &s), Credentials::Complete);
    }

    #[test]
    fn some_required_variables_set_names_the_missing_environment_variables() {
        let status = credential_status(&manifest(), &source(&[("store", "abc")]));
        assert_eq!(
            status,
            Credentials::Partial {
                set: vec!["SPIN_VARIABLE_STORE".into()],
                missing: vec!["SPIN_VARIABLE_TOKEN".into()]
            }
        );
        let msg = status.partial_message().unwrap();
        assert!(
            msg.contains("missing: SPIN_VARIABLE_TOKEN") && msg.contains("unset all of them"),
            "{msg}"
        );
        assert_eq!(Credentials::None.partial_message(), None);
    }

    #[test]
    fn money_reads_strings_and_numbers_exactly() {
        assert_eq!(
            money(&Value::String("12.3400".into())),
            Some(Decimal::new(1234, 2))
        );
        assert_eq!(
            money(&serde_json::json!(107.6)),
            Some(Decimal::new(1076, 1))
        );
        assert_eq!(money(&Value::Null), None);
    }

    #[test]
    fn the_initial_orders_are_a_registered_customer_a_guest_and_a_tax_inclusive_coupon_order() {
        let orders = initial_orders();
        assert_eq!(orders.len(), 3);
        assert!(!orders[0].1.guest);
        assert!(orders[1].1.guest);
        let third = &orders[2].1;
        assert!(third.tax_inclusive && third.coupon && third.shipping);
    }

    #[test]
    fn a_failed_report_names_each_order_that_did_not_become_an_invoice() {
        let order = |id, total: Option<Decimal>| DemoOrder {
            order_id: id,
            label: "x".into(),
            order_total: Decimal::new(1000, 2),
            invoice: total.map(|_| serde_json::json!({})),
            invoice_total: total,
            record: Some(serde_json::json!({"state": "retrying"})),
        };
        let report = |orders| DemoReport {
            connector_url: String::new(),
            admin_token: String::new(),
            webhook_secret: String::new(),
            data_dir: PathBuf::new(),
            orders,
            invoice_count: 0,
        };
        assert!(check(&report(vec![order(100, Some(Decimal::new(10, 0)))])).is_ok());
        let err = check(&report(vec![
            order(100, Some(Decimal::new(10, 0))),
            order(101, None),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1 of 2")
                && err.contains("order #101 has no invoice (sync state retrying)"),
            "{err}"
        );
        let err = check(&report(vec![order(102, Some(Decimal::new(9, 0)))]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("order #102 total 10.00 but invoice TotalAmt 9"),
            "{err}"
        );
        assert!(check(&report(vec![])).is_err());
    }
}
