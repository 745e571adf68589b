//! `kart job deploy order-cdc` end to end: orders placed with `--cdc` reach
//! `order-events` through the database's write-ahead log, both paths
//! together deduct once, and SIGKILLs lose nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::streams::{process_alive, read_all, values, wait_for};
use crate::support::{sql, Broker, Kart, TestDb};

const WAIT: Duration = Duration::from_secs(30);

/// Stops both embedded jobs when the test ends, pass or fail.
struct Jobs<'a>(&'a Kart);

impl Drop for Jobs<'_> {
    fn drop(&mut self) {
        for job in ["order-cdc", "inventory"] {
            let _ = self.0.command(&["job", "stop", job, "--timeout", "3s"]).output();
        }
    }
}

fn project(broker: &Broker, db: &TestDb) -> Kart {
    let kart = Kart::new()
        .with_broker(broker)
        .with_db(db)
        .env("POSTGRES_REPLICATION_SLOT", format!("{}_slot", db.name));
    kart.run(&["topics", "create"]).ok();
    kart.run(&["db", "up"]).ok();
    kart
}

fn cdc_pid(kart: &Kart) -> u32 {
    let record: Value = serde_json::from_slice(&std::fs::read(kart.dir().join(".kart/jobs/order-cdc.json")).expect("job record")).unwrap();
    record["pid"].as_u64().unwrap() as u32
}

