use super::*;
use chrono::NaiveDate;

use crate::http::{HttpResponse, Method, header_value};
use crate::models::money::{Money, dec};

fn fixture(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../../shared/fixtures/quickbooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn resp(status: u16, body: Vec<u8>, tid_header: Option<(&str, &str)>) -> HttpResponse {
    let mut r = HttpResponse::new(status, body);
    if let Some((k, v)) = tid_header {
        r.headers.push((k.into(), v.into()));
    }
    r
}

#[test]
fn both_fault_shapes_parse_with_status_and_tid() {
    let r = resp(
        400,
        fixture("fault_6240_duplicate_name_400.json"),
        Some(("Intuit-Tid", "1-abc")),
    );
    let e = check_response(&r).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.code(), Some("6240"));
    assert_eq!(e.errors[0].message, "Duplicate Name Exists Error");
    assert_eq!(e.intuit_tid.as_deref(), Some("1-abc"));
    assert_eq!(e.fault_type.as_deref(), Some("ValidationFault"));
    assert!(e.to_string().contains("already has that name"), "{e}");
    assert!(!e.is_retryable());

    let r = resp(
        401,
        fixture("fault_3200_authentication_401_lowercase_shape.json"),
        Some(("intuit_tid", "t2")),
    );
    let e = check_response(&r).unwrap_err();
    assert!(e.is_authentication());
    assert!(e.has_code("3200"));
    assert_eq!(e.intuit_tid.as_deref(), Some("t2"));
    assert!(e.errors[0].detail.starts_with("Token expired"));

    let e =
        check_response(&resp(400, fixture("fault_2030_invalid_id_400.json"), None)).unwrap_err();
    assert_eq!(e.errors[0].element.as_deref(), Some("Id"));
    assert!(e.intuit_tid.is_none());
}

#[test]
fn a_fault_inside_http_200_is_still_an_error_and_plain_5xx_is_retryable() {
    let body = br#"{"Fault":{"Error":[{"Message":"m","Detail":"d","code":"6000"}],"type":"ValidationFault"}}"#;
    assert_eq!(
        check_response(&resp(200, body.to_vec(), None))
            .unwrap_err()
            .code(),
        Some("6000")
    );
    let e = check_response(&resp(503, b"busy".to_vec(), None)).unwrap_err();
    assert!(e.is_retryable());
    assert!(check_response(&resp(200, b"{}".to_vec(), None)).is_ok());
}

#[test]
fn recorded_invoice_response_parses_and_subtotals_are_separable() {
    let r = resp(200, fixture("invoice_create_response_200.json"), None);
    let inv: Invoice = parse_entity(&r, "Invoice").unwrap();
    assert_eq!(inv.id.as_deref(), Some("266"));
    assert_eq!(inv.total_amt, Some(Money::new(dec!(100))));
    assert_eq!(inv.line.len(), 2);
    assert_eq!(inv.lines_without_subtotals().count(), 1);
    // Read-only fields are never sent back.
    let out = serde_json::to_value(&inv).unwrap();
    assert!(out.get("TotalAmt").is_none() && out.get("Balance").is_none());
}

