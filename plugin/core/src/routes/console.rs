//! The ops console (CONTRACT §10): a static page, its script modules and its style sheet,
//! embedded in the component and served under `/admin/ui`.
//!
//! The files need no auth (they hold nothing secret; the page asks for the admin token and
//! sends it as a bearer on every JSON call) and no build step: they are read as they are from
//! `plugin/core/console/`. Every response carries a policy that allows nothing but this
//! origin, and no framing.

use sha2::{Digest, Sha256};

use crate::http::{HttpResponse, header_value};
use crate::http::{Request, error_response};

/// Where the console lives; `GET /` redirects here.
pub const UI_PATH: &str = "/admin/ui";

/// Scripts, styles, images, fetches and forms from this origin only; no plugins, no `<base>`,
/// and no page of any origin may frame the console (clickjacking a Replay button).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'; object-src 'none'";

/// One embedded file: its name under [`UI_PATH`], content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console serves. The page itself is `index.html`, served at [`UI_PATH`].
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../console/favicon.svg"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../../console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_bytes!("../../console/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_bytes!("../../console/dom.js"),
    },
    Asset {
        name: "words.js",
        content_type: JS,
        body: include_bytes!("../../console/words.js"),
    },
    Asset {
        name: "views.js",
        content_type: JS,
        body: include_bytes!("../../console/views.js"),
    },
];

/// Whether the console answers this path (already stripped of its query and trailing slash):
/// `/`, [`UI_PATH`] and everything under it. These paths need no admin token.
pub fn owns(path: &str) -> bool {
    path == "/"
        || path == UI_PATH
        || path
            .strip_prefix(UI_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Serves a path [`owns`] accepted: `GET`/`HEAD` only.
pub fn serve(req: &Request, path: &str) -> HttpResponse {
    let head = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut resp = error_response(
                405,
                "method_not_allowed",
                &format!(
                    "{} is not supported on {}; the console's files are read with GET",
                    req.method,
                    req.path()
                ),
            );
            resp.headers.push(("allow".into(), "GET, HEAD".into()));
            return secured(resp);
        }
    };
    let mut resp = if path == "/" {
        let mut r = HttpResponse::new(302, Vec::new());
        r.headers.push(("location".into(), UI_PATH.into()));
        r.headers.push(("cache-control".into(), "no-cache".into()));
        r
    } else {
        let name = match path.strip_prefix(UI_PATH) {
            Some("") => "index.html",
            Some(rest) => rest.trim_start_matches('/'),
            None => "",
        };
        match ASSETS.iter().find(|a| a.name == name) {
            Some(asset) => file(req, asset),
            None => error_response(
                404,
                "not_found",
                &format!("the console has no file {}; open {UI_PATH}", req.path()),
            ),
        }
    };
    if head {
        resp.body.clear();
    }
    secured(resp)
}

/// A file with a validator: the browser revalidates every time (`no-cache`) and gets a 304
/// when it already has these bytes, so an upgraded connector is never shown with stale code.
fn file(req: &Request, asset: &Asset) -> HttpResponse {
    let etag = etag(asset.body);
    let fresh = req
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        HttpResponse::new(304, Vec::new())
    } else {
        let mut r = HttpResponse::new(200, asset.body);
        r.headers
            .push(("content-type".into(), asset.content_type.into()));
        r
    };
    resp.headers.push(("etag".into(), etag));
    resp.headers
        .push(("cache-control".into(), "no-cache".into()));
    resp
}

fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// Adds the headers every console response carries.
fn secured(mut resp: HttpResponse) -> HttpResponse {
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        if header_value(&resp.headers, name).is_none() {
            resp.headers.push((name.into(), value.into()));
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::router as app;
    use crate::testing::FakeHost;

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path_and_query: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    /// Through the real router, with an admin token configured but never sent.
    fn call(method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let mut host = FakeHost::new(chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap());
        host.set_config("admin_token", "s3cret-admin-token");
        let (resp, work) = app::handle(&request(method, path, headers), &mut host);
        assert!(work.is_none(), "the console never leaves work behind");
        resp
    }

    fn assert_secured(resp: &HttpResponse) {
        let csp = resp
            .header("content-security-policy")
            .expect("a CSP header");
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
    }

    #[test]
    fn the_page_is_served_without_the_admin_token_as_html_under_a_strict_policy() {
        for path in ["/admin/ui", "/admin/ui/", "/admin/ui?x=1"] {
            let resp = call("GET", path, &[]);
            assert_eq!(resp.status, 200, "{path}");
            assert_eq!(
                resp.header("content-type"),
                Some("text/html; charset=utf-8")
            );
            assert_eq!(resp.header("cache-control"), Some("no-cache"));
            assert!(resp.header("etag").is_some());
            assert_secured(&resp);
            let html = String::from_utf8(resp.body.clone()).unwrap();
            assert!(html.contains("<script type=\"module\" src=\"/admin/ui/app.js\">"));
        }
    }

    #[test]
    fn each_asset_has_its_content_type() {
        for (path, ty) in [
            ("/admin/ui/app.js", "text/javascript; charset=utf-8"),
            ("/admin/ui/api.js", "text/javascript; charset=utf-8"),
            ("/admin/ui/dom.js", "text/javascript; charset=utf-8"),
            ("/admin/ui/words.js", "text/javascript; charset=utf-8"),
            ("/admin/ui/views.js", "text/javascript; charset=utf-8"),
            ("/admin/ui/style.css", "text/css; charset=utf-8"),
            ("/admin/ui/favicon.svg", "image/svg+xml"),
            ("/admin/ui/index.html", "text/html; charset=utf-8"),
        ] {
            let resp = call("GET", path, &[]);
            assert_eq!(resp.status, 200, "{path}");
            assert_eq!(resp.header("content-type"), Some(ty), "{path}");
            assert!(!resp.body.is_empty(), "{path}");
            assert_secured(&resp);
        }
    }

    #[test]
    fn the_root_redirects_to_the_console() {
        let resp = call("GET", "/", &[]);
        assert_eq!(resp.status, 302);
        assert_eq!(resp.header("location"), Some(UI_PATH));
        assert!(resp.body.is_empty());
        assert_secured(&resp);
        assert_eq!(call("HEAD", "/", &[]).status, 302);
    }

    #[test]
    fn an_unknown_file_is_a_json_404_and_never_reaches_the_admin_routes() {
        for path in [
            "/admin/ui/nope.js",
            "/admin/ui/../status",
            "/admin/ui/app.js/x",
            "/admin/ui/APP.JS",
        ] {
            let resp = call("GET", path, &[]);
            assert_eq!(resp.status, 404, "{path}");
            assert_eq!(resp.header("content-type"), Some("application/json"));
            let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
            assert_eq!(v["error"], "not_found");
            assert_secured(&resp);
        }
        // A path that merely starts with the same letters is not the console's: it stays an
        // admin route, behind the token.
        assert_eq!(call("GET", "/admin/uix", &[]).status, 401);
        assert_eq!(call("GET", "/admin/status", &[]).status, 401);
    }

    #[test]
    fn head_answers_the_same_headers_without_a_body() {
        let get = call("GET", "/admin/ui/app.js", &[]);
        let head = call("HEAD", "/admin/ui/app.js", &[]);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-type"), get.header("content-type"));
        assert_eq!(head.header("etag"), get.header("etag"));
        assert_secured(&head);
    }

    #[test]
    fn other_methods_are_refused_with_the_allowed_ones() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            for path in ["/admin/ui", "/admin/ui/app.js", "/"] {
                let resp = call(method, path, &[]);
                assert_eq!(resp.status, 405, "{method} {path}");
                assert_eq!(resp.header("allow"), Some("GET, HEAD"));
                assert_secured(&resp);
            }
        }
    }

    #[test]
    fn a_matching_etag_gets_a_304_and_a_stale_one_the_file() {
        let first = call("GET", "/admin/ui/style.css", &[]);
        let etag = first.header("etag").unwrap().to_string();
        let again = call("GET", "/admin/ui/style.css", &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_secured(&again);
        let stale = call(
            "GET",
            "/admin/ui/style.css",
            &[("If-None-Match", "\"0000\"")],
        );
        assert_eq!(stale.status, 200);
        assert_eq!(stale.body, first.body);
        // Each file has its own validator.
        assert_ne!(
            call("GET", "/admin/ui/app.js", &[]).header("etag"),
            Some(etag.as_str())
        );
    }

    #[test]
    fn the_files_load_nothing_from_another_origin() {
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            for needle in [
                "http://",
                "//cdn",
                "@import url(",
                "<script>",
                " style=\"",
                "onclick=",
            ] {
                // The one absolute URL allowed is QuickBooks' own, as a link target the user
                // follows, never loaded by the page; `http://www.w3.org/2000/svg` is a
                // namespace name, not a request.
                let allowed = |line: &str| {
                    line.contains("https://app.qbo.intuit.com")
                        || line.contains("http://www.w3.org/2000/svg")
                };
                for line in text.lines().filter(|l| l.contains(needle)) {
                    assert!(allowed(line), "{}: `{needle}` in: {line}", asset.name);
                }
            }
        }
    }
}
