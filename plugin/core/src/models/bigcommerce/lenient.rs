//! Lenient field decoders for what BigCommerce actually sends.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

struct U64Visitor;
impl<'de> Visitor<'de> for U64Visitor {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer (or its text)")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("{v} is negative")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // Integers sometimes arrive as `4.0`; only whole values are accepted.
        let text = format!("{v}");
        let whole = text.strip_suffix(".0").unwrap_or(&text);
        whole
            .parse()
            .map(Some)
            .map_err(|_| E::custom(format!("{v} is not a whole number")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse()
            .map(Some)
            .map_err(|_| E::custom(format!("'{v}' is not an integer")))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(u64::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(U64Visitor)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        if m.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("expected an integer, found an object"));
        }
        Ok(None)
    }
}

/// Integer from a number or numeric string; blanks are 0.
pub fn u64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(U64Visitor).map(Option::unwrap_or_default)
}

/// Integer from a number or numeric string; blanks are `None`.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(U64Visitor)
}

struct StringVisitor;
impl<'de> Visitor<'de> for StringVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(format!("{v}"))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(StringVisitor)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<String, A::Error> {
        // `{}` (e.g. `credit_card_type`) and other objects carry no text we use.
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(String::new())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<String, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(String::new())
    }
}

/// Text from a string or a scalar; `null`, `{}` and `[]` are `""`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StringVisitor)
}

/// A boolean from `true`/`false`, `1`/`0`, `"true"`/`"1"`; blanks are false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" | "" => Ok(false),
                _ => Err(E::custom(format!("'{v}' is not a boolean"))),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

/// An RFC 2822 (v2) or RFC 3339 (v3) timestamp; blanks are `None`.
pub fn datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let s = string(d)?;
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc2822(t)
        .or_else(|_| DateTime::parse_from_rfc3339(t))
        .map(|dt| Some(dt.with_timezone(&Utc)))
        .map_err(|_| de::Error::custom(format!("'{s}' is not an RFC 2822 or RFC 3339 date")))
}

/// A list; `null`, `""`, `{}` and link objects (`{"url":…,"resource":…}`) are empty.
/// A malformed element is an error naming its index (never silently dropped).
pub fn vec<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    let serde_json::Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_path_to_error::deserialize(item).map_err(|e| {
                let path = e.path().to_string();
                let at = if path == "." {
                    format!("[{i}]")
                } else {
                    format!("[{i}].{path}")
                };
                de::Error::custom(format!("{at}: {}", e.inner()))
            })
        })
        .collect()
}

/// A list of integers written as numbers or numeric strings.
pub fn vec_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct L(#[serde(deserialize_with = "u64_or_zero")] u64);
    vec::<D, L>(d).map(|v| v.into_iter().map(|l| l.0).collect())
}
