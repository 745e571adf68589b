//! `kart platform` against this machine's Docker engine, with images built
//! locally and served from 127.0.0.1:5000 (`scripts/services.sh
//! test-images`), and with the native backend (this machine's PostgreSQL
//! and tansu). Every test has its own compose project, container names,
//! ports and project directory.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{free_port, pg_port, sql, unique, Broker, Kart};

const REGISTRY: &str = "127.0.0.1:5000";
const HOW_TO_GET_IMAGES: &str = "run `bash scripts/test.sh`, or `scripts/services.sh test-images` (builds the images and serves them on 127.0.0.1:5000)";

fn pg_image() -> String {
    format!("{REGISTRY}/kart-test/postgres:15")
}

fn tansu_image() -> String {
    format!("{REGISTRY}/kart-test/tansu:0.6.0")
}

/// Fails, saying how to fix it, when the engine or the test registry is missing.
fn require_docker() {
    let engine = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    assert!(engine.is_ok_and(|o| o.status.success()), "the Docker engine is not reachable; start it (these tests need a running engine)");
    let registry = std::net::TcpStream::connect(REGISTRY);
    assert!(registry.is_ok(), "no image registry on {REGISTRY}; {HOW_TO_GET_IMAGES}");
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("run docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Container ids (all states) labelled with this compose project.
pub(crate) fn project_containers(project: &str) -> Vec<String> {
    docker(&["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={project}")]).lines().map(str::to_string).collect()
}

fn project_volumes(project: &str) -> Vec<String> {
    docker(&["volume", "ls", "-q", "--filter", &format!("label=com.docker.compose.project={project}")]).lines().map(str::to_string).collect()
}

/// A compose project of a test's own: a tansu broker and a PostgreSQL on
/// free ports; removed with everything it made when dropped.
pub(crate) struct Stack {
    pub(crate) kart: Kart,
    pub(crate) project: String,
    kafka_port: u16,
    pg_port: u16,
}

impl Stack {
    pub(crate) fn new(extra_services: &str) -> Stack {
        require_docker();
        let project = unique("kt").replace('_', "-");
        let (kafka_port, pg_port) = (free_port(), free_port());
        let kart = Kart::new()
            .env("KAFKA_BOOTSTRAP_SERVERS", format!("localhost:{kafka_port}"))
            .env("POSTGRES_HOST", "localhost")
            .env("POSTGRES_PORT", pg_port.to_string())
            .env("PGSSLMODE", "disable");
        let stack = Stack { kart, project, kafka_port, pg_port };
        stack.write_compose(extra_services);
        stack
    }

    fn compose(&self, extra_services: &str) -> String {
        let p = &self.project;
        format!(
            "name: {p}\nservices:\n  broker:\n    image: {tansu}\n    container_name: {p}-broker\n    environment:\n      ADVERTISED_LISTENER_URL: tcp://localhost:{kp}\n    ports: [\"{kp}:9092\"]\n    volumes: [broker-data:/var/lib/tansu]\n  postgres:\n    image: {pg}\n    container_name: {p}-postgres\n    command: [postgres, -c, wal_level=logical]\n    environment:\n      POSTGRES_USER: ${{POSTGRES_USER}}\n      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD}}\n      POSTGRES_DB: ${{POSTGRES_DB:-ecommerce}}\n    ports: [\"{pp}:5432\"]\n    volumes: [pg-data:/var/lib/postgresql/data]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready -U ${{POSTGRES_USER}}\"]\n      interval: 1s\n      timeout: 3s\n      retries: 60\n{extra_services}volumes:\n  broker-data:\n  pg-data:\n",
            tansu = tansu_image(),
            pg = pg_image(),
            kp = self.kafka_port,
            pp = self.pg_port,
        )
    }

    fn write_compose(&self, extra_services: &str) {
        self.kart.write("compose-local.yml", &self.compose(extra_services));
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.project)
    }

    fn query(&self, query: &str) -> Vec<tokio_postgres::Row> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let conn = format!("host=127.0.0.1 port={} user=postgres password=postgres dbname=ecommerce connect_timeout=5", self.pg_port);
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.expect("connect to the stack's postgres");
            tokio::spawn(connection);
            client.query(query, &[]).await.unwrap_or_else(|e| panic!("{query}: {e}"))
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.kart.run(&["platform", "stop", "--volumes", "--yes"]);
        for id in project_containers(&self.project) {
            docker(&["rm", "-f", &id]);
        }
        for volume in project_volumes(&self.project) {
            docker(&["volume", "rm", "-f", &volume]);
        }
        docker(&["network", "rm", &format!("{}_default", self.project)]);
    }
}

