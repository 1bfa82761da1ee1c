//! Pure parts of customer matching: DisplayName candidates (contract §4), the QuickBooks
//! Customer payload, and a digest to tell whether anything changed.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Longest DisplayName the connector produces. Intuit documents 500 [unverified]; 100 keeps
/// names readable in QuickBooks lists and far from any limit.
pub const MAX_DISPLAY_NAME: usize = 100;
/// Longest GivenName/FamilyName/CompanyName sent (Intuit API reference: 100).
pub const MAX_NAME_PART: usize = 100;

/// A postal address in neutral form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostalAddress {
    pub line1: String,
    pub line2: String,
    pub city: String,
    /// State or province.
    pub region: String,
    pub postal_code: String,
    /// Country name (falls back to the ISO code when BigCommerce sends no name).
    pub country: String,
}

impl PostalAddress {
    fn is_empty(&self) -> bool {
        [
            &self.line1,
            &self.line2,
            &self.city,
            &self.region,
            &self.postal_code,
            &self.country,
        ]
        .iter()
        .all(|s| s.trim().is_empty())
    }
}

/// What the connector knows about a customer, from a BigCommerce v3 customer (registered) or
/// an order's billing address (guest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerSource {
    /// BigCommerce customer id; `None` for guests (`customer_id` 0).
    pub bc_customer_id: Option<u64>,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub email: String,
    pub phone: String,
    pub bill_address: Option<PostalAddress>,
    pub ship_address: Option<PostalAddress>,
    /// A foreign currency (ISO code) the customer buys in: QuickBooks keeps one currency per
    /// customer, so this is a customer of its own, named with ` ({currency})` and created with
    /// that `CurrencyRef` (CONTRACT §11). `None`: the home currency.
    pub currency: Option<String>,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn non_empty(addr: PostalAddress) -> Option<PostalAddress> {
    (!addr.is_empty()).then_some(addr)
}

fn country_or_code(v: &Value, name_key: &str, code_key: &str) -> String {
    let name = text(v, name_key);
    if name.is_empty() {
        text(v, code_key)
    } else {
        name
    }
}

impl CustomerSource {
    /// From one element of `GET /v3/customers?include=addresses` `data`. The first address is
    /// the billing address; a second one, when present, the shipping address.
    pub fn from_v3_customer(c: &Value) -> CustomerSource {
        let addr = |a: &Value| PostalAddress {
            line1: text(a, "address1"),
            line2: text(a, "address2"),
            city: text(a, "city"),
            region: text(a, "state_or_province"),
            postal_code: text(a, "postal_code"),
            country: country_or_code(a, "country", "country_code"),
        };
        let addresses: Vec<PostalAddress> = c
            .get("addresses")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(addr).filter(|a| !a.is_empty()).collect())
            .unwrap_or_default();
        CustomerSource {
            bc_customer_id: c.get("id").and_then(Value::as_u64).filter(|id| *id > 0),
            first_name: text(c, "first_name"),
            last_name: text(c, "last_name"),
            company: text(c, "company"),
            email: text(c, "email"),
            phone: text(c, "phone"),
            bill_address: addresses.first().cloned(),
            ship_address: addresses.get(1).or(addresses.first()).cloned(),
            currency: None,
        }
    }

    /// From a v2 order's `billing_address` (guests) and, optionally, its first shipping address.
    pub fn from_billing_address(billing: &Value, shipping: Option<&Value>) -> CustomerSource {
        let addr = |a: &Value| PostalAddress {
            line1: text(a, "street_1"),
            line2: text(a, "street_2"),
            city: text(a, "city"),
            region: text(a, "state"),
            postal_code: text(a, "zip"),
            country: country_or_code(a, "country", "country_iso2"),
        };
        let bill = non_empty(addr(billing));
        CustomerSource {
            bc_customer_id: None,
            first_name: text(billing, "first_name"),
            last_name: text(billing, "last_name"),
            company: text(billing, "company"),
            email: text(billing, "email"),
            phone: text(billing, "phone"),
            ship_address: shipping
                .map(addr)
                .and_then(non_empty)
                .or_else(|| bill.clone()),
            bill_address: bill,
            currency: None,
        }
    }

    /// [`display_name_candidates`] for this source.
    pub fn display_name_candidates(&self) -> Vec<String> {
        let names = display_name_candidates(
            &self.first_name,
            &self.last_name,
            &self.company,
            &self.email,
            self.bc_customer_id,
        );
        match &self.currency {
            None => names,
            Some(code) => {
                let suffix = format!(" ({code})");
                let room = MAX_DISPLAY_NAME.saturating_sub(suffix.chars().count());
                let mut out: Vec<String> = Vec::new();
                for n in names {
                    let candidate = format!("{}{suffix}", truncate(&n, room));
                    if !out.contains(&candidate) {
                        out.push(candidate);
                    }
                }
                out
            }
        }
    }
}

