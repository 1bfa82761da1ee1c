//! Deterministic generator of realistic BigCommerce v2 orders.
//!
//! Every amount is a whole number of cents so the totals identity the connector checks
//! (`total_ex_tax = subtotal_ex_tax + shipping + handling + wrapping - coupon_discount -
//! discount_amount`, `total_inc_tax = total_ex_tax + total_tax`) holds exactly, not within a cent.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use super::seed::{self, CATALOG, CUSTOMERS, GUESTS};

/// The knobs of one generated order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderShape {
    /// Number of order lines (products), at least 1.
    pub lines: usize,
    /// `is_tax_inclusive_pricing`: inc-tax prices are the round, authoritative numbers.
    pub tax_inclusive: bool,
    /// Tax rate in basis points (625 = 6.25 %); 0 = no tax.
    pub tax_rate_bp: u32,
    /// A coupon discount applies.
    pub coupon: bool,
    /// A manual (staff) order discount applies.
    pub manual_discount: bool,
    /// Paid shipping; false = free shipping.
    pub shipping: bool,
    /// A handling charge applies.
    pub handling: bool,
    /// Gift wrapping on the first line.
    pub wrapping: bool,
    /// Guest checkout (`customer_id: 0`).
    pub guest: bool,
    /// Seed for every random choice (products, quantities, names, dates).
    pub seed: u64,
}

/// How a generated order was paid. The figures always tie: gift certificate + store credit +
/// what the gateway charged = `total_inc_tax`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Payment {
    /// Not paid yet: an offline method, status 7 (Awaiting Payment), payment status `pending`.
    #[default]
    Unpaid,
    /// Paid by card at checkout: payment status `captured`, status 11.
    Captured,
    /// Card authorized at checkout, to be captured later ([`capture`]): payment status
    /// `authorized`, status 11.
    Authorized,
    /// A gift certificate of this many cents (at most the total), the rest captured by card.
    GiftCertificate(i64),
    /// Store credit of this many cents (at most the total), the rest captured by card.
    StoreCredit(i64),
}

/// Captures an authorized order's payment, as the merchant does later in BigCommerce.
pub fn capture(order: &mut Value) {
    order["payment_status"] = json!("captured");
}

/// An order as the simulator serves it, with its line rows and (for registered buyers) customer.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedOrder {
    /// The v2 order exactly as `GET /v2/orders/{id}?include=consignments.line_items,fees&consignment_structure=object`
    /// returns it: consignments embed the line items, `fees` is an array.
    pub order: Value,
    /// The `/v2/orders/{id}/products` rows.
    pub products: Vec<Value>,
    /// The v3 customer with addresses (None for guests).
    pub customer: Option<Value>,
}

pub(super) fn money(d: Decimal) -> Value {
    Value::String(format!("{:.4}", d.round_dp(4)))
}

fn cents(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Splits an inc-tax amount into (ex, tax) at `rate`: ex rounded to the cent, tax the rest.
fn split_inclusive(inc: Decimal, rate: Decimal) -> (Decimal, Decimal) {
    let ex = round2(inc / (Decimal::ONE + rate));
    (ex, inc - ex)
}

/// (ex, tax, inc) for an amount entered as `entered`, in the pricing mode of the order.
fn priced(entered: Decimal, rate: Decimal, inclusive: bool) -> (Decimal, Decimal, Decimal) {
    if inclusive {
        let (ex, tax) = split_inclusive(entered, rate);
        (ex, tax, entered)
    } else {
        let tax = round2(entered * rate);
        (entered, tax, entered + tax)
    }
}

/// Spreads `total` over `weights` in proportion, to the cent, summing exactly to `total`.
fn allocate(total: Decimal, weights: &[Decimal]) -> Vec<Decimal> {
    let sum: Decimal = weights.iter().copied().sum();
    if weights.is_empty() || sum.is_zero() {
        return vec![Decimal::ZERO; weights.len()];
    }
    let mut out: Vec<Decimal> = weights
        .iter()
        .map(|w| (total * *w / sum).round_dp_with_strategy(2, RoundingStrategy::ToZero))
        .collect();
    let mut rest = total - out.iter().copied().sum::<Decimal>();
    // Hand the leftover cents to the heaviest lines first, so no small line goes negative.
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| weights[*b].cmp(&weights[*a]));
    let cent = Decimal::new(1, 2);
    let mut i = 0;
    while rest > Decimal::ZERO {
        out[order[i % order.len()]] += cent;
        rest -= cent;
        i += 1;
    }
    out
}

