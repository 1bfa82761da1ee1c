//! The simulated world: one shared KV (real compare-and-swap; leases expire by the clocks of
//! the instances that read them), the in-memory BigCommerce and QuickBooks models of
//! `common` behind a network that delays, fails, throttles and loses answers, and the
//! [`Host`] each simulated request runs its job on.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ml_core::host::{CasOutcome, Host, KvError, LogLevel};
use ml_core::http::{HttpRequest, HttpResponse, TransportError, UPSTREAM_DEADLINE_MS};
use ml_core::sync::record::Entity;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore};
use serde_json::{Value, json};

use super::exec::{Ctx, Plan, State};
use crate::common::{
    ADMIN_TOKEN, BC_BASE, BC_TOKEN, BOOTSTRAP_RT, Bc, CLIENT_ID, CLIENT_SECRET, KEY_BYTES,
    OAUTH_BASE, QBO_BASE, Qbo, REALM, STORE_HASH, WEBHOOK_SECRET, fault_body, t0,
};

/// Which fault classes a run may draw. Each knob names what it allows; none changes an
/// invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Upstream calls that stall longer than a lease (a slow body trickling in, a server that
    /// hangs). As in the component, a call ends with a timeout at
    /// [`UPSTREAM_DEADLINE_MS`] whatever the upstream does; the request may or may not have
    /// been done by then.
    pub long_stalls: bool,
    /// `Retry-After` values no real service sends (a hostile or broken proxy).
    pub hostile_retry_after: bool,
    /// Crashes at any host call.
    pub crashes: bool,
}

impl Profile {
    /// Everything the simulation knows how to do.
    pub const FULL: Profile = Profile {
        long_stalls: true,
        hostile_retry_after: true,
        crashes: true,
    };
    /// Crashes and every fault, but stalls shorter than a lease and `Retry-After` values a
    /// real service sends.
    pub const BOUNDED: Profile = Profile {
        long_stalls: false,
        hostile_retry_after: false,
        crashes: true,
    };

    /// `full` or `bounded`.
    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "full" => Some(Profile::FULL),
            "bounded" => Some(Profile::BOUNDED),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        if *self == Profile::FULL {
            "full"
        } else if *self == Profile::BOUNDED {
            "bounded"
        } else {
            "custom"
        }
    }
}

/// Fault rates drawn per seed.
#[derive(Debug, Clone)]
pub struct Faults {
    /// 5xx answers.
    pub server_error: f64,
    /// 429 answers.
    pub rate_limited: f64,
    /// The upstream did the work but the answer never came back.
    pub lost_answer: f64,
    /// The request never reached the upstream.
    pub no_answer: f64,
    /// A slow answer (seconds to minutes).
    pub slow: f64,
    /// Longest slow answer (ms).
    pub slow_max_ms: i64,
    pub hostile_retry_after: bool,
}

/// One webhook delivery BigCommerce makes (redeliveries repeat it exactly).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entity: Entity,
    pub id: u64,
    pub scope: String,
    pub hash: String,
    pub created_at: i64,
    /// Answered 200 `accepted` at least once.
    pub accepted: bool,
    pub attempts: u32,
}

/// What a task is, for the world.
#[derive(Debug, Clone)]
pub enum Kind {
    Webhook(usize),
    Tick,
    Replay(Entity, String),
}

/// Something planned.
#[derive(Debug)]
pub enum Event {
    /// BigCommerce (re)sends delivery `n`.
    Deliver(usize),
    /// The order's version `v` becomes current in BigCommerce.
    EditOrder(u64, usize),
    /// The customer changes in BigCommerce (its address line 2), then a webhook follows.
    EditCustomer(u64),
    /// The scheduler calls `POST /admin/retry-due`.
    Tick,
    /// Faults and crashes stop.
    ChaosEnd,
    /// The operator replays what gave up, as its `last_error` says to.
    Operator,
    /// `POST /admin/replay/{entity}/{id}`.
    Replay(Entity, String),
    /// Intuit invalidates the access tokens early.
    ExpireAccessTokens,
    /// Someone edits the order's invoice in QuickBooks (its SyncToken moves on).
    EditInvoiceInQbo(u64),
}