fn service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn docker_start_initialises_converges_and_stop_keeps_data_until_volumes() {
    let stack = Stack::new("");
    let kart = &stack.kart;
    // --pull always: the images come from the registry, with progress lines.
    let run = kart.run(&["-o", "json", "platform", "start", "--backend", "docker", "--pull", "always", "--wait-timeout", "90s"]);
    run.ok();
    assert!(run.stderr.contains(&format!("Pulled {}", pg_image())), "{}", run.stderr);
    let first = run.json();
    assert_eq!(first["backend"], "docker");
    assert_eq!(service(&first, "broker")["probe"], "Kafka metadata");
    assert_eq!(service(&first, "postgres")["probe"], "SELECT 1");
    assert_eq!(service(&first, "postgres")["action"], "created");
    // Initialised through the containers: topics on the broker, tables in the database.
    assert!(first["init"]["topics"].as_array().unwrap().iter().any(|t| t["name"] == "order-events"), "{first}");
    assert_eq!(stack.query("SELECT count(*) FROM products")[0].get::<_, i64>(0), 16);

    // kart's own SELECT 1 answers before the container's healthcheck has
    // run once; the engine reports healthy within an interval (1s) after.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let run = kart.run(&["-o", "json", "platform", "status"]);
        run.ok();
        let status = run.json();
        if service(&status, "postgres")["health"] == "healthy" || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    for name in ["broker", "postgres"] {
        let row = service(&status, name);
        assert_eq!(row["state"], "running", "{row}");
        assert_eq!(row["backend"], "docker");
    }
    assert_eq!(service(&status, "postgres")["health"], "healthy");
    assert_eq!(service(&status, "broker")["urls"][0], format!("localhost:{}", stack.kafka_port));
    assert_eq!(service(&status, "postgres")["ports"][0], stack.pg_port);
    let text = kart.run(&["platform", "status"]);
    assert!(text.stdout.contains(&format!("postgresql://postgres@localhost:{}/ecommerce", stack.pg_port)), "{}", text.stdout);

    // Compose's labels, so `docker compose` sees the stack, and kart's own.
    let labels = docker(&["inspect", &stack.container("postgres"), "--format", "{{json .Config.Labels}}"]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["com.docker.compose.project"], stack.project.as_str());
    assert_eq!(labels["com.docker.compose.service"], "postgres");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert_eq!(labels["io.kart.project"], stack.project.as_str());
    assert!(labels["com.docker.compose.config-hash"].as_str().unwrap().len() == 64);

    // A second start changes nothing.
    let second = kart.run(&["-o", "json", "platform", "start", "--backend", "docker"]);
    second.ok();
    let second = second.json();
    for name in ["broker", "postgres"] {
        assert_eq!(service(&second, name)["action"], "up to date");
        assert_eq!(service(&second, name)["id"], service(&first, name)["id"], "same container");
    }

    // stop keeps the volumes: a row written before survives stop + start.
    stack.query("UPDATE products SET price = 123.45 WHERE product_id = 'PROD_0001'");
    let stop = kart.run(&["platform", "stop"]);
    stop.ok();
    assert!(project_containers(&stack.project).is_empty(), "containers remain after stop");
    assert_eq!(project_volumes(&stack.project).len(), 2);
    kart.run(&["platform", "start", "--no-init", "--wait-timeout", "90s"]).ok();
    let price: f64 = stack.query("SELECT price::float8 FROM products WHERE product_id = 'PROD_0001'")[0].get(0);
    assert_eq!(price, 123.45);

    // --volumes deletes the data, and asks first.
    kart.run(&["platform", "stop", "--volumes"]).code(1);
    kart.run(&["platform", "stop", "--volumes", "--yes"]).ok();
    assert!(project_containers(&stack.project).is_empty());
    assert!(project_volumes(&stack.project).is_empty(), "volumes remain after stop --volumes");
}

#[test]
fn a_held_port_or_container_name_fails_before_anything_is_created() {
    let stack = Stack::new("");
    let kart = &stack.kart;
    // A port held by another process: named with its service and holder.
    let holder = TcpListener::bind(("127.0.0.1", stack.pg_port)).unwrap();
    let run = kart.run(&["platform", "start", "--backend", "docker"]);
    run.code(1);
    assert!(run.stderr.contains(&format!("port {} (service postgres) is held by process", stack.pg_port)), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("pid {}", std::process::id())), "{}", run.stderr);
    assert!(project_containers(&stack.project).is_empty(), "something was created");
    drop(holder);

    // A container name held by a container kart did not create.
    let name = stack.container("broker");
    docker(&["create", "--name", &name, &pg_image(), "true"]);
    let run = kart.run(&["platform", "start", "--backend", "docker"]);
    docker(&["rm", "-f", &name]);
    run.code(1);
    assert!(run.stderr.contains(&format!("container name {name} (service broker) is taken by a container kart did not create")), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("docker rm -f {name}")), "{}", run.stderr);
    assert!(project_containers(&stack.project).is_empty(), "something was created");
}

