//! Deterministic simulation of the whole protocol (issue 16): several connector instances
//! on machines with skewed clocks, interleaved at every host call over one shared KV, against
//! BigCommerce and QuickBooks models behind a faulty network, with crashes at any host call.
//! One seed fixes everything; [`run`] replays it exactly.
//!
//! A run has a chaos window (faults, crashes, concurrent and repeated deliveries, orders edited
//! in BigCommerce, invoices edited in QuickBooks, access tokens revoked early) followed by a
//! calm period in which the scheduler keeps ticking, BigCommerce keeps retrying deliveries
//! that got no 2xx, and the operator replays what gave up (as its `last_error` says to). The
//! run ends once every record has settled; then the invariants are checked.

#![allow(dead_code)]
// Fault rates are probabilities (never money): the money rule's lint does not apply here.
#![allow(clippy::float_arithmetic)]

pub mod exec;
pub mod world;

use std::collections::{BTreeMap, BTreeSet};

use ml_core::books::mapping::note_has_marker;
use ml_core::http::Request;
use ml_core::routes::router;
use ml_core::sync::record::{Entity, State as RecState, SyncRecord};
use ml_sim::bigcommerce::{OrderShape, generate, shapes};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::common::{ADMIN_TOKEN, STORE_HASH, WEBHOOK_SECRET};
use exec::{Executor, Plan, Spawner, State};
pub use world::{Event, Faults, Kind, Profile, SimHost, SimWorld, Stats};

/// Which guarantee a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// The core panicked.
    Panic,
    /// A credential in plain text in KV or a log line.
    Credential,
    /// A record that never settled (or a run that never did).
    Stuck,
    /// A record that never settled because nothing will ever run it again: `retrying` or
    /// `pending` with no due entry the scheduler will read, `needs_reauth` with no entry in the
    /// parked log, or an accepted event with neither a record nor a due entry.
    Unscheduled,
    /// A record that failed although only transient faults happened.
    Failed,
    /// More than one QuickBooks document for one BigCommerce source.
    Duplicate,
    /// An accepted event with no record or no document.
    Missing,
    /// An invoice whose total does not tie to the order's.
    Totals,
    /// A record and QuickBooks disagree (linked id, customer).
    Link,
    /// `count/{state}` disagrees with the records.
    Counts,
}

/// One broken guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub check: Check,
    pub what: String,
}

fn v(check: Check, what: String) -> Violation {
    Violation { check, what }
}

/// How a run is set up besides its seed.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub profile: Profile,
    /// Print every host call and scheduling decision.
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            profile: Profile::FULL,
            verbose: false,
        }
    }
}

/// What one run did and found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// Digest of the whole trace: equal for two runs of one seed.
    pub digest: u64,
    /// The last lines of the trace.
    pub trace: Vec<String>,
    pub stats: Stats,
    pub steps: u64,
    /// Simulated time the run took (ms).
    pub sim_ms: i64,
    /// One line: what the scenario was.
    pub scenario: String,
    /// The profile's name.
    pub profile: &'static str,
}

impl Outcome {
    /// The violations not in `known`.
    pub fn new_violations(&self, known: &[Check]) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| !known.contains(&v.check))
            .collect()
    }

    /// A failure report: the seed, how to replay it, what broke, the end of the trace.
    pub fn report(&self) -> String {
        let profile = self.profile;
        let mut s = format!(
            "seed {} failed ({}):\n  replay: DST_SEED={} DST_PROFILE={profile} cargo test -p ml-core --test dst -- --ignored replay_one_seed --nocapture\n",
            self.seed, self.scenario, self.seed
        );
        for v in &self.violations {
            s.push_str(&format!("  - [{:?}] {}\n", v.check, v.what));
        }
        s.push_str("  last steps:\n");
        for l in self.trace.iter().rev().take(40).rev() {
            s.push_str(&format!("    {l}\n"));
        }
        s
    }
}

/// Simulated minutes.
const MIN: i64 = 60_000;