/// Counts for reports.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub http: u64,
    pub faults: u64,
    pub crashes: u64,
    pub host_calls: u64,
    pub deliveries: u64,
}

/// Everything outside the connector.
pub struct SimWorld {
    pub chaos: bool,
    pub profile: Profile,
    pub faults: Faults,
    pub kv: BTreeMap<String, Vec<u8>>,
    pub config: BTreeMap<String, String>,
    pub bc: Bc,
    pub qbo: Qbo,
    /// When each access token was issued (ms), so they expire after an hour.
    pub issued: HashMap<String, i64>,
    pub deliveries: Vec<Delivery>,
    /// Orders: their versions (BigCommerce JSON); the current one is `current[id]`.
    pub versions: BTreeMap<u64, Vec<Value>>,
    pub current: BTreeMap<u64, usize>,
    /// Credentials seen in plain text in a KV write or a log line.
    pub leaks: Vec<String>,
    /// Tasks holding a rotated refresh token not yet stored.
    pub unsaved_rotation: std::collections::HashSet<usize>,
    /// A rotated refresh token died with its task: re-authorization is the only way on.
    pub rotation_lost: bool,
    /// Re-authorizations the operator made.
    pub reauthorizations: u32,
    pub last_reauth_at: Option<i64>,
    /// Problems seen while the run went on (checked again at the end).
    pub violations: Vec<super::Violation>,
    /// Replays the operator asked for that answered something other than a record.
    pub stats: Stats,
    /// Events planned after the chaos window that still must happen before the run is over.
    pub pending_redeliveries: usize,
    pub pending_replays: usize,
}

