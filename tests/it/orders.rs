//! `kart order place|flush` against the test PostgreSQL and a tansu of the
//! test's own.

use std::time::Duration;

use serde_json::Value;

use crate::streams::{read_all, values, JobGuard};
use crate::support::{sql, Broker, Kart, TestDb};

fn project(broker: &Broker, db: &TestDb) -> Kart {
    let kart = Kart::new().with_broker(broker).with_db(db);
    kart.run(&["topics", "create"]).ok();
    kart.run(&["db", "up"]).ok();
    kart
}

fn count(db: &TestDb, query: &str) -> i64 {
    sql(&db.name, query)[0].get::<_, i64>(0)
}

#[test]
fn an_order_writes_the_checkouts_rows_and_publishes_after_the_commit() {
    let broker = Broker::start();
    let db = TestDb::new();
    let kart = project(&broker, &db);
    let run = kart.run(&["-o", "json", "order", "place", "--item", "PROD_0001:2", "--item", "PROD_0002:1", "--item", "PROD_0001:1"]);
    run.ok();
    let out = run.json();
    let order_id = out["order"]["orderId"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&order_id).unwrap().get_version_num(), 4);

    // The workshop's checkout (workshop spec §4.3–§4.4).
    let order = &sql(&db.name, &format!(
        "SELECT customer_id, status, subtotal::text, tax::text, shipping::text, total::text, payment_method, shipping_address IS NULL, order_date IS NOT NULL FROM orders WHERE order_id = '{order_id}'"
    ))[0];
    assert_eq!(order.get::<_, String>(0), "guest");
    assert_eq!(order.get::<_, String>(1), "CONFIRMED");
    // 3 × 1899.99 + 279.99 = 5979.96; tax 8 % = 478.3968 → 478.40; + 5.99.
    assert_eq!(order.get::<_, String>(2), "5979.96");
    assert_eq!(order.get::<_, String>(3), "478.40");
    assert_eq!(order.get::<_, String>(4), "5.99");
    assert_eq!(order.get::<_, String>(5), "6464.35");
    assert_eq!(order.get::<_, String>(6), "credit_card");
    assert!(order.get::<_, bool>(7) && order.get::<_, bool>(8));
    let items = sql(&db.name, &format!(
        "SELECT product_id, quantity, unit_price::text, discount::text, line_total::text FROM order_items WHERE order_id = '{order_id}' ORDER BY order_item_id"
    ));
    let items: Vec<(String, i32, String, String, String)> = items.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    assert_eq!(
        items,
        vec![
            ("PROD_0001".into(), 3, "1899.99".into(), "0.00".into(), "5699.97".into()),
            ("PROD_0002".into(), 1, "279.99".into(), "0.00".into(), "279.99".into()),
        ],
        "repeated products are merged into one line"
    );

    // One order-events record per line, keyed by productId, in the CDC
    // job's field order.
    let records = read_all(&broker, "order-events");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].key.as_deref(), Some("PROD_0001"));
    let event = records[0].json();
    let fields: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["quantity", "productId", "orderId", "timestamp"]);
    assert_eq!(event["quantity"], 3);
    assert_eq!(event["orderId"], order_id.as_str());
    assert_eq!(count(&db, "SELECT count(*) FROM kart_order_outbox WHERE sent_at IS NULL"), 0);

    // --cdc publishes nothing: the CDC job does.
    kart.run(&["order", "place", "--product", "PROD_0003", "--cdc"]).ok();
    assert_eq!(read_all(&broker, "order-events").len(), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM orders"), 2);
}

