//! The seeded store: identity, catalog, customer groups and registered customers.
//!
//! The generator draws order lines and registered buyers from here, so every product id an
//! order mentions is served by `/v3/catalog/products/{id}` and every `customer_id` by
//! `/v3/customers?id:in=`.

use serde_json::{Value, json};

/// Store hash used in `stores/{hash}` paths and the webhook `producer`.
pub const STORE_HASH: &str = "mlsim7q2k9";
/// Numeric store id sent as the webhook `store_id` (a string of digits, as BigCommerce sends it).
pub const STORE_ID: &str = "1002817942";
/// The store's display name (what `GET /v2/store` reports as `name`).
pub const STORE_NAME: &str = "Maple & Loom Outfitters";

/// Category id of "Apparel".
pub const CATEGORY_APPAREL: i64 = 18;
/// Category id of "Home Goods".
pub const CATEGORY_HOME_GOODS: i64 = 23;
/// Category id of "Accessories".
pub const CATEGORY_ACCESSORIES: i64 = 24;

/// One product of the seeded catalog.
#[derive(Debug, Clone)]
pub struct CatalogItem {
    /// Catalog product id.
    pub id: u64,
    /// Product name.
    pub name: &'static str,
    /// Base SKU (apparel starts with `APP-`).
    pub sku: &'static str,
    /// List price in cents (ex tax for ex-tax stores; the inc-tax price for tax-inclusive orders).
    pub price_cents: i64,
    /// Cost price in cents.
    pub cost_cents: i64,
    /// Category ids.
    pub categories: &'static [i64],
    /// Brand id.
    pub brand_id: i64,
    /// Option name and its possible values (empty name = no options).
    pub option: (&'static str, &'static [&'static str]),
    /// Weight in pounds, as BigCommerce prints it.
    pub weight: &'static str,
}

/// Brands: id and name.
pub const BRANDS: &[(i64, &str)] = &[
    (3, "Maple & Loom"),
    (5, "Hearth & Kiln"),
    (7, "Northbound Supply Co."),
    (9, "Atelier Mirabelle"),
];

/// Categories: id, name, parent id.
pub const CATEGORIES: &[(i64, &str, i64)] = &[
    (CATEGORY_APPAREL, "Apparel", 0),
    (CATEGORY_HOME_GOODS, "Home Goods", 0),
    (CATEGORY_ACCESSORIES, "Accessories", 0),
    (31, "Kitchen", CATEGORY_HOME_GOODS),
];

/// The seeded catalog.
pub const CATALOG: &[CatalogItem] = &[
    CatalogItem {
        id: 111,
        name: "Linen Button-Down Shirt",
        sku: "APP-LBS-01",
        price_cents: 4900,
        cost_cents: 1800,
        categories: &[CATEGORY_APPAREL],
        brand_id: 3,
        option: ("Size", &["S", "M", "L", "XL"]),
        weight: "0.6000",
    },
    CatalogItem {
        id: 112,
        name: "Merino Crew Sweater",
        sku: "APP-MCS-02",
        price_cents: 8900,
        cost_cents: 3100,
        categories: &[CATEGORY_APPAREL],
        brand_id: 3,
        option: ("Color", &["Oat", "Charcoal", "Forest"]),
        weight: "0.9000",
    },
    CatalogItem {
        id: 113,
        name: "Heavyweight Pocket Tee",
        sku: "APP-HWT-03",
        price_cents: 2400,
        cost_cents: 700,
        categories: &[CATEGORY_APPAREL],
        brand_id: 7,
        option: ("Size", &["S", "M", "L"]),
        weight: "0.4000",
    },
    CatalogItem {
        id: 114,
        name: "Waxed Canvas Apron",
        sku: "APP-CAP-04",
        price_cents: 3250,
        cost_cents: 1100,
        categories: &[CATEGORY_APPAREL, CATEGORY_HOME_GOODS],
        brand_id: 7,
        option: ("", &[]),
        weight: "0.7000",
    },
    CatalogItem {
        id: 120,
        name: "Stoneware Mug Set (4)",
        sku: "HG-MUG-4PK",
        price_cents: 3600,
        cost_cents: 1400,
        categories: &[CATEGORY_HOME_GOODS, 31],
        brand_id: 5,
        option: ("Glaze", &["Speckled White", "Slate"]),
        weight: "2.2000",
    },
    CatalogItem {
        id: 121,
        name: "Wool Throw Blanket",
        sku: "HG-THR-WL",
        price_cents: 12900,
        cost_cents: 5200,
        categories: &[CATEGORY_HOME_GOODS],
        brand_id: 5,
        option: ("", &[]),
        weight: "3.1000",
    },
    CatalogItem {
        id: 122,
        name: "Beeswax Pillar Candle",
        sku: "HG-CND-BW",
        price_cents: 1475,
        cost_cents: 400,
        categories: &[CATEGORY_HOME_GOODS],
        brand_id: 5,
        option: ("Scent", &["Unscented", "Cedar", "Honey"]),
        weight: "0.8000",
    },
    CatalogItem {
        id: 130,
        name: "Leather Card Wallet",
        sku: "ACC-WAL-01",
        price_cents: 4500,
        cost_cents: 1500,
        categories: &[CATEGORY_ACCESSORIES],
        brand_id: 9,
        option: ("Color", &["Tan", "Black"]),
        weight: "0.2000",
    },
    CatalogItem {
        id: 131,
        name: "Enamel Pin — Maple Leaf",
        sku: "ACC-PIN-07",
        price_cents: 799,
        cost_cents: 150,
        categories: &[CATEGORY_ACCESSORIES],
        brand_id: 3,
        option: ("", &[]),
        weight: "0.0500",
    },
    CatalogItem {
        id: 132,
        name: "Market Tote Bag",
        sku: "TOTE-MKT-NAT",
        price_cents: 2800,
        cost_cents: 900,
        categories: &[CATEGORY_ACCESSORIES, CATEGORY_HOME_GOODS],
        brand_id: 9,
        option: ("", &[]),
        weight: "0.5000",
    },
];

/// Looks a seeded catalog item up by id.
pub fn catalog_item(id: u64) -> Option<&'static CatalogItem> {
    CATALOG.iter().find(|c| c.id == id)
}

/// Brand name for a brand id ("" when unknown).
pub fn brand_name(id: i64) -> &'static str {
    BRANDS.iter().find(|b| b.0 == id).map_or("", |b| b.1)
}

