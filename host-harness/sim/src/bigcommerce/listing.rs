//! Listings as BigCommerce serves them: `/v2/orders` filters (dates, status, ids, sorting)
//! and `/v3/customers` with its filters, pages and `meta.pagination`.

// As in `server.rs`: handlers return the finished error `Response` as their `Err`.
#![allow(clippy::result_large_err)]

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};

use super::server::*;

pub(super) fn pagination_meta(
    total: usize,
    count: usize,
    per_page: usize,
    current: usize,
) -> Value {
    let total_pages = if total == 0 {
        0
    } else {
        total.div_ceil(per_page)
    };
    json!({"pagination": {
        "total": total, "count": count, "per_page": per_page, "current_page": current,
        "total_pages": total_pages,
        "links": {"current": format!("?page={current}&limit={per_page}")},
    }})
}

/// A date filter value: RFC-2822 or ISO-8601 (with or without a zone, UTC when none; a bare
/// date is midnight), as both APIs document; anything else is the caller's 400.
pub(crate) fn parse_filter_date(v: &str) -> Option<DateTime<Utc>> {
    let t = v.trim();
    DateTime::parse_from_rfc2822(t)
        .or_else(|_| DateTime::parse_from_rfc3339(t))
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|n| n.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc())
        })
        .or_else(|| {
            t.parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
        })
}

pub(super) fn field_date(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(parse_filter_date)
}

/// `/v2/orders` filters and sort as documented: `min_id`/`max_id`, `min_/max_date_created`,
/// `min_/max_date_modified` (inclusive), `status_id`, `sort=field:asc|desc` (default: id
/// ascending). A bad value is a 400 naming it.
pub(super) fn filter_orders(
    mut list: Vec<Value>,
    query: &[(String, String)],
) -> Result<Vec<Value>, Response> {
    let bad = |k: &str, v: &str, what: &str| {
        error(
            Api::V2,
            StatusCode::BAD_REQUEST,
            &format!("The filter '{k}' is invalid: '{v}' is not {what}."),
        )
    };
    for (k, v) in query {
        let k = k.as_str();
        match k {
            "min_id" | "max_id" | "status_id" => {
                let n: u64 = v.parse().map_err(|_| bad(k, v, "an integer"))?;
                let field = if k == "status_id" { "status_id" } else { "id" };
                list.retain(|o| {
                    let x = o[field]
                        .as_u64()
                        .or_else(|| o[field].as_str().and_then(|s| s.parse().ok()));
                    match (k, x) {
                        ("min_id", Some(x)) => x >= n,
                        ("max_id", Some(x)) => x <= n,
                        ("status_id", Some(x)) => x == n,
                        _ => false,
                    }
                });
            }
            "min_date_created" | "max_date_created" | "min_date_modified" | "max_date_modified" => {
                let at = parse_filter_date(v)
                    .ok_or_else(|| bad(k, v, "an RFC-2822 or ISO-8601 date"))?;
                let field = if k.ends_with("created") {
                    "date_created"
                } else {
                    "date_modified"
                };
                let min = k.starts_with("min");
                list.retain(|o| {
                    field_date(&o[field]).is_some_and(|d| if min { d >= at } else { d <= at })
                });
            }
            _ => {}
        }
    }
    let sort = q(query, "sort").unwrap_or("id:asc");
    let (field, dir) = sort.split_once(':').unwrap_or((sort, "asc"));
    let fields = [
        "id",
        "customer_id",
        "date_created",
        "date_modified",
        "status_id",
        "channel_id",
        "external_id",
    ];
    if !fields.contains(&field) || !matches!(dir, "asc" | "desc") {
        return Err(bad(
            "sort",
            sort,
            &format!("one of {} followed by :asc or :desc", fields.join(", ")),
        ));
    }
    let key = |o: &Value| -> (i64, u64) {
        let id = o["id"].as_u64().unwrap_or(0);
        let v = match field {
            "date_created" | "date_modified" => field_date(&o[field]).map_or(0, |d| d.timestamp()),
            f => o[f]
                .as_i64()
                .or_else(|| o[f].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0),
        };
        (v, id)
    };
    list.sort_by_key(key);
    if dir == "desc" {
        list.reverse();
    }
    Ok(list)
}