/// The run's cast, drawn from the seed.
struct Scenario {
    machines: usize,
    skew: Vec<i64>,
    chaos_ms: i64,
    tick_ms: i64,
    faults: Faults,
    crash_p: f64,
    switch_p: f64,
    /// Order id → its versions in BigCommerce, oldest first, with when each appears.
    orders: BTreeMap<u64, Vec<(i64, Value)>>,
    /// Registered customers (v3 JSON) by id.
    customers: BTreeMap<u64, Value>,
    customer_edits: Vec<(i64, u64)>,
    expire_tokens: Vec<i64>,
    invoice_edits: Vec<(i64, u64)>,
    /// The due cursor starts near now (the connector ran before), or unset (first start).
    warm_cursor: bool,
}

fn draw_scenario(seed: u64, profile: Profile) -> Scenario {
    let mut g = SmallRng::seed_from_u64(seed ^ 0xD57_5CE7_A210);
    let machines = g.random_range(2..=3usize);
    let skew = (0..machines)
        .map(|_| g.random_range(-2_000..=2_000))
        .collect();
    let chaos_ms = g.random_range(5..=20) * MIN;
    let intensity: f64 = [0.0, 0.5, 1.0, 1.5, 2.0][g.random_range(0..5)];
    let faults = Faults {
        server_error: 0.06 * intensity,
        rate_limited: 0.03 * intensity,
        lost_answer: 0.04 * intensity,
        no_answer: 0.02 * intensity,
        slow: 0.05 * intensity,
        slow_max_ms: if profile.long_stalls && g.random_bool(0.5) {
            240_000
        } else {
            12_000
        },
        hostile_retry_after: profile.hostile_retry_after && g.random_bool(0.3),
    };
    let crash_p = if profile.crashes {
        [0.0, 0.002, 0.005, 0.01][g.random_range(0..4)]
    } else {
        0.0
    };
    let switch_p = [0.05, 0.2, 0.5][g.random_range(0..3)];
    let n_orders = g.random_range(1..=4usize);
    let mut orders = BTreeMap::new();
    let mut customers = BTreeMap::new();
    for (k, shape) in shapes(n_orders, g.random()).into_iter().enumerate() {
        let id = 1001 + k as u64;
        let first = generate(id, &shape);
        if let Some(c) = &first.customer
            && let Some(cid) = c["id"].as_u64()
        {
            customers.entry(cid).or_insert_with(|| c.clone());
        }
        let mut versions = Vec::new();
        let mut t = g.random_range(0..chaos_ms * 6 / 10);
        let mut v0 = first.order.clone();
        if g.random_bool(0.15) {
            v0["status_id"] = json!(0);
            v0["status"] = json!("Incomplete");
        }
        versions.push((t, v0));
        for _ in 1..g.random_range(1..=3) {
            t += g.random_range(1_000..5 * MIN);
            let again = generate(
                id,
                &OrderShape {
                    seed: g.random(),
                    ..shape.clone()
                },
            );
            let mut o = again.order;
            // Edited in BigCommerce: same buyer, new lines and amounts.
            for f in ["customer_id", "billing_address", "date_created"] {
                o[f] = first.order[f].clone();
            }
            versions.push((t, o));
        }
        orders.insert(id, versions);
    }
    let mut customer_edits = Vec::new();
    for &cid in customers.keys() {
        if g.random_bool(0.3) {
            customer_edits.push((g.random_range(0..chaos_ms), cid));
        }
    }
    let expire_tokens = (0..g.random_range(0..=1))
        .map(|_| g.random_range(0..chaos_ms))
        .collect();
    let mut invoice_edits = Vec::new();
    for &id in orders.keys() {
        if g.random_bool(0.2) {
            invoice_edits.push((g.random_range(0..chaos_ms), id));
        }
    }
    Scenario {
        machines,
        skew,
        chaos_ms,
        tick_ms: g.random_range(30..=90) * 1_000,
        faults,
        crash_p,
        switch_p,
        orders,
        customers,
        customer_edits,
        expire_tokens,
        invoice_edits,
        warm_cursor: g.random_bool(0.9),
    }
}

