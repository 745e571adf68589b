//! Embedded jobs as supervised processes: deploy (in the background or
//! attached), inspect and stop (design §9). The work itself is the driver's;
//! this module owns the lifecycle around it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::context::Context;
use crate::exit::{KartError, Result};
use crate::supervise::{now_ms, JobRecord, Liveness, StopOutcome, Supervisor};

use super::cdc::{self, CdcDriver, CdcSettings};
use super::flink::{self, DOUBLE_DEDUCTION};
use super::inventory::{self, Driver, InventorySettings};
use crate::cli::EmbeddedJob;
use super::status::{JobState, JobStatus};

/// The embedded jobs kart knows, in `job list` order.
pub const EMBEDDED_JOBS: [&str; 2] = [inventory::JOB_NAME, cdc::JOB_NAME];

/// How `job deploy` ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub name: String,
    pub engine: &'static str,
    /// `started`, `already-running` or `starting` (still restoring at the deadline).
    pub result: &'static str,
    pub pid: u32,
    pub started_at: i64,
    /// The running copy runs with other settings than this deploy would use.
    pub config_changed: bool,
    pub replaced: bool,
    pub log: PathBuf,
}

/// A job's state as `job status` and `job list` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub name: String,
    pub engine: &'static str,
    /// `running`, `starting`, `restoring`, `stopping`, `stopped`, `failed`,
    /// `dead` (it died without stopping: killed or crashed) or `not-deployed`.
    pub state: String,
    pub pid: Option<u32>,
    pub started_at: Option<i64>,
    pub uptime_ms: Option<i64>,
    pub config_hash: Option<String>,
    pub log: PathBuf,
    pub metrics: Option<JobStatus>,
}

/// An embedded job with its resolved settings.
pub enum JobSpec {
    Inventory(InventorySettings),
    OrderCdc(CdcSettings),
}

