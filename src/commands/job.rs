//! `kart job deploy|list|status|logs|stop`: the embedded jobs and Flink
//! jobs (`--jar`, through the JobManager REST API) in one table.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::{EmbeddedJob, JobCommand, JobDeployArgs, JobListArgs, JobLogsArgs, JobNameArgs, JobStopArgs};
use crate::context::{duration_flag, Context};
use crate::exit::{KartError, Result};
use crate::jobs::embedded::{self, DeployOptions, Deployed, JobSpec, JobView, EMBEDDED_JOBS};
use crate::jobs::flink::{self, FlinkClient, FlinkState, JobOverview, JobRecord, LocalJar, DOUBLE_DEDUCTION};
use crate::jobs::inventory;
use crate::printer::{Table, Tone};
use crate::supervise::{now_ms, Liveness, StopOutcome, Supervisor};

pub async fn run(command: JobCommand, ctx: &Context) -> Result<()> {
    match command {
        JobCommand::Deploy(args) => deploy(args, ctx).await,
        JobCommand::List(args) => list(&args, ctx).await,
        JobCommand::Status(args) => status(&args, ctx).await,
        JobCommand::Logs(args) => logs(&args, ctx).await,
        JobCommand::Stop(args) => stop(&args, ctx).await,
    }
}

/// The JobManager: `--flink-url`, else `KART_FLINK_URL`.
fn flink_client(ctx: &Context, flag: Option<&str>) -> Result<FlinkClient> {
    let url = match flag {
        Some(url) => url.to_string(),
        None => ctx.settings.get("KART_FLINK_URL")?.to_string(),
    };
    FlinkClient::new(&url, ctx.connect_timeout)
}

fn is_embedded(name: &str) -> bool {
    EMBEDDED_JOBS.contains(&name)
}

fn embedded_inventory_runs(ctx: &Context) -> bool {
    let supervisor = Supervisor::new(&ctx.project_dir);
    matches!(supervisor.liveness(inventory::JOB_NAME), Ok(Liveness::Running(_)))
}

