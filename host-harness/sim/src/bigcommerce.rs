//! Strict BigCommerce simulator: the order generator ([`r#gen`]), the seeded store ([`seed`]),
//! webhook subscriptions and delivery ([`hooks`]), and the HTTP server ([`BcSim`]).
//!
//! `gen` is a reserved word in edition 2024, so the module is `r#gen`; its main items are also
//! re-exported here.

mod derive;
pub mod r#gen;
pub mod hooks;
pub mod ledger;
mod listing;
pub mod seed;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use r#gen::{
    GeneratedOrder, OrderShape, Payment, RefundPart, capture, generate, generate_paid, refund_of,
    refund_one_unit, shapes,
};
pub use hooks::{DeliveryReport, Hook, HookDelivery};

use crate::control::{self, Control};
use server::{OrderEntry, RateWindow, Recorded, Shared, SimState};

/// `<repo>/../shared`: the design docs, recorded fixtures and official specs.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// How a simulator starts.
#[derive(Debug, Clone)]
pub struct BcSimConfig {
    /// Store hash in `/stores/{hash}/`.
    pub store_hash: String,
    /// The one valid `X-Auth-Token`.
    pub token: String,
    /// App client secret; when set, deliveries carry a Standard Webhooks `webhook-signature`.
    pub client_secret: Option<String>,
    /// Requests allowed per rate-limit window (BigCommerce Standard plans: 150 per 30 s).
    pub rate_limit_quota: u32,
    /// Rate-limit window length.
    pub rate_limit_window: Duration,
    /// Delays before each retry of a failed delivery (BigCommerce: 60 s, 180 s, ...; tests use ms).
    pub retry_schedule: Vec<Duration>,
    /// How long one delivery attempt may take before it counts as failed.
    pub delivery_timeout: Duration,
    /// Reject hook destinations that are not https on port 443, as the real API does.
    /// Off by default so tests can register `http://127.0.0.1:PORT` receivers.
    pub require_https_destination: bool,
    /// Seed the catalog and registered customers from [`seed`].
    pub seed_store: bool,
    /// The store's time zone (`GET /v2/store` → `timezone.name`).
    pub store_timezone: String,
    /// The store's default currency (`GET /v2/store` → `currency`).
    pub store_currency: String,
}

impl Default for BcSimConfig {
    fn default() -> Self {
        Self {
            store_hash: seed::STORE_HASH.to_string(),
            token: "bc-sim-token-3f9a7c1e".to_string(),
            client_secret: None,
            rate_limit_quota: 10_000,
            rate_limit_window: Duration::from_secs(30),
            retry_schedule: vec![
                Duration::from_millis(20),
                Duration::from_millis(60),
                Duration::from_millis(180),
            ],
            delivery_timeout: Duration::from_secs(5),
            require_https_destination: false,
            seed_store: true,
            store_timezone: "America/Chicago".to_string(),
            store_currency: "USD".to_string(),
        }
    }
}

/// The BigCommerce simulator.
#[derive(Debug)]
pub struct BcSim;

