//! Background processes of kart itself, supervised through files under
//! `.kart/` (design §9): a job record, a lock held for the job's lifetime, a
//! status file rewritten every second, and a log.
//!
//! The lock is the source of truth for "running": the kernel releases it when
//! the process dies, however it dies, so a SIGKILLed job never looks alive and
//! a reused pid never looks like the job. The pid in the record is only used
//! to send signals, and only while the lock is held.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::exit::{KartError, Result};

/// Where a project's supervised processes keep their files.
#[derive(Debug, Clone)]
pub struct Supervisor {
    jobs_dir: PathBuf,
    logs_dir: PathBuf,
}

/// What a job writes about itself when it starts (`.kart/jobs/NAME.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub name: String,
    pub pid: u32,
    /// Epoch ms.
    pub started_at: i64,
    /// Hash of the settings the job runs with, to tell a deploy whether the
    /// running copy is out of date.
    pub config_hash: String,
    pub kart_version: String,
    pub args: Vec<String>,
}

/// Whether a job runs, judged by its lock.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    /// Never started in this project.
    NeverStarted,
    /// Not running; the record of its last run, if any.
    Stopped(Option<JobRecord>),
    /// Running; the record may be missing for a moment while it starts.
    Running(Option<JobRecord>),
}

/// The lock a running job holds; dropping it (or dying) releases it.
#[derive(Debug)]
pub struct JobLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl JobLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self._lock.as_raw_fd()
    }
}

impl Supervisor {
    pub fn new(project_dir: &Path) -> Self {
        let kart = project_dir.join(".kart");
        Supervisor { jobs_dir: kart.join("jobs"), logs_dir: kart.join("logs") }
    }

    /// A supervisor keeping its files elsewhere (the native backend's
    /// services live under `.kart/native/`, apart from the jobs).
    pub fn at(jobs_dir: PathBuf, logs_dir: PathBuf) -> Self {
        Supervisor { jobs_dir, logs_dir }
    }