impl Scenario {
    fn describe(&self) -> String {
        format!(
            "{} machines, skew {:?} ms, {} orders ({} versions), {} customer edits, chaos {} min, faults 5xx {:.2} 429 {:.2} lost {:.2} none {:.2} slow {:.2}≤{}s{}, crash {}/call, switch {}",
            self.machines,
            self.skew,
            self.orders.len(),
            self.orders.values().map(Vec::len).sum::<usize>(),
            self.customer_edits.len(),
            self.chaos_ms / MIN,
            self.faults.server_error,
            self.faults.rate_limited,
            self.faults.lost_answer,
            self.faults.no_answer,
            self.faults.slow,
            self.faults.slow_max_ms / 1000,
            if self.faults.hostile_retry_after {
                ", hostile Retry-After"
            } else {
                ""
            },
            self.crash_p,
            self.switch_p,
        )
    }
}

/// A BigCommerce webhook delivery body.
fn webhook(d: &world::Delivery) -> Request {
    let kind = match d.entity {
        Entity::Order => "order",
        Entity::Customer => "customer",
    };
    let body = json!({
        "producer": format!("stores/{STORE_HASH}"),
        "scope": d.scope,
        "store_id": "1001",
        "data": {"type": kind, "id": d.id},
        "hash": d.hash,
        "created_at": d.created_at,
    });
    Request {
        method: "POST".into(),
        path_and_query: "/webhooks/bigcommerce".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-ml-webhook-secret".into(), WEBHOOK_SECRET.into()),
        ],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

fn admin(method: &str, path: &str) -> Request {
    Request {
        method: method.into(),
        path_and_query: path.into(),
        headers: vec![("authorization".into(), format!("Bearer {ADMIN_TOKEN}"))],
        body: Vec::new(),
    }
}

/// Plans a new delivery of an event (and sometimes a duplicate of it).
fn plan_delivery(
    st_world: &mut SimWorld,
    rng: &mut SmallRng,
    plan: &mut Plan<Event>,
    now: i64,
    entity: Entity,
    id: u64,
    scope: &str,
) {
    let n = st_world.deliveries.len();
    st_world.deliveries.push(world::Delivery {
        entity,
        id,
        scope: scope.to_string(),
        // BigCommerce's hash covers `data` only: the same for every event of one entity.
        hash: format!("{:040x}", id * 7919 + entity as u64),
        created_at: 1_795_100_000 + now / 1000 + n as i64,
        accepted: false,
        attempts: 0,
    });
    st_world.pending_redeliveries += 1;
    plan.at(now + rng.random_range(0..3_000), Event::Deliver(n));
    if rng.random_bool(0.3) {
        // At-least-once: sometimes the same delivery twice, sometimes at the same instant.
        let dup = if rng.random_bool(0.3) {
            0
        } else {
            rng.random_range(0..120_000)
        };
        st_world.pending_redeliveries += 1;
        plan.at(now + dup, Event::Deliver(n));
    }
}

fn record(w: &SimWorld, entity: Entity, id: &str) -> Option<SyncRecord> {
    w.kv.get(&format!("rec/{entity}/{id}"))
        .and_then(|b| serde_json::from_slice(b).ok())
}

/// The records the run must settle: every entity with an accepted delivery.
fn expected(w: &SimWorld) -> BTreeSet<(Entity, u64)> {
    w.deliveries
        .iter()
        .filter(|d| d.accepted)
        .map(|d| (d.entity, d.id))
        .collect()
}

fn settled(s: RecState) -> bool {
    matches!(s, RecState::Posted | RecState::Skipped | RecState::Failed)
}

/// Runs one seed; a run that breaks something runs once more with its trace kept (the same
/// run: the digests must match).
pub fn run(seed: u64, opts: &Options) -> Outcome {
    let out = run_once(seed, opts, opts.verbose);
    if out.violations.is_empty() || opts.verbose {
        return out;
    }
    let traced = run_once(seed, opts, true);
    assert_eq!(
        traced.digest, out.digest,
        "seed {seed} did not replay identically with its trace on"
    );
    traced
}

fn run_once(seed: u64, opts: &Options, tracing: bool) -> Outcome {
    let sc = draw_scenario(seed, opts.profile);
    let world = SimWorld::new(opts.profile, sc.faults.clone());
    let mut ex = Executor::new(seed, world, sc.skew.clone());
    let chaos_end = sc.chaos_ms;
    let operator_at = chaos_end + 15 * MIN;
    // Past the longest wait the connector allows (a Retry-After is capped at 24 h) plus a backoff.
    let horizon = chaos_end + 26 * 60 * MIN;
    {
        let mut st = ex.state();
        st.crash_p = sc.crash_p;
        st.switch_p = sc.switch_p;
        st.verbose = opts.verbose;
        st.tracing = tracing;
        let State { world, plan, .. } = &mut *st;
        for (cid, c) in &sc.customers {
            world.bc.customers.insert(*cid, c.clone());
        }
        for (id, versions) in &sc.orders {
            world
                .versions
                .insert(*id, versions.iter().map(|(_, v)| v.clone()).collect());
            for (v, (t, _)) in versions.iter().enumerate() {
                plan.at(*t, Event::EditOrder(*id, v));
            }
        }
        for (t, cid) in &sc.customer_edits {
            plan.at(*t, Event::EditCustomer(*cid));
        }
        for t in &sc.expire_tokens {
            plan.at(*t, Event::ExpireAccessTokens);
        }
        for (t, id) in &sc.invoice_edits {
            plan.at(*t, Event::EditInvoiceInQbo(*id));
        }
        plan.at(sc.tick_ms, Event::Tick);
        plan.at(chaos_end, Event::ChaosEnd);
        plan.at(operator_at, Event::Operator);
        if sc.warm_cursor {
            let minute = world::at(0).timestamp().div_euclid(60) - 2;
            world
                .kv
                .insert("due/cursor".into(), minute.to_le_bytes().to_vec());
        }
    }
    let machines = sc.machines;
    let tick_ms = sc.tick_ms;
    let mut on_event = |sp: &mut Spawner<'_, SimWorld>, ev: Event| {
        let now = sp.st.now;
        let machine = sp.st.rng.random_range(0..machines);
        match ev {
            Event::Deliver(n) => {
                let State { world, .. } = &mut *sp.st;
                world.pending_redeliveries -= 1;
                world.deliveries[n].attempts += 1;
                world.stats.deliveries += 1;
                let d = world.deliveries[n].clone();
                if d.accepted && !world.chaos {
                    // Settled while this retry was waiting: BigCommerce stops after a 2xx.
                    return;
                }
                let req = webhook(&d);
                sp.spawn(
                    format!("webhook {} {} #{}", d.scope, d.id, d.attempts),
                    machine,
                    Kind::Webhook(n),
                    move |ctx| {
                        let mut host = SimHost { ctx };
                        let (resp, work) = router::handle(&req, &mut host);
                        world::answered(&mut ctx.peek(), n, &resp);
                        if let Some(w) = work {
                            router::run(w, &mut host);
                        }
                    },
                );
            }
            Event::EditOrder(id, v) => {
                let State {
                    world, rng, plan, ..
                } = &mut *sp.st;
                let order = world.versions[&id][v].clone();
                world.bc.orders.insert(id, order);
                world.current.insert(id, v);
                let scope = if v == 0 {
                    "store/order/created"
                } else if rng.random_bool(0.5) {
                    "store/order/updated"
                } else {
                    "store/order/statusUpdated"
                };
                plan_delivery(world, rng, plan, now, Entity::Order, id, scope);
            }
            Event::EditCustomer(cid) => {
                let State {
                    world, rng, plan, ..
                } = &mut *sp.st;
                if let Some(c) = world.bc.customers.get_mut(&cid) {
                    c["phone"] = json!(format!("555-01{:02}", rng.random_range(0..100)));
                }
                plan_delivery(
                    world,
                    rng,
                    plan,
                    now,
                    Entity::Customer,
                    cid,
                    "store/customer/updated",
                );
            }
            Event::Tick => {
                sp.spawn("retry-due".into(), machine, Kind::Tick, |ctx| {
                    let mut host = SimHost { ctx };
                    let _ = router::handle(&admin("POST", "/admin/retry-due"), &mut host);
                });
                sp.st.plan.at(now + tick_ms, Event::Tick);
            }
            Event::ChaosEnd => {
                sp.st.world.chaos = false;
                sp.st.note(format!("{now:>9} chaos ends"));
            }
            Event::Operator => {
                let mut replays = Vec::new();
                let mut found = Vec::new();
                let w = &sp.st.world;
                for (entity, id) in expected(w) {
                    if let Some(rec) = record(w, entity, &id.to_string())
                        && rec.state == RecState::Failed
                    {
                        let last = rec.last_error.clone().unwrap_or_default();
                        if last.starts_with("gave up after") {
                            replays.push((entity, id.to_string()));
                        } else {
                            found.push(v(
                                Check::Failed,
                                format!("{entity} {id} failed for a reason no transient fault explains: {last}"),
                            ));
                        }
                    }
                }
                sp.st.world.violations.extend(found);
                let w = &mut sp.st.world;
                if w.rotation_lost {
                    // The operator re-authorizes out of band: a new `qbo_refresh_token`.
                    w.reauthorizations += 1;
                    let fresh = format!("RE{:04}rotatedRefreshToken7", w.reauthorizations);
                    w.qbo.valid_refresh.insert(fresh.clone());
                    w.config.insert("qbo_refresh_token".into(), fresh);
                    w.rotation_lost = false;
                    w.last_reauth_at = Some(now);
                    sp.st.note(format!("{now:>9} operator re-authorizes"));
                }
                for (e, id) in replays {
                    sp.st.world.pending_replays += 1;
                    sp.st.plan.at(now, Event::Replay(e, id));
                }
            }
            Event::Replay(entity, id) => {
                sp.st.world.pending_replays -= 1;
                let path = format!("/admin/replay/{entity}/{id}");
                sp.spawn(
                    format!("replay {entity} {id}"),
                    machine,
                    Kind::Replay(entity, id.clone()),
                    move |ctx| {
                        let mut host = SimHost { ctx };
                        let (resp, _) = router::handle(&admin("POST", &path), &mut host);
                        if resp.status != 200 {
                            let mut st = ctx.peek();
                            let now = st.now;
                            st.world.pending_replays += 1;
                            st.plan.at(now + 30_000, Event::Replay(entity, id));
                        }
                    },
                );
            }
            Event::ExpireAccessTokens => {
                if sp.st.world.chaos {
                    sp.st.world.qbo.expire_access_tokens();
                }
            }
            Event::EditInvoiceInQbo(order) => {
                let w = &mut sp.st.world;
                if !w.chaos {
                    return;
                }
                let found = w
                    .qbo
                    .invoices
                    .iter()
                    .find(|(_, inv)| {
                        inv["PrivateNote"]
                            .as_str()
                            .is_some_and(|n| note_has_marker(n, order))
                    })
                    .map(|(id, _)| id.clone());
                if let Some(id) = found {
                    w.qbo.edit_in_quickbooks(&id);
                }
            }
        }
    };
    let mut timed_out = false;
    let mut stop = |st: &mut State<SimWorld>| {
        if st.now > horizon {
            timed_out = true;
            return true;
        }
        let w = &st.world;
        let now = st.now;
        // Settled, or stuck for good: nothing will ever run it again (then only ticks remain,
        // and the checks report it).
        st.now >= operator_at
            && st.live_tasks() == 0
            && w.pending_redeliveries == 0
            && w.pending_replays == 0
            && expected(w).into_iter().all(|(e, id)| {
                let id = id.to_string();
                let Some(r) = record(w, e, &id) else {
                    return live_due_entries(w, e, &id).is_empty();
                };
                settled(r.state)
                    || unscheduled(w, &r)
                    || (r.state == RecState::Retrying
                        && r.next_attempt_at.is_some_and(|t| t > world::at(horizon)))
                    || (r.state == RecState::NeedsReauth
                        && authorization_lost(w)
                        && w.last_reauth_at.is_none_or(|t| now > t + 10 * MIN))
            })
    };
    ex.run(&mut on_event, &mut stop);
    let st = ex.state();
    let mut violations = st.world.violations.clone();
    if timed_out {
        violations.push(v(
            Check::Stuck,
            format!(
                "the run did not settle within {} h of the chaos ending",
                (horizon - chaos_end) / (60 * MIN)
            ),
        ));
    }
    if let Some(reason) = st.abort.as_ref().filter(|r| !r.is_empty()) {
        violations.push(v(Check::Stuck, format!("run aborted: {reason}")));
    }
    violations.extend(st.problems.iter().map(|p| v(Check::Panic, p.clone())));
    violations.extend(check(&st.world, &sc));
    Outcome {
        seed,
        violations,
        digest: st.digest,
        trace: st.trace.iter().cloned().collect(),
        stats: st.world.stats.clone(),
        steps: st.steps,
        sim_ms: st.now,
        scenario: sc.describe(),
        profile: opts.profile.name(),
    }
}

