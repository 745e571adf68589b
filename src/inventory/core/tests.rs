use super::*;
use support::*;
use proptest::prelude::*;
use serde_json::json;

/// Helpers kept in a module so the tests read as the rules they check.
mod support {
    use super::super::super::model::{AlertEvent, AlertType, EventType, OrderLine, Product, Severity};
    use super::super::{Config, Input, OnInsufficient, Outputs, Processor};

    pub const HOUR: i64 = 3_600_000;
    pub const T0: i64 = 1_771_550_000_000;

    pub fn product(id: &str, inventory: i64, price: f64) -> Product {
        Product {
            product_id: id.to_owned(),
            name: format!("Name of {id}"),
            description: String::new(),
            price,
            category: "Electronics".to_owned(),
            brand: None,
            image_url: String::new(),
            inventory,
            tags: vec![],
            rating: 4.0,
            review_count: 1,
        }
    }

    pub fn order(order_id: &str, product_id: &str, quantity: i64) -> Input {
        Input::Order(OrderLine {
            quantity,
            product_id: product_id.to_owned(),
            order_id: order_id.to_owned(),
            timestamp: 0,
        })
    }

    pub fn processor() -> Processor {
        Processor::new(Config::default())
    }

    pub fn clamping() -> Processor {
        Processor::new(Config {
            on_insufficient: OnInsufficient::Clamp,
            ..Config::default()
        })
    }

    pub fn run(processor: &mut Processor, input: Input, now: i64) -> Outputs {
        let mut out = Outputs::default();
        processor.apply(input, now, &mut out);
        out
    }

    pub fn stock(processor: &Processor, id: &str) -> i64 {
        processor.product(id).expect("product exists").inventory
    }

    pub fn kinds(out: &Outputs) -> Vec<EventType> {
        out.events.iter().map(|event| event.event_type).collect()
    }

    pub fn alerts(out: &Outputs) -> Vec<(AlertType, Severity, &str)> {
        out.alerts
            .iter()
            .map(|alert: &AlertEvent| (alert.alert_type, alert.severity, alert.message.as_str()))
            .collect()
    }

    pub fn reasons(out: &Outputs) -> Vec<&str> {
        out.events.iter().map(|event| event.change_reason.as_str()).collect()
    }
}

// ----- the workshop's worked trace (workshop spec §2.13), kart's way --------

