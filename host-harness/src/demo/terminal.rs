//! What the demo prints: every line labelled `[SIMULATED]`, invoices laid out for people.

use std::path::Path;

use serde_json::Value;

use super::LABEL;
use super::credentials::SIMULATED_VARIABLES;
use super::orders::{DemoOrder, FIRST_ORDER_ID, money};
use super::session::DemoSession;
use crate::config::env_name;
use crate::manifest::Manifest;

impl DemoSession {
    pub(super) fn say(&self, text: &str) {
        if self.print {
            for line in text.lines() {
                println!("{LABEL} {line}");
            }
        }
    }

    pub(super) fn print_header(&self, manifest: &Manifest, component: &Path) {
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

    pub(super) fn print_order(&self, order: &DemoOrder) {
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