/// Invoice total as QuickBooks computes it from the lines the connector sent.
pub fn invoice_total(inv: &Value) -> Decimal {
    let num = |v: &Value| -> Decimal {
        match v {
            Value::String(s) => s.parse().unwrap_or_default(),
            Value::Number(n) => n.to_string().parse().unwrap_or_default(),
            _ => Decimal::ZERO,
        }
    };
    let mut total = Decimal::ZERO;
    for l in inv["Line"].as_array().into_iter().flatten() {
        match l["DetailType"].as_str() {
            Some("SalesItemLineDetail") => total += num(&l["Amount"]),
            Some("DiscountLineDetail") => total -= num(&l["Amount"]),
            _ => {}
        }
    }
    if let Some(t) = inv.pointer("/TxnTaxDetail/TotalTax") {
        total += num(t);
    }
    total
}

/// The invariants, checked once the run has settled.
fn check(w: &SimWorld, sc: &Scenario) -> Vec<Violation> {
    let mut out = Vec::new();
    for leak in &w.leaks {
        out.push(v(
            Check::Credential,
            format!("credential in plain text: {leak}"),
        ));
    }
    let expected = expected(w);
    let mut by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
    for (entity, id) in &expected {
        let Some(rec) = record(w, *entity, &id.to_string()) else {
            // Its worker died before the first save: only its guard entry can still run it.
            let unscheduled = live_due_entries(w, *entity, &id.to_string()).is_empty();
            out.push(v(
                if unscheduled {
                    Check::Unscheduled
                } else {
                    Check::Missing
                },
                format!(
                    "{entity} {id}: accepted, but no sync record; {}",
                    due_entries_for(w, *entity, &id.to_string())
                ),
            ));
            continue;
        };
        *by_state.entry(rec.state.as_str()).or_default() += 1;
        if !settled(rec.state) {
            out.push(v(
                if unscheduled(w, &rec) {
                    Check::Unscheduled
                } else {
                    Check::Stuck
                },
                format!(
                    "{entity} {id}: stuck in `{}` ({:?}, next attempt {:?}); {}",
                    rec.state.as_str(),
                    rec.last_error,
                    rec.next_attempt_at,
                    due_entries_for(w, *entity, &id.to_string())
                ),
            ));
            continue;
        }
        if rec.state == RecState::Failed {
            out.push(v(
                Check::Failed,
                format!(
                    "{entity} {id}: failed after the faults stopped: {:?}",
                    rec.last_error
                ),
            ));
        }
        if *entity == Entity::Order {
            out.extend(check_order(w, *id, &rec));
        } else if rec.state != RecState::Posted {
            out.push(v(
                Check::Missing,
                format!("customer {id}: `{}`, expected posted", rec.state.as_str()),
            ));
        }
    }
    // Every invoice belongs to exactly one accepted order.
    for (qid, inv) in &w.qbo.invoices {
        let note = inv["PrivateNote"].as_str().unwrap_or_default();
        if !sc
            .orders
            .keys()
            .any(|&o| note_has_marker(note, o) && expected.contains(&(Entity::Order, o)))
        {
            out.push(v(
                Check::Duplicate,
                format!("invoice {qid} belongs to no accepted order: {note:?}"),
            ));
        }
    }
    // One QuickBooks customer per buyer.
    let mut emails: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &w.qbo.customers {
        if let Some(e) = c
            .pointer("/PrimaryEmailAddr/Address")
            .and_then(Value::as_str)
        {
            emails
                .entry(e.to_lowercase())
                .or_default()
                .push(c["Id"].as_str().unwrap_or_default().to_string());
        }
    }
    for (email, ids) in &emails {
        if ids.len() > 1 {
            out.push(v(
                Check::Duplicate,
                format!(
                    "{} QuickBooks customers for one buyer ({email}): {ids:?}",
                    ids.len()
                ),
            ));
        }
    }
    // The status counters agree with the records.
    let mut all_states: BTreeMap<&'static str, i64> = BTreeMap::new();
    for (k, v) in &w.kv {
        if k.starts_with("rec/")
            && let Ok(r) = serde_json::from_slice::<SyncRecord>(v)
        {
            *all_states.entry(r.state.as_str()).or_default() += 1;
        }
    }
    // Every state but `pending` has its counter; `pending` is what is left of the listed
    // records once the slots that list none (`count/unlisted`) and the others are taken off.
    let counted = [
        RecState::Retrying,
        RecState::Posted,
        RecState::Failed,
        RecState::NeedsReauth,
        RecState::Skipped,
    ]
    .map(|s| (s, counter(w, &format!("count/{}", s.as_str()))));
    let pending = counter(w, "log/records/n")
        - counter(w, "count/unlisted")
        - counted.iter().map(|(_, n)| n).sum::<i64>();
    for (s, counter) in std::iter::once((RecState::Pending, pending)).chain(counted) {
        let actual = all_states.get(s.as_str()).copied().unwrap_or(0);
        if counter != actual {
            out.push(v(
                Check::Counts,
                format!(
                    "{} counted {counter} but {actual} records are {}",
                    s.as_str(),
                    s.as_str()
                ),
            ));
        }
    }
    let _ = by_state;
    out
}