impl JobSpec {
    /// Resolves and checks the job's settings, so a bad value fails in the
    /// user's terminal rather than in a background log.
    pub fn resolve(job: EmbeddedJob, ctx: &Context) -> Result<JobSpec> {
        match job {
            EmbeddedJob::Inventory => Ok(JobSpec::Inventory(InventorySettings::from_settings(&ctx.settings, ctx.connect_timeout)?)),
            EmbeddedJob::OrderCdc => Ok(JobSpec::OrderCdc(CdcSettings::from_settings(&ctx.settings, ctx.connect_timeout)?)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobSpec::Inventory(_) => inventory::JOB_NAME,
            JobSpec::OrderCdc(_) => cdc::JOB_NAME,
        }
    }

    pub fn config_hash(&self) -> String {
        match self {
            JobSpec::Inventory(settings) => settings.config_hash(),
            JobSpec::OrderCdc(settings) => settings.config_hash(),
        }
    }

    fn supports_fresh(&self) -> bool {
        matches!(self, JobSpec::Inventory(_))
    }

    /// Runs the job until `stop` is set or it fails.
    async fn run(self, fresh: bool, printer: crate::printer::Printer, status: Arc<Mutex<JobStatus>>, stop: Arc<AtomicBool>) -> Result<()> {
        match self {
            JobSpec::Inventory(settings) => {
                let driver = Driver::new(settings, fresh, printer, status, stop);
                tokio::task::spawn_blocking(move || driver.run())
                    .await
                    .unwrap_or_else(|e| Err(KartError::infra("internal", format!("the inventory job panicked: {e}"))))
            }
            JobSpec::OrderCdc(settings) => CdcDriver::new(settings, printer, status, stop).run().await,
        }
    }
}

pub struct DeployOptions {
    pub foreground: bool,
    pub replace: bool,
    pub fresh: bool,
    pub supervised: bool,
    /// How long a background deploy waits for the job to report running.
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
}

pub enum Deployed {
    /// Started in the background, or found running.
    Background(DeployReport),
    /// Ran attached to this process and stopped when asked.
    Attached,
}

/// Deploys an embedded job: reports a running copy and leaves it alone
/// (unless `replace`), else starts it in the background or attached.
pub async fn deploy(ctx: &Context, spec: JobSpec, options: DeployOptions) -> Result<Deployed> {
    let name = spec.name();
    if options.fresh && !spec.supports_fresh() {
        return Err(KartError::user("bad-flag", format!("--fresh applies to the inventory job only, not to {name}")));
    }
    let supervisor = Supervisor::new(&ctx.project_dir);
    if options.supervised {
        run_attached(ctx, &supervisor, spec, options.fresh, true).await?;
        return Ok(Deployed::Attached);
    }
    let config_hash = spec.config_hash();
    let mut replaced = false;
    if let Liveness::Running(record) = supervisor.liveness(name)? {
        let config_changed = record.as_ref().is_some_and(|r| r.config_hash != config_hash);
        if !options.replace {
            if options.fresh {
                return Err(KartError::user("job-running", format!("the {name} job is running"))
                    .with_hint(format!("add --replace to restart it from empty state: `kart job deploy {name} --fresh --replace`")));
            }
            return Ok(Deployed::Background(DeployReport {
                name: name.into(),
                engine: "embedded",
                result: "already-running",
                pid: record.as_ref().map(|r| r.pid).unwrap_or(0),
                started_at: record.as_ref().map(|r| r.started_at).unwrap_or(0),
                config_changed,
                replaced: false,
                log: supervisor.log_path(name),
            }));
        }
        if options.fresh {
            ctx.confirm(&format!("Restart the {name} job from empty state (its state and input positions are reset)"))?;
        }
        ctx.printer.status("Stopping", &format!("the running {name} job"));
        stop(&supervisor, name, options.stop_timeout).await?;
        replaced = true;
    } else if options.fresh {
        ctx.confirm(&format!("Start the {name} job from empty state (its state and input positions are reset)"))?;
    }

    if options.foreground {
        run_attached(ctx, &supervisor, spec, options.fresh, false).await?;
        return Ok(Deployed::Attached);
    }
    spawn_background(ctx, &supervisor, name, options.fresh, options.start_timeout, replaced).await.map(Deployed::Background)
}

/// `job deploy inventory` refuses while the workshop's Flink inventory job
/// runs on the configured JobManager. A JobManager that cannot be asked is
/// no reason to refuse: most students never start one.
pub async fn refuse_beside_flink_inventory(ctx: &Context, flag: Option<&str>) -> Result<()> {
    let url = match flag {
        Some(url) => url.to_string(),
        None => ctx.settings.get("KART_FLINK_URL")?.to_string(),
    };
    // Short: this check must not slow down every deploy when nothing listens.
    let within = ctx.connect_timeout.min(Duration::from_secs(3));
    match flink::workshop_inventory_running(&url, within).await {
        Ok(Some(job)) => Err(KartError::user(
            "flink-inventory-running",
            format!("the workshop's Flink inventory job \"{}\" (job {}) is running on {url}: {DOUBLE_DEDUCTION}", job.name, job.jid),
        )
        .with_hint(format!("stop it first (`kart job stop {}`), or pass --force to run both anyway", job.jid))),
        Ok(None) => Ok(()),
        Err(why) => {
            ctx.printer.debug(&format!("did not check for the workshop's Flink inventory job: {why}"));
            Ok(())
        }
    }
}

async fn spawn_background(
    ctx: &Context,
    supervisor: &Supervisor,
    name: &str,
    fresh: bool,
    start_timeout: Duration,
    replaced: bool,
) -> Result<DeployReport> {
    let exe = std::env::current_exe().map_err(|e| KartError::infra("io", format!("cannot find kart's own executable: {e}")))?;
    // `job deploy NAME`, attached and marked as the supervised copy, with
    // this process's global flags: the child resolves the same
    // configuration from the same flags, files and environment, whichever
    // command (`job deploy`, `demo`) started it.
    let mut args = ctx.child_args.clone();
    args.extend(["job", "deploy", name, "--foreground", "--supervised"].map(String::from));
    if fresh {
        args.push("--fresh".into());
    }
    let env = [("KART_PROJECT_DIR".to_string(), ctx.project_dir.display().to_string())];
    let mut child = supervisor.spawn_detached(name, &exe, &args, &env)?;
    let pid = child.id();
    ctx.printer.status("Starting", &format!("the {name} job (pid {pid}); log: {}", supervisor.log_path(name).display()));
    let report = |result: &'static str, started_at: i64| DeployReport {
        name: name.into(),
        engine: "embedded",
        result,
        pid,
        started_at,
        config_changed: false,
        replaced,
        log: supervisor.log_path(name),
    };
    let started = Instant::now();
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            let tail = supervisor.log_tail(name, 8).join("\n    ");
            return Err(KartError::infra("job-start-failed", format!("the {name} job exited at start ({exit}); its last log lines:\n    {tail}"))
                .with_hint(format!("the whole log: `kart job logs {name}`")));
        }
        let status: Option<JobStatus> = supervisor.read_status(name);
        if let Some(status) = status.filter(|s| s.pid == pid) {
            if status.state == JobState::Running {
                // Reap the child when it exits, so it never lingers as a zombie
                // of a long-lived parent (tests, the demo).
                std::thread::spawn(move || child.wait());
                return Ok(report("started", status.started_at));
            }
        }
        if started.elapsed() >= start_timeout {
            ctx.printer.warn(&format!(
                "the {name} job is still starting after {}; follow it with `kart job status {name}`",
                humantime::format_duration(start_timeout)
            ));
            std::thread::spawn(move || child.wait());
            return Ok(report("starting", now_ms()));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = ctx.shutdown.cancelled() => {
                // The job is detached on purpose: Ctrl-C here stops waiting, not the job.
                return Err(KartError::interrupted().with_hint(format!("the {name} job keeps starting in the background; `kart job stop {name}` stops it")));
            }
        }
    }
}

