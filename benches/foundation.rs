//! Foundation benchmarks: `kart topics create` (the default set, on an empty
//! broker) and `kart db init` against the local test services, timed as a
//! user runs them: the whole process, start to exit.
//!
//! Run with `cargo bench --bench foundation` after `scripts/services.sh
//! test-up`. Prints median and p90 per case, the target, and the ratio
//! median ÷ target (≤ 1.0 meets it).

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{start_tansu, time};

fn main() {
    let iterations: usize = std::env::var("KART_BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    if !common::requested() {
        println!("foundation benches: run with `cargo bench --bench foundation`");
        return;
    }
    let pg_port: u16 = std::env::var("KART_TEST_PG_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(55432);
    if TcpStream::connect(("127.0.0.1", pg_port)).is_err() {
        panic!("the test PostgreSQL is not running on 127.0.0.1:{pg_port}: run `scripts/services.sh test-up`");
    }

    // topics create on an empty broker: a fresh in-memory tansu per sample.
    let mut samples = Vec::new();
    for i in 0..iterations {
        let (mut broker, port) = start_tansu(&format!("bench{i}x"));
        let bootstrap = format!("127.0.0.1:{port}");
        let elapsed = time(kart(&[("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)], &["topics", "create"]));
        samples.push(elapsed);
        let _ = broker.kill();
        let _ = broker.wait();
    }
    report("kart topics create (19 topics, empty broker)", &mut samples, Duration::from_millis(40));

    // db init on a freshly created database, and again on an initialised one.
    let mut fresh = Vec::new();
    let mut again = Vec::new();
    let port = pg_port.to_string();
    for i in 0..iterations {
        let db = format!("kart_bench_{}_{i}", std::process::id());
        let env = [
            ("POSTGRES_HOST", "127.0.0.1"),
            ("POSTGRES_PORT", port.as_str()),
            ("POSTGRES_DB", db.as_str()),
            ("PGSSLMODE", "disable"),
        ];
        run_ok(kart(&env, &["db", "create-db"]));
        fresh.push(time(kart(&env, &["db", "init"])));
        again.push(time(kart(&env, &["db", "init"])));
        run_ok(kart(&env, &["--yes", "db", "down"]));
    }
    report("kart db init (empty database)", &mut fresh, Duration::from_millis(100));
    report("kart db init (already initialised)", &mut again, Duration::from_millis(100));
}

fn kart(env: &[(&str, &str)], args: &[&str]) -> Command {
    common::kart(&std::env::temp_dir(), env, args)
}

fn run_ok(cmd: Command) {
    time(cmd);
}

fn report(name: &str, samples: &mut [Duration], target: Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p90 = samples[(samples.len() * 9 / 10).min(samples.len() - 1)];
    let ratio = median.as_secs_f64() / target.as_secs_f64();
    println!(
        "{name}: median {:.1} ms, p90 {:.1} ms, n={} | target ≤ {} ms | median/target {ratio:.2} {}",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        samples.len(),
        target.as_millis(),
        if ratio <= 1.0 { "MET" } else { "MISSED" }
    );
}

