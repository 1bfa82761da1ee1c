//! QuickBooks query statements: literal escaping and `select … where … = …`.

/// A value that cannot be put in a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// QuickBooks does not document how to escape a backslash in a string literal.
    #[error(
        "the name '{0}' contains a backslash, which cannot be searched for in QuickBooks: \
         remove the backslash from the name in BigCommerce or the mapping"
    )]
    Backslash(String),
    /// Entity and field names are identifiers, not data.
    #[error("'{0}' is not a valid QuickBooks entity or field name")]
    BadIdentifier(String),
}

/// Escapes a string literal for the query language: `'` becomes `\'`; backslashes are refused
/// (their escaping is undocumented, so a guess could match the wrong record).
pub fn escape_literal(value: &str) -> Result<String, QueryError> {
    if value.contains('\\') {
        return Err(QueryError::Backslash(value.to_string()));
    }
    Ok(value.replace('\'', "\\'"))
}

fn check_ident(s: &str) -> Result<&str, QueryError> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        Ok(s)
    } else {
        Err(QueryError::BadIdentifier(s.to_string()))
    }
}

/// `SELECT * FROM {entity} WHERE {field} = '{value}'` with the value escaped.
pub fn select_where_eq(entity: &str, field: &str, value: &str) -> Result<String, QueryError> {
    Ok(format!(
        "SELECT * FROM {} WHERE {} = '{}'",
        check_ident(entity)?,
        check_ident(field)?,
        escape_literal(value)?
    ))
}

/// `SELECT * FROM {entity} WHERE {f1} = '{v1}' AND {f2} = '{v2}' … MAXRESULTS 1000` (the
/// query language has `AND` but no `OR`), every value escaped.
pub fn select_where_all(entity: &str, conditions: &[(&str, &str)]) -> Result<String, QueryError> {
    let mut parts = Vec::with_capacity(conditions.len());
    for (field, value) in conditions {
        parts.push(format!(
            "{} = '{}'",
            check_ident(field)?,
            escape_literal(value)?
        ));
    }
    Ok(format!(
        "SELECT * FROM {} WHERE {} MAXRESULTS 1000",
        check_ident(entity)?,
        parts.join(" AND ")
    ))
}
