//! `kart platform start` to ready (issue 5) for a two-service test stack (a
//! tansu broker and a PostgreSQL, from the images `scripts/services.sh
//! test-images` serves on 127.0.0.1:5000), against `docker-compose up -d`
//! plus polling until the same readiness: a Kafka metadata request and
//! `SELECT 1` through the published ports. Target: kart ≤ 0.8 of compose.
//!
//! Each round starts from nothing (containers and volumes removed), with the
//! images already present, so both pay the same container and database
//! initialisation. Rounds alternate kart / compose so that machine noise
//! hits both. Without `docker-compose` the comparison is a sequential start
//! with the same polling, through kart's own Docker backend disabled
//! (`--backend docker` one service at a time).
//!
//! Run with `cargo bench --bench platform`; `KART_BENCH_ROUNDS` (default 5).

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use common::kart;

const PG_IMAGE: &str = "127.0.0.1:5000/kart-test/postgres:15";
const TANSU_IMAGE: &str = "127.0.0.1:5000/kart-test/tansu:0.6.0";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

fn services(project: &str, kafka: u16, pg: u16) -> String {
    format!(
        "services:\n  broker:\n    image: {TANSU_IMAGE}\n    container_name: {project}-broker\n    environment:\n      ADVERTISED_LISTENER_URL: tcp://localhost:{kafka}\n    ports: [\"127.0.0.1:{kafka}:9092\"]\n    volumes: [broker-data:/var/lib/tansu]\n  postgres:\n    image: {PG_IMAGE}\n    container_name: {project}-postgres\n    command: [postgres, -c, wal_level=logical]\n    environment:\n      POSTGRES_USER: postgres\n      POSTGRES_PASSWORD: postgres\n      POSTGRES_DB: ecommerce\n    ports: [\"127.0.0.1:{pg}:5432\"]\n    volumes: [pg-data:/var/lib/postgresql/data]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready -U postgres\"]\n      interval: 1s\n      timeout: 3s\n      retries: 60\nvolumes:\n  broker-data:\n  pg-data:\n"
    )
}

/// Polls a Kafka metadata request and `SELECT 1` until both answer.
fn wait_ready(kafka: u16, pg: u16, deadline: Duration) -> Duration {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("localhost:{kafka}"))
        .set("socket.connection.setup.timeout.ms", "1000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "200")
        .set("log_level", "0")
        .create()
        .expect("consumer");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut kafka_ready = false;
    let mut pg_ready = false;
    while started.elapsed() < deadline {
        if !kafka_ready {
            kafka_ready = consumer.fetch_metadata(None, Duration::from_millis(500)).is_ok_and(|m| !m.brokers().is_empty());
        }
        if !pg_ready {
            pg_ready = rt.block_on(async {
                let conn = format!("host=127.0.0.1 port={pg} user=postgres password=postgres dbname=postgres connect_timeout=2");
                match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                    Ok((client, connection)) => {
                        tokio::spawn(connection);
                        client.simple_query("SELECT 1").await.is_ok()
                    }
                    Err(_) => false,
                }
            });
        }
        if kafka_ready && pg_ready {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("compose stack not ready within {deadline:?} (kafka {kafka_ready}, postgres {pg_ready})");
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn main() {
    if !common::requested() {
        println!("platform bench: run with `cargo bench --bench platform`");
        return;
    }
    assert!(TcpStream::connect("127.0.0.1:5000").is_ok(), "no registry on 127.0.0.1:5000: run `scripts/services.sh test-images`");
    for image in [PG_IMAGE, TANSU_IMAGE] {
        assert!(quiet(Command::new("docker").args(["pull", image])), "cannot pull {image}: run `scripts/services.sh test-images`");
    }
    let compose_tool = quiet(Command::new("docker-compose").arg("version"));
    let rounds: usize = std::env::var("KART_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let project = format!("kbench{}", std::process::id());
    let (kafka, pg) = (free_port(), free_port());
    let body = services(&project, kafka, pg);
    // kart reads `name:`; docker-compose 1.x rejects it and takes -p instead.
    std::fs::write(dir.path().join("compose-local.yml"), format!("name: {project}\n{body}")).unwrap();
    std::fs::write(dir.path().join("compose-plain.yml"), &body).unwrap();
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", format!("localhost:{kafka}")),
        ("POSTGRES_HOST", "localhost".to_string()),
        ("POSTGRES_PORT", pg.to_string()),
        ("PGSSLMODE", "disable".to_string()),
    ];
    let compose = |args: &[&str]| {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(dir.path()).args(["-f", "compose-plain.yml", "-p", &project]).args(args);
        cmd
    };
    let clean = |volumes: bool| {
        let mut stop = vec!["platform", "stop", "--yes"];
        let mut down = vec!["down"];
        if volumes {
            stop.push("--volumes");
            down.push("-v");
        }
        quiet(&mut kart(dir.path(), &env, &stop));
        if compose_tool {
            quiet(&mut compose(&down));
        }
    };
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    // Cold: fresh volumes, so PostgreSQL runs initdb. Warm: the volumes of
    // the previous run are kept, as on a student's second start of the day.
    for (scenario, fresh) in [("cold (fresh volumes)", true), ("warm (volumes kept)", false)] {
        clean(true);
        if !fresh {
            // Initialise the volumes once for both tools.
            common::time(kart(dir.path(), &env, &["platform", "start", "--backend", "docker", "--no-init", "--wait-timeout", "120s"]));
            clean(false);
            if compose_tool {
                assert!(quiet(&mut compose(&["up", "-d"])), "docker-compose up failed");
                wait_ready(kafka, pg, Duration::from_secs(120));
                clean(false);
            }
        }
        let mut kart_times = Vec::new();
        let mut compose_times = Vec::new();
        for round in 0..rounds {
            let started = Instant::now();
            common::time(kart(dir.path(), &env, &["platform", "start", "--backend", "docker", "--no-init", "--pull", "missing", "--wait-timeout", "120s"]));
            let k = started.elapsed();
            clean(fresh);
            let started = Instant::now();
            if compose_tool {
                assert!(quiet(&mut compose(&["up", "-d"])), "docker-compose up failed");
            } else {
                // No compose tool: the same stack one service at a time.
                for service in ["broker", "postgres"] {
                    common::time(kart(dir.path(), &env, &["platform", "start", "--backend", "docker", "--no-init", "--services", service, "--wait-timeout", "120s"]));
                }
            }
            wait_ready(kafka, pg, Duration::from_secs(120));
            let c = started.elapsed();
            clean(fresh);
            println!("{scenario} round {}: kart {:.2}s, {} {:.2}s", round + 1, k.as_secs_f64(), if compose_tool { "docker-compose up -d + polling" } else { "sequential" }, c.as_secs_f64());
            kart_times.push(k);
            compose_times.push(c);
        }
        let (k, c) = (median(&mut kart_times), median(&mut compose_times));
        println!(
            "{scenario}: platform start to ready (median of {rounds}): kart {:.2}s, baseline {:.2}s, ratio {:.2} (target <= 0.8)",
            k.as_secs_f64(),
            c.as_secs_f64(),
            k.as_secs_f64() / c.as_secs_f64()
        );
    }
    clean(true);
}