/// Collapses whitespace and drops control characters.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars()
            .take(max)
            .collect::<String>()
            .trim_end()
            .to_string()
    }
}

/// Makes a string acceptable as a DisplayName: `:` is QuickBooks' sub-customer separator
/// (`Parent:Child`) and becomes `-`; a backslash cannot be escaped reliably in QuickBooks
/// queries and becomes `/`; control characters and runs of whitespace become one space.
/// Quotes, `&`, accents and non-Latin scripts are kept (the query layer escapes them).
pub fn normalize_display_name(s: &str) -> String {
    let replaced: String = s
        .chars()
        .map(|c| match c {
            ':' | '\u{FF1A}' => '-',
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    clean(&replaced)
}

/// DisplayName candidates in the order the contract prescribes: the base name (company if
/// set, else "first last"), then `base (email)`, then `base (BC id)`. Guests have no id,
/// so their last candidate uses a short hash of the email instead. Every candidate fits
/// [`MAX_DISPLAY_NAME`], truncating the base (never the disambiguating suffix).
pub fn display_name_candidates(
    first: &str,
    last: &str,
    company: &str,
    email: &str,
    bc_customer_id: Option<u64>,
) -> Vec<String> {
    let id = bc_customer_id.filter(|id| *id > 0);
    let email = clean(email);
    let company = normalize_display_name(company);
    let person = normalize_display_name(&format!("{first} {last}"));
    let base = if !company.is_empty() {
        company
    } else if !person.is_empty() {
        person
    } else if !email.is_empty() {
        normalize_display_name(&email)
    } else if let Some(id) = id {
        format!("BigCommerce customer {id}")
    } else {
        "BigCommerce guest".to_string()
    };

    let mut suffixes = Vec::new();
    if !email.is_empty() && !base.eq_ignore_ascii_case(&normalize_display_name(&email)) {
        suffixes.push(format!(" ({})", normalize_display_name(&email)));
    }
    match id {
        Some(id) => suffixes.push(format!(" (BC {id})")),
        None if !email.is_empty() => {
            let digest = Sha256::digest(email.to_lowercase().as_bytes());
            suffixes.push(format!(" (guest {})", &hex::encode(digest)[..8]));
        }
        None => {}
    }

    let mut out = vec![truncate(&base, MAX_DISPLAY_NAME)];
    for suffix in suffixes {
        let room = MAX_DISPLAY_NAME.saturating_sub(suffix.chars().count());
        let candidate = if room == 0 {
            truncate(suffix.trim_start(), MAX_DISPLAY_NAME)
        } else {
            format!("{}{suffix}", truncate(&base, room))
        };
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// The first candidate not taken; when all are, the last one numbered ` 2`, ` 3`, …
/// Deterministic for a given set of existing names.
pub fn choose_display_name(candidates: &[String], is_taken: impl Fn(&str) -> bool) -> String {
    if let Some(free) = candidates.iter().find(|c| !is_taken(c)) {
        return free.clone();
    }
    let last = candidates
        .last()
        .map(String::as_str)
        .unwrap_or("BigCommerce customer");
    let mut name = String::new();
    for n in 2..=10_000u32 {
        let suffix = format!(" {n}");
        name = format!(
            "{}{suffix}",
            truncate(last, MAX_DISPLAY_NAME - suffix.len())
        );
        if !is_taken(&name) {
            break;
        }
    }
    name
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 100
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn address_json(a: &PostalAddress) -> Value {
    let mut m = Map::new();
    for (key, value, max) in [
        ("Line1", &a.line1, 500),
        ("Line2", &a.line2, 500),
        ("City", &a.city, 255),
        ("CountrySubDivisionCode", &a.region, 255),
        ("PostalCode", &a.postal_code, 30),
        ("Country", &a.country, 255),
    ] {
        let v = truncate(&clean(value), max);
        if !v.is_empty() {
            m.insert(key.into(), Value::String(v));
        }
    }
    Value::Object(m)
}

/// The QuickBooks Customer body (create, or sparse update once `Id`/`SyncToken`/`sparse`
/// are added) with the first DisplayName candidate.
pub fn customer_payload(source: &CustomerSource) -> Value {
    let name = source
        .display_name_candidates()
        .into_iter()
        .next()
        .unwrap_or_default();
    customer_payload_named(source, &name)
}

/// The QuickBooks Customer body with a chosen DisplayName. Empty fields are omitted so a
/// sparse update never blanks what QuickBooks already has.
pub fn customer_payload_named(source: &CustomerSource, display_name: &str) -> Value {
    let mut m = Map::new();
    m.insert("DisplayName".into(), json!(display_name));
    for (key, value) in [
        ("GivenName", &source.first_name),
        ("FamilyName", &source.last_name),
        ("CompanyName", &source.company),
    ] {
        let v = truncate(&clean(value), MAX_NAME_PART);
        if !v.is_empty() {
            m.insert(key.into(), json!(v));
        }
    }
    let email = source.email.trim();
    if plausible_email(email) {
        // An address QuickBooks would reject (2210) is left out rather than failing the sync.
        m.insert("PrimaryEmailAddr".into(), json!({ "Address": email }));
    }
    let phone = truncate(&clean(&source.phone), 30);
    if !phone.is_empty() {
        m.insert("PrimaryPhone".into(), json!({ "FreeFormNumber": phone }));
    }
    if let Some(a) = source.bill_address.as_ref().filter(|a| !a.is_empty()) {
        m.insert("BillAddr".into(), address_json(a));
    }
    if let Some(a) = source.ship_address.as_ref().filter(|a| !a.is_empty()) {
        m.insert("ShipAddr".into(), address_json(a));
    }
    if let Some(code) = &source.currency {
        m.insert("CurrencyRef".into(), json!({ "value": code }));
    }
    let notes = match source.bc_customer_id {
        Some(id) => format!("BigCommerce customer {id}"),
        None => "BigCommerce guest customer".to_string(),
    };
    m.insert("Notes".into(), json!(notes));
    Value::Object(m)
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 (hex) of the payload's canonical JSON (keys sorted at every level), so equal
/// content gives an equal digest whatever the key order.
pub fn content_digest(payload: &Value) -> String {
    let mut s = String::new();
    canonical(payload, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// What the connector would write for `source`, as a digest: the mapped payload without its
/// DisplayName, which depends on the names QuickBooks already holds rather than on the
/// customer. Equal digests mean nothing relevant changed, so no write is needed.
pub fn source_digest(source: &CustomerSource) -> String {
    let mut payload = customer_payload_named(source, "");
    if let Some(m) = payload.as_object_mut() {
        m.remove("DisplayName");
    }
    content_digest(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const BC: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/bigcommerce/"
    );

    fn fixture(name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(format!("{BC}{name}")).unwrap()).unwrap()
    }

    #[test]
    fn person_names_come_first_then_email_then_bc_id() {
        let c = display_name_candidates("Ana", "Diaz", "", "ana@example.com", Some(42));
        assert_eq!(
            c,
            ["Ana Diaz", "Ana Diaz (ana@example.com)", "Ana Diaz (BC 42)"]
        );
    }

    #[test]
    fn company_wins_over_the_person_name() {
        let c =
            display_name_candidates("Ana", "Diaz", "  Acme   Corp ", "ana@example.com", Some(42));
        assert_eq!(c[0], "Acme Corp");
    }

    #[test]
    fn quotes_ampersands_accents_and_cjk_are_kept() {
        assert_eq!(
            display_name_candidates("Amy's", "Bird Sanctuary", "", "", Some(1))[0],
            "Amy's Bird Sanctuary"
        );
        assert_eq!(
            display_name_candidates("", "", "Smith & Sons", "", Some(1))[0],
            "Smith & Sons"
        );
        assert_eq!(
            display_name_candidates("", "", "The \"Best\" Shop", "", Some(1))[0],
            "The \"Best\" Shop"
        );
        assert_eq!(
            display_name_candidates("José", "Müller-Ñúñez", "", "", Some(1))[0],
            "José Müller-Ñúñez"
        );
        assert_eq!(
            display_name_candidates("太郎", "山田", "", "", Some(1))[0],
            "太郎 山田"
        );
    }

    #[test]
    fn colons_backslashes_and_control_characters_are_normalized() {
        assert_eq!(
            display_name_candidates("", "", "Parent: Child:Co", "", Some(1))[0],
            "Parent- Child-Co"
        );
        assert_eq!(
            display_name_candidates("", "", "株式会社：山田", "", Some(1))[0],
            "株式会社-山田"
        );
        assert_eq!(
            display_name_candidates("A\\B", "C\t\nD", "", "", Some(1))[0],
            "A/B C D"
        );
    }

    #[test]
    fn long_names_are_truncated_but_keep_their_suffix() {
        let long = "X".repeat(300);
        let c = display_name_candidates(&long, "", "", "a@b.co", Some(7));
        assert!(c.iter().all(|n| n.chars().count() <= MAX_DISPLAY_NAME));
        assert!(c[1].ends_with(" (a@b.co)"));
        assert!(c[2].ends_with(" (BC 7)"));
        let cjk = "山".repeat(150);
        assert_eq!(
            display_name_candidates(&cjk, "", "", "", Some(1))[0]
                .chars()
                .count(),
            MAX_DISPLAY_NAME
        );
    }

    #[test]
    fn guests_get_a_stable_email_hash_instead_of_an_id() {
        let c = display_name_candidates("Ana", "Diaz", "", "Ana@Example.com", None);
        assert_eq!(c.len(), 3);
        assert_eq!(c[1], "Ana Diaz (Ana@Example.com)");
        assert!(
            c[2].starts_with("Ana Diaz (guest ") && c[2].len() == "Ana Diaz (guest 12345678)".len()
        );
        assert_eq!(
            c,
            display_name_candidates("Ana", "Diaz", "", "Ana@Example.com", Some(0))
        );
        let other = display_name_candidates("Ana", "Diaz", "", "ana2@example.com", None);
        assert_ne!(c[2], other[2]);
    }

    #[test]
    fn nameless_customers_fall_back_to_email_or_id() {
        assert_eq!(
            display_name_candidates("", "", "", "x@y.com", Some(3)),
            ["x@y.com", "x@y.com (BC 3)"]
        );
        assert_eq!(
            display_name_candidates(" ", "", "", "", Some(3)),
            ["BigCommerce customer 3", "BigCommerce customer 3 (BC 3)"]
        );
        assert_eq!(
            display_name_candidates("", "", "", "", None),
            ["BigCommerce guest"]
        );
    }

    #[test]
    fn a_vendor_clash_moves_to_the_email_variant_then_the_id() {
        // Names already used by customers, vendors and employees (active or not) in QuickBooks.
        let mut existing: HashSet<String> = ["Ana Diaz", "Acme Corp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = display_name_candidates("Ana", "Diaz", "", "ana@example.com", Some(42));
        assert_eq!(
            choose_display_name(&c, |n| existing.contains(n)),
            "Ana Diaz (ana@example.com)"
        );
        existing.insert("Ana Diaz (ana@example.com)".into());
        assert_eq!(
            choose_display_name(&c, |n| existing.contains(n)),
            "Ana Diaz (BC 42)"
        );
        existing.insert("Ana Diaz (BC 42)".into());
        existing.insert("Ana Diaz (BC 42) 2".into());
        assert_eq!(
            choose_display_name(&c, |n| existing.contains(n)),
            "Ana Diaz (BC 42) 3"
        );
        // Same inputs, same answer.
        assert_eq!(
            choose_display_name(&c, |n| existing.contains(n)),
            "Ana Diaz (BC 42) 3"
        );
        assert_eq!(choose_display_name(&c, |_| false), "Ana Diaz");
    }

    #[test]
    fn v3_customer_fixture_becomes_a_customer_payload() {
        let c = &fixture("spec_v3_customers_get.json")["data"][0];
        let src = CustomerSource::from_v3_customer(c);
        assert_eq!(src.bc_customer_id, None, "the spec example has no id");
        let mut src = src;
        src.bc_customer_id = Some(42);
        let p = customer_payload(&src);
        assert_eq!(p["DisplayName"], "Acme Corp");
        assert_eq!(p["GivenName"], "Jane");
        assert_eq!(p["FamilyName"], "Smith");
        assert_eq!(p["CompanyName"], "Acme Corp");
        assert_eq!(p["PrimaryEmailAddr"]["Address"], "jane.smith@example.com");
        assert_eq!(p["PrimaryPhone"]["FreeFormNumber"], "555-123-4567");
        assert_eq!(p["BillAddr"]["Line1"], "Addr1");
        assert!(
            p["BillAddr"].get("Line2").is_none(),
            "empty fields are omitted"
        );
        assert_eq!(p["BillAddr"]["Country"], "US");
        assert_eq!(p["ShipAddr"], p["BillAddr"]);
        assert_eq!(p["Notes"], "BigCommerce customer 42");
    }

    #[test]
    fn guest_billing_address_becomes_a_customer_payload() {
        let order = fixture("spec_v2_order_218_with_fees.json");
        let src = CustomerSource::from_billing_address(&order["billing_address"], None);
        let p = customer_payload(&src);
        assert_eq!(p["DisplayName"], "Jane Doe");
        assert!(p.get("CompanyName").is_none());
        assert_eq!(
            p["BillAddr"],
            json!({"Line1": "555 East Street", "City": "Austin",
            "CountrySubDivisionCode": "Texas", "PostalCode": "78108", "Country": "United States"})
        );
        assert_eq!(p["Notes"], "BigCommerce guest customer");
        let named = customer_payload_named(&src, "Jane Doe (janedoe@example.com)");
        assert_eq!(named["DisplayName"], "Jane Doe (janedoe@example.com)");
    }

    #[test]
    fn invalid_emails_are_left_out_of_the_payload() {
        for bad in ["not-an-email", "a b@c.com", "a@b", "@x.com"] {
            let src = CustomerSource {
                first_name: "A".into(),
                email: bad.into(),
                ..Default::default()
            };
            assert!(
                customer_payload(&src).get("PrimaryEmailAddr").is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn source_digest_ignores_the_display_name_but_not_the_name_parts() {
        let a = CustomerSource {
            bc_customer_id: Some(1),
            first_name: "Ana".into(),
            email: "a@b.co".into(),
            ..Default::default()
        };
        assert_eq!(source_digest(&a), source_digest(&a.clone()));
        let renamed = CustomerSource {
            first_name: "Anna".into(),
            ..a.clone()
        };
        assert_ne!(source_digest(&a), source_digest(&renamed));
        let moved = CustomerSource {
            bill_address: Some(PostalAddress {
                city: "Austin".into(),
                ..Default::default()
            }),
            ..a.clone()
        };
        assert_ne!(source_digest(&a), source_digest(&moved));
    }

    #[test]
    fn digest_ignores_key_order_and_changes_with_content() {
        let a = json!({"DisplayName": "Ana", "BillAddr": {"City": "Austin", "Line1": "1 Main"}});
        let b = json!({"BillAddr": {"Line1": "1 Main", "City": "Austin"}, "DisplayName": "Ana"});
        assert_eq!(content_digest(&a), content_digest(&b));
        assert_eq!(content_digest(&a).len(), 64);
        let c = json!({"DisplayName": "Ana", "BillAddr": {"City": "Dallas", "Line1": "1 Main"}});
        assert_ne!(content_digest(&a), content_digest(&c));
    }

    #[test]
    fn a_foreign_currency_customer_is_named_with_its_currency_and_created_in_it() {
        let home = CustomerSource {
            bc_customer_id: Some(7),
            first_name: "Ana".into(),
            last_name: "Diaz".into(),
            email: "ana@example.com".into(),
            ..CustomerSource::default()
        };
        let euro = CustomerSource {
            currency: Some("EUR".into()),
            ..home.clone()
        };
        assert_eq!(
            euro.display_name_candidates(),
            vec![
                "Ana Diaz (EUR)".to_string(),
                "Ana Diaz (ana@example.com) (EUR)".to_string(),
                "Ana Diaz (BC 7) (EUR)".to_string(),
            ]
        );
        assert_eq!(home.display_name_candidates()[0], "Ana Diaz");
        let payload = customer_payload_named(&euro, "Ana Diaz (EUR)");
        assert_eq!(payload["CurrencyRef"], json!({"value": "EUR"}));
        assert!(
            customer_payload_named(&home, "Ana Diaz")
                .get("CurrencyRef")
                .is_none()
        );
        // The suffix is never cut: a long name gives way.
        let long = CustomerSource {
            company: "X".repeat(120),
            ..euro
        };
        for c in long.display_name_candidates() {
            assert!(
                c.ends_with(" (EUR)") && c.chars().count() <= MAX_DISPLAY_NAME,
                "{c}"
            );
        }
    }
}