#[test]
fn worked_trace_with_the_workshop_catalog() {
    let bytes = super::super::workshop_catalog_bytes();
    let catalog = super::super::parse::parse_products(&bytes).expect("catalog parses");
    let mut processor = processor();

    // 1. Bootstrap.
    let out = run(&mut processor, Input::Products(catalog.clone()), T0);
    assert_eq!(out.products, catalog);
    assert_eq!(out.events.len(), 16);
    assert!(out.events.iter().all(|event| event.event_type == EventType::ProductAdded
        && event.change_reason == "New product added to catalog"
        && event.previous_inventory == Some(0)
        && event.previous_price == Some(0.0)));
    let low: Vec<_> = out
        .alerts
        .iter()
        .map(|alert| (alert.product_id.as_str(), alert.alert_type, alert.severity, alert.message.as_str()))
        .collect();
    assert_eq!(
        low,
        vec![
            ("PROD_0003", AlertType::LowStock, Severity::Warning, "Low stock: only 8 items remaining"),
            ("PROD_0029", AlertType::LowStock, Severity::Warning, "Low stock: only 7 items remaining"),
        ]
    );
    assert_eq!(processor.product_count(), 16);

    // 2. Order 3 × PROD_0001: 10 → 7.
    let out = run(&mut processor, order("order-1", "PROD_0001", 3), T0 + 1_000);
    assert_eq!(kinds(&out), vec![EventType::InventoryDecreased]);
    assert_eq!(reasons(&out), vec!["Deducted 3 for order order-1"]);
    assert_eq!((out.events[0].previous_inventory, out.events[0].current_inventory), (Some(10), Some(7)));
    assert_eq!(alerts(&out), vec![(AlertType::LowStock, Severity::Warning, "Low stock: only 7 items remaining")]);
    assert_eq!(out.outcomes[0].outcome, Outcome::Applied);
    assert_eq!((out.outcomes[0].previous_inventory, out.outcomes[0].current_inventory), (Some(10), Some(7)));

    // 3. Order 5: 7 → 2, CRITICAL.
    let out = run(&mut processor, order("order-2", "PROD_0001", 5), T0 + 2_000);
    assert_eq!((out.events[0].previous_inventory, out.events[0].current_inventory), (Some(7), Some(2)));
    assert_eq!(alerts(&out), vec![(AlertType::LowStock, Severity::Critical, "Low stock: only 2 items remaining")]);

    // 4. Order 5 again: kart rejects instead of clamping; stock stays 2.
    let out = run(&mut processor, order("order-3", "PROD_0001", 5), T0 + 3_000);
    assert_eq!(kinds(&out), vec![EventType::OrderRejected]);
    assert_eq!(reasons(&out), vec!["Insufficient inventory for order order-3: available 2, requested 5"]);
    assert_eq!(
        alerts(&out),
        vec![(AlertType::InsufficientStock, Severity::Warning, "Order order-3 rejected: requested 5, available 2")]
    );
    assert_eq!(out.outcomes[0].outcome, Outcome::Rejected);
    assert_eq!(stock(&processor, "PROD_0001"), 2);

    // 5. The README's Kpow message: PROD_0001 with inventory 10, same price.
    let kpow = br#"{"productId":"PROD_0001","name":"FutureTech UltraBook Pro 15","description":"High-performance laptop with Intel i9, 32GB RAM, 1TB SSD. Premium quality from FutureTech.","price":1899.99,"category":"Electronics","brand":"FutureTech","imageUrl":"https://picsum.photos/400/300?random=1","inventory":10,"tags":["laptop","computer","productivity","futuretech","electronics"],"rating":4.5,"reviewCount":49}"#;
    let update = super::super::parse::parse_products(kpow).expect("Kpow message parses");
    let out = run(&mut processor, Input::Products(update.clone()), T0 + 4_000);
    assert_eq!(out.products, update);
    assert_eq!(kinds(&out), vec![EventType::InventoryIncreased]);
    assert_eq!(reasons(&out), vec!["8 units added to inventory"]);
    assert_eq!((out.events[0].previous_inventory, out.events[0].current_inventory), (Some(2), Some(10)));
    assert!(out.alerts.is_empty(), "10 is not low stock: {:?}", out.alerts);

    // 6. An hour of silence: every other product goes stale at T0 + 1h,
    //    PROD_0001 (updated at T0 + 4s) one hour after its update.
    let out = run(&mut processor, Input::Tick, T0 + HOUR);
    assert_eq!(out.events.len(), 15);
    assert!(out.events.iter().all(|event| event.product_id != "PROD_0001"));
    let out = run(&mut processor, Input::Tick, T0 + 4_000 + HOUR - 1);
    assert!(out.events.is_empty());
    let out = run(&mut processor, Input::Tick, T0 + 4_000 + HOUR);
    assert_eq!(out.events.len(), 1);
    assert_eq!(
        serde_json::to_value(&out.events[0]).unwrap(),
        json!({"productId":"PROD_0001","productName":"FutureTech UltraBook Pro 15","eventType":"STALE_INVENTORY",
               "previousInventory":null,"currentInventory":10,"previousPrice":null,"currentPrice":1899.99,
               "timestamp":T0 + 4_000 + HOUR,"changeReason":"No updates for 1.0 hours","alertLevel":null,
               "inventoryChange":0,"priceChange":0.0,"critical":false})
    );
    assert!(run(&mut processor, Input::Tick, T0 + 10 * HOUR).events.is_empty());
}

// ----- product updates: every event type and reason --------------------------

#[test]
fn new_products_are_added_with_the_right_alert() {
    let mut processor = processor();
    let out = run(&mut processor, Input::Product(product("A", 0, 5.0)), T0);
    assert_eq!(kinds(&out), vec![EventType::ProductAdded]);
    assert_eq!(alerts(&out), vec![(AlertType::OutOfStock, Severity::Critical, "Product is out of stock")]);
    assert!(!out.events[0].critical, "PRODUCT_ADDED is never critical");
    assert_eq!((out.events[0].inventory_change, out.events[0].price_change), (0, 5.0));
    let out = run(&mut processor, Input::Product(product("B", 50, 5.0)), T0);
    assert!(out.alerts.is_empty());
    assert_eq!(out.changes, vec![StateChange::Product("B".into())]);
}

#[test]
fn inventory_changes_on_update_pick_the_workshop_event_type() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 50, 10.0)), T0);

    let out = run(&mut processor, Input::Product(product("A", 20, 10.0)), T0 + 1);
    assert_eq!(kinds(&out), vec![EventType::InventoryDecreased]);
    assert_eq!(reasons(&out), vec!["30 units sold/removed"]);
    assert_eq!(out.events[0].inventory_change, -30);
    assert!(out.alerts.is_empty());

    let out = run(&mut processor, Input::Product(product("A", 50, 10.0)), T0 + 2);
    assert_eq!(kinds(&out), vec![EventType::InventoryIncreased]);
    assert_eq!(reasons(&out), vec!["30 units added to inventory"]);

    let out = run(&mut processor, Input::Product(product("A", 0, 10.0)), T0 + 3);
    assert_eq!(kinds(&out), vec![EventType::OutOfStock]);
    assert_eq!(reasons(&out), vec!["Product is now out of stock"]);
    assert!(out.events[0].critical);
    assert_eq!(alerts(&out), vec![(AlertType::OutOfStock, Severity::Critical, "Product is out of stock")]);

    let out = run(&mut processor, Input::Product(product("A", 3, 10.0)), T0 + 4);
    assert_eq!(kinds(&out), vec![EventType::BackInStock]);
    assert_eq!(reasons(&out), vec!["Product restocked with 3 units"]);
    assert_eq!(alerts(&out), vec![(AlertType::LowStock, Severity::Critical, "Low stock: only 3 items remaining")]);

    // Nothing but the name changed: the product is emitted and stored, no event.
    let mut renamed = product("A", 3, 10.0);
    renamed.name = "Renamed".into();
    let out = run(&mut processor, Input::Product(renamed.clone()), T0 + 5);
    assert_eq!(out.products, vec![renamed]);
    assert!(out.events.is_empty() && out.alerts.is_empty());
    assert_eq!(processor.product("A").unwrap().name, "Renamed");
    assert_eq!(processor.timing("A"), Some((T0 + 5, Some(T0 + 5 + HOUR))));
}

