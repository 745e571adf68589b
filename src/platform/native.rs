//! The native backend: the broker and the database as local processes, on
//! the ports kart's clients use — PostgreSQL from this machine's
//! `initdb`/`pg_ctl` (data under `.kart/native/postgres`, `wal_level=logical`)
//! and tansu with `sqlite://` storage so topics and offsets survive a stop.
//! The Kpow, Flex and Flink containers have no native counterpart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::exit::{KartError, Result};
use crate::supervise::{Liveness, StopOutcome, Supervisor};

pub const TANSU: &str = "tansu";

/// Where the native services keep their files.
#[derive(Debug, Clone)]
pub struct NativeDirs {
    pub root: PathBuf,
}

impl NativeDirs {
    pub fn new(project_dir: &Path) -> Self {
        NativeDirs { root: project_dir.join(".kart").join("native") }
    }
    pub fn pg_data(&self) -> PathBuf {
        self.root.join("postgres")
    }
    pub fn pg_log(&self) -> PathBuf {
        self.root.join("logs").join("postgres.log")
    }
    pub fn supervisor(&self) -> Supervisor {
        Supervisor::at(self.root.join("run"), self.root.join("logs"))
    }
    pub fn tansu_db(&self) -> PathBuf {
        self.root.join("tansu.db")
    }
}

/// The binaries the native backend runs, and where they were found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binaries {
    pub pg_bindir: std::result::Result<PathBuf, String>,
    pub tansu: std::result::Result<PathBuf, String>,
}

impl Binaries {
    pub fn find(pg_bindir_setting: &str, tansu_setting: &str) -> Binaries {
        Binaries { pg_bindir: find_pg_bindir(pg_bindir_setting), tansu: find_tansu(tansu_setting) }
    }

    /// Why the native backend cannot run here, if it cannot.
    pub fn missing(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Err(e) = &self.pg_bindir {
            why.push(e.clone());
        }
        if let Err(e) = &self.tansu {
            why.push(e.clone());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

fn find_pg_bindir(setting: &str) -> std::result::Result<PathBuf, String> {
    if !setting.trim().is_empty() {
        let dir = PathBuf::from(setting.trim());
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(format!("KART_PG_BINDIR={} holds no initdb", dir.display()))
        };
    }
    if let Ok(output) = std::process::Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_string_lossy().parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL's initdb not found (install it: `sudo apt-get install postgresql` or `brew install postgresql@15`, or set KART_PG_BINDIR)".to_string()
    })
}

fn find_tansu(setting: &str) -> std::result::Result<PathBuf, String> {
    if !setting.trim().is_empty() {
        let path = PathBuf::from(setting.trim());
        return if path.is_file() { Ok(path) } else { Err(format!("KART_TANSU_BIN={} does not exist", path.display())) };
    }
    let on_path = std::env::var("PATH").unwrap_or_default().split(':').map(|d| Path::new(d).join("tansu")).find(|p| p.is_file());
    let cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu")).filter(|p| p.is_file());
    on_path.or(cargo).ok_or_else(|| {
        "the tansu broker was not found (install it: `cargo install tansu --locked --features dynostore,libsql`, or set KART_TANSU_BIN)".to_string()
    })
}

/// State of one native service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStatus {
    pub state: String,
    pub pid: Option<u32>,
    pub log: PathBuf,
}

/// Runs commands as the `postgres` user when kart runs as root: initdb
/// refuses root, and the server must not run with root's powers.
fn as_postgres_user(command: &mut tokio::process::Command) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or_else(|| KartError::infra("native-postgres-user", "kart runs as root, and there is no `postgres` user to run PostgreSQL as")
            .with_hint("create one (`useradd -r postgres`) or run kart as a normal user"))?;
    command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    Ok(())
}

fn postgres_owner() -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    nix::unistd::User::from_name("postgres").ok().flatten().map(|u| (u.uid, u.gid))
}

async fn run(bin: &Path, args: &[String], what: &str) -> Result<std::process::Output> {
    let mut command = tokio::process::Command::new(bin);
    command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    as_postgres_user(&mut command)?;
    command.output().await.map_err(|e| KartError::infra("native-postgres", format!("cannot run {} ({what}): {e}", bin.display())))
}

fn output_text(output: &std::process::Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    text
}

/// Makes the data directory (and, as root, hands it to `postgres`).
fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| KartError::infra("io", format!("cannot create {}: {e}", dir.display())))?;
    if let Some((uid, gid)) = postgres_owner() {
        nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(|e| KartError::infra("io", format!("cannot hand {} to postgres: {e}", dir.display())))?;
        // The server must reach its data through every parent directory.
        let mut ancestor = dir.parent();
        while let Some(parent) = ancestor {
            if let Ok(meta) = std::fs::metadata(parent) {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o001 == 0 {
                    return Err(KartError::infra(
                        "native-postgres-permissions",
                        format!("the postgres user cannot enter {} (mode {:o})", parent.display(), meta.permissions().mode() & 0o777),
                    )
                    .with_hint(format!("`chmod o+x {}`, or use a project directory outside it", parent.display())));
                }
            }
            ancestor = parent.parent();
        }
    }
    Ok(())
}