fn rfc2822(t: DateTime<Utc>) -> String {
    t.to_rfc2822()
}

/// Generates order `id` with the given shape, not paid yet. Deterministic in (`id`, `shape`).
pub fn generate(id: u64, shape: &OrderShape) -> GeneratedOrder {
    generate_paid(id, shape, Payment::Unpaid)
}

/// Generates order `id` with the given shape, paid as `payment` says. Deterministic in
/// (`id`, `shape`, `payment`); the figures are those of [`generate`] for the same shape.
pub fn generate_paid(id: u64, shape: &OrderShape, payment: Payment) -> GeneratedOrder {
    let mut rng = StdRng::seed_from_u64(shape.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let rate = Decimal::new(i64::from(shape.tax_rate_bp), 4);
    let incl = shape.tax_inclusive;
    let lines = shape.lines.max(1);
    let address_id = id * 10 + 1;
    let store = seed::STORE_HASH;
    let base_url = format!("https://api.bigcommerce.com/stores/{store}/v2");

    // Buyer.
    let registered = if shape.guest {
        None
    } else {
        CUSTOMERS.choose(&mut rng)
    };
    let guest = GUESTS.choose(&mut rng).copied().unwrap_or(GUESTS[0]);
    let (first, last, company, email, phone, street, city, state, zip, country, iso2) =
        match registered {
            Some(c) => {
                let a = c.address;
                (
                    c.first, c.last, c.company, c.email, c.phone, a.0, a.1, a.2, a.3, a.4, a.5,
                )
            }
            None => (
                guest.0,
                guest.1,
                "",
                guest.2,
                "",
                guest.3,
                guest.4,
                guest.5,
                guest.6,
                "United States",
                "US",
            ),
        };
    let billing = json!({
        "first_name": first, "last_name": last, "company": company,
        "street_1": street, "street_2": "", "city": city, "state": state, "zip": zip,
        "country": country, "country_iso2": iso2, "phone": phone, "email": email,
        "form_fields": [],
    });

    // Dates: early 2026, spread by order id and seed so lists sort plausibly.
    let created = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::minutes(
            i64::try_from(id % 100_000).unwrap_or(0) * 7 + rng.random_range(0..300),
        );
    let modified = created + Duration::minutes(rng.random_range(1..90));

    // Lines: distinct catalog items when there are enough of them.
    let mut picks: Vec<usize> = (0..CATALOG.len()).collect();
    picks.shuffle(&mut rng);
    let mut rows = Vec::with_capacity(lines);
    struct Line {
        total_ex: Decimal,
    }
    let mut line_data = Vec::with_capacity(lines);
    for i in 0..lines {
        let item = &CATALOG[picks[i % picks.len()]];
        let qty: i64 = rng.random_range(1..=5);
        let entered = cents(item.price_cents);
        let (price_ex, price_tax, price_inc) = priced(entered, rate, incl);
        let total_ex = price_ex * Decimal::from(qty);
        let (total_tax, total_inc) = if incl {
            let inc = price_inc * Decimal::from(qty);
            (inc - total_ex, inc)
        } else {
            let tax = round2(total_ex * rate);
            (tax, total_ex + tax)
        };
        let (opt_name, values) = item.option;
        let chosen = values.choose(&mut rng).copied();
        let order_product_id = id * 100 + i as u64 + 1;
        let (sku, variant_id, options) = match chosen {
            Some(v) if !opt_name.is_empty() => {
                let idx = values.iter().position(|x| *x == v).unwrap_or(0) as u64;
                let suffix: String = v
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(3)
                    .collect();
                (
                    format!("{}-{}", item.sku, suffix.to_uppercase()),
                    item.id * 10 + idx + 1,
                    json!([{
                        "id": order_product_id * 10 + 1,
                        "option_id": 100 + item.id,
                        "order_product_id": order_product_id,
                        "product_option_id": 200 + item.id,
                        "display_name": opt_name,
                        "display_name_customer": opt_name,
                        "display_name_merchant": opt_name,
                        "display_value": v,
                        "display_value_customer": v,
                        "display_value_merchant": v,
                        "value": (300 + idx).to_string(),
                        "type": "Multiple choice",
                        "name": format!("{opt_name} options"),
                        "display_style": "Rectangle",
                    }]),
                )
            }
            _ => (item.sku.to_string(), item.id * 10 + 1, json!([])),
        };
        let base_price = if incl { price_inc } else { price_ex };
        let wrap = shape.wrapping && i == 0;
        rows.push(json!({
            "id": order_product_id,
            "order_id": id,
            "product_id": item.id,
            "variant_id": variant_id,
            "order_pickup_method_id": 0,
            "order_address_id": address_id,
            "name": item.name,
            "name_customer": item.name,
            "name_merchant": item.name,
            "sku": sku,
            "upc": "",
            "type": "physical",
            "base_price": money(base_price),
            "price_ex_tax": money(price_ex),
            "price_inc_tax": money(price_inc),
            "price_tax": money(price_tax),
            "base_total": money(base_price * Decimal::from(qty)),
            "total_ex_tax": money(total_ex),
            "total_inc_tax": money(total_inc),
            "total_tax": money(total_tax),
            "weight": item.weight,
            "width": "0.0000",
            "height": "0.0000",
            "depth": "0.0000",
            "quantity": qty,
        }));
        merge(
            rows.last_mut(),
            json!({
                "base_cost_price": money(cents(item.cost_cents)),
                "cost_price_inc_tax": money(cents(item.cost_cents)),
                "cost_price_ex_tax": money(cents(item.cost_cents)),
                "cost_price_tax": "0.0000",
                "is_refunded": false,
                "quantity_refunded": 0,
                "refund_amount": "0.0000",
                "return_id": 0,
                "wrapping_id": if wrap { 1 } else { 0 },
                "wrapping_name": if wrap { "Kraft Paper & Twine" } else { "" },
                "base_wrapping_cost": "0.0000",
                "wrapping_cost_ex_tax": "0.0000",
                "wrapping_cost_inc_tax": "0.0000",
                "wrapping_cost_tax": "0.0000",
                "wrapping_message": if wrap { "Happy birthday! — M." } else { "" },
                "quantity_shipped": 0,
                "event_name": null,
                "event_date": null,
                "fixed_shipping_cost": "0.0000",
                "ebay_item_id": "",
                "ebay_transaction_id": "",
                "option_set_id": if opt_name.is_empty() { Value::Null } else { json!(10 + item.id) },
                "parent_order_product_id": null,
                "is_bundled_product": false,
                "bin_picking_number": "",
                "external_id": null,
                "brand": seed::brand_name(item.brand_id),
                "applied_discounts": [],
                "product_options": options,
                "configurable_fields": [],
                "gift_certificate_id": null,
                "discounted_total_inc_tax": money(total_inc),
            }),
        );
        line_data.push(Line { total_ex });
    }

    let subtotal_ex: Decimal = rows.iter().map(|r| dec(&r["total_ex_tax"])).sum();
    let subtotal_inc: Decimal = rows.iter().map(|r| dec(&r["total_inc_tax"])).sum();
    let items_total: i64 = rows
        .iter()
        .map(|r| r["quantity"].as_i64().unwrap_or(0))
        .sum();

    // Shipping, handling, wrapping: inclusive stores enter round inc-tax charges.
    let charge =
        |on: bool, choices: &[i64], rng: &mut StdRng| -> (Decimal, Decimal, Decimal, Decimal) {
            if !on {
                return (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
            }
            let entered = cents(*choices.choose(rng).unwrap_or(&500));
            let (ex, tax, inc) = priced(entered, rate, incl);
            (entered, ex, tax, inc)
        };
    let ship_choices: &[i64] = if incl {
        &[600, 800, 1000, 1200]
    } else {
        &[599, 750, 995, 1200, 1499]
    };
    let (ship_base, ship_ex, ship_tax, ship_inc) = charge(shape.shipping, ship_choices, &mut rng);
    let (hand_base, hand_ex, hand_tax, hand_inc) = charge(shape.handling, &[250, 300], &mut rng);
    let (wrap_base, wrap_ex, wrap_tax, wrap_inc) = charge(shape.wrapping, &[400, 500], &mut rng);
    if shape.wrapping {
        rows[0]["base_wrapping_cost"] = money(wrap_base);
        rows[0]["wrapping_cost_ex_tax"] = money(wrap_ex);
        rows[0]["wrapping_cost_inc_tax"] = money(wrap_inc);
        rows[0]["wrapping_cost_tax"] = money(wrap_tax);
    }

    // Discounts: chosen on the authoritative subtotal, stored ex tax.
    let authoritative_subtotal = if incl { subtotal_inc } else { subtotal_ex };
    let to_ex = |amount: Decimal| {
        if incl {
            split_inclusive(amount, rate).0
        } else {
            amount
        }
    };
    let percent_coupon = authoritative_subtotal < Decimal::from(25) || rng.random_bool(0.5);
    let (coupon_given, coupon_ex) = if shape.coupon {
        let given = if percent_coupon {
            round2(authoritative_subtotal / Decimal::from(10))
        } else {
            cents(500)
        };
        (given, to_ex(given))
    } else {
        (Decimal::ZERO, Decimal::ZERO)
    };
    let percent_manual = authoritative_subtotal < Decimal::from(25) || rng.random_bool(0.5);
    let (manual_given, manual_ex) = if shape.manual_discount {
        let given = if percent_manual {
            round2(authoritative_subtotal / Decimal::from(20))
        } else {
            cents(300)
        };
        (given, to_ex(given))
    } else {
        (Decimal::ZERO, Decimal::ZERO)
    };

    let total_ex = subtotal_ex + ship_ex + hand_ex + wrap_ex - coupon_ex - manual_ex;
    let (total_tax, total_inc) = if incl {
        let inc = subtotal_inc + ship_inc + hand_inc + wrap_inc - coupon_given - manual_given;
        (inc - total_ex, inc)
    } else {
        let tax = round2(total_ex * rate);
        (tax, total_ex + tax)
    };

    // Spread order-level discounts over the lines, as BigCommerce reports them per line.
    let weights: Vec<Decimal> = line_data.iter().map(|l| l.total_ex).collect();
    let coupon_alloc = allocate(coupon_ex, &weights);
    let manual_alloc = allocate(manual_ex, &weights);
    let coupon_code = format!("MAPLE{}", if percent_coupon { "10" } else { "5OFF" });
    for (i, row) in rows.iter_mut().enumerate() {
        let mut applied = Vec::new();
        if shape.coupon {
            applied.push(json!({"id": "7", "amount": money(coupon_alloc[i]),
                "name": if percent_coupon { "10% off your order" } else { "$5 off orders over $25" },
                "code": coupon_code, "target": "order"}));
        }
        if shape.manual_discount {
            applied.push(
                json!({"id": "manual-discount", "amount": money(manual_alloc[i]),
                "name": "Manual Discount", "code": null, "target": "order"}),
            );
        }
        row["applied_discounts"] = Value::Array(applied);
        let off_ex = coupon_alloc[i] + manual_alloc[i];
        let discounted_ex = line_data[i].total_ex - off_ex;
        let discounted_inc = if incl {
            dec(&row["total_inc_tax"]) - off_ex - round2(off_ex * rate)
        } else {
            discounted_ex + round2(discounted_ex * rate)
        };
        row["discounted_total_inc_tax"] = money(discounted_inc);
    }

    let shipping_method = if shape.shipping {
        "Flat Rate"
    } else {
        "Free Shipping"
    };
    let consignment = json!({
        "id": address_id,
        "first_name": first, "last_name": last, "company": company,
        "street_1": street, "street_2": "", "city": city, "zip": zip,
        "country": country, "country_iso2": iso2, "state": state,
        "email": email, "phone": phone,
        "items_total": items_total,
        "items_shipped": 0,
        "shipping_method": shipping_method,
        "base_cost": money(ship_base),
        "cost_ex_tax": money(ship_ex),
        "cost_inc_tax": money(ship_inc),
        "cost_tax": money(ship_tax),
        "cost_tax_class_id": 2,
        "base_handling_cost": money(hand_base),
        "handling_cost_ex_tax": money(hand_ex),
        "handling_cost_inc_tax": money(hand_inc),
        "handling_cost_tax": money(hand_tax),
        "handling_cost_tax_class_id": 2,
        "shipping_zone_id": 1,
        "shipping_zone_name": "United States",
        "shipping_quotes": {
            "url": format!("{base_url}/orders/{id}/shippingaddresses/{address_id}/shippingquotes"),
            "resource": format!("/orders/{id}/shippingaddresses/{address_id}/shippingquotes"),
        },
        "form_fields": [],
    });
    let consignment = number_money(consignment, CONSIGNMENT_MONEY);
    let consignment = with_line_items(consignment, &rows, &base_url, id, address_id);

    let customer_message = if rng.random_bool(0.5) {
        "Please leave the parcel with the concierge — thanks!"
    } else {
        ""
    };
    let mut order = json!({
        "id": id,
        "customer_id": registered.map_or(0, |c| c.id),
        "date_created": rfc2822(created),
        "date_modified": rfc2822(modified),
        "date_shipped": "",
        "status_id": 11,
        "status": "Awaiting Fulfillment",
        "subtotal_ex_tax": money(subtotal_ex),
        "subtotal_inc_tax": money(subtotal_inc),
        "subtotal_tax": money(subtotal_inc - subtotal_ex),
        "base_shipping_cost": money(ship_base),
        "shipping_cost_ex_tax": money(ship_ex),
        "shipping_cost_inc_tax": money(ship_inc),
        "shipping_cost_tax": money(ship_tax),
        "shipping_cost_tax_class_id": 2,
        "base_handling_cost": money(hand_base),
        "handling_cost_ex_tax": money(hand_ex),
        "handling_cost_inc_tax": money(hand_inc),
        "handling_cost_tax": money(hand_tax),
        "handling_cost_tax_class_id": 2,
        "base_wrapping_cost": money(wrap_base),
        "wrapping_cost_ex_tax": money(wrap_ex),
        "wrapping_cost_inc_tax": money(wrap_inc),
        "wrapping_cost_tax": money(wrap_tax),
        "wrapping_cost_tax_class_id": 3,
        "total_ex_tax": money(total_ex),
        "total_inc_tax": money(total_inc),
        "total_tax": money(total_tax),
        "is_tax_inclusive_pricing": incl,
        "items_total": items_total,
        "items_shipped": 0,
        "refunded_amount": "0.0000",
        "order_is_digital": false,
    });
    let provider_id = format!("ch_{:016x}{:08x}", rng.random::<u64>(), id);
    merge(
        Some(&mut order),
        json!({
            "ip_address": format!("203.0.113.{}", rng.random_range(2..250)),
            "ip_address_v6": "",
            "geoip_country": country,
            "geoip_country_iso2": iso2,
            "currency_id": 1,
            "currency_code": "USD",
            "currency_exchange_rate": "1.0000000000",
            "default_currency_id": 1,
            "default_currency_code": "USD",
            "store_default_currency_code": "USD",
            "store_default_to_transactional_exchange_rate": "1.0000000000",
            "staff_notes": if shape.manual_discount { "Goodwill discount approved by Elena (late restock)." } else { "" },
            "customer_message": customer_message,
            "discount_amount": money(manual_ex),
            "coupon_discount": money(coupon_ex),
            "shipping_address_count": 1,
            "is_deleted": false,
            "ebay_order_id": "0",
            "cart_id": format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", rng.random::<u32>(), rng.random::<u16>(),
                rng.random_range(0..0x1000u32), rng.random_range(0..0x1000u32), rng.random::<u64>() & 0xFFFF_FFFF_FFFF),
            "billing_address": billing,
            "is_email_opt_in": false,
            "credit_card_type": null,
            "order_source": "www",
            "channel_id": 1,
            "external_source": null,
            "consignments": {
                "pickups": [],
                "shipping": [consignment],
                "downloads": [],
                "email": {"gift_certificates": []},
            },
            "products": {"url": format!("{base_url}/orders/{id}/products"), "resource": format!("/orders/{id}/products")},
            "shipping_addresses": {
                "url": format!("{base_url}/orders/{id}/shippingaddresses"),
                "resource": format!("/orders/{id}/shippingaddresses"),
            },
            "coupons": {"url": format!("{base_url}/orders/{id}/coupons"), "resource": format!("/orders/{id}/coupons")},
            "external_id": null,
            "external_merchant_id": null,
            "tax_provider_id": if rate.is_zero() { "" } else { "BasicTaxProvider" },
            "customer_locale": "en",
            "external_order_id": "",
            "custom_status": "Awaiting Fulfillment",
            "fees": [],
        }),
    );

    merge(
        Some(&mut order),
        payment_fields(payment, total_inc, &provider_id),
    );

    GeneratedOrder {
        order,
        products: rows,
        customer: registered.map(seed::customer_json),
    }
}

/// The payment fields of an order totalling `total` (status, method, tenders).
fn payment_fields(payment: Payment, total: Decimal, provider_id: &str) -> Value {
    let (status_id, status, method, payment_status, gift, credit) = match payment {
        Payment::Unpaid => (
            7,
            "Awaiting Payment",
            "Bank Deposit",
            "pending",
            Decimal::ZERO,
            Decimal::ZERO,
        ),
        Payment::Captured => (
            11,
            "Awaiting Fulfillment",
            "Credit Card",
            "captured",
            Decimal::ZERO,
            Decimal::ZERO,
        ),
        Payment::Authorized => (
            11,
            "Awaiting Fulfillment",
            "Credit Card",
            "authorized",
            Decimal::ZERO,
            Decimal::ZERO,
        ),
        Payment::GiftCertificate(c) => (
            11,
            "Awaiting Fulfillment",
            "Credit Card",
            "captured",
            cents(c).min(total),
            Decimal::ZERO,
        ),
        Payment::StoreCredit(c) => (
            11,
            "Awaiting Fulfillment",
            "Credit Card",
            "captured",
            Decimal::ZERO,
            cents(c).min(total),
        ),
    };
    let card = total - gift - credit;
    let (method, provider) = match payment {
        Payment::Unpaid => (method, ""),
        _ if card.is_zero() && !gift.is_zero() => ("Gift Certificate", ""),
        _ if card.is_zero() => ("Store Credit", ""),
        _ => (method, provider_id),
    };
    json!({
        "status_id": status_id,
        "status": status,
        "custom_status": status,
        "payment_method": method,
        "payment_provider_id": provider,
        "payment_status": payment_status,
        "gift_certificate_amount": money(gift),
        "store_credit_amount": money(credit),
    })
}

/// One part of a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundPart {
    /// `quantity` units of the order's `line`-th product (0-based), with their tax.
    Product { line: usize, quantity: u64 },
    /// The order's whole shipping charge, with its tax.
    Shipping,
    /// An amount off the order, in cents, without tax (`item_type` `ORDER`).
    Order(i64),
}