/// Strings that must never appear in KV or logs in plain text. Every access and refresh
/// token the QuickBooks model issues contains one of the last two.
pub fn credentials() -> Vec<String> {
    vec![
        BC_TOKEN.to_string(),
        CLIENT_SECRET.to_string(),
        BOOTSTRAP_RT.to_string(),
        WEBHOOK_SECRET.to_string(),
        ADMIN_TOKEN.to_string(),
        base64::engine::general_purpose::STANDARD.encode(KEY_BYTES),
        "accessTokenValue9".to_string(),
        "rotatedRefreshToken7".to_string(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

impl SimWorld {
    pub fn new(profile: Profile, faults: Faults) -> Self {
        let mut config = BTreeMap::new();
        for (k, v) in [
            ("bigcommerce_store_hash", STORE_HASH),
            ("bigcommerce_access_token", BC_TOKEN),
            ("bigcommerce_api_base", BC_BASE),
            ("bigcommerce_webhook_secret", WEBHOOK_SECRET),
            ("qbo_client_id", CLIENT_ID),
            ("qbo_client_secret", CLIENT_SECRET),
            ("qbo_api_base", QBO_BASE),
            ("qbo_oauth_base", OAUTH_BASE),
            ("qbo_realm_id", REALM),
            ("qbo_refresh_token", BOOTSTRAP_RT),
            ("admin_token", ADMIN_TOKEN),
            ("retry_base_seconds", "10"),
            ("max_attempts", "6"),
            // Set, so these tests read no store profile (`ledger_job.rs` covers that read).
            ("store_timezone", "America/Chicago"),
        ] {
            config.insert(k.to_string(), v.to_string());
        }
        config.insert(
            "encryption_key".into(),
            base64::engine::general_purpose::STANDARD.encode(KEY_BYTES),
        );
        let mut qbo = Qbo::default();
        qbo.valid_refresh.insert(BOOTSTRAP_RT.to_string());
        SimWorld {
            chaos: true,
            profile,
            faults,
            kv: BTreeMap::new(),
            config,
            bc: Bc::default(),
            qbo,
            issued: HashMap::new(),
            deliveries: Vec::new(),
            versions: BTreeMap::new(),
            current: BTreeMap::new(),
            leaks: Vec::new(),
            violations: Vec::new(),
            unsaved_rotation: Default::default(),
            rotation_lost: false,
            reauthorizations: 0,
            last_reauth_at: None,
            stats: Stats::default(),
            pending_redeliveries: 0,
            pending_replays: 0,
        }
    }

    fn scan(&mut self, what: impl Fn() -> String, bytes: &[u8]) {
        static NEEDLES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        for c in NEEDLES.get_or_init(credentials) {
            if contains(bytes, c.as_bytes()) {
                self.leaks.push(format!(
                    "{} holds a credential in plain text (…{}…)",
                    what(),
                    &c[..6]
                ));
            }
        }
    }

    fn redeliver(&mut self, n: usize, now: i64, rng: &mut SmallRng, plan: &mut Plan<Event>) {
        self.pending_redeliveries += 1;
        plan.at(now + rng.random_range(60_000..300_000), Event::Deliver(n));
    }

    /// Decides what the network does to a request.
    fn draw(&mut self, rng: &mut SmallRng, req: &HttpRequest) -> (i64, Fate) {
        self.stats.http += 1;
        let is_bc = req.url.starts_with(BC_BASE);
        let is_token = req.url.starts_with(OAUTH_BASE);
        let mut latency = if is_bc {
            rng.random_range(30..400)
        } else {
            rng.random_range(80..900)
        };
        if !self.chaos {
            return (latency, Fate::Serve);
        }
        let f = &self.faults;
        if rng.random_bool(f.slow) {
            latency += rng.random_range(2_000..f.slow_max_ms.max(2_001));
        }
        let roll: f64 = rng.random();
        let mut acc = 0.0;
        let mut hit = |p: f64| {
            acc += p;
            roll < acc
        };
        let fate = if hit(f.server_error) {
            Fate::Answer(self.server_error(rng, is_bc))
        } else if hit(f.rate_limited) {
            Fate::Answer(self.rate_limited(rng, is_bc))
        } else if hit(f.no_answer) {
            Fate::NoAnswer
        } else if !is_token && hit(f.lost_answer) {
            // Not the token endpoint: QuickBooks rotates refresh tokens, and a rotation whose
            // answer is lost can only be repaired by a human (re-authorization).
            Fate::Lost
        } else {
            Fate::Serve
        };
        if fate != Fate::Serve {
            self.stats.faults += 1;
        }
        (latency, fate)
    }

    fn retry_after(&self, rng: &mut SmallRng) -> Option<String> {
        if self.faults.hostile_retry_after && rng.random_bool(0.2) {
            return Some(
                ["99999999999", "9999999999999", "18446744073709551615"][rng.random_range(0..3)]
                    .to_string(),
            );
        }
        rng.random_bool(0.5)
            .then(|| rng.random_range(1..120u32).to_string())
    }

    fn server_error(&self, rng: &mut SmallRng, is_bc: bool) -> HttpResponse {
        let status = [500, 502, 503][rng.random_range(0..3)];
        let mut r = if is_bc {
            HttpResponse::json(
                status,
                &json!({"status": status, "title": "Service Unavailable", "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"}),
            )
        } else {
            let mut r = HttpResponse::new(status, "Internal Server Error");
            r.headers.push(("intuit_tid".into(), "tid-5xx-sim".into()));
            r
        };
        if let Some(after) = self.retry_after(rng) {
            r.headers.push(("Retry-After".into(), after));
        }
        r
    }

    fn rate_limited(&self, rng: &mut SmallRng, is_bc: bool) -> HttpResponse {
        if is_bc {
            let mut r =
                HttpResponse::json(429, &json!({"status": 429, "title": "Too many requests"}));
            let reset = if self.faults.hostile_retry_after && rng.random_bool(0.2) {
                "18446744073709551615".to_string()
            } else {
                rng.random_range(100..30_000u32).to_string()
            };
            r.headers.push(("X-Rate-Limit-Time-Reset-Ms".into(), reset));
            r.headers
                .push(("X-Rate-Limit-Requests-Left".into(), "0".into()));
            r
        } else {
            let mut r =
                HttpResponse::json(429, &fault_body("003001", "ThrottleExceeded", "SERVICE"));
            r.headers.push(("intuit_tid".into(), "tid-429-sim".into()));
            if let Some(after) = self.retry_after(rng) {
                r.headers.push(("Retry-After".into(), after));
            }
            r
        }
    }

    /// Sends the request to its upstream model.
    fn serve(&mut self, req: &HttpRequest, now: i64) -> Result<HttpResponse, TransportError> {
        if req.url.starts_with(BC_BASE) {
            return self.bc.handle(req);
        }
        if req.url.starts_with(QBO_BASE) {
            // Access tokens live an hour.
            let issued = &self.issued;
            self.qbo
                .valid_access
                .retain(|t| issued.get(t).is_none_or(|at| now - at < 3_600_000));
        }
        let resp = self.qbo.handle(req)?;
        if req.url.starts_with(OAUTH_BASE)
            && resp.status == 200
            && let Ok(v) = serde_json::from_slice::<Value>(&resp.body)
            && let Some(t) = v["access_token"].as_str()
        {
            self.issued.insert(t.to_string(), now);
        }
        Ok(resp)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Fate {
    Serve,
    Answer(HttpResponse),
    Lost,
    NoAnswer,
}

impl super::exec::World for SimWorld {
    type Kind = Kind;
    type Event = Event;

    fn chaos(&self) -> bool {
        self.chaos && self.profile.crashes
    }

    fn crashed(
        &mut self,
        task: usize,
        kind: &Kind,
        now: i64,
        rng: &mut SmallRng,
        plan: &mut Plan<Event>,
    ) {
        self.stats.crashes += 1;
        if self.unsaved_rotation.remove(&task) {
            // QuickBooks rotated the refresh token and the only copy died with this task: no
            // design can recover from that without a human (CONTRACT: re-authorize).
            self.rotation_lost = true;
        }
        match kind {
            // A crash before the answer left: BigCommerce sees no 2xx and retries. (After the
            // answer, the delivery is already settled.)
            Kind::Webhook(n) if !self.deliveries[*n].accepted => self.redeliver(*n, now, rng, plan),
            Kind::Webhook(_) => {}
            Kind::Tick => {}
            Kind::Replay(e, id) => {
                self.pending_replays += 1;
                plan.at(now + 30_000, Event::Replay(*e, id.clone()));
            }
        }
    }
}

/// A webhook delivery was answered; the answer may be lost on its way to BigCommerce.
pub fn answered(st: &mut State<SimWorld>, n: usize, resp: &HttpResponse) {
    let State {
        world,
        rng,
        plan,
        now,
        ..
    } = st;
    let lost = world.chaos && rng.random_bool(world.faults.lost_answer);
    let accepted = resp.status == 200 && contains(&resp.body, b"\"accepted\"");
    if accepted {
        world.deliveries[n].accepted = true;
    }
    if resp.status != 200 || lost {
        // BigCommerce retries a delivery that did not get a 2xx.
        world.redeliver(n, *now, rng, plan);
    }
}

/// The simulated time as a timestamp.
pub fn at(ms: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(ms)
}

/// The `Host` a simulated request runs on: every call is a scheduling point.
pub struct SimHost<'a> {
    pub ctx: &'a Ctx<SimWorld>,
}

type St<'a> = std::sync::MutexGuard<'a, State<SimWorld>>;

impl SimHost<'_> {
    fn enter(&self, op: &str, arg: &str, n: i64) -> St<'_> {
        let mut st = self.ctx.enter(op, arg, n);
        st.world.stats.host_calls += 1;
        st
    }
}

/// `host/path` of a URL, without scheme and query (for the trace).
fn short(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split_once('?').map_or(rest, |(p, _)| p)
}

impl Host for SimHost<'_> {
    fn now(&self) -> DateTime<Utc> {
        let st = self.ctx.peek();
        at(st.now + st.skew[self.ctx.machine])
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        let mut st = self.enter("random", "", buf.len() as i64);
        st.rng.fill_bytes(buf);
    }

    fn config(&mut self, name: &str) -> Option<String> {
        let st = self.enter("config", name, 0);
        st.world.config.get(name).cloned()
    }

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut st = self.enter(request.method.as_str(), short(&request.url), 0);
        let State { world, rng, .. } = &mut *st;
        let (latency, mut fate) = world.draw(rng, request);
        let deadline = UPSTREAM_DEADLINE_MS as i64;
        if latency > deadline {
            // The component gives up on every upstream request at its deadline (the body
            // included), so a stall past it is a timeout then. The request may have reached
            // the upstream and been done before the cut, or not (never a token rotation: as
            // in `draw`, a lost rotation only a human can repair is not what is tested here).
            world.stats.faults += u64::from(fate == Fate::Serve);
            let is_token = request.url.starts_with(OAUTH_BASE);
            fate = match fate {
                Fate::Serve | Fate::Lost if !is_token && rng.random_bool(0.5) => Fate::Lost,
                _ => Fate::NoAnswer,
            };
        }
        let wait = match fate {
            // Unanswered: the component waits out its deadline.
            Fate::NoAnswer | Fate::Lost => deadline,
            _ => latency,
        };
        let until = st.now + wait;
        let mut st = self.ctx.block(st, until);
        let now = st.now;
        let out = match fate {
            Fate::Serve => {
                let out = st.world.serve(request, now);
                if request.url.starts_with(OAUTH_BASE)
                    && out.as_ref().is_ok_and(|r| r.status == 200)
                {
                    st.world.unsaved_rotation.insert(self.ctx.id);
                }
                out
            }
            Fate::Answer(r) => Ok(r),
            Fate::NoAnswer => Err(TransportError::Timeout),
            Fate::Lost => {
                let _ = st.world.serve(request, now);
                Err(TransportError::Timeout)
            }
        };
        let id = self.ctx.id;
        let code = match &out {
            Ok(r) => i64::from(r.status),
            Err(_) => -1,
        };
        st.event(&[now, id as i64, code], || {
            format!(
                "{now:>9} t{id} <- {}",
                match &out {
                    Ok(r) => r.status.to_string(),
                    Err(e) => format!("{e:?}"),
                }
            )
        });
        out
    }

    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let st = self.enter("get", key, 0);
        Ok(st.world.kv.get(key).cloned())
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let mut st = self.enter("set", key, 0);
        st.world.scan(|| format!("KV `{key}`"), value);
        if key == "cred/qbo/tokens" {
            st.world.unsaved_rotation.remove(&self.ctx.id);
        }
        st.world.kv.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        let mut st = self.enter("delete", key, 0);
        st.world.kv.remove(key);
        Ok(())
    }

    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        let mut st = self.enter("incr", key, delta);
        let current = match st.world.kv.get(key) {
            None => 0,
            Some(b) => i64::from_le_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| KvError(format!("`{key}` is not a counter")))?,
            ),
        };
        let sum = current + delta;
        st.world
            .kv
            .insert(key.to_string(), sum.to_le_bytes().to_vec());
        Ok(sum)
    }

    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        let mut st = self.enter("cas", key, 0);
        match st.world.kv.get(key) {
            Some(v) if v.as_slice() == expected => {
                st.world.scan(|| format!("KV `{key}`"), new);
                st.world.kv.insert(key.to_string(), new.to_vec());
                Ok(CasOutcome::Swapped)
            }
            other => Ok(CasOutcome::Conflict(other.cloned())),
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        let st = self.enter("sleep", "", ms as i64);
        let until = st.now + ms as i64;
        drop(self.ctx.block(st, until));
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let mut st = self.enter("log", "", level as i64);
        st.world.scan(|| "a log line".into(), message.as_bytes());
    }
}
