//! Invoice dates: an order is booked on its calendar day in the store's time zone (CONTRACT
//! §11), so an evening order in California lands on its own day, not the next UTC day.
//!
//! The zone is the `store_timezone` variable when set, else the store's own setting
//! (`GET /v2/store` → `timezone.name`); the job chooses and passes it in ([`StoreFacts`]).
//!
//! Zones come from jiff's bundled copy of the IANA database (no file is read: the core stays
//! sans-IO), with each zone's full history, so an order backfilled from before a zone changed
//! its rules is dated by the rules of its day. jiff rather than chrono-tz: the same data cost
//! the component about 1 MB through chrono-tz and about 0.4 MB through jiff.

use chrono::{DateTime, NaiveDate, Utc};
use jiff::tz::TimeZone as Tz;

use crate::books::mapping::error::MappingError;

/// What the store says about itself that the books need: its time zone and default currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFacts {
    /// The zone orders are dated in.
    pub zone: Tz,
    /// The store's default currency (`/v2/store` → `currency`, or the order's
    /// `store_default_currency_code`), upper-case; empty when unknown.
    pub default_currency: String,
}

impl Default for StoreFacts {
    /// UTC and an unknown default currency (what the core assumed before store facts existed).
    fn default() -> Self {
        StoreFacts {
            zone: Tz::UTC,
            default_currency: String::new(),
        }
    }
}

/// Where a time zone name came from, for the error that names what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSource {
    /// The `store_timezone` variable.
    Variable,
    /// BigCommerce's store setting (`GET /v2/store`).
    Store,
}

/// Parses an IANA zone name (`America/Los_Angeles`); an unknown name says what to set.
pub fn parse_zone(name: &str, source: ZoneSource) -> Result<Tz, MappingError> {
    let trimmed = name.trim();
    Tz::get(trimmed).map_err(|_| MappingError::UnknownTimeZone {
        name: trimmed.to_string(),
        from: source,
    })
}

/// The calendar day of `created` in `zone`: the invoice's `TxnDate`.
pub fn txn_date(created: DateTime<Utc>, zone: &Tz) -> NaiveDate {
    let utc_day = created.date_naive();
    // jiff's range (years -9999..=9999) holds every order date; outside it, the UTC day.
    let Ok(at) = jiff::Timestamp::new(created.timestamp(), 0) else {
        return utc_day;
    };
    let local = zone.to_datetime(at).date();
    NaiveDate::from_ymd_opt(
        i32::from(local.year()),
        u32::from(local.month().unsigned_abs()),
        u32::from(local.day().unsigned_abs()),
    )
    .unwrap_or(utc_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc2822(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_evening_order_in_california_is_booked_on_its_own_day() {
        // 20:30 in Los Angeles on 14 March (PDT, UTC−7) is 03:30 UTC on the 15th.
        let created = at("Sat, 15 Mar 2025 03:30:00 +0000");
        let la = parse_zone("America/Los_Angeles", ZoneSource::Variable).unwrap();
        assert_eq!(
            txn_date(created, &la),
            NaiveDate::from_ymd_opt(2025, 3, 14).unwrap()
        );
        assert_eq!(
            txn_date(created, &Tz::UTC),
            NaiveDate::from_ymd_opt(2025, 3, 15).unwrap()
        );
    }

    #[test]
    fn a_winter_evening_uses_standard_time() {
        // 23:59 PST (UTC−8) on 31 December is 07:59 UTC on 1 January: still last year's books.
        let created = at("Wed, 01 Jan 2025 07:59:00 +0000");
        let la = parse_zone("America/Los_Angeles", ZoneSource::Store).unwrap();
        assert_eq!(
            txn_date(created, &la),
            NaiveDate::from_ymd_opt(2024, 12, 31).unwrap()
        );
        // One minute later it is 1 January in California too.
        let created = at("Wed, 01 Jan 2025 08:00:00 +0000");
        assert_eq!(
            txn_date(created, &la),
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
        );
    }

    #[test]
    fn a_zone_east_of_utc_moves_a_late_utc_order_to_the_next_day() {
        let created = at("Mon, 06 Jan 2025 23:30:00 +0000");
        let sydney = parse_zone(" Australia/Sydney ", ZoneSource::Variable).unwrap();
        assert_eq!(
            txn_date(created, &sydney),
            NaiveDate::from_ymd_opt(2025, 1, 7).unwrap()
        );
    }

    #[test]
    fn a_zone_that_does_not_parse_names_itself_and_what_to_set() {
        let e = parse_zone("Pacific Time", ZoneSource::Variable).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("'Pacific Time'"), "{msg}");
        assert!(msg.contains("store_timezone"), "{msg}");
        let e = parse_zone("Mars/Olympus", ZoneSource::Store).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("'Mars/Olympus'"), "{msg}");
        assert!(msg.contains("BigCommerce"), "{msg}");
    }
}