fn number(d: Decimal) -> Value {
    serde_json::from_str(&round2(d).to_string()).unwrap_or(json!(0))
}

/// The refund tests and benchmarks use most: one unit of the order's first product, with its
/// tax ([`refund_of`] with that one part).
pub fn refund_one_unit(order: &Value, products: &[Value], reason: &str) -> Value {
    refund_of(
        order,
        products,
        &[RefundPart::Product {
            line: 0,
            quantity: 1,
        }],
        reason,
    )
}

/// A refund of `parts` of an order, as `GET /v3/orders/{id}/payment_actions/refunds` lists it
/// (the simulator assigns `id`, `created` and the payment's `id` when it is stored). Its items
/// and totals tie to the cent: a product refunded by quantity is `quantity ×` its ex-tax unit
/// price plus `quantity ×` its unit tax; shipping is refunded with its tax; order amounts
/// carry no tax. Paid back through the gateway (`storecredit` for an order paid in store
/// credit).
pub fn refund_of(order: &Value, products: &[Value], parts: &[RefundPart], reason: &str) -> Value {
    let mut items = Vec::new();
    let mut ex = Decimal::ZERO;
    let mut tax = Decimal::ZERO;
    for part in parts {
        match *part {
            RefundPart::Product { line, quantity } => {
                let row = &products[line.min(products.len().saturating_sub(1))];
                let q = Decimal::from(quantity);
                ex += dec(&row["price_ex_tax"]) * q;
                tax += dec(&row["price_tax"]) * q;
                items.push(
                    json!({"item_type": "PRODUCT", "item_id": row["id"], "quantity": quantity,
                                  "requested_amount": null, "reason": reason}),
                );
            }
            RefundPart::Shipping => {
                let amount = dec(&order["shipping_cost_ex_tax"]);
                ex += amount;
                tax += dec(&order["shipping_cost_tax"]);
                let address = order["consignments"]["shipping"][0]["id"].clone();
                items.push(json!({"item_type": "SHIPPING", "item_id": address,
                                  "requested_amount": number(amount), "reason": reason}));
            }
            RefundPart::Order(c) => {
                ex += cents(c);
                items.push(json!({"item_type": "ORDER", "item_id": order["id"],
                                  "requested_amount": number(cents(c)), "reason": reason}));
            }
        }
    }
    let total = round2(ex) + round2(tax);
    let provider = if order["payment_method"] == "Store Credit" {
        "storecredit"
    } else {
        "braintree"
    };
    json!({
        "order_id": order["id"],
        "user_id": 0,
        "reason": reason,
        "total_amount": number(total),
        "total_tax": number(tax),
        "uses_merchant_override_values": false,
        "items": items,
        "payments": [{"provider_id": provider, "amount": number(total), "offline": false,
                      "is_declined": false, "declined_message": ""}],
    })
}