fn counter(w: &SimWorld, key: &str) -> i64 {
    w.kv.get(key)
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_le_bytes)
        .unwrap_or(0)
}

/// Due entries of an entity not yet marked done: `(minute, slot)`.
fn open_due_entries(w: &SimWorld, entity: Entity, id: &str) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for (k, val) in w.kv.range::<str, _>((
        std::ops::Bound::Included("due/"),
        std::ops::Bound::Excluded("due0"),
    )) {
        let Some((m, slot)) = k["due/".len()..].split_once('/') else {
            continue;
        };
        let (Ok(m), Ok(slot)) = (m.parse::<i64>(), slot.parse::<i64>()) else {
            continue;
        };
        let Ok(e) = serde_json::from_slice::<ml_core::sync::store::DueEntry>(val) else {
            continue;
        };
        if e.entity == entity && e.id == id && slot > counter(w, &format!("due/{m}/done")) {
            out.push((m, slot));
        }
    }
    out
}

/// The open due entries of an entity in minutes the cursor has not passed: what the
/// scheduler will still read.
fn live_due_entries(w: &SimWorld, entity: Entity, id: &str) -> Vec<(i64, i64)> {
    let cursor = counter(w, "due/cursor");
    open_due_entries(w, entity, id)
        .into_iter()
        .filter(|(m, _)| *m >= cursor)
        .collect()
}

