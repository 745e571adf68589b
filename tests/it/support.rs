//! Test harness: the kart binary, per-test tansu brokers and the shared test
//! PostgreSQL. Every test gets its own broker, database and project
//! directory, so tests run in parallel.
//!
//! A test that cannot reach a service fails and says how to start it; none
//! passes by skipping.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const HOW_TO_START: &str = "run `bash scripts/test.sh` (starts everything), or `scripts/services.sh test-up`";

/// A finished kart run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "kart failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// A kart invocation with a clean environment and its own project directory.
pub struct Kart {
    pub project: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Kart {
    pub fn new() -> Self {
        Self { project: tempfile::tempdir().expect("tempdir"), env: Vec::new() }
    }

    pub fn dir(&self) -> &Path {
        self.project.path()
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.env.push((key.to_string(), value.into()));
    }

    /// Points the Kafka and Postgres settings at test services.
    pub fn with_broker(self, broker: &Broker) -> Self {
        self.env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
    }

    pub fn with_db(self, db: &TestDb) -> Self {
        self.env("POSTGRES_HOST", "127.0.0.1")
            .env("POSTGRES_PORT", pg_port().to_string())
            .env("POSTGRES_USER", "postgres")
            .env("POSTGRES_PASSWORD", "postgres")
            .env("POSTGRES_DB", db.name.clone())
            .env("PGSSLMODE", "disable")
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, content).expect("write project file");
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kart"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir())
            .env("NO_COLOR", "1")
            .current_dir(self.dir())
            .arg("--project-dir")
            .arg(self.dir())
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let Output { status, stdout, stderr } = self.command(args).output().expect("run kart");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }
}

pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A port nobody listens on. Port 1 is privileged and unused here; a port
/// bound and released could be picked up by another test's broker meanwhile.
pub fn closed_port() -> u16 {
    1
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn tansu_bin() -> PathBuf {
    if let Ok(path) = std::env::var("KART_TANSU_BIN") {
        if Path::new(&path).is_file() {
            return PathBuf::from(path);
        }
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("tansu"))
        .chain(std::iter::once(Path::new(&home).join(".cargo/bin/tansu")))
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("the tansu broker is not installed; {HOW_TO_START} (it runs `cargo install tansu --locked --features dynostore,libsql`)")
    })
}

/// A tansu broker of this test's own, on a free port.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    storage: String,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// In-memory storage: fast and gone when the test ends.
    pub fn start() -> Broker {
        let name = unique("kart");
        Self::launch(format!("memory://{name}/"), &[])
    }

    /// A broker that requires SCRAM-SHA-256 for `user`.
    pub fn start_scram(user: &str, password: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        // tansu resolves sqlite:// paths against its working directory.
        let storage = "sqlite://tansu.db".to_string();
        // Users can only be created while authentication is off.
        let mut open = Self::launch_in(dir, storage.clone(), &[]);
        let status = Command::new(tansu_bin())
            .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{}", open.port), "--mechanism", "scram256", user, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run tansu user create");
        assert!(status.success(), "tansu user create failed");
        let dir = open.stop_keep_dir();
        Self::launch_in(dir, storage, &["--authentication"])
    }

    fn launch(storage: String, extra: &[&str]) -> Broker {
        Self::launch_in(tempfile::tempdir().expect("tempdir"), storage, extra)
    }

    fn launch_in(dir: tempfile::TempDir, storage: String, extra: &[&str]) -> Broker {
        for _attempt in 0..5 {
            let port = free_port();
            let mut args = vec![
                "broker".to_string(),
                "--listener-url".into(),
                format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url".into(),
                format!("tcp://127.0.0.1:{port}"),
                "--storage-engine".into(),
                storage.clone(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let log = std::fs::File::create(dir.path().join(format!("tansu-{port}.log"))).expect("log file");
            let mut child = Command::new(tansu_bin())
                .args(&args)
                .env("RUST_LOG", "warn")
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn tansu");
            if wait_for_port(port, Duration::from_secs(10)) {
                // Another test's broker may have taken the same port first;
                // then ours exits on the failed bind and we try another.
                std::thread::sleep(Duration::from_millis(50));
                if matches!(child.try_wait(), Ok(None)) {
                    return Broker { child: Some(child), port, storage, args, _dir: dir };
                }
                continue;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("tansu did not start listening (see its log under {}); {HOW_TO_START}", dir.path().display());
    }

    fn stop_keep_dir(&mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- PostgreSQL -----------------------------------------------------------

pub fn pg_port() -> u16 {
    std::env::var("KART_TEST_PG_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(55432)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Runs SQL against the test server as the superuser.
pub fn sql(database: &str, query: &str) -> Vec<tokio_postgres::Row> {
    let rt = runtime();
    rt.block_on(async {
        let conn = format!("host=127.0.0.1 port={} user=postgres password=postgres dbname={database} connect_timeout=5", pg_port());
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
            panic!("the test PostgreSQL on 127.0.0.1:{} is not reachable ({e}); {HOW_TO_START}", pg_port())
        });
        tokio::spawn(connection);
        client.query(query, &[]).await.unwrap_or_else(|e| panic!("{query}: {e}"))
    })
}

/// A database name of this test's own; dropped (with its slots) at the end.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        // Fail early and clearly when the server is not there.
        sql("postgres", "SELECT 1");
        TestDb { name: unique("kart_t") }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::panic::catch_unwind(move || {
            sql("postgres", &format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}' AND NOT active"));
            sql("postgres", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        });
    }
}

/// Replaces values that differ between runs so snapshots stay stable.
pub fn redact(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        if !from.is_empty() {
            out = out.replace(from, to);
        }
    }
    out
}

/// kart in a real pseudo-terminal (util-linux `script` provides it), for
/// the commands that draw in place: what it shows is collected as it
/// arrives, keys are typed into it.
pub struct Terminal {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    screen: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    /// Runs `kart ARGS` for `kart`'s project with its environment, on a
    /// 120×30 terminal without colour.
    pub fn spawn(kart: &Kart, args: &[&str]) -> Terminal {
        use std::io::Read;
        let command = std::iter::once(env!("CARGO_BIN_EXE_kart").to_string())
            .chain(["--project-dir".to_string(), kart.dir().display().to_string()])
            .chain(args.iter().map(|a| format!("'{}'", a.replace('\'', r"'\''"))))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("script");
        cmd.args(["-qfec", &command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", kart.dir())
            .env("TERM", "xterm-256color")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "120")
            .env("LINES", "30")
            .current_dir(kart.dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &kart.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("script (util-linux) runs kart in a pseudo-terminal");
        let (tx, screen) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Terminal { child, stdin, screen, seen: Vec::new() }
    }

    /// Everything the terminal showed so far.
    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits until the terminal showed `needle`; fails with what it showed.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.seen().contains(needle) {
            match self.screen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(bytes) => self.seen.extend(bytes),
                Err(_) => panic!("{needle:?} never appeared within {within:?}; the terminal showed {:?}", self.seen()),
            }
        }
    }

    pub fn press(&mut self, keys: &[u8]) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("terminal input open");
        stdin.write_all(keys).expect("type into the terminal");
        stdin.flush().expect("type into the terminal");
    }

    /// The exit code, once kart ended; fails if it runs past `within`.
    #[track_caller]
    pub fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for script") {
                // The rest of what it printed.
                while let Ok(bytes) = self.screen.recv_timeout(Duration::from_millis(200)) {
                    self.seen.extend(bytes);
                }
                return status.code();
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("kart did not end within {within:?}; the terminal showed {:?}", self.seen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
