//! `kart doctor` against real services: a tansu broker of the test's own,
//! the test PostgreSQL, this machine's Docker engine with the test images
//! on 127.0.0.1:5000, and the native backend's binaries.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    closed_port, free_port, pg_port, redact, sql, tansu_bin, unique, Broker, Kart, TestDb,
};

const REGISTRY: &str = "127.0.0.1:5000";
const HOW_TO_GET_IMAGES: &str =
    "run `bash scripts/test.sh`, or `scripts/services.sh test-images` (builds the images and serves them on 127.0.0.1:5000)";

fn pg_image() -> String {
    format!("{REGISTRY}/kart-test/postgres:15")
}

/// Fails, saying how to fix it, when the engine or the test registry is missing.
fn require_docker() {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    assert!(
        engine.is_ok_and(|o| o.status.success()),
        "the Docker engine is not reachable; start it (doctor's tests check its images against a running engine)"
    );
    assert!(
        std::net::TcpStream::connect(REGISTRY).is_ok(),
        "no image registry on {REGISTRY}; {HOW_TO_GET_IMAGES}"
    );
}

/// A project whose compose file names only the test image (so the image
/// check asks the local registry, never the internet) on `pg_port`, with a
/// filled-in licence, pointed at `broker` and `db`.
fn project(broker_bootstrap: &str, db: &TestDb, published_port: u16) -> (Kart, String) {
    let slot = unique("kart_doc_slot").to_lowercase();
    let kart = Kart::new()
        .with_db(db)
        .env("KAFKA_BOOTSTRAP_SERVERS", broker_bootstrap)
        .env("POSTGRES_REPLICATION_SLOT", slot.clone())
        .env("KART_TANSU_BIN", tansu_bin().display().to_string())
        // Nothing listens there: "no JobManager" is an ok.
        .env(
            "KART_FLINK_URL",
            format!("http://127.0.0.1:{}", closed_port()),
        );
    kart.write(
        "compose-local.yml",
        &format!(
            "name: {}\nservices:\n  postgres:\n    image: {}\n    ports: [\"{published_port}:5432\"]\n",
            unique("kd").replace('_', "-"),
            pg_image()
        ),
    );
    kart.write("licence.env", "LICENSE_ID=\"test\"\nLICENSE_CODE=\"code\"\nLICENSEE=\"kart\"\nLICENSE_SIGNATURE=\"sig\"\n");
    (kart, slot)
}

