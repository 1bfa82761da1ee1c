//! The seeded sandbox company: a small online retailer with a realistic chart of accounts.

use serde_json::{Value, json};

use super::Db;
use super::tax::CompanyProfile;

/// Fills an empty company. Ids are assigned in insertion order, so tests can rely on names, not ids.
pub(crate) fn seed(db: &mut Db, created: &str) {
    let acct = |db: &mut Db, name: &str, ty: &str, sub: &str, active: bool| -> String {
        let v = db.insert_raw(
            "Account",
            json!({"Name": name, "AccountType": ty, "AccountSubType": sub, "Active": active,
                   "Classification": super::entities::classification(ty), "FullyQualifiedName": name,
                   "SubAccount": false, "CurrentBalance": 0, "CurrentBalanceWithSubAccounts": 0,
                   "CurrencyRef": {"value": "USD", "name": "United States Dollar"}}),
            created,
        );
        v["Id"].as_str().unwrap_or_default().to_string()
    };
    let ar = acct(
        db,
        "Accounts Receivable (A/R)",
        "Accounts Receivable",
        "AccountsReceivable",
        true,
    );
    acct(db, "Checking", "Bank", "Checking", true);
    acct(
        db,
        "Undeposited Funds",
        "Other Current Asset",
        "UndepositedFunds",
        true,
    );
    acct(
        db,
        "Inventory Asset",
        "Other Current Asset",
        "Inventory",
        true,
    );
    acct(
        db,
        "Accounts Payable (A/P)",
        "Accounts Payable",
        "AccountsPayable",
        true,
    );
    acct(
        db,
        "Sales Tax Payable",
        "Other Current Liability",
        "SalesTaxPayable",
        true,
    );
    acct(
        db,
        "Opening Balance Equity",
        "Equity",
        "OpeningBalanceEquity",
        true,
    );
    let product = acct(
        db,
        "Sales of Product Income",
        "Income",
        "SalesOfProductIncome",
        true,
    );
    let services = acct(db, "Services", "Income", "ServiceFeeIncome", true);
    acct(
        db,
        "Home Goods Revenue",
        "Income",
        "SalesOfProductIncome",
        true,
    );
    let apparel = acct(
        db,
        "Apparel Revenue",
        "Income",
        "SalesOfProductIncome",
        true,
    );
    let shipping = acct(db, "Shipping Income", "Income", "OtherPrimaryIncome", true);
    // QuickBooks' default chart carries "Discounts given" as a contra-income account.
    acct(
        db,
        "Discounts given",
        "Income",
        "DiscountsRefundsGiven",
        true,
    );
    // The tax item needs an income-type account (the simulator enforces Income for items).
    let tax = acct(
        db,
        "Sales Tax Collected",
        "Income",
        "OtherPrimaryIncome",
        true,
    );
    // Liabilities a store owes its shoppers: gift certificates sold, store credit given.
    let gift_liability = acct(
        db,
        "Gift Certificates Outstanding",
        "Other Current Liability",
        "OtherCurrentLiabilities",
        true,
    );
    acct(
        db,
        "Store Credit Outstanding",
        "Other Current Liability",
        "OtherCurrentLiabilities",
        true,
    );
    acct(
        db,
        "Cost of Goods Sold",
        "Cost of Goods Sold",
        "SuppliesMaterialsCogs",
        true,
    );
    acct(
        db,
        "Legacy Web Sales",
        "Income",
        "SalesOfProductIncome",
        false,
    );
    let _ = ar;

    let item = |db: &mut Db, name: &str, acct_id: &str, acct_name: &str, active: bool| {
        db.insert_raw(
            "Item",
            json!({"Name": name, "FullyQualifiedName": name, "Type": "Service", "Active": active,
                   "Taxable": false, "UnitPrice": 0, "TrackQtyOnHand": false,
                   "IncomeAccountRef": {"value": acct_id, "name": acct_name}}),
            created,
        );
    };
    item(db, "Services", &services, "Services", true);
    item(
        db,
        "BigCommerce Sales",
        &product,
        "Sales of Product Income",
        true,
    );
    item(db, "Apparel Sales", &apparel, "Apparel Revenue", true);
    item(db, "Shipping Income", &shipping, "Shipping Income", true);
    item(db, "Handling Income", &shipping, "Shipping Income", true);
    item(
        db,
        "Gift Wrap Income",
        &product,
        "Sales of Product Income",
        true,
    );
    item(db, "Sales Tax Collected", &tax, "Sales Tax Collected", true);
    // Gift certificates sold: a service item booked to the liability account, as QuickBooks
    // advises for gift cards (set up in the UI; the API's income-account check is not applied).
    item(
        db,
        "Gift Certificates",
        &gift_liability,
        "Gift Certificates Outstanding",
        true,
    );
    item(
        db,
        "Discontinued Widget",
        &product,
        "Sales of Product Income",
        false,
    );

    // QuickBooks' default payment methods.
    for (name, ty) in [
        ("Cash", "NON_CREDIT_CARD"),
        ("Check", "NON_CREDIT_CARD"),
        ("Credit Card", "CREDIT_CARD"),
        ("Visa", "CREDIT_CARD"),
        ("MasterCard", "CREDIT_CARD"),
        ("American Express", "CREDIT_CARD"),
        ("Discover", "CREDIT_CARD"),
        ("Diners Club", "CREDIT_CARD"),
    ] {
        db.insert_raw(
            "PaymentMethod",
            json!({"Name": name, "Type": ty, "Active": true}),
            created,
        );
    }

    for name in ["Apparel", "Wholesale", "Retail", "Home"] {
        db.insert_raw(
            "Class",
            json!({"Name": name, "FullyQualifiedName": name, "SubClass": false, "Active": true}),
            created,
        );
    }

    let person = |display: &str, given: &str, family: &str| {
        json!({"DisplayName": display, "GivenName": given, "FamilyName": family,
               "FullyQualifiedName": display, "PrintOnCheckName": display})
    };
    let mut amy = person("Amy's Bird Sanctuary", "Amy", "Lauterbach");
    amy["CompanyName"] = json!("Amy's Bird Sanctuary");
    amy["PrimaryEmailAddr"] = json!({"Address": "Birds@Intuit.com"});
    amy["BillAddr"] = json!({"Line1": "4581 Finch St.", "City": "Bayshore", "CountrySubDivisionCode": "CA",
                             "PostalCode": "94326"});
    db.insert_customer(amy, created);
    let mut weiskopf = person("Weiskopf Consulting", "Nicola", "Weiskopf");
    weiskopf["PrimaryEmailAddr"] = json!({"Address": "consult@weiskopf.example"});
    db.insert_customer(weiskopf, created);
    let mut gone = person("Jordan Price", "Jordan", "Price");
    gone["Active"] = json!(false);
    gone["PrimaryEmailAddr"] = json!({"Address": "jordan.price@example.com"});
    db.insert_customer(gone, created);

    let mut ana = person("Ana Diaz", "Ana", "Diaz");
    ana["CompanyName"] = json!("Diaz Textile Supply");
    ana["Vendor1099"] = json!(false);
    ana["Balance"] = json!(0);
    ana["Active"] = json!(true);
    ana["CurrencyRef"] = json!({"value": "USD", "name": "United States Dollar"});
    db.insert_raw("Vendor", ana, created);
    let mut robertson = person("Robertson & Associates", "Jenny", "Robertson");
    robertson["Active"] = json!(true);
    db.insert_raw("Vendor", robertson, created);
    let mut emily = person("Emily Platt", "Emily", "Platt");
    emily["Active"] = json!(true);
    emily["BillableTime"] = json!(false);
    db.insert_raw("Employee", emily, created);

    for (id, taxable) in [("TAX", true), ("NON", false)] {
        let v = json!({"Id": id, "Name": id, "Description": if taxable {"Taxable"} else {"Non-taxable"},
                       "Active": true, "Hidden": false, "Taxable": taxable, "TaxGroup": false,
                       "SyncToken": "0", "domain": "QBO", "sparse": false,
                       "MetaData": {"CreateTime": created, "LastUpdatedTime": created}});
        db.push("TaxCode", super::exact::normalize(v));
    }

    let company = json!({
        "Id": "1", "SyncToken": "0", "domain": "QBO", "sparse": false,
        "MetaData": {"CreateTime": created, "LastUpdatedTime": created},
        "CompanyName": "Maple & Loom Outfitters LLC", "LegalName": "Maple & Loom Outfitters LLC",
        "CompanyAddr": {"Id": "1", "Line1": "1200 Harbor Way", "City": "Bayshore",
                        "CountrySubDivisionCode": "CA", "PostalCode": "94326", "Country": "US"},
        "LegalAddr": {"Id": "1", "Line1": "1200 Harbor Way", "City": "Bayshore",
                      "CountrySubDivisionCode": "CA", "PostalCode": "94326", "Country": "US"},
        "CustomerCommunicationAddr": {"Id": "1", "Line1": "1200 Harbor Way", "City": "Bayshore",
                                      "CountrySubDivisionCode": "CA", "PostalCode": "94326", "Country": "US"},
        "PrimaryPhone": {"FreeFormNumber": "(650) 555-0142"},
        "CompanyEmailAddr": {"Address": "books@mapleandloom.example"},
        "WebAddr": {"URI": "https://mapleandloom.example"},
        "CompanyStartDate": "2019-03-01", "FiscalYearStartMonth": "January", "Country": "US",
        "SupportedLanguages": "en", "DefaultTimeZone": "America/Los_Angeles",
        "NameValue": [{"Name": "NeoEnabled", "Value": "true"}, {"Name": "IndustryType", "Value": "Retail"},
                      {"Name": "SubscriptionStatus", "Value": "PAID"}, {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"}]
    });
    db.push("CompanyInfo", super::exact::normalize(company));

    let prefs = json!({
        "Id": "1", "SyncToken": "0", "domain": "QBO", "sparse": false,
        "MetaData": {"CreateTime": created, "LastUpdatedTime": created},
        "AccountingInfoPrefs": {"TrackDepartments": false, "ClassTrackingPerTxn": false,
                                "ClassTrackingPerTxnLine": true, "CustomerTerminology": "Customers",
                                "FirstMonthOfFiscalYear": "January", "UseAccountNumbers": false},
        "ProductAndServicesPrefs": {"ForSales": true, "ForPurchase": true, "QuantityWithPriceAndRate": true,
                                    "QuantityOnHand": true},
        "SalesFormsPrefs": {"CustomTxnNumbers": true, "AllowDeposit": true, "AllowDiscount": true,
                            "AllowEstimates": true, "AllowServiceDate": false, "AllowShipping": true,
                            "DefaultTerms": {"value": "3"}, "DefaultDiscountAccount": "Discounts given",
                            "ETransactionEnabledStatus": "NotApplicable"},
        "CurrencyPrefs": {"MultiCurrencyEnabled": db.currencies.multicurrency,
                          "HomeCurrency": {"value": db.currencies.home}},
        "TaxPrefs": {"UsingSalesTax": true, "PartnerTaxEnabled": true}
    });
    db.push("Preferences", super::exact::normalize(prefs));
    seed_tax(db, created);
}

/// The profile's tax set-up: the US company's automated sales tax rate; the UK company's VAT
/// codes and rates, country and home currency.
fn seed_tax(db: &mut Db, created: &str) {
    let meta = json!({"CreateTime": created, "LastUpdatedTime": created});
    let stamp = |v: Value| {
        let mut v = v;
        v["SyncToken"] = json!("0");
        v["domain"] = json!("QBO");
        v["sparse"] = json!(false);
        v["MetaData"] = meta.clone();
        super::exact::normalize(v)
    };
    match db.profile {
        CompanyProfile::UsAst => {
            let rate = stamp(
                json!({"Id": "1", "Name": "California", "Description": "Automated sales tax (combined rate)",
                "Active": true, "RateValue": super::tax::US_AST_RATE_PERCENT.to_string(),
                "AgencyRef": {"value": "1"}, "SpecialTaxType": "NONE", "DisplayType": "ReadOnly"}),
            );
            db.push("TaxRate", rate);
        }
        CompanyProfile::UkVat => {
            db.entities.remove("TaxCode");
            for (id, name, rate, desc) in [
                ("1", "20.0% S", "20", "Standard rated"),
                ("2", "5.0% R", "5", "Reduced rated"),
                ("3", "0.0% Z", "0", "Zero rated"),
                ("4", "Exempt", "0", "Exempt"),
            ] {
                db.push(
                    "TaxRate",
                    stamp(
                        json!({"Id": id, "Name": format!("{name} (sales)"), "Description": desc,
                        "Active": true, "RateValue": rate, "AgencyRef": {"value": "1"},
                        "SpecialTaxType": "NONE", "DisplayType": "ReadOnly"}),
                    ),
                );
                db.push(
                    "TaxCode",
                    stamp(json!({"Id": id, "Name": name, "Description": desc, "Active": true,
                        "Hidden": false, "Taxable": rate != "0", "TaxGroup": false,
                        "SalesTaxRateList": {"TaxRateDetail": [{"TaxRateRef": {"value": id, "name": format!("{name} (sales)")},
                            "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]},
                        "PurchaseTaxRateList": {"TaxRateDetail": []}})),
                );
            }
            let gb = json!({"Id": "1", "Line1": "14 Weaver Street", "City": "Manchester",
                            "PostalCode": "M4 6DE", "Country": "GB"});
            if let Some(c) = db
                .entities
                .get_mut("CompanyInfo")
                .and_then(|l| l.first_mut())
            {
                c["Country"] = json!("GB");
                c["CompanyAddr"] = gb.clone();
                c["LegalAddr"] = gb.clone();
                c["CustomerCommunicationAddr"] = gb;
                c["DefaultTimeZone"] = json!("Europe/London");
                c["CompanyName"] = json!("Maple & Loom Outfitters Ltd");
                c["LegalName"] = json!("Maple & Loom Outfitters Ltd");
            }
            if let Some(p) = db
                .entities
                .get_mut("Preferences")
                .and_then(|l| l.first_mut())
            {
                p["TaxPrefs"] = json!({"UsingSalesTax": true, "PartnerTaxEnabled": false});
            }
            if let Some(customers) = db.entities.get_mut("Customer") {
                for c in customers {
                    c["CurrencyRef"] = super::currency::currency_ref(&db.currencies.home);
                }
            }
        }
    }
}

/// Marks a value as an entity record (`domain`, `sparse`, `SyncToken`, `MetaData`).
pub(crate) fn stamp(mut v: Value, id: String, created: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("Id".into(), Value::String(id));
        o.entry("SyncToken").or_insert_with(|| json!("0"));
        o.insert("domain".into(), json!("QBO"));
        o.insert("sparse".into(), json!(false));
        o.entry("MetaData")
            .or_insert_with(|| json!({"CreateTime": created, "LastUpdatedTime": created}));
    }
    v
}
