//! The embedded inventory job against a real broker (a tansu of the test's
//! own): bootstrap, orders, rejections, the DLQ, duplicates, restocks,
//! supervision, and a crash test with SIGKILL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::streams::{job_pid, process_alive, read_all, values, wait_for, JobGuard, TestProducer};
use crate::support::{Broker, Kart};

const WAIT: Duration = Duration::from_secs(30);

const WORKSHOP_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peer/data/initial-products.json");

/// A project with topics created, its job not started yet.
fn project(broker: &Broker) -> Kart {
    let kart = Kart::new().with_broker(broker).env("KART_COMMIT_INTERVAL", "20ms");
    kart.run(&["topics", "create"]).ok();
    kart
}

fn deploy(kart: &Kart) -> Value {
    let run = kart.run(&["-o", "json", "job", "deploy", "inventory"]);
    run.ok();
    run.json()
}

fn events_of<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["eventType"] == event_type).collect()
}

fn outcome_of(broker: &Broker, order_id: &str) -> Value {
    wait_for(broker, "kart-order-outcomes", WAIT, |outcomes| {
        outcomes.iter().find(|o| o["orderId"] == order_id).cloned()
    })
}

#[test]
fn bootstrap_orders_rejections_dlq_duplicates_and_restock() {
    let broker = Broker::start();
    let kart = project(&broker);
    let _guard = JobGuard { kart: &kart };
    let deployed = deploy(&kart);
    assert_eq!(deployed["result"], "started", "{deployed}");

    // Bootstrap: the catalog on `products`, keyed by productId, with exactly
    // the workshop's 11 fields, and one PRODUCT_ADDED per product.
    let products = wait_for(&broker, "products", WAIT, |v| (v.len() >= 16).then(|| v.to_vec()));
    assert_eq!(products.len(), 16);
    let records = read_all(&broker, "products");
    assert_eq!(records[0].key.as_deref(), Some("PROD_0001"));
    let fields: Vec<&str> = products[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        ["productId", "name", "description", "price", "category", "brand", "imageUrl", "inventory", "tags", "rating", "reviewCount"]
    );
    let events = values(&broker, "inventory-events");
    assert_eq!(events_of(&events, "PRODUCT_ADDED").len(), 16);

    // An order deducts: INVENTORY_DECREASED with the workshop's 13 fields.
    let producer = TestProducer::new(&broker);
    producer.order("order-1", "PROD_0001", 3);
    let outcome = outcome_of(&broker, "order-1");
    assert_eq!(outcome["outcome"], "applied", "{outcome}");
    assert_eq!((outcome["previousInventory"].as_i64(), outcome["currentInventory"].as_i64()), (Some(10), Some(7)));
    let events = values(&broker, "inventory-events");
    let decreased = events_of(&events, "INVENTORY_DECREASED");
    assert_eq!(decreased.len(), 1);
    let event = decreased[0];
    let fields: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "productId", "productName", "eventType", "previousInventory", "currentInventory", "previousPrice", "currentPrice",
            "timestamp", "changeReason", "alertLevel", "inventoryChange", "priceChange", "critical"
        ]
    );
    assert_eq!(event["changeReason"], "Deducted 3 for order order-1");
    assert_eq!((event["previousInventory"].as_i64(), event["currentInventory"].as_i64()), (Some(10), Some(7)));
    let fanout = values(&broker, "websocket_fanout");
    assert!(fanout.iter().any(|f| f["eventType"] == "INVENTORY_UPDATE" && f["payload"] == *event), "websocket_fanout wraps the event");
    let alerts = values(&broker, "inventory-alerts");
    assert!(alerts.iter().any(|a| a["alertType"] == "LOW_STOCK" && a["productId"] == "PROD_0001"), "{alerts:?}");

    // More than the stock: rejected, nothing changes.
    producer.order("order-2", "PROD_0001", 50);
    let rejected = outcome_of(&broker, "order-2");
    assert_eq!(rejected["outcome"], "rejected", "{rejected}");
    assert_eq!((rejected["previousInventory"].as_i64(), rejected["currentInventory"].as_i64()), (Some(7), Some(7)));
    let events = values(&broker, "inventory-events");
    let rejection = events_of(&events, "ORDER_REJECTED");
    assert_eq!(rejection.len(), 1);
    assert_eq!(rejection[0]["changeReason"], "Insufficient inventory for order order-2: available 7, requested 50");
    assert_eq!(rejection[0]["inventoryChange"], 0);

    // An unknown product and a malformed message go to the DLQ with a
    // reason; later messages are still processed.
    producer.order("order-3", "PROD_9999", 1);
    producer.send("order-events", Some("PROD_0001"), b"{not json");
    producer.send("product-updates", None, br#"{"productId":"PROD_0003","inventory":-5}"#);
    producer.order("order-4", "PROD_0002", 1);
    assert_eq!(outcome_of(&broker, "order-4")["outcome"], "applied");
    assert_eq!(outcome_of(&broker, "order-3")["outcome"], "dlq");
    let dlq = values(&broker, "inventory-dlq");
    assert_eq!(dlq.len(), 3, "{dlq:#?}");
    let unknown = dlq.iter().find(|d| d["value"]["orderId"] == "order-3").expect("unknown product dead-lettered");
    assert_eq!(unknown["sourceTopic"], "order-events");
    assert!(unknown["error"].as_str().unwrap().contains("unknown product PROD_9999"), "{unknown}");
    let malformed = dlq.iter().find(|d| d["valueEncoding"] == "text").expect("malformed message dead-lettered");
    assert_eq!(malformed["value"], "{not json");
    assert_eq!(malformed["key"], "PROD_0001");
    let bad_product = dlq.iter().find(|d| d["sourceTopic"] == "product-updates").expect("bad product dead-lettered");
    assert!(!bad_product["error"].as_str().unwrap().is_empty());
    for entry in &dlq {
        let keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["sourceTopic", "partition", "offset", "key", "value", "valueEncoding", "error", "timestamp"]);
    }

    // The same order line twice deducts once.
    producer.order("order-5", "PROD_0005", 2);
    producer.order("order-5", "PROD_0005", 2);
    wait_for(&broker, "kart-order-outcomes", WAIT, |o| {
        (o.iter().filter(|o| o["orderId"] == "order-5").count() == 2).then_some(())
    });
    let outcomes: Vec<Value> = values(&broker, "kart-order-outcomes").into_iter().filter(|o| o["orderId"] == "order-5").collect();
    assert_eq!(outcomes[0]["outcome"], "applied");
    assert_eq!(outcomes[1]["outcome"], "duplicate");
    let events = values(&broker, "inventory-events");
    let deductions = events.iter().filter(|e| e["eventType"] == "INVENTORY_DECREASED" && e["productId"] == "PROD_0005").count();
    assert_eq!(deductions, 1);

    // A product-updates record restocks: BACK_IN_STOCK after an order empties it.
    producer.order("order-6", "PROD_0001", 7);
    assert_eq!(outcome_of(&broker, "order-6")["currentInventory"], 0);
    let mut restock = products[0].clone();
    restock["inventory"] = json!(10);
    producer.send("product-updates", None, restock.to_string().as_bytes());
    let back = wait_for(&broker, "inventory-events", WAIT, |e| e.iter().find(|e| e["eventType"] == "BACK_IN_STOCK").cloned());
    assert_eq!(back["changeReason"], "Product restocked with 10 units");
    assert_eq!((back["previousInventory"].as_i64(), back["currentInventory"].as_i64()), (Some(0), Some(10)));

    // `job status` counts what was sent: 8 order messages, 2 product updates.
    let status = wait_status(&kart, |s| s["recordsIn"]["order-events"] == 8 && s["recordsIn"]["product-updates"] == 2);
    assert_eq!(status["state"], "running");
    assert_eq!(status["applied"], 4, "{status}");
    assert_eq!(status["rejected"], 1, "{status}");
    assert_eq!(status["duplicates"], 1, "{status}");
    assert_eq!(status["dlq"], 3, "{status}");
    assert_eq!(status["products"], 16, "{status}");
    assert!(status["lastCommitAt"].as_i64().is_some(), "{status}");
    insta::assert_json_snapshot!("job-status-json-shape", shape(&status));
    let text = kart.run(&["job", "status", "inventory"]);
    text.ok();
    assert!(text.stdout.contains("applied 4, rejected 1, duplicates 1; dlq 3"), "{}", text.stdout);
}