/// Reads a money string (or number) as a decimal; anything else is zero.
pub fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap_or_default(),
        Value::Number(n) => n.to_string().parse().unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

/// `n` deterministic shapes covering every combination of the seven boolean knobs (once `n >= 128`),
/// line counts 1..=8, and tax rates 0, 6.25 %, 8 %, 20 % (tax-inclusive: 20 % / 10 %).
pub fn shapes(n: usize, seed: u64) -> Vec<OrderShape> {
    const EXCLUSIVE_RATES: [u32; 4] = [0, 625, 800, 2000];
    const INCLUSIVE_RATES: [u32; 2] = [2000, 1000];
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            // Bits of a 7-bit counter walk the combinations; a multiplier coprime to 128 spreads
            // them so that even small `n` mixes every knob.
            let combo = (i * 37 + (seed as usize % 128)) % 128;
            let bit = |b: usize| combo & (1 << b) != 0;
            let tax_inclusive = bit(0);
            let tax_rate_bp = if tax_inclusive {
                INCLUSIVE_RATES[(i / 2 + i / 16) % INCLUSIVE_RATES.len()]
            } else {
                EXCLUSIVE_RATES[(i / 2 + i / 16) % EXCLUSIVE_RATES.len()]
            };
            OrderShape {
                // Shifting by i / 8 keeps line counts from tracking the low knob bits.
                lines: 1 + (i + i / 8) % 8,
                tax_inclusive,
                tax_rate_bp,
                coupon: bit(1),
                manual_discount: bit(2),
                shipping: bit(3),
                handling: bit(4),
                wrapping: bit(5),
                guest: bit(6),
                seed: rng.random(),
            }
        })
        .collect()
}

