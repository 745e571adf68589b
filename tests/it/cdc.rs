//! The CDC job against a real broker (a tansu of the test's own) and a
//! database of the test's own on the test PostgreSQL: `order_items` inserts
//! reach `order-events` in the workshop's CDC format, the slot is confirmed
//! only after Kafka acknowledged, restarts replay nothing confirmed, a
//! crash replays but loses nothing, and misconfigurations are clear errors.
//!
//! `kart job deploy order-cdc` is not wired yet, so the tests drive
//! `kart::jobs::cdc::CdcDriver` directly, each on a thread and runtime of
//! its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kart::config::{Mode, ResolveInputs, Settings};
use kart::exit::KartError;
use kart::jobs::cdc::{CdcDriver, CdcSettings};
use kart::jobs::status::{JobState, JobStatus};
use kart::printer::{OutputFormat, Printer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio_postgres::Client;

use crate::streams::{read_all, Record};
use crate::support::{closed_port, pg_port, Broker, Kart, TestDb, HOW_TO_START};

const WAIT: Duration = Duration::from_secs(30);

/// A broker and a database with kart's schema, topics created, and a slot
/// name of the test's own.
struct Setup {
    broker: Broker,
    db: TestDb,
    _kart: Kart,
    slot: String,
}

impl Setup {
    fn new() -> Setup {
        let broker = Broker::start();
        let db = TestDb::new();
        let kart = Kart::new().with_broker(&broker).with_db(&db);
        kart.run(&["db", "up"]).ok();
        kart.run(&["topics", "create"]).ok();
        let slot = format!("{}_cdc", db.name);
        Setup { broker, db, _kart: kart, slot }
    }

    fn env(&self, bootstrap: &str) -> HashMap<String, String> {
        HashMap::from([
            ("KAFKA_BOOTSTRAP_SERVERS".to_string(), bootstrap.to_string()),
            ("POSTGRES_HOST".into(), "127.0.0.1".into()),
            ("POSTGRES_PORT".into(), pg_port().to_string()),
            ("POSTGRES_USER".into(), "postgres".into()),
            ("POSTGRES_PASSWORD".into(), "postgres".into()),
            ("POSTGRES_DB".into(), self.db.name.clone()),
            ("PGSSLMODE".into(), "disable".into()),
            ("POSTGRES_REPLICATION_SLOT".into(), self.slot.clone()),
        ])
    }

    fn settings(&self) -> CdcSettings {
        settings_from(Mode::Local, self.env(&self.broker.bootstrap()), Duration::from_secs(10)).expect("CDC settings")
    }

    fn start(&self) -> Job {
        Job::start(self.settings())
    }

    /// Starts a driver, retrying while the previous (killed) one's database
    /// session still holds the slot's lock.
    fn start_after_crash(&self) -> Job {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut job = self.start();
            match job.wait_running() {
                Ok(()) => return job,
                Err(e) if e.code == "slot-in-use" && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("the CDC job did not start: {} ({:?})", e.message, e.hint),
            }
        }
    }

    fn pg(&self) -> Pg {
        Pg::connect(&self.db.name)
    }

    fn order_events(&self) -> Vec<Record> {
        read_all(&self.broker, "order-events")
    }

    /// Waits until `order-events` holds at least `count` records.
    #[track_caller]
    fn wait_for_events(&self, count: usize) -> Vec<Record> {
        let deadline = Instant::now() + WAIT;
        loop {
            let records = self.order_events();
            if records.len() >= count {
                return records;
            }
            assert!(Instant::now() < deadline, "order-events holds {} records after {WAIT:?}, expected {count}", records.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn settings_from(mode: Mode, env: HashMap<String, String>, connect_timeout: Duration) -> Result<CdcSettings, KartError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings::resolve(&ResolveInputs {
        mode,
        project_dir: dir.path().to_path_buf(),
        env_files: vec![],
        process_env: env,
        flags: vec![],
    })?;
    CdcSettings::from_settings(&settings, connect_timeout)
}

/// A driver on a thread and runtime of its own. `stop` asks it to finish
/// gracefully; `kill` drops it wherever it is (no graceful anything), like
/// a crash: the runtime goes, and with it the database session.
struct Job {
    stop: Arc<AtomicBool>,
    kill: Arc<AtomicBool>,
    status: Arc<Mutex<JobStatus>>,
    thread: Option<JoinHandle<Option<Result<(), KartError>>>>,
}

impl Job {
    fn start(settings: CdcSettings) -> Job {
        let stop = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(JobStatus { name: "order-cdc".into(), ..JobStatus::default() }));
        let driver = CdcDriver::new(settings, Printer::plain(OutputFormat::Text), status.clone(), stop.clone());
        let killed = kill.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                tokio::select! {
                    result = driver.run() => Some(result),
                    _ = async { while !killed.load(Ordering::Relaxed) { tokio::time::sleep(Duration::from_millis(1)).await } } => None,
                }
            })
        });
        Job { stop, kill, status, thread: Some(thread) }
    }

    fn state(&self) -> JobStatus {
        self.status.lock().unwrap().clone()
    }

    /// Waits until the driver runs, or returns how it failed.
    fn wait_running(&mut self) -> Result<(), KartError> {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.state().state == JobState::Running {
                return Ok(());
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                return Err(self.failure_now());
            }
            assert!(Instant::now() < deadline, "the CDC job did not start within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs until it fails on its own; returns the error.
    fn failure(mut self) -> KartError {
        self.failure_now()
    }

    fn failure_now(&mut self) -> KartError {
        match self.thread.take().expect("running").join().expect("driver thread") {
            Some(Err(error)) => error,
            other => panic!("expected the CDC job to fail, got {other:?}"),
        }
    }

    /// Graceful stop: returns the driver's result.
    fn stop(mut self) -> Result<(), KartError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("driver thread").expect("not killed")
    }

    fn kill(mut self) {
        self.kill.store(true, Ordering::Relaxed);
        let _ = self.thread.take().unwrap().join();
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A superuser session on the test's database.
struct Pg {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Pg {
    fn connect(database: &str) -> Pg {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = runtime.block_on(async {
            let conn = format!("host=127.0.0.1 port={} user=postgres password=postgres dbname={database}", pg_port());
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("test PostgreSQL not reachable ({e}); {HOW_TO_START}"));
            tokio::spawn(connection);
            client
        });
        Pg { runtime, client }
    }

    fn execute(&self, sql: &str) {
        self.runtime.block_on(self.client.batch_execute(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn text(&self, sql: &str) -> Option<String> {
        self.runtime.block_on(self.client.query_one(sql, &[])).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    /// One order as the workshop's checkout writes it: `orders` and its
    /// `order_items` in one transaction, durable at commit (the test server
    /// runs with synchronous_commit=off). Returns the wall clock around it.
    fn place(&self, order_id: &str, lines: &[(&str, i64)]) -> (i64, i64) {
        self.place_with(order_id, lines, "")
    }

    fn place_with(&self, order_id: &str, lines: &[(&str, i64)], before_commit: &str) -> (i64, i64) {
        let mut sql = format!(
            "BEGIN; SET LOCAL synchronous_commit = on;
             INSERT INTO orders (order_id, customer_id, status, subtotal, tax, shipping, total)
             VALUES ('{order_id}', 'guest', 'CONFIRMED', 10.00, 0.80, 5.99, 16.79);"
        );
        for (product, quantity) in lines {
            sql.push_str(&format!(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price, line_total)
                 VALUES ('{order_id}', '{product}', {quantity}, 5.00, {quantity} * 5.00);"
            ));
        }
        sql.push_str(before_commit);
        sql.push_str("COMMIT;");
        let before = now_ms();
        self.execute(&sql);
        (before, now_ms())
    }

    /// The WAL position now: every transaction committed so far ends at or
    /// before it.
    fn wal_lsn(&self) -> String {
        self.text("SELECT pg_current_wal_lsn()::text").unwrap()
    }

    fn confirmed(&self, slot: &str) -> Option<String> {
        self.text(&format!("SELECT (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}')"))
    }

    /// Whether the slot's confirmed position is at or past `lsn`.
    fn confirmed_at_least(&self, slot: &str, lsn: &str) -> bool {
        self.text(&format!(
            "SELECT ((SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}') >= '{lsn}'::pg_lsn)::text"
        ))
        .as_deref()
            == Some("true")
    }

    #[track_caller]
    fn wait_confirmed(&self, slot: &str, lsn: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.confirmed_at_least(slot, lsn) {
            assert!(Instant::now() < deadline, "slot {slot} confirmed {:?}, never reached {lsn}", self.confirmed(slot));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `(orderId, productId)` → how many records carry that line.
fn line_counts(records: &[Record]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        let value = record.json();
        let key = (value["orderId"].as_str().unwrap().to_string(), value["productId"].as_str().unwrap().to_string());
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[test]
fn cdc_order_items_inserts_reach_order_events_in_the_workshop_format() {
    let setup = Setup::new();
    let pg = setup.pg();
    // The first start creates the slot; orders placed while the job is
    // stopped are captured from then on.
    let mut job = setup.start();
    job.wait_running().unwrap();
    job.stop().unwrap();
    assert!(setup.pg().confirmed(&setup.slot).is_some(), "the slot was created");

    // Two lines, committed 300 ms after the inserts: stamped with the commit
    // time, not the insert's nor the job's processing time.
    let (before, after) = pg.place_with("order-a", &[("PROD_0001", 2), ("PROD_0002", 1)], "SELECT pg_sleep(0.3);");
    let committed_lsn = pg.wal_lsn();
    // Neither an order without lines, nor updates or deletes of lines, are orders.
    pg.place("order-empty", &[]);
    pg.execute("UPDATE order_items SET quantity = 5 WHERE order_id = 'order-a' AND product_id = 'PROD_0002'");
    std::thread::sleep(Duration::from_millis(200));
    let started = now_ms();
    let mut job = setup.start();
    job.wait_running().unwrap();
    let records = setup.wait_for_events(2);
    assert_eq!(records.len(), 2, "one record per line");
    let first = records[0].json();
    let timestamp = first["timestamp"].as_i64().expect("an integer timestamp");
    assert!(timestamp >= before + 300 && timestamp <= after, "timestamp {timestamp} is the commit time (between {} and {after})", before + 300);
    assert!(timestamp < started, "stamped with the commit time, not when the job read it");
    // Exactly the workshop's bytes: field order quantity, productId, orderId, timestamp.
    let text = |r: &Record| String::from_utf8(r.value.clone().unwrap()).unwrap();
    assert_eq!(text(&records[0]), format!(r#"{{"quantity":2,"productId":"PROD_0001","orderId":"order-a","timestamp":{timestamp}}}"#));
    assert_eq!(text(&records[1]), format!(r#"{{"quantity":1,"productId":"PROD_0002","orderId":"order-a","timestamp":{timestamp}}}"#));
    assert_eq!(records[0].key.as_deref(), Some("PROD_0001"), "keyed by productId");
    assert_eq!(records[1].key.as_deref(), Some("PROD_0002"));

    // Confirmed once published; while idle the slot follows the server's
    // WAL, so nothing piles up behind a running job.
    pg.wait_confirmed(&setup.slot, &committed_lsn);
    pg.place("order-b", &[("PROD_0003", 4)]);
    let records = setup.wait_for_events(3);
    assert_eq!(records[2].json()["orderId"], "order-b");
    assert_eq!(records[2].json()["quantity"], 4);
    let idle_from = pg.wal_lsn();
    pg.wait_confirmed(&setup.slot, &idle_from);

    let status = job.state();
    assert_eq!(status.state, JobState::Running);
    std::thread::sleep(Duration::from_millis(300));
    let status_later = job.state();
    assert_eq!(status_later.records_in.get("order_items"), Some(&3), "{status:?}");
    assert_eq!(status_later.records_out.get("order-events"), Some(&3), "{status:?}");
    assert!(status_later.last_commit_at.is_some());
    assert_eq!(status_later.lag.get("order_items"), Some(&0));
    job.stop().unwrap();
    assert_eq!(setup.order_events().len(), 3, "updates, deletes and empty orders publish nothing");
}

#[test]
fn cdc_restart_replays_nothing_already_confirmed() {
    let setup = Setup::new();
    let pg = setup.pg();
    let mut job = setup.start();
    job.wait_running().unwrap();
    for i in 0..3 {
        pg.place(&format!("order-{i}"), &[("PROD_0001", 1), ("PROD_0004", 2)]);
    }
    setup.wait_for_events(6);
    pg.wait_confirmed(&setup.slot, &pg.wal_lsn());
    job.stop().unwrap();

    let mut job = setup.start();
    job.wait_running().unwrap();
    pg.place("order-3", &[("PROD_0005", 1)]);
    setup.wait_for_events(7);
    // A few more polls: nothing old comes back.
    std::thread::sleep(Duration::from_millis(500));
    job.stop().unwrap();
    let counts = line_counts(&setup.order_events());
    assert_eq!(counts.len(), 7);
    assert!(counts.values().all(|n| *n == 1), "every line exactly once: {counts:?}");
}

#[test]
fn cdc_slot_advances_only_after_kafka_acknowledged() {
    let setup = Setup::new();
    let pg = setup.pg();
    let mut job = setup.start();
    job.wait_running().unwrap();
    job.stop().unwrap();
    pg.place("order-while-down", &[("PROD_0006", 3)]);
    let confirmed_before = pg.confirmed(&setup.slot);

    // The broker cannot be reached: the job fails (exit 2) without
    // confirming anything.
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let settings = settings_from(Mode::Local, setup.env(&unreachable), Duration::from_secs(2)).unwrap();
    let error = Job::start(settings).failure();
    assert_eq!(error.code, "kafka-unreachable", "{error:?}");
    assert_eq!(error.exit_code(), 2);
    assert_eq!(pg.confirmed(&setup.slot), confirmed_before, "nothing confirmed without Kafka");

    // With the broker back the order arrives.
    let mut job = setup.start();
    job.wait_running().unwrap();
    let records = setup.wait_for_events(1);
    assert_eq!(records[0].json()["orderId"], "order-while-down");
    job.stop().unwrap();
}

#[test]
fn cdc_crash_replays_unconfirmed_lines_and_loses_none() {
    let setup = Setup::new();
    let db_name = setup.db.name.clone();
    let mut first = setup.start();
    first.wait_running().unwrap();
    first.stop().unwrap();

    // Orders keep coming while the job is killed at arbitrary moments.
    let placing = Arc::new(AtomicBool::new(true));
    let placer = {
        let placing = placing.clone();
        std::thread::spawn(move || {
            let pg = Pg::connect(&db_name);
            let mut placed = Vec::new();
            let mut i = 0;
            while placing.load(Ordering::Relaxed) || i < 40 {
                let order = format!("order-{i:04}");
                let lines: Vec<(&str, i64)> = match i % 3 {
                    0 => vec![("PROD_0001", 1)],
                    1 => vec![("PROD_0002", 2), ("PROD_0003", 1)],
                    _ => vec![("PROD_0004", 1), ("PROD_0005", 1), ("PROD_0006", 3)],
                };
                pg.place(&order, &lines);
                placed.extend(lines.iter().map(|(p, _)| (order.clone(), p.to_string())));
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            placed
        })
    };
    let mut seed = now_ms() as u64;
    for _ in 0..6 {
        let job = setup.start_after_crash();
        // xorshift: an arbitrary moment between 20 and 300 ms.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 280));
        job.kill();
    }
    placing.store(false, Ordering::Relaxed);
    let placed = placer.join().unwrap();
    let pg = setup.pg();
    let last_commit = pg.wal_lsn();

    let job = setup.start_after_crash();
    let records = setup.wait_for_events(placed.len());
    pg.wait_confirmed(&setup.slot, &last_commit);
    job.stop().unwrap();
    let records = if records.len() < placed.len() { setup.order_events() } else { records };
    let counts = line_counts(&records);
    for line in &placed {
        assert!(counts.contains_key(line), "line {line:?} never reached order-events");
    }
    assert_eq!(counts.len(), placed.len(), "no line that was not placed");
    let replayed: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("crash test: {} lines placed, {} records, {replayed} replayed after kills", placed.len(), records.len());
}

#[test]
fn cdc_second_job_on_the_same_slot_fails_clearly() {
    let setup = Setup::new();
    let mut job = setup.start();
    job.wait_running().unwrap();
    let error = setup.start().failure();
    assert_eq!(error.code, "slot-in-use", "{error:?}");
    assert_eq!(error.exit_code(), 1);
    assert!(error.message.contains(&setup.slot) && error.message.contains("pid"), "{}", error.message);
    assert!(error.hint.as_deref().unwrap_or("").contains("POSTGRES_REPLICATION_SLOT"), "{error:?}");
    // The first one is unaffected.
    setup.pg().place("order-1", &[("PROD_0001", 1)]);
    setup.wait_for_events(1);
    job.stop().unwrap();
}

#[test]
fn cdc_missing_publication_is_a_clear_error() {
    let setup = Setup::new();
    setup.pg().execute("DROP PUBLICATION workshop_cdc");
    let error = setup.start().failure();
    assert_eq!(error.code, "publication-missing", "{error:?}");
    assert_eq!(error.exit_code(), 1);
    assert!(error.message.contains("workshop_cdc"), "{}", error.message);
    assert!(error.hint.as_deref().unwrap_or("").contains("kart db init"), "{error:?}");
}

#[test]
fn cdc_remote_mode_refuses_the_workshops_default_slot() {
    let env = |slot: &str| {
        HashMap::from([
            ("KAFKA_BOOTSTRAP_SERVERS".to_string(), "broker.example:9092".to_string()),
            ("KAFKA_USER".into(), "student".into()),
            ("KAFKA_PASSWORD".into(), "secret".into()),
            ("POSTGRES_HOST".into(), "db1.example,db2.example".into()),
            ("POSTGRES_DB".into(), "student_07".into()),
            ("POSTGRES_USER".into(), "student".into()),
            ("POSTGRES_PASSWORD".into(), "secret".into()),
            ("POSTGRES_REPLICATION_SLOT".into(), slot.into()),
        ])
    };
    let error = settings_from(Mode::Remote, env("flink_order_cdc_slot"), Duration::from_secs(1)).unwrap_err();
    assert_eq!(error.exit_code(), 1);
    assert!(error.hint.as_deref().unwrap_or("").contains("kart_student_07_cdc"), "{error:?}");
    let settings = settings_from(Mode::Remote, env("kart_student_07_cdc"), Duration::from_secs(1)).unwrap();
    assert_eq!(settings.pg.hosts, ["db1.example", "db2.example"]);
    // The hash changes with the slot and never depends on a password.
    let mut other = env("kart_student_07_cdc");
    other.insert("POSTGRES_PASSWORD".into(), "changed".into());
    other.insert("KAFKA_PASSWORD".into(), "changed".into());
    assert_eq!(settings_from(Mode::Remote, other, Duration::from_secs(1)).unwrap().config_hash(), settings.config_hash());
    let slot_changed = settings_from(Mode::Remote, env("kart_other_cdc"), Duration::from_secs(1)).unwrap();
    assert_ne!(slot_changed.config_hash(), settings.config_hash());
    assert!(!format!("{settings:?}").contains("secret"), "no password in Debug output");
}

/// Insert → `order-events` latency, measured by a live consumer against the
/// record's commit timestamp (same machine clock). Prints p50/p99.
#[test]
fn cdc_insert_to_order_events_latency() {
    let setup = Setup::new();
    let mut job = setup.start();
    job.wait_running().unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", setup.broker.bootstrap())
        .set("group.id", "kart-test-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("order-events", 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let pg = setup.pg();
    const ORDERS: usize = 200;
    let mut latencies = Vec::new();
    for i in 0..ORDERS {
        pg.place(&format!("order-{i}"), &[("PROD_0001", 1)]);
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "order-{i} did not arrive");
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(5)) {
                let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
                latencies.push(now_ms() - value["timestamp"].as_i64().unwrap());
                if value["orderId"] == format!("order-{i}") {
                    break;
                }
            }
        }
    }
    job.stop().unwrap();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    eprintln!("CDC insert → order-events latency over {} orders: p50 {} ms, p99 {} ms, max {} ms", latencies.len(), at(0.5), at(0.99), at(1.0));
    assert!(at(0.5) < 1000, "p50 {} ms", at(0.5));
}