/// A service whose healthcheck never passes (a long retry budget, so it
/// never turns unhealthy either).
fn never_healthy(image: &str) -> String {
    format!(
        "  stuck:\n    image: {image}\n    entrypoint: [\"sh\", \"-c\", \"echo stuck-service-says-hello; sleep 600\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 1s\n      retries: 1000\n"
    )
}

#[test]
fn a_service_that_never_gets_healthy_fails_at_the_wait_timeout_with_its_logs() {
    let stack = Stack::new(&never_healthy(&pg_image()));
    let started = Instant::now();
    let run = stack.kart.run(&["platform", "start", "--backend", "docker", "--wait-timeout", "8s"]);
    run.code(2);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(run.stderr.contains("not ready within 8s (--wait-timeout)"), "{}", run.stderr);
    assert!(run.stderr.contains("stuck-service-says-hello"), "the service's last log lines: {}", run.stderr);
    assert!(run.stderr.contains("healthcheck not passing"), "{}", run.stderr);
}

#[test]
fn a_container_that_exits_fails_fast_with_its_logs() {
    let extra = format!("  crashing:\n    image: {}\n    entrypoint: [\"sh\", \"-c\", \"echo about-to-crash; exit 3\"]\n", pg_image());
    let stack = Stack::new(&extra);
    let started = Instant::now();
    let run = stack.kart.run(&["platform", "start", "--backend", "docker", "--wait-timeout", "120s"]);
    run.code(2);
    assert!(started.elapsed() < Duration::from_secs(60), "did not fail fast: {:?}", started.elapsed());
    assert!(run.stderr.contains("service crashing") && run.stderr.contains("exited with code 3"), "{}", run.stderr);
    assert!(run.stderr.contains("about-to-crash"), "{}", run.stderr);
}

