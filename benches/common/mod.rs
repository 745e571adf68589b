//! What every benchmark harness needs: the kart binary as a user runs it,
//! and a fresh in-memory tansu of its own.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KART: &str = env!("CARGO_BIN_EXE_kart");

/// `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and
/// must stay fast.
pub fn requested() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// kart with a clean environment, `env` and its own project directory.
pub fn kart<V: AsRef<std::ffi::OsStr>>(
    project: &Path,
    env: &[(&str, V)],
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(KART);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .arg("--project-dir")
        .arg(project)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs to completion; panics with kart's stderr on failure.
pub fn time(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().expect("run kart");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "kart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

pub fn tansu_bin() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    std::env::var("KART_TANSU_BIN")
        .ok()
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(|d| PathBuf::from(d).join("tansu")),
        )
        .chain(std::iter::once(
            PathBuf::from(home).join(".cargo/bin/tansu"),
        ))
        .find(|p| p.is_file())
        .expect("tansu is not installed: run `scripts/services.sh ensure-tansu`")
}

/// A tansu with `memory://` storage named `name` on a free port.
pub fn start_tansu(name: &str) -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--storage-engine",
            &format!("memory://{name}{}/", std::process::id()),
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
