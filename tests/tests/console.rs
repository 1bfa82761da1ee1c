//! The ops console (issue 15) in a real headless browser: Debian's `chromium`, driven through
//! `chromedriver` (WebDriver) by `fantoccini`, against the real component in the real harness
//! and the simulators.
//!
//! Each test starts its own `chromedriver` on a free loopback port and stops it when done.
//! Without `chromium` and `chromium-driver` installed the tests fail, saying what to install
//! (CI installs them; see `.ci/run`). Screenshots of every view are saved under
//! `target/console-screenshots/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use ml_e2e::env::{TestEnv, TestOptions, eventually_named, workspace_root};
use ml_sim::bigcommerce::{OrderShape, generate};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// The browser's time zone: times on the page must be shown in it.
const BROWSER_TZ: &str = "America/Los_Angeles";
const INSTALL_HINT: &str = "the console tests need Debian's `chromium` and `chromium-driver` packages \
     (`apt-get install -y chromium chromium-driver`; CI installs them in .ci/run). Set CHROMEDRIVER and \
     CHROMIUM to their paths if they are installed elsewhere";

// ---- the browser ------------------------------------------------------------------------------

/// Finds an executable: the variable's value when set, else the first name found on `path`.
fn find_program(
    var: Option<String>,
    names: &[&str],
    path: Option<&str>,
) -> Result<PathBuf, String> {
    if let Some(explicit) = var.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(&explicit);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{explicit} does not exist: {INSTALL_HINT}"))
        };
    }
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "none of {} is on PATH: {INSTALL_HINT}",
        names.join(", ")
    ))
}

/// A `chromedriver` process and a headless Chromium session. Dropping it stops both.
struct Browser {
    client: Option<Client>,
    driver: Child,
    shots: PathBuf,
    prefix: &'static str,
}