impl BcSim {
    /// Starts a simulator on `127.0.0.1:0` (needs a tokio runtime).
    pub async fn start(config: BcSimConfig) -> anyhow::Result<BcSimHandle> {
        let mut customers = BTreeMap::new();
        let mut products = BTreeMap::new();
        if config.seed_store {
            for c in seed::CUSTOMERS {
                customers.insert(c.id, seed::customer_json(c));
            }
            for p in seed::CATALOG {
                products.insert(p.id, seed::catalog_product_json(p));
            }
        }
        let state: Shared = Arc::new(Mutex::new(SimState {
            store_hash: config.store_hash.clone(),
            store_timezone: config.store_timezone.clone(),
            store_currency: config.store_currency.clone(),
            token: config.token.clone(),
            orders: BTreeMap::new(),
            customers,
            products,
            hooks: Vec::new(),
            next_hook_id: 22_561_593,
            quota: config.rate_limit_quota,
            window: config.rate_limit_window,
            rate: RateWindow {
                started: Instant::now(),
                used: 0,
            },
            require_https_destination: config.require_https_destination,
            client_id: "ml-sim-client-id".to_string(),
            next_refund_id: 17,
        }));
        let control = Control::default();
        let app = axum::Router::new()
            .merge(control::control_routes(control.clone()))
            .fallback(server::handle)
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(
                control.clone(),
                control::fault_layer,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the BigCommerce simulator to 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        let client = reqwest::Client::builder()
            .build()
            .context("building the webhook delivery client")?;
        Ok(BcSimHandle {
            addr,
            state,
            control,
            config,
            client,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct BcSimHandle {
    addr: SocketAddr,
    state: Shared,
    control: Control,
    config: BcSimConfig,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl BcSimHandle {
    /// `http://127.0.0.1:PORT` (the value for `bigcommerce_api_base`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store hash.
    pub fn store_hash(&self) -> &str {
        &self.config.store_hash
    }

    /// The valid access token.
    pub fn token(&self) -> &str {
        &self.config.token
    }

    /// `{base_url}/stores/{hash}` — prefix of every API path.
    pub fn store_url(&self) -> String {
        format!("{}/stores/{}", self.base_url(), self.config.store_hash)
    }

    /// Fault injection and the request log.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Stores (or replaces) a generated order, and its customer when it has one.
    pub fn put_order(&self, order: GeneratedOrder) {
        self.with(|s| s.put_generated(order));
    }

    /// Edits a stored order's JSON in place (the full form, consignments and fees embedded).
    /// Returns false when there is no such order.
    pub fn update_order(&self, id: u64, f: impl FnOnce(&mut Value)) -> bool {
        self.with(|s| match s.orders.get_mut(&id) {
            Some(e) => {
                f(&mut e.order);
                // A fixture order is served from its recorded body, so the edit goes there too.
                if let Some(Recorded { order: Some(o), .. }) = e.recorded.as_mut() {
                    *o = e.order.clone();
                }
                true
            }
            None => false,
        })
    }

    /// Edits a stored order as a merchant would in BigCommerce: `f` changes it and its
    /// `date_modified` becomes now (RFC 2822). Delivers nothing: pair it with [`Self::deliver`]
    /// for a webhook, or leave it for the sweep. Returns false when there is no such order.
    pub fn modify_order(&self, id: u64, f: impl FnOnce(&mut Value)) -> bool {
        let now = chrono::DateTime::from_timestamp(hooks::unix_now(), 0)
            .unwrap_or_default()
            .to_rfc2822();
        self.update_order(id, |o| {
            f(o);
            o["date_modified"] = Value::String(now);
        })
    }

    /// Stores a v3 customer as created or edited now (`date_modified`, and `date_created` when
    /// absent, set to now in ISO-8601), without any webhook.
    pub fn put_customer_now(&self, mut customer: Value) {
        let now = chrono::DateTime::from_timestamp(hooks::unix_now(), 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if customer.get("date_created").is_none_or(Value::is_null) {
            customer["date_created"] = Value::String(now.clone());
        }
        customer["date_modified"] = Value::String(now);
        self.put_customer(customer);
    }

    /// Deactivates a hook as BigCommerce does after its deliveries kept failing.
    pub fn deactivate_hook(&self, id: u64) -> bool {
        self.with(|s| match s.hooks.iter_mut().find(|h| h.id == id) {
            Some(h) => {
                h.is_active = false;
                true
            }
            None => false,
        })
    }

    /// Edits a stored order's `/products` rows (embedded consignments follow them).
    pub fn update_products(&self, id: u64, f: impl FnOnce(&mut Vec<Value>)) -> bool {
        self.with(|s| match s.orders.get_mut(&id) {
            Some(e) => {
                f(&mut e.products);
                true
            }
            None => false,
        })
    }

    /// A stored order's full JSON.
    pub fn order(&self, id: u64) -> Option<Value> {
        self.with(|s| s.orders.get(&id).map(|e| e.order.clone()))
    }

    /// The order's `/products` rows.
    pub fn products(&self, id: u64) -> Vec<Value> {
        self.with(|s| {
            s.orders
                .get(&id)
                .map(|e| e.products.clone())
                .unwrap_or_default()
        })
    }

    /// Records a refund of order `id` (build it with [`refund_of`]), as a merchant's refund in
    /// the control panel does: it gets the next refund id and a `created` time, and the order
    /// becomes Partially Refunded (14) or, once its total is refunded, Refunded (4), with the
    /// matching `payment_status` when it was paid. Returns the stored refund.
    pub fn add_refund(&self, id: u64, mut refund: Value) -> Option<Value> {
        self.with(|s| {
            let refund_id = s.next_refund_id;
            s.next_refund_id += 1;
            let e = s.orders.get_mut(&id)?;
            refund["id"] = json!(refund_id);
            refund["order_id"] = json!(id);
            refund["created"] = json!(
                chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            );
            if let Some(payments) = refund["payments"].as_array_mut() {
                for (i, p) in payments.iter_mut().enumerate() {
                    p["id"] = json!(refund_id * 10 + i as u64);
                }
            }
            e.refunds.push(refund.clone());
            let refunded: rust_decimal::Decimal = e
                .refunds
                .iter()
                .map(|r| r#gen::dec(&r["total_amount"]))
                .sum();
            let total = r#gen::dec(&e.order["total_inc_tax"]).round_dp(2);
            let full = refunded >= total;
            let (status_id, status) = if full {
                (4, "Refunded")
            } else {
                (14, "Partially Refunded")
            };
            e.order["status_id"] = json!(status_id);
            e.order["status"] = json!(status);
            e.order["custom_status"] = json!(status);
            let paid = matches!(
                e.order["payment_status"].as_str(),
                Some("captured" | "paid" | "partially refunded" | "refunded")
            );
            if paid {
                e.order["payment_status"] = json!(if full {
                    "refunded"
                } else {
                    "partially refunded"
                });
            }
            Some(refund)
        })
    }

    /// Edits the stored refunds of order `id` in place. Returns false when there is no such order.
    pub fn update_refunds(&self, id: u64, f: impl FnOnce(&mut Vec<Value>)) -> bool {
        self.with(|s| match s.orders.get_mut(&id) {
            Some(e) => {
                f(&mut e.refunds);
                true
            }
            None => false,
        })
    }

    /// Stores a refund of order `id` and delivers `store/order/refund/created` for it.
    pub async fn refund_order(&self, id: u64, refund: Value) -> anyhow::Result<Value> {
        let stored = self
            .add_refund(id, refund)
            .with_context(|| format!("order {id} is not stored"))?;
        self.deliver(
            "store/order/refund/created",
            json!({"type": "order", "id": id, "refund": {"refund_id": stored["id"]}}),
        )
        .await?;
        Ok(stored)
    }

    /// Removes an order (later fetches are 404).
    pub fn delete_order(&self, id: u64) -> bool {
        self.with(|s| s.orders.remove(&id).is_some())
    }

    /// Stores (or replaces) a v3 customer (with `addresses`; they are stripped unless included).
    pub fn put_customer(&self, customer: Value) {
        let id = customer["id"].as_u64().unwrap_or(0);
        self.with(|s| s.customers.insert(id, customer));
    }

    /// Deletes a customer, as `store/customer/deleted` implies.
    pub fn delete_customer(&self, id: u64) -> bool {
        self.with(|s| s.customers.remove(&id).is_some())
    }

    /// A stored customer.
    pub fn customer(&self, id: u64) -> Option<Value> {
        self.with(|s| s.customers.get(&id).cloned())
    }

    /// Stores (or replaces) a v3 catalog product (`id`, `categories`, `brand_id`, ...).
    pub fn put_product(&self, product: Value) {
        let id = product["id"].as_u64().unwrap_or(0);
        self.with(|s| s.products.insert(id, product));
    }

    /// Registered hooks, as `/v3/hooks` lists them.
    pub fn hooks(&self) -> Vec<Hook> {
        self.with(|s| s.hooks.clone())
    }

    /// Registers a hook directly (what `POST /v3/hooks` does), returning its id.
    pub fn add_hook(&self, scope: &str, destination: &str, headers: &[(&str, &str)]) -> u64 {
        self.with(|s| {
            let id = s.next_hook_id;
            s.next_hook_id += 1;
            let now = hooks::unix_now();
            let headers = (!headers.is_empty()).then(|| {
                headers
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
                    .collect()
            });
            s.hooks.push(Hook {
                id,
                scope: scope.to_string(),
                destination: destination.to_string(),
                is_active: true,
                headers,
                created_at: now,
                updated_at: now,
                client_id: s.client_id.clone(),
            });
            id
        })
    }

    /// Sets the rate-limit quota per window (and starts a fresh window).
    pub fn set_rate_limit(&self, quota: u32, window: Duration) {
        self.with(|s| {
            s.quota = quota;
            s.window = window;
            s.rate = RateWindow {
                started: Instant::now(),
                used: 0,
            };
        });
    }

    fn settings(&self) -> hooks::DeliverySettings {
        hooks::DeliverySettings {
            client_secret: self.config.client_secret.clone(),
            retry_schedule: self.config.retry_schedule.clone(),
            timeout: self.config.delivery_timeout,
        }
    }

    /// Delivers an event to every active hook whose scope matches, as BigCommerce does: the stub
    /// body (`scope`, `store_id`, `data`, `hash`, `created_at`, `producer`), the hook's custom
    /// headers, Standard Webhooks headers, retries on non-2xx or timeout; a hook whose every
    /// retry failed is deactivated (`is_active: false`).
    pub async fn deliver(&self, scope: &str, data: Value) -> anyhow::Result<DeliveryReport> {
        let body = hooks::event_body(
            scope,
            seed::STORE_ID,
            &self.config.store_hash,
            &data,
            hooks::unix_now(),
        );
        self.deliver_raw(scope, &body).await
    }

    /// Sends exactly `body` (a duplicate, a malformed body...) to every active hook matching
    /// `scope`. `webhook-id` is the body's `hash` when it has one, else the SHA-1 of the body.
    pub async fn deliver_raw(&self, scope: &str, body: &str) -> anyhow::Result<DeliveryReport> {
        let webhook_id = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["hash"].as_str().map(str::to_string))
            .unwrap_or_else(|| hooks::event_hash(&Value::String(body.to_string())));
        let targets: Vec<Hook> = self.with(|s| {
            s.hooks
                .iter()
                .filter(|h| h.is_active && h.matches(scope))
                .cloned()
                .collect()
        });
        let settings = self.settings();
        let mut report = DeliveryReport {
            body: body.to_string(),
            webhook_id: webhook_id.clone(),
            hooks: Vec::new(),
        };
        for hook in &targets {
            let delivery =
                hooks::deliver_to(&self.client, &settings, hook, body, &webhook_id).await;
            if !delivery.delivered {
                // Every retry failed: BigCommerce deactivates the hook (after about 48 h of
                // retries; here after `retry_schedule`) and delivers nothing more to it.
                self.with(|s| {
                    if let Some(h) = s.hooks.iter_mut().find(|h| h.id == hook.id) {
                        h.is_active = false;
                        h.updated_at = hooks::unix_now();
                    }
                });
            }
            report.hooks.push(delivery);
        }
        Ok(report)
    }

    /// Stores a generated order and delivers `store/order/created` for it.
    pub async fn place_order(&self, order: GeneratedOrder) -> anyhow::Result<DeliveryReport> {
        let id = order.order["id"]
            .as_u64()
            .context("the generated order has no numeric id")?;
        self.put_order(order);
        self.deliver("store/order/created", json!({"type": "order", "id": id}))
            .await
    }

    /// Serves a recorded order body (and optionally its `/products` body) verbatim at `id`,
    /// whatever the query string asks for: the point is to test against real payloads as recorded.
    pub fn serve_fixture_order(
        &self,
        id: u64,
        order_path: &Path,
        products_path: Option<&Path>,
    ) -> anyhow::Result<()> {
        let order = read_json(order_path)?;
        let products = products_path.map(read_json).transpose()?;
        let product_rows = products
            .as_ref()
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        self.with(|s| {
            s.orders.insert(
                id,
                OrderEntry {
                    order: order.clone(),
                    products: product_rows,
                    recorded: Some(Recorded {
                        order: Some(order),
                        products,
                        ..Recorded::default()
                    }),
                    refunds: Vec::new(),
                },
            );
        });
        Ok(())
    }

    /// Serves a recorded body verbatim for one sub-resource of order `id`: `kind` is
    /// `products`, `shipping_addresses`, `coupons` or `taxes`. The order must exist.
    pub fn serve_fixture_subresource(
        &self,
        id: u64,
        kind: &str,
        path: &Path,
    ) -> anyhow::Result<()> {
        let body = read_json(path)?;
        self.put_subresource(id, kind, body)
    }

    /// Serves `body` verbatim for one sub-resource of order `id` (see
    /// [`serve_fixture_subresource`](Self::serve_fixture_subresource)), such as tax rows naming
    /// each line's tax class.
    pub fn put_subresource(&self, id: u64, kind: &str, body: Value) -> anyhow::Result<()> {
        self.with(|s| {
            let entry = s.orders.get_mut(&id).with_context(|| format!("order {id} is not stored; put or serve the order first"))?;
            let rec = entry.recorded.get_or_insert_with(Recorded::default);
            match kind {
                "products" => rec.products = Some(body),
                "shipping_addresses" => rec.shipping_addresses = Some(body),
                "coupons" => rec.coupons = Some(body),
                "taxes" => rec.taxes = Some(body),
                other => anyhow::bail!("unknown order sub-resource '{other}': use products, shipping_addresses, coupons or taxes"),
            }
            Ok(())
        })
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading fixture {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("fixture {} is not JSON", path.display()))
}

impl Drop for BcSimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
