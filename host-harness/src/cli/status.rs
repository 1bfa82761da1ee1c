//! `ml-harness status --url URL`: `/admin/status` as a readable table.
//!
//! Exit codes: 0 when everything is fine, 1 when the status could not be read, 2 when the
//! connector reports something to fix (the table says what).

use anyhow::bail;
use serde_json::Value;

use super::Admin;

/// Arguments of `ml-harness status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The connector's base URL, e.g. https://connector.example.com.
    #[arg(long)]
    pub url: String,
}

fn yes_no(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "ok",
        Some(false) => "NO",
        None => "-",
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The rows `(check, ok, detail)` of the table.
pub fn rows(s: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let bc = &s["bigcommerce"];
    out.push((
        "BigCommerce".into(),
        yes_no(&bc["ok"]).into(),
        bc["error"].as_str().map_or_else(
            || format!("store {}", text(&bc["store_name"])),
            str::to_string,
        ),
    ));
    let q = &s["quickbooks"];
    out.push((
        "QuickBooks".into(),
        yes_no(&q["ok"]).into(),
        q["error"].as_str().map_or_else(
            || {
                format!(
                    "{} (realm {}), access token until {}",
                    text(&q["company_name"]),
                    text(&q["realm_id"]),
                    text(&q["access_token_expires_at"])
                )
            },
            str::to_string,
        ),
    ));
    let w = &s["webhooks"];
    if !w.is_null() {
        let active = w["hooks"]
            .as_array()
            .map_or(0, |h| h.iter().filter(|x| x["is_active"] == true).count());
        out.push((
            "Webhooks".into(),
            yes_no(&w["ok"]).into(),
            w["error"].as_str().map_or_else(
                || format!("{active} active at {}", text(&w["destination"])),
                str::to_string,
            ),
        ));
    }
    let sw = &s["sweep"];
    if !sw.is_null() {
        let detail = if sw["enabled"] == false {
            "off (sweep_interval_seconds = 0)".to_string()
        } else {
            format!(
                "last run {}, checkpoint {}, queued last run {}, missed in total {}{}",
                text(&sw["last_run_at"]),
                text(&sw["checkpoint"]),
                text(&sw["queued_last_run"]),
                text(&sw["missed_total"]),
                sw["error"]
                    .as_str()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            )
        };
        let ok = if sw["error"].is_string() { "NO" } else { "ok" };
        out.push(("Sweep".into(), ok.into(), detail));
    }
    if let Some(records) = s["records"].as_object() {
        let detail = records
            .iter()
            .map(|(k, v)| format!("{k} {}", text(v)))
            .collect::<Vec<_>>()
            .join(" · ");
        let ok = if records.get("failed").and_then(Value::as_u64).unwrap_or(0) > 0 {
            "NO"
        } else {
            "ok"
        };
        out.push(("Records".into(), ok.into(), detail));
    }
    out
}

/// Renders rows as an aligned table.
pub fn table(rows: &[(String, String, String)]) -> String {
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(5);
    let mut out = format!("{:<w0$}  {:<2}  {}\n", "Check", "OK", "Detail");
    for (a, b, c) in rows {
        out.push_str(&format!("{a:<w0$}  {b:<2}  {c}\n"));
    }
    out
}

/// Runs the command; returns the exit code.
pub async fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let admin = Admin::from_env(&args.url)?;
    let answer = admin.call(http::Method::GET, "/admin/status", None).await?;
    if answer.status != 200 {
        bail!(
            "the connector did not report its status (HTTP {}): {}",
            answer.status,
            answer.reason()
        );
    }
    let rows = rows(&answer.body);
    print!("{}", table(&rows));
    Ok(if rows.iter().any(|r| r.1 == "NO") {
        2
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_names_each_check_and_what_to_fix() {
        let s = json!({
            "bigcommerce": {"ok": true, "store_name": "Example Store", "error": null},
            "quickbooks": {"ok": true, "company_name": "Example Co", "realm_id": "1234", "error": null,
                           "access_token_expires_at": "2026-03-01T10:00:00Z"},
            "webhooks": {"ok": false, "destination": "https://c.example/webhooks/bigcommerce", "hooks": [],
                         "missing": ["store/order/created"], "error": "no hook for store/order/created: POST /admin/webhooks"},
            "sweep": {"enabled": true, "last_run_at": null, "checkpoint": "2026-03-01T09:00:00Z",
                      "queued_last_run": 0, "missed_total": 3, "error": null},
            "records": {"pending": 0, "posted": 12, "failed": 0},
        });
        let t = table(&rows(&s));
        assert!(t.starts_with("Check"), "{t}");
        assert!(t.contains("BigCommerce  ok  store Example Store"), "{t}");
        assert!(
            t.contains("Webhooks     NO  no hook for store/order/created"),
            "{t}"
        );
        assert!(t.contains("missed in total 3"), "{t}");
        assert!(t.contains("posted 12"), "{t}");
    }
}