/// The connector believes QuickBooks authorization is lost (only a human can change that;
/// the operator re-authorizes only when a rotated token was really lost).
fn authorization_lost(w: &SimWorld) -> bool {
    w.kv.get("cred/qbo/state")
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .is_some_and(|v| v["needs_reauth"] == json!(true))
}

/// Whether the parked log still lists the entity (not yet resumed).
fn parked(w: &SimWorld, entity: Entity, id: &str) -> bool {
    let done = counter(w, "log/parked/done");
    (done + 1..=counter(w, "log/parked/n")).any(|i| {
        w.kv.get(&format!("log/parked/{i}"))
            .and_then(|b| serde_json::from_slice::<ml_core::sync::store::EntityRef>(b).ok())
            .is_some_and(|r| r.entity == entity && r.id == id)
    })
}

/// Nothing will ever run this unsettled record again (short of a new webhook or a replay).
fn unscheduled(w: &SimWorld, rec: &SyncRecord) -> bool {
    match rec.state {
        RecState::Retrying | RecState::Pending => {
            live_due_entries(w, rec.entity, &rec.id).is_empty()
        }
        RecState::NeedsReauth => {
            !parked(w, rec.entity, &rec.id) && live_due_entries(w, rec.entity, &rec.id).is_empty()
        }
        _ => false,
    }
}