#[test]
fn price_changes_and_price_drops() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 50, 100.0)), T0);

    let out = run(&mut processor, Input::Product(product("A", 50, 112.5)), T0 + 1);
    assert_eq!(kinds(&out), vec![EventType::PriceChanged]);
    assert_eq!(reasons(&out), vec!["Price increased by $12.50 (12.5%)"]);
    assert!(out.alerts.is_empty());

    // Exactly −10 %: PRICE_DROP.
    run(&mut processor, Input::Product(product("A", 50, 100.0)), T0 + 2);
    let out = run(&mut processor, Input::Product(product("A", 50, 90.0)), T0 + 3);
    assert_eq!(reasons(&out), vec!["Price decreased by $10.00 (10.0%)"]);
    assert_eq!(
        alerts(&out),
        vec![(AlertType::PriceDrop, Severity::Info, "Price dropped 10.0% from $100.00 to $90.00")]
    );
    let event = &out.events[0];
    assert_eq!((event.previous_price, event.current_price), (Some(100.0), Some(90.0)));
    assert_eq!((event.previous_inventory, event.current_inventory), (Some(50), Some(50)));

    // −9.99 % prints as 10.0 % but is not a 10 % drop.
    run(&mut processor, Input::Product(product("A", 50, 100.0)), T0 + 4);
    let out = run(&mut processor, Input::Product(product("A", 50, 90.01)), T0 + 5);
    assert_eq!(reasons(&out), vec!["Price decreased by $9.99 (10.0%)"]);
    assert!(out.alerts.is_empty());

    // |Δ| <= 0.01: no event.
    run(&mut processor, Input::Product(product("A", 50, 10.0)), T0 + 6);
    assert!(run(&mut processor, Input::Product(product("A", 50, 10.01)), T0 + 7).events.is_empty());
    assert!(run(&mut processor, Input::Product(product("A", 50, 10.005)), T0 + 8).events.is_empty());
    let out = run(&mut processor, Input::Product(product("A", 50, 10.03)), T0 + 9);
    assert_eq!(kinds(&out), vec![EventType::PriceChanged]);
}

#[test]
fn inventory_and_price_change_together_emit_two_events_in_order() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 50, 200.0)), T0);
    let out = run(&mut processor, Input::Product(product("A", 8, 100.0)), T0 + 1);
    assert_eq!(kinds(&out), vec![EventType::InventoryDecreased, EventType::PriceChanged]);
    assert_eq!(reasons(&out), vec!["42 units sold/removed", "Price decreased by $100.00 (50.0%)"]);
    assert_eq!(
        alerts(&out),
        vec![
            (AlertType::LowStock, Severity::Warning, "Low stock: only 8 items remaining"),
            (AlertType::PriceDrop, Severity::Info, "Price dropped 50.0% from $200.00 to $100.00"),
        ]
    );
    for event in &out.events {
        assert_eq!((event.previous_inventory, event.current_inventory), (Some(50), Some(8)));
        assert_eq!((event.previous_price, event.current_price), (Some(200.0), Some(100.0)));
        assert_eq!((event.inventory_change, event.price_change), (-42, -100.0));
    }
}

#[test]
fn price_set_from_zero_has_no_percentage_and_no_drop() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 50, 0.0)), T0);
    let out = run(&mut processor, Input::Product(product("A", 50, 19.999)), T0 + 1);
    assert_eq!(kinds(&out), vec![EventType::PriceChanged]);
    assert_eq!(reasons(&out), vec!["Price set to $20.00"]);
    assert!(out.alerts.is_empty());
    // And down to zero is an ordinary 100 % drop.
    let out = run(&mut processor, Input::Product(product("A", 50, 0.0)), T0 + 2);
    assert_eq!(reasons(&out), vec!["Price decreased by $20.00 (100.0%)"]);
    assert_eq!(alerts(&out), vec![(AlertType::PriceDrop, Severity::Info, "Price dropped 100.0% from $20.00 to $0.00")]);
}