fn create_db(db: &TestDb) {
    sql("postgres", &format!("CREATE DATABASE \"{}\"", db.name));
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

#[test]
fn doctor_all_ok_against_test_services_and_the_json_schema() {
    require_docker();
    let broker = Broker::start();
    let db = TestDb::new();
    create_db(&db);
    let port = free_port();
    let (kart, slot) = project(&broker.bootstrap(), &db, port);

    let text = kart.run(&["doctor"]);
    text.ok();
    let lines: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let summary = lines.last().expect("a summary line");
    assert!(
        summary.contains("0 warning(s), 0 failed"),
        "{}",
        text.stdout
    );
    for line in &lines[..lines.len() - 1] {
        assert!(line.starts_with("ok  "), "not ok: {line}\n{}", text.stdout);
    }
    assert!(
        text.elapsed < Duration::from_secs(30),
        "took {:?}",
        text.elapsed
    );

    let run = kart.run(&["-o", "json", "doctor"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "docker",
            "images",
            "ports",
            "env",
            "kafka",
            "kafka-listeners",
            "postgres",
            "wal-level",
            "replication-slot",
            "licence",
            "native-binaries",
            "flink-inventory"
        ]
    );
    assert!(
        check(&report, "kafka-listeners")["message"]
            .as_str()
            .unwrap()
            .contains(&broker.bootstrap()),
        "{report:#}"
    );
    assert!(
        check(&report, "native-binaries")["message"]
            .as_str()
            .unwrap()
            .contains("tansu at"),
        "{report:#}"
    );

    // Values that differ between runs and machines are redacted; the
    // messages of machine-dependent checks (engine version, which images are
    // already present, where binaries live) are replaced whole.
    let mut snapshot = report.clone();
    for c in snapshot["checks"].as_array_mut().unwrap() {
        if ["docker", "images", "native-binaries"].contains(&c["name"].as_str().unwrap()) {
            c["message"] = Value::from("[depends on this machine]");
        }
    }
    let pg_version: String = sql("postgres", "SHOW server_version")[0].get::<_, String>(0);
    let pg_version = pg_version.split_whitespace().next().unwrap().to_string();
    let dir = kart.dir().display().to_string();
    let text = redact(
        &serde_json::to_string_pretty(&snapshot).unwrap(),
        &[
            (&broker.bootstrap(), "[broker]"),
            (&format!("127.0.0.1:{}", pg_port()), "[postgres]"),
            (&db.name, "[database]"),
            (&slot, "[slot]"),
            (&dir, "[project]"),
            (&pg_version, "[version]"),
            (&format!("127.0.0.1:{}", closed_port()), "[flink]"),
        ],
    );
    insta::assert_snapshot!("doctor-json", text);
}

#[test]
fn doctor_fails_on_an_unreachable_broker_and_a_placeholder_naming_both() {
    // Docker and the images are ok, so exactly kafka and env fail.
    require_docker();
    let db = TestDb::new();
    create_db(&db);
    let closed = format!("127.0.0.1:{}", closed_port());
    let (kart, _) = project(&closed, &db, free_port());
    kart.write(
        ".env.local",
        "export PARALLELISM=\"[REPLACE_WITH_PARALLELISM]\"\n",
    );

    let run = kart.run(&["-o", "json", "doctor"]);
    run.code(1);
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}",
        run.elapsed
    );
    let report = run.json();
    assert_eq!(report["schemaVersion"], 1);
    assert_eq!(report["ok"], false);
    let kafka = check(&report, "kafka");
    assert_eq!(kafka["status"], "fail", "{kafka:#}");
    assert!(
        kafka["fix"].as_str().unwrap().contains(&closed),
        "the fix names the address: {kafka:#}"
    );
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "kafka-listeners"),
        "no listener check without a broker: {report:#}"
    );
    let env = check(&report, "env");
    assert_eq!(env["status"], "fail", "{env:#}");
    let message = env["message"].as_str().unwrap();
    assert!(
        message.contains("PARALLELISM") && message.contains(".env.local"),
        "{env:#}"
    );
    assert!(
        env["fix"].as_str().unwrap().contains(".env.local"),
        "{env:#}"
    );
    // The database is fine: its checks stay ok.
    assert_eq!(check(&report, "postgres")["status"], "ok", "{report:#}");
    // stderr: one JSON error line naming the failed checks.
    let error: Value =
        serde_json::from_str(run.stderr.lines().last().unwrap()).expect("JSON error line");
    assert_eq!(error["error"]["code"], "doctor-failed");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kafka"),
        "{error}"
    );

    // Text: the status first, the fix on the next line, a summary.
    let text = kart.run(&["doctor"]);
    text.code(1);
    let lines: Vec<&str> = text.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("fail") && l.contains(" kafka "))
        .expect(&text.stdout);
    assert!(
        lines[at + 1].trim_start().starts_with("fix:") && lines[at + 1].contains(&closed),
        "{}",
        text.stdout
    );
    assert!(
        lines.last().unwrap().contains("2 failed"),
        "{}",
        text.stdout
    );
}

#[test]
fn doctor_reports_a_wrong_kafka_password_as_authentication_failed() {
    let broker = Broker::start_scram("alice", "right-password");
    let db = TestDb::new();
    create_db(&db);
    let (kart, _) = project(&broker.bootstrap(), &db, free_port());
    let kart = kart
        .env("KAFKA_USER", "alice")
        .env("KAFKA_PASSWORD", "wrong-password");
    let run = kart.run(&["-o", "json", "doctor"]);
    run.code(1);
    assert!(
        !run.stdout.contains("wrong-password") && !run.stderr.contains("wrong-password"),
        "the password leaked"
    );
    let kafka = check(&run.json(), "kafka").clone();
    assert_eq!(kafka["status"], "fail", "{kafka:#}");
    assert!(
        kafka["message"]
            .as_str()
            .unwrap()
            .contains("authentication failed for user alice"),
        "{kafka:#}"
    );
    assert!(
        kafka["fix"].as_str().unwrap().contains("KAFKA_PASSWORD"),
        "{kafka:#}"
    );

    // The right one passes.
    let (good, _) = project(&broker.bootstrap(), &db, free_port());
    let good = good
        .env("KAFKA_USER", "alice")
        .env("KAFKA_PASSWORD", "right-password");
    let run = good.run(&["-o", "json", "doctor"]);
    let kafka = check(&run.json(), "kafka").clone();
    assert_eq!(kafka["status"], "ok", "{kafka:#}");
    assert!(
        kafka["message"]
            .as_str()
            .unwrap()
            .contains("SCRAM-SHA-256 as alice"),
        "{kafka:#}"
    );
}

#[test]
fn doctor_names_the_process_holding_a_published_port() {
    let broker = Broker::start();
    let db = TestDb::new();
    create_db(&db);
    // This test process takes the port the compose file publishes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (kart, _) = project(&broker.bootstrap(), &db, port);
    let run = kart.run(&["-o", "json", "doctor"]);
    run.code(1);
    let ports = check(&run.json(), "ports").clone();
    assert_eq!(ports["status"], "fail", "{ports:#}");
    let message = ports["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("port {port} (service postgres)")),
        "{ports:#}"
    );
    assert!(
        message.contains(&format!("(pid {})", std::process::id())),
        "the holder is this test: {ports:#}"
    );
    assert!(
        ports["fix"].as_str().unwrap().contains("KART_PORT_OFFSET"),
        "{ports:#}"
    );
    drop(listener);
}