async fn deploy(args: JobDeployArgs, ctx: &Context) -> Result<()> {
    let job = match args.job {
        Some(job) => job,
        None => return deploy_jar(args, ctx).await,
    };
    if job == EmbeddedJob::Inventory && !args.force && !args.supervised {
        embedded::refuse_beside_flink_inventory(ctx, args.flink_url.as_deref()).await?;
    }
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

async fn deploy_jar(args: JobDeployArgs, ctx: &Context) -> Result<()> {
    let jar_path = args.jar.clone().ok_or_else(|| KartError::user("bad-flag", "name an embedded job or pass --jar"))?;
    let class = args.class.clone().ok_or_else(|| KartError::user("bad-flag", "--jar needs --class MAIN"))?;
    for (set, flag) in [(args.foreground, "--foreground"), (args.fresh, "--fresh"), (args.force, "--force")] {
        if set {
            return Err(KartError::user("bad-flag", format!("{flag} applies to embedded jobs, not to --jar")));
        }
    }
    let name = args.name.clone().unwrap_or_else(|| class.clone());
    if name.trim().is_empty() || class.trim().is_empty() {
        return Err(KartError::user("bad-flag", "--name and --class must not be empty"));
    }
    let client = flink_client(ctx, args.flink_url.as_deref())?;
    // The jar is checked before anything talks to the JobManager: a typo in
    // the path is the most common mistake and needs no cluster to report.
    let jar = LocalJar::read(&jar_path)?;
    let port_offset = ctx.settings.integer("KART_PORT_OFFSET").unwrap_or(0);
    let docker = flink::is_compose_jobmanager(client.url(), ctx.mode, port_offset);
    let passed = flink::pass_env_args(&args.pass_env, &ctx.settings, docker)?;
    for arg in &passed {
        let shown = if arg.secret { "***" } else { arg.value.as_str() };
        ctx.printer.debug(&format!("passing {} {shown} (from {})", arg.flag, arg.from));
    }
    if passed.iter().any(|a| a.secret) {
        ctx.printer.warn("program arguments are visible in the Flink web UI and REST API, passwords included");
    }
    let inventory_runs = embedded_inventory_runs(ctx);
    let looks_like_inventory = class.to_lowercase().contains("inventory") || name.to_lowercase().contains("inventory");
    if inventory_runs && looks_like_inventory {
        ctx.printer.warn(&format!(
            "kart's embedded inventory job is running: {DOUBLE_DEDUCTION}; `kart job stop inventory` stops it"
        ));
    }
    let request = flink::DeployRequest {
        jar,
        entry_class: class,
        name,
        args: args.args.clone(),
        passed,
        parallelism: args.parallelism,
        savepoint: args.savepoint.clone(),
        replace: args.replace,
        start_timeout: ctx.connect_timeout * 2 + Duration::from_secs(60),
    };
    let state = FlinkState::new(&ctx.project_dir);
    let report = ctx.interruptible(flink::deploy(&client, &state, request, &ctx.printer)).await?;
    if inventory_runs && !looks_like_inventory && report.flink_name == flink::WORKSHOP_INVENTORY_JOB {
        ctx.printer.warn(&format!(
            "kart's embedded inventory job is running: {DOUBLE_DEDUCTION}; `kart job stop inventory` stops it"
        ));
    }
    if ctx.printer.is_json() {
        let value = serde_json::to_value(&report).map_err(|e| KartError::infra("internal", e.to_string()))?;
        return ctx.printer.json(value);
    }
    let mut lines = Vec::new();
    match report.result {
        "already-running" => {
            let up = report.started_at.map(|at| format!(", up {}", embedded::format_ms(now_ms() - at))).unwrap_or_default();
            lines.push(format!("{} is already running (job {}{up}); nothing changed", report.name, report.job_id));
        }
        "starting" => lines.push(format!("{} is starting (job {})", report.name, report.job_id)),
        _ => {
            let verb = if report.replaced.is_empty() { "is running" } else { "was replaced and is running" };
            lines.push(format!("{} {verb} (job {})", report.name, report.job_id));
        }
    }
    if report.flink_name != report.name {
        lines.push(format!("  flink name  {}", report.flink_name));
    }
    lines.push(format!("  web UI      {}", report.web_url));
    if let Some(savepoint) = report.savepoint.as_ref().filter(|_| report.result != "already-running") {
        lines.push(format!("  savepoint   {savepoint} (its state was restored)"));
    }
    for old in &report.replaced {
        lines.push(format!("  replaced    job {} ({})", old.job_id, old.how));
    }
    ctx.printer.out(&lines.join("\n"))?;
    if report.result == "already-running" {
        ctx.printer.status("Hint", "--replace restarts it (with a savepoint when the job can take one)");
    } else {
        ctx.printer.status("Next", &format!("`kart job status {0}` shows it; `kart job stop {0}` cancels it", shell_word(&report.name)));
    }
    Ok(())
}

/// A name as it must be typed in a shell.
fn shell_word(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || "-_.:/@".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn known_embedded(name: &str) -> Result<&'static str> {
    EMBEDDED_JOBS.iter().copied().find(|job| *job == name).ok_or_else(|| {
        KartError::user("job-unknown", format!("no job named {name:?}"))
            .with_hint(format!("the embedded jobs are {}; `kart job list` shows every job", EMBEDDED_JOBS.join(", ")))
    })
}

/// The Flink jobs of the JobManager, or why there are none to show.
struct FlinkListing {
    client: Option<FlinkClient>,
    jobs: std::result::Result<Vec<JobOverview>, KartError>,
    records: BTreeMap<String, JobRecord>,
}

async fn flink_listing(ctx: &Context, flag: Option<&str>) -> FlinkListing {
    let records = FlinkState::new(&ctx.project_dir).jobs();
    let client = match flink_client(ctx, flag) {
        Ok(client) => client,
        Err(error) => return FlinkListing { client: None, jobs: Err(error), records },
    };
    let mut jobs = client.jobs().await;
    if let Ok(jobs) = &mut jobs {
        jobs.sort_by(|a, b| b.is_active().cmp(&a.is_active()).then(b.start_time.cmp(&a.start_time)));
    }
    FlinkListing { client: Some(client), jobs, records }
}

async fn list(args: &JobListArgs, ctx: &Context) -> Result<()> {
    let supervisor = Supervisor::new(&ctx.project_dir);
    let views = EMBEDDED_JOBS.iter().map(|name| embedded::view(&supervisor, name)).collect::<Result<Vec<_>>>()?;
    let flink = flink_listing(ctx, args.flink_url.as_deref()).await;
    let url = flink.client.as_ref().map(|c| c.url().to_string());
    if let Err(error) = &flink.jobs {
        // Most students never start Flink: say so only when kart deployed
        // something there, or when asked for detail.
        if flink.records.is_empty() {
            ctx.printer.debug(&format!("Flink jobs not listed: {}", error.message));
        } else {
            ctx.printer.warn(&format!("Flink jobs not listed: {}", error.message));
        }
    }
    let flink_jobs: &[JobOverview] = flink.jobs.as_deref().unwrap_or(&[]);
    if ctx.printer.is_json() {
        let mut jobs: Vec<Value> = views.iter().map(view_json).collect();
        if let Some(client) = &flink.client {
            jobs.extend(flink_jobs.iter().map(|job| flink_json(client, job, &flink.records)));
        }
        let error = flink.jobs.as_ref().err().map(|e| e.message.clone());
        return ctx.printer.json(json!({
            "jobs": jobs,
            "flink": { "url": url, "reachable": flink.jobs.is_ok(), "error": error },
        }));
    }
    let mut table = Table::new(["NAME", "ENGINE", "STATE", "PID / JOB ID", "UPTIME", "IN", "OUT", "LAG"]);
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
    for job in flink_jobs {
        table.row([
            flink::display_name(job, &flink.records),
            "flink".to_string(),
            paint_state(ctx, &job.state.to_lowercase()),
            job.jid.clone(),
            flink_uptime(job).map(embedded::format_ms).unwrap_or_else(|| "-".into()),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    ctx.printer.out(&table.render(&ctx.printer))
}

fn flink_uptime(job: &JobOverview) -> Option<i64> {
    (job.is_active() && job.start_time > 0).then(|| (now_ms() - job.start_time).max(0))
}

/// The documented JSON of a Flink job (README, "kart job list").
fn flink_json(client: &FlinkClient, job: &JobOverview, records: &BTreeMap<String, JobRecord>) -> Value {
    let tasks: BTreeMap<&String, &u64> = job.tasks.iter().filter(|(_, n)| **n > 0).collect();
    json!({
        "name": flink::display_name(job, records),
        "engine": "flink",
        "state": job.state.to_lowercase(),
        "jobId": job.jid,
        "flinkName": job.name,
        "startedAt": (job.start_time > 0).then_some(job.start_time),
        "endedAt": (job.end_time > 0).then_some(job.end_time),
        "uptimeMs": flink_uptime(job),
        "tasks": tasks,
        "webUrl": client.web_url(&job.jid, &job.state),
        "deployedByKart": records.values().any(|r| r.job_id == job.jid),
    })
}

fn paint_state(ctx: &Context, state: &str) -> String {
    let tone = match state {
        "running" => Tone::Good,
        "starting" | "restoring" | "stopping" | "created" | "initializing" | "restarting" | "cancelling" | "failing" | "reconciling" => {
            Tone::Warn
        }
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

/// The Flink jobs a name (or id) stands for, newest and active first; an
/// unknown name is an error that lists what there is.
async fn find_flink(ctx: &Context, name: &str, flag: Option<&str>) -> Result<(FlinkClient, Vec<JobOverview>, BTreeMap<String, JobRecord>)> {
    let client = flink_client(ctx, flag)?;
    let records = FlinkState::new(&ctx.project_dir).jobs();
    let jobs = match client.jobs().await {
        Ok(jobs) => jobs,
        // A name kart deployed, or a job id: the JobManager must answer.
        Err(error) if records.contains_key(name) || flink::looks_like_job_id(name) => return Err(error),
        // Anything else is most likely a typo, and no Flink is running.
        Err(error) => {
            return Err(KartError::user("job-unknown", format!("no job named {name:?}"))
                .with_hint(format!("the embedded jobs are {}; Flink jobs could not be looked up: {}", EMBEDDED_JOBS.join(", "), error.message)))
        }
    };
    let found = flink::find(name, &jobs, &records);
    Ok((client, found, records))
}

fn no_such_job(name: &str, client: &FlinkClient) -> KartError {
    KartError::user("job-unknown", format!("no job named {name:?}: no embedded job, and no Flink job of that name or id on {}", client.url()))
        .with_hint(format!("the embedded jobs are {}; `kart job list` shows every job", EMBEDDED_JOBS.join(", ")))
}

async fn status(args: &JobNameArgs, ctx: &Context) -> Result<()> {
    if !is_embedded(&args.name) {
        return flink_status(args, ctx).await;
    }
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

async fn flink_status(args: &JobNameArgs, ctx: &Context) -> Result<()> {
    let (client, found, records) = find_flink(ctx, &args.name, args.flink_url.as_deref()).await?;
    let Some(job) = found.first() else { return Err(no_such_job(&args.name, &client)) };
    // Why it failed, or why it keeps restarting.
    let exception = if matches!(job.state.as_str(), "FAILED" | "FAILING" | "RESTARTING") {
        client.exception_trace(&job.jid).await?.as_deref().and_then(flink::root_cause).map(|c| c.to_string())
    } else {
        None
    };
    if ctx.printer.is_json() {
        let mut value = flink_json(&client, job, &records);
        value["exception"] = json!(exception);
        value["otherJobIds"] = json!(found.iter().skip(1).map(|j| j.jid.clone()).collect::<Vec<_>>());
        return ctx.printer.json(value);
    }
    let state = job.state.to_lowercase();
    let mut lines = vec![format!(
        "{}  {}  (flink)",
        ctx.printer.paint(&flink::display_name(job, &records), Tone::Strong),
        paint_state(ctx, &state)
    )];
    lines.push(format!("  job id       {}", job.jid));
    lines.push(format!("  flink name   {}", job.name));
    if let Some(up) = flink_uptime(job) {
        lines.push(format!("  uptime       {}", embedded::format_ms(up)));
    } else if job.end_time > 0 && job.start_time > 0 {
        lines.push(format!("  ran for      {}, ended {} ago", embedded::format_ms(job.end_time - job.start_time), embedded::format_ms(now_ms() - job.end_time)));
    }
    let tasks: Vec<String> = job.tasks.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{n} {s}")).collect();
    if !tasks.is_empty() {
        lines.push(format!("  tasks        {}", tasks.join(", ")));
    }
    lines.push(format!("  web UI       {}", client.web_url(&job.jid, &job.state)));
    if let Some(exception) = &exception {
        lines.push(format!("  exception    {exception}"));
    }
    if found.len() > 1 {
        let others: Vec<String> = found.iter().skip(1).map(|j| format!("{} ({})", j.jid, j.state.to_lowercase())).collect();
        lines.push(format!("  same name    {}", others.join(", ")));
    }
    ctx.printer.out(&lines.join("\n"))
}

async fn logs(args: &JobLogsArgs, ctx: &Context) -> Result<()> {
    if !is_embedded(&args.name) {
        return flink_logs(args, ctx).await;
    }
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

/// A Flink job's log is the JobManager's: Flink serves no per-job log.
async fn flink_logs(args: &JobLogsArgs, ctx: &Context) -> Result<()> {
    let (client, found, _) = find_flink(ctx, &args.name, args.flink_url.as_deref()).await?;
    let Some(job) = found.first() else { return Err(no_such_job(&args.name, &client)) };
    ctx.printer.status("Log", &format!("the JobManager's log at {} (all its jobs; lines about this one mention {})", client.url(), job.jid));
    let mut printed = 0usize;
    loop {
        let text = ctx.interruptible(client.jobmanager_log()).await?;
        // A rotated (shorter) log is printed again from its start.
        let start = if text.len() >= printed { printed } else { 0 };
        let new = &text[start..];
        let end = if args.follow { new.rfind('\n').map(|i| i + 1).unwrap_or(0) } else { new.len() };
        if end > 0 {
            ctx.printer.out(new[..end].trim_end_matches('\n'))?;
        }
        printed = start + end;
        if !args.follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = ctx.shutdown.cancelled() => return Err(KartError::interrupted()),
        }
    }
}

async fn stop(args: &JobStopArgs, ctx: &Context) -> Result<()> {
    let grace = duration_flag("--timeout", &args.timeout)?;
    if !is_embedded(&args.name) {
        return flink_stop(args, grace, ctx).await;
    }
    if args.savepoint {
        return Err(KartError::user("bad-flag", "--savepoint applies to Flink jobs; embedded jobs keep their state in Kafka"));
    }
    let name = known_embedded(&args.name)?;
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

/// Cancels (or, with `--savepoint`, stops with a savepoint) every running
/// Flink job of that name: the workshop's scripts may have started two.
async fn flink_stop(args: &JobStopArgs, grace: Duration, ctx: &Context) -> Result<()> {
    let name = &args.name;
    let (client, found, records) = find_flink(ctx, name, args.flink_url.as_deref()).await?;
    let known = !found.is_empty() || records.contains_key(name) || flink::looks_like_job_id(name);
    if !known {
        return Err(no_such_job(name, &client));
    }
    let active: Vec<&JobOverview> = found.iter().filter(|j| j.is_active()).collect();
    let mut result = "not-running";
    let mut savepoint = None;
    let mut lines = Vec::new();
    for job in &active {
        if args.savepoint {
            ctx.printer.status("Stopping", &format!("{name} (job {}) with a savepoint", job.jid));
            match ctx.interruptible(client.stop_with_savepoint(&job.jid, grace.max(Duration::from_secs(60)))).await? {
                Ok(location) => {
                    client.wait_terminal(&job.jid, grace).await?;
                    lines.push(format!("{name} stopped with a savepoint (job {}): {location}", job.jid));
                    savepoint = Some(location);
                    result = "stopped";
                }
                Err(reason) => {
                    return Err(KartError::user("savepoint-failed", format!("{name} (job {}) could not take a savepoint: {reason}; it keeps running", job.jid))
                        .with_hint(format!("`kart job stop {}` cancels it without a savepoint", shell_word(name))));
                }
            }
        } else {
            client.cancel(&job.jid).await?;
            let last = client.wait_terminal(&job.jid, grace).await?;
            match last.as_deref() {
                Some(state) if flink::is_active_state(state) => {
                    ctx.printer.warn(&format!("job {} is still {} after {}", job.jid, state.to_lowercase(), humantime::format_duration(grace)));
                    lines.push(format!("{name} is cancelling (job {})", job.jid));
                    result = "cancelling";
                }
                _ => {
                    lines.push(format!("{name} canceled (job {})", job.jid));
                    if result != "cancelling" {
                        result = "canceled";
                    }
                }
            }
        }
    }
    let job_ids: Vec<&str> = active.iter().map(|j| j.jid.as_str()).collect();
    if ctx.printer.is_json() {
        return ctx.printer.json(json!({
            "name": name, "engine": "flink", "result": result, "pid": null, "jobIds": job_ids, "savepoint": savepoint,
        }));
    }
    if active.is_empty() {
        lines.push(format!("{name} is not running; nothing to stop"));
    }
    ctx.printer.out(&lines.join("\n"))?;
    if let Some(location) = &savepoint {
        let class = records.get(name.as_str()).map(|r| r.entry_class.clone()).unwrap_or_else(|| "MAIN".into());
        let name_flag = if *name == class { String::new() } else { format!(" --name {}", shell_word(name)) };
        ctx.printer.status(
            "Resume",
            &format!("`kart job deploy --jar JAR --class {class}{name_flag} --savepoint {location}` starts it from there"),
        );
    }
    Ok(())
}