/// The v3 catalog product for a seeded item, as `GET /v3/catalog/products/{id}` has it inside `data`.
pub fn catalog_product_json(item: &CatalogItem) -> Value {
    json!({
        "id": item.id,
        "name": item.name,
        "type": "physical",
        "sku": item.sku,
        "description": format!("<p>{}</p>", item.name),
        "weight": serde_json::from_str::<Value>(item.weight).unwrap_or(Value::Null),
        "width": 0, "depth": 0, "height": 0,
        "price": cents_number(item.price_cents),
        "cost_price": cents_number(item.cost_cents),
        "retail_price": 0, "sale_price": 0, "map_price": 0,
        "tax_class_id": 0,
        "product_tax_code": "",
        "calculated_price": cents_number(item.price_cents),
        "categories": item.categories,
        "brand_id": item.brand_id,
        "option_set_id": null,
        "option_set_display": "right",
        "inventory_level": 120,
        "inventory_warning_level": 10,
        "inventory_tracking": "product",
        "is_free_shipping": false,
        "is_visible": true,
        "is_featured": false,
        "upc": "",
        "mpn": "",
        "gtin": "",
        "availability": "available",
        "condition": "New",
        "is_condition_shown": false,
        "order_quantity_minimum": 0,
        "order_quantity_maximum": 0,
        "custom_url": {"url": format!("/{}/", item.sku.to_lowercase()), "is_customized": false},
        "date_created": "2025-09-14T10:21:07+00:00",
        "date_modified": "2026-01-02T08:00:00+00:00",
        "base_variant_id": item.id * 10 + 1,
    })
}

// The catalog API prints prices as JSON numbers; two decimals is what the store holds.
fn cents_number(cents: i64) -> Value {
    let d = rust_decimal::Decimal::new(cents, 2);
    serde_json::from_str(&d.to_string()).unwrap_or(Value::Null)
}

