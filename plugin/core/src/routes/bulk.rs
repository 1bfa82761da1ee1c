//! The bulk-work routes (CONTRACT §8): `POST`/`GET`/`DELETE /admin/backfill` and
//! `POST /admin/webhooks`. The work itself lives in `jobs::backfill`, `jobs::bulk` and
//! `jobs::hooks`; a started backfill runs in slices after the response.

use serde_json::json;

use crate::host::Host;
use crate::http::{HttpResponse, Request, error_response};
use crate::jobs::backfill::{self, StartError};
use crate::jobs::hooks::{self, HooksError};
use crate::sync::upstream;

fn start_error(e: &StartError) -> HttpResponse {
    match e {
        StartError::BadRequest(m) => error_response(400, "bad_request", m),
        StartError::Running { .. } => error_response(409, "backfill_running", &e.to_string()),
        StartError::Busy => error_response(409, "busy", &e.to_string()),
        StartError::Storage(k) => error_response(503, "storage", &format!("{k}; retry shortly")),
    }
}

/// `POST /admin/backfill`: 202 with the new backfill, 400 for a bad window, 409 while one runs.
pub fn start_backfill(req: &Request, host: &mut dyn Host) -> HttpResponse {
    let now = host.now();
    let (since, until) = match backfill::parse_window(&req.body, now) {
        Ok(w) => w,
        Err(m) => return error_response(400, "bad_request", &m),
    };
    // Settings the slices need: say what is missing now rather than in the progress later.
    if let Err(f) = upstream::upstreams(host) {
        return error_response(500, "configuration", &crate::sync::failure::explain(&f));
    }
    match backfill::start(host, since, until) {
        Ok(view) => HttpResponse::json(202, &view),
        Err(e) => start_error(&e),
    }
}

/// `GET /admin/backfill`.
pub fn get_backfill(host: &mut dyn Host) -> HttpResponse {
    match backfill::view(host) {
        Ok(v) => HttpResponse::json(200, &v),
        Err(e) => error_response(503, "storage", &format!("{e}; retry shortly")),
    }
}

/// `DELETE /admin/backfill`: cancels the running backfill (409 when none runs).
pub fn cancel_backfill(host: &mut dyn Host) -> HttpResponse {
    match backfill::cancel(host) {
        Ok(Some(v)) => HttpResponse::json(200, &v),
        Ok(None) => error_response(
            409,
            "not_running",
            "no backfill is running, so there is nothing to cancel; GET /admin/backfill shows the last one",
        ),
        Err(e) => start_error(&e),
    }
}

/// `POST /admin/webhooks`: registers or reactivates the hooks; 400 when `public_base_url` is
/// unusable, 502 when BigCommerce refused.
pub fn register_webhooks(host: &mut dyn Host) -> HttpResponse {
    match hooks::register(host) {
        Ok(v) => HttpResponse::json(200, &v),
        Err(HooksError::Setup(m)) => error_response(400, "configuration", &m),
        Err(HooksError::Upstream { message, retryable }) => HttpResponse::json(
            502,
            &json!({"error": "bigcommerce", "message": message, "retryable": retryable}),
        ),
    }
}
