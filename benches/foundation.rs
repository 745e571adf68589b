//! Foundation benchmarks: `kart topics create` (the default set, on an empty
//! broker) and `kart db init` against the local test services, timed as a
//! user runs them: the whole process, start to exit.
//!
//! Run with `cargo bench --bench foundation` after `scripts/services.sh
//! test-up`. Prints median and p90 per case, the target, and the ratio
//! median ÷ target (≤ 1.0 meets it).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KART: &str = env!("CARGO_BIN_EXE_kart");

fn main() {
    let iterations: usize = std::env::var("KART_BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and
    // must stay fast.
    if !std::env::args().any(|a| a == "--bench") {
        println!("foundation benches: run with `cargo bench --bench foundation`");
        return;
    }
    let tansu = tansu_bin();
    let pg_port: u16 = std::env::var("KART_TEST_PG_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(55432);
    if TcpStream::connect(("127.0.0.1", pg_port)).is_err() {
        panic!("the test PostgreSQL is not running on 127.0.0.1:{pg_port}: run `scripts/services.sh test-up`");
    }

    // topics create on an empty broker: a fresh in-memory tansu per sample.
    let mut samples = Vec::new();
    for i in 0..iterations {
        let (mut broker, port) = start_tansu(&tansu, i);
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
    let dir = std::env::temp_dir();
    let mut cmd = Command::new(KART);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .arg("--project-dir")
        .arg(&dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn time(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().expect("run kart");
    let elapsed = started.elapsed();
    assert!(out.status.success(), "kart failed: {}", String::from_utf8_lossy(&out.stderr));
    elapsed
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

fn tansu_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    std::env::var("KART_TANSU_BIN")
        .ok()
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var("PATH").unwrap_or_default().split(':').map(|d| PathBuf::from(d).join("tansu")))
        .chain(std::iter::once(PathBuf::from(home).join(".cargo/bin/tansu")))
        .find(|p| p.is_file())
        .expect("tansu is not installed: run `scripts/services.sh ensure-tansu`")
}

fn start_tansu(bin: &PathBuf, i: usize) -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--storage-engine",
            &format!("memory://bench{}x{i}/", std::process::id()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tansu");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, port)
}
