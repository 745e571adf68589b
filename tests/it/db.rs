//! `kart db` against the test PostgreSQL, one database per test.

use std::time::Duration;

use crate::support::{closed_port, pg_port, redact, sql, Kart, TestDb};

/// The workshop's columns (workshop spec, appendix B): table, column, type.
const WORKSHOP_COLUMNS: &[(&str, &str, &str)] = &[
    ("products", "product_id", "varchar(50)"),
    ("products", "product_name", "varchar(255)"),
    ("products", "category", "varchar(100)"),
    ("products", "subcategory", "varchar(100)"),
    ("products", "brand", "varchar(100)"),
    ("products", "price", "numeric(10,2)"),
    ("products", "cost", "numeric(10,2)"),
    ("products", "description", "text"),
    ("products", "image_url", "varchar(500)"),
    ("products", "is_active", "boolean"),
    ("products", "created_at", "timestamp"),
    ("products", "updated_at", "timestamp"),
    ("customers", "customer_id", "varchar(50)"),
    ("customers", "email", "varchar(255)"),
    ("customers", "first_name", "varchar(100)"),
    ("customers", "last_name", "varchar(100)"),
    ("customers", "phone", "varchar(20)"),
    ("customers", "address_line1", "varchar(255)"),
    ("customers", "address_line2", "varchar(255)"),
    ("customers", "city", "varchar(100)"),
    ("customers", "state", "varchar(50)"),
    ("customers", "postal_code", "varchar(20)"),
    ("customers", "country", "varchar(50)"),
    ("customers", "registration_date", "timestamp"),
    ("customers", "last_login", "timestamp"),
    ("customers", "total_orders", "integer"),
    ("customers", "lifetime_value", "numeric(12,2)"),
    ("orders", "order_id", "varchar(50)"),
    ("orders", "customer_id", "varchar(50)"),
    ("orders", "order_date", "timestamp"),
    ("orders", "status", "varchar(50)"),
    ("orders", "subtotal", "numeric(10,2)"),
    ("orders", "tax", "numeric(10,2)"),
    ("orders", "shipping", "numeric(10,2)"),
    ("orders", "total", "numeric(10,2)"),
    ("orders", "payment_method", "varchar(50)"),
    ("orders", "shipping_address", "text"),
    ("orders", "tracking_number", "varchar(100)"),
    ("orders", "notes", "text"),
    ("order_items", "order_item_id", "bigint"),
    ("order_items", "order_id", "varchar(50)"),
    ("order_items", "product_id", "varchar(50)"),
    ("order_items", "quantity", "integer"),
    ("order_items", "unit_price", "numeric(10,2)"),
    ("order_items", "discount", "numeric(10,2)"),
    ("order_items", "line_total", "numeric(10,2)"),
    ("inventory", "inventory_id", "bigint"),
    ("inventory", "product_id", "varchar(50)"),
    ("inventory", "warehouse_location", "varchar(100)"),
    ("inventory", "quantity_on_hand", "integer"),
    ("inventory", "quantity_reserved", "integer"),
    ("inventory", "quantity_available", "integer"),
    ("inventory", "reorder_point", "integer"),
    ("inventory", "reorder_quantity", "integer"),
    ("inventory", "last_restock_date", "timestamp"),
    ("inventory", "last_updated", "timestamp"),
    ("product_views", "view_id", "integer"),
    ("product_views", "product_id", "varchar(50)"),
    ("product_views", "customer_id", "varchar(50)"),
    ("product_views", "session_id", "varchar(100)"),
    ("product_views", "view_timestamp", "timestamp"),
    ("product_views", "source", "varchar(50)"),
    ("product_views", "device_type", "varchar(50)"),
];

fn count(db: &str, query: &str) -> i64 {
    sql(db, query)[0].get::<_, i64>(0)
}