fn slot_row(db: &TestDb) -> (bool, String, String) {
    let rows = sql(
        &db.name,
        &format!(
            "SELECT active, confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = '{}_slot'",
            db.name
        ),
    );
    let row = rows.first().expect("the slot exists");
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn a_cdc_order_reaches_order_events_in_the_workshops_format_and_both_paths_deduct_once() {
    let broker = Broker::start();
    let db = TestDb::new();
    // Several hosts: the job connects to the first that accepts a
    // read-write session (127.0.0.2 refuses: the server listens on
    // 127.0.0.1 only).
    let kart = project(&broker, &db).env("POSTGRES_HOST", "127.0.0.2,127.0.0.1");
    let _jobs = Jobs(&kart);
    let deployed = kart.run(&["-o", "json", "job", "deploy", "order-cdc"]);
    deployed.ok();
    assert_eq!(deployed.json()["result"], "started");

    let placed = kart.run(&["-o", "json", "order", "place", "--item", "PROD_0003:2", "--item", "PROD_0004:1", "--cdc"]);
    placed.ok();
    let order_id = placed.json()["order"]["orderId"].as_str().unwrap().to_string();
    let events = wait_for(&broker, "order-events", WAIT, |v| (v.len() >= 2).then(|| v.to_vec()));
    assert_eq!(events.len(), 2, "{events:?}");
    let fields: Vec<&str> = events[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["quantity", "productId", "orderId", "timestamp"], "the workshop CDC job's field order");
    assert_eq!((events[0]["productId"].as_str(), events[0]["quantity"].as_i64()), (Some("PROD_0003"), Some(2)));
    assert_eq!(events[0]["orderId"], order_id.as_str());
    let records = read_all(&broker, "order-events");
    assert_eq!(records[0].key.as_deref(), Some("PROD_0003"), "keyed by productId");
    let committed_at = sql(&db.name, &format!("SELECT (extract(epoch FROM order_date) * 1000)::bigint FROM orders WHERE order_id = '{order_id}'"))[0]
        .get::<_, i64>(0);
    let stamp = events[0]["timestamp"].as_i64().unwrap();
    assert!((stamp - committed_at).abs() < 5_000, "stamped with the commit time: {stamp} vs {committed_at}");

    // Both paths at once: the direct publish and the CDC job carry the same
    // lines; the inventory job deducts each once.
    kart.run(&["job", "deploy", "inventory"]).ok();
    let both = kart.run(&["order", "place", "--product", "PROD_0005", "--quantity", "2", "--wait"]);
    both.ok();
    let both_id = both.stderr.split("order ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    let outcomes = wait_for(&broker, "kart-order-outcomes", WAIT, |o| {
        let mine: Vec<Value> = o.iter().filter(|x| x["orderId"] == both_id.as_str()).cloned().collect();
        (mine.len() == 2).then_some(mine)
    });
    let kinds: Vec<&str> = outcomes.iter().map(|o| o["outcome"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["applied", "duplicate"], "one deduction for two copies");

    // The slot's confirmed position catches up with the last commit.
    wait_slot_caught_up(&db);

    // A second job on the same slot fails with a clear message.
    let other = Kart::new()
        .with_broker(&broker)
        .with_db(&db)
        .env("POSTGRES_REPLICATION_SLOT", format!("{}_slot", db.name));
    let second = other.run(&["--connect-timeout", "3s", "job", "deploy", "order-cdc"]);
    assert_ne!(second.code, 0, "{}\n{}\nfirst: {}", second.stdout, second.stderr, kart.run(&["job", "status", "order-cdc"]).stdout);
    assert!(second.stderr.contains("slot") && second.stderr.contains("in use"), "{}", second.stderr);

    // clean-cdc refuses while the job holds the slot, removes it once stopped.
    let refused = kart.run(&["--yes", "db", "clean-cdc"]);
    refused.code(1);
    assert!(refused.stderr.contains("kart job stop order-cdc"), "{}", refused.stderr);
    kart.run(&["job", "stop", "order-cdc"]).ok();
    kart.run(&["--yes", "db", "clean-cdc"]).ok();
    assert!(sql(&db.name, &format!("SELECT 1 FROM pg_replication_slots WHERE slot_name = '{}_slot'", db.name)).is_empty());
}

/// Waits until the slot's confirmed position reaches the WAL position of
/// now, i.e. past the last order's commit: no WAL is held back.
fn wait_slot_caught_up(db: &TestDb) {
    let (_, _, last_commit) = slot_row(db);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, confirmed, current) = slot_row(db);
        if lsn(&confirmed) >= lsn(&last_commit) {
            return;
        }
        assert!(Instant::now() < deadline, "slot confirmed at {confirmed}, last commit at {last_commit}, WAL now at {current}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lsn(text: &str) -> u64 {
    let (high, low) = text.split_once('/').unwrap();
    (u64::from_str_radix(high, 16).unwrap() << 32) | u64::from_str_radix(low, 16).unwrap()
}

/// The CDC job is killed with SIGKILL five times while orders are placed;
/// every row reaches `order-events`, each line is applied once, and the
/// slot ends at the last commit.
#[test]
fn cdc_crash_test_sigkill_five_times_loses_nothing() {
    let broker = Broker::start();
    let db = TestDb::new();
    let kart = project(&broker, &db);
    let catalog = values_catalog();
    let path = kart.write("catalog.json", &catalog.to_string());
    let kart = kart.env("INITIAL_PRODUCTS_FILE", path.display().to_string());
    let _jobs = Jobs(&kart);
    kart.run(&["job", "deploy", "inventory"]).ok();
    kart.run(&["job", "deploy", "order-cdc"]).ok();

    let mut placed = Vec::new();
    for round in 0..5 {
        for _ in 0..6 {
            let run = kart.run(&["-o", "json", "order", "place", "--item", "PROD_0001:1", "--item", "PROD_0002:2", "--cdc"]);
            run.ok();
            placed.push(run.json()["order"]["orderId"].as_str().unwrap().to_string());
        }
        let pid = cdc_pid(&kart);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) {
            assert!(Instant::now() < deadline, "round {round}: pid {pid} survived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Orders placed while the job is down wait in the slot.
        let run = kart.run(&["-o", "json", "order", "place", "--item", "PROD_0001:1", "--cdc"]);
        run.ok();
        placed.push(run.json()["order"]["orderId"].as_str().unwrap().to_string());
        kart.run(&["job", "deploy", "order-cdc"]).ok();
    }

    // Every row reached order-events at least once…
    let events = wait_for(&broker, "order-events", Duration::from_secs(60), |v| {
        let orders: std::collections::HashSet<&str> = v.iter().filter_map(|e| e["orderId"].as_str()).collect();
        placed.iter().all(|o| orders.contains(o.as_str())).then(|| v.to_vec())
    });
    let rows = sql(&db.name, "SELECT count(*) FROM order_items")[0].get::<_, i64>(0);
    let distinct: std::collections::HashSet<(String, String)> =
        events.iter().map(|e| (e["orderId"].as_str().unwrap().to_string(), e["productId"].as_str().unwrap().to_string())).collect();
    assert_eq!(distinct.len() as i64, rows, "every order_items row became an event");
    // …and each line was applied exactly once.
    let outcomes = wait_for(&broker, "kart-order-outcomes", Duration::from_secs(60), |o| {
        let applied: Vec<&Value> = o.iter().filter(|x| x["outcome"] == "applied").collect();
        (applied.len() as i64 >= rows).then(|| o.to_vec())
    });
    let mut applied: HashMap<(String, String), usize> = HashMap::new();
    for outcome in outcomes.iter().filter(|o| o["outcome"] == "applied") {
        *applied.entry((outcome["orderId"].as_str().unwrap().into(), outcome["productId"].as_str().unwrap().into())).or_default() += 1;
    }
    assert_eq!(applied.len() as i64, rows);
    assert!(applied.values().all(|n| *n == 1), "a line applied twice: {applied:?}");
    let stock = values(&broker, "inventory-events");
    let last = stock.iter().rev().find(|e| e["productId"] == "PROD_0001").unwrap();
    assert_eq!(last["currentInventory"], 1000 - 35, "30 + 5 orders of one PROD_0001 each");

    // The slot ends at the last commit: nothing left to replay.
    wait_slot_caught_up(&db);
}

fn values_catalog() -> Value {
    let products: Vec<Value> = (1..=16)
        .map(|n| {
            serde_json::json!({"productId": format!("PROD_{n:04}"), "name": format!("Product {n}"), "description": "", "price": 10.0,
                "category": "Test", "brand": null, "imageUrl": "", "inventory": 1000, "tags": [], "rating": 4.0, "reviewCount": 1})
        })
        .collect();
    Value::Array(products)
}
