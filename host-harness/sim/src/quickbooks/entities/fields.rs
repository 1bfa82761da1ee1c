//! Field helpers every entity's rules share: known properties, text fields, references to
//! other records, name uniqueness, email syntax and the home currency.

use serde_json::Value;

use super::Obj;
use crate::quickbooks::exact;
use crate::quickbooks::schema;
use crate::quickbooks::store::{Db, Fault};

/// Rejects any property the schema does not know, recursing into the objects it understands.
pub(super) fn check_props(ty: &str, v: &Value) -> Result<(), Fault> {
    let Some(allowed) = schema::accepted(ty) else {
        return Ok(());
    };
    let Some(obj) = v.as_object() else {
        return Ok(());
    };
    for (k, child) in obj {
        if !allowed.contains(&k.as_str()) {
            return Err(Fault::unsupported_property(ty, k).at(k));
        }
        if let Some(child_ty) = schema::child_type(ty, k) {
            match child {
                Value::Array(items) => items.iter().try_for_each(|i| check_props(child_ty, i))?,
                other => check_props(child_ty, other)?,
            }
        }
    }
    Ok(())
}

pub(super) fn str_of<'a>(o: &'a Obj, k: &str) -> Option<&'a str> {
    o.get(k)
        .and_then(Value::as_str)
        .filter(|s| exact::num_text(&Value::String((*s).to_string())).is_none())
}

pub(super) fn ref_id(o: &Obj, k: &str) -> Option<String> {
    match o.get(k)?.get("value")? {
        Value::String(s) => Some(s.strip_prefix(exact::MARK).unwrap_or(s).to_string()),
        _ => None,
    }
}

pub(super) fn is_active(v: &Value) -> bool {
    v.get("Active").and_then(Value::as_bool).unwrap_or(true)
}

/// Resolves a reference to an active record, filling in its `name`.
pub(super) fn resolve(
    db: &Db,
    o: &mut Obj,
    key: &str,
    entity: &str,
    name_field: &str,
    element: &str,
) -> Result<Option<Value>, Fault> {
    let Some(id) = ref_id(o, key) else {
        if o.contains_key(key) {
            return Err(Fault::required(element, &format!("{key}.value")));
        }
        return Ok(None);
    };
    let Some(found) = db.find(entity, &id) else {
        return Err(Fault::invalid_ref(element, entity, &id));
    };
    if !is_active(found) {
        return Err(Fault::not_found(element));
    }
    let name = found[name_field].clone();
    if let Some(r) = o.get_mut(key).and_then(Value::as_object_mut) {
        r.insert("value".into(), Value::String(id));
        if name.is_string() {
            r.insert("name".into(), name);
        }
    }
    Ok(Some(found.clone()))
}

pub(super) fn name_taken(
    db: &Db,
    entities: &[&str],
    field: &str,
    name: &str,
    except: Option<(&str, &str)>,
) -> bool {
    entities.iter().any(|e| {
        db.list(e).iter().any(|v| {
            v[field]
                .as_str()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name.trim()))
                && except != Some((e, v["Id"].as_str().unwrap_or_default()))
        })
    })
}

pub(super) fn valid_email(s: &str) -> bool {
    let s = s.trim();
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '(' | ')' | '[' | ']' | '"')
        })
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// The company's home currency (`Preferences.CurrencyPrefs.HomeCurrency`; USD when unset).
pub(super) fn home_currency(db: &Db) -> Value {
    crate::quickbooks::currency::currency_ref(&db.currencies.home)
}