// ----- one low-stock rule -----------------------------------------------------

fn expected_low_stock(stock: i64) -> Option<Severity> {
    match stock {
        1..=5 => Some(Severity::Critical),
        6..=9 => Some(Severity::Warning),
        _ => None,
    }
}

fn low_stock_severity(out: &Outputs) -> Option<Severity> {
    let low: Vec<_> = out.alerts.iter().filter(|alert| alert.alert_type == AlertType::LowStock).collect();
    assert!(low.len() <= 1);
    low.first().map(|alert| {
        assert!(alert.message.starts_with("Low stock: only "));
        alert.severity
    })
}

#[test]
fn low_stock_boundaries_are_the_same_on_every_path() {
    for stock_level in [1, 4, 5, 6, 9, 10, 11] {
        let expected = expected_low_stock(stock_level);

        let mut added = processor();
        let out = run(&mut added, Input::Product(product("A", stock_level, 1.0)), T0);
        assert_eq!(low_stock_severity(&out), expected, "new product at {stock_level}");

        let mut updated = processor();
        run(&mut updated, Input::Product(product("A", 30, 1.0)), T0);
        let out = run(&mut updated, Input::Product(product("A", stock_level, 1.0)), T0 + 1);
        assert_eq!(low_stock_severity(&out), expected, "update to {stock_level}");

        let mut ordered = processor();
        run(&mut ordered, Input::Product(product("A", 30, 1.0)), T0);
        let out = run(&mut ordered, order("o", "A", 30 - stock_level), T0 + 1);
        assert_eq!(out.outcomes[0].outcome, Outcome::Applied);
        assert_eq!(low_stock_severity(&out), expected, "order down to {stock_level}");
        if let Some(alert) = out.alerts.first() {
            assert_eq!(alert.message, format!("Low stock: only {stock_level} items remaining"));
        }
    }
}

#[test]
fn threshold_is_configurable() {
    let mut processor = Processor::new(Config { low_stock_threshold: 3, ..Config::default() });
    let out = run(&mut processor, Input::Product(product("A", 3, 1.0)), T0);
    assert!(out.alerts.is_empty());
    let out = run(&mut processor, order("o", "A", 1), T0);
    assert_eq!(alerts(&out), vec![(AlertType::LowStock, Severity::Critical, "Low stock: only 2 items remaining")]);
}

// ----- orders -------------------------------------------------------------------

#[test]
fn order_down_to_zero_is_a_decrease_with_an_out_of_stock_alert() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 4, 2.5)), T0);
    let out = run(&mut processor, order("o", "A", 4), T0 + 1);
    assert_eq!(kinds(&out), vec![EventType::InventoryDecreased]);
    assert!(!out.events[0].critical);
    assert_eq!(alerts(&out), vec![(AlertType::OutOfStock, Severity::Critical, "Product is out of stock")]);
    assert_eq!(stock(&processor, "A"), 0);
    assert_eq!(
        out.changes,
        vec![
            StateChange::Product("A".into()),
            StateChange::DedupAdded { hash: dedup::line_hash("o", "A"), expires_at: T0 + 1 + 24 * HOUR },
        ]
    );
}

#[test]
fn rejected_order_leaves_state_and_timer_alone() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 2, 1899.99)), T0);
    let out = run(&mut processor, order("o", "A", 3), T0 + 30 * 60_000);
    assert_eq!(stock(&processor, "A"), 2);
    assert_eq!(processor.timing("A"), Some((T0, Some(T0 + HOUR))));
    assert_eq!(
        out.outcomes,
        vec![OrderOutcome {
            order_id: "o".into(),
            product_id: "A".into(),
            quantity: 3,
            outcome: Outcome::Rejected,
            previous_inventory: Some(2),
            current_inventory: Some(2),
            reason: Some("Insufficient inventory for order o: available 2, requested 3".into()),
            timestamp: T0 + 30 * 60_000,
        }]
    );
    // Only the remembered line changed, not the product.
    assert!(matches!(out.changes.as_slice(), [StateChange::DedupAdded { .. }]));
    let out = run(&mut processor, Input::Tick, T0 + HOUR);
    assert_eq!(reasons(&out), vec!["No updates for 1.0 hours"]);
}

