//! The SQL-like query language of the Accounting API (the subset real clients use).

use std::cmp::Ordering;

use chrono::DateTime;
use rust_decimal::Decimal;
use serde_json::Value;

use super::exact;

/// A literal on the right of a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Num(Decimal),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Like,
}

/// One `field op value` condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cond {
    pub field: String,
    pub op: Op,
    pub values: Vec<Lit>,
}

/// What the statement selects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Projection {
    All,
    Count,
    Fields(Vec<String>),
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub projection: Projection,
    pub entity: String,
    pub conds: Vec<Cond>,
    pub order: Vec<(String, bool)>,
    pub start: usize,
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Star,
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < cs.len() {
        let c = cs[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '*' => {
                out.push(Tok::Star);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1;
            }
            '<' | '>' => {
                let eq = cs.get(i + 1) == Some(&'=');
                out.push(Tok::Op(match (c, eq) {
                    ('<', true) => "<=",
                    ('<', false) => "<",
                    ('>', true) => ">=",
                    _ => ">",
                }));
                i += if eq { 2 } else { 1 };
            }
            '\'' => {
                let mut lit = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => {
                            return Err(format!("unterminated string literal at column {}", i + 1));
                        }
                        Some('\\') => {
                            let Some(&next) = cs.get(i + 1) else {
                                return Err("a backslash ends the statement".into());
                            };
                            lit.push(next);
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            lit.push(other);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(lit));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Num(cs[start..i].iter().collect()));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < cs.len()
                    && (cs[i].is_ascii_alphanumeric() || cs[i] == '_' || cs[i] == '.')
                {
                    i += 1;
                }
                out.push(Tok::Ident(cs[start..i].iter().collect()));
            }
            other => return Err(format!("Encountered \"{other}\" at column {}", i + 1)),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_keyword(&mut self, kw: &str) -> Result<(), String> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(format!("expected {kw}, found {}", self.describe()))
        }
    }
    fn expect(&mut self, t: Tok) -> Result<(), String> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {t:?}, found {}", self.describe()))
        }
    }
    fn describe(&self) -> String {
        match self.peek() {
            None => "end of statement".into(),
            Some(t) => format!("{t:?}"),
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }
    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => n
                .parse()
                .map(Lit::Num)
                .map_err(|_| format!("invalid number {n}")),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            other => Err(format!("expected a literal, found {other:?}")),
        }
    }
    fn number(&mut self) -> Result<usize, String> {
        match self.next() {
            Some(Tok::Num(n)) => n
                .parse()
                .map_err(|_| format!("expected a positive integer, found {n}")),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

const RESERVED: &[&str] = &[
    "WHERE",
    "ORDERBY",
    "ORDER",
    "STARTPOSITION",
    "MAXRESULTS",
    "AND",
    "OR",
];

/// Parses a statement; the error text reads like Intuit's `QueryParserError` detail.
pub(crate) fn parse(stmt: &str) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokenize(stmt)?,
        pos: 0,
    };
    p.expect_keyword("SELECT")?;
    let projection = if p.peek() == Some(&Tok::Star) {
        p.pos += 1;
        Projection::All
    } else if p.keyword("COUNT") {
        p.expect(Tok::LParen)?;
        p.expect(Tok::Star)?;
        p.expect(Tok::RParen)?;
        Projection::Count
    } else {
        let mut fields = vec![p.ident()?];
        while p.peek() == Some(&Tok::Comma) {
            p.pos += 1;
            fields.push(p.ident()?);
        }
        Projection::Fields(fields)
    };
    p.expect_keyword("FROM")?;
    let entity = p.ident()?;
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&entity)) {
        return Err(format!(
            "expected an entity name after FROM, found {entity}"
        ));
    }
    let mut q = Query {
        projection,
        entity,
        conds: Vec::new(),
        order: Vec::new(),
        start: 1,
        max: 100,
    };
    if p.keyword("WHERE") {
        loop {
            let field = p.ident()?;
            let cond = match p.next() {
                Some(Tok::Op(op)) => {
                    let op = match op {
                        "=" => Op::Eq,
                        "<" => Op::Lt,
                        ">" => Op::Gt,
                        "<=" => Op::Le,
                        _ => Op::Ge,
                    };
                    Cond {
                        field,
                        op,
                        values: vec![p.literal()?],
                    }
                }
                Some(Tok::Ident(kw)) if kw.eq_ignore_ascii_case("IN") => {
                    p.expect(Tok::LParen)?;
                    let mut values = vec![p.literal()?];
                    while p.peek() == Some(&Tok::Comma) {
                        p.pos += 1;
                        values.push(p.literal()?);
                    }
                    p.expect(Tok::RParen)?;
                    Cond {
                        field,
                        op: Op::In,
                        values,
                    }
                }
                Some(Tok::Ident(kw)) if kw.eq_ignore_ascii_case("LIKE") => match p.next() {
                    Some(Tok::Str(s)) => Cond {
                        field,
                        op: Op::Like,
                        values: vec![Lit::Str(s)],
                    },
                    other => return Err(format!("LIKE needs a quoted pattern, found {other:?}")),
                },
                other => {
                    return Err(format!(
                        "expected an operator after {field}, found {other:?}"
                    ));
                }
            };
            q.conds.push(cond);
            if p.keyword("OR") {
                return Err("OR is not supported".into());
            }
            if !p.keyword("AND") {
                break;
            }
        }
    }
    if p.keyword("ORDERBY") || (p.keyword("ORDER") && p.keyword("BY")) {
        loop {
            let f = p.ident()?;
            let desc = if p.keyword("DESC") {
                true
            } else {
                p.keyword("ASC");
                false
            };
            q.order.push((f, desc));
            if p.peek() != Some(&Tok::Comma) {
                break;
            }
            p.pos += 1;
        }
    }
    loop {
        if p.keyword("STARTPOSITION") {
            q.start = p.number()?.max(1);
        } else if p.keyword("MAXRESULTS") {
            q.max = p.number()?.min(1000);
        } else {
            break;
        }
    }
    if p.peek().is_some() {
        return Err(format!(
            "Encountered {} after the end of the statement",
            p.describe()
        ));
    }
    Ok(q)
}

