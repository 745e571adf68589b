//! End-to-end benchmarks of the inventory job through a real broker (a
//! fresh in-memory tansu):
//!
//! (b) throughput: the job (the release `kart` binary, `job deploy inventory
//!     --foreground`) drains N pre-produced orders; a plain consume → produce
//!     pass-through in this process drains the same N with the same client
//!     settings (read_committed assign-based consumer with fetch.wait.max.ms
//!     10, idempotent producer with acks=all and linger.ms 0, a flush per
//!     batch, a batch closed when the input is drained or after
//!     KART_COMMIT_INTERVAL, offsets committed after each batch). Both rates
//!     are measured by a reader that watches the outputs arrive (first to
//!     last), so start-up is not counted and acknowledgements are. Target:
//!     job ÷ pass-through ≥ 0.5.
//! (c) latency: orders sent at 1,000/s to the running job; the time from the
//!     send to a read_committed reader receiving the INVENTORY_DECREASED
//!     event. Target p99 ≤ 10 ms.
//! and the job's resident memory at the end.
//!
//! Run with `cargo bench --bench inventory_job` (needs tansu:
//! `scripts/services.sh ensure-tansu`). `KART_BENCH_ORDERS` sets N
//! (default 50,000), `KART_BENCH_LATENCY_SECS` the latency run (default 10).

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use common::{kart, start_tansu};
const PRODUCTS: usize = 200;
const COMMIT_INTERVAL: &str = "20ms";
/// tansu waits out every fetch's maximum wait, so the job's (and this
/// bench's readers') fetch wait is latency; 10 ms is the shortest that
/// leaves tansu CPU on these 2 cores.
const FETCH_WAIT: &str = "10ms";

fn main() {
    if !common::requested() {
        println!("inventory job benches: run with `cargo bench --bench inventory_job`");
        return;
    }
    let orders: usize = env_or("KART_BENCH_ORDERS", 50_000);
    let latency_secs: u64 = env_or("KART_BENCH_LATENCY_SECS", 10);
    println!("storage memory://, {PRODUCTS} products, KART_COMMIT_INTERVAL={COMMIT_INTERVAL}, KART_FETCH_WAIT={FETCH_WAIT} (readers too)");

    // (c) first, on a fresh broker: tansu's own latency grows with the data
    // it holds, and (b) leaves hundreds of thousands of records behind.
    let bench = Bench::start("benchlat");
    let mut job = bench.start_job();
    let floor = latency_run(&bench.bootstrap, latency_secs, false);
    let q = |samples: &[f64], q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "    broker floor (send → read on one topic, no job) at 1000/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        q(&floor, 0.5),
        q(&floor, 0.99),
        floor[floor.len() - 1]
    );
    let latencies = latency_run(&bench.bootstrap, latency_secs, true);
    let (p50, p99) = (q(&latencies, 0.50), q(&latencies, 0.99));
    println!(
        "(c) latency at 1000 orders/s over {latency_secs} s (n={}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | target p99 ≤ 10 ms {}",
        latencies.len(),
        p50,
        p99,
        latencies[latencies.len() - 1],
        verdict(p99 <= 10.0)
    );
    stop(&mut job);
    drop(bench);

    // (b) on another fresh broker: N orders wait on `order-events`; the
    // pass-through drains them, then the job does.
    let bench = Bench::start("benchtput");
    let produced = Instant::now();
    produce_orders(&bench.bootstrap, orders);
    println!("pre-produced {orders} orders in {:.1} s", produced.elapsed().as_secs_f64());
    let passthrough_arrivals = arrival_rate(&bench.bootstrap, "bench-passthrough", orders, Duration::from_secs(120));
    passthrough(&bench.bootstrap, orders);
    let passthrough_rate = passthrough_arrivals.join().expect("pass-through reader");
    let job_arrivals = arrival_rate(&bench.bootstrap, "kart-order-outcomes", orders, Duration::from_secs(600));
    let mut job = bench.start_job();
    let job_rate = job_arrivals.join().expect("job reader");
    let ratio = job_rate / passthrough_rate;
    println!(
        "(b) throughput over {orders} orders: job {job_rate:.0} orders/s, pass-through {passthrough_rate:.0} records/s, ratio {ratio:.2} | target ≥ 0.50 {}",
        verdict(ratio >= 0.5)
    );
    if let Some(rss) = rss_kb(job.id()) {
        println!("job resident memory after {orders} orders: {:.1} MB", rss as f64 / 1024.0);
    }
    stop(&mut job);
}