impl Browser {
    async fn start(prefix: &'static str) -> Browser {
        let path = std::env::var("PATH").ok();
        let driver_bin = find_program(
            std::env::var("CHROMEDRIVER").ok(),
            &["chromedriver"],
            path.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let chromium = find_program(
            std::env::var("CHROMIUM").ok(),
            &["chromium", "chromium-browser", "google-chrome"],
            path.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // chromedriver cannot be told to pick a port itself: take a free one and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("TZ", BROWSER_TZ)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e}; {INSTALL_HINT}", driver_bin.display())
            });
        let mut browser = Browser {
            client: None,
            driver,
            shots: workspace_root().join("target").join("console-screenshots"),
            prefix,
        };
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--lang=en-US", "--no-first-run", "--no-default-browser-check",
                    // Nothing but the page under test may reach the network.
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-domain-reliability", "--disable-extensions", "--metrics-recording-only",
                ],
            },
        }))
        .expect("capabilities are an object");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        let client = loop {
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited at start ({status}); {INSTALL_HINT}");
            }
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("no Chromium session through chromedriver at {url}: {e}; {INSTALL_HINT}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        browser.client = Some(client);
        std::fs::create_dir_all(&browser.shots).expect("the screenshot directory can be created");
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("a live session")
    }

    async fn goto(&self, url: &str) {
        self.c()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    async fn js(&self, script: &str) -> Value {
        self.c()
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until an element matching `css` is shown and its text contains `needle`;
    /// returns its text. On timeout, saves a screenshot and says what the page showed.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(els) = self.c().find_all(Locator::Css(css)).await {
                for el in els {
                    if el.is_displayed().await.unwrap_or(false)
                        && let Ok(text) = el.text().await
                    {
                        if text.contains(needle) {
                            return text;
                        }
                        last = text;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.snap("timeout").await;
                let main = self.main_text().await;
                panic!(
                    "`{css}` never showed `{needle}` (last: `{last}`); the page showed:\n{main}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn main_text(&self) -> String {
        match self.c().find(Locator::Css("body")).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn click(&self, css: &str) {
        let el = self
            .c()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        el.click()
            .await
            .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self
            .c()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        el.clear()
            .await
            .unwrap_or_else(|e| panic!("cannot clear `{css}`: {e}"));
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into `{css}`: {e}"));
    }

    async fn is_shown(&self, css: &str) -> bool {
        match self.c().find(Locator::Css(css)).await {
            Ok(el) => el.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Saves a screenshot of the whole page as `<prefix>-<name>.png`.
    async fn snap(&self, name: &str) -> PathBuf {
        let (w, h) = self.c().get_window_size().await.unwrap_or((1280, 900));
        // The window is taller than its viewport by the (headless) browser's own frame.
        let full = self
            .js("window.scrollTo(0, 0); return Math.ceil(document.documentElement.scrollHeight) + 140")
            .await
            .as_u64()
            .unwrap_or(h)
            .clamp(200, 6000);
        let _ = self.c().set_window_size(w as u32, full as u32).await;
        let png = self.c().screenshot().await.expect("a screenshot");
        let _ = self.c().set_window_size(w as u32, h as u32).await;
        let path = self.shots.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// Every form control on the page has a label a screen reader reads out.
    async fn assert_controls_labelled(&self, view: &str) {
        let unlabelled = self
            .js(
                "return [...document.querySelectorAll('input, select, textarea')]
                   .filter(el => !el.labels || el.labels.length === 0)
                   .map(el => el.outerHTML.slice(0, 120));",
            )
            .await;
        assert_eq!(
            unlabelled,
            json!([]),
            "unlabelled controls on the {view} view"
        );
    }

    /// Every resource the page loaded came from `origin`.
    async fn assert_same_origin(&self, origin: &str) {
        let names = self
            .js(
                "return performance.getEntriesByType('resource').map(e => e.name)
                   .concat(performance.getEntriesByType('navigation').map(e => e.name));",
            )
            .await;
        let names = names.as_array().expect("a list of URLs");
        assert!(!names.is_empty(), "the page loaded something");
        for name in names {
            let name = name.as_str().unwrap_or_default();
            assert!(
                name.starts_with(&format!("{origin}/")),
                "{name} is not on the page's origin {origin}"
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the Chromium session; chromedriver is stopped below either way.
            let handle = tokio::runtime::Handle::try_current();
            if let Ok(handle) = handle {
                let _ = tokio::task::block_in_place(|| {
                    handle.block_on(async {
                        tokio::time::timeout(Duration::from_secs(10), client.close()).await
                    })
                });
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

// ---- the connector --------------------------------------------------------------------------

fn shape(seed: u64) -> OrderShape {
    OrderShape {
        lines: 3,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: true,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed,
    }
}

/// The built-in mapping with a default item the simulated company does not have.
fn broken_mapping() -> Value {
    json!({
        "version": 1,
        "invoice": {
            "doc_number": "{order_id}",
            "default_item": "Gadget Sales",
            "shipping": {"item": "Shipping Income"},
            "discount": {"account": "Discounts given"},
            "tax": {"mode": "auto"}
        }
    })
}

async fn wait_state(env: &TestEnv, entity: &str, id: u64, state: &str) -> Value {
    eventually_named(&format!("{entity} {id} is {state}"), WAIT, || async {
        let (status, rec) = env
            .admin_get(&format!("/admin/records/{entity}/{id}"))
            .await;
        (status == 200 && rec["state"] == state).then_some(rec)
    })
    .await
}

async fn sign_in(browser: &Browser, env: &TestEnv, token: &str) {
    browser.goto(&env.url("/")).await;
    browser.wait_text("h1", "Sign in").await;
    browser.type_into("input[name=token]", token).await;
    browser.click("form button[type=submit]").await;
}

fn origin(env: &TestEnv) -> String {
    format!("http://{}", env.addr())
}

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_failed_order_fixes_the_mapping_and_replays_it_from_the_console() {
    let browser = Browser::start("flow").await;
    let env =
        TestEnv::start(TestOptions::default().var("mapping", broken_mapping().to_string())).await;
    let order = generate(701, &shape(7));
    let total = order.order["total_inc_tax"].clone();
    env.bc.place_order(order).await.unwrap();
    let rec = wait_state(&env, "order", 701, "failed").await;
    assert!(
        rec["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("Gadget Sales"),
        "{rec}"
    );

    // Sign in: `/` leads to the console, which asks for the token.
    sign_in(&browser, &env, &env.admin_token).await;
    browser.wait_text("main h1", "Status").await;
    let url = browser.c().current_url().await.unwrap();
    assert_eq!(url.path(), "/admin/ui", "`/` redirects to the console");
    browser
        .wait_text("section[aria-label=BigCommerce] h2", "Connected")
        .await;
    browser
        .wait_text("section[aria-label=QuickBooks] h2", "Connected")
        .await;
    let failed = browser
        .wait_text("a.count[data-state=failed]", "Failed")
        .await;
    assert!(failed.starts_with('1'), "one failed record: {failed}");
    let footer = browser.wait_text("footer", "times shown in").await;
    assert!(
        footer.contains(BROWSER_TZ),
        "times are in the browser's zone: {footer}"
    );
    browser.assert_controls_labelled("status").await;
    browser.snap("1-status").await;

    // The backfill view is offered exactly when the connector has the route.
    let backfill = env.admin_get("/admin/backfill").await.0;
    assert_eq!(
        browser.is_shown("a[data-view=backfill]").await,
        backfill != 404,
        "backfill link shown iff /admin/backfill exists (it answered {backfill})"
    );

    // The failed count leads to the failed records, newest first.
    browser.click("a.count[data-state=failed]").await;
    browser.wait_text("main h1", "Records").await;
    let row = browser
        .wait_text("tr[data-record='order/701']", "Failed")
        .await;
    assert!(
        row.contains("Gadget Sales"),
        "the row says what went wrong: {row}"
    );
    browser.assert_controls_labelled("records").await;
    browser.snap("2-records-failed").await;

    // The record explains the failure in words and says what to do.
    browser.click("tr[data-record='order/701'] a").await;
    browser.wait_text("main h1", "Order 701").await;
    let what = browser.wait_text(".failure .what", "Gadget Sales").await;
    assert!(
        !what.contains("What to do"),
        "the explanation and the fix are apart: {what}"
    );
    browser
        .wait_text(".failure .todo", "press Replay below")
        .await;
    let history = browser
        .wait_text("ol.timeline", "placed in BigCommerce")
        .await;
    assert!(history.contains("Attempt 1 failed"), "{history}");
    browser.snap("3-record-failed").await;

    // Open the mapping from the failure; a wrong mapping is refused with every problem listed.
    browser.click(".failure a.button-link").await;
    browser.wait_text("main h1", "Mapping").await;
    browser.assert_controls_labelled("mapping").await;
    browser
        .type_into(
            "textarea[name=mapping]",
            r#"{"version": 2, "invoice": {"default_item": "", "tax": {"mode": "sometimes"}}}"#,
        )
        .await;
    browser.click("#save-mapping").await;
    browser.wait_text("#mapping-result", "Not saved").await;
    let problems = browser
        .js("return [...document.querySelectorAll('#mapping-result ul.problems li')].map(li => li.textContent)")
        .await;
    let problems: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(problems.len() >= 3, "every problem listed: {problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("$.version")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("$.invoice.tax.mode")),
        "{problems:?}"
    );
    browser.snap("4-mapping-problems").await;
    let (_, stored) = env.admin_get("/admin/mapping").await;
    assert_eq!(
        stored["invoice"]["default_item"], "Gadget Sales",
        "nothing was saved"
    );

    // Fix it: the item the company has.
    let fixed = broken_mapping()
        .to_string()
        .replace("Gadget Sales", "BigCommerce Sales");
    browser.type_into("textarea[name=mapping]", &fixed).await;
    browser.click("#save-mapping").await;
    browser.wait_text("#mapping-result", "Saved.").await;
    let (_, stored) = env.admin_get("/admin/mapping").await;
    assert_eq!(stored["invoice"]["default_item"], "BigCommerce Sales");

    // Preview the order's invoice under the new rules: a table, money with its currency.
    browser.type_into("input[name=order]", "701").await;
    browser.click("#preview").await;
    let table = browser.wait_text("table.invoice", "Total").await;
    assert!(
        table.contains("BigCommerce Sales") || table.contains('#'),
        "{table}"
    );
    let total_row = browser
        .wait_text("table.invoice tfoot tr.total", "Total")
        .await
        .replace(',', "");
    let total_text = total
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| total.to_string());
    let whole = total_text.split('.').next().unwrap().to_string();
    assert!(
        total_row.contains('$') && total_row.contains(&whole),
        "the total {total_text} with its currency: {total_row}"
    );
    assert!(env.qbo.invoices().is_empty(), "a preview posts nothing");
    browser.snap("5-mapping-preview").await;

    // Back to the order: Replay posts it.
    browser.goto(&env.url("/admin/ui#/record/order/701")).await;
    browser.wait_text("main h1", "Order 701").await;
    browser.click("#replay").await;
    browser
        .wait_text("main .banner.good", "Replayed. It is now: Posted.")
        .await;
    let invoices = env.qbo.invoices();
    assert_eq!(invoices.len(), 1, "exactly one invoice");
    let invoice_id = invoices[0]["Id"].as_str().unwrap().to_string();
    let href = browser
        .js("return document.querySelector('table.docs a').href")
        .await;
    assert_eq!(
        href,
        json!(format!(
            "https://app.qbo.intuit.com/app/invoice?txnId={invoice_id}"
        )),
        "the invoice links into QuickBooks"
    );
    let history = browser
        .wait_text("ol.timeline", "Someone pressed Replay")
        .await;
    assert!(history.contains("Saved in QuickBooks"), "{history}");
    assert!(
        !browser.is_shown(".failure").await,
        "no failure shown once posted"
    );
    browser.snap("6-record-posted").await;

    // The status now counts it as posted.
    browser.click("nav a[data-view=status]").await;
    let posted = browser
        .wait_text("a.count[data-state=posted]", "Posted")
        .await;
    assert!(posted.starts_with('1'), "{posted}");
    let failed = browser
        .wait_text("a.count[data-state=failed]", "Failed")
        .await;
    assert!(failed.starts_with('0'), "{failed}");

    // Nothing came from another origin, and the page was sent with its policy.
    browser.assert_same_origin(&origin(&env)).await;
    let page = env.request("GET", "/admin/ui", &[], Vec::new()).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers["x-content-type-options"], "nosniff");

    // On a phone-width screen nothing needs sideways scrolling.
    browser.c().set_window_size(390, 844).await.unwrap();
    browser.goto(&env.url("/admin/ui#/record/order/701")).await;
    browser.wait_text("main h1", "Order 701").await;
    let overflow = browser
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "sideways overflow of {overflow}px on a phone"
    );
    browser.snap("7-phone-record").await;
    browser.goto(&env.url("/admin/ui#/status")).await;
    browser
        .wait_text("a.count[data-state=posted]", "Posted")
        .await;
    browser.snap("8-phone-status").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_with_a_message_and_a_revoked_one_returns_to_the_sign_in() {
    let browser = Browser::start("token").await;
    let env = TestEnv::start(TestOptions::default()).await;

    sign_in(&browser, &env, "not-the-admin-token").await;
    browser
        .wait_text("form .banner.bad", "refused the admin token")
        .await;
    let stored = browser.js("return sessionStorage.length").await;
    assert_eq!(stored, json!(0), "a refused token is not kept");
    assert!(
        !browser.is_shown("#nav").await,
        "no navigation before signing in"
    );
    browser.assert_controls_labelled("sign-in").await;
    browser.snap("1-refused").await;

    // The right token, typed once and submitted with Enter, is kept for the tab.
    browser
        .type_into("input[name=token]", &env.admin_token)
        .await;
    browser
        .c()
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    browser.wait_text("main h1", "Status").await;
    browser.goto(&env.url("/admin/ui#/records")).await;
    browser.wait_text("main h1", "Records").await;
    assert!(browser.is_shown("#nav").await);

    // The token stops working (rotated): the next call returns to the sign-in with a message.
    browser
        .js("sessionStorage.setItem('ml-connector.admin-token', 'rotated-away'); return null")
        .await;
    browser.click("nav a[data-view=mapping]").await;
    browser.wait_text("main h1", "Sign in").await;
    browser.wait_text("form .banner.bad", "Sign in again").await;
    assert_eq!(browser.js("return sessionStorage.length").await, json!(0));
    browser.snap("2-revoked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_connector_cannot_be_reached_the_console_says_so_and_recovers_by_itself() {
    let browser = Browser::start("network").await;
    let mut env = TestEnv::start(TestOptions::default()).await;
    sign_in(&browser, &env, &env.admin_token).await;
    browser.wait_text("main h1", "Status").await;

    // As a crash would: connections and the listener die at once.
    env.kill();
    browser.click("nav a[data-view=records]").await;
    browser.wait_text("#network", "cannot be reached").await;
    browser.snap("1-unreachable").await;

    env.restart().await;
    browser.wait_text("main h1", "Records").await;
    eventually_named("the network banner goes away", WAIT, || async {
        !browser.is_shown("#network").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_quickbooks_access_is_lost_the_connect_button_leads_through_consent_and_back() {
    let browser = Browser::start("reconnect").await;
    let mut env = TestEnv::start(TestOptions::default()).await;
    let callback = env.url("/oauth/quickbooks/callback");
    env.restart_with(&[("qbo_redirect_uri", &callback)]).await;
    env.bc.place_order(generate(801, &shape(8))).await.unwrap();
    wait_state(&env, "order", 801, "posted").await;
    // The user disconnected the app in QuickBooks.
    env.qbo.revoke_refresh_tokens();
    env.qbo.expire_access_tokens();
    env.bc.place_order(generate(802, &shape(9))).await.unwrap();
    wait_state(&env, "order", 802, "needs_reauth").await;

    sign_in(&browser, &env, &env.admin_token).await;
    browser
        .wait_text("section[aria-label=QuickBooks] h2", "Not connected")
        .await;
    browser
        .wait_text(
            "section[aria-label=QuickBooks]",
            "QuickBooks access was lost",
        )
        .await;
    let parked = browser
        .wait_text("a.count[data-state=needs_reauth]", "QuickBooks")
        .await;
    assert!(parked.starts_with('1'), "{parked}");
    browser.snap("1-needs-reauth").await;

    // The button asks the connector for the consent address and goes there; the simulated
    // consent page approves at once and sends the browser back to the callback.
    browser.click("#connect-quickbooks").await;
    browser.wait_text("h1", "QuickBooks connected").await;
    browser.click("a[href='/admin/ui#/status']").await;
    browser
        .wait_text("section[aria-label=QuickBooks] h2", "Connected")
        .await;
    assert!(
        !browser.is_shown("#connect-quickbooks").await,
        "no button once connected"
    );

    // Parked records resume by themselves on the next scheduler run.
    let (code, report) = env.admin_post("/admin/retry-due", &Value::Null).await;
    assert_eq!(code, 200, "{report}");
    wait_state(&env, "order", 802, "posted").await;
    browser.goto(&env.url("/admin/ui#/record/order/802")).await;
    browser
        .wait_text("ol.timeline", "QuickBooks was connected again")
        .await;
    browser.snap("2-resumed").await;
}

#[test]
fn without_chromium_the_console_tests_fail_saying_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let path = std::env::join_paths([empty.path()]).unwrap();
    let err = find_program(None, &["chromedriver"], path.to_str()).unwrap_err();
    assert!(
        err.contains("apt-get install -y chromium chromium-driver"),
        "{err}"
    );
    let err = find_program(
        Some("/nonexistent/chromedriver".into()),
        &["chromedriver"],
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("/nonexistent/chromedriver") && err.contains("chromium-driver"),
        "{err}"
    );
    // And it finds one that is there.
    let exe = empty.path().join("chromedriver");
    std::fs::write(&exe, b"").unwrap();
    assert_eq!(
        find_program(None, &["chromedriver"], path.to_str()).unwrap(),
        Path::new(&exe)
    );
}
