//! Leases held while work runs: short, renewed between steps, and re-checked before every
//! write, so a worker that dies blocks nobody for long and a worker that stalled past its
//! lease can never write over the work of the one that took over (CONTRACT §5).
//!
//! A [`Held`] lease is renewed with a compare-and-swap of the holder's own 8-byte value
//! (see [`store::renew`]); a failed swap means someone else took the key, and the holder must
//! stop. [`LeasedHost`] wraps the host a job runs on and does this between steps: before
//! every upstream request (every QuickBooks write included) and during long waits. Saving the
//! record checks the lease the same way ([`Held::renew`], called by `jobs::Job::save`).
//!
//! Timing: the lease outlives any single step. Every upstream request ends within
//! [`crate::http::UPSTREAM_DEADLINE_MS`] (the component enforces it), every wait for another
//! lease is bounded below the TTL too, and the lease is renewed between them, so a live worker
//! never loses its lease while a dead one frees it within one TTL.

use std::cell::RefCell;
use std::rc::Rc;

use chrono::{DateTime, Utc};

use crate::host::{Host, KvError, LogLevel};
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::sync::store::{self, LeaseGuard};

/// What a lease must have left, beyond one upstream request's deadline, for a recent
/// renewal to stand as proof that it is still ours (the key-value calls around the step).
pub const PROOF_MARGIN_MS: i64 = 3_000;

/// Why held work must stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds the key now: this worker outlived its lease.
    #[error(
        "the lease `{0}` expired while this worker ran and another worker took over: this run stops \
         without writing anything"
    )]
    Lost(String),
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// A lease this worker holds, with what it takes to keep it.
#[derive(Debug)]
pub struct Held {
    guard: LeaseGuard,
    ttl_ms: i64,
    renewed_at: DateTime<Utc>,
    lost: bool,
}

/// A held lease shared by the job's host wrapper and its record.
pub type SharedLease = Rc<RefCell<Held>>;

impl Held {
    /// Wraps a lease just taken with `ttl_ms`.
    pub fn new(guard: LeaseGuard, ttl_ms: i64, now: DateTime<Utc>) -> SharedLease {
        Rc::new(RefCell::new(Held {
            guard,
            ttl_ms,
            renewed_at: now,
            lost: false,
        }))
    }

    /// Extends the lease to a full TTL from now, which also proves it is still ours.
    pub fn renew(&mut self, host: &mut dyn Host) -> Result<(), LeaseError> {
        if self.lost {
            return Err(LeaseError::Lost(self.guard.key().to_string()));
        }
        let now = host.now();
        if store::renew(host, &mut self.guard, self.ttl_ms)? {
            self.renewed_at = now;
            Ok(())
        } else {
            self.lost = true;
            host.log(
                LogLevel::Warn,
                &format!(
                    "lease `{}` was lost (this worker stalled past it): stopping without writing",
                    self.guard.key()
                ),
            );
            Err(LeaseError::Lost(self.guard.key().to_string()))
        }
    }

    /// Proves the lease is still ours for at least one more step: renews it, unless it was
    /// taken or renewed so recently that what is left of it outlasts the longest step
    /// ([`crate::http::UPSTREAM_DEADLINE_MS`] plus [`PROOF_MARGIN_MS`]) — then the earlier
    /// renewal is the proof, and no key-value round trip is needed. Nobody can take an
    /// unexpired lease, so this is as strong as renewing now.
    pub fn ensure(&mut self, host: &mut dyn Host) -> Result<(), LeaseError> {
        if self.lost {
            return Err(LeaseError::Lost(self.guard.key().to_string()));
        }
        let age = (host.now() - self.renewed_at).num_milliseconds();
        if (0..self.fresh_ms()).contains(&age) {
            return Ok(());
        }
        self.renew(host)
    }

    /// How long after a renewal the lease still outlasts one more step.
    fn fresh_ms(&self) -> i64 {
        self.ttl_ms - crate::http::UPSTREAM_DEADLINE_MS as i64 - PROOF_MARGIN_MS
    }

    /// Renews when a quarter of the TTL has passed since the last renewal (for waits).
    pub(crate) fn renew_if_aging(&mut self, host: &mut dyn Host) {
        let age = (host.now() - self.renewed_at).num_milliseconds();
        if !self.lost && age >= self.ttl_ms / 4 {
            let _ = self.renew(host);
        }
    }

    /// Whether another worker took the lease.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// The guard to release.
    pub fn guard(&self) -> &LeaseGuard {
        &self.guard
    }
}

/// Releases a held lease unless it was lost (a lost key belongs to someone else now).
pub fn release(host: &mut dyn Host, held: &SharedLease) -> Result<(), KvError> {
    let free = release_later(host, held)?;
    store::write_together(host, free)
}

/// [`release`], handing back the plain write that gives the lease back instead of making it
/// (`store::release_later`): the caller makes it at once, with the others it has.
pub fn release_later(
    host: &mut dyn Host,
    held: &SharedLease,
) -> Result<Option<store::Write>, KvError> {
    let held = held.borrow();
    if held.lost {
        return Ok(None);
    }
    store::release_later(host, held.guard.clone(), held.renewed_at, held.ttl_ms)
}

