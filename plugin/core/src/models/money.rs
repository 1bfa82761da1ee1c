//! Exact money.
//!
//! BigCommerce sends amounts as strings with four decimals (`"62.6793"`), sometimes as
//! numbers, `""` or `null`; QuickBooks wants JSON numbers with two decimals. [`Money`] is a
//! newtype over [`rust_decimal::Decimal`] so no amount ever passes through binary floating
//! point arithmetic.
//!
//! Rounding to cents is half away from zero ([`Money::round_cents`]): that is the commercial
//! rounding BigCommerce uses when it displays its 4-decimal amounts and the rounding QuickBooks
//! applies to `Qty × UnitPrice`. Banker's rounding (half to even) would disagree with both on
//! every `x.xx5` amount and leave cent differences between the two systems.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Neg, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An exact amount of money in some currency (the currency travels separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Wraps a decimal amount.
    pub const fn new(amount: Decimal) -> Self {
        Money(amount)
    }

    /// An amount of whole cents (`Money::from_cents(1234)` is 12.34).
    pub fn from_cents(cents: i64) -> Self {
        Money(Decimal::new(cents, 2))
    }

    /// The underlying decimal.
    pub const fn amount(self) -> Decimal {
        self.0
    }

    /// Rounded to cents, half away from zero (see the module docs for why).
    pub fn round_cents(self) -> Self {
        Money(round2(self.0))
    }

    /// Whether the amount is exactly zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Whether the amount is below zero.
    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// The absolute value.
    pub fn abs(self) -> Self {
        Money(self.0.abs())
    }

    /// Parses a BigCommerce-style amount: surrounding blanks ignored, `""` is zero.
    pub fn parse_lenient(s: &str) -> Result<Self, MoneyParseError> {
        let t = s.trim();
        if t.is_empty() {
            return Ok(Money::ZERO);
        }
        parse_decimal(t)
            .map(Money)
            .ok_or_else(|| MoneyParseError(s.to_string()))
    }

    /// The amount as QuickBooks writes it: exactly two decimals (`"12.50"`).
    pub fn to_qbo_string(self) -> String {
        format!("{:.2}", round2(self.0))
    }
}

/// Largest amount (and quantity or rate) the connector reads: 10^15. Every number read from
/// outside is checked against it at the boundary (see [`LenientDecimal`]), so sums and products
/// of the amounts of one order stay far inside `Decimal`'s range (about 7.9 × 10^28) and can
/// never overflow; the arithmetic that combines them is checked as well
/// ([`Money::checked_add`] and friends) and turns an overflow into an error, never a panic.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

/// A computation whose result does not fit an exact amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amounts too large to add up exactly ({0})")]
pub struct MoneyOverflow(pub String);

impl Money {
    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: Money) -> Option<Money> {
        self.0.checked_add(rhs.0).map(Money)
    }

    /// `self − rhs`, or `None` on overflow.
    pub fn checked_sub(self, rhs: Money) -> Option<Money> {
        self.0.checked_sub(rhs.0).map(Money)
    }

    /// `self × rhs`, or `None` on overflow.
    pub fn checked_mul(self, rhs: Decimal) -> Option<Money> {
        self.0.checked_mul(rhs).map(Money)
    }

    /// The sum of `amounts`, or `None` on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(amounts: I) -> Option<Money> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }
}

fn bounded<E: de::Error>(d: Decimal) -> Result<Option<Decimal>, E> {
    if d.abs() > MAX_AMOUNT {
        return Err(E::custom(format!(
            "{d} is too large: the connector reads amounts up to 10^15; check the value at its source"
        )));
    }
    Ok(Some(d))
}

/// Rounds a decimal to two places, half away from zero.
pub fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Parses a decimal written in plain or scientific notation.
fn parse_decimal(t: &str) -> Option<Decimal> {
    Decimal::from_str(t)
        .ok()
        .or_else(|| Decimal::from_scientific(t).ok())
}

/// A text that is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an amount of money: expected a decimal number such as \"12.50\"")]
pub struct MoneyParseError(pub String);

impl FromStr for Money {
    type Err = MoneyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse_lenient(s)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always show at least cents so messages read like money ("5.00", "62.6793").
        let d = self.0.normalize();
        if d.scale() < 2 {
            write!(f, "{:.2}", d)
        } else {
            write!(f, "{}", d)
        }
    }
}

impl From<Decimal> for Money {
    fn from(d: Decimal) -> Self {
        Money(d)
    }
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Self {
        m.0
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        self.0 -= rhs.0;
    }
}

impl Mul<Decimal> for Money {
    type Output = Money;
    fn mul(self, rhs: Decimal) -> Money {
        Money(self.0 * rhs)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + *b)
    }
}