#[test]
fn invoice_serializes_with_xsd_names_and_exact_numbers() {
    let inv = Invoice {
        doc_number: Some("250".into()),
        txn_date: NaiveDate::from_ymd_opt(2025, 1, 6),
        customer_ref: Ref::id("1"),
        line: vec![
            Line::sales(
                Money::new(dec!(10)),
                Some("Towel".into()),
                SalesItemLineDetail {
                    item_ref: Ref::id("5"),
                    qty: Some(dec!(3)),
                    unit_price: Some(dec!(3.3333333)),
                    ..Default::default()
                },
            ),
            Line::discount(Money::new(dec!(1.5)), None, Some(Ref::id("86"))),
        ],
        txn_tax_detail: Some(TxnTaxDetail {
            txn_tax_code_ref: None,
            total_tax: Some(Money::new(dec!(0.8))),
        }),
        bill_email: Some(EmailAddress {
            address: "a@b.c".into(),
        }),
        ..Default::default()
    };
    let s = String::from_utf8(serde_json::to_vec(&inv).unwrap()).unwrap();
    assert!(s.contains(r#""Amount":10.00"#), "{s}");
    assert!(s.contains(r#""UnitPrice":3.3333333,"Qty":3"#), "{s}");
    assert!(s.contains(r#""DetailType":"DiscountLineDetail","DiscountLineDetail":{"PercentBased":false,"DiscountAccountRef":{"value":"86"}}"#), "{s}");
    assert!(s.contains(r#""TxnTaxDetail":{"TotalTax":0.80}"#), "{s}");
    assert!(
        s.contains(r#""TxnDate":"2025-01-06""#) && s.contains(r#""BillEmail":{"Address":"a@b.c"}"#),
        "{s}"
    );
    assert!(!s.contains("null"), "{s}");
}

#[test]
fn queries_escape_quotes_refuse_backslashes_and_encode_the_statement() {
    let q = select_where_eq("Customer", "DisplayName", "Amy's Bird Sanctuary").unwrap();
    assert_eq!(
        q,
        r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird Sanctuary'"
    );
    let r = query("https://q.example/", "123", "at", &q);
    assert_eq!(
        r.url,
        "https://q.example/v3/company/123/query?query=SELECT%20%2A%20FROM%20Customer%20WHERE%20DisplayName%20%3D%20%27Amy%5C%27s%20Bird%20Sanctuary%27&minorversion=75"
    );
    assert_eq!(header_value(&r.headers, "authorization"), Some("Bearer at"));
    assert!(
        select_where_eq("Item", "Name", "A & B")
            .unwrap()
            .contains("'A & B'")
    );
    assert!(query("h", "1", "t", "x = 'A & B'").url.contains("%26"));
    assert!(matches!(
        escape_literal(r"a\b"),
        Err(QueryError::Backslash(_))
    ));
    assert!(select_where_eq("Item; DROP", "Name", "x").is_err());
}

#[test]
fn query_responses_with_and_without_matches() {
    let r = resp(
        200,
        fixture("customer_query_by_displayname_escaped_quote_200.json"),
        None,
    );
    let page: QueryPage<Customer> = parse_query(&r, "Customer").unwrap();
    assert_eq!(page.entities.len(), 1);
    assert!(
        page.entities[0]
            .display_name
            .as_deref()
            .unwrap()
            .contains('\'')
    );
    let empty = resp(200, br#"{"QueryResponse":{},"time":"x"}"#.to_vec(), None);
    let page: QueryPage<Item> = parse_query(&empty, "Item").unwrap();
    assert!(page.entities.is_empty());
    let count = resp(200, br#"{"QueryResponse":{"totalCount":5}}"#.to_vec(), None);
    assert_eq!(
        parse_query::<Item>(&count, "Item").unwrap().total_count,
        Some(5)
    );
}

#[test]
fn write_builders_carry_minorversion_requestid_and_sparse() {
    let c = Customer {
        id: Some("7".into()),
        sync_token: Some("2".into()),
        display_name: Some("Ana".into()),
        ..Default::default()
    };
    let r = create("https://q", "9", "at", "Customer", &c, "bc-order-1-abc");
    assert_eq!(r.method, Method::Post);
    assert_eq!(
        r.url,
        "https://q/v3/company/9/customer?minorversion=75&requestid=bc-order-1-abc"
    );
    assert_eq!(
        header_value(&r.headers, "content-type"),
        Some("application/json")
    );
    let u = sparse_update("https://q", "9", "at", "Customer", &c, "rid");
    let v: serde_json::Value = serde_json::from_slice(&u.body).unwrap();
    assert_eq!(v["sparse"], serde_json::json!(true));
    assert_eq!(v["Id"], "7");
    assert_eq!(v["SyncToken"], "2");
    assert_eq!(
        read("https://q", "9", "at", "Invoice", "266").url,
        "https://q/v3/company/9/invoice/266?minorversion=75"
    );
    assert_eq!(
        company_info("https://q", "9", "at").url,
        "https://q/v3/company/9/companyinfo/9?minorversion=75"
    );
}

#[test]
fn request_ids_are_deterministic_short_and_distinct() {
    let a = request_id(&["bc", "order", "250", "v1"]);
    assert_eq!(a, request_id(&["bc", "order", "250", "v1"]));
    assert!(a.starts_with("bc-order-250-"), "{a}");
    assert!(a.len() <= 50);
    assert_ne!(a, request_id(&["bc", "order", "250", "v2"]));
    let long = "x".repeat(200);
    assert!(request_id(&[&long, &long, &long]).len() <= 50);
    // Part boundaries matter.
    assert_ne!(request_id(&["ab", "c"]), request_id(&["a", "bc"]));
}
