//! Maps 40 generated order shapes (ml-sim) and checks every invoice to the cent.

use std::collections::HashMap;

use ml_core::books::mapping::{
    MappingConfig, OrderContext, ResolvedRefs, TaxMode, build_invoice, plan, plan_exact,
};
use ml_core::models::bigcommerce::{self, CatalogProduct, Customer, Order, ProductId};
use ml_core::models::money::{Money, round2};
use ml_core::models::quickbooks::DetailType;
use ml_sim::bigcommerce::seed;
use ml_sim::bigcommerce::{generate, shapes};
use rust_decimal::Decimal;

const CONTRACT_MAPPING: &str = r#"{
  "version": 1,
  "invoice": {
    "doc_number": "{order_id}",
    "default_item": "BigCommerce Sales",
    "default_class": null,
    "rules": [
      {"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales", "class": "Apparel"},
      {"match": {"customer_group_id": 2}, "class": "Wholesale"},
      {"match": {"category_id": 23}, "account": "Home Goods Revenue"}
    ],
    "shipping": {"item": "Shipping Income"},
    "handling": {"item": "Handling Income"},
    "wrapping": {"item": "Gift Wrap Income"},
    "discount": {"account": "Discounts given"},
    "tax": {"mode": "line", "item": "Sales Tax Collected"}
  },
  "customers": {"guest": {"mode": "per_email"}}
}"#;

/// Resolves every planned name to a made-up id, as the job would after querying QuickBooks.
fn resolve(p: &ml_core::books::mapping::Plan) -> ResolvedRefs {
    let mut r = ResolvedRefs::default();
    for (i, n) in p.items.iter().enumerate() {
        r.items.insert(n.clone(), format!("{}", 100 + i));
    }
    for (i, n) in p.accounts.iter().enumerate() {
        r.account_items.insert(n.clone(), format!("{}", 200 + i));
    }
    for (i, n) in p.classes.iter().enumerate() {
        r.classes.insert(n.clone(), format!("{}", 300 + i));
    }
    r.discount_account = p.discount_account.as_ref().map(|_| "86".to_string());
    for (i, n) in p.tax_codes.iter().enumerate() {
        r.tax_codes.insert(n.clone(), format!("{}", 400 + i));
    }
    r
}

