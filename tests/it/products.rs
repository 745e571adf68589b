//! `kart products load|update|list` against a real broker (a tansu of the
//! test's own) and, for prices, the test PostgreSQL.
//!
//! The inventory job is not part of these tests: where a test needs what the
//! job would have written to `products` and `inventory-events`, it writes
//! those records itself.

use std::collections::HashMap;
use std::time::Duration;

use kart::config::{Mode, ResolveInputs, Settings};
use kart::kafka::producer::{publish, OutRecord};
use kart::kafka::reader::{read_to_end, Record};
use kart::kafka::KafkaSettings;
use kart::printer::{OutputFormat, Printer};
use serde_json::{json, Value};

use crate::support::{closed_port, sql, Broker, Kart, TestDb};

const WORKSHOP_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peer/data/initial-products.json");

/// The workshop's Product fields, in the order its Jackson mapper writes them.
const PRODUCT_FIELDS: [&str; 11] =
    ["productId", "name", "description", "price", "category", "brand", "imageUrl", "inventory", "tags", "rating", "reviewCount"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn kafka_settings(broker: &Broker) -> KafkaSettings {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = ResolveInputs {
        mode: Mode::Local,
        project_dir: dir.path().to_path_buf(),
        env_files: vec![],
        process_env: HashMap::from([("KAFKA_BOOTSTRAP_SERVERS".to_string(), broker.bootstrap())]),
        flags: vec![],
    };
    let settings = Settings::resolve(&inputs).expect("settings");
    KafkaSettings::from_settings(&settings, Duration::from_secs(10)).expect("kafka settings")
}

/// Every committed record of `topic`, through kart's own reader.
fn read(broker: &Broker, topic: &str) -> Vec<Record> {
    runtime().block_on(read_to_end(&kafka_settings(broker), &Printer::plain(OutputFormat::Text), &[topic])).expect("read")
}

fn values(records: &[Record]) -> Vec<Value> {
    records.iter().map(|r| serde_json::from_slice(r.value.as_deref().expect("a value")).expect("JSON value")).collect()
}

/// Writes records as the inventory job would, keyed by productId.
fn write(broker: &Broker, topic: &str, values: &[Value]) {
    let records: Vec<OutRecord> = values
        .iter()
        .map(|v| OutRecord { key: v["productId"].as_str().map(str::to_string), value: serde_json::to_vec(v).unwrap(), headers: Vec::new() })
        .collect();
    runtime().block_on(publish(&kafka_settings(broker), &Printer::plain(OutputFormat::Text), topic, &records)).expect("publish");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn inventory_event(product: &Value, kind: &str, previous: i64, current: i64) -> Value {
    json!({
        "productId": product["productId"], "productName": product["name"], "eventType": kind,
        "previousInventory": previous, "currentInventory": current,
        "previousPrice": product["price"], "currentPrice": product["price"],
        "timestamp": now_ms(), "changeReason": "test", "alertLevel": null,
        "inventoryChange": current - previous, "priceChange": 0.0, "critical": current == 0
    })
}

/// A broker with the default topics, and a kart pointed at it.
fn setup() -> (Broker, Kart) {
    let broker = Broker::start();
    let kart = Kart::new().with_broker(&broker);
    kart.run(&["topics", "create"]).ok();
    (broker, kart)
}

fn field_names(value: &Value) -> Vec<&str> {
    value.as_object().expect("an object").keys().map(String::as_str).collect()
}

#[test]
fn products_load_publishes_the_catalog_keyed_by_product_id() {
    let (broker, kart) = setup();
    let run = kart.run(&["-o", "json", "products", "load"]);
    run.ok();
    let report = run.json();
    let ids: Vec<String> = (1..=16).map(|n| format!("PROD_{n:04}")).collect();
    assert_eq!(report, json!({"schemaVersion": 1, "topic": "product-updates", "source": "kart's built-in catalog", "published": 16, "products": ids}));

    let records = read(&broker, "product-updates");
    assert_eq!(records.len(), 16);
    let catalog: Vec<Value> = serde_json::from_str(kart::catalog::BUILTIN_CATALOG).unwrap();
    for ((record, value), original) in records.iter().zip(values(&records)).zip(&catalog) {
        assert_eq!(record.key_str(), value["productId"].as_str(), "keyed by productId");
        assert_eq!(field_names(&value), PRODUCT_FIELDS, "the workshop's 11 fields in its order");
        for field in PRODUCT_FIELDS {
            // Numbers by value: the catalog's `4` comes back as Jackson's `4.0`.
            if value[field].is_number() {
                assert_eq!(value[field].as_f64(), original[field].as_f64(), "{field}");
            } else {
                assert_eq!(value[field], original[field], "{field}");
            }
        }
    }

    let text = kart.run(&["products", "load"]);
    text.ok();
    assert!(text.stdout.contains("published 16 products to product-updates"), "{}", text.stdout);
    assert_eq!(read(&broker, "product-updates").len(), 32, "loading again publishes again: updates are absolute");
}

#[test]
fn products_load_file_takes_the_workshop_catalog_unchanged() {
    let (broker, kart) = setup();
    let run = kart.run(&["-o", "json", "products", "load", "--file", WORKSHOP_CATALOG]);
    run.ok();
    let report = run.json();
    assert_eq!(report["published"], 16);
    assert_eq!(report["source"], WORKSHOP_CATALOG);
    let workshop: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(WORKSHOP_CATALOG).unwrap()).unwrap();
    let expected_ids: Vec<&Value> = workshop.iter().map(|p| &p["productId"]).collect();
    assert_eq!(report["products"].as_array().unwrap().iter().collect::<Vec<_>>(), expected_ids);

    let published = values(&read(&broker, "product-updates"));
    assert_eq!(published.len(), 16);
    for (value, original) in published.iter().zip(&workshop) {
        assert_eq!(field_names(value), PRODUCT_FIELDS);
        assert_eq!(value["name"], original["name"]);
        assert_eq!(value["inventory"], original["inventory"]);
        assert_eq!(value["price"].as_f64(), original["price"].as_f64());
        assert!(value["rating"].is_f64(), "an integer rating is written as a double, like Jackson: {value}");
    }
}

#[test]
fn products_load_refuses_a_bad_file_naming_it() {
    let broker = Broker::start();
    let kart = Kart::new().with_broker(&broker);
    let bad = kart.write("bad-products.json", r#"[{"productId":"P1","name":"n","price":-1,"inventory":1}]"#);
    let run = kart.run(&["products", "load", "--file", bad.to_str().unwrap()]);
    run.code(1);
    assert!(run.stderr.contains(bad.to_str().unwrap()), "{}", run.stderr);
    assert!(run.stderr.contains("price must be a number >= 0"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let missing = kart.run(&["-o", "json", "products", "load", "--file", "no-such-file.json"]);
    missing.code(1);
    assert!(missing.stderr.contains("no-such-file.json"), "{}", missing.stderr);
    assert!(missing.stdout.is_empty());
}

#[test]
fn products_need_their_topics() {
    let broker = Broker::start();
    let kart = Kart::new().with_broker(&broker);
    for args in [&["products", "load"][..], &["products", "list"], &["products", "update", "PROD_0001", "--inventory", "3"]] {
        let run = kart.run(args);
        run.code(1);
        assert!(run.stderr.contains("does not exist") && run.stderr.contains("kart topics create"), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn products_update_keeps_every_other_field_from_the_latest_products_record() {
    let (broker, kart) = setup();
    // The --price step below would otherwise update whatever database runs
    // on the default port.
    let kart = kart.env("POSTGRES_HOST", "127.0.0.1").env("POSTGRES_PORT", closed_port().to_string());
    let catalog: Vec<Value> = serde_json::from_str(kart::catalog::BUILTIN_CATALOG).unwrap();
    let mut latest = catalog[0].clone();
    latest["name"] = json!("Renamed laptop");
    latest["description"] = json!("changed by a product update");
    latest["price"] = json!(1234.5);
    latest["brand"] = Value::Null;
    latest["tags"] = json!(["one", "two"]);
    latest["rating"] = json!(3.5);
    write(&broker, "products", &[catalog[0].clone(), latest.clone()]);

    let run = kart.run(&["-o", "json", "products", "update", "PROD_0001", "--inventory", "25"]);
    run.ok();
    let report = run.json();
    let mut expected = latest.clone();
    expected["inventory"] = json!(25);
    assert_eq!(report["schemaVersion"], 1);
    assert_eq!(report["topic"], "product-updates");
    assert_eq!(report["productId"], "PROD_0001");
    assert_eq!(report["basedOn"], "products");
    assert_eq!(report["before"], json!({"inventory": latest["inventory"], "price": 1234.5}));
    assert_eq!(report["after"], json!({"inventory": 25, "price": 1234.5}));
    assert_eq!(report["product"], expected);
    assert_eq!(report["database"], Value::Null, "no --price, no database");

    let records = read(&broker, "product-updates");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key_str(), Some("PROD_0001"));
    let published = &values(&records)[0];
    assert_eq!(field_names(published), PRODUCT_FIELDS);
    assert_eq!(published, &expected);

    // Orders lowered the stock since (an inventory event newer than the
    // product record): a price change must not put the old stock back.
    write(&broker, "inventory-events", &[inventory_event(&latest, "INVENTORY_DECREASED", 10, 7)]);
    let price = kart
        .run(&["--connect-timeout", "2s", "products", "update", "PROD_0001", "--price", "999.99"])
        .ok()
        .stdout
        .clone();
    assert_eq!(price.trim(), "PROD_0001 inventory 7, price $1234.50 → $999.99");
    let published = values(&read(&broker, "product-updates"));
    assert_eq!(published[1]["inventory"], 7);
    assert_eq!(published[1]["price"], 999.99);
    assert_eq!(published[1]["name"], "Renamed laptop");
}

#[test]
fn products_update_falls_back_to_the_catalog_and_refuses_unknown_products() {
    let (broker, kart) = setup();
    let run = kart.run(&["products", "update", "PROD_0002", "--inventory", "3"]);
    run.ok();
    assert!(run.stdout.starts_with("PROD_0002 inventory "), "{}", run.stdout);
    assert!(run.stderr.contains("from the catalog"), "{}", run.stderr);
    let catalog: Vec<Value> = serde_json::from_str(kart::catalog::BUILTIN_CATALOG).unwrap();
    let mut expected = catalog[1].clone();
    expected["inventory"] = json!(3);
    let published = values(&read(&broker, "product-updates"));
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["inventory"], 3);
    assert_eq!(published[0]["name"], expected["name"]);
    assert_eq!(published[0]["price"].as_f64(), expected["price"].as_f64());

    let unknown = kart.run(&["products", "update", "PROD_9999", "--inventory", "3"]);
    unknown.code(1);
    assert!(unknown.stderr.contains("unknown product PROD_9999"), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("kart products list"), "{}", unknown.stderr);
    let json = kart.run(&["-o", "json", "products", "update", "PROD_9999", "--price", "1"]);
    json.code(1);
    assert!(json.stdout.is_empty());
    assert!(json.stderr.contains(r#""code":"unknown-product""#), "{}", json.stderr);
    assert_eq!(read(&broker, "product-updates").len(), 1, "nothing published for unknown products");
}

#[test]
fn products_update_needs_a_valid_change() {
    // Checked before any connection: no broker needed.
    let kart = Kart::new().env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", closed_port()));
    let neither = kart.run(&["products", "update", "PROD_0001"]);
    neither.code(1);
    assert!(neither.stderr.contains("--inventory") && neither.stderr.contains("hint:"), "{}", neither.stderr);
    for args in [&["--inventory", "-5"][..], &["--price", "-1"], &["--price", "NaN"], &["--inventory=-1", "--price", "3"]] {
        let mut full = vec!["products", "update", "PROD_0001"];
        full.extend_from_slice(args);
        let run = kart.run(&full);
        run.code(1);
        assert!(run.stderr.contains("must be"), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn products_update_with_a_price_sets_the_database_price() {
    let (broker, _) = setup();
    let db = TestDb::new();
    let kart = Kart::new().with_broker(&broker).with_db(&db);
    kart.run(&["db", "up"]).ok();
    let run = kart.run(&["-o", "json", "products", "update", "PROD_0001", "--price", "1799.5"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["database"]["updated"], true, "{report}");
    assert_eq!(report["database"]["database"], db.name.as_str());
    assert_eq!(report["database"]["error"], Value::Null);
    let rows = sql(&db.name, "SELECT price::text FROM products WHERE product_id = 'PROD_0001'");
    assert_eq!(rows[0].get::<_, String>(0), "1799.50");
    assert_eq!(values(&read(&broker, "product-updates"))[0]["price"], 1799.5);

    let text = kart.run(&["products", "update", "PROD_0002", "--price", "12", "--inventory", "4"]);
    text.ok();
    assert!(text.stderr.contains("the price in PostgreSQL"), "{}", text.stderr);
    let rows = sql(&db.name, "SELECT price::text FROM products WHERE product_id = 'PROD_0002'");
    assert_eq!(rows[0].get::<_, String>(0), "12.00");
}

#[test]
fn products_update_succeeds_when_postgres_is_down_and_says_so() {
    let (broker, _) = setup();
    let kart = Kart::new().with_broker(&broker).env("POSTGRES_HOST", "127.0.0.1").env("POSTGRES_PORT", closed_port().to_string());
    let run = kart.run(&["-o", "json", "--connect-timeout", "2s", "products", "update", "PROD_0001", "--price", "5"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["database"]["updated"], false);
    assert!(report["database"]["error"].as_str().unwrap().contains(&format!("127.0.0.1:{}", closed_port())), "{report}");
    assert!(run.stderr.contains("warning:") && run.stderr.contains("price in PostgreSQL is unchanged"), "{}", run.stderr);
    assert_eq!(values(&read(&broker, "product-updates"))[0]["price"], 5.0, "the Kafka part happened");
}

#[test]
fn products_list_shows_the_state_the_job_published() {
    let (broker, kart) = setup();
    let empty = kart.run(&["products", "list"]);
    empty.ok();
    assert!(empty.stdout.starts_with("PRODUCT"), "an empty table: {}", empty.stdout);
    assert_eq!(empty.stdout.lines().count(), 1, "{}", empty.stdout);
    assert!(empty.stderr.contains("kart products load") && empty.stderr.contains("kart job deploy inventory"), "{}", empty.stderr);
    let empty_json = kart.run(&["-o", "json", "products", "list"]);
    empty_json.ok();
    assert_eq!(empty_json.json(), json!({"schemaVersion": 1, "products": []}));

    // What the inventory job does with a load: every product to `products`
    // and a PRODUCT_ADDED event; then an order takes 3 of PROD_0001.
    kart.run(&["products", "load"]).ok();
    let updates = values(&read(&broker, "product-updates"));
    write(&broker, "products", &updates);
    let mut events: Vec<Value> = updates.iter().map(|p| inventory_event(p, "PRODUCT_ADDED", 0, p["inventory"].as_i64().unwrap())).collect();
    events.push(inventory_event(&updates[0], "INVENTORY_DECREASED", 10, 7));
    write(&broker, "inventory-events", &events);

    let run = kart.run(&["-o", "json", "products", "list"]);
    run.ok();
    let mut listed = run.json();
    let rows = listed["products"].as_array_mut().unwrap();
    assert_eq!(rows.len(), 16);
    assert_eq!(rows[0]["inventory"], 7, "the newest event wins over the product record");
    assert_eq!(rows[0]["lastEvent"], "INVENTORY_DECREASED");
    for row in rows.iter_mut() {
        let at = row["lastEventAt"].as_i64().expect("every product has an event");
        assert!((at - now_ms()).abs() < 300_000, "epoch milliseconds: {at}");
        row["lastEventAt"] = json!("<timestamp>");
    }
    insta::assert_json_snapshot!("products-list-json", listed);

    let text = kart.run(&["products", "list"]);
    text.ok();
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 17, "{}", text.stdout);
    for column in ["PRODUCT", "NAME", "STOCK", "PRICE", "LAST EVENT", "WHEN"] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    assert!(lines[1].starts_with("PROD_0001") && lines[1].contains("INVENTORY_DECREASED") && lines[1].contains("s ago"), "{}", lines[1]);
    assert!(text.stderr.is_empty(), "{}", text.stderr);
}

#[test]
fn products_commands_name_an_unreachable_broker() {
    let port = closed_port();
    let kart = Kart::new().env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{port}"));
    for args in [&["products", "load"][..], &["products", "list"], &["products", "update", "PROD_0001", "--inventory", "3"]] {
        let mut full = vec!["--connect-timeout", "2s"];
        full.extend_from_slice(args);
        let run = kart.run(&full);
        run.code(2);
        assert!(run.stderr.contains(&format!("127.0.0.1:{port}")), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("within 2s") && run.stderr.contains("hint:"), "{args:?}: {}", run.stderr);
        assert!(run.elapsed >= Duration::from_millis(1500) && run.elapsed < Duration::from_secs(30), "{args:?} took {:?}", run.elapsed);
    }
}

#[test]
fn products_commands_report_a_wrong_password() {
    let password = "kart-products-Pa55";
    let broker = Broker::start_scram("student", password);
    let wrong = "not-the-Pa55word";
    let kart = Kart::new();
    kart.write(
        ".env.remote",
        &format!("export KAFKA_BOOTSTRAP_SERVERS=\"{}\"\nexport KAFKA_USER=\"student\"\nexport KAFKA_PASSWORD=\"{wrong}\"\n", broker.bootstrap()),
    );
    for args in [&["products", "list"][..], &["products", "load"]] {
        let mut full = vec!["--mode", "remote", "--connect-timeout", "5s"];
        full.extend_from_slice(args);
        let run = kart.run(&full);
        run.code(2);
        assert!(run.stderr.contains("authentication failed for user student"), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong), "the password was printed");
        assert!(run.elapsed < Duration::from_secs(30), "{args:?} took {:?}", run.elapsed);
    }
}