/// The schema of a JSON value: numbers and free text replaced by their type,
/// so a snapshot pins field names and types, not values.
fn shape(value: &Value) -> Value {
    match value {
        Value::Number(_) => json!("<number>"),
        Value::String(s) if matches!(s.as_str(), "running" | "embedded" | "inventory") => value.clone(),
        Value::String(_) => json!("<string>"),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        // Lag arrives with librdkafka's statistics, once a second: its keys may not be there yet.
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| (k.clone(), if k == "lag" { json!("<map>") } else { shape(v) })).collect(),
        ),
        other => other.clone(),
    }
}

/// Polls `job status -o json` until `ready` holds.
#[track_caller]
fn wait_status(kart: &Kart, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let run = kart.run(&["-o", "json", "job", "status", "inventory"]);
        run.ok();
        let status = run.json();
        if ready(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "job status never matched: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_workshops_bootstrap_file_works_unchanged() {
    let broker = Broker::start();
    let kart = project(&broker).env("INITIAL_PRODUCTS_FILE", WORKSHOP_CATALOG);
    let _guard = JobGuard { kart: &kart };
    deploy(&kart);
    let events = wait_for(&broker, "inventory-events", WAIT, |e| (e.len() >= 16).then(|| e.to_vec()));
    let added: Vec<&str> = events_of(&events, "PRODUCT_ADDED").iter().map(|e| e["productId"].as_str().unwrap()).collect();
    assert_eq!(added.len(), 16);
    assert!(added.contains(&"PROD_0029"), "{added:?}");
    // The workshop's trace (workshop spec §2.13): LOW_STOCK for PROD_0003 (8) and PROD_0029 (7).
    let alerts = wait_for(&broker, "inventory-alerts", WAIT, |a| (a.len() >= 2).then(|| a.to_vec()));
    let low: HashSet<&str> = alerts.iter().filter(|a| a["alertType"] == "LOW_STOCK").map(|a| a["productId"].as_str().unwrap()).collect();
    assert_eq!(low, HashSet::from(["PROD_0003", "PROD_0029"]));
}

#[test]
fn deploy_twice_runs_one_process_and_stop_leaves_none() {
    let broker = Broker::start();
    let kart = project(&broker);
    let _guard = JobGuard { kart: &kart };
    let first = deploy(&kart);
    let pid = first["pid"].as_u64().unwrap() as u32;
    assert!(process_alive(pid));

    let second = deploy(&kart);
    assert_eq!(second["result"], "already-running", "{second}");
    assert_eq!(second["pid"], first["pid"]);
    let text = kart.run(&["job", "deploy", "inventory"]);
    text.ok();
    assert!(text.stdout.contains("already running"), "{}", text.stdout);

    // A changed setting is reported with the way to apply it; nothing restarts.
    let changed = kart.command(&["job", "deploy", "inventory"]).env("KART_LOW_STOCK_THRESHOLD", "5").output().unwrap();
    assert_eq!(changed.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(stderr.contains("settings changed") && stderr.contains("--replace"), "{stderr}");
    assert_eq!(job_pid(&kart), pid);

    let list = kart.run(&["-o", "json", "job", "list"]);
    list.ok();
    let jobs = list.json();
    let running: Vec<&Value> = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["state"] == "running").collect();
    assert_eq!(running.len(), 1, "{jobs}");
    assert_eq!(running[0]["name"], "inventory");

    // --replace restarts it: a new process, the old one gone.
    let replaced = kart.run(&["-o", "json", "job", "deploy", "inventory", "--replace"]);
    replaced.ok();
    let new_pid = replaced.json()["pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, pid);
    assert!(!process_alive(pid), "the replaced process is gone");

    let logs = kart.run(&["job", "logs", "inventory"]);
    logs.ok();
    assert!(logs.stdout.contains("Bootstrap") && logs.stdout.contains("Running"), "{}", logs.stdout);

    let stop = kart.run(&["-o", "json", "job", "stop", "inventory"]);
    stop.ok();
    assert_eq!(stop.json()["result"], "stopped");
    assert!(!process_alive(new_pid), "job stop leaves no process");
    let status = kart.run(&["-o", "json", "job", "status", "inventory"]);
    status.ok();
    assert_eq!(status.json()["state"], "stopped");
    let again = kart.run(&["job", "stop", "inventory"]);
    again.ok();
    assert!(again.stdout.contains("not running"), "{}", again.stdout);
}

#[test]
fn a_restart_resumes_from_committed_state_and_applies_orders_sent_meanwhile() {
    let broker = Broker::start();
    let kart = project(&broker);
    let _guard = JobGuard { kart: &kart };
    deploy(&kart);
    let producer = TestProducer::new(&broker);
    producer.order("before", "PROD_0001", 2);
    assert_eq!(outcome_of(&broker, "before")["currentInventory"], 8);
    kart.run(&["job", "stop", "inventory"]).ok();

    // Sent while the job is down, and a replay of an applied line.
    producer.order("while-down", "PROD_0001", 3);
    producer.order("before", "PROD_0001", 2);
    deploy(&kart);
    assert_eq!(outcome_of(&broker, "while-down")["currentInventory"], 5);
    let outcomes = wait_for(&broker, "kart-order-outcomes", WAIT, |o| {
        let before: Vec<Value> = o.iter().filter(|o| o["orderId"] == "before").cloned().collect();
        (before.len() == 2).then_some(before)
    });
    assert_eq!(outcomes[1]["outcome"], "duplicate", "a replay after restart deducts nothing");
    // Bootstrap ran once per state: still 16 PRODUCT_ADDED, not 32.
    let events = values(&broker, "inventory-events");
    assert_eq!(events_of(&events, "PRODUCT_ADDED").len(), 16);

    // --fresh: empty state, the catalog again, inputs from their current end.
    let fresh = kart.run(&["--yes", "-o", "json", "job", "deploy", "inventory", "--fresh", "--replace"]);
    fresh.ok();
    let events = wait_for(&broker, "inventory-events", WAIT, |e| (events_of(e, "PRODUCT_ADDED").len() == 32).then(|| e.to_vec()));
    let last = events.iter().rev().find(|e| e["productId"] == "PROD_0001").unwrap();
    assert_eq!(last["currentInventory"], 10, "the fresh state starts from the catalog");
    let refused = kart.run(&["job", "deploy", "inventory", "--fresh"]);
    refused.code(1);
    assert!(refused.stderr.contains("--replace"), "{}", refused.stderr);
}

/// Orders stream in while the job is killed with SIGKILL at random moments
/// and restarted; afterwards every product's stock matches the orders sent
/// and a read_committed reader saw each deduction exactly once.
#[test]
fn crash_test_sigkill_ten_times_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    // Plenty of stock so every order line applies and the expected stock is
    // simply the start minus the orders.
    let catalog: Vec<Value> = (1..=8)
        .map(|n| {
            json!({"productId": format!("PROD_{n:04}"), "name": format!("Product {n}"), "description": "d", "price": 10.0,
                   "category": "Test", "brand": null, "imageUrl": "", "inventory": 100000, "tags": [], "rating": 4.0, "reviewCount": 1})
        })
        .collect();
    let kart = project(&broker);
    let catalog_path = kart.write("catalog.json", &Value::Array(catalog).to_string());
    let kart = kart.env("INITIAL_PRODUCTS_FILE", catalog_path.display().to_string());
    let _guard = JobGuard { kart: &kart };
    deploy(&kart);

    let sender_broker = broker.bootstrap();
    let stop_sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop_sending.clone();
    let sender = std::thread::spawn(move || {
        let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &sender_broker)
            .set("linger.ms", "0")
            .create()
            .unwrap();
        let mut sent: Vec<(String, String, i64)> = Vec::new();
        let mut n = 0u64;
        while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let product = format!("PROD_{:04}", n % 8 + 1);
            let quantity = (n % 3 + 1) as i64;
            let order = format!("crash-{n}");
            let value = json!({"orderId": order, "productId": product, "quantity": quantity, "timestamp": 0}).to_string();
            use rdkafka::producer::Producer;
            producer
                .send(rdkafka::producer::BaseRecord::to("order-events").key(&product).payload(&value))
                .map_err(|(e, _)| e)
                .unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
            sent.push((order, product, quantity));
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    });

    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..10 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(100 + rng % 400));
        let pid = job_pid(&kart);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) {
            assert!(Instant::now() < deadline, "round {round}: pid {pid} survived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Orders keep coming while the job is down.
        std::thread::sleep(Duration::from_millis(rng % 200));
        let redeployed = deploy(&kart);
        assert_eq!(redeployed["result"], "started", "round {round}: {redeployed}");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop_sending.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(sent.len() > 100, "only {} orders were sent", sent.len());

    // Every order line's outcome arrives, and each was applied exactly once.
    let last = sent.last().unwrap().0.clone();
    outcome_of(&broker, &last);
    let events = values(&broker, "inventory-events");
    let mut deductions: HashMap<String, usize> = HashMap::new();
    for event in events_of(&events, "INVENTORY_DECREASED") {
        let reason = event["changeReason"].as_str().unwrap();
        let order = reason.rsplit(' ').next().unwrap().to_string();
        *deductions.entry(order).or_default() += 1;
    }
    let mut expected: BTreeMap<String, i64> = (1..=8).map(|n| (format!("PROD_{n:04}"), 100000)).collect();
    for (order, product, quantity) in &sent {
        assert_eq!(deductions.get(order), Some(&1), "order {order} deducted {:?} times", deductions.get(order));
        *expected.get_mut(product).unwrap() -= quantity;
    }
    assert_eq!(deductions.len(), sent.len(), "no deduction for an order that was never sent");
    let mut actual: BTreeMap<String, i64> = BTreeMap::new();
    for event in &events {
        actual.insert(event["productId"].as_str().unwrap().to_string(), event["currentInventory"].as_i64().unwrap());
    }
    assert_eq!(actual, expected);
}

/// `job list -o json` and `job status -o json` follow the documented schema
/// (README, "kart job").
#[test]
fn job_list_and_status_json_schema() {
    let kart = Kart::new();
    let list = kart.run(&["-o", "json", "job", "list"]);
    list.ok();
    let dir = kart.dir().display().to_string();
    insta::assert_snapshot!("job-list-json", crate::support::redact(&list.stdout, &[(&dir, "[project]")]));
    let status = kart.run(&["-o", "json", "job", "status", "inventory"]);
    status.ok();
    assert_eq!(status.json()["state"], "not-deployed");
    let unknown = kart.run(&["job", "status", "nope"]);
    unknown.code(1);
    assert!(unknown.stderr.contains("no job named"), "{}", unknown.stderr);
    let stop = kart.run(&["job", "stop", "inventory"]);
    stop.ok();
    assert!(stop.stdout.contains("not running"), "{}", stop.stdout);
    let logs = kart.run(&["job", "logs", "inventory"]);
    logs.code(1);
    assert!(logs.stderr.contains("kart job deploy inventory"), "{}", logs.stderr);
}

/// A job that cannot start says why in the user's terminal, not only in a
/// background log.
#[test]
fn a_job_that_cannot_reach_kafka_fails_at_deploy_with_the_reason() {
    let kart = Kart::new().env("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", crate::support::closed_port()));
    let run = kart.run(&["--connect-timeout", "1s", "job", "deploy", "inventory"]);
    run.code(2);
    assert!(run.stderr.contains("cannot reach Kafka at 127.0.0.1:1"), "{}", run.stderr);
    let status = kart.run(&["-o", "json", "job", "status", "inventory"]);
    assert_eq!(status.json()["state"], "failed");
    // A bad setting fails before anything starts.
    let bad = Kart::new().env("KART_ON_INSUFFICIENT", "sometimes");
    let run = bad.run(&["job", "deploy", "inventory"]);
    run.code(1);
    assert!(run.stderr.contains("KART_ON_INSUFFICIENT"), "{}", run.stderr);
}