/// The host a job runs on while it holds a lease: every upstream request first renews the
/// lease (so a write never leaves without proof the lease is still ours), and long waits renew
/// it too. Everything else goes straight to the host underneath.
pub struct LeasedHost<'h> {
    inner: &'h mut dyn Host,
    lease: SharedLease,
}

impl<'h> LeasedHost<'h> {
    pub fn new(inner: &'h mut dyn Host, lease: SharedLease) -> Self {
        LeasedHost { inner, lease }
    }
}

impl Host for LeasedHost<'_> {
    crate::host::pass_through_to_inner!();

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let renewed = self.lease.borrow_mut().ensure(self.inner);
        if let Err(e) = renewed {
            // Nothing leaves once the lease is gone: the caller's failure is never saved either.
            return Err(TransportError::Other(e.to_string()));
        }
        self.inner.http(request)
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms);
        self.lease.borrow_mut().renew_if_aging(self.inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::token::Lease;
    use crate::testing::FakeHost;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn every_lease_outlives_one_step_and_a_dead_workers_lease_ends_well_within_a_minute() {
        use crate::http::{
            UPSTREAM_CONNECT_TIMEOUT_MS, UPSTREAM_DEADLINE_MS, UPSTREAM_FIRST_BYTE_TIMEOUT_MS,
        };
        const {
            assert!(
                UPSTREAM_CONNECT_TIMEOUT_MS + UPSTREAM_FIRST_BYTE_TIMEOUT_MS
                    <= UPSTREAM_DEADLINE_MS
            )
        };
        // A step is one upstream request (renewed before it) or one wait (renewed during it);
        // a few seconds of margin cover the KV calls around it.
        for ttl in [store::ENTITY_LEASE_MS, crate::sync::resolve::LINK_LEASE_MS] {
            assert!(ttl >= UPSTREAM_DEADLINE_MS as i64 + 5_000, "{ttl}");
        }
        // CONTRACT §5: posted within 60 s of the host running again — the dead worker's lease,
        // then a scheduler tick (15 s) and the run itself.
        const { assert!(store::ENTITY_LEASE_MS + 15_000 + UPSTREAM_DEADLINE_MS as i64 <= 60_000) };
    }

    #[test]
    fn renewing_extends_the_lease_and_fails_once_someone_else_took_it() {
        let mut h = FakeHost::new(t0());
        let guard = store::try_acquire(&mut h, "lease/x", 20_000)
            .unwrap()
            .unwrap();
        let held = Held::new(guard, 20_000, h.now);
        h.advance(chrono::Duration::seconds(15));
        held.borrow_mut().renew(&mut h).unwrap();
        let stored = Lease::decode(&h.kv["lease/x"]).unwrap().unwrap();
        assert_eq!(stored.expires_at_ms, (t0().timestamp_millis()) + 35_000);
        // Past the TTL with no renewal, another worker takes it.
        h.advance(chrono::Duration::seconds(21));
        assert!(
            store::try_acquire(&mut h, "lease/x", 20_000)
                .unwrap()
                .is_some()
        );
        let err = held.borrow_mut().renew(&mut h).unwrap_err();
        assert!(matches!(err, LeaseError::Lost(_)), "{err}");
        assert!(held.borrow().is_lost());
        // Releasing a lost lease leaves the new holder alone.
        let before = h.kv["lease/x"].clone();
        release(&mut h, &held).unwrap();
        assert_eq!(h.kv["lease/x"], before);
    }

    #[test]
    fn a_leased_host_sends_nothing_once_the_lease_is_lost() {
        let mut h = FakeHost::new(t0());
        h.route("http://up.test", |_| Ok(HttpResponse::new(200, "ok")));
        let guard = store::try_acquire(&mut h, "lease/y", 20_000)
            .unwrap()
            .unwrap();
        let held = Held::new(guard, 20_000, h.now);
        {
            let mut leased = LeasedHost::new(&mut h, held.clone());
            let req = HttpRequest::new(crate::http::Method::Get, "http://up.test/a");
            assert!(leased.http(&req).is_ok());
        }
        h.advance(chrono::Duration::seconds(25));
        store::try_acquire(&mut h, "lease/y", 20_000)
            .unwrap()
            .unwrap();
        let mut leased = LeasedHost::new(&mut h, held.clone());
        let req = HttpRequest::new(crate::http::Method::Get, "http://up.test/b");
        assert!(leased.http(&req).is_err());
        assert_eq!(h.calls_to("/b"), 0, "the request never left");
    }

    #[test]
    fn long_waits_renew_the_lease() {
        let mut h = FakeHost::new(t0());
        let guard = store::try_acquire(&mut h, "lease/z", 20_000)
            .unwrap()
            .unwrap();
        let held = Held::new(guard, 20_000, h.now);
        let mut leased = LeasedHost::new(&mut h, held.clone());
        for _ in 0..300 {
            leased.sleep_ms(200); // 60 s in all
        }
        drop(leased);
        let stored = Lease::decode(&h.kv["lease/z"]).unwrap().unwrap();
        assert!(stored.expires_at_ms > h.now.timestamp_millis() + 10_000);
        assert!(!held.borrow().is_lost());
    }
}
