//! The ml-connector component: a thin adapter between WASI and `ml-core`.
//!
//! It turns the incoming request into an [`ml_core::http::Request`], lets the core decide the
//! response, sends it, and then keeps running to do the work the core scheduled ("respond,
//! then work"). Every effect the core asks for goes through [`host::WasiHost`]; nothing here
//! decides anything.

mod host;

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "ml:connector/host-services",
        generate_all,
    });
}

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

use ml_core::http;
use ml_core::routes::router;

struct Connector;

wasi::http::proxy::export!(Connector);

impl wasi::exports::http::incoming_handler::Guest for Connector {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let mut host = host::WasiHost::new();
        let request = match read_request(&request) {
            Ok(r) => r,
            Err(message) => {
                let resp = http::error_response(400, "bad_request", &message);
                send(response_out, &resp);
                return;
            }
        };
        let (response, work) = router::handle(&request, &mut host);
        send(response_out, &response);
        if let Some(work) = work {
            router::run(work, &mut host);
        }
    }
}

/// Reads method, path, headers and at most `MAX_BODY + 1` bytes of the body (enough for the
/// core to tell that a body is too large without buffering all of it).
fn read_request(request: &IncomingRequest) -> Result<http::Request, String> {
    use wasi::http::types::Method;
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Patch => "PATCH".to_string(),
        Method::Options => "OPTIONS".to_string(),
        Method::Connect => "CONNECT".to_string(),
        Method::Trace => "TRACE".to_string(),
        Method::Other(m) => m,
    };
    let path_and_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
    let headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = match request.consume() {
        Ok(body) => host::read_body(body, http::MAX_BODY + 1)
            .map_err(|e| format!("cannot read request body: {e}"))?,
        Err(()) => Vec::new(),
    };
    Ok(http::Request {
        method,
        path_and_query,
        headers,
        body,
    })
}

fn send(out: ResponseOutparam, response: &ml_core::http::HttpResponse) {
    let headers = Fields::new();
    for (k, v) in &response.headers {
        let _ = headers.append(k, v.as_bytes());
    }
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(response.status);
    let Ok(body) = resp.body() else { return };
    ResponseOutparam::set(out, Ok(resp));
    if let Ok(mut stream) = body.write() {
        // A client that went away is not our problem: the work continues regardless.
        let _ = stream.write_all(&response.body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}
