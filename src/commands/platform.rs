//! `kart platform start|stop|status|reset|logs`.
//!
//! `start` and `reset` compose the layers below: the platform module runs
//! the services, then topics and the database are initialised through them
//! exactly as `kart topics create` and `kart db up` do.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Backend, PlatformCommand, PlatformStartArgs, PullPolicy};
use crate::config::{is_secret, Mode};
use crate::context::{duration_flag, Context};
use crate::db::schema;
use crate::exit::{KartError, Result};
use crate::jobs::embedded::{self, EMBEDDED_JOBS};
use crate::kafka::admin::Admin;
use crate::kafka::topics::{self, DEFAULT_TOPICS};
use crate::platform::{self, StartOptions};
use crate::printer::{OutputFormat, Table, Tone};
use crate::supervise::{StopOutcome, Supervisor};

pub async fn run(command: PlatformCommand, ctx: &Context) -> Result<()> {
    match command {
        PlatformCommand::Start(args) => start(args, ctx).await,
        PlatformCommand::Stop(args) => {
            if args.volumes {
                ctx.confirm("stop the platform and delete its data (volumes)")?;
            }
            let jobs = if ctx.mode == Mode::Local { stop_embedded_jobs(ctx).await? } else { Vec::new() };
            let report = platform::stop(ctx, args.volumes).await?;
            let p = &ctx.printer;
            if p.is_json() {
                return p.json(json!({ "mode": ctx.mode, "backend": report.backend, "removed": report.removed, "volumesDeleted": args.volumes, "jobsStopped": jobs }));
            }
            if report.removed.is_empty() {
                p.out("nothing was running; nothing to stop")
            } else if args.volumes {
                p.out("platform stopped; its data was deleted")
            } else {
                p.out("platform stopped; data kept (`kart platform stop --volumes` deletes it)")
            }
        }
        PlatformCommand::Status(args) => status(args.show_secrets, ctx).await,
        PlatformCommand::Reset => reset(ctx).await,
        PlatformCommand::Logs(args) => {
            let p = ctx.printer.clone();
            platform::logs(ctx, &args.service, args.follow, args.tail, |line| p.out(line)).await
        }
    }
}

/// Local services going away take the embedded jobs' broker and database
/// with them: the jobs are stopped first (gracefully, as `job stop` does)
/// rather than left retrying against nothing. Returns the stopped jobs.
async fn stop_embedded_jobs(ctx: &Context) -> Result<Vec<String>> {
    let supervisor = Supervisor::new(&ctx.project_dir);
    let mut stopped = Vec::new();
    for job in EMBEDDED_JOBS {
        if embedded::stop(&supervisor, job, Duration::from_secs(15)).await? != StopOutcome::NotRunning {
            ctx.printer.status("Stopped", &format!("the {job} job"));
            stopped.push(job.to_string());
        }
    }
    Ok(stopped)
}

fn options(args: &PlatformStartArgs) -> Result<StartOptions> {
    let wait_timeout = duration_flag("--wait-timeout", &args.wait_timeout)?;
    if wait_timeout.is_zero() {
        return Err(KartError::user("bad-flag", "--wait-timeout must be longer than 0"));
    }
    Ok(StartOptions { services: args.services.clone(), backend: args.backend, pull: args.pull, wait_timeout })
}

async fn start(args: PlatformStartArgs, ctx: &Context) -> Result<()> {
    let options = options(&args)?;
    let report = platform::start(ctx, &options).await?;
    let runs_something = !report.services.is_empty() || ctx.mode == Mode::Remote;
    let init = if args.no_init || !runs_something { None } else { Some(ctx.interruptible(platform::initialise(ctx)).await?) };
    let p = &ctx.printer;
    if p.is_json() {
        let mut value = serde_json::to_value(&report).map_err(|e| KartError::infra("internal", e.to_string()))?;
        value["init"] = init.unwrap_or(Value::Null);
        return p.json(value);
    }
    let mut table = Table::new(["SERVICE", "RUNS AS", "ACTION", "READY AFTER", "PROBE"]);
    for s in &report.services {
        table.row([s.service.clone(), s.runs_as.clone(), s.action.clone(), format!("{:.1}s", s.ready_ms as f64 / 1000.0), s.probe.clone()]);
    }
    if !table.is_empty() {
        p.out(&table.render(p))?;
    }
    let all_up_to_date = !report.services.is_empty() && report.services.iter().all(|s| s.action == "up to date");
    let verdict = if all_up_to_date { "up to date".to_string() } else { format!("ready in {:.1}s", report.elapsed_ms as f64 / 1000.0) };
    p.out(&format!(
        "platform {} ({} backend, {} mode){}",
        p.paint(&verdict, Tone::Good),
        report.backend,
        ctx.mode.as_str(),
        if init.is_some() { "; topics and database initialised" } else { "" }
    ))?;
    p.out("next: `kart platform status` for URLs, `kart job deploy inventory` to start the inventory processor")
}