#[test]
fn order_rejected_and_insufficient_stock_match_the_design_examples() {
    let mut processor = processor();
    let mut laptop = product("PROD_0001", 2, 1899.99);
    laptop.name = "…".into();
    run(&mut processor, Input::Product(laptop), T0);
    let out = run(&mut processor, order("5b1e…", "PROD_0001", 3), T0 + 7);
    let expected_event = r#"{"productId":"PROD_0001","productName":"…","eventType":"ORDER_REJECTED","previousInventory":2,"currentInventory":2,"previousPrice":1899.99,"currentPrice":1899.99,"timestamp":…,"changeReason":"Insufficient inventory for order 5b1e…: available 2, requested 3","alertLevel":null,"inventoryChange":0,"priceChange":0.0,"critical":false}"#
        .replace("\"timestamp\":…", &format!("\"timestamp\":{}", T0 + 7));
    assert_eq!(serde_json::to_string(&out.events[0]).unwrap(), expected_event);
    let expected_alert = r#"{"alertType":"INSUFFICIENT_STOCK","productId":"PROD_0001","message":"Order 5b1e… rejected: requested 3, available 2","severity":"WARNING","timestamp":…}"#
        .replace("\"timestamp\":…", &format!("\"timestamp\":{}", T0 + 7));
    assert_eq!(out.alerts.len(), 1, "no LOW_STOCK alert: nothing changed");
    assert_eq!(serde_json::to_string(&out.alerts[0]).unwrap(), expected_alert);
}

#[test]
fn clamp_mode_deducts_down_to_zero_like_the_workshop() {
    let mut processor = clamping();
    run(&mut processor, Input::Product(product("A", 2, 1.0)), T0);
    let out = run(&mut processor, order("o1", "A", 5), T0 + 1);
    assert_eq!(kinds(&out), vec![EventType::InventoryDecreased]);
    assert_eq!(reasons(&out), vec!["Deducted 5 for order o1"]);
    assert_eq!((out.events[0].previous_inventory, out.events[0].current_inventory), (Some(2), Some(0)));
    assert_eq!(alerts(&out), vec![(AlertType::OutOfStock, Severity::Critical, "Product is out of stock")]);
    assert_eq!((out.outcomes[0].outcome, out.outcomes[0].current_inventory), (Outcome::Applied, Some(0)));
    // An order against an empty product: 0 → 0, alerted again.
    let out = run(&mut processor, order("o2", "A", 1), T0 + 2);
    assert_eq!((out.events[0].previous_inventory, out.events[0].current_inventory), (Some(0), Some(0)));
    assert_eq!(out.alerts.len(), 1);
}

#[test]
fn unknown_products_go_to_the_dlq_and_change_nothing() {
    let mut processor = processor();
    let out = run(&mut processor, order("o", "PROD_X", 1), T0);
    assert_eq!(out.outcomes.len(), 1);
    assert_eq!(out.outcomes[0].outcome, Outcome::Dlq);
    assert_eq!(out.outcomes[0].reason.as_deref(), Some("unknown product PROD_X"));
    assert_eq!(out.unknown_product_orders.len(), 1);
    assert_eq!(out.unknown_product_orders[0].1, "unknown product PROD_X");
    assert!(out.events.is_empty() && out.alerts.is_empty() && out.changes.is_empty());
    assert!(!processor.is_remembered("o", "PROD_X"));
    // Once the product exists, the same line applies.
    run(&mut processor, Input::Product(product("PROD_X", 5, 1.0)), T0 + 1);
    let out = run(&mut processor, order("o", "PROD_X", 1), T0 + 2);
    assert_eq!(out.outcomes[0].outcome, Outcome::Applied);
}

#[test]
fn duplicates_are_decided_once() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 10, 1.0)), T0);
    run(&mut processor, Input::Product(product("B", 10, 1.0)), T0);
    assert_eq!(run(&mut processor, order("o", "A", 2), T0 + 1).outcomes[0].outcome, Outcome::Applied);
    let out = run(&mut processor, order("o", "A", 2), T0 + 2);
    assert_eq!(out.outcomes[0].outcome, Outcome::Duplicate);
    assert_eq!(out.outcomes[0].reason.as_deref(), Some("order line already processed"));
    assert!(out.events.is_empty() && out.alerts.is_empty() && out.changes.is_empty());
    assert_eq!(stock(&processor, "A"), 8);
    // Another line of the same order is a different line.
    assert_eq!(run(&mut processor, order("o", "B", 2), T0 + 3).outcomes[0].outcome, Outcome::Applied);

    // A rejected line stays rejected, even after a restock.
    assert_eq!(run(&mut processor, order("big", "A", 50), T0 + 4).outcomes[0].outcome, Outcome::Rejected);
    run(&mut processor, Input::Product(product("A", 100, 1.0)), T0 + 5);
    assert_eq!(run(&mut processor, order("big", "A", 50), T0 + 6).outcomes[0].outcome, Outcome::Duplicate);
    assert_eq!(stock(&processor, "A"), 100);
}

