//! The workshop's services (design §8): read from the mode's compose file,
//! run as Docker containers (`docker`) or as local processes (`native`), or,
//! in remote mode, found at the managed endpoints with only the tooling in
//! Docker. `.kart/platform.json` remembers which backend started what, so
//! `stop`, `status` and `logs` act on the right one.

pub mod compose;
pub mod docker;
pub mod endpoint;
pub mod interpolate;
pub mod native;
pub mod ports;
pub mod readiness;
pub mod subset;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::{Backend, PullPolicy};
use crate::config::Mode;
use crate::context::Context;
use crate::db::schema;
use crate::kafka::admin::Admin;
use crate::kafka::topics::{self, CreateRequest};
use crate::catalog;
use serde_json::{json, Value};
use crate::exit::{KartError, Result};
use compose::{LoadOptions, Project, ServiceSpec};
use docker::Engine;
use native::{Binaries, NativeDirs, NativePostgres, NativeTansu};
use readiness::{Probe, ProbeResult, Prober, Roles};

/// Which backend runs the services, as recorded in `.kart/platform.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Running {
    Docker,
    Native,
}

impl Running {
    pub fn as_str(self) -> &'static str {
        match self {
            Running::Docker => "docker",
            Running::Native => "native",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformRecord {
    pub backend: Running,
    pub mode: Mode,
    pub project: String,
    pub started_at: i64,
}

fn record_path(ctx: &Context) -> PathBuf {
    ctx.project_dir.join(".kart").join("platform.json")
}

pub fn read_record(ctx: &Context) -> Option<PlatformRecord> {
    let bytes = std::fs::read(record_path(ctx)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_record(ctx: &Context, record: &PlatformRecord) -> Result<()> {
    let path = record_path(ctx);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| KartError::infra("io", format!("cannot create {}: {e}", dir.display())))?;
    }
    crate::supervise::write_json_atomically(&path, record)
}

fn remove_record(ctx: &Context) {
    let _ = std::fs::remove_file(record_path(ctx));
}

/// The mode's compose file from the project directory, else kart's own
/// built into the binary (so a bare directory works too).
pub fn load_project(ctx: &Context) -> Result<Project> {
    let name = match ctx.mode {
        Mode::Local => "compose-local.yml",
        Mode::Remote => "compose-remote.yml",
    };
    let file = ctx.project_dir.join(name);
    let settings = &ctx.settings;
    let lookup = |var: &str| -> Option<String> {
        match settings.setting(var) {
            Some(s) => Some(s.value.clone()),
            None => std::env::var(var).ok(),
        }
    };
    let project_name = settings
        .setting("COMPOSE_PROJECT_NAME")
        .filter(|s| s.source.kind() != "default" && !s.value.trim().is_empty())
        .map(|s| s.value.trim().to_string());
    let port_offset = port_offset(ctx)?;
    let licence = settings.raw("FACTOR_HOUSE_CE_LICENSE").trim();
    let licence_file = if licence.is_empty() {
        Some(ctx.project_dir.join("license.env"))
    } else {
        Some(PathBuf::from(licence))
    };
    let options = LoadOptions { lookup: &lookup, project_name, port_offset, licence_file };
    if file.is_file() {
        compose::load(&file, &options)
    } else {
        let text = match ctx.mode {
            Mode::Local => include_str!("../../compose-local.yml"),
            Mode::Remote => include_str!("../../compose-remote.yml"),
        };
        compose::parse(text, &file, &options)
    }
}

pub fn port_offset(ctx: &Context) -> Result<u16> {
    let offset = ctx.settings.integer("KART_PORT_OFFSET")?;
    u16::try_from(offset).map_err(|_| ctx.settings.bad_value("KART_PORT_OFFSET", "must be between 0 and 65535"))
}

fn roles(ctx: &Context) -> Roles {
    Roles::from_settings(ctx.kafka().ok().as_ref(), ctx.postgres().ok().as_ref())
}

fn prober(ctx: &Context) -> Arc<Prober> {
    Arc::new(Prober::new(ctx.kafka().ok(), ctx.postgres().ok(), ctx.printer.clone()))
}

fn binaries(ctx: &Context) -> Binaries {
    Binaries::find(ctx.settings.raw("KART_PG_BINDIR"), ctx.settings.raw("KART_TANSU_BIN"))
}

pub struct StartOptions {
    pub services: Vec<String>,
    pub backend: Backend,
    pub pull: PullPolicy,
    pub wait_timeout: Duration,
}

/// What `platform start` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartReport {
    pub mode: Mode,
    /// `docker`, `native`, or `none` (remote mode without Docker).
    pub backend: String,
    /// Why `auto` chose this backend.
    pub backend_reason: Option<String>,
    pub project: String,
    pub services: Vec<StartedService>,
    /// Services left out, with why (licence, profile, backend).
    pub skipped: Vec<SkippedService>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedService {
    pub service: String,
    /// Container name or `native`.
    pub runs_as: String,
    pub id: Option<String>,
    pub action: String,
    pub probe: String,
    pub ready_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedService {
    pub service: String,
    pub reason: String,
}

/// What `platform start` does once the services run: `topics create` +
/// `db up` (remote: no create-db), returning their reports.
pub async fn initialise(ctx: &Context) -> Result<Value> {
    let p = &ctx.printer;
    let kafka = ctx.kafka()?;
    let admin = Admin::connect(&kafka, p).await?;
    let request = CreateRequest { names: Vec::new(), partitions: None, replication_factor: None, configs: Vec::new(), local: ctx.mode == Mode::Local };
    let (outcomes, failure) = topics::create(&admin, &request).await?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    let created = outcomes.iter().filter(|o| o.status == "created").count();
    p.status("Topics", &format!("{created} created, {} existed", outcomes.len() - created));
    let pg = ctx.postgres()?;
    let (products, _) = catalog::configured(&ctx.settings)?;
    let created_db = if ctx.mode == Mode::Local { Some(schema::create_db(&pg).await?.created) } else { None };
    let init = schema::init(&pg, &products).await?;
    p.status("Database", &format!("{} on {} initialised", pg.database, pg.endpoint()));
    Ok(json!({ "topics": outcomes, "databaseCreated": created_db, "database": init }))
}

/// Starts the mode's services and waits until each is usable.
pub async fn start(ctx: &Context, options: &StartOptions) -> Result<StartReport> {
    let started = Instant::now();
    let mut project = load_project(ctx)?;
    project.select(&options.services)?;
    for name in &project.unset_variables {
        ctx.printer.warn(&format!("{} references ${{{name}}}, which is not set: using an empty value", project.file.display()));
    }
    let mut skipped: Vec<SkippedService> =
        project.skipped.iter().map(|(s, r)| SkippedService { service: s.clone(), reason: r.clone() }).collect();
    for s in &skipped {
        ctx.printer.warn(&format!("skipping {}: {}", s.service, s.reason));
    }
    if ctx.mode == Mode::Remote {
        check_remote(ctx).await?;
    }
    let (backend, reason, engine) = choose_backend(ctx, &project, options).await?;
    if let Some(reason) = &reason {
        ctx.printer.status("Backend", &format!("{} ({reason})", backend.map(Running::as_str).unwrap_or("none")));
    }
    let mut services = Vec::new();
    match backend {
        Some(Running::Docker) => {
            let engine = engine.expect("an engine for the docker backend");
            ctx.printer.debug(&format!("Docker engine {} at {} ({})", engine.version, engine.endpoint.host, engine.endpoint.source));
            // Remember before creating anything: an interrupted start is
            // still something `platform stop` knows to clean up.
            write_record(ctx, &PlatformRecord { backend: Running::Docker, mode: ctx.mode, project: project.name.clone(), started_at: crate::supervise::now_ms() })?;
            let outcomes = ctx
                .interruptible(engine.up(&project, ctx.mode, options.pull, options.wait_timeout, prober(ctx), &roles(ctx), &ctx.printer))
                .await?;
            services = outcomes
                .into_iter()
                .map(|o| StartedService { service: o.service, runs_as: o.container, id: Some(o.container_id), action: o.action, probe: o.probe, ready_ms: o.ready_ms })
                .collect();
        }
        Some(Running::Native) => {
            write_record(ctx, &PlatformRecord { backend: Running::Native, mode: ctx.mode, project: project.name.clone(), started_at: crate::supervise::now_ms() })?;
            let (started_services, not_provided) = ctx.interruptible(start_native(ctx, &project, options.wait_timeout)).await?;
            services = started_services;
            for service in not_provided {
                ctx.printer.warn(&format!("skipping {service}: the native backend has no {service} (it needs Docker)"));
                skipped.push(SkippedService { service, reason: "not provided by the native backend (needs Docker)".into() });
            }
        }
        None => {
            for service in &project.services {
                skipped.push(SkippedService { service: service.name.clone(), reason: reason.clone().unwrap_or_default() });
            }
        }
    }
    Ok(StartReport {
        mode: ctx.mode,
        backend: backend.map(Running::as_str).unwrap_or("none").to_string(),
        backend_reason: reason,
        project: project.name,
        services,
        skipped,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Remote mode: the managed Kafka and Postgres must answer, with the
/// configured credentials, before any container starts.
async fn check_remote(ctx: &Context) -> Result<()> {
    let kafka = ctx.kafka()?;
    let pg = ctx.postgres()?;
    ctx.printer.status("Checking", &format!("Kafka at {}", kafka.bootstrap));
    crate::kafka::admin::Admin::connect(&kafka, &ctx.printer).await?;
    ctx.printer.status("Checking", &format!("PostgreSQL at {}", pg.endpoint()));
    let client = pg.connect().await?;
    client.simple_query("SELECT 1").await.map_err(|e| crate::db::query_error("SELECT 1", e))?;
    Ok(())
}

/// `auto`: Docker when an engine answers and every image is present or
/// pullable; else native, saying why.
async fn choose_backend(ctx: &Context, project: &Project, options: &StartOptions) -> Result<(Option<Running>, Option<String>, Option<Engine>)> {
    let native_ok = |why: String| -> Result<(Option<Running>, Option<String>, Option<Engine>)> {
        if ctx.mode == Mode::Remote {
            // Remote mode runs only tooling, which needs Docker.
            ctx.printer.warn(&format!("no tooling containers: {why}"));
            return Ok((None, Some(why), None));
        }
        if let Some(missing) = binaries(ctx).missing() {
            return Err(KartError::infra("no-backend", format!("no backend can run the services here: {why}; and the native backend cannot either: {missing}")));
        }
        Ok((Some(Running::Native), Some(why), None))
    };
    match options.backend {
        Backend::Native if ctx.mode == Mode::Remote => Ok((None, Some("--backend native: remote mode runs only tooling, which needs Docker".into()), None)),
        Backend::Native => {
            if let Some(missing) = binaries(ctx).missing() {
                return Err(KartError::infra("native-unavailable", format!("the native backend cannot run here: {missing}")));
            }
            Ok((Some(Running::Native), None, None))
        }
        Backend::Docker => {
            let engine = Engine::connect(ctx.connect_timeout).await?;
            let unavailable = engine.unavailable_images(project, options.pull).await;
            if let Some((image, why)) = unavailable.first() {
                let others = unavailable.len() - 1;
                let more = if others > 0 { format!(" (and {others} more)") } else { String::new() };
                return Err(KartError::infra("image-unavailable", format!("image {image} cannot be used: {why}{more}; nothing was created"))
                    .with_hint("check the image name and your registry access, or use `--backend native`"));
            }
            Ok((Some(Running::Docker), None, Some(engine)))
        }
        Backend::Auto => {
            let engine = match Engine::connect(ctx.connect_timeout.min(Duration::from_secs(5))).await {
                Ok(engine) => engine,
                Err(e) => return native_ok(format!("Docker is not available: {}", e.message)),
            };
            let unavailable = engine.unavailable_images(project, options.pull).await;
            if let Some((image, why)) = unavailable.first() {
                return native_ok(format!("image {image} is neither present nor pullable ({why})"));
            }
            Ok((Some(Running::Docker), Some(format!("Docker engine {} at {}", engine.version, engine.endpoint.host)), Some(engine)))
        }
    }
}

/// The compose services the native backend provides: the broker and the
/// database, recognised by the ports kart's clients use.
fn native_roles(ctx: &Context, project: &Project) -> (Option<ServiceSpec>, Option<ServiceSpec>, Vec<String>) {
    let roles = roles(ctx);
    let mut kafka = None;
    let mut postgres = None;
    let mut others = Vec::new();
    for service in &project.services {
        match roles.probe_for(service) {
            Probe::Kafka if kafka.is_none() => kafka = Some(service.clone()),
            Probe::Postgres if postgres.is_none() => postgres = Some(service.clone()),
            _ => others.push(service.name.clone()),
        }
    }
    (kafka, postgres, others)
}

fn native_pg(ctx: &Context, bindir: PathBuf) -> Result<NativePostgres> {
    let pg = ctx.postgres()?;
    Ok(NativePostgres {
        bindir,
        dirs: NativeDirs::new(&ctx.project_dir),
        port: pg.port,
        user: pg.user.clone(),
        password: ctx.settings.raw("POSTGRES_PASSWORD").to_string(),
    })
}

fn native_tansu(ctx: &Context, bin: PathBuf) -> Result<NativeTansu> {
    let port = roles(ctx).kafka_port.ok_or_else(|| {
        KartError::user("native-kafka-port", format!("KAFKA_BOOTSTRAP_SERVERS={} names no localhost port for the native broker", ctx.settings.raw("KAFKA_BOOTSTRAP_SERVERS")))
    })?;
    Ok(NativeTansu { bin, dirs: NativeDirs::new(&ctx.project_dir), port })
}

async fn start_native(ctx: &Context, project: &Project, wait_timeout: Duration) -> Result<(Vec<StartedService>, Vec<String>)> {
    let started = Instant::now();
    let bins = binaries(ctx);
    let (kafka, postgres, others) = native_roles(ctx, project);
    let prober = prober(ctx);
    let mut out = Vec::new();
    if let Some(service) = &postgres {
        let pg = native_pg(ctx, bins.pg_bindir.clone().map_err(|e| KartError::infra("native-unavailable", e))?)?;
        let action = if pg.running().await {
            "up to date"
        } else {
            if !crate::platform::ports::is_free("127.0.0.1", pg.port) {
                return Err(port_taken(&service.name, pg.port));
            }
            if pg.init().await? {
                ctx.printer.status("Initialised", &format!("PostgreSQL data in {}", pg.dirs.pg_data().display()));
            }
            pg.start().await?;
            ctx.printer.status("Started", &format!("{} (native PostgreSQL on 127.0.0.1:{})", service.name, pg.port));
            "started"
        };
        wait_native(&prober, &Probe::Postgres, service, started, wait_timeout).await?;
        out.push(StartedService { service: service.name.clone(), runs_as: "native postgres".into(), id: pg.pid().map(|p| p.to_string()), action: action.into(), probe: Probe::Postgres.describe(), ready_ms: started.elapsed().as_millis() as u64 });
    }
    if let Some(service) = &kafka {
        let tansu = native_tansu(ctx, bins.tansu.clone().map_err(|e| KartError::infra("native-unavailable", e))?)?;
        let action = match tansu.liveness()? {
            crate::supervise::Liveness::Running(_) => "up to date",
            _ => {
                if !crate::platform::ports::is_free("127.0.0.1", tansu.port) {
                    return Err(port_taken(&service.name, tansu.port));
                }
                tansu.start()?;
                ctx.printer.status("Started", &format!("{} (native tansu on localhost:{})", service.name, tansu.port));
                "started"
            }
        };
        if let Err(e) = wait_native(&prober, &Probe::Kafka, service, started, wait_timeout).await {
            let log = native::tail_file(&tansu.log(), 15);
            return Err(KartError { message: format!("{}\n{}", e.message, log.iter().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")), ..e });
        }
        let pid = tansu.dirs.supervisor().read_record(native::TANSU).map(|r| r.pid.to_string());
        out.push(StartedService { service: service.name.clone(), runs_as: "native tansu".into(), id: pid, action: action.into(), probe: Probe::Kafka.describe(), ready_ms: started.elapsed().as_millis() as u64 });
    }
    Ok((out, others))
}

fn port_taken(service: &str, port: u16) -> KartError {
    let holder = match ports::process_holding(port) {
        Some((pid, name)) => format!("process {name} (pid {pid})"),
        None => "another program".into(),
    };
    KartError::user("preflight-failed", format!("cannot start; nothing was created: port {port} (service {service}) is held by {holder}"))
        .with_hint("stop it, or move kart's ports with KART_PORT_OFFSET / KAFKA_BOOTSTRAP_SERVERS / POSTGRES_PORT")
}

async fn wait_native(prober: &Prober, probe: &Probe, service: &ServiceSpec, started: Instant, timeout: Duration) -> Result<()> {
    let mut last = String::new();
    while started.elapsed() < timeout {
        match prober.probe(probe, service).await {
            ProbeResult::Ready => return Ok(()),
            ProbeResult::Fatal(e) => return Err(e),
            ProbeResult::NotYet(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(KartError::infra(
        "readiness-timeout",
        format!("{} not ready within {} (--wait-timeout): {} failed: {last}", service.name, humantime::format_duration(timeout), probe.describe()),
    ))
}

/// What `platform stop` removed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopReport {
    pub backend: Option<String>,
    pub removed: Vec<String>,
}

/// Stops whatever kart started here (either backend), keeping data unless
/// `volumes`.
pub async fn stop(ctx: &Context, volumes: bool) -> Result<StopReport> {
    let record = read_record(ctx);
    let project = load_project(ctx)?;
    let mut removed = Vec::new();
    let mut backend = record.as_ref().map(|r| r.backend.as_str().to_string());
    let project_name = record.as_ref().map(|r| r.project.clone()).unwrap_or_else(|| project.name.clone());
    // Docker: whatever carries this project's kart labels, when an engine
    // answers (a record is not required: a lost .kart/ must not strand containers).
    let engine = Engine::connect(ctx.connect_timeout.min(Duration::from_secs(5))).await;
    match engine {
        Ok(engine) => {
            let mut named = project.clone();
            named.name = project_name.clone();
            let gone = engine.down(&named, volumes, &ctx.printer).await?;
            if !gone.is_empty() {
                backend.get_or_insert_with(|| "docker".into());
            }
            removed.extend(gone);
        }
        Err(e) if record.as_ref().is_some_and(|r| r.backend == Running::Docker) => return Err(e),
        Err(_) => {}
    }
    // Native: the broker and the database, if they run.
    let dirs = NativeDirs::new(&ctx.project_dir);
    let bins = binaries(ctx);
    let tansu_running = matches!(dirs.supervisor().liveness(native::TANSU)?, crate::supervise::Liveness::Running(_));
    if tansu_running {
        let tansu = NativeTansu { bin: PathBuf::new(), dirs: dirs.clone(), port: 0 };
        tansu.stop()?;
        ctx.printer.status("Stopped", "native tansu");
        removed.push("native tansu".into());
    }
    if let Ok(bindir) = bins.pg_bindir.clone() {
        let pg = NativePostgres { bindir, dirs: dirs.clone(), port: 0, user: String::new(), password: String::new() };
        if pg.stop().await? {
            ctx.printer.status("Stopped", "native PostgreSQL");
            removed.push("native postgres".into());
        }
    }
    if volumes && dirs.root.exists() {
        for path in [dirs.pg_data(), dirs.tansu_db()] {
            if path.exists() {
                let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                result.map_err(|e| KartError::infra("io", format!("cannot delete {}: {e}", path.display())))?;
                ctx.printer.status("Deleted", &path.display().to_string());
                removed.push(format!("native data {}", path.display()));
            }
        }
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dirs.root.join(format!("tansu.db{suffix}")));
        }
    }
    if tansu_running || removed.iter().any(|r| r.starts_with("native")) {
        backend.get_or_insert_with(|| "native".into());
    }
    // The record stays (status then says "stopped" for the backend that ran
    // them) unless the data is gone too.
    if volumes {
        remove_record(ctx);
    }
    Ok(StopReport { backend, removed })
}

/// One row of `platform status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    pub service: String,
    /// `docker`, `native`, `remote` or `none`.
    pub backend: String,
    /// `running`, `exited`, `missing`, `stopped`, `reachable`, `unreachable`,
    /// `not provided` …
    pub state: String,
    pub health: Option<String>,
    /// Container name, or what runs natively.
    pub runs_as: Option<String>,
    pub id: Option<String>,
    pub ports: Vec<u16>,
    pub urls: Vec<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub mode: Mode,
    pub backend: Option<String>,
    pub project: String,
    pub services: Vec<ServiceRow>,
}

fn urls(ctx: &Context, service: &ServiceSpec, probe: &Probe) -> Vec<String> {
    let host = |ip: &str| if ip == "0.0.0.0" || ip == "127.0.0.1" || ip.is_empty() { "localhost".to_string() } else { ip.to_string() };
    match probe {
        Probe::Kafka => service.ports.first().map(|p| format!("{}:{}", host(&p.host_ip), p.host_port)).into_iter().collect(),
        Probe::Postgres => {
            let db = ctx.settings.raw("POSTGRES_DB");
            let user = ctx.settings.raw("POSTGRES_USER");
            service.ports.first().map(|p| format!("postgresql://{user}@{}:{}/{db}", host(&p.host_ip), p.host_port)).into_iter().collect()
        }
        _ => service.ports.iter().filter(|p| p.protocol == "tcp").map(|p| format!("http://{}:{}", host(&p.host_ip), p.host_port)).collect(),
    }
}

pub async fn status(ctx: &Context) -> Result<StatusReport> {
    let project = load_project(ctx)?;
    let record = read_record(ctx);
    let roles = roles(ctx);
    let mut rows = Vec::new();
    if ctx.mode == Mode::Remote {
        for (name, endpoint) in [("kafka", ctx.settings.raw("KAFKA_BOOTSTRAP_SERVERS").to_string()), ("postgres", ctx.postgres().map(|p| p.endpoint()).unwrap_or_default())] {
            let first = endpoint.split(',').next().unwrap_or_default().trim().to_string();
            let reachable = match first.rsplit_once(':') {
                Some((h, p)) => tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect((h, p.parse::<u16>().unwrap_or(0)))).await.is_ok_and(|r| r.is_ok()),
                None => false,
            };
            rows.push(ServiceRow {
                service: name.into(),
                backend: "remote".into(),
                state: if reachable { "reachable" } else { "unreachable" }.into(),
                health: None,
                runs_as: None,
                id: None,
                ports: Vec::new(),
                urls: vec![endpoint],
                note: Some("managed service".into()),
            });
        }
    }
    let native = record.as_ref().is_some_and(|r| r.backend == Running::Native);
    let engine = if native { None } else { Engine::connect(ctx.connect_timeout.min(Duration::from_secs(5))).await.ok() };
    let (native_kafka, native_postgres, _) = native_roles(ctx, &project);
    for service in &project.services {
        let probe = roles.probe_for(service);
        let mut row = ServiceRow {
            service: service.name.clone(),
            backend: "none".into(),
            state: "missing".into(),
            health: None,
            runs_as: None,
            id: None,
            ports: service.ports.iter().map(|p| p.host_port).collect(),
            urls: urls(ctx, service, &probe),
            note: None,
        };
        if native {
            row.backend = "native".into();
            if native_kafka.as_ref().is_some_and(|s| s.name == service.name) {
                let dirs = NativeDirs::new(&ctx.project_dir);
                row.runs_as = Some("tansu".into());
                match dirs.supervisor().liveness(native::TANSU)? {
                    crate::supervise::Liveness::Running(r) => {
                        row.state = "running".into();
                        row.id = r.map(|r| r.pid.to_string());
                    }
                    _ => row.state = "stopped".into(),
                }
            } else if native_postgres.as_ref().is_some_and(|s| s.name == service.name) {
                row.runs_as = Some("postgres".into());
                match binaries(ctx).pg_bindir {
                    Ok(bindir) => {
                        let pg = native_pg(ctx, bindir)?;
                        let running = pg.running().await;
                        row.state = if running { "running" } else { "stopped" }.into();
                        row.id = if running { pg.pid().map(|p| p.to_string()) } else { None };
                    }
                    Err(e) => row.note = Some(e),
                }
            } else {
                row.state = "not provided".into();
                row.note = Some("the native backend has no container runtime for it".into());
                row.ports.clear();
                row.urls.clear();
            }
            if row.state == "running" {
                row.health = Some(match prober(ctx).probe(&probe, service).await {
                    ProbeResult::Ready => "healthy".into(),
                    _ => "starting".into(),
                });
            }
        } else if let Some(engine) = &engine {
            let status = engine.status(&project, service).await;
            row.backend = "docker".into();
            row.state = status.state;
            row.health = status.health.or_else(|| (row.state == "running" && service.healthcheck.is_none()).then(|| "no healthcheck".into()));
            row.runs_as = Some(service.container_name.clone());
            row.id = status.container_id;
            if row.state == "running" && !status.up_to_date {
                row.note = Some("configuration changed: `kart platform start` recreates it".into());
            }
        } else {
            row.note = Some("Docker is not reachable".into());
        }
        rows.push(row);
    }
    for (name, reason) in &project.skipped {
        rows.push(ServiceRow { service: name.clone(), backend: "none".into(), state: "skipped".into(), health: None, runs_as: None, id: None, ports: Vec::new(), urls: Vec::new(), note: Some(reason.clone()) });
    }
    Ok(StatusReport { mode: ctx.mode, backend: record.map(|r| r.backend.as_str().to_string()), project: project.name, services: rows })
}

/// Prints a service's logs through `sink`.
pub async fn logs(ctx: &Context, service: &str, follow: bool, tail: Option<usize>, mut sink: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let project = load_project(ctx)?;
    let Some(spec) = project.service(service).cloned() else {
        let known: Vec<&str> = project.services.iter().map(|s| s.name.as_str()).collect();
        return Err(KartError::user("unknown-service", format!("no service {service:?}")).with_hint(format!("services: {}", known.join(", "))));
    };
    if read_record(ctx).is_some_and(|r| r.backend == Running::Native) {
        let (kafka, pg, _) = native_roles(ctx, &project);
        let dirs = NativeDirs::new(&ctx.project_dir);
        let path = if kafka.is_some_and(|k| k.name == spec.name) {
            dirs.supervisor().log_path(native::TANSU)
        } else if pg.is_some_and(|p| p.name == spec.name) {
            dirs.pg_log()
        } else {
            return Err(KartError::user("not-provided", format!("the native backend does not run {service}")));
        };
        return follow_file(ctx, &path, follow, tail, &mut sink).await;
    }
    let engine = Engine::connect(ctx.connect_timeout).await?;
    ctx.interruptible(engine.logs(&spec.container_name, follow, tail, sink)).await
}

async fn follow_file(ctx: &Context, path: &std::path::Path, follow: bool, tail: Option<usize>, sink: &mut impl FnMut(&str) -> Result<()>) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncSeekExt};
    let lines = native::tail_file(path, tail.unwrap_or(usize::MAX));
    for line in &lines {
        sink(line)?;
    }
    if !follow {
        return Ok(());
    }
    let mut file = tokio::fs::File::open(path).await.map_err(|e| KartError::infra("io", format!("cannot open {}: {e}", path.display())))?;
    file.seek(std::io::SeekFrom::End(0)).await.map_err(|e| KartError::infra("io", e.to_string()))?;
    let mut reader = tokio::io::BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = ctx.interruptible(async { reader.read_line(&mut line).await.map_err(|e| KartError::infra("io", e.to_string())) }).await?;
        if n == 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = ctx.shutdown.cancelled() => return Err(KartError::interrupted()),
            }
            continue;
        }
        sink(line.trim_end())?;
    }
}