/// A run that died after writing a batch record but before all of its
/// outputs: the next start writes exactly the missing ones, restores the
/// batch's state and resumes from its input positions.
#[test]
fn a_batch_cut_short_by_a_crash_is_completed_once() {
    let broker = Broker::start();
    let kart = project(&broker);
    let _guard = JobGuard { kart: &kart };
    let producer = TestProducer::new(&broker);
    // An order the dead run had already consumed (its position says so) and
    // one it had not.
    producer.order("consumed-before-the-crash", "PROD_0001", 1);
    let product = json!({"productId": "PROD_0001", "name": "Only product", "description": "", "price": 5.0, "category": "Test",
        "brand": null, "imageUrl": "", "inventory": 4, "tags": [], "rating": 0.0, "reviewCount": 0});
    let batch = json!({
        "seq": 41,
        "committedAt": 1,
        "positions": {"order-events/0": 1, "product-updates/0": 0},
        "state": [{"key": "PROD_0001", "value": {"product": product, "lastUpdate": 1, "staleDeadline": null}}],
        "outputs": [
            {"topic": "inventory-alerts", "key": "PROD_0001", "value": {"marker": "first"}},
            {"topic": "inventory-alerts", "key": "PROD_0001", "value": {"marker": "second"}},
            {"topic": "kart-order-outcomes", "key": "x", "value": {"marker": "third"}}
        ]
    });
    producer.send("kart-inventory-state", Some("kart:batch"), batch.to_string().as_bytes());
    // The dead run got its first output out, and nothing else.
    producer.send_with_headers("inventory-alerts", "PROD_0001", br#"{"marker":"first"}"#, &[("kart-batch", "41"), ("kart-index", "0")]);
    producer.order("after-the-crash", "PROD_0001", 3);

    deploy(&kart);
    let outcome = outcome_of(&broker, "after-the-crash");
    assert_eq!((outcome["previousInventory"].as_i64(), outcome["currentInventory"].as_i64()), (Some(4), Some(1)), "state from the batch record");
    let markers = |topic: &str| -> Vec<String> {
        values(&broker, topic).iter().filter_map(|v| v["marker"].as_str().map(str::to_string)).collect()
    };
    assert_eq!(markers("inventory-alerts"), ["first", "second"]);
    assert_eq!(markers("kart-order-outcomes"), ["third"]);
    assert!(values(&broker, "kart-order-outcomes").iter().all(|o| o["orderId"] != "consumed-before-the-crash"), "resumed from the batch's position");
    assert_eq!(values(&broker, "products").len(), 0, "a state with a batch record is not bootstrapped again");

    // Restarting again re-sends nothing.
    kart.run(&["job", "deploy", "inventory", "--replace"]).ok();
    producer.order("after-the-restart", "PROD_0001", 1);
    assert_eq!(outcome_of(&broker, "after-the-restart")["currentInventory"], 0);
    assert_eq!(markers("inventory-alerts"), ["first", "second"]);
    let log = std::fs::read_to_string(kart.dir().join(".kart/logs/inventory.log")).unwrap();
    assert!(log.contains("batch 41 of the last run: 2 of its 3 outputs were not written"), "{log}");
}

/// `--foreground` runs attached; Ctrl-C (SIGINT) finishes the batch in
/// flight, records the stop and exits 130.
#[test]
fn foreground_stops_gracefully_on_ctrl_c() {
    let broker = Broker::start();
    let kart = project(&broker);
    let _guard = JobGuard { kart: &kart };
    let child = kart
        .command(&["job", "deploy", "inventory", "--foreground"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_status(&kart, |s| s["state"] == "running");
    let again = kart.run(&["-o", "json", "job", "deploy", "inventory"]);
    again.ok();
    assert_eq!(again.json()["result"], "already-running", "a foreground job counts as running");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("Stopping") && stderr.contains("Stopped"), "{stderr}");
    let status = kart.run(&["-o", "json", "job", "status", "inventory"]);
    assert_eq!(status.json()["state"], "stopped");
    let logs = kart.run(&["job", "logs", "inventory"]);
    logs.code(1);
}