fn map_all(config: &MappingConfig) -> usize {
    let mut checked = 0;
    for (n, shape) in shapes(40, 7).iter().enumerate() {
        let id = 5000 + n as u64;
        let generated = generate(id, shape);
        let order: Order = bigcommerce::decode(&serde_json::to_vec(&generated.order).unwrap())
            .unwrap_or_else(|e| panic!("order {id} ({shape:?}): {e}"));
        let lines = bigcommerce::line_items(&order);
        assert_eq!(
            lines.len(),
            generated.products.len(),
            "order {id}: embedded line items"
        );

        let p = plan(config, &order, &lines);
        let mut catalog = HashMap::new();
        for pid in &p.catalog_products {
            let item = seed::catalog_item(pid.0).expect("generated product is in the seed catalog");
            let cp: CatalogProduct =
                serde_json::from_value(seed::catalog_product_json(item)).unwrap();
            catalog.insert(*pid, cp);
        }
        let group = generated.customer.as_ref().map(|c| {
            let c: Customer = serde_json::from_value(c.clone()).unwrap();
            c.customer_group_id
        });
        if order.is_guest() || !config.needs_customer_group() {
            assert!(
                !p.needs_customer_group,
                "order {id}: no group lookup needed"
            );
        }
        let ctx = OrderContext {
            order: &order,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: group,
        };
        let exact = plan_exact(config, &ctx).unwrap();
        assert!(
            exact.items.is_subset(&p.items),
            "order {id}: exact plan within the first plan"
        );
        let refs = resolve(&exact);
        let draft = build_invoice(config, &ctx, &refs, "42")
            .unwrap_or_else(|e| panic!("order {id} ({shape:?}): {e}"));
        let inv = &draft.invoice;

        // One sales line per product, Qty × UnitPrice = Amount exactly, amount = BC ex-tax total.
        let sales: Vec<_> = inv
            .line
            .iter()
            .filter(|l| l.detail_type == DetailType::SalesItemLineDetail)
            .collect();
        for (line, bc) in sales.iter().zip(&lines) {
            let d = line.sales_item_line_detail.as_ref().unwrap();
            assert_eq!(
                round2(d.qty.unwrap() * d.unit_price.unwrap()),
                line.amount.amount(),
                "order {id}: Qty × UnitPrice"
            );
            assert_eq!(d.qty.unwrap(), bc.quantity, "order {id}: Qty");
            assert_eq!(
                line.amount,
                bc.total_ex_tax.round_cents(),
                "order {id}: line amount"
            );
            let wholesale = config.invoice.rules.len() > 1 && group == Some(2);
            let expected_item = if bc.sku.starts_with("APP-") && !config.invoice.rules.is_empty() {
                "Apparel Sales"
            } else if wholesale {
                "BigCommerce Sales"
            } else if catalog
                .get(&bc.product_id)
                .is_some_and(|c| c.categories.contains(&23))
            {
                "Home Goods Revenue"
            } else {
                "BigCommerce Sales"
            };
            let expected_id = refs
                .items
                .get(expected_item)
                .or_else(|| refs.account_items.get(expected_item))
                .unwrap();
            assert_eq!(
                &d.item_ref.value, expected_id,
                "order {id}: item for {}",
                bc.sku
            );
        }

        // Charges, discount and tax lines.
        let amount_on = |item: &str| -> Money {
            let Some(item_id) = refs.items.get(item) else {
                return Money::ZERO;
            };
            sales
                .iter()
                .filter(|l| &l.sales_item_line_detail.as_ref().unwrap().item_ref.value == item_id)
                .map(|l| l.amount)
                .sum()
        };
        assert_eq!(
            amount_on("Shipping Income"),
            order.shipping_cost_ex_tax.round_cents(),
            "order {id}: shipping"
        );
        assert_eq!(
            amount_on("Handling Income"),
            order.handling_cost_ex_tax.round_cents(),
            "order {id}: handling"
        );
        assert_eq!(
            amount_on("Gift Wrap Income"),
            order.wrapping_cost_ex_tax.round_cents(),
            "order {id}: wrapping"
        );
        let discounts: Vec<_> = inv
            .line
            .iter()
            .filter(|l| l.detail_type == DetailType::DiscountLineDetail)
            .collect();
        let bc_discount = (order.coupon_discount + order.discount_amount).round_cents();
        let split_item = refs.account_items.get("Discounts given");
        let split: Vec<_> = sales
            .iter()
            .filter(|l| {
                Some(&l.sales_item_line_detail.as_ref().unwrap().item_ref.value) == split_item
            })
            .collect();
        if bc_discount.is_zero() {
            assert!(discounts.is_empty(), "order {id}: no discount line");
        } else if !split.is_empty() {
            // The discounted lines carry several classes: one negative line per class.
            assert!(
                discounts.is_empty(),
                "order {id}: no DiscountLineDetail when split"
            );
            assert!(split.len() > 1, "order {id}: split over classes");
            let classes: std::collections::BTreeSet<_> = split
                .iter()
                .map(|l| {
                    l.sales_item_line_detail
                        .as_ref()
                        .unwrap()
                        .class_ref
                        .clone()
                        .map(|c| c.value)
                })
                .collect();
            assert_eq!(classes.len(), split.len(), "order {id}: one line per class");
            assert_eq!(
                split.iter().map(|l| l.amount).sum::<Money>(),
                -bc_discount,
                "order {id}: split discount"
            );
        } else {
            assert_eq!(discounts.len(), 1, "order {id}: one discount line");
            assert_eq!(discounts[0].amount, bc_discount, "order {id}: discount");
            let acc = discounts[0]
                .discount_line_detail
                .as_ref()
                .unwrap()
                .discount_account_ref
                .as_ref()
                .unwrap();
            assert_eq!(acc.value, "86");
        }
        assert_eq!(
            amount_on("Sales Tax Collected"),
            order.total_tax.round_cents(),
            "order {id}: tax line"
        );

        // The total, to the cent.
        let total: Money = sales.iter().map(|l| l.amount).sum::<Money>()
            - discounts.iter().map(|l| l.amount).sum();
        assert_eq!(
            total,
            order.total_inc_tax.round_cents(),
            "order {id}: invoice total"
        );
        assert_eq!(draft.total, total);
        assert_eq!(
            draft.residue,
            Money::ZERO,
            "order {id}: generated cents tie exactly"
        );
        assert_eq!(inv.doc_number.as_deref(), Some(id.to_string().as_str()));
        assert!(
            inv.private_note
                .as_deref()
                .unwrap()
                .contains(&format!("ml-connector:bc-order:{id}"))
        );
        assert_eq!(inv.txn_date, Some(order.date_created.unwrap().date_naive()));
        assert_eq!(
            inv.currency_ref.as_ref().map(|r| r.value.as_str()),
            Some("USD")
        );
        assert_eq!(inv.customer_ref.value, "42");
        checked += 1;
    }
    checked
}