/// Where the scheduler could still find an entity, in words.
fn due_entries_for(w: &SimWorld, entity: Entity, id: &str) -> String {
    let cursor = counter(w, "due/cursor");
    let (live, behind): (Vec<_>, Vec<_>) = open_due_entries(w, entity, id)
        .into_iter()
        .partition(|(m, _)| *m >= cursor);
    if live.is_empty() {
        format!(
            "no due entry the scheduler will read (cursor at minute {cursor}; open entries behind it: {behind:?})"
        )
    } else {
        format!("due entries {live:?} are waiting")
    }
}

fn check_order(w: &SimWorld, id: u64, rec: &SyncRecord) -> Vec<Violation> {
    let mut out = Vec::new();
    let order = &w.bc.orders[&id];
    let invoices: Vec<(&String, &Value)> = w
        .qbo
        .invoices
        .iter()
        .filter(|(_, inv)| {
            inv["PrivateNote"]
                .as_str()
                .is_some_and(|n| note_has_marker(n, id))
        })
        .collect();
    let incomplete = order["status_id"] == json!(0);
    if incomplete {
        if rec.state != RecState::Skipped || !invoices.is_empty() {
            out.push(v(
                if invoices.is_empty() { Check::Missing } else { Check::Duplicate },
                format!(
                    "order {id} is incomplete in BigCommerce: expected skipped and no invoice, got `{}` and {} invoice(s)",
                    rec.state.as_str(),
                    invoices.len()
                ),
            ));
        }
        return out;
    }
    if rec.state != RecState::Posted {
        out.push(v(
            Check::Missing,
            format!(
                "order {id}: `{}`, expected posted ({:?})",
                rec.state.as_str(),
                rec.reason
            ),
        ));
    }
    match invoices.as_slice() {
        [] => out.push(v(
            Check::Missing,
            format!("order {id}: no invoice in QuickBooks"),
        )),
        [(qid, inv)] => {
            if rec.qbo_id.as_deref() != Some(qid.as_str()) {
                out.push(v(
                    Check::Link,
                    format!(
                        "order {id}: record links invoice {:?}, QuickBooks has {qid}",
                        rec.qbo_id
                    ),
                ));
            }
            let expected: Decimal = order["total_inc_tax"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            let got = invoice_total(inv);
            if got != expected.round_dp(2) {
                let ver = w.current.get(&id).copied().unwrap_or(0);
                out.push(v(
                    Check::Totals,
                    format!(
                        "order {id}: invoice {qid} totals {got}, the order (version {ver}) totals {}",
                        expected.round_dp(2)
                    ),
                ));
            }
            if inv["DocNumber"] != json!(id.to_string()) {
                out.push(v(
                    Check::Link,
                    format!("order {id}: invoice DocNumber {}", inv["DocNumber"]),
                ));
            }
            let cref = inv.pointer("/CustomerRef/value").and_then(Value::as_str);
            let email = order
                .pointer("/billing_address/email")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            match w.qbo.customers.iter().find(|c| c["Id"].as_str() == cref) {
                None => out.push(v(
                    Check::Link,
                    format!("order {id}: invoice {qid} names customer {cref:?}, which QuickBooks does not have"),
                )),
                Some(c) => {
                    let theirs = c
                        .pointer("/PrimaryEmailAddr/Address")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_lowercase();
                    if !email.is_empty() && theirs != email {
                        out.push(v(
                            Check::Link,
                            format!("order {id}: invoice {qid} is for {theirs:?}, the buyer is {email:?}"),
                        ));
                    }
                }
            }
        }
        many => out.push(v(
            Check::Duplicate,
            format!(
                "order {id}: {} invoices in QuickBooks ({:?})",
                many.len(),
                many.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>()
            ),
        )),
    }
    out
}