/// The value at a dotted path; a reference/email/phone object compares by its scalar.
pub(crate) fn field<'a>(entity: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = entity;
    for part in path.split('.') {
        v = v
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(part))
            .map(|(_, v)| v)?;
    }
    if let Value::Object(o) = v {
        for key in ["value", "Address", "FreeFormNumber"] {
            if let Some(inner) = o.get(key) {
                return Some(inner);
            }
        }
    }
    Some(v)
}

fn cmp_lit(v: &Value, lit: &Lit) -> Option<Ordering> {
    match lit {
        Lit::Bool(b) => match v {
            Value::Bool(x) => Some(x.cmp(b)),
            Value::String(s) => s.parse::<bool>().ok().map(|x| x.cmp(b)),
            _ => None,
        },
        Lit::Num(n) => exact::dec(v).map(|d| d.cmp(n)),
        Lit::Str(s) => match v {
            Value::Bool(x) => s.parse::<bool>().ok().map(|b| x.cmp(&b)),
            Value::String(text) if exact::num_text(v).is_some() => {
                let d = exact::dec(v)?;
                s.parse::<Decimal>().ok().map(|n| d.cmp(&n))
            }
            Value::String(text) => {
                if let (Ok(a), Ok(b)) = (
                    DateTime::parse_from_rfc3339(text),
                    DateTime::parse_from_rfc3339(s),
                ) {
                    return Some(a.cmp(&b));
                }
                Some(text.to_lowercase().cmp(&s.to_lowercase()))
            }
            _ => None,
        },
    }
}

fn like(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let parts: Vec<String> = pattern
        .to_lowercase()
        .split('%')
        .map(str::to_string)
        .collect();
    if parts.len() == 1 {
        return text == parts[0];
    }
    let (first, last) = (&parts[0], &parts[parts.len() - 1]);
    if !text.starts_with(first.as_str()) || !text[first.len()..].ends_with(last.as_str()) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid.as_str()) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Whether an entity satisfies one condition (a missing field never matches).
pub(crate) fn matches(entity: &Value, c: &Cond) -> bool {
    let Some(v) = field(entity, &c.field) else {
        return false;
    };
    match c.op {
        Op::Eq => cmp_lit(v, &c.values[0]) == Some(Ordering::Equal),
        Op::Lt => cmp_lit(v, &c.values[0]) == Some(Ordering::Less),
        Op::Gt => cmp_lit(v, &c.values[0]) == Some(Ordering::Greater),
        Op::Le => matches!(
            cmp_lit(v, &c.values[0]),
            Some(Ordering::Less | Ordering::Equal)
        ),
        Op::Ge => matches!(
            cmp_lit(v, &c.values[0]),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        Op::In => c
            .values
            .iter()
            .any(|l| cmp_lit(v, l) == Some(Ordering::Equal)),
        Op::Like => match (v.as_str(), &c.values[0]) {
            (Some(s), Lit::Str(p)) if exact::num_text(v).is_none() => like(s, p),
            _ => false,
        },
    }
}

/// Orders two entities by a field (numbers numerically, text case-insensitively).
pub(crate) fn compare(a: &Value, b: &Value, path: &str) -> Ordering {
    match (field(a, path), field(b, path)) {
        (Some(x), Some(y)) => match (exact::dec(x), exact::dec(y)) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => {
                let s = |v: &Value| {
                    v.as_str()
                        .map(str::to_lowercase)
                        .unwrap_or_else(|| v.to_string())
                };
                s(x).cmp(&s(y))
            }
        },
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_quote_and_paging_parse() {
        let q = parse(r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird Sanctuary' STARTPOSITION 1 MAXRESULTS 5")
            .unwrap();
        assert_eq!(q.entity, "Customer");
        assert_eq!(
            q.conds[0].values,
            vec![Lit::Str("Amy's Bird Sanctuary".into())]
        );
        assert_eq!((q.start, q.max), (1, 5));
    }

    #[test]
    fn in_like_order_and_count_parse() {
        let q = parse("select count(*) from Item where Active IN (true, false) and Name LIKE '%Sales%' orderby Name desc")
            .unwrap();
        assert_eq!(q.projection, Projection::Count);
        assert_eq!(q.conds.len(), 2);
        assert_eq!(q.order, vec![("Name".to_string(), true)]);
    }

    #[test]
    fn or_and_garbage_are_rejected() {
        assert!(parse("SELECT * FROM Customer WHERE Id = '1' OR Id = '2'").is_err());
        assert!(parse("SELECT * FROM").is_err());
        assert!(parse("SELECT * FROM Customer WHERE DisplayName = 'open").is_err());
        assert!(parse("SELECT * FROM Customer junk").is_err());
    }

    #[test]
    fn like_matches_wildcards_case_insensitively() {
        assert!(like("Amy's Bird Sanctuary", "%bird%"));
        assert!(like("Amy's Bird Sanctuary", "amy%"));
        assert!(!like("Amy's Bird Sanctuary", "%fish%"));
    }
}