/// A fresh broker with the topics and a project whose catalog has
/// `PRODUCTS` products with plenty of stock.
struct Bench {
    broker: std::process::Child,
    bootstrap: String,
    project: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Bench {
    fn start(name: &str) -> Bench {
        let (broker, port) = start_tansu(name);
        let bootstrap = format!("127.0.0.1:{port}");
        let project = tempfile::tempdir().expect("tempdir");
        let catalog = project.path().join("catalog.json");
        std::fs::write(&catalog, catalog_json()).expect("write catalog");
        let env = vec![
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
            ("KART_COMMIT_INTERVAL", COMMIT_INTERVAL.to_string()),
            ("KART_FETCH_WAIT", FETCH_WAIT.to_string()),
            ("INITIAL_PRODUCTS_FILE", catalog.display().to_string()),
        ];
        run_ok(kart(project.path(), &env, &["topics", "create"]));
        run_ok(kart(project.path(), &env, &["topics", "create", "bench-passthrough", "bench-latency"]));
        Bench { broker, bootstrap, project, env }
    }

    /// The job in the foreground; KART_BENCH_JOB_LOG=FILE keeps its `-v`
    /// log (batch timings).
    fn start_job(&self) -> std::process::Child {
        let job_log = std::env::var("KART_BENCH_JOB_LOG").ok();
        let args: &[&str] = if job_log.is_some() {
            &["-v", "job", "deploy", "inventory", "--foreground"]
        } else {
            &["job", "deploy", "inventory", "--foreground"]
        };
        kart(self.project.path(), &self.env, args)
            .stderr(match &job_log {
                Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).expect("job log")),
                None => Stdio::null(),
            })
            .spawn()
            .expect("start the job")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}

fn stop(job: &mut std::process::Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(job.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = job.wait();
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn catalog_json() -> String {
    let products: Vec<serde_json::Value> = (1..=PRODUCTS)
        .map(|n| {
            serde_json::json!({"productId": format!("PROD_{n:04}"), "name": format!("Product {n}"), "description": "bench",
                "price": 10.0, "category": "Bench", "brand": null, "imageUrl": "", "inventory": 1_000_000_000,
                "tags": [], "rating": 4.0, "reviewCount": 1})
        })
        .collect();
    serde_json::Value::Array(products).to_string()
}

fn order_json(id: &str, n: usize) -> (String, String) {
    let product = format!("PROD_{:04}", n % PRODUCTS + 1);
    let value = serde_json::json!({"orderId": id, "productId": product, "quantity": 1, "timestamp": 0}).to_string();
    (product, value)
}

fn produce_orders(bootstrap: &str, orders: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
        .expect("producer");
    for n in 0..orders {
        let (key, value) = order_json(&format!("bench-{n}"), n);
        let mut record = BaseRecord::to("order-events").key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(5));
                    record = returned;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush orders");
}

/// Consume → produce with the job's client settings.
fn passthrough(bootstrap: &str, expected: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("socket.nagle.disable", "true")
        .create()
        .expect("producer");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-passthrough")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .set("socket.nagle.disable", "true")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("order-events", 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let interval = Duration::from_millis(20);
    let mut open: Option<Instant> = None;
    let mut next_offset = 0i64;
    let mut seen = 0usize;
    let commit = |producer: &BaseProducer, consumer: &BaseConsumer, next_offset: i64| {
        // The job's flush: 1 ms polls until every record is acknowledged
        // (rdkafka's own flush waits in 100 ms slices).
        while producer.in_flight_count() > 0 {
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(100));
        }
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset("order-events", 0, Offset::Offset(next_offset)).unwrap();
        let _ = consumer.commit(&offsets, rdkafka::consumer::CommitMode::Async);
    };
    while seen < expected {
        match consumer.poll(if open.is_some() { Duration::ZERO } else { Duration::from_millis(100) }) {
            Some(Ok(m)) => {
                open.get_or_insert_with(Instant::now);
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to("bench-passthrough");
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                if let Some(v) = m.payload() {
                    record = record.payload(v);
                }
                while let Err((_, returned)) = producer.send(record) {
                    producer.poll(Duration::from_millis(5));
                    record = returned;
                }
                next_offset = m.offset() + 1;
                seen += 1;
                if open.is_some_and(|t| t.elapsed() >= interval) {
                    commit(&producer, &consumer, next_offset);
                    open = None;
                }
            }
            Some(Err(e)) => panic!("pass-through consumer: {e}"),
            None => {
                if open.take().is_some() {
                    commit(&producer, &consumer, next_offset);
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    commit(&producer, &consumer, next_offset);
}

/// Starts reading `topic` (read_committed, from the beginning) on a thread
/// that counts `expected` records; joining it gives their rate as this
/// reader saw them arrive, first to last: what a consumer downstream gets,
/// acknowledgements included.
fn arrival_rate(bootstrap: &str, topic: &str, expected: usize, within: Duration) -> std::thread::JoinHandle<f64> {
    let consumer = reader(bootstrap, topic, Offset::Beginning);
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let deadline = Instant::now() + within;
        let (mut first, mut last, mut count) = (None, Instant::now(), 0usize);
        while count < expected {
            assert!(Instant::now() < deadline, "{topic}: only {count} of {expected} records within {within:?}");
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                last = Instant::now();
                first.get_or_insert(last);
                count += 1;
            }
        }
        count as f64 / last.duration_since(first.unwrap_or(last)).as_secs_f64().max(1e-3)
    })
}

fn reader(bootstrap: &str, topic: &str, from: Offset) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("isolation.level", "read_committed")
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("socket.nagle.disable", "true")
        .create()
        .expect("reader");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, from).unwrap();
    consumer.assign(&assignment).unwrap();
    consumer
}