#[test]
fn remembered_lines_expire_exactly_at_the_window() {
    let window = 24 * HOUR;
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 100, 1.0)), T0);
    run(&mut processor, order("o", "A", 1), T0);
    assert_eq!(processor.next_deadline(), Some(T0 + HOUR));
    assert_eq!(run(&mut processor, order("o", "A", 1), T0 + window - 1).outcomes[0].outcome, Outcome::Duplicate);

    // A tick at the boundary forgets the line and tombstones it.
    let hash = dedup::line_hash("o", "A");
    let out = run(&mut processor, Input::Tick, T0 + window);
    assert!(out.changes.contains(&StateChange::DedupExpired { hash }));
    assert_eq!(processor.changelog_record(&StateChange::DedupExpired { hash }), (dedup::changelog_key(hash), None));
    assert_eq!(processor.dedup_len(), 0);
    let out = run(&mut processor, order("o", "A", 1), T0 + window);
    assert_eq!(out.outcomes[0].outcome, Outcome::Applied);

    // Without a tick, the next input expires the line itself.
    let mut processor = self::support::processor();
    run(&mut processor, Input::Product(product("A", 100, 1.0)), T0);
    run(&mut processor, order("o", "A", 1), T0);
    let out = run(&mut processor, order("o", "A", 1), T0 + window);
    assert_eq!(out.changes[0], StateChange::DedupExpired { hash });
    assert_eq!(out.outcomes[0].outcome, Outcome::Applied);
}

// ----- stale timer -------------------------------------------------------------

#[test]
fn stale_timer_fires_exactly_at_its_timeout_once() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 7, 5.5)), T0);
    assert!(run(&mut processor, Input::Tick, T0 + HOUR - 1).is_empty());
    let out = run(&mut processor, Input::Tick, T0 + HOUR);
    assert_eq!(kinds(&out), vec![EventType::StaleInventory]);
    let event = &out.events[0];
    assert_eq!((event.previous_inventory, event.current_inventory), (None, Some(7)));
    assert_eq!((event.previous_price, event.current_price), (None, Some(5.5)));
    assert_eq!(out.changes, vec![StateChange::Product("A".into())]);
    assert_eq!(processor.timing("A"), Some((T0, None)));
    assert!(out.alerts.is_empty(), "stale goes to the main output only");
    // Not repeated for the same idle period.
    assert!(run(&mut processor, Input::Tick, T0 + 5 * HOUR).is_empty());
    // An order starts a new period.
    run(&mut processor, order("o", "A", 1), T0 + 5 * HOUR);
    assert!(run(&mut processor, Input::Tick, T0 + 6 * HOUR - 1).events.is_empty());
    assert_eq!(run(&mut processor, Input::Tick, T0 + 6 * HOUR).events.len(), 1);
}

#[test]
fn stale_reason_shows_the_elapsed_hours_and_later_updates_rearm() {
    let mut processor = processor();
    run(&mut processor, Input::Product(product("A", 7, 5.5)), T0);
    // Re-armed by an update half an hour in: nothing at T0 + 1h.
    run(&mut processor, Input::Product(product("A", 8, 5.5)), T0 + HOUR / 2);
    assert!(run(&mut processor, Input::Tick, T0 + HOUR).events.is_empty());
    assert_eq!(processor.next_deadline(), Some(T0 + HOUR / 2 + HOUR));
    // A late tick reports the real idle time.
    let out = run(&mut processor, Input::Tick, T0 + HOUR / 2 + HOUR + HOUR / 2 + HOUR / 20);
    assert_eq!(reasons(&out), vec!["No updates for 1.6 hours"]);
}

#[test]
fn a_longer_timeout_after_restart_postpones_an_armed_timer() {
    let mut short = Processor::new(Config { stale_timeout_ms: HOUR, ..Config::default() });
    let out = run(&mut short, Input::Product(product("A", 7, 5.5)), T0);
    let (key, value) = short.changelog_record(&out.changes[0]);
    let mut long = Processor::new(Config { stale_timeout_ms: 2 * HOUR, ..Config::default() });
    long.restore_record(&key, value.as_deref()).unwrap();
    assert!(run(&mut long, Input::Tick, T0 + HOUR).events.is_empty());
    assert_eq!(long.timing("A"), Some((T0, Some(T0 + 2 * HOUR))));
    assert_eq!(run(&mut long, Input::Tick, T0 + 2 * HOUR).events.len(), 1);
}

#[test]
fn ticks_with_nothing_due_do_nothing() {
    let mut processor = processor();
    assert!(run(&mut processor, Input::Tick, T0).is_empty());
    assert_eq!(processor.next_deadline(), None);
    for index in 0..200 {
        run(&mut processor, Input::Product(product(&format!("P{index}"), 50, 1.0)), T0 + index);
    }
    for index in 0..1_000 {
        run(&mut processor, order(&format!("o{index}"), &format!("P{}", index % 200), 1), T0 + 1_000 + index);
    }
    assert!(run(&mut processor, Input::Tick, T0 + HOUR - 1).is_empty());
    // The heap holds one entry per product, not one per order.
    assert!(processor.timers.len() <= 200, "{} timer entries", processor.timers.len());
}

// ----- changelog and restore ----------------------------------------------------

/// Every product's changelog value and every remembered line, sorted.
type CanonicalState = (Vec<(String, Vec<u8>)>, Vec<(u64, i64)>);