/// The PostgreSQL server of the native backend.
pub struct NativePostgres {
    pub bindir: PathBuf,
    pub dirs: NativeDirs,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl NativePostgres {
    fn data(&self) -> PathBuf {
        self.dirs.pg_data()
    }

    pub fn initialised(&self) -> bool {
        self.data().join("PG_VERSION").is_file()
    }

    /// initdb once, with the configured superuser and password.
    pub async fn init(&self) -> Result<bool> {
        if self.initialised() {
            return Ok(false);
        }
        let data = self.data();
        prepare_dir(&self.dirs.root)?;
        prepare_dir(&data)?;
        let logs = self.dirs.pg_log();
        prepare_dir(logs.parent().unwrap_or(&self.dirs.root))?;
        let pwfile = self.dirs.root.join(".pgpass-init");
        std::fs::write(&pwfile, format!("{}\n", self.password)).map_err(|e| KartError::infra("io", format!("cannot write {}: {e}", pwfile.display())))?;
        if let Some((uid, gid)) = postgres_owner() {
            let _ = nix::unistd::chown(&pwfile, Some(uid), Some(gid));
        }
        let args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            self.user.clone(),
            format!("--pwfile={}", pwfile.display()),
            "-A".into(),
            "scram-sha-256".into(),
            "-E".into(),
            "UTF8".into(),
            "--no-instructions".into(),
        ];
        let output = run(&self.bindir.join("initdb"), &args, "initdb").await;
        let _ = std::fs::remove_file(&pwfile);
        let output = output?;
        if !output.status.success() {
            return Err(KartError::infra("native-postgres-init", format!("initdb failed: {}", output_text(&output))));
        }
        // The workshop's server settings (compose-local.yml's postgres command).
        let conf = "\n# kart's native backend (the workshop's settings)\nwal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\nmax_slot_wal_keep_size = 1GB\n";
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| KartError::infra("io", format!("cannot configure {}: {e}", data.display())))?;
        Ok(true)
    }

    pub async fn running(&self) -> bool {
        if !self.initialised() {
            return false;
        }
        let args = vec!["-D".to_string(), self.data().display().to_string(), "status".into()];
        matches!(run(&self.bindir.join("pg_ctl"), &args, "pg_ctl status").await, Ok(o) if o.status.success())
    }

    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }

    /// Starts the server on `port`, loopback only. The port and socket are
    /// passed at start, so a changed POSTGRES_PORT needs no re-init.
    pub async fn start(&self) -> Result<()> {
        let data = self.data();
        // A Unix socket path is limited to ~107 bytes; deep project
        // directories go without one (kart connects over TCP anyway).
        let socket_dir = if data.as_os_str().len() < 80 { data.display().to_string() } else { String::new() };
        let options = format!("-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{socket_dir}'", self.port);
        let args = vec![
            "-D".to_string(),
            data.display().to_string(),
            "-l".into(),
            self.dirs.pg_log().display().to_string(),
            "-o".into(),
            options,
            "-w".into(),
            "-t".into(),
            "60".into(),
            "start".into(),
        ];
        let output = run(&self.bindir.join("pg_ctl"), &args, "pg_ctl start").await?;
        if !output.status.success() {
            let log = tail_file(&self.dirs.pg_log(), 15);
            return Err(KartError::infra(
                "native-postgres-start",
                format!("PostgreSQL did not start on port {}: {}\n{}", self.port, output_text(&output), log.iter().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")),
            )
            .with_hint(format!("see {}", self.dirs.pg_log().display())));
        }
        Ok(())
    }

    pub async fn stop(&self) -> Result<bool> {
        if !self.running().await {
            return Ok(false);
        }
        let args = vec!["-D".to_string(), self.data().display().to_string(), "-m".into(), "fast".into(), "-w".into(), "stop".into()];
        let output = run(&self.bindir.join("pg_ctl"), &args, "pg_ctl stop").await?;
        if !output.status.success() {
            return Err(KartError::infra("native-postgres-stop", format!("pg_ctl stop failed: {}", output_text(&output))));
        }
        Ok(true)
    }
}

/// The tansu broker of the native backend, supervised like a job.
pub struct NativeTansu {
    pub bin: PathBuf,
    pub dirs: NativeDirs,
    pub port: u16,
}

impl NativeTansu {
    pub fn liveness(&self) -> Result<Liveness> {
        self.dirs.supervisor().liveness(TANSU)
    }

    pub fn start(&self) -> Result<bool> {
        let sup = self.dirs.supervisor();
        let Some(lock) = sup.try_lock(TANSU)? else {
            return Ok(false);
        };
        std::fs::create_dir_all(&self.dirs.root).map_err(|e| KartError::infra("io", format!("cannot create {}: {e}", self.dirs.root.display())))?;
        let args: Vec<String> = vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://127.0.0.1:{}", self.port),
            "--advertised-listener-url".into(),
            format!("tcp://localhost:{}", self.port),
            "--storage-engine".into(),
            // tansu resolves sqlite:// paths against its working directory.
            "sqlite://tansu.db".into(),
        ];
        let child = sup.spawn_holding_lock(TANSU, lock, &self.bin, &args, &self.dirs.root)?;
        sup.write_record(&crate::supervise::JobRecord {
            name: TANSU.into(),
            pid: child.id(),
            started_at: crate::supervise::now_ms(),
            config_hash: format!("port={}", self.port),
            kart_version: env!("CARGO_PKG_VERSION").into(),
            args,
        })?;
        Ok(true)
    }

    pub fn stop(&self) -> Result<StopOutcome> {
        self.dirs.supervisor().stop(TANSU, Duration::from_secs(10))
    }

    pub fn log(&self) -> PathBuf {
        self.dirs.supervisor().log_path(TANSU)
    }
}

/// The last `lines` lines of a log file.
pub fn tail_file(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|s| s.to_string()).collect()
}