#[test]
fn forty_generated_orders_map_to_invoices_that_tie_to_the_cent() {
    let config = MappingConfig::parse(CONTRACT_MAPPING.as_bytes()).unwrap();
    assert_eq!(map_all(&config), 40);
}

#[test]
fn forty_generated_orders_tie_with_the_built_in_default_mapping_in_a_company_without_sales_tax() {
    // `auto` books tax as a line on the tax item when the company has no sales tax set up.
    let company = ml_core::books::tax::CompanyTax::default();
    let config = ml_core::books::tax::effective(&MappingConfig::default(), &company);
    assert_eq!(config.invoice.tax.mode, TaxMode::Line);
    assert_eq!(map_all(&config), 40);
}

#[test]
fn generated_orders_tie_in_txn_detail_none_and_vat_tax_modes() {
    for mode in [TaxMode::TxnDetail, TaxMode::None, TaxMode::Vat] {
        let mut config = MappingConfig::default();
        config.invoice.tax.mode = mode;
        config
            .invoice
            .tax
            .codes
            .insert("default".into(), "20.0% S".into());
        for (n, shape) in shapes(40, 7).iter().enumerate() {
            let generated = generate(7000 + n as u64, shape);
            let order: Order = serde_json::from_value(generated.order).unwrap();
            let lines = bigcommerce::line_items(&order);
            let catalog = HashMap::<ProductId, CatalogProduct>::new();
            let ctx = OrderContext {
                order: &order,
                lines: &lines,
                catalog: &catalog,
                customer_group_id: None,
            };
            let refs = resolve(&plan_exact(&config, &ctx).unwrap());
            let draft = build_invoice(&config, &ctx, &refs, "1").unwrap();
            let expected = match mode {
                TaxMode::None => order.total_ex_tax.round_cents(),
                _ => order.total_inc_tax.round_cents(),
            };
            assert_eq!(draft.total, expected, "{mode:?} order {n}");
            let tax = draft
                .invoice
                .txn_tax_detail
                .as_ref()
                .and_then(|t| t.total_tax);
            match mode {
                TaxMode::TxnDetail | TaxMode::Vat => {
                    assert_eq!(tax, Some(order.total_tax.round_cents()))
                }
                _ => assert_eq!(tax, None),
            }
            // VAT/GST: every sales line carries the mapped tax code, the lines are ex-tax.
            let coded = draft
                .invoice
                .line
                .iter()
                .filter_map(|l| l.sales_item_line_detail.as_ref());
            for d in coded {
                let code = d.tax_code_ref.as_ref().map(|r| r.value.as_str());
                match mode {
                    TaxMode::Vat => assert_eq!(code, Some("400"), "order {n}"),
                    _ => assert_eq!(code, None, "order {n}"),
                }
            }
            // TaxInclusive for a tax-inclusive store, whose lines also state their gross.
            let global = if order.is_tax_inclusive_pricing {
                "TaxInclusive"
            } else {
                "TaxExcluded"
            };
            assert_eq!(
                draft.invoice.global_tax_calculation.as_deref(),
                (mode == TaxMode::Vat).then_some(global)
            );
            if mode == TaxMode::Vat && order.is_tax_inclusive_pricing {
                for (d, bc) in draft
                    .invoice
                    .line
                    .iter()
                    .filter_map(|l| l.sales_item_line_detail.as_ref())
                    .zip(&lines)
                {
                    assert_eq!(
                        d.tax_inclusive_amt,
                        Some(bc.total_inc_tax.round_cents().amount().normalize()),
                        "order {n}"
                    );
                }
            }
            // No tax line in either mode.
            assert!(
                !draft
                    .invoice
                    .line
                    .iter()
                    .any(|l| l.description.as_deref() == Some("Sales tax (BigCommerce)"))
            );
            let _ = Decimal::ZERO;
        }
    }
}
