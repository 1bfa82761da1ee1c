//! Exact JSON numbers without serde_json's `arbitrary_precision` feature.
//!
//! That feature is workspace-global once enabled (cargo unifies features) and changes how every
//! crate deserializes numbers (untagged enums, `Decimal` via `deserialize_any`), so the simulator
//! keeps it off and instead rewrites each number token of a request body into a string carrying
//! a private-use marker before parsing. Stored entities keep numbers in that form; responses are
//! written back with the original digits (`10.10` stays `10.10`).

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

/// Prefix of a string that stands for a JSON number (Unicode private use, never sent by clients).
pub(crate) const MARK: char = '\u{E000}';

/// Parses JSON text, turning every number into a marked string with its exact digits.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    if text.contains(MARK) {
        return Err(
            "the body contains the private-use character U+E000, which is not accepted".into(),
        );
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    let mut escaped = false;
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '-' | '0'..='9' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '+' | '-') {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let token = &text[i..end];
                serde_json::from_str::<serde_json::Number>(token)
                    .map_err(|e| format!("invalid number {token:?}: {e}"))?;
                out.push('"');
                out.push(MARK);
                out.push_str(token);
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    serde_json::from_str(&out).map_err(|e| e.to_string())
}

/// The exact digits of a marked number.
pub(crate) fn num_text(v: &Value) -> Option<&str> {
    v.as_str().and_then(|s| s.strip_prefix(MARK))
}

/// A number (marked, plain JSON, or a numeric string as Jackson would coerce) as a decimal.
pub(crate) fn dec(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::String(s) => s.strip_prefix(MARK).unwrap_or(s).to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// A decimal as a marked number.
pub(crate) fn dec_value(d: Decimal) -> Value {
    Value::String(format!("{MARK}{d}"))
}

/// An integer as a marked number.
pub(crate) fn int_value(i: i64) -> Value {
    Value::String(format!("{MARK}{i}"))
}

/// Converts plain JSON numbers (e.g. from `json!`) into marked numbers, recursively.
pub(crate) fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::String(format!("{MARK}{n}")),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// Serializes a value, writing marked numbers back as bare JSON numbers.
pub(crate) fn to_text(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut in_string = false;
    let mut escaped = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' && chars.peek() == Some(&MARK) {
            chars.next();
            for d in chars.by_ref() {
                if d == '"' {
                    break;
                }
                out.push(d);
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// A stored value as ordinary JSON (numbers as serde_json numbers), for inspection by tests.
pub(crate) fn to_plain(v: &Value) -> Value {
    serde_json::from_str(&to_text(v)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_zeros_survive_a_round_trip() {
        let v = parse(r#"{"a":10.10,"b":[-1e2,0],"s":"x\"1.5"}"#).unwrap();
        assert_eq!(dec(&v["a"]), Some(Decimal::from_str("10.10").unwrap()));
        assert_eq!(to_text(&v), r#"{"a":10.10,"b":[-1e2,0],"s":"x\"1.5"}"#);
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        assert!(parse(r#"{"a":01}"#).is_err());
        assert!(parse(r#"{"a":1.}"#).is_err());
    }
}
