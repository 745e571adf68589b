//! `kart order place --count 10000` in direct mode (issue 4): orders/s
//! as the command reports them (placed and committed; events published by
//! its outbox flusher), against a fresh in-memory tansu and the test
//! PostgreSQL (`scripts/services.sh test-up`). Target ≥ 5,000 orders/s.
//!
//! Run with `cargo bench --bench orders`; `KART_BENCH_ORDERS` sets the
//! count (default 10,000).

mod common;

use std::net::TcpStream;
use std::process::Stdio;

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
    time(kart(project.path(), &env, &["--yes", "db", "down"]));
    let _ = broker.kill();
    let _ = broker.wait();
}