pub(super) fn customers(st: &SimState, query: &[(String, String)]) -> Response {
    let p = match page_params(Api::V3, query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut date_filters = Vec::new();
    for key in [
        "date_created:min",
        "date_created:max",
        "date_modified:min",
        "date_modified:max",
    ] {
        if let Some(v) = q(query, key) {
            match parse_filter_date(v) {
                Some(at) => date_filters.push((key, at)),
                None => {
                    return json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &json!({"status": 422, "title": format!("The filter '{key}' must be a date such as 2024-05-14T09:34:00 or 2024-05-14; '{v}' is not one."),
                                "type": V3_ERROR_TYPE, "errors": {key: "must be a date"}}),
                    );
                }
            }
        }
    }
    let sort = q(query, "sort");
    if let Some(sv) = sort
        && !matches!(
            sv,
            "date_created:asc"
                | "date_created:desc"
                | "date_modified:asc"
                | "date_modified:desc"
                | "last_name:asc"
                | "last_name:desc"
        )
    {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"status": 422, "title": format!("The sort '{sv}' is not one of date_created, date_modified or last_name with :asc or :desc."),
                    "type": V3_ERROR_TYPE, "errors": {"sort": "invalid"}}),
        );
    }
    let mut ids = Vec::new();
    if let Some(v) = q(query, "id:in") {
        for part in v.split(',').filter(|s| !s.is_empty()) {
            match part.trim().parse::<u64>() {
                Ok(n) => ids.push(n),
                Err(_) => {
                    return json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &json!({"status": 422, "title": format!("The filter 'id:in' must be a comma-separated list of integers; '{part}' is not one."),
                                "type": V3_ERROR_TYPE, "errors": {"id:in": "must be integers"}}),
                    );
                }
            }
        }
    }
    let emails: Vec<String> = q(query, "email:in")
        .map(|v| {
            v.split(',')
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let with_addresses =
        q(query, "include").is_some_and(|v| v.split(',').any(|s| s.trim() == "addresses"));
    let matching: Vec<Value> = st
        .customers
        .values()
        .filter(|c| {
            q(query, "id:in").is_none() || c["id"].as_u64().is_some_and(|id| ids.contains(&id))
        })
        .filter(|c| {
            emails.is_empty()
                || c["email"]
                    .as_str()
                    .is_some_and(|e| emails.contains(&e.to_lowercase()))
        })
        .filter(|c| {
            date_filters.iter().all(|(key, at)| {
                let field = if key.starts_with("date_created") {
                    "date_created"
                } else {
                    "date_modified"
                };
                field_date(&c[field]).is_some_and(|d| {
                    if key.ends_with(":min") {
                        d >= *at
                    } else {
                        d <= *at
                    }
                })
            })
        })
        .cloned()
        .map(|mut c| {
            if !with_addresses && let Some(o) = c.as_object_mut() {
                o.remove("addresses");
            }
            c
        })
        .collect();
    let mut matching = matching;
    if let Some(sv) = sort {
        let (field, dir) = sv.split_once(':').unwrap_or((sv, "asc"));
        matching.sort_by(|a, b| {
            let ka = (
                field_date(&a[field]).map(|d| d.timestamp()),
                a[field].as_str().map(str::to_lowercase),
                a["id"].as_u64(),
            );
            let kb = (
                field_date(&b[field]).map(|d| d.timestamp()),
                b[field].as_str().map(str::to_lowercase),
                b["id"].as_u64(),
            );
            ka.cmp(&kb)
        });
        if dir == "desc" {
            matching.reverse();
        }
    }
    let total = matching.len();
    let data: Vec<Value> = matching
        .into_iter()
        .skip((p.page - 1) * p.limit)
        .take(p.limit)
        .collect();
    let count = data.len();
    json_response(
        StatusCode::OK,
        &json!({"data": data, "meta": pagination_meta(total, count, p.limit, p.page)}),
    )
}