#[test]
fn bad_lines_are_refused_before_anything_is_written() {
    let broker = Broker::start();
    let db = TestDb::new();
    let kart = project(&broker, &db);
    for args in [
        vec!["order", "place", "--product", "PROD_9999"],
        vec!["order", "place", "--item", "PROD_0001:0"],
        vec!["order", "place", "--item", "PROD_0001"],
        vec!["order", "place", "--product", "PROD_0001", "--quantity", "-2"],
    ] {
        let run = kart.run(&args);
        run.code(1);
        assert!(run.stderr.contains("error:"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(count(&db, "SELECT count(*) FROM orders"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM order_items"), 0);
    assert!(read_all(&broker, "order-events").is_empty());
    // Both forms at once is a usage error.
    kart.run(&["order", "place", "--product", "PROD_0001", "--item", "PROD_0002:1"]).code(2);
}

#[test]
fn an_order_committed_while_kafka_is_down_is_published_exactly_once_later() {
    let broker = Broker::start();
    let db = TestDb::new();
    let kart = project(&broker, &db);
    let down = kart
        .command(&["--connect-timeout", "1s", "order", "place", "--product", "PROD_0004", "--quantity", "2"])
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", crate::support::closed_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is committed, but its events are not published") && stderr.contains("kart order flush"), "{stderr}");
    assert_eq!(count(&db, "SELECT count(*) FROM orders"), 1, "the order itself is committed");
    assert_eq!(count(&db, "SELECT count(*) FROM kart_order_outbox WHERE sent_at IS NULL"), 1);
    assert!(read_all(&broker, "order-events").is_empty());

    // The next order publishes the earlier one too, once.
    kart.run(&["order", "place", "--product", "PROD_0005"]).ok();
    let events = values(&broker, "order-events");
    let products: Vec<&str> = events.iter().map(|e| e["productId"].as_str().unwrap()).collect();
    assert_eq!(products, ["PROD_0004", "PROD_0005"]);
    let flush = kart.run(&["order", "flush"]);
    flush.ok();
    assert!(flush.stdout.contains("nothing to publish"), "{}", flush.stdout);
    assert_eq!(read_all(&broker, "order-events").len(), 2);

    // `order flush` alone publishes what is pending.
    let _ = kart
        .command(&["--connect-timeout", "1s", "order", "place", "--product", "PROD_0006"])
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", crate::support::closed_port()))
        .output()
        .unwrap();
    let flush = kart.run(&["-o", "json", "order", "flush"]);
    flush.ok();
    assert_eq!(flush.json()["published"], 1);
    assert_eq!(read_all(&broker, "order-events").len(), 3);
}

#[test]
fn wait_prints_each_lines_outcome_and_a_rejection_exits_1() {
    let broker = Broker::start();
    let db = TestDb::new();
    let kart = project(&broker, &db);
    let _guard = JobGuard { kart: &kart };
    kart.run(&["job", "deploy", "inventory"]).ok();
    let run = kart.run(&["order", "place", "--item", "PROD_0001:2", "--item", "PROD_0002:1", "--wait"]);
    run.ok();
    assert!(run.stdout.contains("PROD_0001 10 → 8") && run.stdout.contains("PROD_0002 8 → 7"), "{}", run.stdout);
    let rejected = kart.run(&["order", "place", "--product", "PROD_0001", "--quantity", "50", "--wait"]);
    rejected.code(1);
    assert!(rejected.stdout.contains("PROD_0001 rejected: Insufficient inventory"), "{}", rejected.stdout);
    let json = kart.run(&["-o", "json", "order", "place", "--product", "PROD_0003", "--wait"]);
    json.ok();
    let out = json.json();
    assert_eq!(out["outcomes"][0]["outcome"], "applied");

    // Without the job, --wait times out and says the job is not running.
    kart.run(&["job", "stop", "inventory"]).ok();
    let timeout = kart.run(&["order", "place", "--product", "PROD_0003", "--wait", "--wait-timeout", "1s"]);
    timeout.code(1);
    assert!(timeout.stderr.contains("the inventory job is not running"), "{}", timeout.stderr);
}

#[test]
fn load_mode_places_many_orders_and_summarises() {
    let broker = Broker::start();
    let db = TestDb::new();
    let kart = project(&broker, &db);
    let _guard = JobGuard { kart: &kart };
    kart.run(&["job", "deploy", "inventory"]).ok();
    let run = kart.run(&["-o", "json", "order", "place", "--count", "40", "--rate", "200", "--products", "PROD_0003,PROD_0005", "--wait"]);
    run.ok();
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 41, "one line per order and a summary");
    let summary = &lines[40]["summary"];
    assert_eq!(lines[40]["schemaVersion"], 1);
    assert_eq!(summary["orders"], 40, "{summary}");
    assert_eq!(summary["failures"], 0);
    assert_eq!(summary["pending"], 0);
    assert_eq!(summary["outcomes"]["missing"], 0, "{summary}");
    let decided = summary["outcomes"]["applied"].as_u64().unwrap() + summary["outcomes"]["rejected"].as_u64().unwrap();
    assert_eq!(decided, 40, "{summary}");
    assert!(summary["latencyMs"]["p99"].as_f64().unwrap() > 0.0);
    assert!(summary["ordersPerSecond"].as_f64().unwrap() <= 250.0, "--rate is honoured: {summary}");
    assert_eq!(count(&db, "SELECT count(*) FROM orders"), 40);
    std::thread::sleep(Duration::from_millis(10));
}