async fn status(show_secrets: bool, ctx: &Context) -> Result<()> {
    let report = platform::status(ctx).await?;
    let p = &ctx.printer;
    match p.format() {
        OutputFormat::Json => p.json(serde_json::to_value(&report).map_err(|e| KartError::infra("internal", e.to_string()))?),
        OutputFormat::Env => {
            // What a shell or the workshop's API needs to reach the services.
            for name in ["KAFKA_BOOTSTRAP_SERVERS", "KAFKA_USER", "KAFKA_PASSWORD", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_REPLICATION_SLOT", "KART_FLINK_URL"] {
                let Some(setting) = ctx.settings.setting(name) else { continue };
                if is_secret(name) && !show_secrets && !setting.value.is_empty() {
                    p.out(&format!("# {name} omitted (from {}); pass --show-secrets to print it", setting.source.describe()))?;
                } else {
                    p.out(&format!("export {name}=\"{}\"", shell_escape(&setting.value)))?;
                }
            }
            Ok(())
        }
        OutputFormat::Text => {
            let mut table = Table::new(["SERVICE", "BACKEND", "STATE", "HEALTH", "RUNS AS", "URLS"]);
            for row in &report.services {
                let state = match row.state.as_str() {
                    "running" | "reachable" => p.paint(&row.state, Tone::Good),
                    "missing" | "stopped" | "skipped" | "not provided" => p.paint(&row.state, Tone::Dim),
                    _ => p.paint(&row.state, Tone::Bad),
                };
                let health = match row.health.as_deref() {
                    Some("healthy") => p.paint("healthy", Tone::Good),
                    Some("unhealthy") => p.paint("unhealthy", Tone::Bad),
                    Some(other) => other.to_string(),
                    None => "-".into(),
                };
                let urls = if row.urls.is_empty() { row.note.clone().unwrap_or_else(|| "-".into()) } else { row.urls.join(" ") };
                table.row([row.service.clone(), row.backend.clone(), state, health, row.runs_as.clone().unwrap_or_else(|| "-".into()), urls]);
            }
            p.out(&table.render(p))?;
            for row in report.services.iter().filter(|r| r.note.is_some() && !r.urls.is_empty()) {
                p.out(&format!("note: {}: {}", row.service, row.note.clone().unwrap_or_default()))?;
            }
            Ok(())
        }
    }
}