/// Sends orders at 1,000/s for `secs` and returns each order's send →
/// event latency in ms, sorted.
///
/// `through_job` false is the broker's floor: the same orders sent to
/// `bench-latency` and read back from there, no job in between.
fn latency_run(bootstrap: &str, secs: u64, through_job: bool) -> Vec<f64> {
    let sent: Arc<Mutex<HashMap<String, (Instant, i64)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let total = (secs * 1000) as usize;
    let (send_topic, read_topic) = if through_job { ("order-events", "inventory-events") } else { ("bench-latency", "bench-latency") };
    let events = reader(bootstrap, read_topic, Offset::End);
    // Let the reader reach the end before the first order.
    for _ in 0..20 {
        events.poll(Duration::from_millis(50));
    }
    let sender = {
        let (sent, done, bootstrap) = (sent.clone(), done.clone(), bootstrap.to_string());
        std::thread::spawn(move || {
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "0")
                .set("acks", "all")
                .set("socket.nagle.disable", "true")
                .create()
                .expect("producer");
            let start = Instant::now();
            for n in 0..total {
                let due = start + Duration::from_micros(n as u64 * 1000);
                while Instant::now() < due {
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(Duration::from_micros(100));
                }
                let id = format!("lat-{n}");
                let (key, value) = order_json(&id, n);
                sent.lock().unwrap().insert(id, (Instant::now(), epoch_ms()));
                let record = BaseRecord::to(send_topic).key(&key).payload(&value);
                producer.send(record).map_err(|(e, _)| e).expect("send");
                producer.poll(Duration::ZERO);
            }
            producer.flush(Duration::from_secs(30)).expect("flush");
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut latencies = Vec::with_capacity(total);
    // Where the time goes: send → the job processing the order (its
    // event's timestamp), and processing → this reader.
    let (mut to_job, mut from_job) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let deadline = Instant::now() + Duration::from_secs(secs + 60);
    while latencies.len() < total && Instant::now() < deadline {
        let Some(Ok(m)) = events.poll(Duration::from_millis(100)) else { continue };
        let received = Instant::now();
        let Some(payload) = m.payload() else { continue };
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(payload) else { continue };
        let id = if through_job {
            let Some(reason) = event["changeReason"].as_str() else { continue };
            let Some(id) = reason.strip_prefix("Deducted 1 for order ") else { continue };
            id.to_string()
        } else {
            let Some(id) = event["orderId"].as_str() else { continue };
            id.to_string()
        };
        let id = id.as_str();
        if let Some((at, at_ms)) = sent.lock().unwrap().get(id) {
            latencies.push(received.duration_since(*at).as_secs_f64() * 1e3);
            let processed = if through_job { event["timestamp"].as_i64().unwrap_or(0) } else { epoch_ms() };
            to_job.push((processed - at_ms) as f64);
            from_job.push((epoch_ms() - processed) as f64);
        }
    }
    sender.join().expect("sender");
    assert_eq!(latencies.len(), total, "every latency order got its event");
    for (name, samples) in [("send → processed", &mut to_job), ("processed → read", &mut from_job)].into_iter().filter(|_| through_job) {
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        println!("    {name}: p50 {:.0} ms, p99 {:.0} ms (ms clock)", p(0.5), p(0.99));
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    latencies
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn run_ok(cmd: Command) {
    common::time(cmd);
}
