//! Reads: `GET /{entity}/{id}` and `GET /query?query=…` (filter, order, page, project, count).

use serde_json::{Value, json};

use super::Obj;
use super::fields::is_active;
use crate::quickbooks::exact::int_value;
use crate::quickbooks::query::{self, Projection};
use crate::quickbooks::schema;
use crate::quickbooks::store::{Db, Fault, NAME_LISTS, canonical, envelope_time};

/// `GET /{entity}/{id}`.
pub(crate) fn read(db: &Db, entity: &'static str, id: &str) -> Result<Value, Fault> {
    let found = db.find(entity, id).cloned();
    match found {
        Some(v) => Ok(json!({entity: v, "time": envelope_time()})),
        None if !id.chars().all(|c| c.is_ascii_digit()) && entity != "TaxCode" => Err(Fault::new(
            "2030",
            "Invalid ID",
            format!("Id should be a valid number. Supplied value:{id}"),
        )
        .at("Id")),
        None => Err(Fault::not_found("Id")),
    }
}

fn query_fault(code: &str, detail: String) -> Fault {
    let message = if code == "4000" {
        "Error parsing query"
    } else {
        "Invalid query"
    };
    Fault {
        element: None,
        ..Fault::new(code, message, detail)
    }
}

/// `GET /query?query=…`.
pub(crate) fn run_query(db: &Db, stmt: &str) -> Result<Value, Fault> {
    let q =
        query::parse(stmt).map_err(|e| query_fault("4000", format!("QueryParserError: {e}")))?;
    let Some(entity) = canonical(&q.entity) else {
        return Err(query_fault(
            "4001",
            format!("QueryValidationError: unknown entity {}", q.entity),
        ));
    };
    let known = |f: &str| {
        let top = f.split('.').next().unwrap_or_default();
        let props = schema::accepted(entity);
        props.is_none_or(|p| p.iter().any(|k| k.eq_ignore_ascii_case(top)))
    };
    for f in q
        .conds
        .iter()
        .map(|c| c.field.as_str())
        .chain(q.order.iter().map(|(f, _)| f.as_str()))
    {
        if !known(f) {
            return Err(query_fault(
                "4001",
                format!("QueryValidationError: property '{f}' is not queryable for {entity}"),
            ));
        }
    }
    let constrains_active = q
        .conds
        .iter()
        .any(|c| c.field.eq_ignore_ascii_case("Active"));
    let mut rows: Vec<&Value> = db
        .list(entity)
        .iter()
        .filter(|v| constrains_active || !NAME_LISTS.contains(&entity) || is_active(v))
        .filter(|v| q.conds.iter().all(|c| query::matches(v, c)))
        .collect();
    if q.projection == Projection::Count {
        return Ok(
            json!({"QueryResponse": {"totalCount": int_value(rows.len() as i64)}, "time": envelope_time()}),
        );
    }
    for (f, desc) in q.order.iter().rev() {
        rows.sort_by(|a, b| {
            let o = query::compare(a, b, f);
            if *desc { o.reverse() } else { o }
        });
    }
    let page: Vec<Value> = rows
        .into_iter()
        .skip(q.start - 1)
        .take(q.max)
        .map(|v| match &q.projection {
            Projection::Fields(fs) => {
                let mut o = Obj::new();
                for f in fs.iter().chain(std::iter::once(&"Id".to_string())) {
                    if let Some((k, val)) = v
                        .as_object()
                        .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(f)))
                    {
                        o.insert(k.clone(), val.clone());
                    }
                }
                Value::Object(o)
            }
            _ => v.clone(),
        })
        .collect();
    if page.is_empty() {
        return Ok(json!({"QueryResponse": {}, "time": envelope_time()}));
    }
    let n = page.len() as i64;
    Ok(
        json!({"QueryResponse": {entity: page, "startPosition": int_value(q.start as i64), "maxResults": int_value(n)},
              "time": envelope_time()}),
    )
}
