//! What one order costs: upstream calls and key-value round trips, cold and warm.

mod common;

use common::*;
use ml_core::sync::record::State;
use serde_json::Value;

fn order_for(w: &World, first: u64, id: u64) -> Value {
    let base = w.bc.borrow().orders[&first].clone();
    let mut o = order_json(id, &plain_shape(1));
    o["customer_id"] = base["customer_id"].clone();
    o["billing_address"] = base["billing_address"].clone();
    o
}

#[test]
fn kv_dump() {
    let mut w = World::new();
    w.put_order(101, order_json(101, &plain_shape(1)));
    w.deliver("store/order/created", 101, &hash(1));
    let o = order_for(&w, 101, 102);
    w.put_order(102, o);
    w.advance(5);
    w.clear_log();
    w.deliver("store/order/created", 102, &hash(2));
    for (op, k) in &w.host.kv_ops {
        println!("{op:<10} {k}");
    }
    println!("total {}", w.host.kv_ops.len());
    assert_eq!(w.record(102).state, State::Posted);
}
