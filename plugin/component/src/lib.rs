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
        let mut head = read_head(&request);
        // Credentials are checked before the body is read: an unauthenticated client that
        // announces a body and never sends it gets its answer at once.
        match router::precheck(&head, &mut host) {
            router::Precheck::Respond(resp) => {
                send(response_out, &resp);
                return;
            }
            router::Precheck::SkipBody => {}
            router::Precheck::ReadBody => match read_request_body(request) {
                Ok(body) => head.body = body,
                Err(resp) => {
                    send(response_out, &resp);
                    return;
                }
            },
        }
        let (response, work) = router::handle(&head, &mut host);
        send(response_out, &response);
        if let Some(work) = work {
            router::run(work, &mut host);
        }
    }
}

/// Reads method, path and headers; the body is left unread.
fn read_head(request: &IncomingRequest) -> http::Request {
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
    http::Request {
        method,
        path_and_query,
        headers,
        body: Vec::new(),
    }
}

/// Reads at most `MAX_BODY + 1` bytes of the body (enough for the core to tell that a body is
/// too large without buffering all of it). A body the host stopped waiting for is a 408.
fn read_request_body(request: IncomingRequest) -> Result<Vec<u8>, ml_core::http::HttpResponse> {
    let Ok(body) = request.consume() else {
        return Ok(Vec::new());
    };
    host::read_body(body, http::MAX_BODY + 1).map_err(|e| {
        if e.timed_out {
            http::error_response(
                408,
                "request_timeout",
                "the request body did not arrive in time; send the request again",
            )
        } else {
            http::error_response(
                400,
                "bad_request",
                &format!("cannot read request body: {}", e.message),
            )
        }
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