    pub fn record_path(&self, name: &str) -> PathBuf {
        self.jobs_dir.join(format!("{name}.json"))
    }

    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.jobs_dir.join(format!("{name}.lock"))
    }

    pub fn status_path(&self, name: &str) -> PathBuf {
        self.jobs_dir.join(format!("{name}.status.json"))
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs_dir.join(format!("{name}.log"))
    }

    fn ensure_dirs(&self) -> Result<()> {
        for dir in [&self.jobs_dir, &self.logs_dir] {
            fs::create_dir_all(dir).map_err(|e| io_error(&format!("cannot create {}", dir.display()), e))?;
        }
        Ok(())
    }

    /// Takes the job's lock without waiting; `None` when another process
    /// holds it.
    pub fn try_lock(&self, name: &str) -> Result<Option<JobLock>> {
        self.ensure_dirs()?;
        let path = self.lock_path(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&format!("cannot open {}", path.display()), e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(JobLock { _lock: lock, path })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(KartError::infra("io", format!("cannot lock {}: {errno}", path.display()))),
        }
    }

    pub fn liveness(&self, name: &str) -> Result<Liveness> {
        let record = self.read_record(name);
        if !self.lock_path(name).exists() {
            return Ok(match record {
                Some(record) => Liveness::Stopped(Some(record)),
                None => Liveness::NeverStarted,
            });
        }
        match self.try_lock(name)? {
            Some(_released_on_drop) => Ok(if record.is_some() || self.status_path(name).exists() {
                Liveness::Stopped(record)
            } else {
                Liveness::NeverStarted
            }),
            None => Ok(Liveness::Running(record)),
        }
    }

    pub fn read_record(&self, name: &str) -> Option<JobRecord> {
        read_json(&self.record_path(name))
    }

    pub fn write_record(&self, record: &JobRecord) -> Result<()> {
        write_json_atomically(&self.record_path(&record.name), record)
    }

    pub fn read_status<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        read_json(&self.status_path(name))
    }

    pub fn write_status<T: Serialize>(&self, name: &str, status: &T) -> Result<()> {
        write_json_atomically(&self.status_path(name), status)
    }

    /// Names of the jobs that have a record in this project.
    pub fn known_jobs(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.jobs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".json")?;
                (!stem.ends_with(".status")).then(|| stem.to_owned())
            })
            .collect();
        names.sort();
        names
    }

    /// The job's log opened for appending, twice: for stdout and stderr.
    fn open_log(&self, name: &str) -> Result<(std::fs::File, std::fs::File)> {
        self.ensure_dirs()?;
        let log_path = self.log_path(name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_error(&format!("cannot open {}", log_path.display()), e))?;
        let log_err = log.try_clone().map_err(|e| io_error("cannot duplicate the log file handle", e))?;
        Ok((log, log_err))
    }

    /// Starts `exe args…` as a detached process in a new session (closing the
    /// terminal does not stop it), stdin from /dev/null, stdout and stderr
    /// appended to the job's log.
    pub fn spawn_detached(&self, name: &str, exe: &Path, args: &[String], env: &[(String, String)]) -> Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        let (log, log_err) = self.open_log(name)?;
        let mut command = std::process::Command::new(exe);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // The log is a file: no colour codes in it.
            .env("NO_COLOR", "1");
        // SAFETY: setsid is async-signal-safe and touches nothing of the
        // parent's state; it is the only thing run between fork and exec.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
        }
        command.spawn().map_err(|e| io_error(&format!("cannot start {}", exe.display()), e))
    }

    /// Starts a program that is not kart (a broker) so that *it* holds
    /// `lock`: the lock's descriptor is inherited across exec, so the lock
    /// lives exactly as long as the program, like a kart job's own lock.
    /// Runs in a new session with its output appended to its log.
    pub fn spawn_holding_lock(&self, name: &str, lock: JobLock, exe: &Path, args: &[String], cwd: &Path) -> Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        let (log, log_err) = self.open_log(name)?;
        let fd = lock.raw_fd();
        let mut command = std::process::Command::new(exe);
        command.args(args).current_dir(cwd).stdin(std::process::Stdio::null()).stdout(log).stderr(log_err);
        // SAFETY: only async-signal-safe calls (setsid, fcntl) between fork
        // and exec, on a descriptor this process owns.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                let flags = nix::fcntl::fcntl(std::os::fd::BorrowedFd::borrow_raw(fd), nix::fcntl::FcntlArg::F_GETFD).map_err(std::io::Error::from)?;
                let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
                nix::fcntl::fcntl(std::os::fd::BorrowedFd::borrow_raw(fd), nix::fcntl::FcntlArg::F_SETFD(flags)).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| io_error(&format!("cannot start {}", exe.display()), e))?;
        // Dropping the lock would unlock it (nix's Flock unlocks on drop),
        // and the lock belongs to the open file description the child
        // shares: the child would lose it. Forgetting leaves our descriptor
        // open until this short-lived process exits, which keeps nothing
        // alive that the child does not.
        std::mem::forget(lock);
        Ok(child)
    }

    /// Asks a running job to stop (SIGTERM), waits up to `grace` for its
    /// lock to be released, then kills it (SIGKILL). Returns how it ended.
    pub fn stop(&self, name: &str, grace: Duration) -> Result<StopOutcome> {
        let Liveness::Running(record) = self.liveness(name)? else {
            return Ok(StopOutcome::NotRunning);
        };
        let Some(record) = record else {
            return Err(KartError::infra(
                "job-record-missing",
                format!("job {name} holds its lock but has no record at {}", self.record_path(name).display()),
            )
            .with_hint("it may be starting: try again in a second"));
        };
        let pid = nix::unistd::Pid::from_raw(record.pid as i32);
        signal(pid, nix::sys::signal::Signal::SIGTERM)?;
        if self.wait_released(name, grace)? {
            return Ok(StopOutcome::Stopped);
        }
        signal(pid, nix::sys::signal::Signal::SIGKILL)?;
        if self.wait_released(name, Duration::from_secs(5))? {
            return Ok(StopOutcome::Killed);
        }
        Err(KartError::infra("job-stop-failed", format!("job {name} (pid {}) did not stop after SIGKILL", record.pid)))
    }

    /// Waits until nobody holds the job's lock; false at the deadline.
    pub fn wait_released(&self, name: &str, within: Duration) -> Result<bool> {
        let started = Instant::now();
        loop {
            if self.try_lock(name)?.is_some() {
                return Ok(true);
            }
            if started.elapsed() >= within {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last `lines` lines of the job's log (for errors and `job logs`).
    pub fn log_tail(&self, name: &str, lines: usize) -> Vec<String> {
        let Ok(mut file) = File::open(self.log_path(name)) else {
            return Vec::new();
        };
        // Only the end of a long log matters.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].iter().map(|s| s.to_string()).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    NotRunning,
    Stopped,
    Killed,
}

fn signal(pid: nix::unistd::Pid, signal: nix::sys::signal::Signal) -> Result<()> {
    match nix::sys::signal::kill(pid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(KartError::infra("job-signal", format!("cannot send {signal} to pid {pid}: {errno}"))),
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes through a temporary file and a rename, so a reader never sees half
/// a file.
pub fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| KartError::infra("internal", format!("cannot encode JSON: {e}")))?;
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.write_all(b"\n")?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| io_error(&format!("cannot write {}", path.display()), e))
}

fn io_error(what: &str, error: std::io::Error) -> KartError {
    KartError::infra("io", format!("{what}: {error}"))
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_means_running_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path());
        assert_eq!(sup.liveness("job").unwrap(), Liveness::NeverStarted);
        let lock = sup.try_lock("job").unwrap().expect("free lock");
        // A second open file description conflicts, even in one process.
        assert!(sup.try_lock("job").unwrap().is_none());
        assert!(matches!(sup.liveness("job").unwrap(), Liveness::Running(None)));
        let record = JobRecord {
            name: "job".into(),
            pid: std::process::id(),
            started_at: 1,
            config_hash: "h".into(),
            kart_version: "0".into(),
            args: vec![],
        };
        sup.write_record(&record).unwrap();
        assert_eq!(sup.liveness("job").unwrap(), Liveness::Running(Some(record.clone())));
        drop(lock);
        assert_eq!(sup.liveness("job").unwrap(), Liveness::Stopped(Some(record)));
        assert_eq!(sup.known_jobs(), vec!["job".to_string()]);
    }

    #[test]
    fn log_tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path());
        sup.ensure_dirs().unwrap();
        fs::write(sup.log_path("j"), "a\nb\nc\n").unwrap();
        assert_eq!(sup.log_tail("j", 2), vec!["b", "c"]);
        assert!(sup.log_tail("missing", 2).is_empty());
    }
}