// The consignment object types its money fields as numbers, unlike `/shipping_addresses`.
pub(super) const CONSIGNMENT_MONEY: &[&str] = &[
    "base_cost",
    "cost_ex_tax",
    "cost_inc_tax",
    "cost_tax",
    "base_handling_cost",
    "handling_cost_ex_tax",
    "handling_cost_inc_tax",
    "handling_cost_tax",
];

fn number_money(mut v: Value, keys: &[&str]) -> Value {
    if let Some(obj) = v.as_object_mut() {
        for key in keys {
            if let Some(x) = obj.get(*key) {
                let d = dec(x).normalize();
                obj.insert(
                    (*key).into(),
                    serde_json::from_str(&d.to_string()).unwrap_or(json!(0)),
                );
            }
        }
    }
    v
}

pub(super) fn string_money(mut v: Value, keys: &[&str]) -> Value {
    if let Some(obj) = v.as_object_mut() {
        for key in keys {
            if let Some(x) = obj.get(*key) {
                let m = money(dec(x));
                obj.insert((*key).into(), m);
            }
        }
    }
    v
}

fn with_line_items(
    mut v: Value,
    rows: &[Value],
    base_url: &str,
    id: u64,
    address_id: u64,
) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("line_items".into(), Value::Array(rows.to_vec()));
        obj.insert(
            "shipping_quotes".into(),
            json!({
                "url": format!("{base_url}/orders/{id}/consignments/shipping/{address_id}/shipping_quotes"),
                "resource": format!("/orders/{id}/consignments/shipping/{address_id}/shipping_quotes"),
            }),
        );
    }
    v
}

fn merge(into: Option<&mut Value>, more: Value) {
    if let (Some(Value::Object(a)), Value::Object(b)) = (into, more) {
        a.extend(b);
    }
}