/// Customer groups: id and name (0 is the implicit guest group).
pub const CUSTOMER_GROUPS: &[(i64, &str)] = &[(0, "Guest"), (1, "Retail"), (2, "Wholesale")];

/// One seeded registered customer.
#[derive(Debug, Clone)]
pub struct SeedCustomer {
    /// Customer id.
    pub id: u64,
    /// First name.
    pub first: &'static str,
    /// Last name.
    pub last: &'static str,
    /// Company ("" for none).
    pub company: &'static str,
    /// Email.
    pub email: &'static str,
    /// Phone.
    pub phone: &'static str,
    /// Customer group id (1 retail, 2 wholesale).
    pub group: i64,
    /// Street, city, state, zip, country, ISO2.
    pub address: (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ),
}

/// The seeded registered customers (names with `'`, `&`, accents and CJK on purpose).
pub const CUSTOMERS: &[SeedCustomer] = &[
    SeedCustomer {
        id: 1,
        first: "Ana",
        last: "Díaz",
        company: "",
        email: "ana.diaz@example.com",
        phone: "512-555-0143",
        group: 1,
        address: (
            "1 Main St",
            "Austin",
            "Texas",
            "78701",
            "United States",
            "US",
        ),
    },
    SeedCustomer {
        id: 2,
        first: "Seán",
        last: "O'Brien",
        company: "",
        email: "sean.obrien@example.ie",
        phone: "+353 1 555 0199",
        group: 1,
        address: (
            "14 Harcourt St",
            "Dublin",
            "Dublin",
            "D02 XY45",
            "Ireland",
            "IE",
        ),
    },
    SeedCustomer {
        id: 3,
        first: "Marcus",
        last: "Smith",
        company: "Smith & Sons Hardware",
        email: "orders@smithandsons.example",
        phone: "614-555-0110",
        group: 2,
        address: (
            "220 Commerce Pkwy",
            "Columbus",
            "Ohio",
            "43215",
            "United States",
            "US",
        ),
    },
    SeedCustomer {
        id: 4,
        first: "太郎",
        last: "山田",
        company: "",
        email: "taro.yamada@example.jp",
        phone: "+81 3-5555-0101",
        group: 1,
        address: (
            "1-2-3 Shibuya",
            "Shibuya-ku",
            "Tokyo",
            "150-0002",
            "Japan",
            "JP",
        ),
    },
    SeedCustomer {
        id: 5,
        first: "Zoë",
        last: "Bélanger-Côté",
        company: "Atelier Zoë & Cie",
        email: "zoe@ateliercote.example",
        phone: "514-555-0177",
        group: 2,
        address: (
            "455 Rue Saint-Paul O",
            "Montréal",
            "Quebec",
            "H2Y 2A6",
            "Canada",
            "CA",
        ),
    },
    SeedCustomer {
        id: 6,
        first: "Jane",
        last: "Doe",
        company: "",
        email: "janedoe@example.com",
        phone: "1234567890",
        group: 1,
        address: (
            "555 East Street",
            "Austin",
            "Texas",
            "78108",
            "United States",
            "US",
        ),
    },
];

/// The v3 customer JSON for a seeded customer, with `addresses` (the `include=addresses` form).
pub fn customer_json(c: &SeedCustomer) -> Value {
    let (street, city, state, zip, country, iso2) = c.address;
    json!({
        "id": c.id,
        "email": c.email,
        "first_name": c.first,
        "last_name": c.last,
        "company": c.company,
        "phone": c.phone,
        "notes": "",
        "tax_exempt_category": "",
        "customer_group_id": c.group,
        "registration_ip_address": "",
        "date_created": format!("2025-0{}-1{}T09:3{}:00Z", 1 + c.id % 8, c.id % 10, c.id % 10),
        "date_modified": "2026-01-02T12:00:00Z",
        "address_count": 1,
        "attribute_count": 0,
        "authentication": {"force_password_reset": false},
        "store_credit_amounts": [{"amount": 0}],
        "accepts_product_review_abandoned_cart_emails": false,
        "origin_channel_id": 1,
        "channel_ids": [1],
        "addresses": [{
            "id": c.id * 10 + 1,
            "customer_id": c.id,
            "first_name": c.first,
            "last_name": c.last,
            "company": c.company,
            "address1": street,
            "address2": "",
            "city": city,
            "state_or_province": state,
            "postal_code": zip,
            "country": country,
            "country_code": iso2,
            "phone": c.phone,
            "address_type": if c.company.is_empty() { "residential" } else { "commercial" },
        }],
    })
}

