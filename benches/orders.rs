//! `kart order place --count 10000` in direct mode (issue 4): orders/s
//! as the command reports them (placed and committed; events published by
//! its outbox flusher), against a fresh in-memory tansu and the test
//! PostgreSQL (`scripts/services.sh test-up`). Target ≥ 5,000 orders/s.
//!
//! Run with `cargo bench --bench orders`; `KART_BENCH_ORDERS` sets the
//! count (default 10,000).

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use common::{kart, start_tansu, time};

fn main() {
    if !common::requested() {
        println!("order benches: run with `cargo bench --bench orders`");
        return;
    }
    let count: u64 = std::env::var("KART_BENCH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let pg_port: u16 = std::env::var("KART_TEST_PG_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(55432);
    if TcpStream::connect(("127.0.0.1", pg_port)).is_err() {
        panic!("the test PostgreSQL is not running on 127.0.0.1:{pg_port}: run `scripts/services.sh test-up`");
    }
    let (mut broker, port) = start_tansu("benchorders");
    let project = tempfile::tempdir().expect("tempdir");
    let db = format!("kart_bench_orders_{}", std::process::id());
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{port}")),
        ("POSTGRES_HOST", "127.0.0.1".to_string()),
        ("POSTGRES_PORT", pg_port.to_string()),
        ("POSTGRES_DB", db.clone()),
        ("PGSSLMODE", "disable".to_string()),
        ("POSTGRES_REPLICATION_SLOT", format!("{db}_slot")),
    ];
    time(kart(project.path(), &env, &["topics", "create"]));
    time(kart(project.path(), &env, &["db", "up"]));
    let count_text = count.to_string();
    let out = kart(project.path(), &env, &["-o", "json", "order", "place", "--count", &count_text])
        .stdout(Stdio::piped())
        .output()
        .expect("run kart");
    assert!(out.status.success(), "order place failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("JSON");
    let rate = summary["summary"]["ordersPerSecond"].as_f64().expect("ordersPerSecond");
    println!(
        "order place --count {count} (direct, 8 connections, outbox published every 20 ms): {rate:.0} orders/s, {} failed, {} unpublished at the end | target ≥ 5000/s | ratio {:.2} {}",
        summary["summary"]["failures"],
        summary["summary"]["pending"],
        rate / 5000.0,
        if rate >= 5000.0 { "MET" } else { "MISSED" }
    );

    cdc_latency(project.path(), &env, &format!("127.0.0.1:{port}"));
    let _ = kart(project.path(), &env, &["job", "stop", "order-cdc"]).output();
    time(kart(project.path(), &env, &["--yes", "db", "down"]));
    let _ = broker.kill();
    let _ = broker.wait();
}

/// CDC insert → `order-events` latency: orders placed with `--cdc` at
/// 100/s while the CDC job runs; from each order's placing time (just
/// before its INSERT commits) to a reader receiving its event. Target
/// p99 ≤ 50 ms.
fn cdc_latency(project: &std::path::Path, env: &[(&str, String)], bootstrap: &str) {
    time(kart(project, env, &["job", "deploy", "order-cdc"]));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-cdc-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("reader");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("order-events", 0, Offset::End).unwrap();
    consumer.assign(&assignment).unwrap();
    for _ in 0..20 {
        consumer.poll(Duration::from_millis(50));
    }
    let reader = std::thread::spawn(move || {
        let mut arrivals: HashMap<String, i64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while arrivals.len() < 500 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let now = epoch_ms();
                if let Some(v) = m.payload().and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok()) {
                    if let Some(id) = v["orderId"].as_str() {
                        arrivals.entry(id.to_string()).or_insert(now);
                    }
                }
            }
        }
        arrivals
    });
    let out = kart(project, env, &["-o", "json", "order", "place", "--cdc", "--count", "500", "--rate", "100"])
        .stdout(Stdio::piped())
        .output()
        .expect("run kart");
    assert!(out.status.success(), "order place --cdc failed: {}", String::from_utf8_lossy(&out.stderr));
    let placed: Vec<(String, i64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["orderId"].as_str()?.to_string(), v["placedAt"].as_i64()?)))
        .collect();
    let arrivals = reader.join().expect("reader");
    let mut latencies: Vec<i64> = placed.iter().filter_map(|(id, at)| arrivals.get(id).map(|t| t - at)).collect();
    latencies.sort();
    let q = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "CDC insert → order-events at 100 orders/s (n={} of {}): p50 {} ms, p99 {} ms, max {} ms | target p99 ≤ 50 ms {}",
        latencies.len(),
        placed.len(),
        q(0.5),
        q(0.99),
        latencies[latencies.len() - 1],
        if q(0.99) <= 50 && latencies.len() == placed.len() { "MET" } else { "MISSED" }
    );
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
