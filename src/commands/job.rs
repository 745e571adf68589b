//! `kart job deploy|list|status|logs|stop`: embedded jobs now; Flink jobs
//! (`--jar`) join the same table later.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::{JobCommand, JobDeployArgs, JobLogsArgs, JobNameArgs, JobStopArgs};
use crate::context::{duration_flag, Context};
use crate::exit::{KartError, Result};
use crate::jobs::embedded::{self, DeployOptions, Deployed, JobSpec, JobView, EMBEDDED_JOBS};
use crate::jobs::inventory;
use crate::printer::{Table, Tone};
use crate::supervise::{StopOutcome, Supervisor};

pub async fn run(command: JobCommand, ctx: &Context) -> Result<()> {
    match command {
        JobCommand::Deploy(args) => deploy(args, ctx).await,
        JobCommand::List => list(ctx),
        JobCommand::Status(args) => status(&args, ctx),
        JobCommand::Logs(args) => logs(&args, ctx).await,
        JobCommand::Stop(args) => stop(&args, ctx).await,
    }
}

async fn deploy(args: JobDeployArgs, ctx: &Context) -> Result<()> {
    let job = match args.job {
        Some(job) => job,
        None => return Err(KartError::not_implemented("job deploy --jar")),
    };
    let spec = JobSpec::resolve(job, ctx)?;
    let options = DeployOptions {
        foreground: args.foreground,
        replace: args.replace,
        fresh: args.fresh,
        supervised: args.supervised,
        start_timeout: ctx.connect_timeout * 2 + Duration::from_secs(30),
        stop_timeout: Duration::from_secs(15),
    };
    let report = match embedded::deploy(ctx, spec, options).await? {
        Deployed::Attached if args.supervised => return Ok(()),
        // Ctrl-C ended an attached run: the usual exit code for it.
        Deployed::Attached => return Err(KartError::interrupted()),
        Deployed::Background(report) => report,
    };
    if ctx.printer.is_json() {
        let value = serde_json::to_value(&report).map_err(|e| KartError::infra("internal", e.to_string()))?;
        return ctx.printer.json(value);
    }
    match report.result {
        "already-running" => {
            ctx.printer.out(&format!(
                "{} is already running (pid {}, up {}); nothing changed",
                report.name,
                report.pid,
                embedded::format_ms(crate::supervise::now_ms() - report.started_at)
            ))?;
            if report.config_changed {
                ctx.printer.warn(&format!(
                    "the settings changed since it started; `kart job deploy {} --replace` restarts it with the new ones",
                    report.name
                ));
            }
            Ok(())
        }
        _ => {
            let verb = if report.replaced { "restarted" } else { "started" };
            ctx.printer.out(&format!("{} {verb} (pid {}); log: {}", report.name, report.pid, report.log.display()))?;
            ctx.printer.status("Next", &format!("`kart job status {}` shows its metrics; `kart job stop {}` stops it", report.name, report.name));
            Ok(())
        }
    }
}

fn known_embedded(name: &str) -> Result<&'static str> {
    EMBEDDED_JOBS.iter().copied().find(|job| *job == name).ok_or_else(|| {
        KartError::user("job-unknown", format!("no job named {name:?}"))
            .with_hint(format!("the embedded jobs are {}; `kart job list` shows every job", EMBEDDED_JOBS.join(", ")))
    })
}

fn list(ctx: &Context) -> Result<()> {
    let supervisor = Supervisor::new(&ctx.project_dir);
    let views = EMBEDDED_JOBS.iter().map(|name| embedded::view(&supervisor, name)).collect::<Result<Vec<_>>>()?;
    if ctx.printer.is_json() {
        let jobs: Vec<Value> = views.iter().map(view_json).collect();
        return ctx.printer.json(json!({ "jobs": jobs }));
    }
    let mut table = Table::new(["NAME", "ENGINE", "STATE", "PID", "UPTIME", "IN", "OUT", "LAG"]);
    for view in &views {
        let metrics = view.metrics.as_ref().filter(|_| view.state != "not-deployed");
        table.row([
            view.name.clone(),
            view.engine.to_string(),
            paint_state(ctx, &view.state),
            view.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            view.uptime_ms.map(embedded::format_ms).unwrap_or_else(|| "-".into()),
            metrics.map(|m| m.total_in().to_string()).unwrap_or_else(|| "-".into()),
            metrics.map(|m| m.total_out().to_string()).unwrap_or_else(|| "-".into()),
            metrics.and_then(|m| m.total_lag()).map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
        ]);
    }
    ctx.printer.out(&table.render(&ctx.printer))
}

fn paint_state(ctx: &Context, state: &str) -> String {
    let tone = match state {
        "running" => Tone::Good,
        "starting" | "restoring" | "stopping" => Tone::Warn,
        "failed" | "dead" => Tone::Bad,
        _ => Tone::Dim,
    };
    ctx.printer.paint(state, tone)
}

/// The documented JSON of a job (README, "kart job status").
fn view_json(view: &JobView) -> Value {
    let metrics = view.metrics.as_ref().filter(|_| view.state != "not-deployed");
    json!({
        "name": view.name,
        "engine": view.engine,
        "state": view.state,
        "pid": view.pid,
        "startedAt": view.started_at,
        "uptimeMs": view.uptime_ms,
        "recordsIn": metrics.map(|m| json!(m.records_in)),
        "recordsOut": metrics.map(|m| json!(m.records_out)),
        "applied": metrics.map(|m| m.applied),
        "rejected": metrics.map(|m| m.rejected),
        "duplicates": metrics.map(|m| m.duplicates),
        "dlq": metrics.map(|m| m.dlq),
        "lag": metrics.map(|m| json!(m.lag)),
        "products": metrics.map(|m| m.products),
        "dedupEntries": metrics.map(|m| m.dedup_entries),
        "batches": metrics.map(|m| m.batches),
        "lastCommitAt": metrics.and_then(|m| m.last_commit_at),
        "updatedAt": metrics.map(|m| m.updated_at),
        "error": metrics.and_then(|m| m.error.clone()),
        "log": view.log.display().to_string(),
    })
}