fn canonical_state(processor: &Processor) -> CanonicalState {
    let mut products: Vec<_> = processor
        .products()
        .map(|product| {
            let id = product.product_id.clone();
            let snapshot = processor.snapshot_product(&id).expect("listed product has a snapshot");
            (id, snapshot)
        })
        .collect();
    products.sort();
    let mut lines: Vec<_> = processor.dedup.entries().collect();
    lines.sort();
    (products, lines)
}

/// Applies inputs and records every change as the changelog record the
/// driver would write right after that input.
fn run_recording(processor: &mut Processor, inputs: Vec<(Input, i64)>, log: &mut Vec<(String, Option<Vec<u8>>)>) -> Vec<Outputs> {
    inputs
        .into_iter()
        .map(|(input, now)| {
            let out = run(processor, input, now);
            log.extend(out.changes.iter().map(|change| processor.changelog_record(change)));
            out
        })
        .collect()
}

fn restored(config: Config, log: &[(String, Option<Vec<u8>>)]) -> Processor {
    let mut processor = Processor::new(config);
    for (key, value) in log {
        processor.restore_record(key, value.as_deref()).expect("own records restore");
    }
    processor
}

#[test]
fn restoring_the_changelog_gives_the_same_state_and_behaviour() {
    let mut original = Processor::new(Config { dedup_window_ms: 2 * HOUR, ..Config::default() });
    let mut log = Vec::new();
    run_recording(
        &mut original,
        vec![
            (Input::Products(vec![product("A", 10, 100.0), product("B", 3, 5.0), product("C", 0, 1.0)]), T0),
            (order("o1", "A", 3), T0 + 1),
            (order("o1", "A", 3), T0 + 2),
            (order("o2", "B", 9), T0 + 3),
            (order("o3", "X", 1), T0 + 4),
            (Input::Tick, T0 + HOUR),
            (Input::Product(product("C", 20, 2.0)), T0 + HOUR + 5),
            (order("o4", "C", 1), T0 + 2 * HOUR),
            (Input::Tick, T0 + 2 * HOUR + 1),
            (order("o5", "A", 1), T0 + 2 * HOUR + 2),
        ],
        &mut log,
    );
    assert!(log.iter().any(|(key, value)| key.starts_with("dedup:") && value.is_none()), "some lines expired");

    let mut copy = restored(original.config().clone(), &log);
    assert_eq!(canonical_state(&copy), canonical_state(&original));
    // Restoring the same log twice (no compaction, a replayed tail) changes nothing.
    for (key, value) in &log {
        copy.restore_record(key, value.as_deref()).unwrap();
    }
    assert_eq!(canonical_state(&copy), canonical_state(&original));

    // And the two behave the same from here on.
    let next = || {
        vec![
            (order("o5", "A", 1), T0 + 2 * HOUR + 10),
            (order("o6", "A", 1), T0 + 2 * HOUR + 11),
            (Input::Tick, T0 + 3 * HOUR),
            (Input::Tick, T0 + 4 * HOUR + 100),
            (Input::Product(product("B", 1, 5.0)), T0 + 5 * HOUR),
        ]
    };
    let mut log_a = Vec::new();
    let mut log_b = Vec::new();
    let out_a = run_recording(&mut original, next(), &mut log_a);
    let out_b = run_recording(&mut copy, next(), &mut log_b);
    assert_eq!(out_a, out_b);
    assert_eq!(log_a, log_b);
}

#[test]
fn changelog_records_have_the_documented_shape() {
    let mut processor = processor();
    let out = run(&mut processor, Input::Product(product("A", 10, 100.0)), T0);
    let (key, value) = processor.changelog_record(&out.changes[0]);
    assert_eq!(key, "A");
    let value: serde_json::Value = serde_json::from_slice(&value.unwrap()).unwrap();
    assert_eq!(value["lastUpdate"], json!(T0));
    assert_eq!(value["staleDeadline"], json!(T0 + HOUR));
    assert_eq!(value["product"]["productId"], json!("A"));
    let out = run(&mut processor, order("o", "A", 1), T0 + 1);
    let (key, value) = processor.changelog_record(&out.changes[1]);
    assert_eq!(key, dedup::changelog_key(dedup::line_hash("o", "A")));
    assert_eq!(value.unwrap(), format!("{{\"expiresAt\":{}}}", T0 + 1 + 24 * HOUR).into_bytes());
}