#[test]
fn up_init_teardown_down_are_rerunnable() {
    let db = TestDb::new();
    let kart = Kart::new().with_db(&db);

    let up = kart.run(&["-o", "json", "db", "up"]);
    up.ok();
    let report = up.json();
    assert_eq!(report["created"], true, "{}", up.stdout);
    assert_eq!(report["init"]["alreadyInitialised"], false);
    assert_eq!(count(&db.name, "SELECT count(*) FROM products"), 16);
    assert_eq!(count(&db.name, "SELECT count(*) FROM inventory"), 16);
    assert_eq!(count(&db.name, "SELECT count(*) FROM customers"), 5);
    assert_eq!(
        count(&db.name, "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'workshop_cdc'"),
        6,
        "the publication covers the six tables"
    );
    let prod1 = sql(&db.name, "SELECT quantity_on_hand FROM inventory WHERE product_id = 'PROD_0001'");
    assert_eq!(prod1[0].get::<_, Option<i32>>(0), Some(10));

    // init twice: exit 0, nothing to do.
    for _ in 0..2 {
        let again = kart.run(&["db", "init"]);
        again.ok();
        assert!(again.stdout.contains("already initialised"), "{}", again.stdout);
    }
    kart.run(&["db", "up"]).ok();

    // The workshop's trigger breaks every UPDATE of inventory; kart's works.
    sql(&db.name, "UPDATE inventory SET last_updated = TIMESTAMP '2000-01-01' WHERE product_id = 'PROD_0001'");
    sql(&db.name, "UPDATE inventory SET quantity_on_hand = quantity_on_hand - 1 WHERE product_id = 'PROD_0001'");
    let row = &sql(&db.name, "SELECT quantity_on_hand, quantity_available, last_updated > TIMESTAMP '2001-01-01' FROM inventory WHERE product_id = 'PROD_0001'")[0];
    assert_eq!((row.get::<_, Option<i32>>(0), row.get::<_, Option<i32>>(1), row.get::<_, bool>(2)), (Some(9), Some(9), true));
    sql(&db.name, "UPDATE products SET price = price WHERE product_id = 'PROD_0002'");

    // Destructive without --yes and without a terminal: refused, nothing changed.
    for args in [&["db", "teardown"][..], &["db", "down"][..], &["db", "clean-cdc"][..]] {
        let refused = kart.run(args);
        refused.code(1);
        assert!(refused.stderr.contains("--yes"), "{args:?}: {}", refused.stderr);
    }
    assert_eq!(count(&db.name, "SELECT count(*) FROM products"), 16);

    // teardown, then init restores.
    let teardown = kart.run(&["-o", "json", "--yes", "db", "teardown"]);
    teardown.ok();
    assert!(teardown.json()["dropped"].as_array().unwrap().len() >= 7, "{}", teardown.stdout);
    assert_eq!(count(&db.name, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"), 0);
    kart.run(&["--yes", "db", "teardown"]).ok();
    let init = kart.run(&["-o", "json", "db", "init"]);
    init.ok();
    assert_eq!(init.json()["init"]["alreadyInitialised"], false);
    assert_eq!(count(&db.name, "SELECT count(*) FROM products"), 16);

    // clean-cdc without a slot is a no-op.
    let clean = kart.run(&["-o", "json", "--yes", "db", "clean-cdc"]);
    clean.ok();
    assert_eq!(clean.json()["dropped"], false);

    // down drops; a second down is a no-op.
    let down = kart.run(&["-o", "json", "--yes", "db", "down"]);
    down.ok();
    assert_eq!(down.json()["dropped"], true);
    assert_eq!(count("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{}'", db.name)), 0);
    let again = kart.run(&["-o", "json", "--yes", "db", "down"]);
    again.ok();
    assert_eq!(again.json()["dropped"], false);
}

#[test]
fn columns_and_types_match_the_workshop() {
    let db = TestDb::new();
    Kart::new().with_db(&db).run(&["db", "up"]).ok();
    let rows = sql(
        &db.name,
        "SELECT table_name::text, column_name::text,
                CASE WHEN data_type = 'character varying' THEN 'varchar(' || character_maximum_length || ')'
                     WHEN data_type = 'numeric' THEN 'numeric(' || numeric_precision || ',' || numeric_scale || ')'
                     WHEN data_type = 'timestamp without time zone' THEN 'timestamp'
                     ELSE data_type END
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name IN ('products','customers','orders','order_items','inventory','product_views')",
    );
    let mut actual: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let mut expected: Vec<(String, String, String)> =
        WORKSHOP_COLUMNS.iter().map(|(t, c, ty)| (t.to_string(), c.to_string(), ty.to_string())).collect();
    actual.sort();
    expected.sort();
    assert_eq!(actual, expected);
    let generated = sql(&db.name, "SELECT is_generated::text FROM information_schema.columns WHERE table_name = 'inventory' AND column_name = 'quantity_available'");
    assert_eq!(generated[0].get::<_, String>(0), "ALWAYS");
}

#[test]
fn status_reports_tables_publication_slots_and_wal_level() {
    let db = TestDb::new();
    let slot = format!("{}_slot", db.name);
    let kart = Kart::new().with_db(&db).env("POSTGRES_REPLICATION_SLOT", slot.clone());

    // Before the database exists: status still answers.
    let missing = kart.run(&["-o", "json", "db", "status"]);
    missing.ok();
    assert_eq!(missing.json()["exists"], false);

    kart.run(&["db", "up"]).ok();
    sql(&db.name, &format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"));
    let run = kart.run(&["-o", "json", "db", "status"]);
    run.ok();
    let json = run.json();
    assert_eq!(json["walLevel"], "logical");
    assert_eq!(json["slots"][0]["name"], slot.as_str());
    assert_eq!(json["slots"][0]["configured"], true);
    let version = json["serverVersion"].as_str().unwrap().to_string();
    let lsn = json["slots"][0]["confirmedFlushLsn"].as_str().unwrap_or("").to_string();
    let wal = json["slots"][0]["retainedWalBytes"].to_string();
    let text = redact(
        &run.stdout,
        &[(&slot, "<slot>"), (&db.name, "<database>"), (&format!("127.0.0.1:{}", pg_port()), "<endpoint>"), (&version, "<version>"), (&lsn, "<lsn>"), (&format!("\"retainedWalBytes\":{wal}"), "\"retainedWalBytes\":\"<bytes>\"")],
    );
    let snapshot: serde_json::Value = serde_json::from_str(&text).unwrap();
    insta::assert_json_snapshot!("db-status-json", snapshot);

    let human = kart.run(&["db", "status"]);
    human.ok();
    assert!(human.stdout.contains("wal_level  logical") && human.stdout.contains("order_items"), "{}", human.stdout);

    // clean-cdc drops the slot, then has nothing to do.
    let clean = kart.run(&["-o", "json", "--yes", "db", "clean-cdc"]);
    clean.ok();
    assert_eq!(clean.json()["dropped"], true);
    assert_eq!(count("postgres", &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")), 0);
}

#[test]
fn an_unreachable_database_fails_at_the_connect_timeout() {
    let port = closed_port();
    let kart = Kart::new().env("POSTGRES_HOST", "127.0.0.1").env("POSTGRES_PORT", port.to_string());
    let run = kart.run(&["--connect-timeout", "2s", "db", "status"]);
    run.code(2);
    assert!(run.stderr.contains(&format!("127.0.0.1:{port}")) && run.stderr.contains("2s"), "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(30));

    // A host that never answers (a blackholed address would leave the
    // network; a listening socket that never accepts stays on loopback).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap().port();
    let kart = Kart::new().env("POSTGRES_HOST", "127.0.0.1").env("POSTGRES_PORT", silent.to_string()).env("PGSSLMODE", "disable");
    let run = kart.run(&["--connect-timeout", "2s", "db", "init"]);
    run.code(2);
    assert!(run.stderr.contains(&format!("127.0.0.1:{silent}")) && run.stderr.contains("within 2s"), "{}", run.stderr);
    assert!(run.elapsed >= Duration::from_millis(1500) && run.elapsed < Duration::from_secs(30), "took {:?}", run.elapsed);
    drop(listener);
}

#[test]
fn wrong_database_password_is_an_authentication_failure() {
    let db = TestDb::new();
    let kart = Kart::new().with_db(&db).env("POSTGRES_USER", "kart_scram").env("POSTGRES_PASSWORD", "wrong-Pa55");
    let run = kart.run(&["db", "status"]);
    run.code(2);
    assert!(run.stderr.contains("authentication failed for user kart_scram"), "{}", run.stderr);
    assert!(!run.stderr.contains("wrong-Pa55") && !run.stdout.contains("wrong-Pa55"));

    let ok = Kart::new().with_db(&db).env("POSTGRES_USER", "kart_scram").env("POSTGRES_PASSWORD", "kart-scram-secret");
    ok.run(&["db", "up"]).ok();
}

#[test]
fn a_multi_host_list_connects_to_the_writable_host() {
    let db = TestDb::new();
    // Nothing listens on 127.0.0.2 (the server binds 127.0.0.1 only): kart
    // moves on to the next host, as with a managed primary/replica pair.
    let kart = Kart::new().with_db(&db).env("POSTGRES_HOST", "127.0.0.2,127.0.0.1");
    kart.run(&["db", "up"]).ok();
    assert_eq!(count(&db.name, "SELECT count(*) FROM products"), 16);
}

#[test]
fn initial_products_file_seeds_the_database() {
    let db = TestDb::new();
    let kart = Kart::new().with_db(&db);
    let workshop = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peer/data/initial-products.json");
    assert!(std::path::Path::new(workshop).is_file(), "the workshop's catalog should sit in ../shared beside the repo");
    std::fs::copy(workshop, kart.dir().join("workshop.json")).unwrap();
    kart.write(".env.local", "export INITIAL_PRODUCTS_FILE=\"workshop.json\"\n");
    kart.run(&["db", "up"]).ok();
    let rows = sql(&db.name, "SELECT quantity_on_hand FROM inventory WHERE product_id = 'PROD_0029'");
    assert_eq!(rows[0].get::<_, Option<i32>>(0), Some(7));
}

#[test]
fn pgsslmode_is_honoured() {
    let db = TestDb::new();
    // The test server has no TLS: `require` must refuse to fall back.
    let run = Kart::new().with_db(&db).env("PGSSLMODE", "require").run(&["db", "status"]);
    run.code(2);
    assert!(run.stderr.contains("127.0.0.1"), "{}", run.stderr);
    // `prefer` falls back to plain text.
    Kart::new().with_db(&db).env("PGSSLMODE", "prefer").run(&["db", "status"]).ok();
    let bad = Kart::new().with_db(&db).env("PGSSLMODE", "sometimes").run(&["db", "status"]);
    bad.code(1);
    assert!(bad.stderr.contains("PGSSLMODE"), "{}", bad.stderr);
}