fn status(args: &JobNameArgs, ctx: &Context) -> Result<()> {
    let name = known_embedded(&args.name)?;
    let supervisor = Supervisor::new(&ctx.project_dir);
    let view = embedded::view(&supervisor, name)?;
    if ctx.printer.is_json() {
        return ctx.printer.json(view_json(&view));
    }
    let mut lines = vec![format!("{}  {}  ({})", ctx.printer.paint(&view.name, Tone::Strong), paint_state(ctx, &view.state), view.engine)];
    if let Some(pid) = view.pid {
        lines.push(format!("  pid          {pid}, up {}", view.uptime_ms.map(embedded::format_ms).unwrap_or_default()));
    }
    if let Some(m) = view.metrics.as_ref().filter(|_| view.state != "not-deployed") {
        let per_topic = |map: &std::collections::BTreeMap<String, u64>| {
            if map.is_empty() {
                "0".to_string()
            } else {
                map.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
            }
        };
        lines.push(format!("  records in   {} ({})", m.total_in(), per_topic(&m.records_in)));
        lines.push(format!("  records out  {} ({})", m.total_out(), per_topic(&m.records_out)));
        lines.push(format!(
            "  order lines  applied {}, rejected {}, duplicates {}; dlq {}",
            m.applied, m.rejected, m.duplicates, m.dlq
        ));
        let lag = m.total_lag().map(|l| l.to_string()).unwrap_or_else(|| "unknown yet".into());
        lines.push(format!("  lag          {lag}"));
        lines.push(format!("  state        {} products, {} remembered order lines", m.products, m.dedup_entries));
        let commit = m
            .last_commit_at
            .map(|at| format!("{} ago ({} batches)", embedded::format_ms(crate::supervise::now_ms() - at), m.batches))
            .unwrap_or_else(|| "none yet".into());
        lines.push(format!("  last commit  {commit}"));
        if let Some(error) = &m.error {
            lines.push(format!("  error        {error}"));
        }
    }
    lines.push(format!("  log          {}", view.log.display()));
    ctx.printer.out(&lines.join("\n"))?;
    match view.state.as_str() {
        "not-deployed" => ctx.printer.status("Hint", &format!("`kart job deploy {name}` starts it")),
        "dead" => ctx.printer.warn(&format!("{name} died without stopping (killed or crashed); `kart job logs {name}` shows why, `kart job deploy {name}` restarts it")),
        _ => {}
    }
    Ok(())
}

async fn logs(args: &JobLogsArgs, ctx: &Context) -> Result<()> {
    let name = known_embedded(&args.name)?;
    let supervisor = Supervisor::new(&ctx.project_dir);
    let path = supervisor.log_path(name);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(_) if !args.follow => {
            return Err(KartError::user("job-no-log", format!("{name} has no log yet ({})", path.display()))
                .with_hint(format!("`kart job deploy {name}` starts it")));
        }
        Err(_) => loop {
            // -f on a job that has not written yet: wait for its log.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = ctx.shutdown.cancelled() => return Err(KartError::interrupted()),
            }
            if let Ok(file) = std::fs::File::open(&path) {
                break file;
            }
        },
    };
    let mut pending = Vec::new();
    loop {
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk).map_err(|e| KartError::infra("io", format!("cannot read {}: {e}", path.display())))?;
        pending.extend_from_slice(&chunk);
        // Print whole lines only; a partial last line waits for its end.
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(&pending[..end]).into_owned();
            ctx.printer.out(&text)?;
            pending.drain(..=end);
        }
        if !args.follow {
            if !pending.is_empty() {
                ctx.printer.out(&String::from_utf8_lossy(&pending))?;
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = ctx.shutdown.cancelled() => return Err(KartError::interrupted()),
        }
        // A log that was truncated (a new deploy) is read again from its start.
        let position = file.stream_position().unwrap_or(0);
        if std::fs::metadata(&path).map(|m| m.len() < position).unwrap_or(false) {
            let _ = file.seek(SeekFrom::Start(0));
        }
    }
}

async fn stop(args: &JobStopArgs, ctx: &Context) -> Result<()> {
    let name = known_embedded(&args.name)?;
    let grace = duration_flag("--timeout", &args.timeout)?;
    let supervisor = Supervisor::new(&ctx.project_dir);
    let pid = supervisor.read_record(name).map(|r| r.pid);
    let outcome = embedded::stop(&supervisor, name, grace).await?;
    let (result, text) = match outcome {
        StopOutcome::NotRunning => ("not-running", format!("{name} is not running; nothing to stop")),
        StopOutcome::Stopped => ("stopped", format!("{name} stopped (pid {})", pid.unwrap_or(0))),
        StopOutcome::Killed => (
            "killed",
            format!("{name} did not stop within {}; killed (pid {})", humantime::format_duration(grace), pid.unwrap_or(0)),
        ),
    };
    if ctx.printer.is_json() {
        return ctx.printer.json(json!({ "name": name, "engine": "embedded", "result": result, "pid": pid }));
    }
    ctx.printer.out(&text)?;
    if name == inventory::JOB_NAME && outcome == StopOutcome::Killed {
        ctx.printer.warn("a killed job loses nothing: its open transaction is aborted and the next start resumes from the last commit");
    }
    Ok(())
}