#[test]
fn restore_rejects_bad_records_and_honours_tombstones() {
    let mut processor = processor();
    assert!(processor.restore_record("A", Some(b"not json")).is_err());
    assert!(processor.restore_record("dedup:zz", Some(b"{\"expiresAt\":1}")).is_err());
    assert!(processor.restore_record("dedup:0000000000000001", Some(b"[]")).is_err());
    let mut source = self::support::processor();
    run(&mut source, Input::Product(product("B", 1, 1.0)), T0);
    let snapshot = source.snapshot_product("B").unwrap();
    assert!(processor.restore_record("A", Some(&snapshot)).unwrap_err().contains("holds product"));
    processor.restore_record("B", Some(&snapshot)).unwrap();
    assert_eq!(processor.product_count(), 1);
    processor.restore_record("B", None).unwrap();
    assert_eq!(processor.product_count(), 0);
    assert!(processor.product("B").is_none());
    // A freed slot is reused and its old timer does not fire for the new product.
    processor.restore_record("B", Some(&snapshot)).unwrap();
    assert_eq!(run(&mut processor, Input::Tick, T0 + HOUR).events.len(), 1);
    processor.restore_record("dedup:0000000000000001", Some(b"{\"expiresAt\":5}")).unwrap();
    assert_eq!(processor.dedup_len(), 1);
    processor.restore_record("dedup:0000000000000001", None).unwrap();
    assert_eq!(processor.dedup_len(), 0);
}

// ----- properties ---------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Set { product: usize, inventory: i64 },
    Order { order: usize, product: usize, quantity: i64 },
    Advance { ms: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0usize..3, 0i64..30).prop_map(|(product, inventory)| Step::Set { product, inventory }),
        4 => (0usize..25, 0usize..4, 1i64..15).prop_map(|(order, product, quantity)| Step::Order { order, product, quantity }),
        1 => (0i64..2 * HOUR).prop_map(|ms| Step::Advance { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// In Reject mode stock never goes negative and always equals the last
    /// absolute set minus the deductions applied since; every line gets one
    /// outcome; and the changelog restores the same state.
    #[test]
    fn stock_is_always_the_last_set_minus_applied_deductions(steps in prop::collection::vec(step(), 1..80)) {
        let window = 3 * HOUR;
        let config = Config { dedup_window_ms: window, ..Config::default() };
        let mut processor = Processor::new(config.clone());
        let mut model: [Option<i64>; 4] = [None; 4];
        let mut decided: std::collections::HashMap<(usize, usize), i64> = Default::default();
        let mut now = T0;
        let mut log = Vec::new();
        for step in steps {
            let (input, expected) = match step {
                Step::Set { product: index, inventory } => {
                    model[index] = Some(inventory);
                    (Input::Product(product(&format!("P{index}"), inventory, 1.0)), None)
                }
                Step::Order { order: order_index, product: index, quantity } => {
                    let key = (order_index, index);
                    let expected = match model[index] {
                        None => Outcome::Dlq,
                        Some(_) if decided.get(&key).is_some_and(|expires| *expires > now) => Outcome::Duplicate,
                        Some(stock) if quantity > stock => {
                            decided.insert(key, now + window);
                            Outcome::Rejected
                        }
                        Some(stock) => {
                            decided.insert(key, now + window);
                            model[index] = Some(stock - quantity);
                            Outcome::Applied
                        }
                    };
                    (order(&format!("o{order_index}"), &format!("P{index}"), quantity), Some(expected))
                }
                Step::Advance { ms } => {
                    now += ms;
                    (Input::Tick, None)
                }
            };
            let out = run(&mut processor, input, now);
            log.extend(out.changes.iter().map(|change| processor.changelog_record(change)));
            if let Some(expected) = expected {
                prop_assert_eq!(out.outcomes.len(), 1);
                prop_assert_eq!(out.outcomes[0].outcome, expected);
            } else {
                prop_assert!(out.outcomes.is_empty());
            }
            for (index, expected_stock) in model.iter().enumerate() {
                let actual = processor.product(&format!("P{index}")).map(|product| product.inventory);
                prop_assert_eq!(actual, *expected_stock);
                prop_assert!(actual.unwrap_or(0) >= 0);
            }
        }
        let copy = restored(config, &log);
        prop_assert_eq!(canonical_state(&copy), canonical_state(&processor));
    }

    /// Clamp mode never goes negative either.
    #[test]
    fn clamp_mode_never_goes_negative(quantities in prop::collection::vec(1i64..20, 1..30)) {
        let mut processor = clamping();
        run(&mut processor, Input::Product(product("A", 25, 1.0)), T0);
        let mut expected = 25i64;
        for (index, quantity) in quantities.into_iter().enumerate() {
            run(&mut processor, order(&format!("o{index}"), "A", quantity), T0 + 1);
            expected = (expected - quantity).max(0);
            prop_assert_eq!(stock(&processor, "A"), expected);
        }
    }

    /// The changelog is outside input too (another tool may write to the
    /// topic): a bad record is an error, never a panic.
    #[test]
    fn restore_never_panics_on_arbitrary_records(
        key in "(dedup:)?[0-9a-zA-Z_:]{0,24}",
        value in prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
    ) {
        let mut processor = Processor::new(Config::default());
        let _ = processor.restore_record(&key, value.as_deref());
    }
}