fn shell_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`")
}

/// Consumer groups a reset deletes: the workshop API's, the workshop's
/// inventory job's, and kart's.
fn is_workshop_group(name: &str, configured: &str) -> bool {
    name.starts_with("quarkus-") || name == "inventory-management-hybrid" || name.starts_with("kart-") || name == configured
}

/// The instructor's clean slate (design §2), one step after another, each
/// reported; works on a half-broken stack because it starts the platform
/// (which converges) before touching data.
async fn reset(ctx: &Context) -> Result<()> {
    ctx.confirm(&format!("reset the {} platform: stop jobs, delete topics, consumer groups, tables and the CDC slot", ctx.mode.as_str()))?;
    let started = Instant::now();
    let p = &ctx.printer;
    let mut steps: Vec<Value> = Vec::new();
    let mut step = |name: &str, detail: String| {
        p.status("Reset", &format!("{name}: {detail}"));
        steps.push(json!({ "step": name, "detail": detail }));
    };
    // 1. Embedded jobs first: they hold the CDC slot and write to topics.
    let supervisor = Supervisor::new(&ctx.project_dir);
    for job in EMBEDDED_JOBS {
        match embedded::stop(&supervisor, job, Duration::from_secs(15)).await? {
            StopOutcome::NotRunning => {}
            outcome => step("job", format!("{job} {}", if outcome == StopOutcome::Killed { "killed" } else { "stopped" })),
        }
    }
    // 2. Services up (a stopped one is started again), without init.
    let backend = match platform::read_record(ctx).map(|r| r.backend) {
        Some(platform::Running::Native) => Backend::Native,
        Some(platform::Running::Docker) => Backend::Docker,
        None => Backend::Auto,
    };
    let options = StartOptions { services: Vec::new(), backend, pull: PullPolicy::Missing, wait_timeout: Duration::from_secs(180) };
    let report = ctx.interruptible(platform::start(ctx, &options)).await?;
    let restarted: Vec<&str> = report.services.iter().filter(|s| s.action != "up to date").map(|s| s.service.as_str()).collect();
    step("services", if restarted.is_empty() { "all running".into() } else { format!("started {}", restarted.join(", ")) });
    // 3. Kafka: topics and consumer groups.
    let kafka = ctx.kafka()?;
    let admin = Admin::connect(&kafka, p).await?;
    let names: Vec<String> = DEFAULT_TOPICS.iter().map(|t| t.name.to_string()).collect();
    let (outcomes, failure) = topics::delete(&admin, &names, false).await?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    let deleted = outcomes.iter().filter(|o| o.status == "deleted").count();
    step("topics", format!("{deleted} deleted"));
    let configured_group = ctx.settings.raw("KAFKA_GROUP_ID").to_string();
    match admin.groups().await {
        Ok(groups) => {
            let doomed: Vec<String> = groups.into_iter().filter(|g| is_workshop_group(g, &configured_group)).collect();
            let results = admin.delete_groups(&doomed).await?;
            let failed: Vec<String> = results.iter().filter_map(|(g, r)| r.as_ref().err().map(|e| format!("{g}: {e}"))).collect();
            for f in &failed {
                p.warn(&format!("could not delete consumer group {f}"));
            }
            step("consumer groups", format!("{} deleted", results.len() - failed.len()));
        }
        // Some brokers do not list groups; topics are gone anyway, so the
        // groups' offsets point nowhere.
        Err(e) => p.warn(&format!("consumer groups not deleted: {}", e.message)),
    }
    // 4. Database: schema and the CDC slot.
    let pg = ctx.postgres()?;
    match schema::teardown(&pg).await {
        Ok(report) => step("schema", format!("dropped {}", if report.dropped.is_empty() { "nothing".into() } else { report.dropped.join(", ") })),
        Err(e) if e.code == "database-missing" => step("schema", "no database yet".into()),
        Err(e) => return Err(e),
    }
    let slot = schema::clean_cdc(&pg).await?;
    step("CDC slot", if slot.dropped { format!("{} dropped", slot.slot) } else { format!("{} absent", slot.slot) });
    // 5. The workshop API's local Kafka Streams state is stale once the
    //    topics are gone (workshop spec §6 item 10).
    let mut removed_state = Vec::new();
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let streams_state = name == "kafka-streams" || name.starts_with("quarkus-kafka-streams");
        if streams_state && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed_state.push(entry.path().display().to_string());
        }
    }
    if !removed_state.is_empty() {
        step("streams state", format!("removed {}", removed_state.join(", ")));
    }
    // 6. Re-initialise.
    let init = ctx.interruptible(platform::initialise(ctx)).await?;
    step("init", "topics created, database initialised".into());
    if p.is_json() {
        return p.json(json!({ "mode": ctx.mode, "backend": report.backend, "steps": steps, "init": init, "elapsedMs": started.elapsed().as_millis() as u64 }));
    }
    p.out(&format!("platform reset in {:.1}s: fresh topics, database and catalog", started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_deletes_only_the_workshop_s_groups() {
        assert!(is_workshop_group("quarkus-websocket-consumer", "kart-inventory"));
        assert!(is_workshop_group("inventory-management-hybrid", "x"));
        assert!(is_workshop_group("kart-inventory", "kart-inventory"));
        assert!(is_workshop_group("custom", "custom"));
        assert!(!is_workshop_group("my-app", "kart-inventory"));
    }

    #[test]
    fn env_values_are_safe_inside_double_quotes() {
        assert_eq!(shell_escape(r#"a"b$c`d\e"#), r#"a\"b\$c\`d\\e"#);
    }
}