/// Runs the job in this process until Ctrl-C / SIGTERM (graceful: the
/// transaction in flight is finished) or a failure. Returns Ok after a
/// requested stop.
async fn run_attached(
    ctx: &Context,
    supervisor: &Supervisor,
    spec: JobSpec,
    fresh: bool,
    supervised: bool,
) -> Result<()> {
    let name = spec.name();
    let Some(lock) = supervisor.try_lock(name)? else {
        let pid = supervisor.read_record(name).map(|r| r.pid.to_string()).unwrap_or_else(|| "?".into());
        return Err(KartError::user("job-running", format!("the {name} job is already running (pid {pid})"))
            .with_hint(format!("`kart job stop {name}` stops it; `kart job deploy {name} --replace` restarts it")));
    };
    let pid = std::process::id();
    let started_at = now_ms();
    supervisor.write_record(&JobRecord {
        name: name.into(),
        pid,
        started_at,
        config_hash: spec.config_hash(),
        kart_version: env!("CARGO_PKG_VERSION").into(),
        args: std::env::args().skip(1).collect(),
    })?;
    let status = Arc::new(Mutex::new(JobStatus {
        name: name.into(),
        state: JobState::Starting,
        pid,
        started_at,
        updated_at: started_at,
        ..JobStatus::default()
    }));
    supervisor.write_status(name, &*status.lock().unwrap_or_else(|e| e.into_inner()))?;
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut work = Box::pin(spec.run(fresh, ctx.printer.clone(), status.clone(), stop_flag.clone()));
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut stopping = false;
    let mut last_log_line = Instant::now();
    let live = !supervised && ctx.printer.is_live();
    let result = loop {
        tokio::select! {
            _ = ticker.tick() => {
                let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
                let _ = supervisor.write_status(name, &snapshot);
                if live {
                    ctx.printer.live(&status_line(&snapshot));
                } else if last_log_line.elapsed() >= Duration::from_secs(30) && snapshot.state == JobState::Running {
                    last_log_line = Instant::now();
                    ctx.printer.status("Status", &status_line(&snapshot));
                }
            }
            _ = ctx.shutdown.cancelled(), if !stopping => {
                stopping = true;
                stop_flag.store(true, Ordering::Relaxed);
                if live { ctx.printer.live_clear(); }
                ctx.printer.status("Stopping", "finishing the batch in flight");
            }
            result = &mut work => {
                break result;
            }
        }
    };
    if live {
        ctx.printer.live_clear();
    }
    let mut last = status.lock().map(|s| s.clone()).unwrap_or_default();
    last.updated_at = now_ms();
    match &result {
        Ok(()) => last.state = JobState::Stopped,
        Err(error) => {
            last.state = JobState::Failed;
            last.error = Some(error.message.clone());
        }
    }
    let _ = supervisor.write_status(name, &last);
    drop(lock);
    result?;
    ctx.printer.status("Stopped", &format!("the {name} job: {}", status_line(&last)));
    Ok(())
}