/// Serialized as a JSON number with exactly two decimals (`12.50`), the way QuickBooks writes
/// amounts. The digits are written verbatim (a raw JSON value), never through `f64`.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_number_text(self.to_qbo_string(), serializer)
    }
}

/// Accepts a string (`"12.5000"`, `""` = zero), an integer, a float, or `null` (= zero).
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(LenientDecimal)
            .map(|d| Money(d.unwrap_or_default()))
    }
}

/// Writes decimal digits as a raw JSON number.
fn serialize_number_text<S: Serializer>(text: String, serializer: S) -> Result<S::Ok, S::Error> {
    let raw = serde_json::value::RawValue::from_string(text).map_err(serde::ser::Error::custom)?;
    raw.serialize(serializer)
}

/// Visitor behind every lenient amount: `None` for `""`/`null`/`{}`.
struct LenientDecimal;

impl<'de> Visitor<'de> for LenientDecimal {
    type Value = Option<Decimal>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an amount as a decimal string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        parse_decimal(t)
            .ok_or_else(|| E::custom(format!("'{v}' is not a decimal amount")))
            .and_then(bounded)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        bounded(Decimal::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        bounded(Decimal::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json (without `arbitrary_precision`) hands JSON numbers with a fraction over as
        // the nearest f64. Its shortest round-trip text is exactly the text that was sent for any
        // amount of at most 15 significant digits, so go through that text, never through
        // float arithmetic.
        if !v.is_finite() {
            return Err(E::custom("amount is not a finite number"));
        }
        let text = format!("{v}");
        parse_decimal(&text)
            .ok_or_else(|| E::custom(format!("{text} is not a decimal amount")))
            .and_then(bounded)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LenientDecimal)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // `{}` stands for "no value" in some BigCommerce fields; anything else in an object
        // is not an amount.
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("expected an amount, found an object"));
        }
        Ok(None)
    }
}

/// Serde helpers for `Option<Money>` where `""`, `null`, `{}` and a missing key mean `None`.
///
/// Use with `#[serde(default, with = "crate::models::money::opt")]`.
pub mod opt {
    use super::*;

    /// Deserializes leniently; blanks become `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Money>, D::Error> {
        d.deserialize_any(LenientDecimal).map(|o| o.map(Money))
    }

    /// Serializes `None` as `null`, amounts as 2-decimal numbers.
    pub fn serialize<S: Serializer>(v: &Option<Money>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(m) => m.serialize(s),
            None => s.serialize_none(),
        }
    }
}

/// Serde helpers for `Option<Money>` written as a 2-decimal string (`"82.62"`), the way the
/// sync record shows amounts; reads leniently like [`opt`].
///
/// Use with `#[serde(default, with = "crate::models::money::opt_string")]`.
pub mod opt_string {
    use super::*;

    /// Deserializes leniently; blanks become `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Money>, D::Error> {
        d.deserialize_any(LenientDecimal).map(|o| o.map(Money))
    }

    /// `"82.62"`, or `null`.
    pub fn serialize<S: Serializer>(v: &Option<Money>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(m) => s.serialize_str(&m.to_qbo_string()),
            None => s.serialize_none(),
        }
    }
}

/// Serde helpers for plain [`Decimal`] quantities and unit prices that QuickBooks wants as
/// JSON numbers with however many decimals they carry (`UnitPrice: 3.3333333`).
///
/// Use with `#[serde(with = "crate::models::money::decimal_number")]`.
pub mod decimal_number {
    use super::*;

    /// Writes the decimal's digits (trailing zeros dropped) as a raw JSON number.
    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        serialize_number_text(v.normalize().to_string(), s)
    }

    /// Accepts numbers or numeric strings; blanks are zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(LenientDecimal)
            .map(Option::unwrap_or_default)
    }

    /// The same for `Option<Decimal>` fields (`#[serde(default, with = "...::option")]`).
    pub mod option {
        use super::*;

        /// `None` is skipped by the caller (`skip_serializing_if`) or written as `null`.
        pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        /// Blanks become `None`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            d.deserialize_any(LenientDecimal)
        }
    }
}