/// Guest shoppers the generator draws from: first, last, email, street, city, state, zip.
pub const GUESTS: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "Chloé",
        "Martin",
        "chloe.martin@example.fr",
        "88 Pine Ave",
        "Portland",
        "Oregon",
        "97205",
    ),
    (
        "Wei",
        "Zhang",
        "wei.zhang@example.com",
        "301 Market St",
        "San Francisco",
        "California",
        "94105",
    ),
    (
        "D'Arcy",
        "Quinn",
        "darcy.quinn@example.com",
        "9 Elm Ct",
        "Denver",
        "Colorado",
        "80202",
    ),
    (
        "Priya",
        "Natarajan",
        "priya.n@example.in",
        "77 Lake Shore Dr",
        "Chicago",
        "Illinois",
        "60611",
    ),
    (
        "Björn",
        "Ångström",
        "bjorn.a@example.se",
        "12 Harbor Rd",
        "Seattle",
        "Washington",
        "98101",
    ),
    (
        "Jane",
        "Doe",
        "janedoe@example.com",
        "555 East Street",
        "Austin",
        "Texas",
        "78108",
    ),
];

/// `GET /v2/store` body.
pub fn store_json(store_hash: &str) -> Value {
    let mut v = json!({
        "id": store_hash,
        "account_uuid": "c3b1f0e2-7d44-4a8e-9a41-5f2d9b7e61aa",
        "domain": "mapleandloom.example",
        "secure_url": "https://mapleandloom.example",
        "control_panel_base_url": format!("https://store-{store_hash}.mybigcommerce.com"),
        "status": "live",
        "name": STORE_NAME,
        "first_name": "Elena",
        "last_name": "Marsh",
        "address": "Maple & Loom Outfitters\n120 Congress Ave\nAustin, Texas 78701\nUnited States",
        "country": "United States",
        "country_code": "US",
        "phone": "512-555-0100",
        "admin_email": "owner@mapleandloom.example",
        "order_email": "orders@mapleandloom.example",
        "favicon_url": "",
        "timezone": {
            "name": "America/Chicago",
            "raw_offset": -21600,
            "dst_offset": -18000,
            "dst_correction": false,
            "date_format": {
                "display": "jS M Y",
                "export": "M jS Y",
                "extended_display": "M jS Y @ g:i A"
            }
        },
    });
    let more = json!({
        "language": "en",
        "currency": "USD",
        "currency_symbol": "$",
        "decimal_separator": ".",
        "thousands_separator": ",",
        "decimal_places": 2,
        "currency_symbol_location": "left",
        "weight_units": "LBS",
        "dimension_units": "Inches",
        "dimension_decimal_places": 2,
        "dimension_decimal_token": ".",
        "dimension_thousands_token": ",",
        "plan_name": "Plus",
        "plan_level": "Plus",
        "plan_is_trial": false,
        "industry": "Apparel & Clothing",
        "logo": [],
        "is_price_entered_with_tax": false,
        "store_id": STORE_ID.parse::<u64>().unwrap_or(0),
        "default_site_id": 1000,
        "default_channel_id": 1,
        "active_comparison_modules": [],
        "features": {
            "stencil_enabled": true,
            "sitewidehttps_enabled": true,
            "facebook_catalog_id": "",
            "checkout_type": "optimized",
            "wishlists_enabled": true,
            "graphql_storefront_api_enabled": true,
            "shopper_consent_tracking_enabled": false,
            "multi_storefront_enabled": false,
            "storefront_limits": {"active": 1, "total_including_inactive": 1}
        }
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut v, more) {
        a.extend(b);
    }
    v
}