/// One line for people: state, records, outcomes, lag and the last commit.
pub fn status_line(status: &JobStatus) -> String {
    let lag = status.total_lag().map(|l| l.to_string()).unwrap_or_else(|| "?".into());
    let commit = match status.last_commit_at {
        Some(at) => format!("{} ago", format_ms((status.updated_at - at).max(0))),
        None => "never".into(),
    };
    let per_topic: Vec<String> = status.records_in.iter().map(|(topic, n)| format!("{topic} {n}")).collect();
    let outcomes = if status.name == inventory::JOB_NAME {
        format!(
            " · applied {} rejected {} duplicates {} dlq {}",
            status.applied, status.rejected, status.duplicates, status.dlq
        )
    } else {
        String::new()
    };
    format!(
        "{} · in {} ({}) · out {}{outcomes} · lag {lag} · last commit {commit}",
        status.state.as_str(),
        status.total_in(),
        if per_topic.is_empty() { "none".to_string() } else { per_topic.join(", ") },
        status.total_out(),
    )
}

pub fn format_ms(ms: i64) -> String {
    let rounded = if ms >= 10_000 { ms / 1000 * 1000 } else { ms / 100 * 100 };
    humantime::format_duration(Duration::from_millis(rounded.max(0) as u64)).to_string()
}

/// What `job status` / `job list` show for an embedded job.
pub fn view(supervisor: &Supervisor, name: &str) -> Result<JobView> {
    let liveness = supervisor.liveness(name)?;
    let status: Option<JobStatus> = supervisor.read_status(name);
    let (state, record) = match liveness {
        Liveness::NeverStarted => ("not-deployed".to_string(), None),
        Liveness::Running(record) => {
            let state = status.as_ref().map(|s| s.state).unwrap_or(JobState::Starting);
            (state.as_str().to_string(), record)
        }
        Liveness::Stopped(record) => {
            let state = match status.as_ref().map(|s| s.state) {
                Some(JobState::Stopped) => "stopped",
                Some(JobState::Failed) => "failed",
                Some(_) => "dead",
                None => "stopped",
            };
            (state.to_string(), record)
        }
    };
    let running = !matches!(state.as_str(), "not-deployed" | "stopped" | "failed" | "dead");
    let now = now_ms();
    Ok(JobView {
        name: name.into(),
        engine: "embedded",
        pid: record.as_ref().filter(|_| running).map(|r| r.pid),
        started_at: record.as_ref().map(|r| r.started_at),
        uptime_ms: record.as_ref().filter(|_| running).map(|r| (now - r.started_at).max(0)),
        config_hash: record.as_ref().map(|r| r.config_hash.clone()),
        state,
        log: supervisor.log_path(name),
        metrics: status,
    })
}

/// Stops a job; not running is not an error.
pub async fn stop(supervisor: &Supervisor, name: &str, grace: Duration) -> Result<StopOutcome> {
    let supervisor = supervisor.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || supervisor.stop(&name, grace))
        .await
        .map_err(|e| KartError::infra("internal", format!("stopping the job panicked: {e}")))?
}