/// `dec!(12.5)` for tests: a decimal literal without going through floats.
#[cfg(test)]
macro_rules! dec {
    ($($t:tt)+) => {
        <rust_decimal::Decimal as std::str::FromStr>::from_str(
            &stringify!($($t)+).replace(' ', ""),
        )
        .unwrap()
    };
}
#[cfg(test)]
pub(crate) use dec;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_beyond_ten_to_the_fifteen_are_refused_where_they_are_read() {
        #[derive(serde::Deserialize)]
        struct A {
            #[allow(dead_code)]
            v: Money,
        }
        for ok in [
            r#"{"v": "1000000000000000"}"#,
            r#"{"v": -1000000000000000}"#,
            r#"{"v": "0.0000001"}"#,
        ] {
            assert!(serde_json::from_str::<A>(ok).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"v": "1000000000000000.01"}"#,
            r#"{"v": "79228162514264337593543950335"}"#,
            r#"{"v": "1e27"}"#,
            r#"{"v": 18446744073709551615}"#,
        ] {
            let err = serde_json::from_str::<A>(bad).err().expect(bad).to_string();
            assert!(err.contains("too large"), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<A>(r#"{"v": -1e300}"#).is_err());
    }

    #[test]
    fn checked_arithmetic_reports_overflow_instead_of_panicking() {
        let max = Money::new(Decimal::MAX);
        // (Adding a cent to the largest value rounds away; a whole unit overflows.)
        assert_eq!(max.checked_add(Money::new(Decimal::ONE)), None);
        assert_eq!(
            Money::new(Decimal::MIN).checked_sub(Money::new(Decimal::ONE)),
            None
        );
        assert_eq!(max.checked_mul(Decimal::TWO), None);
        assert_eq!(Money::checked_sum([max, max]), None);
        assert_eq!(
            Money::checked_sum([Money::from_cents(150), Money::from_cents(250)]),
            Some(Money::from_cents(400))
        );
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000_000u64));
    }

    #[test]
    fn bigcommerce_strings_numbers_and_blanks_all_parse() {
        let v: Vec<Money> =
            serde_json::from_str(r#"["12.5000", 8, 4.25, "", null, {}, " 1.10 ", "-3.0050"]"#)
                .unwrap();
        assert_eq!(
            v,
            vec![
                Money::new(dec!(12.5)),
                Money::new(dec!(8)),
                Money::new(dec!(4.25)),
                Money::ZERO,
                Money::ZERO,
                Money::ZERO,
                Money::new(dec!(1.10)),
                Money::new(dec!(-3.005)),
            ]
        );
    }

    #[test]
    fn garbage_is_rejected_with_a_message() {
        let err = serde_json::from_str::<Money>(r#""twelve""#).unwrap_err();
        assert!(
            err.to_string().contains("'twelve' is not a decimal amount"),
            "{err}"
        );
        assert!(serde_json::from_str::<Money>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn optional_amounts_treat_blanks_as_absent() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, with = "opt")]
            a: Option<Money>,
            #[serde(default, with = "opt")]
            b: Option<Money>,
            #[serde(default, with = "opt")]
            c: Option<Money>,
            #[serde(default, with = "opt")]
            d: Option<Money>,
        }
        let t: T = serde_json::from_str(r#"{"a":"","b":null,"c":"2.5000"}"#).unwrap();
        assert_eq!(
            (t.a, t.b, t.c, t.d),
            (None, None, Some(Money::new(dec!(2.5))), None)
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(
            Money::new(dec!(2.005)).round_cents(),
            Money::new(dec!(2.01))
        );
        assert_eq!(
            Money::new(dec!(-2.005)).round_cents(),
            Money::new(dec!(-2.01))
        );
        assert_eq!(
            Money::new(dec!(2.0049)).round_cents(),
            Money::new(dec!(2.00))
        );
        assert_eq!(
            Money::new(dec!(0.125)).round_cents(),
            Money::new(dec!(0.13))
        );
    }

    #[test]
    fn qbo_serialization_is_a_number_with_two_decimals() {
        let v = vec![
            Money::new(dec!(12.5)),
            Money::new(dec!(3)),
            Money::new(dec!(-0.005)),
        ];
        assert_eq!(serde_json::to_string(&v).unwrap(), "[12.50,3.00,-0.01]");
        // Into a Value the number survives too (as the same numeric value).
        let as_value = serde_json::to_value(Money::new(dec!(12.5))).unwrap();
        assert_eq!(as_value, serde_json::json!(12.5));
    }

    #[test]
    fn unit_prices_keep_their_decimals() {
        #[derive(Serialize)]
        struct P {
            #[serde(with = "decimal_number")]
            p: Decimal,
        }
        let s = serde_json::to_string(&P {
            p: dec!(3.33333330),
        })
        .unwrap();
        assert_eq!(s, r#"{"p":3.3333333}"#);
    }

    #[test]
    fn arithmetic_is_exact() {
        let parts: Vec<Money> = ["0.1", "0.2", "0.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let total: Money = parts.iter().sum();
        assert_eq!(total, Money::new(dec!(0.6)));
        assert_eq!(total - Money::new(dec!(0.6)), Money::ZERO);
        assert_eq!((-total).abs(), total);
        assert_eq!(Money::from_cents(1234).to_string(), "12.34");
        assert_eq!(Money::new(dec!(62.6793)).to_string(), "62.6793");
        assert_eq!(Money::new(dec!(5)).to_string(), "5.00");
    }
}