#[test]
fn ctrl_c_during_start_leaves_nothing_that_stop_cannot_remove() {
    let stack = Stack::new(&never_healthy(&pg_image()));
    let mut child = stack.kart.command(&["platform", "start", "--backend", "docker", "--wait-timeout", "5m"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while project_containers(&stack.project).len() < 3 {
        assert!(Instant::now() < deadline, "containers never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let stop = stack.kart.run(&["platform", "stop", "--volumes", "--yes"]);
    stop.ok();
    let left = project_containers(&stack.project);
    assert!(left.is_empty(), "stop left containers {left:?}: {}", stop.stderr);
    assert!(project_volumes(&stack.project).is_empty(), "stop left volumes");
    assert!(docker(&["network", "ls", "-q", "--filter", &format!("name={}_default", stack.project)]).is_empty());
}

#[test]
fn unpullable_images_make_auto_choose_native_and_docker_refuse() {
    let extra = format!("  extra:\n    image: {REGISTRY}/kart-test/not-there:1\n");
    let stack = Stack::new(&extra);
    let kart = &stack.kart;
    let run = kart.run(&["platform", "start", "--backend", "docker"]);
    run.code(2);
    assert!(run.stderr.contains(&format!("image {REGISTRY}/kart-test/not-there:1 cannot be used")), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was created"), "{}", run.stderr);
    assert!(project_containers(&stack.project).is_empty());

    let run = kart.run(&["-o", "json", "platform", "start", "--wait-timeout", "60s"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["backend"], "native");
    let reason = report["backendReason"].as_str().unwrap();
    assert!(reason.contains("kart-test/not-there:1"), "{reason}");
    assert!(run.stderr.contains("kart-test/not-there:1"), "says why: {}", run.stderr);
    assert!(report["skipped"].as_array().unwrap().iter().any(|s| s["service"] == "extra"), "{report}");
    assert!(project_containers(&stack.project).is_empty());
    kart.run(&["platform", "stop", "--volumes", "--yes"]).ok();
}

/// A project for the native backend on ports of its own.
pub(crate) fn native_kart() -> (Kart, u16, u16) {
    let (kafka_port, pg_port) = (free_port(), free_port());
    let kart = Kart::new()
        .env("KAFKA_BOOTSTRAP_SERVERS", format!("localhost:{kafka_port}"))
        .env("POSTGRES_HOST", "localhost")
        .env("POSTGRES_PORT", pg_port.to_string())
        .env("PGSSLMODE", "disable")
        .env("KART_TANSU_BIN", crate::support::tansu_bin().display().to_string());
    // The built-in compose file publishes 19092 and 5432; this project's
    // ports are the ones kart's clients use.
    kart.write(
        "compose-local.yml",
        &format!("name: {}\nservices:\n  redpanda:\n    image: none/redpanda\n    ports: [\"{kafka_port}:9092\"]\n  postgres:\n    image: none/postgres\n    ports: [\"{pg_port}:5432\"]\n  kpow:\n    image: none/kpow\n    ports: [\"{}:3000\"]\n", unique("kn").replace('_', "-"), free_port()),
    );
    (kart, kafka_port, pg_port)
}

#[test]
fn native_backend_starts_restarts_and_stops_with_data_kept() {
    let (kart, kafka_port, pg_port) = native_kart();
    let run = kart.run(&["-o", "json", "platform", "start", "--backend", "native", "--wait-timeout", "60s"]);
    run.ok();
    let report = run.json();
    assert_eq!(report["backend"], "native");
    assert_eq!(service(&report, "postgres")["probe"], "SELECT 1");
    assert_eq!(service(&report, "redpanda")["probe"], "Kafka metadata");
    assert!(report["skipped"].as_array().unwrap().iter().any(|s| s["service"] == "kpow"), "{report}");
    assert!(kart.dir().join(".kart/native/postgres/PG_VERSION").is_file());

    let status = kart.run(&["-o", "json", "platform", "status"]);
    let status = status.json();
    assert_eq!(service(&status, "postgres")["state"], "running");
    assert_eq!(service(&status, "postgres")["health"], "healthy");
    assert_eq!(service(&status, "redpanda")["state"], "running");
    assert_eq!(service(&status, "redpanda")["urls"][0], format!("localhost:{kafka_port}"));
    assert_eq!(service(&status, "kpow")["state"], "not provided");

    // Up to date on a second start; data survives stop + start.
    let again = kart.run(&["-o", "json", "platform", "start", "--backend", "native"]);
    assert_eq!(service(&again.json(), "postgres")["action"], "up to date");
    let pg = |q: &str| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let conn = format!("host=127.0.0.1 port={pg_port} user=postgres password=postgres dbname=ecommerce connect_timeout=5");
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(connection);
            client.query(q, &[]).await.unwrap()
        })
    };
    pg("UPDATE products SET price = 77.5 WHERE product_id = 'PROD_0002'");
    kart.run(&["platform", "stop"]).ok();
    let status = kart.run(&["-o", "json", "platform", "status"]).json();
    assert_eq!(service(&status, "postgres")["state"], "stopped");
    assert_eq!(service(&status, "redpanda")["state"], "stopped");
    assert!(std::net::TcpStream::connect(("127.0.0.1", kafka_port)).is_err(), "tansu still listens");
    kart.run(&["platform", "start", "--backend", "native", "--no-init"]).ok();
    let price: f64 = pg("SELECT price::float8 FROM products WHERE product_id = 'PROD_0002'")[0].get(0);
    assert_eq!(price, 77.5);
    let topics = kart.run(&["-o", "json", "topics", "list"]);
    assert!(topics.stdout.contains("\"order-events\""), "topics survived: {}", topics.stdout);
    let logs = kart.run(&["platform", "logs", "postgres", "--tail", "5"]);
    logs.ok();
    kart.run(&["platform", "stop", "--volumes", "--yes"]).ok();
    assert!(!kart.dir().join(".kart/native/postgres").exists());
}

#[test]
fn remote_mode_checks_credentials_then_starts_only_the_tooling() {
    require_docker();
    let broker = Broker::start_scram("remote-user", "remote-secret");
    let database = unique("kart_remote");
    sql("postgres", &format!("CREATE DATABASE {database} OWNER kart_scram"));
    let project = unique("kr").replace('_', "-");
    let compose = format!(
        "name: {project}\nservices:\n  tooling:\n    image: {}\n    container_name: {project}-tooling\n    entrypoint: [\"sh\", \"-c\", \"echo tooling for $$BOOTSTRAP; sleep 600\"]\n    environment:\n      BOOTSTRAP: ${{KAFKA_BOOTSTRAP_SERVERS}}\n",
        pg_image()
    );
    let kart = |password: &str| {
        let kart = Kart::new()
            .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
            .env("KAFKA_USER", "remote-user")
            .env("KAFKA_PASSWORD", password)
            .env("POSTGRES_HOST", "127.0.0.1")
            .env("POSTGRES_PORT", pg_port().to_string())
            .env("POSTGRES_DB", database.clone())
            .env("POSTGRES_USER", "kart_scram")
            .env("POSTGRES_PASSWORD", "kart-scram-secret")
            .env("POSTGRES_REPLICATION_SLOT", format!("{database}_cdc"))
            .env("PGSSLMODE", "disable");
        kart.write("compose-remote.yml", &compose);
        kart
    };
    // A wrong Kafka password fails before any container exists.
    let wrong = kart("not-the-password");
    let run = wrong.run(&["--mode", "remote", "platform", "start", "--connect-timeout", "5s"]);
    run.code(2);
    assert!(run.stderr.contains("authentication failed for user remote-user"), "{}", run.stderr);
    assert!(project_containers(&project).is_empty(), "a container was created");

    let right = kart("remote-secret");
    let run = right.run(&["-o", "json", "--mode", "remote", "platform", "start", "--wait-timeout", "60s"]);
    let cleanup = || {
        right.run(&["--mode", "remote", "platform", "stop", "--yes"]);
        for id in project_containers(&project) {
            docker(&["rm", "-f", &id]);
        }
        docker(&["network", "rm", &format!("{project}_default")]);
        sql("postgres", &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
    };
    if run.code != 0 {
        cleanup();
    }
    run.ok();
    let report = run.json();
    assert_eq!(report["mode"], "remote");
    let services: Vec<&str> = report["services"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(services, ["tooling"]);
    assert_eq!(project_containers(&project).len(), 1);
    assert!(report["init"]["topics"].as_array().unwrap().iter().any(|t| t["name"] == "order-events"));
    let tables = sql(&database, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('products', 'orders', 'order_items')");
    assert_eq!(tables[0].get::<_, i64>(0), 3);
    let logs = right.run(&["--mode", "remote", "platform", "logs", "tooling"]);
    assert!(logs.stdout.contains(&format!("tooling for {}", broker.bootstrap())), "{}", logs.stdout);
    let status = right.run(&["-o", "json", "--mode", "remote", "platform", "status"]).json();
    assert_eq!(service(&status, "kafka")["state"], "reachable");
    assert_eq!(service(&status, "postgres")["state"], "reachable");
    assert_eq!(service(&status, "tooling")["state"], "running");
    cleanup();
    assert!(project_containers(&project).is_empty());
}

#[test]
fn reset_after_work_returns_to_the_freshly_initialised_state_even_with_a_service_stopped() {
    let stack = Stack::new("");
    let kart = &stack.kart;
    kart.run(&["platform", "start", "--backend", "docker", "--wait-timeout", "90s"]).ok();
    // Work: orders in the database and on Kafka, a running job, a CDC slot.
    kart.run(&["order", "place", "--product", "PROD_0001", "--quantity", "2"]).ok();
    let before = kart.run(&["tail", "order-events", "--from", "beginning", "--until-end", "--format", "json", "--timeout", "20s"]);
    assert!(!before.stdout.trim().is_empty(), "the order reached order-events: {}", before.stderr);
    kart.run(&["job", "deploy", "order-cdc"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.query("SELECT count(*) FROM pg_replication_slots")[0].get::<_, i64>(0) == 0 {
        assert!(Instant::now() < deadline, "the CDC job made no slot");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(stack.query("SELECT count(*) FROM orders")[0].get::<_, i64>(0) > 0);
    // One service stopped behind kart's back.
    docker(&["stop", &stack.container("broker")]);

    let run = kart.run(&["-o", "json", "platform", "reset", "--yes"]);
    run.ok();
    let report = run.json();
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in ["job", "services", "topics", "schema", "CDC slot", "init"] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
    assert_eq!(stack.query("SELECT count(*) FROM orders")[0].get::<_, i64>(0), 0);
    assert_eq!(stack.query("SELECT count(*) FROM products")[0].get::<_, i64>(0), 16);
    assert_eq!(stack.query("SELECT count(*) FROM pg_replication_slots")[0].get::<_, i64>(0), 0);
    let jobs = kart.run(&["-o", "json", "job", "list"]);
    assert!(!jobs.stdout.contains("\"running\""), "a job still runs: {}", jobs.stdout);
    // The topics exist again, empty.
    let events = kart.run(&["tail", "order-events", "--from", "beginning", "--until-end", "--format", "json", "--timeout", "20s"]);
    events.ok();
    assert_eq!(events.stdout.trim(), "", "order-events kept records across the reset");
    // Without --yes and without a terminal it refuses.
    kart.run(&["platform", "reset"]).code(1);
}