#[test]
fn doctor_reports_a_slot_of_another_database_and_a_missing_database() {
    let broker = Broker::start();
    let db = TestDb::new();
    let other = TestDb::new();
    create_db(&other);
    let (kart, slot) = project(&broker.bootstrap(), &db, free_port());
    // The slot exists, but for another database.
    sql(
        &other.name,
        &format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
    );
    let run = kart.run(&["-o", "json", "doctor"]);
    run.code(1);
    let report = run.json();
    let postgres = check(&report, "postgres");
    assert_eq!(
        postgres["status"], "warn",
        "database not created yet: {postgres:#}"
    );
    assert!(
        postgres["fix"].as_str().unwrap().contains("kart db up"),
        "{postgres:#}"
    );
    let slot_check = check(&report, "replication-slot");
    assert_eq!(slot_check["status"], "fail", "{slot_check:#}");
    assert!(
        slot_check["message"]
            .as_str()
            .unwrap()
            .contains(&other.name),
        "{slot_check:#}"
    );
    assert!(
        slot_check["fix"]
            .as_str()
            .unwrap()
            .contains("POSTGRES_REPLICATION_SLOT"),
        "{slot_check:#}"
    );
    sql(
        "postgres",
        &format!("SELECT pg_drop_replication_slot('{slot}')"),
    );

    // Remote mode: the workshop's default slot name is shared by every
    // student on the server, so doctor suggests one of their own.
    create_db(&db);
    let (remote, _) = project(&broker.bootstrap(), &db, free_port());
    let compose = std::fs::read_to_string(remote.dir().join("compose-local.yml")).unwrap();
    remote.write("compose-remote.yml", &compose);
    let remote = remote
        .env("KAFKA_USER", "")
        .env("KAFKA_PASSWORD", "")
        .env("POSTGRES_REPLICATION_SLOT", "flink_order_cdc_slot");
    let run = remote.run(&["--mode", "remote", "-o", "json", "doctor"]);
    let report = run.json();
    assert_eq!(
        check(&report, "env")["status"],
        "ok",
        "every placeholder is overridden: {report:#}"
    );
    let slot_check = check(&report, "replication-slot");
    assert_eq!(slot_check["status"], "warn", "{slot_check:#}");
    let suggestion = format!("kart_{}_cdc", db.name.to_lowercase());
    assert!(
        slot_check["fix"].as_str().unwrap().contains(&suggestion),
        "{slot_check:#}"
    );
    run.code(0);
}

/// Stops the native services of a test project even when an assertion failed.
struct NativeStack(Kart);

impl Drop for NativeStack {
    fn drop(&mut self) {
        let _ = self.0.run(&["platform", "stop", "--volumes", "--yes"]);
    }
}

#[test]
fn doctor_counts_ports_of_kart_s_own_running_services_as_expected() {
    let (kafka_port, pg_port) = (free_port(), free_port());
    let kart = Kart::new()
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("localhost:{kafka_port}"))
        .env("POSTGRES_HOST", "localhost")
        .env("POSTGRES_PORT", pg_port.to_string())
        .env("PGSSLMODE", "disable")
        .env("KART_TANSU_BIN", tansu_bin().display().to_string())
        .env(
            "KART_FLINK_URL",
            format!("http://127.0.0.1:{}", closed_port()),
        );
    kart.write(
        "compose-local.yml",
        &format!(
            "name: {}\nservices:\n  redpanda:\n    image: none/redpanda\n    ports: [\"{kafka_port}:9092\"]\n  postgres:\n    image: none/postgres\n    ports: [\"{pg_port}:5432\"]\n",
            unique("kdn").replace('_', "-")
        ),
    );
    let stack = NativeStack(kart);
    let kart = &stack.0;
    kart.run(&[
        "platform",
        "start",
        "--backend",
        "native",
        "--no-init",
        "--wait-timeout",
        "60s",
    ])
    .ok();
    let run = kart.run(&["-o", "json", "doctor"]);
    let report = run.json();
    let ports = check(&report, "ports");
    assert_eq!(ports["status"], "ok", "{ports:#}");
    assert!(
        ports["message"]
            .as_str()
            .unwrap()
            .contains("2 in use by kart's own services"),
        "{ports:#}"
    );
    assert_eq!(check(&report, "kafka")["status"], "ok", "{report:#}");
    assert_eq!(
        check(&report, "wal-level")["status"],
        "ok",
        "kart's native Postgres runs with wal_level=logical: {report:#}"
    );
}
